-- The double-entry ledger. Amounts are signed minor units: credits positive,
-- debits negative; every entry sums to zero per currency.

CREATE TABLE accounts (
  account_id    uuid PRIMARY KEY,
  kind          smallint NOT NULL,           -- ttip.wallet.v1.AccountKind
  owner_kind    smallint NOT NULL,           -- ttip.wallet.v1.OwnerKind
  owner_id      text NOT NULL DEFAULT '',    -- worker or venue id; '' for platform accounts
  currency      char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  -- Money owed to an owner can never go below zero; system accounts (clearing,
  -- fees, suspense) carry the other side of every entry and may.
  may_go_negative boolean NOT NULL,
  -- Owned accounts: the sum of their postings, kept under the row lock of each
  -- posting. System accounts stand on nearly every entry and keep none (0):
  -- their balance is summed from their postings, so they never serialise tips.
  balance_minor bigint NOT NULL DEFAULT 0,
  held_minor    bigint NOT NULL DEFAULT 0 CHECK (held_minor >= 0),
  created_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (kind, owner_kind, owner_id, currency),
  CONSTRAINT available_not_negative CHECK (may_go_negative OR balance_minor - held_minor >= 0)
);
CREATE INDEX accounts_owner ON accounts (owner_id);

CREATE TABLE entries (
  seq             bigserial UNIQUE,
  entry_id        uuid PRIMARY KEY,
  idempotency_key text NOT NULL UNIQUE,
  -- Fingerprint of what was asked, so a key reused for other postings is refused.
  request_hash    text NOT NULL,
  cause_kind      text NOT NULL,             -- the EntryCause oneof case
  cause_ref       text NOT NULL,
  description     text NOT NULL DEFAULT '',
  -- One reversal per entry, enforced here.
  reverses_entry_id uuid UNIQUE REFERENCES entries (entry_id),
  posted_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX entries_cause ON entries (cause_kind, cause_ref);

CREATE TABLE postings (
  entry_id      uuid NOT NULL REFERENCES entries (entry_id),
  line          smallint NOT NULL,
  account_id    uuid NOT NULL REFERENCES accounts (account_id),
  amount_minor  bigint NOT NULL CHECK (amount_minor <> 0),
  currency      char(3) NOT NULL,
  balance_after bigint,                      -- owned accounts only
  memo          text NOT NULL DEFAULT '',
  -- Taken after the entry's account locks, so per account it follows the
  -- order postings really applied in: history order and cursors.
  posted_seq    bigint NOT NULL,
  posted_at     timestamptz NOT NULL,
  PRIMARY KEY (entry_id, line)
);
CREATE SEQUENCE posting_seq;
CREATE INDEX postings_account_seq ON postings (account_id, posted_seq DESC) INCLUDE (amount_minor);

CREATE TABLE entry_conversions (
  entry_id         uuid NOT NULL REFERENCES entries (entry_id),
  line             smallint NOT NULL,
  from_minor       bigint NOT NULL,
  from_currency    char(3) NOT NULL,
  to_minor         bigint NOT NULL,
  to_currency      char(3) NOT NULL,
  rate             text NOT NULL,
  rate_source      text NOT NULL,
  rate_time        timestamptz NOT NULL,
  PRIMARY KEY (entry_id, line)
);

-- Entries are immutable: a mistake is fixed by a reversing entry, never an edit.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger rows are immutable (% on %)', TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER entries_immutable BEFORE UPDATE OR DELETE ON entries FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER conversions_immutable BEFORE UPDATE OR DELETE ON entry_conversions FOR EACH ROW EXECUTE FUNCTION refuse_change();

CREATE TABLE holds (
  hold_id         uuid PRIMARY KEY,
  account_id      uuid NOT NULL REFERENCES accounts (account_id),
  amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
  currency        char(3) NOT NULL,
  payout_id       uuid NOT NULL UNIQUE,
  idempotency_key text NOT NULL UNIQUE,
  status          smallint NOT NULL,         -- ttip.wallet.v1.HoldStatus
  settle_entry_id uuid REFERENCES entries (entry_id),
  reason          text NOT NULL DEFAULT '',
  created_at      timestamptz NOT NULL DEFAULT now(),
  resolved_at     timestamptz
);
CREATE INDEX holds_account_created ON holds (account_id, created_at);

CREATE TABLE fee_schedules (
  currency         char(3) NOT NULL,
  version          integer NOT NULL,
  platform_fee_bps integer NOT NULL CHECK (platform_fee_bps BETWEEN 0 AND 10000),
  platform_fee_min_minor bigint NOT NULL CHECK (platform_fee_min_minor >= 0),
  platform_fee_cap_minor bigint NOT NULL CHECK (platform_fee_cap_minor >= platform_fee_min_minor),
  mpesa_b2c_bands  jsonb NOT NULL DEFAULT '[]',
  card_fee_bps     integer NOT NULL CHECK (card_fee_bps BETWEEN 0 AND 10000),
  card_fee_fixed_minor bigint NOT NULL CHECK (card_fee_fixed_minor >= 0),
  effective_from   timestamptz NOT NULL,
  idempotency_key  text UNIQUE,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (currency, version)
);

-- Defaults: 5% platform fee (min KES 1, cap KES 500), Safaricom's B2C bulk
-- tariff paid by the platform (bands made contiguous: the published table
-- skips KES 15,001-19,999, charged here like the band above), card 2.9% + fixed.
INSERT INTO fee_schedules VALUES
  ('KES', 1, 500, 100, 50000,
   '[{"min":100,"max":10000,"fee":0},{"min":10001,"max":150000,"fee":500},{"min":150001,"max":500000,"fee":900},{"min":500001,"max":1500000,"fee":1100},{"min":1500001,"max":25000000,"fee":1200}]',
   290, 0, '2024-01-01T00:00:00Z', NULL, now()),
  ('USD', 1, 500, 10, 5000, '[]', 290, 30, '2024-01-01T00:00:00Z', NULL, now()),
  ('EUR', 1, 500, 10, 5000, '[]', 290, 25, '2024-01-01T00:00:00Z', NULL, now()),
  ('GBP', 1, 500, 10, 5000, '[]', 290, 20, '2024-01-01T00:00:00Z', NULL, now());

CREATE TABLE tier_limits (
  tier                  smallint NOT NULL,   -- ttip.wallet.v1.UserTier
  currency              char(3) NOT NULL,
  per_transaction_minor bigint NOT NULL CHECK (per_transaction_minor > 0),
  daily_minor           bigint NOT NULL,
  monthly_minor         bigint NOT NULL,
  updated_at            timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tier, currency),
  CHECK (per_transaction_minor <= daily_minor AND daily_minor <= monthly_minor)
);
INSERT INTO tier_limits (tier, currency, per_transaction_minor, daily_minor, monthly_minor) VALUES
  (1, 'KES', 2000000, 5000000, 30000000),     -- basic: 20k / 50k / 300k
  (2, 'KES', 15000000, 30000000, 300000000),  -- verified: 150k / 300k / 3M
  (3, 'KES', 25000000, 50000000, 1000000000); -- business: 250k / 500k / 10M

-- A worker's tier, set by auth/admin; absent means basic.
CREATE TABLE user_tiers (
  owner_id text PRIMARY KEY,
  tier     smallint NOT NULL
);

CREATE TABLE settlement_modes (
  owner_kind smallint NOT NULL,
  owner_id   text NOT NULL,
  mode       smallint NOT NULL,              -- ttip.wallet.v1.SettlementMode
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (owner_kind, owner_id)
);

CREATE TABLE pool_rules (
  venue_id        text NOT NULL,
  version         integer NOT NULL,
  members         jsonb NOT NULL,            -- [{"worker_id": "...", "shares": n}]
  idempotency_key text NOT NULL UNIQUE,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (venue_id, version)
);
