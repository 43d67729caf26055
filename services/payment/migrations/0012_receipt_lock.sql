-- An M-Pesa receipt's lock, held to the end of the transaction. Every decision
-- that gives a receipt to a tip or parks it in suspense takes it first, so a
-- payment reported both ways at once (STK callback, C2B confirmation) is
-- decided once. The key is the one the service used before this file.
CREATE FUNCTION lock_receipt(receipt text) RETURNS void LANGUAGE sql VOLATILE AS $$
  SELECT pg_advisory_xact_lock(hashtext('mpesa-receipt:' || receipt))
$$;

-- Whether nothing has claimed the receipt yet: no tip carries it and no paybill
-- confirmation reported it. It takes the receipt's lock first and, being
-- VOLATILE, reads with a snapshot taken after the lock: a claim committed while
-- it waited is seen even though the calling statement started before, so one
-- statement can both take the lock and decide on what it protects.
CREATE FUNCTION receipt_unclaimed(receipt text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  free boolean;
BEGIN
  PERFORM payment.lock_receipt(receipt);
  SELECT NOT EXISTS (SELECT 1 FROM payment.tips WHERE mpesa_receipt = receipt)
     AND NOT EXISTS (SELECT 1 FROM payment.c2b_payments WHERE trans_id = receipt)
    INTO free;
  RETURN free;
END $$;
