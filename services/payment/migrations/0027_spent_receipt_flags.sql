-- Which spent receipt a tip's success was flagged for (a success whose payment was refunded or
-- credited elsewhere), once per tip and receipt: M-Pesa delivers a callback again and again, and
-- each would add an alert. Until now found by the start of the alert's words, which another alert
-- about the same tip could share, silencing the flag. A new table: nothing live is locked or
-- scanned. Few rows: only such successes write one.
CREATE TABLE spent_receipt_flags (
  tip_id     uuid NOT NULL,
  receipt    text NOT NULL,
  flagged_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tip_id, receipt)
);
