-- A held M-Pesa tip's approval in two short transactions around its wallet calls, no lock held
-- across them: the first claims the tip (checks its receipt, then sets approval_receipt), the
-- second records it succeeded once wallet posted. Set means "being approved": the decision is
-- taken, a late callback after it is flagged as paid twice if the approval goes through, and an
-- approval again (another admin's, or after a crash) finishes it under the same wallet key. It
-- names the receipt the approval's wallet entry carries, fixed at the claim: a receipt the tip
-- learns later (a late callback) would build another entry, which wallet refuses under that key.
-- Nullable, no default: no table rewrite, nothing scanned.
ALTER TABLE tips ADD COLUMN approval_receipt text;
