-- Authorisations refused before 0048 had no row in card_cancels_due: one whose cancel was lost stayed held on the
-- customer's card until it lapsed. The refused card tips of the last 8 days (a card authorisation lasts 7 at most)
-- are given one, due now: the reconciliation pass asks the provider once and cancels what is still authorised.
-- Refused tips carry the card's fingerprint: that condition lets the planner read the card tips' partial index on
-- it (tips_card_fingerprint) rather than every tip.
INSERT INTO card_cancels_due (tip_id, due_at)
SELECT tip_id, now() FROM tips
 WHERE card_fingerprint IS NOT NULL AND method = 'card' AND status = 'failed' AND fraud_action = 'refuse' AND credit_key IS NULL
   AND provider_payment_id IS NOT NULL AND created_at > now() - interval '8 days'
ON CONFLICT (tip_id) DO NOTHING;
