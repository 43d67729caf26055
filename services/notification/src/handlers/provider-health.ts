import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { NotificationAdminService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { maskPhone } from "@ttip/runtime";
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
    const { rows } = await pool.query<{ provider: string; channel: number; sent: string; failed: string; in_doubt: string; last_error: string | null; last_error_at: Date | null; last_success_at: Date | null }>(
      `SELECT a.provider, d.channel,
              count(*) FILTER (WHERE a.status = 'sent') AS sent,
              count(*) FILTER (WHERE a.status = 'failed') AS failed,
              count(*) FILTER (WHERE a.status = 'in_doubt') AS in_doubt,
              (array_agg(a.error ORDER BY a.started_at DESC) FILTER (WHERE a.status = 'failed'))[1] AS last_error,
              max(a.started_at) FILTER (WHERE a.status = 'failed') AS last_error_at,
              max(a.started_at) FILTER (WHERE a.status = 'sent') AS last_success_at
         FROM notification.delivery_attempts a JOIN notification.deliveries d ON d.id = a.delivery_id
        WHERE a.started_at > now() - make_interval(hours => $1)
        GROUP BY a.provider, d.channel ORDER BY d.channel, a.provider`,
      [windowHours],
    );
    return {
      windowHours,
      providers: rows.map((r) => ({
        provider: r.provider,
        channel: r.channel,
        sent: BigInt(r.sent),
        failed: BigInt(r.failed),
        inDoubt: BigInt(r.in_doubt),
        lastError: maskNumbers(r.last_error ?? ""),
        lastErrorAt: r.last_error_at ? timestampFromDate(r.last_error_at) : undefined,
        lastSuccessAt: r.last_success_at ? timestampFromDate(r.last_success_at) : undefined,
      })),
    };
  };
}

/** A provider's error may quote the number it refused: the console sees it masked. */
function maskNumbers(text: string): string {
  return text.replace(/\+?\d{9,15}/g, (n) => maskPhone(n.replace(/^\+/, "")));
}
