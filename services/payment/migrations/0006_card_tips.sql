-- Card tips (Stripe PaymentIntents, PayPal orders) share the tips table with
-- M-Pesa: one row per tip, the provider's payment id unique, so a payment is
-- credited once whatever the webhooks do.
ALTER TABLE tips
  ADD COLUMN card_provider        text CHECK (card_provider IN ('stripe', 'paypal')),
  ADD COLUMN provider_payment_id  text UNIQUE,
  ADD COLUMN provider_charge_id   text UNIQUE,
  -- The quote split in the tip's currency: platform fee, card processing fee, the worker's share before conversion.
  ADD COLUMN platform_fee_minor   bigint NOT NULL DEFAULT 0,
  ADD COLUMN processing_fee_minor bigint NOT NULL DEFAULT 0,
  ADD COLUMN worker_share_minor   bigint NOT NULL DEFAULT 0,
  -- worker_receives_minor is in this currency (the wallet's), converted at the rate below.
  ADD COLUMN wallet_currency      text NOT NULL DEFAULT 'KES',
  ADD COLUMN fx_rate              text,
  ADD COLUMN fx_rate_source       text,
  ADD COLUMN fx_rate_time         timestamptz,
  ADD COLUMN customer_country     text NOT NULL DEFAULT '',
  ADD COLUMN card_fingerprint     text,
  ADD COLUMN card_country         text,
  ADD COLUMN next_action_url      text NOT NULL DEFAULT '',
  -- none, refunded, disputed, dispute_won, dispute_lost
  ADD COLUMN card_state           text NOT NULL DEFAULT 'none',
  ADD COLUMN refunded_minor       bigint NOT NULL DEFAULT 0,
  -- Card refunds and lost disputes take back this much of worker_receives_minor.
  ADD COLUMN reversed_wallet_minor bigint NOT NULL DEFAULT 0;
CREATE INDEX tips_card_fingerprint ON tips (card_fingerprint, created_at DESC) WHERE card_fingerprint IS NOT NULL;
CREATE INDEX tips_card_pending ON tips (next_check_at) WHERE status = 'pending' AND method = 'card';

-- Provider events (Stripe, PayPal) once verified: the event id makes applying them once.
-- The raw body is in callbacks (source 'stripe' or 'paypal'), stored before verification.
CREATE TABLE card_events (
  provider     text NOT NULL,
  event_id     text NOT NULL,
  type         text NOT NULL,
  callback_id  uuid NOT NULL,
  tip_id       uuid,
  received_at  timestamptz NOT NULL DEFAULT now(),
  applied_at   timestamptz,
  outcome      text NOT NULL DEFAULT '',
  PRIMARY KEY (provider, event_id)
);

-- Refunds asked for by an admin. The worker's share is taken back from the
-- wallet before the provider is asked, so a refund is never paid from nothing.
CREATE TABLE card_refunds (
  refund_id          uuid PRIMARY KEY,
  tip_id             uuid NOT NULL REFERENCES tips (tip_id),
  idempotency_key    text NOT NULL,
  amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
  wallet_minor       bigint NOT NULL,
  -- new -> debited -> sent | failed
  status             text NOT NULL CHECK (status IN ('new', 'debited', 'sent', 'failed')),
  provider_refund_id text UNIQUE,
  reason             text NOT NULL,
  requested_by       text NOT NULL,
  failure            text NOT NULL DEFAULT '',
  created_at         timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tip_id, idempotency_key)
);

-- Chargebacks. held_wallet_minor: what was taken from the worker into suspense when it opened.
CREATE TABLE card_disputes (
  dispute_id        text PRIMARY KEY,
  provider          text NOT NULL,
  tip_id            uuid NOT NULL REFERENCES tips (tip_id),
  amount_minor      bigint NOT NULL,
  currency          text NOT NULL,
  wallet_minor      bigint NOT NULL,
  held_wallet_minor bigint NOT NULL DEFAULT 0,
  reason            text NOT NULL DEFAULT '',
  status            text NOT NULL CHECK (status IN ('open', 'won', 'lost')),
  created_at        timestamptz NOT NULL DEFAULT now(),
  closed_at         timestamptz
);

-- The provider's balance transactions as reconciliation saw them.
CREATE TABLE card_balance_transactions (
  provider       text NOT NULL,
  txn_id         text NOT NULL,
  type           text NOT NULL,
  source_id      text NOT NULL DEFAULT '',
  currency       text NOT NULL,
  amount_minor   bigint NOT NULL,
  fee_minor      bigint NOT NULL,
  net_minor      bigint NOT NULL,
  -- matched: a tip, refund, dispute or payout of ours; unmatched: nothing of ours.
  matched        boolean NOT NULL,
  fee_entry_key  text,
  created        timestamptz NOT NULL,
  seen_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, txn_id)
);
