-- Which wallet key a match of a suspense payment posts under (and a refund closes): round 0 is
-- c2b:<receipt>:matched, as before; round n, c2b:<receipt>:matched:n. A held tip funded by the
-- payment closes its round's key before its approval moves the money; when the tip is then
-- rejected and the key is known to hold that close alone (no match posted under it), the reopened
-- payment moves to the next round, so support can still match it, not only refund it.
-- A constant default: no table rewrite.
ALTER TABLE c2b_payments ADD COLUMN match_round integer NOT NULL DEFAULT 0;
