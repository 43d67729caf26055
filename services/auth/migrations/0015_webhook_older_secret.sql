-- The secret before the replaced one, while it still signs: rotated twice within the replaced secret's time, a
-- receiver moved to the first rotation's secret and one not yet moved from the secret before it both verify.
ALTER TABLE auth.partner_webhook_subscriptions
  ADD COLUMN older_secret_sealed text,
  ADD COLUMN older_secret_expires_at timestamptz;
