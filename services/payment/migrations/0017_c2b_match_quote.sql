-- The fee a suspense payment's match charges, quoted at the match's first
-- attempt and kept: a match again (its answer lost) builds the very entry the
-- first posted under the match's wallet key, whatever fee schedule is in force
-- by then. Quoted anew, a changed schedule would build another entry, which
-- wallet refuses under that key, and the payment could never close. Both are
-- written by one statement, before the entry is posted; NULL: no match tried.
ALTER TABLE c2b_payments
  ADD COLUMN match_worker_minor bigint,
  ADD COLUMN match_fee_schedule_version integer;
