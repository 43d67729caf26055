-- A held tip funded by a paybill payment parked in suspense gives its receipt back when it is
-- rejected (the payment reopened for support: refund or match). A replica older than that rule,
-- during a rollout, answers a redelivered STK callback of the tip by writing the receipt back
-- (a receipt "learned late"); the reopened payment's match would then be refused by the receipt's
-- unique index after wallet posted it. The receipt stays with the payment: such a write keeps
-- NULL. Only that one shape fires it (a failed tip credited from suspense, without a receipt);
-- the WHEN clause is all other updates pay, and only those that set mpesa_receipt.
CREATE FUNCTION reopened_receipt_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.mpesa_receipt := NULL;
  RETURN NEW;
END $$;

CREATE TRIGGER tips_reopened_receipt_kept BEFORE UPDATE OF mpesa_receipt ON tips FOR EACH ROW
  WHEN (OLD.mpesa_receipt IS NULL AND NEW.mpesa_receipt IS NOT NULL AND OLD.status = 'failed' AND OLD.credit_kind = 'suspense')
  EXECUTE FUNCTION reopened_receipt_kept();
