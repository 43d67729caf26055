-- Users auth blocked (its user_block_changed events): their codes take no tips while blocked.
-- changed_at is auth's: an older event delivered late changes nothing.
CREATE TABLE blocked_users (
  user_id    uuid PRIMARY KEY,
  blocked    boolean NOT NULL,
  changed_at timestamptz NOT NULL
);
