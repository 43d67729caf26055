-- A refresh token replaced before its holder ever had it: a rotation asked again with the token before it,
-- within a minute, because its answer was lost (sessions.ts). Such tokens do not count as used by the holder.
-- A nullable column without a default: nothing is rewritten, the lock is held for an instant.
ALTER TABLE refresh_tokens ADD COLUMN superseded_at timestamptz;
