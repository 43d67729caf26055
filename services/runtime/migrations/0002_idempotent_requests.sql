-- Idempotent writes: the first request under a key claims it (in the transaction that does the
-- write) and names what it made; a retry with the same request gets that result, another
-- request under the key is ALREADY_EXISTS. `caller` scopes keys per caller where the
-- operation does (keys are the caller's choice, so two callers may pick the same one).
CREATE TABLE idempotent_requests (
  operation    text NOT NULL,
  caller       text NOT NULL DEFAULT '',
  key          text NOT NULL,
  -- sha256 of the request's protobuf binary without its key; NULL for rows recorded before
  -- fingerprints were kept, which answer any retry with their result.
  fingerprint  text,
  result_id    text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (operation, caller, key)
);
