// Partner keys' webhooks and workers' consents live in auth, beside the keys
// they hang on: a revoked key stops its deliveries and reads in the same
// database, subscription secrets are sealed like the keys' own, and a consent
// is a relation between a user and a key, both auth's.
import type { ConnectRouter } from "@connectrpc/connect";
import { PartnerAdminService, PartnerConsentService, PartnerService } from "@ttip/proto/ttip/auth/v1/partner_service_pb.js";
import { clockOf, consumeEventBatches } from "@ttip/runtime";
import type { AuthCore } from "../core.js";
import { partnerAdminHandlers } from "./admin.js";
import { consentedReadHandlers, consentHandlers } from "./consents.js";
import { fanOut, mayReachPartner, WEBHOOK_SOURCE_SUBJECT } from "./fan-out.js";
import { WebhookSender } from "./sender.js";
import { systemResolver, type HostResolver } from "./destination.js";
import { startRetention } from "./retention.js";
import { webhookHandlers } from "./webhooks.js";

export { webhookSignature, retryDelayMs, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_DELIVERY_HEADER } from "./sender.js";
export { MAX_SUBSCRIPTIONS_PER_KEY } from "./webhooks.js";
export { pruneDeliveries, type RetentionConfig } from "./retention.js";
export { addressKind, checkWebhookUrl, systemResolver, type HostResolver } from "./destination.js";

export const PARTNER_SERVICES = [PartnerService, PartnerConsentService, PartnerAdminService];
/** The inbox's (and the durable consumer's) name. */
export const WEBHOOK_CONSUMER = "auth-partner-webhooks";

/** One per running auth service: the sender its replays and new events wake. */
export interface PartnerWebhooks {
  routes(router: ConnectRouter): void;
  start(): Promise<() => Promise<void>>;
}

export function partnerWebhooks(core: AuthCore, resolve: HostResolver = systemResolver): PartnerWebhooks {
  const sender = new WebhookSender({ pool: core.ctx.pool, sealer: core.sealer, config: core.config.webhooks, logger: core.ctx.logger, metrics: core.ctx.metrics, resolve, clock: clockOf(core.ctx) });
  return {
    routes(router) {
      router.service(PartnerService, { ...webhookHandlers(core, resolve), ...consentedReadHandlers(core) });
      router.service(PartnerConsentService, consentHandlers(core));
      router.service(PartnerAdminService, partnerAdminHandlers(core, () => sender.wake()));
    },
    async start() {
      // Every payment event passes here and most concern no partner (a customer's tip):
      // those are acknowledged with no transaction (mayReachPartner); what is left of a
      // batch is recorded and fanned out in one. Decoded again there: only a partner's events.
      const consumer = await consumeEventBatches({
        bus: core.ctx.bus,
        pool: core.ctx.pool,
        schema: "auth",
        consumer: WEBHOOK_CONSUMER,
        subject: WEBHOOK_SOURCE_SUBJECT,
        logger: core.ctx.logger,
        metrics: core.ctx.metrics,
        changesState: mayReachPartner,
        handleBatch: async (messages, tx) => {
          let added = 0;
          // In order: a partner's deliveries for one tip are created as its events happened.
          for (const message of messages) added += await fanOut(tx, message);
          // The sender looks again once this commits (or at its next poll).
          if (added > 0) setImmediate(() => sender.wake());
        },
      });
      sender.start();
      const stopRetention = startRetention({ pool: core.ctx.pool, config: core.config.webhooks, logger: core.ctx.logger, metrics: core.ctx.metrics });
      return async () => {
        await consumer.stop();
        await sender.stop();
        await stopRetention();
      };
    },
  };
}
