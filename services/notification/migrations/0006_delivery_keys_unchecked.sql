-- delivery_attempts and inapp_notifications keep their delivery_id without a foreign key. Each of
-- their rows is written by the statement that inserts the delivery it names or claims it (an
-- UPDATE of that row: insertDeliveries, claimManyUnlocked, markSending), and deliveries are never
-- deleted, so no row could break the key; its check locked the delivery for each attempt and
-- in-app notice (FOR KEY SHARE: a WAL record each, 3 per tip of ~84) to guard against nothing.
-- provider_messages has none for the same reason. Reads join on delivery_id as before.
-- Safe on a live database: dropping a constraint changes no rows and builds nothing; it holds each
-- table's lock for an instant, and lock_timeout has it give up (the start fails and is tried
-- again) rather than stall every query of the tables behind a long transaction.
SET LOCAL lock_timeout = '5s';
ALTER TABLE delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_delivery_id_fkey;
ALTER TABLE inapp_notifications DROP CONSTRAINT IF EXISTS inapp_notifications_delivery_id_fkey;
