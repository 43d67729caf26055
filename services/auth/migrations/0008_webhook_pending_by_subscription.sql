-- migrate: outside a transaction
-- A subscription's pending deliveries: when one gets no answer, the sender makes the others wait
-- (sender.ts, holdBackSubscription). Without this index each such wait read every delivery the
-- subscription ever had. Built CONCURRENTLY (deliveries keep arriving meanwhile); an interrupted
-- build leaves an invalid index, dropped before the build again.
DROP INDEX CONCURRENTLY IF EXISTS auth.partner_webhook_deliveries_pending_subscription;
CREATE INDEX CONCURRENTLY partner_webhook_deliveries_pending_subscription ON auth.partner_webhook_deliveries (subscription_id, next_attempt_at) WHERE status = 'pending';
