// Queries shared by the RPC handlers, the consumers and the dispatcher.
// Tables live in the "notification" schema; every query names it, since the
// pool is shared with other services in embedded mode.
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import type { Queryable } from "@ttip/runtime";
import { defaultTemplates, FALLBACK_LOCALE } from "./templates.js";

export interface TemplateRecord {
  key: TemplateKey;
  locale: string;
  channel: Channel;
  version: number;
  subject: string;
  body: string;
  active: boolean;
  created_at: Date;
}

/** Seeds version 1 of every template once; later versions come from admins. */
export async function seedTemplates(db: Queryable): Promise<void> {
  const rows = defaultTemplates();
  await db.query(
    `INSERT INTO notification.templates (key, locale, channel, version, subject, body, active)
     SELECT k, l, c, 1, s, b, NOT EXISTS (
       SELECT 1 FROM notification.templates t WHERE t.key = k AND t.locale = l AND t.channel = c AND t.active)
       FROM unnest($1::smallint[], $2::text[], $3::smallint[], $4::text[], $5::text[]) AS x(k, l, c, s, b)
     ON CONFLICT DO NOTHING`,
    [rows.map((r) => r.key), rows.map((r) => r.locale), rows.map((r) => r.channel), rows.map((r) => r.subject), rows.map((r) => r.body)],
  );
  forgetActiveTemplates();
}

/**
 * Active templates as read a moment ago: every message renders one, and they
 * change only when an admin activates another version. This process forgets
 * them when it activates one; another replica follows within the TTL.
 */
const activeTemplates = new Map<string, { record: TemplateRecord; until: number }>();
const ACTIVE_TEMPLATE_TTL_MS = 5_000;

/** After an activation (or seeding): the next message reads the active version again. */
export function forgetActiveTemplates(): void {
  activeTemplates.clear();
}

/**
 * The template to render: the given version, or the active one; in the
 * requested locale, else in English.
 */
export async function findTemplate(db: Queryable, key: TemplateKey, locale: string, channel: Channel, version = 0): Promise<TemplateRecord | undefined> {
  const cacheKey = `${key}:${channel}:${locale}`;
  const now = Date.now();
  if (version === 0) {
    const cached = activeTemplates.get(cacheKey);
    if (cached && cached.until > now) return cached.record;
  }
  const { rows } = await db.query<TemplateRecord>(
    `SELECT key, locale, channel, version, subject, body, active, created_at FROM notification.templates
      WHERE key = $1 AND channel = $2 AND locale = ANY($3::text[]) AND (CASE WHEN $4::int = 0 THEN active ELSE version = $4 END)
      ORDER BY locale = $5 DESC LIMIT 1`,
    [key, channel, [locale, FALLBACK_LOCALE], version, locale],
  );
  // Bounded by the kinds, locales and channels there are; a miss is not kept.
  if (version === 0 && rows[0]) activeTemplates.set(cacheKey, { record: rows[0], until: now + ACTIVE_TEMPLATE_TTL_MS });
  return rows[0];
}

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

export async function pushTokens(db: Queryable, userId: string): Promise<string[]> {
  const { rows } = await db.query<{ token: string }>("SELECT token FROM notification.push_tokens WHERE user_id = $1 ORDER BY created_at", [userId]);
  return rows.map((r) => r.token);
}

export function maskEmail(email: string): string {
  const [local, domain] = email.split("@");
  return `${local.slice(0, 1)}***@${domain ?? ""}`;
}

export const CHANNEL_NAMES: Record<Channel, string> = {
  [Channel.UNSPECIFIED]: "unspecified",
  [Channel.SMS]: "sms",
  [Channel.EMAIL]: "email",
  [Channel.PUSH]: "push",
  [Channel.IN_APP]: "in_app",
};

export function templateKeyName(key: TemplateKey): string {
  return (TemplateKey[key] ?? "UNSPECIFIED").toLowerCase();
}
