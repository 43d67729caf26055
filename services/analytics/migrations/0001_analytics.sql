-- Rollups: additive counters per (dimension, id, grain, time bucket, method,
-- result code, currency). Every event adds its figures to one row per
-- dimension it names, at the hour and at the day (East Africa Time) it
-- happened, so any figure over a range is a sum over rows. Partitioned by
-- month on the bucket; partitions are created as events need them.
--   dim: 1 platform (id and sub the nil UUID), 2 worker, 3 venue, 4 QR code,
--        5 a venue's staff member (id venue, sub worker), 6 a venue's QR code (id venue, sub code)
--   grain: 'h' hour, 'd' day (bucket = midnight EAT)
--   method: "mpesa"/"card" for tips and payouts, the channel for notifications, the role for sign-ups
--   result_code: "0" success, Daraja's code or "expired" for failures, "" for created and scanned,
--                the delivery status for notifications
CREATE TABLE rollups (
  dim                smallint NOT NULL,
  id                 uuid NOT NULL,
  sub                uuid NOT NULL,
  grain              "char" NOT NULL,
  bucket             timestamptz NOT NULL,
  method             text NOT NULL,
  result_code        text NOT NULL,
  currency           text NOT NULL,
  scans              integer NOT NULL DEFAULT 0,
  created            integer NOT NULL DEFAULT 0,
  push_refused       integer NOT NULL DEFAULT 0,
  succeeded          integer NOT NULL DEFAULT 0,
  failed             integer NOT NULL DEFAULT 0,
  amount_minor       bigint NOT NULL DEFAULT 0,
  fee_minor          bigint NOT NULL DEFAULT 0,
  net_minor          bigint NOT NULL DEFAULT 0,
  rating_sum         integer NOT NULL DEFAULT 0,
  rating_count       integer NOT NULL DEFAULT 0,
  rated_1            integer NOT NULL DEFAULT 0,
  rated_2            integer NOT NULL DEFAULT 0,
  rated_3            integer NOT NULL DEFAULT 0,
  rated_4            integer NOT NULL DEFAULT 0,
  rated_5            integer NOT NULL DEFAULT 0,
  payouts_succeeded  integer NOT NULL DEFAULT 0,
  payouts_failed     integer NOT NULL DEFAULT 0,
  payout_minor       bigint NOT NULL DEFAULT 0,
  payout_fee_minor   bigint NOT NULL DEFAULT 0,
  pooled_minor       bigint NOT NULL DEFAULT 0,
  registrations      integer NOT NULL DEFAULT 0,
  notifications      integer NOT NULL DEFAULT 0,
  PRIMARY KEY (dim, id, grain, bucket, sub, method, result_code, currency)
) PARTITION BY RANGE (bucket);

-- Payout latency needs both ends of a payout: the hold (wallet) and the result (payment).
CREATE TABLE payout_requests (
  payout_id    uuid PRIMARY KEY,
  worker_id    uuid,
  requested_at timestamptz NOT NULL
);
CREATE INDEX payout_requests_at ON payout_requests (requested_at);

CREATE TABLE payout_results (
  payout_id    uuid PRIMARY KEY,
  worker_id    uuid,
  succeeded    boolean NOT NULL,
  result_code  text NOT NULL,
  currency     text NOT NULL,
  amount_minor bigint NOT NULL,
  completed_at timestamptz NOT NULL
);
CREATE INDEX payout_results_at ON payout_results (completed_at);

-- The last words shown for each failure code, for the failure tables.
CREATE TABLE result_reasons (
  result_code text PRIMARY KEY,
  reason      text NOT NULL
);

-- Workers the weekly summary goes to: signed up, or seen in a tip.
CREATE TABLE workers (
  worker_id     uuid PRIMARY KEY,
  registered_at timestamptz,
  first_seen_at timestamptz NOT NULL
);

-- One weekly summary per worker per week, whoever runs the job.
CREATE TABLE weekly_summaries (
  worker_id  uuid NOT NULL,
  week_start date NOT NULL,
  sent_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (worker_id, week_start)
);

-- Jobs that run on one replica at a time: whoever holds the row until `until`.
CREATE TABLE leases (
  name   text PRIMARY KEY,
  holder text NOT NULL,
  until  timestamptz NOT NULL
);
