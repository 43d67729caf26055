-- What a card tip charges, in KES (at its quote): the per-card daily limit is a KES amount, and it summed
-- the worker's share instead (less the fees, and in dollars for a dollar wallet). Nullable, no default: no
-- table rewrite. A card tip from before counts its worker's share, as it did.
ALTER TABLE tips ADD COLUMN charged_kes_minor bigint;
