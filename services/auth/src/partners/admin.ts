import { type ServiceImpl } from "@connectrpc/connect";
import { clockOf, InvalidStateError, NotFoundError, requireCaller, withTransaction } from "@ttip/runtime";
import type { PartnerAdminService } from "@ttip/proto/ttip/auth/v1/partner_service_pb.js";
import { audit, AuditAction } from "../audit.js";
import type { AuthCore } from "../core.js";
import { clientAddressOf } from "../request.js";
import { deliveryColumns, deliveryState, toDelivery, type DeliveryRow } from "./rows.js";
import { listDeliveries } from "./webhooks.js";

/** The admin console's delivery log and replay. */
export function partnerAdminHandlers(core: AuthCore, wake: () => void): Partial<ServiceImpl<typeof PartnerAdminService>> {
  const { pool } = core.ctx;
  return {
    async listAllWebhookDeliveries(req) {
      return listDeliveries(pool, { keyId: req.keyId, status: deliveryState(req.status), page: req.page });
    },

    async replayWebhookDelivery(req, ctx) {
      const admin = requireCaller(ctx);
      const row = await withTransaction(pool, async (tx) => {
        const found = await tx.query<DeliveryRow>(
          `SELECT ${deliveryColumns("d")}, s.url, s.deleted_at IS NOT NULL AS deleted, k.revoked_at IS NOT NULL AS revoked
             FROM auth.partner_webhook_deliveries d JOIN auth.partner_webhook_subscriptions s USING (subscription_id)
             JOIN auth.partner_api_keys k ON k.key_id = d.key_id
            WHERE d.delivery_id = $1 FOR UPDATE OF d`,
          [req.deliveryId],
        );
        const d = found.rows[0] as (DeliveryRow & { deleted: boolean; revoked: boolean }) | undefined;
        if (!d) throw new NotFoundError(`delivery_id: no delivery ${req.deliveryId}`);
        if (d.revoked) throw new InvalidStateError("delivery_id: its partner key is revoked; nothing is sent for it");
        if (d.deleted) throw new InvalidStateError("delivery_id: its subscription is deleted; nothing is sent for it");
        // Same delivery id and body: a receiver that has it already drops it. Due now, unless a claim is being sent
        // (claimed, its attempt not yet logged): its due time is that claim's lease, and moved to now, a second round
        // claimed and sent it beside the first.
        const { rows } = await tx.query<DeliveryRow>(
          `UPDATE auth.partner_webhook_deliveries d SET status = 'pending', budget_used = 0, replay_requested = true,
                  next_attempt_at = CASE WHEN d.status = 'pending' AND d.attempts > 0 AND NOT EXISTS (
                    SELECT 1 FROM auth.partner_webhook_attempts a WHERE a.delivery_id = d.delivery_id AND a.attempt = d.attempts)
                  THEN GREATEST(d.next_attempt_at, $2) ELSE $2 END
            WHERE d.delivery_id = $1 RETURNING ${deliveryColumns()}`,
          // Due on the service's clock, which the sender compares due times with.
          [req.deliveryId, new Date(clockOf(core.ctx).now())],
        );
        await audit(tx, AuditAction.WEBHOOK_DELIVERY_REPLAYED, { actorUserId: admin.subject, ip: clientAddressOf(ctx), detail: `delivery ${req.deliveryId}: ${req.reason}`, target: `webhook_delivery:${req.deliveryId}` });
        return { ...rows[0], url: d.url };
      });
      wake();
      return { delivery: toDelivery(row) };
    },
  };
}
