-- A held tip's approval claimed as settling an older replica's (during a rollout) whose wallet
-- release was posted before 0029's trigger refused its record: the claim is all that knows the
-- release was found posted, and what its receipt's money was found to be then ('refunded',
-- 'paid_elsewhere'). Kept with the claim, an approval again after the process stopped between the
-- claim and the record finishes it the same way, posting nothing, even once that payment was
-- reopened (it would otherwise post under a key holding the older replica's entry, and no longer
-- flag the payment paid twice). NULL: the claim posts its own release. Nullable, no default: no
-- table rewrite, nothing scanned.
ALTER TABLE tips ADD COLUMN approval_found_posted text;
