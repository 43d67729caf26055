-- A tip announced failed whose money came after all keeps that failure's time and result code, for its
-- tip_succeeded to carry (analytics takes the failure back: one attempt, paid). Nullable, no default: no
-- table rewrite.
ALTER TABLE tips ADD COLUMN replaced_failure_at timestamptz, ADD COLUMN replaced_failure_code text;
