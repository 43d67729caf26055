-- The reconciliation pass also finishes refunds left new (the wallet may have taken the worker's share after the
-- request's deadline, and no admin retried the key): found by this index, oldest first.
CREATE INDEX card_refunds_new ON payment.card_refunds (created_at) WHERE status = 'new';
