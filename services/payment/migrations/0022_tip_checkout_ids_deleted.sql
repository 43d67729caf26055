-- A deleted tip gives its CheckoutRequestID up, as its entry in the unique index that 0019's
-- triggers replace did: without this trigger the id stayed in tip_checkout_ids, owned by no
-- tip, and refused to any tip after. Creating the function and trigger reads no rows; the
-- trigger takes the table's SHARE ROW EXCLUSIVE lock for this transaction's catalogue writes
-- only (the runner's lock_timeout bounds the wait). TRUNCATE fires no row trigger: nothing
-- truncates payment.tips.
CREATE FUNCTION checkout_id_released() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM payment.tip_checkout_ids WHERE checkout_request_id = OLD.checkout_request_id AND tip_id = OLD.tip_id;
  RETURN NULL;
END $$;

CREATE TRIGGER tips_checkout_id_deleted AFTER DELETE ON tips FOR EACH ROW
  WHEN (OLD.checkout_request_id IS NOT NULL) EXECUTE FUNCTION checkout_id_released();
