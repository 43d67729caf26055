-- Marks receipts sent (the tips' ids), in one statement that every credit recording and
-- CheckoutRequestID group carries: answers how many it marked. Its UPDATE reads the
-- receipts by their primary key only, one probe per id, whatever the table's size or
-- statistics: planned from the calling statement, the marks were joined with a plan kept
-- from when the table was young (a few hundred rows, ten ids estimated for any list),
-- which read payment.receipts whole on every call, an empty list's too. The settings
-- below leave the key's index scan the only plan. It visits the ids in the index's order
-- (a list's elements are sorted for the scan), so the rows are locked in the tips' order
-- and two replicas marking overlapping receipts never hold each other's rows. Creating a
-- function takes no lock on the table: safe while it is written.
CREATE FUNCTION mark_receipts_sent(tip_ids uuid[]) RETURNS integer LANGUAGE plpgsql VOLATILE
  SET enable_seqscan = off SET enable_bitmapscan = off SET enable_indexscan = on
AS $$
DECLARE
  marked integer;
BEGIN
  UPDATE payment.receipts SET sent_at = now(), attempts = attempts + 1 WHERE tip_id = ANY (tip_ids);
  GET DIAGNOSTICS marked = ROW_COUNT;
  RETURN marked;
END $$;
