-- A refund of a payment parked in suspense closes the match key of the payment's round (0023)
-- before it records itself, so that a match posted under that key refuses it. A replica older
-- than rounds, during a rollout, closes round 0's key whatever the round and records its refund
-- all the same: in a payment reopened into a later round, another admin's match posting under
-- that round's key meanwhile credits its code's owner, and the customer is refunded as well.
-- A refund now names the round whose key it closed (refund_round); one that names none, in a
-- round past 0, is not written (the row stays as it was: that replica answers "already resolved
-- (open)", and nothing changed). A nullable column: no table rewrite. Only a refund's update
-- pays the WHEN clause (the trigger is on updates that set resolution).
ALTER TABLE c2b_payments ADD COLUMN refund_round integer;

CREATE FUNCTION refund_without_round_skipped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RETURN NULL;
END $$;

CREATE TRIGGER c2b_payments_refund_in_round BEFORE UPDATE OF resolution ON c2b_payments FOR EACH ROW
  WHEN (NEW.resolution = 'refund' AND OLD.resolution <> 'refund' AND OLD.match_round > 0 AND NEW.refund_round IS DISTINCT FROM OLD.match_round)
  EXECUTE FUNCTION refund_without_round_skipped();
