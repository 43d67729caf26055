// Recipients: a user's contact details (from auth) and preferences (from the user).
import { opaqueUnnest, type Queryable } from "@ttip/runtime";

export interface RecipientRecord {
  user_id: string;
  phone: string | null;
  email: string | null;
  locale: string;
  kinds: Record<string, number[]>;
  quiet_start: string;
  quiet_end: string;
}

export async function findRecipient(db: Queryable, userId: string): Promise<RecipientRecord | undefined> {
  const { rows } = await db.query<RecipientRecord>(
    "SELECT user_id, phone, email, locale, kinds, quiet_start, quiet_end FROM notification.recipients WHERE user_id = $1",
    [userId],
  );
  return rows[0];
}

/** A user as a send sees them: their record (none stored: undefined) and whether any device of theirs takes push. */
export interface KnownRecipient {
  record: RecipientRecord | undefined;
  hasPushToken: boolean;
}

/** Several users at once, in one statement, by lower-case id. */
export async function findRecipients(db: Queryable, userIds: string[]): Promise<Map<string, KnownRecipient>> {
  const { rows } = await db.query<RecipientRecord & { id: string; known: boolean; has_push_token: boolean }>(
    `SELECT u.id, r.user_id IS NOT NULL AS known, r.user_id, r.phone, r.email, r.locale, r.kinds, r.quiet_start, r.quiet_end,
            EXISTS (SELECT 1 FROM notification.push_tokens p WHERE p.user_id = u.id) AS has_push_token
       FROM ${opaqueUnnest(["uuid"])} AS u(id) LEFT JOIN notification.recipients r ON r.user_id = u.id`,
    [userIds],
  );
  return new Map(
    rows.map(({ id, known, has_push_token, ...record }) => [id, { record: known ? record : undefined, hasPushToken: has_push_token }]),
  );
}

/** Contact details as auth knows them; an empty field keeps what is stored. */
export interface ContactChange {
  userId: string;
  phone: string;
  email: string;
  locale: string;
}

export async function upsertContact(db: Queryable, c: ContactChange): Promise<void> {
  await db.query(
    `INSERT INTO notification.recipients (user_id, phone, email, locale) VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), $4)
     ON CONFLICT (user_id) DO UPDATE SET phone = COALESCE(NULLIF($2, ''), recipients.phone),
       email = COALESCE(NULLIF($3, ''), recipients.email),
       locale = CASE WHEN $4 = '' THEN recipients.locale ELSE $4 END, updated_at = now()`,
    [c.userId, c.phone, c.email, c.locale],
  );
}

/** The user's own choices; kinds merge into the stored ones, an empty e-mail or locale keeps what is stored. */
export interface PreferenceChange {
  email: string;
  /** The stored e-mail removed (`email` then empty). */
  removeEmail: boolean;
  locale: string;
  kinds: Record<string, number[]>;
  quietStart: string;
  quietEnd: string;
}

export async function upsertPreferences(db: Queryable, userId: string, p: PreferenceChange): Promise<void> {
  await db.query(
    `INSERT INTO notification.recipients (user_id, email, locale, kinds, quiet_start, quiet_end) VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6)
     ON CONFLICT (user_id) DO UPDATE SET email = CASE WHEN $7 THEN NULL ELSE COALESCE(NULLIF($2, ''), recipients.email) END,
       locale = CASE WHEN $3 = '' THEN recipients.locale ELSE $3 END,
       kinds = recipients.kinds || $4::jsonb, quiet_start = $5, quiet_end = $6, updated_at = now()`,
    [userId, p.email, p.locale, JSON.stringify(p.kinds), p.quietStart, p.quietEnd, p.removeEmail],
  );
}
