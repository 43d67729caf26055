-- A held M-Pesa tip is approved through a claim (0028: approval_receipt set, its receipt checked
-- under the tip's row lock), then recorded. A replica older than claims, during a rollout, records
-- its approval straight from held to succeeded, after checks that may miss what this one refuses:
-- a receipt its late callback named but could not record (spent_receipt_flags, 0027: the payment
-- support refunded or credited as another tip), or a paybill payment funding the tip that moved to
-- a later match round (0023), whose key such a replica does not close (only round 0's). Its wallet
-- release is posted before this statement, so the database cannot stop the money; it refuses the
-- record: the tip stays held (no tip_succeeded, so no receipt to the customer and no automatic
-- payout of money that may be owed back), and support is told, with the wallet key to check. That
-- replica answers "reviewed meanwhile". An older replica's approval that nothing here refuses is
-- recorded as before. Only updates that set status pay the WHEN clause.
CREATE FUNCTION unclaimed_approval_refusal(t tips) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN EXISTS (SELECT 1 FROM payment.c2b_payments c
                  WHERE (c.trans_id = t.mpesa_receipt OR c.trans_id IN (SELECT f.receipt FROM payment.spent_receipt_flags f WHERE f.tip_id = t.tip_id))
                    AND c.outcome = 'suspense' AND (c.resolution = 'refund' OR (c.resolution = 'matched' AND c.tip_id IS DISTINCT FROM t.tip_id)))
      THEN 'its receipt is a paybill payment support refunded or credited as another tip'
    WHEN t.credit_kind = 'suspense' AND t.credit_key = 'c2b:' || t.mpesa_receipt
         AND EXISTS (SELECT 1 FROM payment.c2b_payments c WHERE c.trans_id = t.mpesa_receipt AND c.outcome = 'suspense' AND c.match_round > 0)
      THEN 'its paybill payment ' || t.mpesa_receipt || ' is in a later match round, whose key that replica does not close'
  END
$$;

CREATE FUNCTION unclaimed_approval_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  why text := payment.unclaimed_approval_refusal(OLD);
BEGIN
  IF why IS NULL THEN
    RETURN NEW;
  END IF;
  INSERT INTO payment.fraud_alerts (alert_id, reason, action, tip_id, worker_id, phone_masked, detail)
  VALUES (gen_random_uuid(), 'CALLBACK_MISMATCH', 'flag', OLD.tip_id, OLD.worker_id, OLD.phone_masked,
    'an approval by an older replica (during a rollout) was not recorded: ' || why || '; the wallet may have paid it under '
      || OLD.credit_key || ':approved: check the recipient''s wallet before deciding; approved, the payment would be paid twice');
  RETURN NULL;
END $$;

CREATE TRIGGER tips_unclaimed_approval_checked BEFORE UPDATE OF status ON tips FOR EACH ROW
  WHEN (OLD.status = 'held_for_review' AND NEW.status = 'succeeded' AND OLD.method = 'mpesa' AND NEW.approval_receipt IS NULL)
  EXECUTE FUNCTION unclaimed_approval_checked();
