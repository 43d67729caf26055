-- The session a push token was registered from: when auth ends that session before its time (signed out
-- elsewhere, the phone removed, the account blocked), the token is forgotten, and the phone stops showing the
-- worker's tips and payouts. A nullable column without a default: nothing is rewritten; tokens registered
-- before it stay until unregistered.
ALTER TABLE push_tokens ADD COLUMN session_id uuid;
