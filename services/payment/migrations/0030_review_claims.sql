-- A held M-Pesa tip's rejection in steps, as its approval (0028): a short transaction claims it
-- (rejection_claim: what its receipt's money was found to be, read under the tip's row lock), the
-- wallet closes the approval's key and reverses a spent hold outside any transaction (each by its
-- key), a second short transaction records it failed. Who claimed, and when (either decision), for
-- the step that finishes it: another admin's, or the resumer's, which finishes the claims a stopped
-- process left (0031 indexes them). Nullable columns, no default: no table rewrite, nothing scanned.
ALTER TABLE tips ADD COLUMN rejection_claim text, ADD COLUMN review_claimed_at timestamptz,
  ADD COLUMN review_claimed_by text, ADD COLUMN review_note text;
