-- What of a card tip the provider reported refunded outside TTIP (its dashboard) was flagged for support: every
-- later refunded event reports that amount again (the provider's total), and is flagged only for more.
CREATE TABLE payment.card_outside_refunds (
  tip_id         uuid PRIMARY KEY REFERENCES payment.tips (tip_id),
  flagged_minor  bigint NOT NULL CHECK (flagged_minor > 0)
);
