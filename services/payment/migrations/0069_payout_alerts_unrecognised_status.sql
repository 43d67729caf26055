-- A Transaction Status answer whose TransactionStatus decides nothing here (neither Completed, Failed nor Cancelled)
-- is told to support once per payout, however many passes ask again: the payout stays held and asked about.
ALTER TABLE payment.payout_alerts DROP CONSTRAINT payout_alerts_kind_check,
  ADD CONSTRAINT payout_alerts_kind_check CHECK (kind IN ('amount_mismatch', 'paid_after_failed', 'unrecognised_status'));
