import type { ServiceImpl } from "@connectrpc/connect";
import { NotificationAdminService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { maskPhone, optionalTimestamp } from "@ttip/runtime";
import { providerFigures } from "../stores/deliveries.js";
import type { NotificationHandlerContext } from "./context.js";

/** How each SMS, e-mail and push provider has fared over a window. */
export function providerHealthHandlers(h: NotificationHandlerContext): Partial<ServiceImpl<typeof NotificationAdminService>> {
  return {
    getProviderHealth: getProviderHealthHandler(h),
  };
}

function getProviderHealthHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationAdminService>["getProviderHealth"] {
  const { pool } = h;
  return async function (req) {
    const windowHours = req.windowHours || 24;
    const rows = await providerFigures(pool, windowHours);
    return {
      windowHours,
      providers: rows.map((r) => ({
        provider: r.provider,
        channel: r.channel,
        sent: BigInt(r.sent),
        failed: BigInt(r.failed),
        inDoubt: BigInt(r.in_doubt),
        lastError: maskNumbers(r.last_error ?? ""),
        lastErrorAt: optionalTimestamp(r.last_error_at),
        lastSuccessAt: optionalTimestamp(r.last_success_at),
      })),
    };
  };
}

/** A provider's error may quote the number it refused: the console sees it masked. */
function maskNumbers(text: string): string {
  return text.replace(/\+?\d{9,15}/g, (n) => maskPhone(n.replace(/^\+/, "")));
}
