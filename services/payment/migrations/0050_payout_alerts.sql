-- Which alert a payout has raised, once per payout and kind: M-Pesa's result (or a status answer) reporting
-- another amount than the payout's is told to support once, however often it is repeated. A new table:
-- nothing live is locked or scanned. Few rows: only such results write one.
CREATE TABLE payout_alerts (
  payout_id  uuid NOT NULL,
  kind       text NOT NULL CHECK (kind IN ('amount_mismatch')),
  alerted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (payout_id, kind)
);
