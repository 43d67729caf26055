-- What M-Pesa reported taking for a tip when it differed from what was asked
-- (a callback with another Amount, or a paybill payment later matched to the
-- push). The money in suspense is this, so an approval pays out of this.
ALTER TABLE tips ADD COLUMN received_minor bigint CHECK (received_minor IS NULL OR received_minor >= 0);
