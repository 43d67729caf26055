-- When the last counted Transaction Status query about a payout was sent (the service's clock): "no record after
-- repeated asking" counts queries spaced by at least the result wait, whichever pass sent them.
-- Nullable, no default: no table rewrite; a payout asked before this file counts its next query.
ALTER TABLE payment.payouts ADD COLUMN status_queried_at timestamptz;
