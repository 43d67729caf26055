-- The reconciliation pass follows reversals up (mpesa-reversals.ts, followUpReversals): it sends those left
-- debited (never sent) and tells support, once, of those with no result for long.
-- When support was told a reversal is in doubt (its answer lost, timed out in M-Pesa's queue, no result for long).
ALTER TABLE mpesa_reversals ADD COLUMN alerted_at timestamptz;
-- Reversals not decided, oldest first, whatever the number decided.
CREATE INDEX mpesa_reversals_open ON mpesa_reversals (created_at) WHERE status IN ('debited', 'sending', 'sent');
