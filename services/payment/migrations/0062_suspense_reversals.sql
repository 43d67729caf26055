-- A paybill payment in suspense that support refunds is reversed on M-Pesa as a tip is (mpesa-reversals.ts):
-- its money out of suspense first, back in when M-Pesa refuses. A reversal gives back either a tip's payment or
-- such a payment, never both. The table holds reversals only (few rows): the check is validated as it is added.
ALTER TABLE mpesa_reversals ALTER COLUMN tip_id DROP NOT NULL,
  ADD COLUMN suspense_receipt text REFERENCES c2b_payments (trans_id),
  ADD CONSTRAINT mpesa_reversals_one_payment CHECK ((tip_id IS NULL) <> (suspense_receipt IS NULL));
CREATE UNIQUE INDEX mpesa_reversals_suspense_key ON mpesa_reversals (suspense_receipt, idempotency_key) WHERE suspense_receipt IS NOT NULL;
-- A payment is reversed once: one reversal of a suspense payment at a time that has not failed.
CREATE UNIQUE INDEX mpesa_reversals_suspense_live ON mpesa_reversals (suspense_receipt) WHERE status <> 'failed';
-- The reconciliation pass sends a refund's reversal whose decision committed and whose money never left suspense (a crash between).
DROP INDEX mpesa_reversals_open;
CREATE INDEX mpesa_reversals_open ON mpesa_reversals (created_at) WHERE status IN ('new', 'debited', 'sending', 'sent');
