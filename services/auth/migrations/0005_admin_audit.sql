-- One audit log for every admin action: the other services' actions arrive
-- from their outboxes (ttip.<service>.admin_action) with what they acted on.
ALTER TABLE audit_events
  ADD COLUMN target text NOT NULL DEFAULT '',
  ADD COLUMN service text NOT NULL DEFAULT 'auth';
CREATE INDEX audit_events_actor ON audit_events (actor_user_id, seq DESC);
CREATE INDEX audit_events_target ON audit_events (target, seq DESC) WHERE target <> '';
CREATE INDEX audit_events_occurred ON audit_events (occurred_at);
