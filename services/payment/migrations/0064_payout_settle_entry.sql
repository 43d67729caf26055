-- The wallet entry that settled a payout's hold (the withdrawal and M-Pesa's charge), so the console's payout
-- detail shows its ledger entry as a tip's shows its credit. Null until settled, and for payouts settled before this.
ALTER TABLE payouts ADD COLUMN settle_entry_id text;
