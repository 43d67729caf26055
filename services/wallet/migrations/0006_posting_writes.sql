-- Less written and read per posting (bench/wallet-postings.ts prints both),
-- every money guarantee kept.

-- postings' foreign keys checked each line with a SELECT ... FOR KEY SHARE:
-- six index lookups and row locks per tip, and on the clearing and fee
-- accounts, rows that nearly every tip names, a MultiXact per lock under
-- concurrency. The posting statement, the only writer of postings, guarantees
-- both itself (ledger.ts, POSTING): a line's entry is the one it inserts
-- (claimed), and it writes nothing unless every line's account exists
-- (refused). What a posting names then stays: entries are immutable
-- (entries_immutable) and accounts are never deleted or renumbered (below).
ALTER TABLE postings DROP CONSTRAINT postings_entry_id_fkey, DROP CONSTRAINT postings_account_id_fkey;
CREATE FUNCTION refuse_account_removal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'accounts are never removed or renumbered: postings name them (% on %)', TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER accounts_kept BEFORE DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION refuse_account_removal();
-- AFTER and with a column: a balance update neither fires nor locks for it.
CREATE TRIGGER accounts_ids_kept AFTER UPDATE OF account_id ON accounts FOR EACH ROW EXECUTE FUNCTION refuse_account_removal();

-- Index entries that no query reads, written with every entry: entries.seq
-- (histories order by postings.posted_seq), entries by cause, and a NULL
-- reversal on every entry that reverses nothing. One reversal per entry stays
-- enforced by the partial unique index.
ALTER TABLE entries DROP COLUMN seq;
DROP INDEX entries_cause;
ALTER TABLE entries DROP CONSTRAINT entries_reverses_entry_id_key;
CREATE UNIQUE INDEX entries_reversal ON entries (reverses_entry_id) WHERE reverses_entry_id IS NOT NULL;

-- Postings are read by time only for owned accounts (pool takings,
-- statements), which always carry balance_after; the lines of the clearing
-- and fee accounts, two of a tip's three, no longer enter that index.
CREATE INDEX postings_owned_time ON postings (account_id, posted_at) INCLUDE (amount_minor) WHERE balance_after IS NOT NULL;
DROP INDEX postings_account_time;
