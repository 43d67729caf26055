// In-app notifications: a user's list, newest first, with read marks.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { InAppNotificationSchema, TemplateKey, type InAppNotification } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { keysetTime, optionalTimestamp, type Queryable } from "@ttip/runtime";

export interface InAppRow {
  id: string;
  template_key: TemplateKey;
  title: string;
  body: string;
  created_at: Date;
  read_at: Date | null;
}

/** A row of a page, with its keyset position. */
export type InAppPageRow = InAppRow & { page_at: string };

/** Up to `limit` rows older than the cursor, newest first. */
export async function inAppPage(
  db: Queryable,
  userId: string,
  unreadOnly: boolean,
  cursor: { at: string; id: string } | undefined,
  limit: number,
): Promise<InAppPageRow[]> {
  const { rows } = await db.query<InAppPageRow>(
    `SELECT id, template_key, title, body, created_at, read_at, ${keysetTime("created_at")} AS page_at FROM notification.inapp_notifications
      WHERE user_id = $1 AND ($2::boolean = false OR read_at IS NULL)
        AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::uuid))
      ORDER BY created_at DESC, id DESC LIMIT $5`,
    [userId, unreadOnly, cursor?.at ?? null, cursor?.id ?? null, limit],
  );
  return rows;
}

export async function unreadCount(db: Queryable, userId: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM notification.inapp_notifications WHERE user_id = $1 AND read_at IS NULL",
    [userId],
  );
  return rows[0].n;
}

/** The database's clock: the live feed compares it with created_at, which the database set. */
export async function databaseNow(db: Queryable): Promise<Date> {
  return (await db.query<{ now: Date }>("SELECT now() AS now")).rows[0].now;
}

/** The most rows one read of the live feed returns; a full read is read on at once. */
export const IN_APP_SINCE_MAX = 100;

/**
 * The rows created after `since` less a look-back window, but those in `seen` (up to IN_APP_SINCE_MAX), oldest first.
 * Without `seen` left out, a window holding more than the limit (a trigger batch's rows share their time) read its
 * first rows again and again, and the feed stalled for good.
 */
export async function inAppSince(db: Queryable, userId: string, since: Date, seen: string[]): Promise<InAppRow[]> {
  const { rows } = await db.query<InAppRow>(
    `SELECT id, template_key, title, body, created_at, read_at FROM notification.inapp_notifications
      WHERE user_id = $1 AND created_at > $2::timestamptz - interval '10 seconds' AND id <> ALL($3::uuid[]) ORDER BY created_at, id LIMIT $4`,
    [userId, since, seen, IN_APP_SINCE_MAX],
  );
  return rows;
}

/** Ids of other users' notifications match nothing: no hint that they exist. */
export async function markRead(db: Queryable, userId: string, ids: string[]): Promise<void> {
  await db.query(
    "UPDATE notification.inapp_notifications SET read_at = now() WHERE user_id = $1 AND id = ANY($2::uuid[]) AND read_at IS NULL",
    [userId, ids],
  );
}

export function toInApp(r: InAppRow): InAppNotification {
  return create(InAppNotificationSchema, {
    notificationId: r.id,
    templateKey: r.template_key,
    title: r.title,
    body: r.body,
    createdAt: timestampFromDate(r.created_at),
    readAt: optionalTimestamp(r.read_at),
  });
}
