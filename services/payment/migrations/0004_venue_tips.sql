-- A tip to a venue's own code (or a table's) credits the venue's pool: it has
-- a venue and no worker. credit_kind 'venue' posts to the pool account.
ALTER TABLE tips ALTER COLUMN worker_id DROP NOT NULL;
ALTER TABLE tips ADD CONSTRAINT tips_recipient CHECK (worker_id IS NOT NULL OR venue_id <> '');
ALTER TABLE tips DROP CONSTRAINT tips_credit_kind_check;
ALTER TABLE tips ADD CONSTRAINT tips_credit_kind_check CHECK (credit_kind IN ('worker', 'venue', 'suspense'));
CREATE INDEX tips_venue_pool ON tips (venue_id, created_at DESC) WHERE worker_id IS NULL;
