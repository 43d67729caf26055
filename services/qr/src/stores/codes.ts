// QR codes: one row per code, its short code and account reference unique;
// a code is active, replaced (by the code it points to) or revoked.
import { keysetTime, type Queryable } from "@ttip/runtime";

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

/** Which of an owner's codes a list shows. */
export interface OwnerCodesFilter {
  ownerKind: number;
  ownerId: string;
  /** Replaced, revoked and expired codes too. */
  includeInactive: boolean;
  /** Only the codes at this venue (a partner linked through it); null for all. */
  venueId: string | null;
}

/** Up to `limit` of an owner's codes older than the cursor, newest first, each with its keyset position. */
export async function codesOfOwner(
  db: Queryable,
  f: OwnerCodesFilter,
  after: { at: string; id: string } | undefined,
  limit: number,
): Promise<{ code: CodeRecord; pageAt: string }[]> {
  const { rows } = await db.query(
    `SELECT ${CODE_COLUMNS}, ${keysetTime("created_at")} AS page_at FROM qr.qr_codes
      WHERE owner_kind = $1 AND owner_id = $2 AND ($3 OR (status = 1 AND (expires_at IS NULL OR expires_at > now())))
        AND ($4::timestamptz IS NULL OR (created_at, qr_code_id) < ($4::timestamptz, $5::uuid))
        AND ($7::uuid IS NULL OR venue_id = $7::uuid)
      ORDER BY created_at DESC, qr_code_id DESC LIMIT $6`,
    [f.ownerKind, f.ownerId, f.includeInactive, after?.at ?? null, after?.id ?? null, limit, f.venueId],
  );
  return rows.map((r) => ({ code: codeFromRow(r), pageAt: r.page_at as string }));
}

/** Revokes a worker's active codes at a venue (they left its staff); the ids revoked. */
export async function revokeStaffCodes(db: Queryable, workerId: string, venueId: string): Promise<string[]> {
  const { rows } = await db.query(
    `UPDATE qr.qr_codes SET status = 3, revoked_reason = 'removed from the venue staff', status_changed_at = now()
      WHERE owner_kind = 1 AND owner_id = $1 AND venue_id = $2 AND status = 1 RETURNING qr_code_id`,
    [workerId, venueId],
  );
  return rows.map((r) => r.qr_code_id as string);
}

/** Up to 5 of the given account references that an active code carries, in order. */
export async function activeAccountReferences(db: Queryable, candidates: string[]): Promise<string[]> {
  const { rows } = await db.query<{ account_reference: string }>(
    `SELECT account_reference FROM qr.qr_codes WHERE account_reference = ANY($1::text[]) AND status = 1 ORDER BY account_reference LIMIT 5`,
    [candidates],
  );
  return rows.map((r) => r.account_reference);
}
