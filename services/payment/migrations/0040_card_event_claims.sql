-- A card webhook delivery claims its event before applying it: until when (a lease, so that a delivery
-- whose process died is applied by the next one). A second delivery of the event arriving meanwhile
-- finds it claimed and is refused, for the provider to send again, instead of applying it beside the
-- first. Nullable, no default: no table rewrite; rows before it are unclaimed.
ALTER TABLE card_events ADD COLUMN claimed_until timestamptz;
