-- Tips an STK query reported paid: its answer carries no receipt, so the tip was decided without
-- one. If that payment's C2B confirmation then arrives naming nothing we know (an old-style or
-- unknown reference), it is found here by amount, payer and time and recorded as this tip's,
-- instead of being parked in suspense, where a refund or a match would pay it a second time.
-- Written on that path only (a lost callback); rows leave when tied, or a day after the push.
CREATE TABLE receiptless_tips (
  tip_id        uuid PRIMARY KEY REFERENCES tips (tip_id),
  charged_minor bigint NOT NULL,
  pushed_at     timestamptz NOT NULL
);
-- Payments parked in suspense by arrival: an STK query's success looks among them for its own
-- payment (the other way round). Few rows: only payments that could not be placed.
CREATE INDEX c2b_payments_parked ON c2b_payments (received_at) WHERE outcome = 'suspense';
