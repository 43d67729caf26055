-- How a worker or venue is shown on the tip page. owner_kind: 1 worker, 2 venue.
CREATE TABLE profiles (
  owner_kind   smallint NOT NULL CHECK (owner_kind IN (1, 2)),
  owner_id     uuid NOT NULL,
  display_name text NOT NULL,
  photo_url    text NOT NULL DEFAULT '',
  active       boolean NOT NULL DEFAULT true,
  currency     text NOT NULL DEFAULT 'KES',
  city         text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (owner_kind, owner_id)
);

-- Who may manage a venue's codes (user ids from auth).
CREATE TABLE venue_managers (
  venue_id   uuid NOT NULL,
  manager_id text NOT NULL,
  added_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (venue_id, manager_id)
);

CREATE TABLE venue_staff (
  venue_id  uuid NOT NULL,
  worker_id uuid NOT NULL,
  added_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (venue_id, worker_id)
);

-- status: 1 active, 2 rotated, 3 revoked.
CREATE TABLE qr_codes (
  qr_code_id        uuid PRIMARY KEY,
  short_code        text NOT NULL UNIQUE,
  -- The paybill account number that names this code (and so its worker) on C2B payments.
  account_reference text NOT NULL UNIQUE,
  owner_kind        smallint NOT NULL CHECK (owner_kind IN (1, 2)),
  owner_id          uuid NOT NULL,
  venue_id          uuid,
  -- ttip.qr.v1.DynamicParameters in protobuf binary.
  parameters        bytea NOT NULL,
  expires_at        timestamptz,
  status            smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2, 3)),
  replaced_by       uuid REFERENCES qr_codes (qr_code_id),
  revoked_reason    text NOT NULL DEFAULT '',
  created_by        text NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  status_changed_at timestamptz
);
CREATE INDEX qr_codes_owner ON qr_codes (owner_kind, owner_id, created_at DESC, qr_code_id DESC);
CREATE INDEX qr_codes_venue ON qr_codes (venue_id) WHERE venue_id IS NOT NULL;

-- Retried creates and rotations return the first answer.
CREATE TABLE idempotency_keys (
  caller          text NOT NULL,
  idempotency_key text NOT NULL,
  operation       text NOT NULL,
  request_hash    text NOT NULL,
  qr_code_id      uuid NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (caller, idempotency_key)
);

-- One row per device per code per minute: a page reload or retried call is the same scan.
CREATE TABLE scans (
  scan_id     uuid PRIMARY KEY,
  qr_code_id  uuid NOT NULL REFERENCES qr_codes (qr_code_id),
  device_hash text NOT NULL,
  referrer    text NOT NULL DEFAULT '',
  minute      timestamptz NOT NULL,
  scanned_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (qr_code_id, device_hash, minute)
);
CREATE INDEX scans_code_time ON scans (qr_code_id, scanned_at);

-- Tips that came through a code (from ttip.payment.tip_succeeded), for conversion.
CREATE TABLE tips (
  tip_id      text PRIMARY KEY,
  qr_code_id  uuid NOT NULL,
  occurred_at timestamptz NOT NULL
);
CREATE INDEX tips_code_time ON tips (qr_code_id, occurred_at);

-- Embedded and test runs only: the generated signing key, so printed codes survive a restart.
CREATE TABLE dev_settings (
  key   text PRIMARY KEY,
  value text NOT NULL
);
