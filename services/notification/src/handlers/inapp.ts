import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { decodeTimeIdToken, encodePageToken, pageSize, requireCaller } from "@ttip/runtime";
import { inAppSignals } from "../delivery.js";
import { databaseNow, IN_APP_SINCE_MAX, inAppPage, inAppSince, markRead, toInApp, unreadCount } from "../stores/inapp.js";
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
    const rows = await inAppPage(pool, caller.subject, req.unreadOnly, cursor, size + 1);
    const unread = await unreadCount(pool, caller.subject);
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      notifications: page.map(toInApp),
      unreadCount: unread,
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
    let since = await databaseNow(pool);
    while (!hc.signal.aborted) {
      const rows = await inAppSince(pool, caller.subject, since, [...seen.keys()]);
      for (const r of rows) {
        if (seen.has(r.id)) continue;
        seen.set(r.id, r.created_at.getTime());
        if (r.created_at > since) since = r.created_at;
        yield { notification: toInApp(r) };
      }
      for (const [id, t] of seen) if (t < since.getTime() - 20_000) seen.delete(id);
      if (rows.length === IN_APP_SINCE_MAX) continue;
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
    await markRead(pool, caller.subject, req.notificationIds);
    return {};
  };
}
