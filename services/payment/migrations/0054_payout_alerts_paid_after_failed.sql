-- A B2C reported paid after its payout was ended as failed (and its hold released) is told to support once per
-- payout too, however often M-Pesa (or a relay) repeats the result. The table is small (only such results write a
-- row): checking the new constraint reads it at once.
ALTER TABLE payment.payout_alerts DROP CONSTRAINT payout_alerts_kind_check,
  ADD CONSTRAINT payout_alerts_kind_check CHECK (kind IN ('amount_mismatch', 'paid_after_failed'));
