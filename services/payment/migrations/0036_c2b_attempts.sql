-- How many reconciliation passes tried a suspense payment's posting, or a stored raw C2B confirmation,
-- and failed. A pass takes the least tried first, then the oldest: one that fails every time (a key the
-- wallet holds for another entry, a body that cannot be applied) no longer takes a place of every pass
-- ahead of the others. Constant defaults: no table rewrite.
ALTER TABLE c2b_payments ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE callbacks ADD COLUMN attempts integer NOT NULL DEFAULT 0;
