-- A plan the ledger refuses as another split under its key (ALREADY_EXISTS) is tried again later and later,
-- not on every background pass, where such plans would take the pass's batch ahead of newer ones.
-- How often it was refused so, and when it is tried next. A NULL time and a constant default: no table rewrite.
ALTER TABLE distributions
  ADD COLUMN key_conflicts integer NOT NULL DEFAULT 0,
  ADD COLUMN next_try_at timestamptz;
