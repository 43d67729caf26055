-- Templates: one row per (kind, locale, channel, version); at most one active.
-- key and channel are the contract's TemplateKey and Channel numbers.
CREATE TABLE templates (
  key        smallint NOT NULL,
  locale     text NOT NULL,
  channel    smallint NOT NULL,
  version    integer NOT NULL,
  subject    text NOT NULL DEFAULT '',
  body       text NOT NULL,
  active     boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (key, locale, channel, version)
);
CREATE UNIQUE INDEX templates_one_active ON templates (key, locale, channel) WHERE active;

-- Where a user is reached and what they chose. Events carry masked numbers
-- only, so the full phone comes from auth through UpsertContact.
CREATE TABLE recipients (
  user_id     uuid PRIMARY KEY,
  phone       text,
  email       text,
  locale      text NOT NULL DEFAULT '',
  -- {"<template key>": [channel, ...]}; a missing kind means the defaults.
  kinds       jsonb NOT NULL DEFAULT '{}',
  quiet_start text NOT NULL DEFAULT '',
  quiet_end   text NOT NULL DEFAULT '',
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE push_tokens (
  token      text PRIMARY KEY,
  user_id    uuid NOT NULL,
  platform   text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_tokens_user ON push_tokens (user_id);

-- Numbers that texted STOP; only OTPs (which the person asked for) still go to them.
CREATE TABLE sms_opt_outs (
  phone         text PRIMARY KEY,
  provider      text NOT NULL,
  opted_out_at  timestamptz NOT NULL DEFAULT now()
);

-- One message to one recipient on one channel. (source_key, recipient_key,
-- channel) is unique: a redelivered event or a retried RPC finds its row.
CREATE TABLE deliveries (
  id                  uuid PRIMARY KEY,
  source_key          text NOT NULL,
  recipient_key       text NOT NULL,
  channel             smallint NOT NULL,
  user_id             uuid,
  address             text NOT NULL,
  address_masked      text NOT NULL,
  template_key        smallint NOT NULL,
  template_version    integer NOT NULL,
  locale              text NOT NULL,
  subject             text NOT NULL DEFAULT '',
  -- Rendered text; erased once an OTP has been handed to a provider.
  body                text,
  status              text NOT NULL CHECK (status IN ('queued', 'sent', 'delivered', 'failed', 'retrying')),
  attempts            integer NOT NULL DEFAULT 0,
  -- Which of the channel's providers (primary 0, fallback 1) is in use, and its attempts so far.
  provider_index      smallint NOT NULL DEFAULT 0,
  provider_attempts   integer NOT NULL DEFAULT 0,
  provider            text,
  provider_message_id text,
  next_attempt_at     timestamptz NOT NULL DEFAULT now(),
  -- Deferred past the nak-redelivery horizon (quiet hours); the sweeper re-queues it.
  parked              boolean NOT NULL DEFAULT false,
  last_error          text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source_key, recipient_key, channel)
);
CREATE UNIQUE INDEX deliveries_provider_message ON deliveries (provider, provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX deliveries_parked ON deliveries (next_attempt_at) WHERE parked;
CREATE INDEX deliveries_user ON deliveries (user_id, created_at DESC);
CREATE INDEX deliveries_created ON deliveries (created_at DESC, id DESC);

-- Each hand-over to a provider. 'sending' is written and committed before the
-- HTTP call, so a crash between send and record leaves a trace: such an
-- attempt is treated as in doubt and never blindly resent.
CREATE TABLE delivery_attempts (
  delivery_id         uuid NOT NULL REFERENCES deliveries (id),
  attempt             integer NOT NULL,
  provider            text NOT NULL,
  provider_message_id text NOT NULL DEFAULT '',
  status              text NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'in_doubt')),
  error               text NOT NULL DEFAULT '',
  started_at          timestamptz NOT NULL DEFAULT now(),
  finished_at         timestamptz,
  PRIMARY KEY (delivery_id, attempt)
);

-- The in-app inbox.
CREATE TABLE inapp_notifications (
  id           uuid PRIMARY KEY,
  user_id      uuid NOT NULL,
  delivery_id  uuid NOT NULL UNIQUE REFERENCES deliveries (id),
  template_key smallint NOT NULL,
  title        text NOT NULL,
  body         text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  read_at      timestamptz
);
CREATE INDEX inapp_user ON inapp_notifications (user_id, created_at DESC, id DESC);
CREATE INDEX inapp_unread ON inapp_notifications (user_id) WHERE read_at IS NULL;

-- Provider callbacks as received, for audits and replays.
CREATE TABLE provider_callbacks (
  seq         bigserial PRIMARY KEY,
  provider    text NOT NULL,
  kind        text NOT NULL,
  message_id  text NOT NULL DEFAULT '',
  status      text NOT NULL DEFAULT '',
  payload     jsonb NOT NULL,
  -- False while no delivery carries the message id yet (a report that beat
  -- our own record of the send); applied when the send is recorded.
  applied     boolean NOT NULL DEFAULT false,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_callbacks_pending ON provider_callbacks (provider, message_id) WHERE NOT applied;
