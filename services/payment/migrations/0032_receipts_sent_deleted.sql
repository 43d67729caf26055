-- A receipt sent is deleted, not marked: payment.receipts holds the receipts still owed, a queue
-- like payment.uncredited. Marking it (sent_at) changed a column in receipts_unsent's predicate, so
-- the update was never HOT: a new row version and a new entry in the key's index for every tip, on
-- top of the entry receipts_unsent took at the insert (0033 drops that index: the owed receipts are
-- the table's rows). A delete writes one record and no index entry. The function keeps its name and
-- its plan settings (0018): replicas still running the code before this file delete through it too,
-- in the ids' order, by the key's index. Notification still dedupes on receipt:<tip id>, so a receipt
-- owed again (a credit recorded twice cannot be: credits.ts) is sent once.
CREATE OR REPLACE FUNCTION mark_receipts_sent(tip_ids uuid[]) RETURNS integer LANGUAGE plpgsql VOLATILE
  SET enable_seqscan = off SET enable_bitmapscan = off SET enable_indexscan = on
AS $$
DECLARE
  marked integer;
BEGIN
  DELETE FROM payment.receipts WHERE tip_id = ANY (tip_ids);
  GET DIAGNOSTICS marked = ROW_COUNT;
  RETURN marked;
END $$;
