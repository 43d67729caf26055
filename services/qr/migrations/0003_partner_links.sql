-- Partner keys allowed to act for a worker or a venue (a venue's link covers its
-- staff). One row per (key, owner): unlinking stamps it, linking again clears the stamp.
CREATE TABLE partner_links (
  key_id      uuid NOT NULL,
  owner_kind  smallint NOT NULL CHECK (owner_kind IN (1, 2)),
  owner_id    uuid NOT NULL,
  linked_by   text NOT NULL,
  linked_at   timestamptz NOT NULL DEFAULT now(),
  unlinked_by text,
  unlinked_at timestamptz,
  PRIMARY KEY (key_id, owner_kind, owner_id)
);
-- The owner's list (the worker's or the manager's screen).
CREATE INDEX partner_links_owner ON partner_links (owner_kind, owner_id, linked_at);
