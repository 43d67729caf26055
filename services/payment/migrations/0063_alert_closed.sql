-- An alert holding nothing (a flag, a refusal) closed by support with a note (CloseFraudAlert), or by the end of the
-- reversal in doubt it was about; before, such alerts stayed open for good, with nothing in the queue to end them.
-- NOT VALID: every existing row holds one of the older values, so a grown alert table is not scanned under the lock.
ALTER TABLE fraud_alerts DROP CONSTRAINT fraud_alerts_status_check,
  ADD CONSTRAINT fraud_alerts_status_check CHECK (status IN ('open', 'approved', 'rejected', 'closed')) NOT VALID;
