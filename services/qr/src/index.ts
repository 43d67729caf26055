import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { QrService, QrInternalService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { ConfigError, type ModuleOptions, type ServiceContext, type ServiceModule } from "@ttip/runtime";
import { devKeyAllowed, loadQrConfig, type QrConfig } from "./config.js";
import { createHandlers, type QrDeps } from "./handlers/index.js";
import { activeKeyInAuth } from "./partner-links.js";
import { Resolver } from "./resolver.js";
import { PayloadSigner } from "./signing.js";
import { startTipConsumer } from "./tips.js";
import { startBlockedUsers } from "./blocked-users.js";

/** The signing key: from config, or in embedded and test runs a generated one kept in the database. */
async function signingKey(ctx: ServiceContext, cfg: ReturnType<typeof loadQrConfig>): Promise<string> {
  if (cfg.QR_SIGNING_KEY) return cfg.QR_SIGNING_KEY;
  if (!devKeyAllowed(cfg)) {
    throw new ConfigError(["QR_SIGNING_KEY: is required (at least 32 characters); only embedded and test runs may use a generated key"]);
  }
  await ctx.pool.query(`INSERT INTO qr.dev_settings (key, value) VALUES ('signing_key', $1) ON CONFLICT DO NOTHING`, [
    randomBytes(32).toString("base64url"),
  ]);
  const { rows } = await ctx.pool.query(`SELECT value FROM qr.dev_settings WHERE key = 'signing_key'`);
  ctx.logger.warn("QR_SIGNING_KEY is not set: using a generated development key");
  return rows[0].value;
}

/** The qr service; `env` lets tests and benchmarks pass their own configuration. */
export function createQrModule(options: ModuleOptions = {}): ServiceModule {
  // One module may be started more than once in a process (tests): state per start.
  const deps = new WeakMap<ServiceContext, QrDeps>();
  let config: QrConfig | undefined;
  return {
    name: "qr",
    migrations: fileURLToPath(new URL("../migrations", import.meta.url)),
    services: [QrService, QrInternalService],
    calls: ["auth"],
    async start(ctx) {
      const cfg = (config ??= loadQrConfig(options.env));
      const key = await signingKey(ctx, cfg);
      const signer = new PayloadSigner(key, cfg.QR_PREVIOUS_SIGNING_KEYS);
      const resolver = new Resolver(ctx.pool, ctx.cache, signer, cfg, ctx.logger, ctx.metrics);
      deps.set(ctx, {
        pool: ctx.pool,
        cfg,
        signer,
        deviceSalt: `device:${key}`,
        resolver,
        requireActiveKey: activeKeyInAuth(ctx.peers),
      });
      const stopTipConsumer = await startTipConsumer(ctx);
      const stopBlockedUsers = await startBlockedUsers(ctx, resolver);
      return async () => {
        await stopTipConsumer();
        await stopBlockedUsers();
        await resolver.stop();
      };
    },
    routes(router, ctx) {
      const d = deps.get(ctx);
      if (!d) throw new Error("qr: routes() called before start()");
      const handlers = createHandlers(d);
      router.service(QrService, handlers.public);
      router.service(QrInternalService, handlers.internal);
    },
  };
}

/** QR codes for workers and venues: short codes, signed payloads with optional expiry and dynamic parameters, PNG/SVG renders, the offline KE-QR and USSD forms, and scan events. */
export const qr: ServiceModule = createQrModule();
