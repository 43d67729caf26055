import { randomUUID } from "node:crypto";
import { type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { AlreadyExistsError, claimIdempotencyKey, clockOf, decodeTimeIdToken, InvalidStateError, idempotentRequest, priorIdempotentResult, keysetPage, keysetTime, NotFoundError, pageSize, PermissionDeniedError, type Queryable, RateLimitedError, requireCaller, withTransaction } from "@ttip/runtime";
import { WebhookEventType } from "@ttip/proto/ttip/auth/v1/partner_pb.js";
import type { PartnerService } from "@ttip/proto/ttip/auth/v1/partner_service_pb.js";
import type { AuthCore } from "../core.js";
import { opaqueToken } from "../crypto.js";
import { checkWebhookUrl, type HostResolver } from "./destination.js";
import { deliveryColumns, deliveryState, PAYOUT_EVENTS_SCOPE, SUBSCRIPTION_COLUMNS, toDelivery, toSubscription, type DeliveryRow, type SubscriptionRow } from "./rows.js";

/** How long the secret a rotation replaced still signs deliveries when the request does not say. */
const DEFAULT_PREVIOUS_SECRET_VALID_SECONDS = 24 * 60 * 60;

/** Live subscriptions a key may hold: each event is fanned out to at most this many URLs per key. */
export const MAX_SUBSCRIPTIONS_PER_KEY = 10;

const PAYOUT_EVENTS = new Set([WebhookEventType.PAYOUT_SUCCEEDED, WebhookEventType.PAYOUT_FAILED]);

/** The partner key calling: a live key, never a user who merely holds the role partner. */
export async function callingKey(db: Queryable, ctx: HandlerContext): Promise<{ keyId: string; partnerName: string; scopes: string[] }> {
  const caller = requireCaller(ctx);
  const { rows } = await db.query("SELECT key_id, partner_name, scopes FROM auth.partner_api_keys WHERE key_id::text = $1 AND revoked_at IS NULL", [caller.subject]);
  if (!rows[0]) throw new PermissionDeniedError(`${ctx.method.parent.typeName} is for partner keys: sign the call with a live key`);
  return { keyId: rows[0].key_id, partnerName: rows[0].partner_name, scopes: rows[0].scopes };
}

async function loadSubscription(db: Queryable, subscriptionId: string): Promise<SubscriptionRow> {
  return (await db.query<SubscriptionRow>(`SELECT ${SUBSCRIPTION_COLUMNS} FROM auth.partner_webhook_subscriptions WHERE subscription_id = $1`, [subscriptionId])).rows[0];
}

/** A partner key's webhook subscriptions and delivery log. */
export function webhookHandlers(core: AuthCore, resolve: HostResolver): Partial<ServiceImpl<typeof PartnerService>> {
  const { pool } = core.ctx;
  // A retry gets the same secret back: the first answer may never have arrived.
  const answered = (row: SubscriptionRow) => ({ subscription: toSubscription(row), signingSecret: core.sealer.open(row.secret_sealed) });
  return {
    async createWebhookSubscription(req, ctx) {
      const key = await callingKey(pool, ctx);
      const eventTypes = [...new Set(req.eventTypes)].sort((a, b) => a - b);
      // The same request with the types in another order is the same request.
      const idempotent = idempotentRequest("auth", ctx, { ...req, eventTypes }, key.keyId);
      // A retry is answered before the URL is resolved again: its host may resolve otherwise (or
      // not at all) by now, and the subscription it made is live, its secret shown only here.
      const prior = await priorIdempotentResult(pool, idempotent);
      if (prior) return answered(await loadSubscription(pool, prior));
      const needsScope = eventTypes.find((t) => PAYOUT_EVENTS.has(t));
      if (needsScope && !key.scopes.includes(PAYOUT_EVENTS_SCOPE)) {
        throw new PermissionDeniedError(`event_types: ${WebhookEventType[needsScope]} needs the key's scope ${PAYOUT_EVENTS_SCOPE}, which this key does not have`);
      }
      const url = await checkWebhookUrl(req.url, core.config.webhooks, resolve);
      const subscriptionId = randomUUID();
      const secret = opaqueToken("ttip_whsec");
      const row = await withTransaction(pool, async (tx) => {
        const first = await claimIdempotencyKey(tx, idempotent, subscriptionId);
        if (first) return loadSubscription(tx, first);
        // Serialises a key's creations, so the limit holds under concurrent calls.
        await tx.query("SELECT 1 FROM auth.partner_api_keys WHERE key_id = $1 FOR UPDATE", [key.keyId]);
        const live = await tx.query("SELECT count(*)::int AS n FROM auth.partner_webhook_subscriptions WHERE key_id = $1 AND deleted_at IS NULL", [key.keyId]);
        if (live.rows[0].n >= MAX_SUBSCRIPTIONS_PER_KEY) {
          throw new RateLimitedError(`a key holds at most ${MAX_SUBSCRIPTIONS_PER_KEY} live webhook subscriptions; delete one first`);
        }
        // Each subscription gets its own delivery of an event: two to one URL would bring it twice, under two
        // delivery ids. Receivers are told to deduplicate on the event's id, which catches it; refused here still,
        // as it is never meant.
        const same = await tx.query<{ subscription_id: string; event_types: number[] }>(
          `SELECT subscription_id, event_types FROM auth.partner_webhook_subscriptions
            WHERE key_id = $1 AND url = $2 AND deleted_at IS NULL AND event_types && $3::smallint[] LIMIT 1`,
          [key.keyId, url, eventTypes],
        );
        if (same.rows[0]) {
          const both = eventTypes.filter((t) => same.rows[0].event_types.includes(t)).map((t) => WebhookEventType[t]).join(", ");
          throw new AlreadyExistsError(`url: subscription ${same.rows[0].subscription_id} already sends ${both} to this URL; delete it first (or use another URL)`);
        }
        const { rows } = await tx.query<SubscriptionRow>(
          `INSERT INTO auth.partner_webhook_subscriptions (subscription_id, key_id, url, event_types, secret_sealed)
           VALUES ($1, $2, $3, $4, $5) RETURNING ${SUBSCRIPTION_COLUMNS}`,
          [subscriptionId, key.keyId, url, eventTypes, core.sealer.seal(secret)],
        );
        return rows[0];
      });
      return answered(row);
    },

    async rotateWebhookSecret(req, ctx) {
      const key = await callingKey(pool, ctx);
      const idempotent = idempotentRequest("auth", ctx, req, key.keyId);
      // A retry gets the secret in force (this rotation's, unless the key rotated it again since).
      const prior = await priorIdempotentResult(pool, idempotent);
      if (prior) return answered(await loadSubscription(pool, prior));
      const validMs = (req.previousSecretValidSeconds ?? DEFAULT_PREVIOUS_SECRET_VALID_SECONDS) * 1000;
      const secret = opaqueToken("ttip_whsec");
      const row = await withTransaction(pool, async (tx) => {
        const first = await claimIdempotencyKey(tx, idempotent, req.subscriptionId);
        if (first) return loadSubscription(tx, first);
        const { rows } = await tx.query<SubscriptionRow & { live: boolean }>(
          "SELECT deleted_at IS NULL AS live FROM auth.partner_webhook_subscriptions WHERE subscription_id = $1 AND key_id = $2 FOR UPDATE",
          [req.subscriptionId, key.keyId],
        );
        // Another key's subscription is as unknown as a missing one.
        if (!rows[0]) throw new NotFoundError(`subscription_id: no subscription ${req.subscriptionId} for this key`);
        if (!rows[0].live) throw new InvalidStateError("subscription_id: the subscription was deleted; it sends nothing to sign");
        // The secret replaced signs beside the new one until then; with no time given, neither it nor any before it
        // signs more. Rotated again while the one before still signs, that one signs on too (until its time, or
        // this rotation's if sooner): a receiver not yet moved holds it (the second rotation a retry after a lost
        // answer), and one moved holds the replaced one. Before, one of the two was dropped and its deliveries failed.
        // A delivery carries three signatures at most: a third rotation within the time drops the oldest.
        const { rows: [rotated] } = await tx.query<SubscriptionRow>(
          `UPDATE auth.partner_webhook_subscriptions
              SET older_secret_sealed = CASE WHEN $3::bigint > 0 AND previous_secret_expires_at > $4 THEN previous_secret_sealed END,
                  older_secret_expires_at = CASE WHEN $3::bigint > 0 AND previous_secret_expires_at > $4
                    THEN LEAST(previous_secret_expires_at, $4::timestamptz + make_interval(secs => $3::double precision / 1000)) END,
                  previous_secret_sealed = CASE WHEN $3::bigint > 0 THEN secret_sealed END,
                  previous_secret_expires_at = CASE WHEN $3::bigint > 0 THEN $4::timestamptz + make_interval(secs => $3::double precision / 1000) END,
                  secret_sealed = $2
            WHERE subscription_id = $1 RETURNING ${SUBSCRIPTION_COLUMNS}`,
          [req.subscriptionId, core.sealer.seal(secret), validMs, new Date(clockOf(core.ctx).now())],
        );
        return rotated;
      });
      return answered(row);
    },

    async listWebhookSubscriptions(req, ctx) {
      const key = await callingKey(pool, ctx);
      const size = pageSize(req.page);
      const after = decodeTimeIdToken(req.page?.pageToken);
      const { rows } = await pool.query<SubscriptionRow & { page_at: string }>(
        `SELECT ${SUBSCRIPTION_COLUMNS}, ${keysetTime("created_at")} AS page_at FROM auth.partner_webhook_subscriptions
          WHERE key_id = $1 AND ($2::timestamptz IS NULL OR (created_at, subscription_id) > ($2::timestamptz, $3::uuid))
          ORDER BY created_at, subscription_id LIMIT $4`,
        [key.keyId, after?.at ?? null, after?.id ?? null, size + 1],
      );
      const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.subscription_id]);
      return { subscriptions: items.map(toSubscription), page: { nextPageToken } };
    },

    async deleteWebhookSubscription(req, ctx) {
      const key = await callingKey(pool, ctx);
      const row = await withTransaction(pool, async (tx) => {
        const { rows } = await tx.query<SubscriptionRow>(
          `UPDATE auth.partner_webhook_subscriptions SET deleted_at = COALESCE(deleted_at, now()) WHERE subscription_id = $1 AND key_id = $2 RETURNING ${SUBSCRIPTION_COLUMNS}`,
          [req.subscriptionId, key.keyId],
        );
        // Another key's subscription is as unknown as a missing one.
        if (!rows[0]) throw new NotFoundError(`subscription_id: no subscription ${req.subscriptionId} for this key`);
        await tx.query(
          "UPDATE auth.partner_webhook_deliveries SET status = 'failed', last_error = 'not sent: the subscription was deleted' WHERE subscription_id = $1 AND status = 'pending'",
          [req.subscriptionId],
        );
        return rows[0];
      });
      return { subscription: toSubscription(row) };
    },

    async listWebhookDeliveries(req, ctx) {
      const key = await callingKey(pool, ctx);
      const page = await listDeliveries(pool, { keyId: key.keyId, subscriptionId: req.subscriptionId, status: deliveryState(req.status), page: req.page });
      return page;
    },
  };
}

