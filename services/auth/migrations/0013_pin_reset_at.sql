-- When the PIN was last reset by SMS code alone (ResetPin): a device key added after it approves no
-- withdrawal for a while (AUTH_PAYOUT_HOLD_AFTER_PIN_RESET_HOURS), since whoever holds the SIM can do that.
ALTER TABLE auth.users ADD COLUMN pin_reset_at timestamptz;
