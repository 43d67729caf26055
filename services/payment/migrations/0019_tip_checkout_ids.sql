-- A tip's CheckoutRequestID stays unique (one STK push per tip, a push's id on one tip at
-- most), kept by triggers in a narrow table instead of the partial unique index
-- tips_checkout_request_id_key, which 0020 drops. Nothing looks a tip up by its
-- CheckoutRequestID (callbacks find theirs by callback token), yet the index named the
-- column, so storing a push's id (the first update of every M-Pesa tip) could never be a
-- HOT update: it wrote a new entry into each of the table's other indexes (seven for an
-- M-Pesa tip). Now it changes no indexed column and updates the row in place; the
-- trigger adds one narrow row and one index entry. The triggers run in whatever statement
-- sets the column, an old replica's included, so the rule holds for every writer; a
-- second tip given a taken id fails as before (23505, unique violation), by the end of
-- its statement. Creating the table, the function and the triggers reads no rows: the
-- triggers take the table's SHARE ROW EXCLUSIVE lock (writes wait) only for this
-- transaction's few catalogue writes, and the runner's lock_timeout bounds how long writes
-- queue behind it if a long transaction holds the table (the file is then tried again).
-- The ids already stored are copied by 0020, under no lock that stops writes.

CREATE TABLE tip_checkout_ids (
  checkout_request_id text PRIMARY KEY,
  tip_id              uuid NOT NULL
);

-- Inserted when a tip gets its id; a changed id (only tests clear one) gives up the old.
CREATE FUNCTION checkout_id_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.checkout_request_id IS NOT NULL THEN
    DELETE FROM payment.tip_checkout_ids WHERE checkout_request_id = OLD.checkout_request_id AND tip_id = OLD.tip_id;
  END IF;
  IF NEW.checkout_request_id IS NOT NULL THEN
    INSERT INTO payment.tip_checkout_ids (checkout_request_id, tip_id) VALUES (NEW.checkout_request_id, NEW.tip_id);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER tips_checkout_id_inserted AFTER INSERT ON tips FOR EACH ROW
  WHEN (NEW.checkout_request_id IS NOT NULL) EXECUTE FUNCTION checkout_id_follow();
-- Fires only when a statement sets the column to another value (a callback re-stating the push's id changes nothing).
CREATE TRIGGER tips_checkout_id_updated AFTER UPDATE OF checkout_request_id ON tips FOR EACH ROW
  WHEN (OLD.checkout_request_id IS DISTINCT FROM NEW.checkout_request_id) EXECUTE FUNCTION checkout_id_follow();
