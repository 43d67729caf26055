-- An STK callback stored undecided says whether the tip it names (tip_id) was found by its path's token as it was
-- stored: true from this version on, whose replay decides by that tip alone (a forged callback at a wrong token names
-- none). NULL for one stored by a version before it (during its rollout too), which its replay decides as that
-- version did, by the CheckoutRequestID its body names.
ALTER TABLE payment.callbacks ADD COLUMN token_checked boolean;
