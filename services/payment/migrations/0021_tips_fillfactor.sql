-- Room on each new page of payment.tips for its tips' later row versions. A tip's row is
-- written three times after its insert (the push's CheckoutRequestID, the outcome, the
-- credit's entry id), each new version placed on the row's own page when it fits; the
-- first and the last change no indexed column, and are HOT updates (no index entry) only
-- there. At 85% about half of a tip's updates were HOT where two in three could be
-- (tip-e2e 20 s c16: 48-52% at 85, 55-57% at 65). The cost: new pages hold about a quarter
-- fewer tips. Applies to pages filled from now on; the pages already full are read as
-- before. Setting it takes the table's SHARE UPDATE EXCLUSIVE lock, which no read or write
-- waits for (autovacuum does), and scans nothing.
ALTER TABLE tips SET (fillfactor = 65);
