-- Users, OTP challenges, PINs, sessions and refresh tokens, devices, partner
-- keys, signing keys and the append-only audit log.

CREATE TABLE users (
  user_id uuid PRIMARY KEY,
  -- E.164 without the plus, e.g. 254712345678; the one place the full number lives.
  phone text NOT NULL UNIQUE,
  roles text[] NOT NULL,
  display_name text NOT NULL DEFAULT '',
  photo_url text NOT NULL DEFAULT '',
  locale smallint NOT NULL DEFAULT 1,
  birth_year int,
  pin_hash text,
  -- PIN tries since the last success or lockout; counted before the hash is checked.
  pin_failures int NOT NULL DEFAULT 0,
  -- Lockouts in a row: each one lasts twice as long as the one before.
  lockouts int NOT NULL DEFAULT 0,
  locked_until timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE otp_challenges (
  challenge_id uuid PRIMARY KEY,
  phone text NOT NULL,
  locale smallint NOT NULL DEFAULT 1,
  -- HMAC of the code under a server key: a read of this table reveals no code.
  code_hash bytea NOT NULL,
  attempts int NOT NULL DEFAULT 0,
  expires_at timestamptz NOT NULL,
  verified_at timestamptz,
  -- Set when the challenge has served its purpose (tokens issued or PIN reset).
  consumed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX otp_challenges_phone ON otp_challenges (phone, created_at DESC);

-- The step between a verified OTP and the PIN for users who have one.
CREATE TABLE pin_sessions (
  pin_session_id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users,
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- A session is one refresh-token family.
CREATE TABLE sessions (
  session_id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users,
  device_id uuid,
  user_agent text NOT NULL DEFAULT '',
  ip_address text NOT NULL DEFAULT '',
  pin_verified boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  revoked_reason text
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
  token_hash bytea PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions,
  issued_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  -- Set when rotated; presenting it again is reuse.
  used_at timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE devices (
  device_id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users,
  name text NOT NULL,
  public_key_jwk text NOT NULL,
  registered_at timestamptz NOT NULL DEFAULT now(),
  last_verified_at timestamptz,
  removed_at timestamptz
);
CREATE INDEX devices_user ON devices (user_id) WHERE removed_at IS NULL;

CREATE TABLE device_challenges (
  challenge_id uuid PRIMARY KEY,
  device_id uuid NOT NULL REFERENCES devices,
  user_id uuid NOT NULL REFERENCES users,
  purpose text NOT NULL,
  challenge bytea NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);

CREATE TABLE step_up_tokens (
  token_hash bytea PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users,
  device_id uuid NOT NULL REFERENCES devices,
  purpose text NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);

CREATE TABLE partner_api_keys (
  key_id uuid PRIMARY KEY,
  partner_name text NOT NULL,
  scopes text[] NOT NULL,
  prefix text NOT NULL,
  -- SHA-256 of the secret, to recognise it.
  secret_hash bytea NOT NULL,
  -- HMAC request signing needs the secret itself on the verifying side: it is
  -- kept sealed (AES-256-GCM) under AUTH_KEY_ENCRYPTION_SECRET, never in clear.
  secret_sealed text NOT NULL,
  idempotency_key text NOT NULL UNIQUE,
  request_fingerprint text NOT NULL,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  last_used_at timestamptz
);

CREATE TABLE signing_keys (
  kid text PRIMARY KEY,
  alg text NOT NULL,
  public_jwk jsonb NOT NULL,
  private_sealed text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Published in the JWKS at once, signs only from here on: verifiers that
  -- cached the JWKS meet the new kid after they can have refetched it.
  activates_at timestamptz NOT NULL DEFAULT now(),
  -- No longer signs from here on; still in the JWKS until its tokens have expired.
  retired_at timestamptz
);

CREATE TABLE audit_events (
  seq bigserial UNIQUE,
  audit_event_id uuid PRIMARY KEY,
  action smallint NOT NULL,
  user_id uuid,
  actor_user_id uuid,
  ip_address text NOT NULL DEFAULT '',
  detail text NOT NULL DEFAULT '',
  occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_user ON audit_events (user_id, seq DESC);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END $$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
