-- The fraud rules read a worker's tips in one pass (the velocity count over the
-- window and the median of succeeded tips over 90 days): with the status and the
-- amount in the index, that pass is index-only over pages already all-visible,
-- instead of one heap block per tip. It replaces tips_worker (same key: the
-- worker's tip list reads it as before), so a tip writes no more index entries.
CREATE INDEX tips_worker_facts ON tips (worker_id, created_at DESC) INCLUDE (status, amount_minor);
DROP INDEX tips_worker;
