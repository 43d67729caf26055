-- Tips whose wallet entry is decided but not recorded yet (reconciliation posts
-- them), kept by triggers in a narrow table instead of the partial index
-- tips_uncredited: that index named credit_entry_id, so recording the entry
-- (the second update of every tip) could never be a HOT update and wrote a new
-- entry into each of the table's nine indexes. Now it changes no indexed
-- column, and with room left on the page (fillfactor) it updates the row in
-- place. Every path that decides or records a credit is covered, whatever the
-- statement, as the triggers run in it.
ALTER TABLE tips SET (fillfactor = 85);

CREATE TABLE uncredited (
  tip_id       uuid PRIMARY KEY,
  method       text NOT NULL,
  completed_at timestamptz
);
INSERT INTO uncredited (tip_id, method, completed_at)
  SELECT tip_id, method, completed_at FROM tips WHERE credit_key IS NOT NULL AND credit_entry_id IS NULL;

CREATE FUNCTION uncredited_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.credit_key IS NOT NULL AND NEW.credit_entry_id IS NULL THEN
    INSERT INTO payment.uncredited (tip_id, method, completed_at) VALUES (NEW.tip_id, NEW.method, NEW.completed_at) ON CONFLICT (tip_id) DO NOTHING;
  ELSE
    DELETE FROM payment.uncredited WHERE tip_id = NEW.tip_id;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER tips_uncredited_inserted AFTER INSERT ON tips FOR EACH ROW
  WHEN (NEW.credit_key IS NOT NULL AND NEW.credit_entry_id IS NULL) EXECUTE FUNCTION uncredited_follow();
-- Fires only when a statement sets either column and the tip enters or leaves the state.
CREATE TRIGGER tips_uncredited_updated AFTER UPDATE OF credit_key, credit_entry_id ON tips FOR EACH ROW
  WHEN ((NEW.credit_key IS NOT NULL AND NEW.credit_entry_id IS NULL) IS DISTINCT FROM (OLD.credit_key IS NOT NULL AND OLD.credit_entry_id IS NULL))
  EXECUTE FUNCTION uncredited_follow();

DROP INDEX tips_uncredited;
