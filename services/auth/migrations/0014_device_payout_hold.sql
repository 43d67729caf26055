-- Until when each device key approves no withdrawal after a PIN reset by SMS code (AUTH_PAYOUT_HOLD_AFTER_PIN_RESET_HOURS):
-- the keys the account had at the reset (one may be on a lost phone) and those added within the hold after it. Kept
-- on the key, so a second reset does not make a key added after the first look older than it.
ALTER TABLE auth.devices ADD COLUMN payout_held_until timestamptz;
-- Holds running when this deploys (from users.pin_reset_at, 0013) carry over, at the default 24 hours: every live key.
UPDATE auth.devices d SET payout_held_until = u.pin_reset_at + interval '24 hours'
  FROM auth.users u
 WHERE d.user_id = u.user_id AND d.removed_at IS NULL AND u.pin_reset_at + interval '24 hours' > now();
