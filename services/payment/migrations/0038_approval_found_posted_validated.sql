-- migrate: outside a transaction
-- After 0037: the marks older replicas left behind already, cleared (held tips only: an ended tip no
-- longer reads it; its own statement, so a scan of the table holds no writer), then 0037's CHECK
-- validated on the rows there (SHARE UPDATE EXCLUSIVE: blocks no reader or writer). Safe to run again.
UPDATE tips SET approval_found_posted = NULL
 WHERE status = 'held_for_review' AND approval_receipt IS NULL AND approval_found_posted IS NOT NULL;
ALTER TABLE tips VALIDATE CONSTRAINT tips_approval_found_posted_values;
