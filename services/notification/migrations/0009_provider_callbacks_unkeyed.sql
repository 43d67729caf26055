-- Every provider report (a delivery report per SMS) wrote an entry in provider_callbacks_pkey, a WAL
-- record per report (2 per tip of ~62), that no query reads: reports are found by (provider, message
-- id) while not applied (provider_callbacks_pending), expired by age while not applied
-- (provider_callbacks_unmatched_age, then by ctid), and marked applied by the same partial index;
-- no statement looks one up by seq, and nothing references the table. An applied report (nearly
-- all of them) now enters no index. seq stays, from its sequence: unique and in arrival order as before.
-- Safe on a live database: dropping a constraint changes no rows and builds nothing; it holds the
-- table's lock for an instant, and the runner's lock_timeout has it give up rather than stall the
-- webhooks' inserts behind a long transaction.
ALTER TABLE provider_callbacks DROP CONSTRAINT IF EXISTS provider_callbacks_pkey;
