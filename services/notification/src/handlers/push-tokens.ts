import type { ServiceImpl } from "@connectrpc/connect";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { isUuid, requireCaller, SESSION_HEADER } from "@ttip/runtime";
import { registerPushToken, unregisterPushToken } from "../stores/push-tokens.js";
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
    const session = hc.requestHeader.get(SESSION_HEADER);
    await registerPushToken(pool, caller.subject, req.token, req.platform, session && isUuid(session) ? session : undefined);
    return {};
  };
}

function unregisterPushTokenHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationService>["unregisterPushToken"] {
  const { pool } = h;
  return async function (req, hc) {
    const caller = requireCaller(hc);
    await unregisterPushToken(pool, caller.subject, req.token);
    return {};
  };
}
