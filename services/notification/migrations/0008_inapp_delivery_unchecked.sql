-- An in-app notice's delivery_id is no longer kept unique by an index. The notice is written only
-- by the statement that inserts its delivery, from the rows that insert made (insertDeliveries'
-- `shown`, one per new delivery), so no delivery can get two; nothing reads notices by delivery.
-- The index cost each notice an entry (a WAL record per tip of ~76) to guard against nothing.
-- Safe on a live database: dropping a constraint changes no rows and builds nothing; it holds the
-- table's lock for an instant, and lock_timeout has it give up (the start fails and is tried
-- again) rather than stall the table's queries behind a long transaction.
SET LOCAL lock_timeout = '5s';
ALTER TABLE inapp_notifications DROP CONSTRAINT IF EXISTS inapp_notifications_delivery_id_key;
