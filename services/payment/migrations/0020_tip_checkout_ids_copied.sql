-- migrate: outside a transaction
-- The CheckoutRequestIDs stored before 0019's triggers, copied into tip_checkout_ids, then
-- the partial unique index that 0019 replaces dropped. Run statement by statement (this file
-- is outside a transaction): the copy reads payment.tips under no lock that stops its writes
-- (0019's commit waited for every earlier writer, so every id stored before the triggers is
-- in its snapshot; ids stored since were inserted by the triggers, and the copy skips them),
-- and the index goes CONCURRENTLY, without the table's exclusive lock. Until it is dropped
-- both the index and the triggers refuse a taken id. An old replica still running sees no
-- change: its statements set the same column and the triggers keep the rule for them. Safe
-- to run again from its start (the copy skips ids present; IF EXISTS).
INSERT INTO tip_checkout_ids (checkout_request_id, tip_id)
  SELECT checkout_request_id, tip_id FROM tips WHERE checkout_request_id IS NOT NULL
  ON CONFLICT (checkout_request_id) DO NOTHING;
DROP INDEX CONCURRENTLY IF EXISTS tips_checkout_request_id_key;
