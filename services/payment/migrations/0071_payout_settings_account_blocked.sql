-- Whether auth has the worker's account blocked, as its latest block or unblock said (block_changed_at orders them:
-- one delivered late changes nothing). A blocked account's payouts are not released: an admin unblocks it first.
-- False for a worker blocked before this version: released as before.
ALTER TABLE payment.payout_settings
  ADD COLUMN account_blocked boolean NOT NULL DEFAULT false,
  ADD COLUMN block_changed_at timestamptz;
