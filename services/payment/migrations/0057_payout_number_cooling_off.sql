-- A payout number that replaced another receives no automatic payout for a while (PAYOUT_NUMBER_COOLING_OFF_MS):
-- when it was replaced (the service's clock), and when an automatic payout held back meanwhile falls due
-- (reconciliation starts it then). Both nullable, no default: no table rewrite, nothing scanned. The partial
-- index keeps the due pass to the few workers waiting.
ALTER TABLE payout_settings ADD COLUMN payout_phone_changed_at timestamptz;
ALTER TABLE payout_settings ADD COLUMN auto_payout_due_at timestamptz;
CREATE INDEX payout_settings_auto_payout_due ON payout_settings (auto_payout_due_at) WHERE auto_payout_due_at IS NOT NULL;
