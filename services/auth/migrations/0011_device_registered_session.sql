-- The session that registered a device key: removing the device ends it (devices.ts), whichever device that session
-- named at sign-in. A lost phone's session that added a key of its own is ended by that key's removal.
-- A nullable column without a default: nothing is rewritten; keys registered before it end only the sessions naming them.
ALTER TABLE devices ADD COLUMN registered_session_id uuid;
