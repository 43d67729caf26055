-- Which alert a paybill receipt has raised, once per receipt and kind: a confirmation repeated
-- with other fields (forged, corrupted, or a relay's loop) would otherwise add an alert at each
-- repeat. A new table: nothing live is locked or scanned. Few rows: only such confirmations write one.
CREATE TABLE receipt_alerts (
  receipt    text NOT NULL,
  kind       text NOT NULL CHECK (kind IN ('altered_repeat')),
  alerted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (receipt, kind)
);
