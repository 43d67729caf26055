-- Reports no delivery has claimed yet, oldest first: the sweeper expires them by age.
CREATE INDEX provider_callbacks_unmatched_age ON provider_callbacks (received_at) WHERE NOT applied;
