-- Receipts owed to customers. A row is written in the transaction that
-- records a tip's credit, then sent through the notification service (which
-- dedupes on receipt:<tip id>), so a crash loses no receipt and sends none twice.
CREATE TABLE receipts (
  tip_id     uuid PRIMARY KEY REFERENCES tips (tip_id),
  created_at timestamptz NOT NULL DEFAULT now(),
  sent_at    timestamptz,
  attempts   integer NOT NULL DEFAULT 0,
  last_error text
);
CREATE INDEX receipts_unsent ON receipts (created_at) WHERE sent_at IS NULL;
