-- A worker's balance may go below zero through one door only: a lost card
-- chargeback (PostEntry with allow_owner_debt). debt_allowed_minor is how far
-- below its holds the account may stand; it is raised by such an entry and
-- shrinks with every later credit, so no other debit can deepen the debt and
-- later tips pay it back first.
ALTER TABLE accounts ADD COLUMN debt_allowed_minor bigint NOT NULL DEFAULT 0 CHECK (debt_allowed_minor >= 0);
ALTER TABLE accounts DROP CONSTRAINT available_not_negative;
ALTER TABLE accounts ADD CONSTRAINT available_not_negative CHECK (may_go_negative OR balance_minor - held_minor >= -debt_allowed_minor);
