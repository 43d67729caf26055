-- What a payout's step-up token was spent on besides its key (0006): the payout's amount and the
-- number it pays, as payment names them. The key verifies again only for the same terms, so a
-- payout refused before it was stored (over the balance, a limit) cannot be retried under its key
-- for another amount or number with the same proof. NULL: spent by a caller that named no terms
-- (a payment replica older than this), bound to its key alone. The number is kept as its SHA-256:
-- the comparison needs no more. Nullable columns without a default rewrite nothing, so the
-- table's lock is held for an instant.
ALTER TABLE step_up_tokens
  ADD COLUMN spend_amount_minor bigint,
  ADD COLUMN spend_currency text,
  ADD COLUMN spend_phone_sha256 bytea;
