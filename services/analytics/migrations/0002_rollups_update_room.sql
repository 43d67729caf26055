-- Partitions of the rollups keep room on their pages for their rows' updates (store.ts's
-- ROLLUP_FILLFACTOR, which partitions made from now on get): an update that finds room on its page
-- is HOT, with no new entry in the key's index. Pages already written keep what they hold; the
-- setting counts for the pages filled from now on.
DO $$
DECLARE p regclass;
BEGIN
  FOR p IN SELECT i.inhrelid::regclass FROM pg_inherits i WHERE i.inhparent = 'rollups'::regclass LOOP
    EXECUTE format('ALTER TABLE %s SET (fillfactor = 80)', p);
  END LOOP;
END $$;
