-- A subscription's secret replaced by RotateWebhookSecret, and until when it still signs deliveries
-- beside the new one, so receivers move to the new secret without refusing a delivery meanwhile.
-- Nullable columns without a default: nothing is rewritten, the lock is held for an instant.
ALTER TABLE partner_webhook_subscriptions
  ADD COLUMN previous_secret_sealed text,
  ADD COLUMN previous_secret_expires_at timestamptz;
