-- migrate: outside a transaction
-- Two indexes that every delivery or attempt wrote an entry in (a WAL record each), built anew
-- without a write lock (CONCURRENTLY: this file runs outside a transaction), then the old dropped.
-- The console's provider health reads attempts by when they started, the last hours of them.
-- Attempts are written in that order at the table's end, so a BRIN index (one summary per 128
-- pages) finds them: an attempt no longer writes a btree entry (2 WAL records per tip); a range
-- gets its summary once full (autosummarize), and until then it is read whole, as a bounded tail.
-- Each index is dropped first in case an earlier run of this file was cut short (an interrupted
-- concurrent build leaves an invalid index that IF NOT EXISTS would take as built).
DROP INDEX CONCURRENTLY IF EXISTS delivery_attempts_started_brin;
CREATE INDEX CONCURRENTLY delivery_attempts_started_brin ON delivery_attempts USING brin (started_at) WITH (autosummarize = on);
DROP INDEX CONCURRENTLY IF EXISTS delivery_attempts_started;
-- Support's list of a user's deliveries. A delivery to a bare phone number or address (a receipt)
-- has no user and is never found by one: it no longer writes an entry (1 WAL record per tip).
DROP INDEX CONCURRENTLY IF EXISTS deliveries_user_known;
CREATE INDEX CONCURRENTLY deliveries_user_known ON deliveries (user_id, created_at DESC) WHERE user_id IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS deliveries_user;
