-- A venue's staff, shifts, split rules and distributions of its tip pool.
-- The money itself is in the wallet's ledger (the venue's pool account and
-- the workers' wallets); these tables say who gets what and why.

-- Jobs at a venue. "manager" (is_manager) is always there; managers are left
-- out of splits unless a rule includes them.
CREATE TABLE roles (
  venue_id   uuid NOT NULL,
  role_id    text NOT NULL CHECK (role_id ~ '^[a-z][a-z0-9_]{1,31}$'),
  name       text NOT NULL,
  points     integer NOT NULL CHECK (points BETWEEN 0 AND 1000),
  is_manager boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (venue_id, role_id)
);

-- One membership of one venue. A person who leaves and comes back gets a new row.
CREATE TABLE members (
  member_id         uuid PRIMARY KEY,
  venue_id          uuid NOT NULL,
  -- Set when the invitation is accepted by the signed-in worker.
  worker_id         uuid,
  -- 254XXXXXXXXX; shown masked.
  phone             text NOT NULL,
  display_name      text NOT NULL,
  role_id           text NOT NULL,
  -- SHA-256 of the token in the invitation link (the token itself is never stored).
  invite_token_hash text UNIQUE,
  invite_key        text NOT NULL,
  invited_by        text NOT NULL,
  invited_at        timestamptz NOT NULL DEFAULT now(),
  accepted_at       timestamptz,
  joined_at         timestamptz NOT NULL,
  left_at           timestamptz,
  left_reason       text NOT NULL DEFAULT '',
  FOREIGN KEY (venue_id, role_id) REFERENCES roles (venue_id, role_id),
  UNIQUE (venue_id, invite_key),
  CHECK (left_at IS NULL OR left_at >= joined_at)
);
CREATE UNIQUE INDEX members_current_phone ON members (venue_id, phone) WHERE left_at IS NULL;
CREATE UNIQUE INDEX members_current_worker ON members (venue_id, worker_id) WHERE left_at IS NULL AND worker_id IS NOT NULL;
CREATE INDEX members_worker ON members (worker_id) WHERE worker_id IS NOT NULL;

-- source: 1 clock, 2 manager, 3 import (ttip.venue.v1.ShiftSource).
CREATE TABLE shifts (
  shift_id        uuid PRIMARY KEY,
  venue_id        uuid NOT NULL,
  member_id       uuid NOT NULL REFERENCES members (member_id),
  started_at      timestamptz NOT NULL,
  -- NULL while clocked in; an open shift counts for nothing until it is closed.
  ended_at        timestamptz,
  source          smallint NOT NULL CHECK (source IN (1, 2, 3)),
  recorded_by     text NOT NULL,
  idempotency_key text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (ended_at IS NULL OR (ended_at > started_at AND ended_at - started_at <= interval '24 hours')),
  UNIQUE (venue_id, idempotency_key)
);
CREATE UNIQUE INDEX shifts_one_open ON shifts (member_id) WHERE ended_at IS NULL;
CREATE INDEX shifts_venue_time ON shifts (venue_id, started_at);
CREATE INDEX shifts_member_time ON shifts (member_id, started_at);

-- Versions of a venue's split rule; never edited. method: ttip.venue.v1.SplitMethod.
CREATE TABLE split_rules (
  venue_id         uuid NOT NULL,
  version          integer NOT NULL,
  method           smallint NOT NULL CHECK (method BETWEEN 1 AND 4),
  include_managers boolean NOT NULL,
  -- [{"member_id": ..., "basis_points": ...}] for fixed percentages.
  fixed_shares     jsonb NOT NULL DEFAULT '[]',
  note             text NOT NULL DEFAULT '',
  created_by       text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  idempotency_key  text NOT NULL,
  request_hash     text NOT NULL,
  PRIMARY KEY (venue_id, version),
  UNIQUE (venue_id, idempotency_key)
);

-- One split of a period's pool takings. 'posting' until the wallet's entry is
-- recorded (a retry or the background pass finishes it), then 'confirmed';
-- 'reversed' after a reversing entry; 'abandoned' if the ledger refused it.
CREATE TABLE distributions (
  distribution_id   uuid PRIMARY KEY,
  venue_id          uuid NOT NULL,
  period_start      timestamptz NOT NULL,
  period_end        timestamptz NOT NULL CHECK (period_end > period_start),
  -- How many earlier distributions of this exact period were reversed.
  revision          integer NOT NULL,
  currency          text NOT NULL,
  rule_version      integer NOT NULL,
  method            smallint NOT NULL,
  collected_minor   bigint NOT NULL,
  tip_count         bigint NOT NULL,
  status            text NOT NULL CHECK (status IN ('posting', 'confirmed', 'reversed', 'abandoned')),
  entry_id          uuid,
  reversal_entry_id uuid,
  reversal_reason   text NOT NULL DEFAULT '',
  abandon_reason    text NOT NULL DEFAULT '',
  confirmed_by      text NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  confirmed_at      timestamptz,
  reversed_at       timestamptz,
  reversed_by       text NOT NULL DEFAULT ''
);
-- Once per venue and period (and revision): a repeated confirmation finds it.
CREATE UNIQUE INDEX distributions_once ON distributions (venue_id, period_start, period_end, revision) WHERE status <> 'abandoned';
CREATE INDEX distributions_venue ON distributions (venue_id, period_start DESC);
CREATE INDEX distributions_posting ON distributions (created_at) WHERE status = 'posting';

-- Who got what from a distribution, and why. Immutable.
CREATE TABLE shares (
  distribution_id uuid NOT NULL REFERENCES distributions (distribution_id),
  line            integer NOT NULL,
  member_id       uuid NOT NULL,
  worker_id       uuid NOT NULL,
  display_name    text NOT NULL,
  role_id         text NOT NULL,
  weight          bigint NOT NULL,
  total_weight    bigint NOT NULL,
  minutes         bigint NOT NULL,
  amount_minor    bigint NOT NULL CHECK (amount_minor >= 0),
  remainder_minor bigint NOT NULL,
  explanation     text NOT NULL,
  PRIMARY KEY (distribution_id, member_id)
);
CREATE INDEX shares_worker ON shares (worker_id);

-- Rule changes, distributions, reversals and staff changes. Kept (UK law asks three years); immutable.
CREATE TABLE audit_records (
  sequence bigserial PRIMARY KEY,
  venue_id uuid NOT NULL,
  at       timestamptz NOT NULL DEFAULT now(),
  actor    text NOT NULL,
  action   text NOT NULL,
  detail   jsonb NOT NULL
);
CREATE INDEX audit_records_venue ON audit_records (venue_id, sequence DESC);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'venue % rows are immutable (%)', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER shares_immutable BEFORE UPDATE OR DELETE ON shares FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER split_rules_immutable BEFORE UPDATE OR DELETE ON split_rules FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_records_immutable BEFORE UPDATE OR DELETE ON audit_records FOR EACH ROW EXECUTE FUNCTION refuse_change();
