import type { Queryable } from "@ttip/runtime";

/** A code as resolving needs it; plain JSON so it can sit in the cache. */
export interface CodeRecord {
  id: string;
  shortCode: string;
  accountReference: string;
  ownerKind: 1 | 2;
  ownerId: string;
  venueId: string | null;
  /** DynamicParameters, protobuf binary in base64. */
  parameters: string;
  /** Epoch milliseconds. */
  expiresAt: number | null;
  status: 1 | 2 | 3;
  replacedBy: string | null;
  createdAt: number;
}

export interface ProfileRecord {
  ownerKind: 1 | 2;
  ownerId: string;
  displayName: string;
  photoUrl: string;
  active: boolean;
  currency: string;
  city: string;
  role: string;
  /** SHA-256 (hex) of the uploaded photo; "" when none. */
  photoSha256: string;
  updatedAt: number;
}

/** A profile's columns with its uploaded photo's version, from `p` joined to `ph`. */
const PROFILE_COLUMNS = `p.owner_kind, p.owner_id, p.display_name, p.photo_url, p.active, p.currency, p.city, p.role,
  p.updated_at, ph.sha256 AS photo_sha256`;

const CODE_COLUMNS = `qr_code_id, short_code, account_reference, owner_kind, owner_id, venue_id, parameters,
  expires_at, status, replaced_by, created_at`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function codeFromRow(r: any): CodeRecord {
  return {
    id: r.qr_code_id,
    shortCode: r.short_code,
    accountReference: r.account_reference,
    ownerKind: r.owner_kind,
    ownerId: r.owner_id,
    venueId: r.venue_id,
    parameters: Buffer.from(r.parameters).toString("base64"),
    expiresAt: r.expires_at ? new Date(r.expires_at).getTime() : null,
    status: r.status,
    replacedBy: r.replaced_by,
    createdAt: new Date(r.created_at).getTime(),
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function profileFromRow(r: any): ProfileRecord {
  return {
    ownerKind: r.owner_kind,
    ownerId: r.owner_id,
    displayName: r.display_name,
    photoUrl: r.photo_url,
    active: r.active,
    currency: r.currency,
    city: r.city,
    role: r.role,
    photoSha256: r.photo_sha256 ?? "",
    updatedAt: new Date(r.updated_at).getTime(),
  };
}

export async function codeById(db: Queryable, id: string, lock = false): Promise<CodeRecord | undefined> {
  const { rows } = await db.query(`SELECT ${CODE_COLUMNS} FROM qr.qr_codes WHERE qr_code_id = $1${lock ? " FOR UPDATE" : ""}`, [id]);
  return rows[0] ? codeFromRow(rows[0]) : undefined;
}

export async function codeIdByShortCode(db: Queryable, shortCode: string): Promise<string | undefined> {
  const { rows } = await db.query(`SELECT qr_code_id FROM qr.qr_codes WHERE short_code = $1`, [shortCode]);
  return rows[0]?.qr_code_id;
}

export async function codeByAccountReference(db: Queryable, ref: string): Promise<CodeRecord | undefined> {
  const { rows } = await db.query(`SELECT ${CODE_COLUMNS} FROM qr.qr_codes WHERE account_reference = $1`, [ref]);
  return rows[0] ? codeFromRow(rows[0]) : undefined;
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
       RETURNING *)
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

/** The venues a user manages, by name; bounded like any list. */
export async function managedVenues(db: Queryable, userId: string, limit = 100): Promise<ProfileRecord[]> {
  const { rows } = await db.query(
    `SELECT ${PROFILE_COLUMNS}
       FROM qr.venue_managers m JOIN qr.profiles p ON p.owner_kind = 2 AND p.owner_id = m.venue_id
       LEFT JOIN qr.profile_photos ph USING (owner_kind, owner_id)
      WHERE m.manager_id = $1 ORDER BY p.display_name, p.owner_id LIMIT $2`,
    [userId, limit],
  );
  return rows.map(profileFromRow);
}

export async function isVenueManager(db: Queryable, venueId: string, userId: string): Promise<boolean> {
  const { rowCount } = await db.query(`SELECT 1 FROM qr.venue_managers WHERE venue_id = $1 AND manager_id = $2`, [venueId, userId]);
  return (rowCount ?? 0) > 0;
}

export async function isVenueStaff(db: Queryable, venueId: string, workerId: string): Promise<boolean> {
  const { rowCount } = await db.query(`SELECT 1 FROM qr.venue_staff WHERE venue_id = $1 AND worker_id = $2`, [venueId, workerId]);
  return (rowCount ?? 0) > 0;
}

export interface NewCode {
  id: string;
  shortCode: string;
  ownerKind: number;
  ownerId: string;
  venueId: string | null;
  parameters: Uint8Array;
  expiresAt: Date | null;
  createdBy: string;
}

/** Inserts a code; undefined when its short code is taken (the caller draws another). */
export async function insertCode(db: Queryable, c: NewCode): Promise<CodeRecord | undefined> {
  const { rows } = await db.query(
    `INSERT INTO qr.qr_codes (qr_code_id, short_code, account_reference, owner_kind, owner_id, venue_id, parameters, expires_at, created_by)
     VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (short_code) DO NOTHING
     RETURNING ${CODE_COLUMNS}`,
    [c.id, c.shortCode, c.ownerKind, c.ownerId, c.venueId, Buffer.from(c.parameters), c.expiresAt, c.createdBy],
  );
  return rows[0] ? codeFromRow(rows[0]) : undefined;
}

export async function setStatus(db: Queryable, id: string, status: 2 | 3, extra: { replacedBy?: string; reason?: string }): Promise<CodeRecord> {
  const { rows } = await db.query(
    `UPDATE qr.qr_codes SET status = $2, replaced_by = COALESCE($3, replaced_by), revoked_reason = COALESCE($4, revoked_reason),
            status_changed_at = now()
      WHERE qr_code_id = $1 RETURNING ${CODE_COLUMNS}`,
    [id, status, extra.replacedBy ?? null, extra.reason ?? null],
  );
  return codeFromRow(rows[0]);
}
