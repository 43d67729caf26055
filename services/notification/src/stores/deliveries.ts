// Deliveries as support reads them: one with its attempts, a filtered page, how each provider fared.
// The dispatcher's writes live beside it in delivery.ts.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Channel, DeliveryAttemptSchema, DeliverySchema, DeliveryStatus, type Delivery } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { keysetTime, type Queryable } from "@ttip/runtime";

/** A delivery of a page, with its keyset position. */
export type DeliveryPageItem = Delivery & { _pageAt: string };

export async function deliveryById(db: Queryable, id: string): Promise<Delivery | undefined> {
  const [d] = await loadDeliveries(db, "id = $1", [id], 1);
  return d;
}

export interface DeliveryFilter {
  userId: string;
  status: DeliveryStatus;
  channel: Channel;
}

/** Up to `limit` deliveries older than the cursor, newest first; empty filter fields match all. */
export async function deliveryPage(db: Queryable, f: DeliveryFilter, cursor: { at: string; id: string } | undefined, limit: number): Promise<DeliveryPageItem[]> {
  return loadDeliveries(
    db,
    `($1 = '' OR user_id = NULLIF($1, '')::uuid) AND ($2 = '' OR status = $2) AND ($3::smallint = 0 OR channel = $3)
      AND ($4::timestamptz IS NULL OR (created_at, id) < ($4::timestamptz, $5::uuid))`,
    [f.userId, f.status ? STATUS_NAME[f.status] : "", f.channel, cursor?.at ?? null, cursor?.id ?? null],
    limit,
  );
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

async function loadDeliveries(db: Queryable, where: string, params: unknown[], limit: number): Promise<DeliveryPageItem[]> {
  const { rows } = await db.query(
    `SELECT id, user_id, channel, template_key, template_version, address_masked, status, created_at,
            ${keysetTime("created_at")} AS page_at
       FROM notification.deliveries WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT ${limit}`,
    params,
  );
  if (!rows.length) return [];
  const attempts = await db.query(
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

/** How one provider fared on one channel over a window: counts of attempts and the latest failure and success. */
export interface ProviderFigures {
  provider: string;
  channel: number;
  sent: string;
  failed: string;
  in_doubt: string;
  last_error: string | null;
  last_error_at: Date | null;
  last_success_at: Date | null;
}

/** Every provider and channel with attempts in the last `windowHours`, by channel then provider. */
export async function providerFigures(db: Queryable, windowHours: number): Promise<ProviderFigures[]> {
  const { rows } = await db.query<ProviderFigures>(
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
  return rows;
}
