-- Where the relay deletes published rows (ttip.outbox_keep_published not on: the default), every
-- row in the outbox is unpublished, so outbox_unpublished holds what outbox_pkey holds: a second
-- index entry, a WAL record, per event for nothing. The relay's claim (published_at IS NULL ORDER
-- BY seq) reads the primary key instead, at the same cost: the entries it passes are the deleted
-- rows not vacuumed yet, which the partial index held too. Replicas of an older release send the
-- same statements; theirs are planned again on the primary key when the index goes.
-- A database that keeps published rows keeps the index (its claim would read past every row
-- ever published without it); one switched to keeping them later gets it back from its relay.
DO $$
BEGIN
  IF current_setting('ttip.outbox_keep_published', true) IS DISTINCT FROM 'on' THEN
    DROP INDEX IF EXISTS outbox_unpublished;
  END IF;
END $$;
