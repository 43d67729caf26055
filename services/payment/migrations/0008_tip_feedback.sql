-- The customer's rating and message, given after the tip is confirmed (RateTip).
-- rated_at says feedback was taken, so it is given once.
ALTER TABLE tips ADD COLUMN rated_at timestamptz;
