-- The unique indexes on columns a tip fills only on one road or only later
-- become partial: a row gets no entry in them while the column is empty. An
-- M-Pesa tip never has a card provider's payment or charge id, a card tip
-- never has an M-Pesa receipt, CheckoutRequestID or tip reference, and the
-- receipt, the credit key and the CheckoutRequestID are empty when the tip is
-- placed. Every version of a row (the insert, and each update that changes an
-- indexed column: the CheckoutRequestID, the callback's decision) wrote an
-- entry for NULL into each of them, though NULLs never conflict. Uniqueness is
-- the same as before for every value: a receipt (mpesa_receipt), a wallet
-- credit key (credit_key) and a card payment (provider_payment_id,
-- provider_charge_id) still belong to one tip at most, so each is credited
-- once. Lookups by value (`col = $1`) use the partial index, as `=` implies
-- NOT NULL. The constraints and their indexes go in this migration's
-- transaction, which holds the table's lock throughout: no write runs between.
ALTER TABLE tips
  DROP CONSTRAINT tips_mpesa_receipt_key,
  DROP CONSTRAINT tips_credit_key_key,
  DROP CONSTRAINT tips_checkout_request_id_key,
  DROP CONSTRAINT tips_account_reference_key,
  DROP CONSTRAINT tips_provider_payment_id_key,
  DROP CONSTRAINT tips_provider_charge_id_key;
CREATE UNIQUE INDEX tips_mpesa_receipt_key ON tips (mpesa_receipt) WHERE mpesa_receipt IS NOT NULL;
CREATE UNIQUE INDEX tips_credit_key_key ON tips (credit_key) WHERE credit_key IS NOT NULL;
CREATE UNIQUE INDEX tips_checkout_request_id_key ON tips (checkout_request_id) WHERE checkout_request_id IS NOT NULL;
CREATE UNIQUE INDEX tips_account_reference_key ON tips (account_reference) WHERE account_reference IS NOT NULL;
CREATE UNIQUE INDEX tips_provider_payment_id_key ON tips (provider_payment_id) WHERE provider_payment_id IS NOT NULL;
CREATE UNIQUE INDEX tips_provider_charge_id_key ON tips (provider_charge_id) WHERE provider_charge_id IS NOT NULL;
