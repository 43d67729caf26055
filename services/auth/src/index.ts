import { fileURLToPath } from "node:url";
import { AuthService, AuthAdminService, AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import type { ConnectRouter } from "@connectrpc/connect";
import { clockOf, perContext, repeating, type HttpFilter, type ModuleOptions, type ServiceContext, type ServiceModule } from "@ttip/runtime";
import { accountHandlers } from "./account.js";
import { adminHandlers } from "./admin.js";
import { startAdminAudit } from "./audit.js";
import { claimFirstAdmin } from "./bootstrap.js";
import { loadAuthConfig, type AuthConfig } from "./config.js";
import { createCore, type AuthCore } from "./core.js";
import { deviceHandlers } from "./devices.js";
import { internalHandlers } from "./internal.js";
import { loginHandlers, pruneOtpChallenges } from "./login.js";
import { remarkRecentRevocations } from "./sessions.js";
import { partnerWebhooks, PARTNER_SERVICES, type HostResolver, type PartnerWebhooks } from "./partners/index.js";
import { NotificationOtpSender, SmsApiOtpSender, type OtpSender } from "./otp-sender.js";
import type { SmsSimulator } from "./sms-simulator.js";
import { toUser } from "./users.js";

export { signPartnerRequest, partnerStringToSign } from "./partner.js";
export { webhookSignature, retryDelayMs, checkWebhookUrl, addressKind, type HostResolver, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_DELIVERY_HEADER, WEBHOOK_CONSUMER } from "./partners/index.js";
export { issueSetupToken, SETUP_TOKEN_TTL_MS } from "./bootstrap.js";
export type { OtpSender } from "./otp-sender.js";
export { AUDIENCE, ISSUER } from "./keys.js";

export const JWKS_PATH = "/.well-known/jwks.json";

/** Stops the partner webhooks, then the admin audit consumer. */
function stopBoth(first: () => Promise<void>, second: () => Promise<void>): () => Promise<void> {
  return async () => {
    await first();
    await second();
  };
}

export interface AuthOptions extends ModuleOptions {
  /** Replaces the configured OTP delivery (a test double or another channel). */
  otpSender?: OtpSender;
  /** Resolves webhook hosts (default: the system resolver); tests script DNS answers with it. */
  webhookResolver?: HostResolver;
}

/** The auth service module; `auth` below is the one every host starts. */
export function createAuth(options: AuthOptions = {}): ServiceModule {
  let config: AuthConfig | undefined;
  const configOf = () => (config ??= loadAuthConfig(options.env));
  const sms: SmsSimulatorSlot = {};
  // http(ctx) runs before routes(router, ctx), both with the same context.
  const coreOf = perContext((ctx) => createCore(ctx, configOf(), otpSenderFor(ctx, options, configOf, sms)));
  const webhooksOf = perContext((ctx) => partnerWebhooks(coreOf(ctx), options.webhookResolver));

  return {
    name: "auth",
    migrations: fileURLToPath(new URL("../migrations", import.meta.url)),
    // payment and wallet: a partner's consented reads of a worker's payouts and statements.
    calls: ["notification", "payment", "wallet"],
    services: [AuthService, AuthAdminService, AuthInternalService, ...PARTNER_SERVICES],
    routes(router, ctx) {
      registerRoutes(router, coreOf(ctx), webhooksOf(ctx));
    },
    http(ctx) {
      return jwksEndpoint(ctx, coreOf(ctx));
    },
    start(ctx) {
      return startAuth(ctx, options, configOf, webhooksOf(ctx), sms, coreOf(ctx));
    },
  };
}

/** Without a configured SMS API outside production, start() runs the simulator in-process and keeps it here. */
interface SmsSimulatorSlot {
  simulator?: SmsSimulator;
}

/** How OTPs leave: the options' sender, notification, or an SMS API (the simulator's when none is configured). */
function otpSenderFor(ctx: ServiceContext, options: AuthOptions, configOf: () => AuthConfig, sms: SmsSimulatorSlot): OtpSender {
  if (options.otpSender) return options.otpSender;
  const c = configOf();
  if (c.otpSender === "notification") return new NotificationOtpSender(() => ctx.peers("notification"));
  return new SmsApiOtpSender(() => {
    const url = c.sms.url ?? sms.simulator?.url;
    if (!url) throw new Error("AUTH_SMS_URL is not set");
    return { url, username: c.sms.username, apiKey: c.sms.apiKey };
  });
}

/** Every RPC of the auth services: one file per area, merged here; the partner services are the webhooks'. */
function registerRoutes(router: ConnectRouter, core: AuthCore, webhooks: PartnerWebhooks): void {
  router.service(AuthService, {
    ...loginHandlers(core),
    ...accountHandlers(core),
    ...deviceHandlers(core),
    claimFirstAdmin: async (req, hctx) => ({ user: toUser(await claimFirstAdmin(core, req.setupToken, hctx)) }),
  });
  router.service(AuthAdminService, adminHandlers(core));
  router.service(AuthInternalService, internalHandlers(core));
  webhooks.routes(router);
}

/** GET /.well-known/jwks.json: the public signing keys every verifier reads. */
function jwksEndpoint(ctx: ServiceContext, core: AuthCore): HttpFilter {
  return (req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== JWKS_PATH) return false;
    core.keys.jwks().then(
      (jwks) => {
        // Short caching: verifiers pick up a rotation within a minute, and the overlap covers that.
        res.writeHead(200, { "content-type": "application/jwk-set+json", "cache-control": "public, max-age=60" });
        res.end(JSON.stringify(jwks));
      },
      (err) => {
        ctx.logger.error({ err }, "JWKS failed");
        res.writeHead(503, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: "keys unavailable" }));
      },
    );
    return true;
  };
}

