-- What a step-up token was spent on (a payout's idempotency key, as payment
-- names it): verifying again for the same key is accepted until the token
-- expires. Payment gives auth 5 s to verify; auth may spend the token after
-- that, and the worker's retry of the same withdrawal (same key, same token)
-- must not then be refused as spent. NULL: spent with no key (once, whatever for).
ALTER TABLE step_up_tokens ADD COLUMN spend_key text;
