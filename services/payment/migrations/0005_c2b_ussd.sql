-- Offline paths: paybill/till payments reported by C2B confirmations, and USSD sessions.

-- The AccountReference an STK push carried, unique per tip. When M-Pesa also
-- reports that payment as a C2B confirmation, its BillRefNumber is this value,
-- so the confirmation finds its tip whichever of the two arrives first.
ALTER TABLE tips ADD COLUMN account_reference text UNIQUE;
-- How the tip came: the tip page or API ('web'), a USSD session, or a paybill/till payment ('paybill').
ALTER TABLE tips ADD COLUMN channel text NOT NULL DEFAULT 'web' CHECK (channel IN ('web', 'ussd', 'paybill'));

-- One row per M-Pesa receipt (TransID) a C2B confirmation reported; the raw
-- confirmation is in callbacks. Nothing here is keyed on the payer's MSISDN
-- (masked in v2, hashed in v1): it is not even copied out of the raw body.
CREATE TABLE c2b_payments (
  trans_id            text PRIMARY KEY,
  callback_id         uuid NOT NULL,
  transaction_type    text NOT NULL,
  business_short_code text NOT NULL,
  bill_ref_number     text NOT NULL,
  amount_minor        bigint NOT NULL,
  trans_time          text NOT NULL,
  -- tip: credited through a tip row (a paybill tip, or the STK tip this payment belongs to);
  -- duplicate: the same receipt was already credited by its STK callback;
  -- suspense: parked in the suspense account for an admin to match or refund.
  outcome             text NOT NULL CHECK (outcome IN ('tip', 'duplicate', 'suspense')),
  tip_id              uuid REFERENCES tips (tip_id),
  reason              text NOT NULL DEFAULT '',
  -- Existing short codes one typing slip away from the reference: shown to the admin, never applied.
  suggestions         text[] NOT NULL DEFAULT '{}',
  suspense_entry_id   text,
  resolution          text NOT NULL DEFAULT 'none' CHECK (resolution IN ('none', 'open', 'matched', 'refund')),
  resolved_by         text NOT NULL DEFAULT '',
  resolved_at         timestamptz,
  received_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX c2b_payments_open ON c2b_payments (received_at) WHERE resolution = 'open';
CREATE INDEX c2b_payments_unposted ON c2b_payments (received_at) WHERE outcome = 'suspense' AND suspense_entry_id IS NULL;

-- USSD sessions (Africa's Talking). The session id is the provider's; a
-- repeated request with the same text gets the same answer, and the tip is
-- created under the idempotency key ussd:<session id>, so a session charges once.
CREATE TABLE ussd_sessions (
  session_id    text PRIMARY KEY,
  service_code  text NOT NULL,
  phone         text NOT NULL,
  locale        text NOT NULL DEFAULT 'en',
  last_text     text NOT NULL DEFAULT '',
  last_answer   text NOT NULL DEFAULT '',
  tip_id        uuid REFERENCES tips (tip_id),
  started_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Tip references are a sequence number and a check digit ('T' + digits), short
-- enough to type from the M-Pesa menu and unique by construction; the check
-- digit (weights 1, 3, 7, 9) catches any single mistyped digit.
CREATE SEQUENCE tip_reference_seq START 1000001;
CREATE FUNCTION tip_reference(n bigint) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  s text := n::text;
  total int := 0;
  w int[] := ARRAY[1, 3, 7, 9];
BEGIN
  FOR i IN 1..length(s) LOOP
    total := total + substr(s, i, 1)::int * w[1 + (i - 1) % 4];
  END LOOP;
  RETURN 'T' || s || (total % 10)::text;
END $$;
