-- When the last Transaction Status query about a payout was sent (the service's clock): a query is counted once,
-- by its pass after sending or by its answer, whichever comes first; one counted since it was sent is not counted
-- again by an answer however late it comes. Nullable, no default: no table rewrite; an answer to a query sent
-- before this file is not counted (its pass counted it).
ALTER TABLE payment.payouts ADD COLUMN status_query_sent_at timestamptz;
