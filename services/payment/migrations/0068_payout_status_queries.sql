-- Each Transaction Status query about a payout, by the ConversationID M-Pesa gave it (payouts.ts, noRecordDecides):
-- M-Pesa's "no record" fails a payout only when it answers a query sent a result wait after the payout's first.
-- Counted answers could not tell a late (or repeated) answer to an early query from one to the latest: that early
-- "no record" failed a payout M-Pesa could have paid since, and its hold went back to the wallet, to be paid out again.
-- sent_at comes with the query's answer to the pass, not_found_at with M-Pesa's result: either may come first.
CREATE TABLE payout_status_queries (
  conversation_id text PRIMARY KEY,
  payout_id uuid NOT NULL,
  sent_at timestamptz,
  not_found_at timestamptz
);
CREATE INDEX payout_status_queries_payout ON payout_status_queries (payout_id, sent_at);
