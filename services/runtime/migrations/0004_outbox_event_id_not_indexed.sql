-- An event's id is made at random when the event is (runtime's events.ts), and the relay deletes a
-- row once the bus took it: the unique index on event_id guarded nothing the bus's and the inboxes'
-- deduplication by id do not, and cost each event an index entry (a WAL record of three, ~12% of
-- its bytes, about one block).
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_event_id_key;
