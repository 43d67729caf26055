-- What M-Pesa's statement shows a payout paid, as the admin resolving a payout held for the amount M-Pesa reported
-- said (ResolveHeldPayout); null for every other payout. Kept on the row so that the difference from the payout's
-- amount is booked with the hold's settlement, and again by reconciliation until that is done. Nullable, no
-- default: no table rewrite, nothing scanned.
ALTER TABLE payouts ADD COLUMN paid_minor bigint CHECK (paid_minor > 0);
