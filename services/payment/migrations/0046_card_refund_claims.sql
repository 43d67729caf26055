-- A request claims a debited card refund before sending it to the provider: until when (a lease, so
-- that a request whose process died is finished by a retry). A second request for the refund arriving
-- meanwhile is refused, to be retried, instead of sending it beside the first (PayPal may refuse the
-- second, read as a refusal of the refund). Nullable, no default: no table rewrite.
ALTER TABLE payment.card_refunds ADD COLUMN sending_until timestamptz;
