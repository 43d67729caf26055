-- What the worker does, shown under their name on the tip page ('' for nothing said).
ALTER TABLE profiles ADD COLUMN role text NOT NULL DEFAULT '';

-- The photo an owner uploaded: kept here, beside the profile that shows it, and
-- served by the platform itself so the tip page loads nothing from another host.
-- One per profile; the bytes are small (the contract caps them at 512 KiB).
CREATE TABLE profile_photos (
  owner_kind   smallint NOT NULL,
  owner_id     uuid NOT NULL,
  content_type text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
  image        bytea NOT NULL CHECK (octet_length(image) BETWEEN 1 AND 524288),
  sha256       text NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (owner_kind, owner_id),
  FOREIGN KEY (owner_kind, owner_id) REFERENCES profiles (owner_kind, owner_id) ON DELETE CASCADE
);
