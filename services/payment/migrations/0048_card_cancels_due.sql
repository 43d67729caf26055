-- Card authorisations to cancel at the provider (the card rules refused them, or they came for a tip that had
-- ended): written in the transaction that decides the cancel, deleted once the provider cancelled it. A crash or
-- a lost answer between that commit and the cancel left the customer's card on hold until the authorisation
-- lapsed (days); the reconciliation pass cancels what is left here, from due_at on.
CREATE TABLE payment.card_cancels_due (
  tip_id  uuid PRIMARY KEY REFERENCES payment.tips (tip_id),
  due_at  timestamptz NOT NULL,
  tries   integer NOT NULL DEFAULT 0
);
CREATE INDEX card_cancels_due_at ON payment.card_cancels_due (due_at);
