// Profiles: the name, photo and currency a code's tip page shows, per worker or venue.
import type { Queryable } from "@ttip/runtime";

export interface ProfileRecord {
  ownerKind: 1 | 2;
  ownerId: string;
  displayName: string;
  photoUrl: string;
  active: boolean;
  /** Its user is blocked in auth (qr.blocked_users): no tips, whatever `active` says. */
  blocked?: boolean;
  currency: string;
  city: string;
  role: string;
  /** SHA-256 (hex) of the uploaded photo; "" when none. */
  photoSha256: string;
  updatedAt: number;
}

/** A profile's columns with its uploaded photo's version, from `p` joined to `ph`. */
export const PROFILE_COLUMNS = `p.owner_kind, p.owner_id, p.display_name, p.photo_url, p.active, p.currency, p.city, p.role,
  p.updated_at, ph.sha256 AS photo_sha256,
  p.owner_kind = 1 AND EXISTS (SELECT 1 FROM qr.blocked_users b WHERE b.user_id = p.owner_id AND b.blocked) AS blocked`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function profileFromRow(r: any): ProfileRecord {
  return {
    ownerKind: r.owner_kind,
    ownerId: r.owner_id,
    displayName: r.display_name,
    photoUrl: r.photo_url,
    active: r.active,
    blocked: r.blocked === true,
    currency: r.currency,
    city: r.city,
    role: r.role,
    photoSha256: r.photo_sha256 ?? "",
    updatedAt: new Date(r.updated_at).getTime(),
  };
}

/** Whether this id is a worker's here: their profile, a code of theirs, or a place on a venue's staff. */
export async function namesWorker(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `SELECT 1 FROM qr.profiles WHERE owner_kind = 1 AND owner_id = $1
     UNION ALL SELECT 1 FROM qr.qr_codes WHERE owner_kind = 1 AND owner_id = $1
     UNION ALL SELECT 1 FROM qr.venue_staff WHERE worker_id = $1 LIMIT 1`,
    [id],
  );
  return (rowCount ?? 0) > 0;
}

export async function profileOf(db: Queryable, kind: number, ownerId: string, lock = false): Promise<ProfileRecord | undefined> {
  const { rows } = await db.query(
    `SELECT ${PROFILE_COLUMNS}
       FROM qr.profiles p LEFT JOIN qr.profile_photos ph USING (owner_kind, owner_id)
      WHERE p.owner_kind = $1 AND p.owner_id = $2${lock ? " FOR UPDATE OF p" : ""}`,
    [kind, ownerId],
  );
  return rows[0] ? profileFromRow(rows[0]) : undefined;
}

export async function upsertProfile(
  db: Queryable,
  p: { ownerKind: number; ownerId: string; displayName: string; photoUrl: string; active: boolean | undefined; currency: string; city: string; role?: string },
): Promise<ProfileRecord> {
  // An unset role (undefined) keeps the stored one, as an unset `active` does.
  const { rows } = await db.query(
    `WITH p AS (
       INSERT INTO qr.profiles (owner_kind, owner_id, display_name, photo_url, active, currency, city, role)
       VALUES ($1, $2, $3, $4, COALESCE($5, true), COALESCE(NULLIF($6, ''), 'KES'), $7, COALESCE($8, ''))
       ON CONFLICT (owner_kind, owner_id) DO UPDATE SET
         display_name = EXCLUDED.display_name,
         photo_url = EXCLUDED.photo_url,
         active = COALESCE($5, profiles.active),
         currency = COALESCE(NULLIF($6, ''), profiles.currency),
         city = EXCLUDED.city,
         role = COALESCE($8, profiles.role),
         updated_at = now()
       RETURNING owner_kind, owner_id, display_name, photo_url, active, currency, city, role, updated_at)
     SELECT ${PROFILE_COLUMNS} FROM p LEFT JOIN qr.profile_photos ph USING (owner_kind, owner_id)`,
    [p.ownerKind, p.ownerId, p.displayName, p.photoUrl, p.active ?? null, p.currency, p.city, p.role ?? null],
  );
  return profileFromRow(rows[0]);
}

export interface PhotoRecord {
  contentType: string;
  image: Uint8Array;
  sha256: string;
}

/** Replaces (or, with no image, removes) a profile's uploaded photo; the profile must exist (the foreign key). */
export async function putPhoto(db: Queryable, kind: number, ownerId: string, photo: PhotoRecord | undefined): Promise<void> {
  if (!photo) {
    await db.query(`DELETE FROM qr.profile_photos WHERE owner_kind = $1 AND owner_id = $2`, [kind, ownerId]);
    return;
  }
  await db.query(
    `INSERT INTO qr.profile_photos (owner_kind, owner_id, content_type, image, sha256) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (owner_kind, owner_id) DO UPDATE SET
       content_type = EXCLUDED.content_type, image = EXCLUDED.image, sha256 = EXCLUDED.sha256, updated_at = now()`,
    [kind, ownerId, photo.contentType, Buffer.from(photo.image), photo.sha256],
  );
}

export async function photoOf(db: Queryable, kind: number, ownerId: string): Promise<PhotoRecord | undefined> {
  const { rows } = await db.query(`SELECT content_type, image, sha256 FROM qr.profile_photos WHERE owner_kind = $1 AND owner_id = $2`, [kind, ownerId]);
  return rows[0] ? { contentType: rows[0].content_type, image: new Uint8Array(rows[0].image), sha256: rows[0].sha256 } : undefined;
}

