-- The provider's id of each message it accepted, for its delivery reports to find the delivery.
-- Kept here, not on the delivery row: the record of a send then changes no column an index of
-- deliveries reads (status, body, last_error, updated_at), so with the room fillfactor 70 leaves
-- it is a HOT update, one WAL record, instead of a new entry in each of deliveries' five indexes
-- (measured: 72 -> ~60 WAL records per tip). Unique as deliveries_provider_message was: a provider
-- giving one id twice has the second record refused, and written without the id (recordRefused).
-- No foreign key: written by the statement that records the send, beside the delivery's update,
-- and deliveries are never deleted; a key's check would lock the delivery row (a WAL record) per send.
-- Safe on a live database: a new, empty table (no lock on deliveries). Sends recorded before it keep
-- their ids on the delivery row, whose partial index stays for their reports (delivery.ts's
-- MESSAGE_DELIVERY reads both); new rows leave those columns NULL and add nothing to that index.
CREATE TABLE provider_messages (
  provider    text NOT NULL,
  message_id  text NOT NULL,
  delivery_id uuid NOT NULL,
  PRIMARY KEY (provider, message_id)
);
