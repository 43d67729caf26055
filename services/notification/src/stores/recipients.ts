// Recipients: a user's contact details (from auth) and preferences (from the user).
import type { Queryable } from "@ttip/runtime";

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
  locale: string;
  kinds: Record<string, number[]>;
  quietStart: string;
  quietEnd: string;
}

export async function upsertPreferences(db: Queryable, userId: string, p: PreferenceChange): Promise<void> {
  await db.query(
    `INSERT INTO notification.recipients (user_id, email, locale, kinds, quiet_start, quiet_end) VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6)
     ON CONFLICT (user_id) DO UPDATE SET email = COALESCE(NULLIF($2, ''), recipients.email),
       locale = CASE WHEN $3 = '' THEN recipients.locale ELSE $3 END,
       kinds = recipients.kinds || $4::jsonb, quiet_start = $5, quiet_end = $6, updated_at = now()`,
    [userId, p.email, p.locale, JSON.stringify(p.kinds), p.quietStart, p.quietEnd],
  );
}
