-- A venue pool's takings are split per period (shift, day, week). Each
-- distribution claims its period here, in the transaction that posts it and
-- under the pool account's row lock, so the same tips are never split twice;
-- a reversal releases the claim so the period can be split again.
CREATE TABLE pool_distributions (
  entry_id          uuid PRIMARY KEY REFERENCES entries (entry_id),
  account_id        uuid NOT NULL REFERENCES accounts (account_id),
  distribution_id   uuid NOT NULL,
  period_start      timestamptz NOT NULL,
  period_end        timestamptz NOT NULL CHECK (period_end > period_start),
  amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
  reversal_entry_id uuid REFERENCES entries (entry_id),
  created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pool_distributions_open ON pool_distributions (account_id, period_start) WHERE reversal_entry_id IS NULL;

-- Takings per period are summed by posting time.
CREATE INDEX postings_account_time ON postings (account_id, posted_at) INCLUDE (amount_minor);
