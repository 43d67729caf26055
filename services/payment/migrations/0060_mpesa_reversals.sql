-- An M-Pesa tip reversed through Daraja's TransactionReversal (RefundTip): new → debited (the worker's
-- share taken back) → sending (claimed to send the one request) → sent (M-Pesa took it) → reversed or
-- failed (its result; failed gives the share back). A request whose answer was lost stays sending: it is
-- never sent twice (M-Pesa would refuse the second, and that refusal would read as the first's).
CREATE TABLE mpesa_reversals (
  reversal_id      uuid PRIMARY KEY,
  tip_id           uuid NOT NULL REFERENCES tips (tip_id),
  idempotency_key  text NOT NULL,
  receipt          text NOT NULL,
  amount_minor     bigint NOT NULL CHECK (amount_minor > 0),
  wallet_minor     bigint NOT NULL CHECK (wallet_minor >= 0),
  status           text NOT NULL CHECK (status IN ('new', 'debited', 'sending', 'sent', 'reversed', 'failed')),
  reason           text NOT NULL,
  requested_by     text NOT NULL,
  -- In the ResultURL and QueueTimeOutURL handed to Daraja: a result is taken only for its own reversal.
  callback_token   text NOT NULL UNIQUE,
  conversation_id  text,
  result_code      text,
  result_desc      text NOT NULL DEFAULT '',
  -- M-Pesa's id of the reversal itself.
  reversal_receipt text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  decided_at       timestamptz,
  UNIQUE (tip_id, idempotency_key)
);
-- A payment is reversed once: one reversal of a tip at a time that has not failed.
CREATE UNIQUE INDEX mpesa_reversals_live ON mpesa_reversals (tip_id) WHERE status <> 'failed';

-- What a tip's Tip.mpesa_reversal shows, kept on the tip's row by each reversal's move. The default alone is
-- no rewrite; the check NOT VALID reads no row either (every existing row holds the default), so a grown
-- tips table is locked for no scan.
ALTER TABLE tips ADD COLUMN mpesa_reversal text NOT NULL DEFAULT 'none',
  ADD CONSTRAINT tips_mpesa_reversal CHECK (mpesa_reversal IN ('none', 'pending', 'reversed', 'failed')) NOT VALID;
