-- The language a customer tipped in on the web (CreateTipRequest.locale): their receipt is
-- written in it. '' for tips from before it, USSD's (its session keeps the language) and
-- paybill's. A constant default: no rewrite of payment.tips, only its catalogue entry.
ALTER TABLE payment.tips ADD COLUMN locale text NOT NULL DEFAULT '' CHECK (locale ~ '^([a-z]{2})?$');
