// Message templates: one row per (key, locale, channel, version), at most one
// version active. Tables live in the "notification" schema; every query names
// it, since the pool is shared with other services in embedded mode.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Channel, TemplateKey, TemplateSchema, type Template } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { lockForTransaction, type Queryable } from "@ttip/runtime";
import { defaultTemplates, FALLBACK_LOCALE } from "../templates.js";

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

/** Which template a new version or an activation is about. */
export interface TemplateSlot {
  key: TemplateKey;
  locale: string;
  channel: Channel;
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
/** Counts forgetActiveTemplates calls: a read that began before one may hold the version just replaced. */
let forgotten = 0;

/** After an activation (or seeding): the next message reads the active version again. */
export function forgetActiveTemplates(): void {
  activeTemplates.clear();
  forgotten++;
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
  const before = forgotten;
  const { rows } = await db.query<TemplateRecord>(
    `SELECT key, locale, channel, version, subject, body, active, created_at FROM notification.templates
      WHERE key = $1 AND channel = $2 AND locale = ANY($3::text[]) AND (CASE WHEN $4::int = 0 THEN active ELSE version = $4 END)
      ORDER BY locale = $5 DESC LIMIT 1`,
    [key, channel, [locale, FALLBACK_LOCALE], version, locale],
  );
  // Bounded by the kinds, locales and channels there are; a miss is not kept, nor a read an activation overtook
  // (kept, it would answer the replaced version for the whole TTL after this process's own activation).
  if (version === 0 && rows[0] && forgotten === before) activeTemplates.set(cacheKey, { record: rows[0], until: now + ACTIVE_TEMPLATE_TTL_MS });
  return rows[0];
}

/** Every version, filtered by key (0 = all) and locale ("" = all). */
export async function listTemplates(db: Queryable, key: TemplateKey, locale: string): Promise<TemplateRecord[]> {
  const { rows } = await db.query<TemplateRecord>(
    `SELECT key, locale, channel, version, subject, body, active, created_at FROM notification.templates
      WHERE ($1::smallint = 0 OR key = $1) AND ($2 = '' OR locale = $2) ORDER BY key, locale, channel, version`,
    [key, locale],
  );
  return rows;
}

/** Adds the next version, inactive. Inside the caller's transaction: the lock holds until it ends. */
export async function insertTemplateVersion(tx: Queryable, slot: TemplateSlot, subject: string, body: string): Promise<TemplateRecord> {
  // Serialises concurrent creations for the same template so versions stay gapless.
  await lockForTransaction(tx, `template:${slot.key}:${slot.locale}:${slot.channel}`);
  const { rows } = await tx.query<TemplateRecord>(
    `INSERT INTO notification.templates (key, locale, channel, version, subject, body, active)
     SELECT $1, $2, $3, COALESCE(max(version), 0) + 1, $4, $5, false FROM notification.templates WHERE key = $1 AND locale = $2 AND channel = $3
     RETURNING key, locale, channel, version, subject, body, active, created_at`,
    [slot.key, slot.locale, slot.channel, subject, body],
  );
  return rows[0];
}

/**
 * Makes one version the active one, the others inactive; undefined (and
 * nothing changed) when the version does not exist. Inside the caller's transaction.
 */
export async function activateTemplateVersion(tx: Queryable, slot: TemplateSlot, version: number): Promise<TemplateRecord | undefined> {
  // The slot's lock, as a new version takes it: two activations of different versions at once, each locking only its
  // own row, both read the old active one and the second broke the one-active index (INTERNAL).
  await lockForTransaction(tx, `template:${slot.key}:${slot.locale}:${slot.channel}`);
  const found = await tx.query(
    "SELECT 1 FROM notification.templates WHERE key = $1 AND locale = $2 AND channel = $3 AND version = $4 FOR UPDATE",
    [slot.key, slot.locale, slot.channel, version],
  );
  if (!found.rowCount) return undefined;
  await tx.query("UPDATE notification.templates SET active = false WHERE key = $1 AND locale = $2 AND channel = $3 AND active", [slot.key, slot.locale, slot.channel]);
  const { rows } = await tx.query<TemplateRecord>(
    `UPDATE notification.templates SET active = true WHERE key = $1 AND locale = $2 AND channel = $3 AND version = $4
     RETURNING key, locale, channel, version, subject, body, active, created_at`,
    [slot.key, slot.locale, slot.channel, version],
  );
  return rows[0];
}

export function toTemplate(t: TemplateRecord): Template {
  return create(TemplateSchema, {
    key: t.key,
    locale: t.locale,
    channel: t.channel,
    version: t.version,
    subject: t.subject,
    body: t.body,
    active: t.active,
    createdAt: timestampFromDate(t.created_at),
  });
}