/** Deliveries newest first, filtered; a page of them. */
export async function listDeliveries(
  db: Queryable,
  f: { keyId?: string; subscriptionId?: string; status?: DeliveryRow["status"]; page?: { pageSize?: number; pageToken?: string } },
) {
  const size = pageSize(f.page);
  const before = decodeTimeIdToken(f.page?.pageToken);
  const { rows } = await db.query<DeliveryRow & { page_at: string }>(
    `SELECT ${deliveryColumns("d")}, s.url, ${keysetTime("d.created_at")} AS page_at
       FROM auth.partner_webhook_deliveries d JOIN auth.partner_webhook_subscriptions s USING (subscription_id)
      WHERE ($1::uuid IS NULL OR d.key_id = $1) AND ($2::uuid IS NULL OR d.subscription_id = $2) AND ($3::text IS NULL OR d.status = $3)
        AND ($4::timestamptz IS NULL OR (d.created_at, d.delivery_id) < ($4::timestamptz, $5::uuid))
      ORDER BY d.created_at DESC, d.delivery_id DESC LIMIT $6`,
    [f.keyId || null, f.subscriptionId || null, f.status ?? null, before?.at ?? null, before?.id ?? null, size + 1],
  );
  const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.delivery_id]);
  return { deliveries: items.map(toDelivery), page: { nextPageToken } };
}
