-- An entry as one row: its header, the entry reversing it, and its lines and
-- conversions as arrays in line order, found by id or else by idempotency key.
-- loadEntry reads an entry with it in one statement, and the posting statement
-- answers a replay with it (ledger.ts). PL/pgSQL, so its queries are planned
-- once per session: written into the posting statement they were planned with
-- every posting (measured: postgres CPU per posting 0.7 -> 1.9 ms), though a
-- posting that claims its key never runs them. Names are schema-qualified: it
-- runs with the caller's search_path.
CREATE FUNCTION entry_read(by_id uuid, by_key text)
RETURNS TABLE (
  entry_id uuid, idempotency_key text, request_hash text, cause_kind text, cause_ref text, description text,
  reversed_by uuid, posted_at timestamptz,
  accounts text[], amounts text[], currencies text[], memos text[],
  from_minor text[], from_currency text[], to_minor text[], to_currency text[], rate text[], rate_source text[], rate_time timestamptz[])
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
  id uuid := by_id;
BEGIN
  IF id IS NULL THEN
    SELECT e.entry_id INTO id FROM wallet.entries e WHERE e.idempotency_key = by_key;
  END IF;
  RETURN QUERY
  SELECT e.entry_id, e.idempotency_key, e.request_hash, e.cause_kind, e.cause_ref, e.description,
         (SELECT r.entry_id FROM wallet.entries r WHERE r.reverses_entry_id = e.entry_id),
         p.posted_at, p.accounts, p.amounts, p.currencies, p.memos,
         c.from_minor, c.from_currency, c.to_minor, c.to_currency, c.rate, c.rate_source, c.rate_time
    FROM wallet.entries e,
         LATERAL (SELECT min(q.posted_at) AS posted_at, array_agg(q.account_id::text ORDER BY q.line) AS accounts,
                         array_agg(q.amount_minor::text ORDER BY q.line) AS amounts, array_agg(q.currency::text ORDER BY q.line) AS currencies,
                         array_agg(q.memo ORDER BY q.line) AS memos
                    FROM wallet.postings q WHERE q.entry_id = e.entry_id) p,
         LATERAL (SELECT array_agg(x.from_minor::text ORDER BY x.line) AS from_minor, array_agg(x.from_currency::text ORDER BY x.line) AS from_currency,
                         array_agg(x.to_minor::text ORDER BY x.line) AS to_minor, array_agg(x.to_currency::text ORDER BY x.line) AS to_currency,
                         array_agg(x.rate ORDER BY x.line) AS rate, array_agg(x.rate_source ORDER BY x.line) AS rate_source,
                         array_agg(x.rate_time ORDER BY x.line) AS rate_time
                    FROM wallet.entry_conversions x WHERE x.entry_id = e.entry_id) c
   WHERE e.entry_id = id;
END $$;
