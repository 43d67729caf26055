-- migrate: outside a transaction
-- Sessions by when they were revoked: auth writes each recent revocation to Redis again every half
-- minute (the gateway's only source), read by this index; only revoked rows have an entry. Built
-- without a write lock (CONCURRENTLY), dropped first in case an earlier run was cut short.
DROP INDEX CONCURRENTLY IF EXISTS sessions_revoked_at;
CREATE INDEX CONCURRENTLY sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
