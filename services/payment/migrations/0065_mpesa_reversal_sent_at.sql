-- When a reversal's request went to M-Pesa: its wait for a result is timed from then. Timed from the reversal's
-- creation, one sent hours late (M-Pesa unreachable, a refund retried) was told to support as silent for an hour
-- seconds after it went, and support's "not reversed" could then give the share back before M-Pesa's result came.
-- A nullable column without a default: nothing is rewritten; rows sent before it fall back to created_at.
ALTER TABLE mpesa_reversals ADD COLUMN sent_at timestamptz;
