-- The receipt M-Pesa's own B2C result named for a payout held for the amount it reported, kept when support resolves
-- the payout with the receipt on M-Pesa's statement (which then is mpesa_receipt): the two may differ, and the one
-- M-Pesa sent is the evidence of what its result said. Null for every other payout. Nullable, no default: no table
-- rewrite, nothing scanned.
ALTER TABLE payouts ADD COLUMN reported_mpesa_receipt text;
