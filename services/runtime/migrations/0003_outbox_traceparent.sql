-- W3C trace context of the work that wrote the event, carried to its consumers.
-- Inserts that do not name it get the one their transaction set (see withTransaction).
ALTER TABLE outbox ADD COLUMN traceparent text DEFAULT NULLIF(current_setting('ttip.traceparent', true), '');
