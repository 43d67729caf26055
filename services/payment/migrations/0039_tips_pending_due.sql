-- migrate: outside a transaction
-- One index for both pollers of pending tips (M-Pesa's status checks: method 'mpesa'; cards'
-- reconciliation: method 'card'), keyed by method then due time, instead of tips_due and
-- tips_card_pending: payment.tips had 15 indexes, and a statement on it took 16 relation locks
-- before any other table's, past the 16 a backend takes without the shared lock table
-- (fast-path). Each poller's query (status = 'pending', a method, ordered by next_check_at) reads
-- it as it read its own; a replica of the former version reads it too. A pending card tip wrote
-- an entry in both, an M-Pesa tip in one: neither writes more now. Built CONCURRENTLY, without the
-- table's exclusive lock; an interrupted build leaves an invalid index, dropped before the build
-- again; the two it replaces are dropped after it is built.
DROP INDEX CONCURRENTLY IF EXISTS tips_pending_due;
CREATE INDEX CONCURRENTLY tips_pending_due ON tips (method, next_check_at) WHERE status = 'pending';
DROP INDEX CONCURRENTLY IF EXISTS tips_due;
DROP INDEX CONCURRENTLY IF EXISTS tips_card_pending;
