-- migrate: outside a transaction
-- A card tip's disputes, by its id: a refund's start checks, under the tip's row lock, that none is open or lost,
-- and a dispute's opening sums the open ones; without this index each read every dispute ever recorded while
-- holding that lock. Built CONCURRENTLY (disputes keep arriving meanwhile); an interrupted build leaves an invalid
-- index, dropped before the build again.
DROP INDEX CONCURRENTLY IF EXISTS card_disputes_tip;
CREATE INDEX CONCURRENTLY card_disputes_tip ON payment.card_disputes (tip_id);
