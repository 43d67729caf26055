-- One finish of a plan at a time (a repeated confirm, the background pass, another replica): the one that claims
-- it asks the ledger and records its answer until this time; the others leave it to that one. Without it, one's
-- refusal could abandon a plan another had just posted. A NULL time: no table rewrite.
ALTER TABLE distributions ADD COLUMN finishing_until timestamptz;
