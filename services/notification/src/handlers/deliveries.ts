import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { DeliveryAttemptSchema, DeliverySchema, DeliveryStatus, type Delivery } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationAdminService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { decodeTimeIdToken, encodePageToken, keysetTime, NotFoundError, pageSize, type Pool } from "@ttip/runtime";
import type { NotificationHandlerContext } from "./context.js";

/** Deliveries as support sees them: one with its attempts, or a filtered page. */
export function deliveryHandlers(h: NotificationHandlerContext): Partial<ServiceImpl<typeof NotificationAdminService>> {
  return {
    getDelivery: getDeliveryHandler(h),
    listDeliveries: listDeliveriesHandler(h),
  };
}

function getDeliveryHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationAdminService>["getDelivery"] {
  const { pool } = h;
  return async function (req) {
    const [d] = await loadDeliveries(pool, "id = $1", [req.deliveryId], 1);
    if (!d) throw new NotFoundError(`delivery ${req.deliveryId} not found`);
    return { delivery: d };
  };
}

function listDeliveriesHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationAdminService>["listDeliveries"] {
  const { pool } = h;
  return async function (req) {
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const size = pageSize(req.page);
    const rows = await loadDeliveries(
      pool,
      `($1 = '' OR user_id = NULLIF($1, '')::uuid) AND ($2 = '' OR status = $2) AND ($3::smallint = 0 OR channel = $3)
        AND ($4::timestamptz IS NULL OR (created_at, id) < ($4::timestamptz, $5::uuid))`,
      [req.userId, req.status ? STATUS_NAME[req.status] : "", req.channel, cursor?.at ?? null, cursor?.id ?? null],
      size + 1,
    );
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      deliveries: page,
      page: { nextPageToken: rows.length > size && last ? encodePageToken([last._pageAt, last.deliveryId]) : "" },
    };
  };
}

const STATUS: Record<string, DeliveryStatus> = {
  queued: DeliveryStatus.QUEUED,
  sent: DeliveryStatus.SENT,
  delivered: DeliveryStatus.DELIVERED,
  failed: DeliveryStatus.FAILED,
  retrying: DeliveryStatus.RETRYING,
  sending: DeliveryStatus.QUEUED,
  in_doubt: DeliveryStatus.FAILED,
};

const STATUS_NAME = Object.fromEntries(Object.entries(STATUS).slice(0, 5).map(([k, v]) => [v, k])) as Record<DeliveryStatus, string>;

async function loadDeliveries(pool: Pool, where: string, params: unknown[], limit: number): Promise<(Delivery & { _pageAt: string })[]> {
  const { rows } = await pool.query(
    `SELECT id, user_id, channel, template_key, template_version, address_masked, status, created_at,
            ${keysetTime("created_at")} AS page_at
       FROM notification.deliveries WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT ${limit}`,
    params,
  );
  if (!rows.length) return [];
  const attempts = await pool.query(
    `SELECT delivery_id, attempt, provider, provider_message_id, status, error, COALESCE(finished_at, started_at) AS at
       FROM notification.delivery_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY attempt`,
    [rows.map((r) => r.id)],
  );
  return rows.map((r) =>
    Object.assign(
      create(DeliverySchema, {
        deliveryId: r.id,
        userId: r.user_id ?? "",
        channel: r.channel,
        templateKey: r.template_key,
        templateVersion: r.template_version,
        recipientMasked: r.address_masked,
        status: STATUS[r.status],
        createdAt: timestampFromDate(r.created_at),
        attempts: attempts.rows
          .filter((a) => a.delivery_id === r.id)
          .map((a) =>
            create(DeliveryAttemptSchema, {
              attempt: a.attempt,
              provider: a.provider,
              providerMessageId: a.provider_message_id,
              status: STATUS[a.status],
              error: a.status === "in_doubt" ? `in doubt: ${a.error}` : a.error,
              at: timestampFromDate(a.at),
            }),
          ),
      }),
      { _pageAt: r.page_at as string },
    ),
  );
}
