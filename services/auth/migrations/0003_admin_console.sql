-- The admin console: blocked accounts, and the one-time token that makes the first admin.

ALTER TABLE users ADD COLUMN blocked_at timestamptz;
ALTER TABLE users ADD COLUMN blocked_reason text NOT NULL DEFAULT '';

-- At most one live token (a newer one spends the older); stored hashed, shown once.
CREATE TABLE setup_tokens (
  token_hash bytea PRIMARY KEY,
  issued_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  -- Set when claimed or replaced.
  spent_at timestamptz,
  claimed_by uuid REFERENCES users
);
