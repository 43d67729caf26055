-- A stored STK callback no decision was recorded for is replayed by a reconciliation pass (callbacks.ts,
-- replayStoredStkCallbacks). The lease lets one replica at a time replay a row without holding a connection
-- for it: embedded mode's pool has one. Nullable without a default: added without rewriting the table.
ALTER TABLE callbacks ADD COLUMN replay_lease_until timestamptz;
