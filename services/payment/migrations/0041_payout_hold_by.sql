-- A payout hold says since when and by whom, for the console to show beside its reason.
-- Nullable, no default: no table rewrite; a hold placed before this file has neither.
ALTER TABLE payout_settings ADD COLUMN held_at timestamptz, ADD COLUMN held_by text;
