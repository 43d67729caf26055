-- What the worker is told about a payout beyond its result, e.g. an automatic
-- payout capped by a withdrawal limit and what is left for later.
ALTER TABLE payment.payouts ADD COLUMN note text NOT NULL DEFAULT '';
