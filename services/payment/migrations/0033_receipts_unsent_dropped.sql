-- migrate: outside a transaction
-- The receipts marked sent before 0032 deleted, then receipts_unsent dropped without the table's
-- exclusive lock: the rows left are the receipts owed, read whole by the reconciliation pass (a
-- few, and no index entry to write per tip). Safe to run again from its start.
DELETE FROM receipts WHERE sent_at IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS receipts_unsent;
