-- An invitation's link expires, and a pending invitation may be texted a new one (the old stops working).
-- *_sent_at: when the current link was made; *_expires_at: when it stops working; *_send_key: the idempotency key
-- that made it (a repeat texts nothing more once texted); *_texted: notification took its SMS.
-- Links pending before this migration work for the full 14 days from it: none stops working at the upgrade.
ALTER TABLE members
  ADD COLUMN invite_sent_at    timestamptz,
  ADD COLUMN invite_expires_at timestamptz,
  ADD COLUMN invite_send_key   text,
  ADD COLUMN invite_texted     boolean NOT NULL DEFAULT true;
UPDATE members SET invite_sent_at = invited_at, invite_expires_at = now() + interval '14 days'
 WHERE worker_id IS NULL AND left_at IS NULL;

ALTER TABLE manager_invitations
  ADD COLUMN sent_at    timestamptz,
  ADD COLUMN expires_at timestamptz,
  ADD COLUMN send_key   text,
  ADD COLUMN texted     boolean NOT NULL DEFAULT true;
UPDATE manager_invitations SET sent_at = invited_at, expires_at = now() + interval '14 days'
 WHERE accepted_at IS NULL AND cancelled_at IS NULL;
