-- Partner webhooks: subscriptions per partner key, one delivery per (subscription, event),
-- each HTTP attempt logged. And workers' consents to partner keys.

CREATE TABLE partner_webhook_subscriptions (
  subscription_id uuid PRIMARY KEY,
  key_id uuid NOT NULL REFERENCES partner_api_keys (key_id),
  url text NOT NULL,
  -- ttip.auth.v1.WebhookEventType values.
  event_types smallint[] NOT NULL,
  -- Deliveries are signed with it, so it is kept, sealed like the keys' own secrets.
  secret_sealed text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE INDEX partner_webhook_subscriptions_key ON partner_webhook_subscriptions (key_id, created_at, subscription_id);

CREATE TABLE partner_webhook_deliveries (
  delivery_id uuid PRIMARY KEY,
  subscription_id uuid NOT NULL REFERENCES partner_webhook_subscriptions (subscription_id),
  key_id uuid NOT NULL,
  event_id uuid NOT NULL,
  event_type smallint NOT NULL,
  -- Payout events: whose, so a consent withdrawn before sending stops it.
  worker_id uuid,
  -- The JSON body, fixed when the event arrives: every attempt sends the same bytes.
  body text NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  -- Attempts since the delivery was created or last replayed, against the retry cap.
  budget_used integer NOT NULL DEFAULT 0,
  -- The next attempt was asked for by an admin (logged as a replay).
  replay_requested boolean NOT NULL DEFAULT false,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_response_status integer NOT NULL DEFAULT 0,
  last_error text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz,
  -- An event reaches a subscription once, however often the bus delivers it.
  UNIQUE (subscription_id, event_id)
);
CREATE INDEX partner_webhook_deliveries_due ON partner_webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX partner_webhook_deliveries_key ON partner_webhook_deliveries (key_id, created_at DESC, delivery_id DESC);
CREATE INDEX partner_webhook_deliveries_recent ON partner_webhook_deliveries (created_at DESC, delivery_id DESC);

CREATE TABLE partner_webhook_attempts (
  delivery_id uuid NOT NULL REFERENCES partner_webhook_deliveries (delivery_id),
  attempt integer NOT NULL,
  started_at timestamptz NOT NULL,
  duration_ms integer NOT NULL,
  -- 0 when no answer came (timeout, refused connection).
  response_status integer NOT NULL,
  error text NOT NULL DEFAULT '',
  replay boolean NOT NULL DEFAULT false,
  PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE partner_consents (
  worker_id uuid NOT NULL REFERENCES users (user_id),
  key_id uuid NOT NULL REFERENCES partner_api_keys (key_id),
  -- ttip.auth.v1.ConsentScope values.
  scopes smallint[] NOT NULL,
  granted_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  PRIMARY KEY (worker_id, key_id)
);
CREATE INDEX partner_consents_key ON partner_consents (key_id, worker_id) WHERE revoked_at IS NULL;