/** Starts the admin audit and partner webhook consumers, and the SMS simulator when OTPs need one; returns the stop. */
async function startAuth(ctx: ServiceContext, options: AuthOptions, configOf: () => AuthConfig, webhooks: PartnerWebhooks, sms: SmsSimulatorSlot, core: AuthCore): Promise<() => Promise<void>> {
  const stopAudit = await startAdminAudit(ctx);
  const stopConsumers = stopBoth(await webhooks.start(), stopBoth(stopAudit, stopBoth(remarkingRevocations(ctx, core), pruningOtpChallenges(ctx))));
  const c = configOf();
  if (options.otpSender || c.otpSender !== "sms" || c.sms.url) return stopConsumers;
  if (c.production) {
    await stopConsumers();
    throw new Error("AUTH_SMS_URL is required in production (or AUTH_OTP_SENDER=notification)");
  }
  // Loaded only here: the production build leaves the simulators out.
  const { startSmsSimulator } = await import("./sms-simulator.js");
  sms.simulator = await startSmsSimulator();
  ctx.logger.info({ smsSimulator: `${sms.simulator.url}/simulator/messages` }, "no AUTH_SMS_URL: OTPs go to the SMS simulator");
  return async () => {
    await stopConsumers();
    await sms.simulator?.close();
    sms.simulator = undefined;
  };
}

/** Writes recent revocations to Redis again every revocationRemarkMs (remarkRecentRevocations); returns the stop. */
function remarkingRevocations(ctx: ServiceContext, core: AuthCore): () => Promise<void> {
  const everyMs = core.config.revocationRemarkMs;
  if (!everyMs) return async () => undefined;
  return repeating(() => remarkRecentRevocations(core), { everyMs, logger: ctx.logger, failed: "recent revocations not written again; the next pass tries" });
}

/** Deletes sign-in codes a day past their expiry, hourly (pruneOtpChallenges); returns the stop. */
function pruningOtpChallenges(ctx: ServiceContext): () => Promise<void> {
  return repeating(() => pruneOtpChallenges(ctx.pool, clockOf(ctx).now()), { everyMs: 3_600_000, logger: ctx.logger, failed: "expired sign-in codes not deleted; the next pass tries" });
}

/** Users, roles, phone OTP, PINs, sessions and refresh tokens, device keys for biometric unlock, partner API keys, the audit log, and the signing keys (JWKS) that every other part verifies tokens with. */
export const auth: ServiceModule = createAuth();
