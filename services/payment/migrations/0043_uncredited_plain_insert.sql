-- A tip entering payment.uncredited (its credit decided, its wallet entry not recorded yet) is
-- inserted there by a plain insert under NOT EXISTS instead of INSERT ... ON CONFLICT DO NOTHING.
-- The speculative insertion of ON CONFLICT wrote a second WAL record (Heap CONFIRM) for every
-- decided tip although the row is never there: the triggers of 0015 fire only when the tip enters
-- or leaves the state, in the statement that updates the tip, and two statements changing one tip
-- take its row lock one after the other, so a tip's entry and exit never interleave. A row that
-- is there anyway (a deleted tip's, whose id came back) is still left as it was, as before. Only
-- the function's body changes: CREATE OR REPLACE takes no lock on payment.tips, and the triggers
-- of 0015 call the new body from their next firing, an old replica's statements included.
CREATE OR REPLACE FUNCTION uncredited_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.credit_key IS NOT NULL AND NEW.credit_entry_id IS NULL THEN
    INSERT INTO payment.uncredited (tip_id, method, completed_at)
      SELECT NEW.tip_id, NEW.method, NEW.completed_at WHERE NOT EXISTS (SELECT 1 FROM payment.uncredited WHERE tip_id = NEW.tip_id);
  ELSE
    DELETE FROM payment.uncredited WHERE tip_id = NEW.tip_id;
  END IF;
  RETURN NULL;
END $$;
