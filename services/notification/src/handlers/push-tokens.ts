import type { ServiceImpl } from "@connectrpc/connect";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { requireCaller } from "@ttip/runtime";
import type { NotificationHandlerContext } from "./context.js";

/** The devices a user's push notifications go to. */
export function pushTokenHandlers(h: NotificationHandlerContext): Partial<ServiceImpl<typeof NotificationService>> {
  return {
    registerPushToken: registerPushTokenHandler(h),
    unregisterPushToken: unregisterPushTokenHandler(h),
  };
}

function registerPushTokenHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationService>["registerPushToken"] {
  const { pool } = h;
  return async function (req, hc) {
    const caller = requireCaller(hc);
    // A device that changes hands follows its new owner.
    await pool.query(
      `INSERT INTO notification.push_tokens (token, user_id, platform) VALUES ($1, $2, $3)
       ON CONFLICT (token) DO UPDATE SET user_id = $2, platform = $3, created_at = now()`,
      [req.token, caller.subject, req.platform],
    );
    return {};
  };
}

function unregisterPushTokenHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationService>["unregisterPushToken"] {
  const { pool } = h;
  return async function (req, hc) {
    const caller = requireCaller(hc);
    await pool.query("DELETE FROM notification.push_tokens WHERE token = $1 AND user_id = $2", [req.token, caller.subject]);
    return {};
  };
}
