import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { InAppNotificationSchema, TemplateKey, type InAppNotification } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { decodeTimeIdToken, encodePageToken, keysetTime, pageSize, requireCaller } from "@ttip/runtime";
import { inAppSignals } from "../delivery.js";
import type { NotificationHandlerContext } from "./context.js";

/** In-app notifications: the user's list, the live feed and read marks. */
export function inAppHandlers(h: NotificationHandlerContext): Partial<ServiceImpl<typeof NotificationService>> {
  return {
    listInAppNotifications: listInAppNotificationsHandler(h),
    watchInAppNotifications: watchInAppNotificationsHandler(h),
    markRead: markReadHandler(h),
  };
}

function listInAppNotificationsHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationService>["listInAppNotifications"] {
  const { pool } = h;
  return async function (req, hc) {
    const caller = requireCaller(hc);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const size = pageSize(req.page);
    const { rows } = await pool.query<InAppRow & { page_at: string }>(
      `SELECT id, template_key, title, body, created_at, read_at, ${keysetTime("created_at")} AS page_at FROM notification.inapp_notifications
        WHERE user_id = $1 AND ($2::boolean = false OR read_at IS NULL)
          AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::uuid))
        ORDER BY created_at DESC, id DESC LIMIT $5`,
      [caller.subject, req.unreadOnly, cursor?.at ?? null, cursor?.id ?? null, size + 1],
    );
    const unread = await pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM notification.inapp_notifications WHERE user_id = $1 AND read_at IS NULL",
      [caller.subject],
    );
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      notifications: page.map(toInApp),
      unreadCount: unread.rows[0].n,
      page: { nextPageToken: rows.length > size && last ? encodePageToken([last.page_at, last.id]) : "" },
    };
  };
}

function watchInAppNotificationsHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationService>["watchInAppNotifications"] {
  const { pool } = h;
  return async function* (_req, hc: HandlerContext) {
    const caller = requireCaller(hc);
    // Reads the table (so a notification made by another replica shows up
    // too); a local signal only shortens the wait. The look-back window
    // catches rows whose transaction committed after a later one's.
    const seen = new Map<string, number>();
    let since = (await pool.query<{ now: Date }>("SELECT now() AS now")).rows[0].now;
    while (!hc.signal.aborted) {
      const { rows } = await pool.query<InAppRow>(
        `SELECT id, template_key, title, body, created_at, read_at FROM notification.inapp_notifications
          WHERE user_id = $1 AND created_at > $2::timestamptz - interval '10 seconds' ORDER BY created_at, id LIMIT 100`,
        [caller.subject, since],
      );
      for (const r of rows) {
        if (seen.has(r.id)) continue;
        seen.set(r.id, r.created_at.getTime());
        if (r.created_at > since) since = r.created_at;
        yield { notification: toInApp(r) };
      }
      for (const [id, t] of seen) if (t < since.getTime() - 20_000) seen.delete(id);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          inAppSignals.off(caller.subject, wake);
          hc.signal.removeEventListener("abort", done);
          resolve();
        };
        // Give the creating transaction a moment to commit after the signal.
        const wake = () => setTimeout(done, 20);
        const timer = setTimeout(done, 1_000);
        inAppSignals.on(caller.subject, wake);
        hc.signal.addEventListener("abort", done);
      });
    }
  };
}

function markReadHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationService>["markRead"] {
  const { pool } = h;
  return async function (req, hc) {
    const caller = requireCaller(hc);
    // Ids of other users' notifications match nothing: no hint that they exist.
    await pool.query(
      "UPDATE notification.inapp_notifications SET read_at = now() WHERE user_id = $1 AND id = ANY($2::uuid[]) AND read_at IS NULL",
      [caller.subject, req.notificationIds],
    );
    return {};
  };
}

interface InAppRow {
  id: string;
  template_key: TemplateKey;
  title: string;
  body: string;
  created_at: Date;
  read_at: Date | null;
}

function toInApp(r: InAppRow): InAppNotification {
  return create(InAppNotificationSchema, {
    notificationId: r.id,
    templateKey: r.template_key,
    title: r.title,
    body: r.body,
    createdAt: timestampFromDate(r.created_at),
    readAt: r.read_at ? timestampFromDate(r.read_at) : undefined,
  });
}
