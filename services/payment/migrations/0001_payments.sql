-- Tip attempts by M-Pesa STK push. One row per tip; the idempotency key makes
-- CreateTip safe to retry, the callback token makes the callback URL unguessable.
CREATE TABLE tips (
  tip_id               uuid PRIMARY KEY,
  idempotency_key      text NOT NULL UNIQUE,
  -- What the key was used for, so a reuse for another tip is refused.
  request_fingerprint  text NOT NULL,
  worker_id            uuid NOT NULL,
  venue_id             text NOT NULL DEFAULT '',
  qr_code_id           text NOT NULL DEFAULT '',
  customer_subject     text NOT NULL DEFAULT '',
  method               text NOT NULL DEFAULT 'mpesa',
  currency             text NOT NULL,
  amount_minor         bigint NOT NULL CHECK (amount_minor > 0),
  fee_minor            bigint NOT NULL DEFAULT 0,
  charged_minor        bigint NOT NULL,
  worker_receives_minor bigint NOT NULL,
  fee_schedule_version integer NOT NULL DEFAULT 0,
  customer_covers_fee  boolean NOT NULL DEFAULT false,
  phone                text NOT NULL,
  phone_masked         text NOT NULL,
  rating               integer NOT NULL DEFAULT 0,
  message              text NOT NULL DEFAULT '',
  customer_email       text NOT NULL DEFAULT '',
  status               text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'expired', 'held_for_review')),
  -- 'hold' when a fraud rule wants an admin to approve before crediting.
  fraud_action         text NOT NULL DEFAULT 'none',
  result_code          text NOT NULL DEFAULT '',
  result_message       text NOT NULL DEFAULT '',
  callback_token       text NOT NULL UNIQUE,
  merchant_request_id  text,
  checkout_request_id  text UNIQUE,
  mpesa_receipt        text UNIQUE,
  -- The wallet entry: its idempotency key once decided, its id once posted.
  credit_key           text UNIQUE,
  credit_kind          text CHECK (credit_kind IN ('worker', 'suspense')),
  credit_entry_id      text,
  credited_at          timestamptz,
  -- Reconciliation: pending past the deadline gets an STK query; leases let replicas share the work.
  deadline_at          timestamptz NOT NULL,
  next_check_at        timestamptz NOT NULL,
  checks               integer NOT NULL DEFAULT 0,
  lease_until          timestamptz,
  auto_payout_done     boolean NOT NULL DEFAULT false,
  created_at           timestamptz NOT NULL DEFAULT now(),
  completed_at         timestamptz
);
CREATE INDEX tips_worker ON tips (worker_id, created_at DESC);
CREATE INDEX tips_phone ON tips (phone, created_at DESC);
CREATE INDEX tips_due ON tips (next_check_at) WHERE status = 'pending';
CREATE INDEX tips_uncredited ON tips (tip_id) WHERE credit_key IS NOT NULL AND credit_entry_id IS NULL;

-- Every provider callback, stored raw before anything else looks at it.
CREATE TABLE callbacks (
  callback_id        uuid PRIMARY KEY,
  source             text NOT NULL,
  path               text NOT NULL,
  remote_address     text NOT NULL,
  raw_body           bytea NOT NULL,
  received_at        timestamptz NOT NULL DEFAULT now(),
  external_reference text NOT NULL DEFAULT '',
  tip_id             uuid,
  payout_id          uuid,
  -- accepted, duplicate, rejected_address, malformed, unknown, mismatch
  outcome            text NOT NULL DEFAULT 'received',
  matched            boolean NOT NULL DEFAULT false,
  resolved           boolean NOT NULL DEFAULT false
);
CREATE INDEX callbacks_unmatched ON callbacks (received_at DESC) WHERE NOT matched;

CREATE TABLE fraud_alerts (
  alert_id    uuid PRIMARY KEY,
  reason      text NOT NULL,
  action      text NOT NULL CHECK (action IN ('flag', 'hold', 'refuse')),
  status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'approved', 'rejected')),
  tip_id      uuid,
  payout_id   uuid,
  worker_id   uuid,
  phone_masked text NOT NULL DEFAULT '',
  detail      text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  reviewed_by text NOT NULL DEFAULT '',
  reviewed_at timestamptz
);
CREATE INDEX fraud_alerts_recent ON fraud_alerts (created_at DESC);

CREATE TABLE blocked_phones (
  phone      text PRIMARY KEY,
  reason     text NOT NULL,
  blocked_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payout_settings (
  worker_id            uuid PRIMARY KEY,
  auto_payout          boolean NOT NULL DEFAULT false,
  auto_payout_minimum_minor bigint NOT NULL DEFAULT 100,
  currency             text NOT NULL DEFAULT 'KES',
  payout_phone         text NOT NULL DEFAULT '',
  payouts_on_hold      boolean NOT NULL DEFAULT false,
  hold_reason          text NOT NULL DEFAULT '',
  updated_at           timestamptz NOT NULL DEFAULT now()
);

-- B2C withdrawals. The payout id is the OriginatorConversationID: one B2C per row, ever.
CREATE TABLE payouts (
  payout_id          uuid PRIMARY KEY,
  worker_id          uuid NOT NULL,
  idempotency_key    text NOT NULL,
  currency           text NOT NULL,
  amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
  transfer_fee_minor bigint NOT NULL DEFAULT 0,
  phone              text NOT NULL,
  phone_masked       text NOT NULL,
  automatic          boolean NOT NULL DEFAULT false,
  status             text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'resolving', 'on_hold')),
  -- new -> sending -> sent | unknown | refused; a row past 'new' is never sent again.
  b2c_state          text NOT NULL DEFAULT 'new' CHECK (b2c_state IN ('new', 'sending', 'sent', 'unknown', 'refused')),
  hold_id            text,
  -- The wallet hold: placed, then settled (paid) or released (not paid); retried until done.
  hold_state         text NOT NULL DEFAULT 'none' CHECK (hold_state IN ('none', 'held', 'settled', 'released')),
  account_id         text,
  callback_token     text NOT NULL UNIQUE,
  conversation_id    text,
  result_code        text NOT NULL DEFAULT '',
  result_message     text NOT NULL DEFAULT '',
  mpesa_receipt      text UNIQUE,
  status_queries     integer NOT NULL DEFAULT 0,
  next_check_at      timestamptz NOT NULL,
  lease_until        timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  completed_at       timestamptz,
  UNIQUE (worker_id, idempotency_key)
);
CREATE INDEX payouts_worker ON payouts (worker_id, created_at DESC);
CREATE INDEX payouts_open ON payouts (next_check_at) WHERE status IN ('pending', 'resolving') OR hold_state = 'held';
