-- migrate: outside a transaction
-- The held tips whose review was claimed and not finished (0030), for the resumer's scan: a handful
-- of rows (a review's record clears the column). The predicate leaves status out: a tip's success
-- decision changes status, and an index naming it would keep that update from being HOT. Built
-- CONCURRENTLY, without the table's exclusive lock; an interrupted build leaves an invalid index,
-- dropped before the build again.
DROP INDEX CONCURRENTLY IF EXISTS tips_review_claims;
CREATE INDEX CONCURRENTLY tips_review_claims ON tips (review_claimed_at) WHERE review_claimed_at IS NOT NULL;
