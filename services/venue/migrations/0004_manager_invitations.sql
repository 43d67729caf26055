-- Invitations to manage a venue (co-managers), by phone; whoever accepts, signed in with that number, manages it.
-- qr keeps who manages a venue (every access check reads it); this keeps how they came to, and the names given.
CREATE TABLE manager_invitations (
  invitation_id uuid PRIMARY KEY,
  venue_id      uuid NOT NULL,
  -- 254XXXXXXXXX; shown masked.
  phone         text NOT NULL,
  display_name  text NOT NULL,
  -- SHA-256 of the token in the link (the token itself is never stored); NULL once cancelled.
  token_hash    text UNIQUE,
  invite_key    text NOT NULL,
  invited_by    text NOT NULL,
  invited_at    timestamptz NOT NULL DEFAULT now(),
  accepted_by   uuid,
  accepted_at   timestamptz,
  cancelled_at  timestamptz,
  UNIQUE (venue_id, invite_key),
  CHECK (accepted_at IS NULL OR cancelled_at IS NULL)
);
-- One pending invitation per number and venue: a new one replaces the link of the last.
CREATE UNIQUE INDEX manager_invitations_pending_phone ON manager_invitations (venue_id, phone) WHERE accepted_at IS NULL AND cancelled_at IS NULL;
