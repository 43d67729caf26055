-- How many reconciliation passes tried a decided tip's credit and left it uncredited (the wallet
-- refused or failed it). A pass takes the least tried first, then the oldest: a credit the wallet
-- refuses every time (its key holding another entry) no longer takes a place of every pass ahead of
-- the other tips waiting for their money. A constant default: no table rewrite; the triggers of 0015
-- name their columns, so rows they insert start at 0.
ALTER TABLE uncredited ADD COLUMN attempts integer NOT NULL DEFAULT 0;
