-- Where balance reconciliation stopped, per provider: the newest balance transaction it has seen.
CREATE TABLE card_reconcile_cursor (
  provider     text PRIMARY KEY,
  last_txn_id  text NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
