-- Daraja Account Balance queries from the admin console and their answers.
CREATE TABLE mpesa_balance_checks (
  check_id        uuid PRIMARY KEY,
  -- In the ResultURL: the answer is taken for this check only.
  callback_token  text NOT NULL UNIQUE,
  conversation_id text,
  requested_by    text NOT NULL,
  requested_at    timestamptz NOT NULL DEFAULT now(),
  answered_at     timestamptz,
  result_code     text NOT NULL DEFAULT '',
  result_desc     text NOT NULL DEFAULT '',
  -- As parsed from the AccountBalance string: [{name, currency, current, available, reserved, uncleared}] in minor units.
  accounts        jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX mpesa_balance_checks_recent ON mpesa_balance_checks (requested_at DESC);
