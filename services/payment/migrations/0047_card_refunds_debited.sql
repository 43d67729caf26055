-- The reconciliation pass resumes refunds left debited (the worker's share taken, the card not refunded):
-- found by this index, oldest first, whatever the number of refunds finished.
CREATE INDEX card_refunds_debited ON payment.card_refunds (created_at) WHERE status = 'debited';
