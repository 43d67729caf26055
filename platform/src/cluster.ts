// The roles a cluster runs, one per process (one container image). Nothing here
// loads the embedded mode (PGlite) or the simulators: this module's graph is
// what the production build bundles (platform/build.ts checks it).
import type http from "node:http";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { createAdminHandler, isAdminPath } from "@ttip/admin/handler";
import {
  createLogger,
  createPeers,
  createPool,
  clientAddress,
  inNetworks,
  networkList,
  PRIVATE_NETWORKS,
  env,
  JetStreamBus,
  loadConfig,
  Metrics,
  migrate,
  onShutdown,
  tracingFromEnv,
  RedisCache,
  startService,
  type Logger,
} from "@ttip/runtime";
import { issueSetupToken } from "@ttip/auth";
import { startGateway } from "@ttip/gateway";
import { modules, publicServices } from "./modules.js";
import { common } from "./process.js";

export { exitOnStartError } from "./process.js";

// The admin console's build: apps/admin/dist from source; in the image, beside the bundle (platform/build.ts).
const ADMIN_CONSOLE_DIR = fileURLToPath(new URL("../../apps/admin/dist", import.meta.url));

/** /admin for clients in the admin networks (their address as the trusted proxies report it); nothing else. */
function adminConsole(adminNetworks: string[], trustedProxies: string[]): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const serve = createAdminHandler(ADMIN_CONSOLE_DIR);
  const admins = networkList(adminNetworks, "ADMIN_ALLOWED_NETWORKS");
  const trusted = trustedProxies.length ? networkList(trustedProxies, "TRUSTED_PROXIES") : undefined;
  return (req, res) => {
    if (!isAdminPath(req.url)) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    if (!inNetworks(admins, clientAddress(req.socket.remoteAddress, req.headers["x-forwarded-for"], trusted))) {
      res.writeHead(403, { "content-type": "text/plain" }).end("the admin console is open to the admin networks only\n");
      return;
    }
    serve(req, res);
  };
}

/**
 * Each service, the public gateway, migrate (every schema's migrations, then exit: the chart's
 * hook Job) and setup-token (a one-time token for the first admin while none exists, then exit).
 */
export const CLUSTER_ROLES: readonly string[] = [...modules.map((m) => m.name), "gateway", "migrate", "setup-token"];

// Signs the caller's identity on every internal hop; every process of a deployment shares it (a Secret).
export const internalKey = {
  INTERNAL_SIGNING_KEY: z.string({ required_error: "a shared secret of at least 32 characters" }).min(32, "must be at least 32 characters"),
};

/** How the public gateway guards and answers, wherever its backends run. */
export const gatewaySettings = {
  RATE_LIMIT_POINTS: z.coerce.number().int().positive().default(600),
  RATE_LIMIT_WINDOW_SECONDS: z.coerce.number().int().positive().default(60),
  CORS_ALLOWED_ORIGINS: env.list(),
  // Proxies whose X-Forwarded-For is believed (CIDRs): the client is the right-most address they did not add.
  TRUSTED_PROXIES: env.list(),
  // Deprecated: true trusts loopback and private ranges (where ingress controllers run) when TRUSTED_PROXIES is unset.
  TRUST_PROXY: env.flag(false),
  // Where admin RPCs may come from (with role admin), e.g. the VPN's range.
  ADMIN_ALLOWED_NETWORKS: env.list("127.0.0.0/8,::1/128"),
  // "on": the admin console (apps/admin's build) at /admin, to the admin networks only.
  ADMIN_CONSOLE: z.enum(["on", "off"]).default("off"),
};

const gatewayShape = {
  ...common,
  ...internalKey,
  ...gatewaySettings,
  REDIS_URL: env.url(["redis", "rediss"]),
  JWKS_URL: env.url(["http", "https"]).optional(),
  JWT_ISSUER: z.string().default("ttip-auth"),
  JWT_AUDIENCE: z.string().default("ttip"),
  ...Object.fromEntries(modules.map((m) => [`${m.name.toUpperCase()}_URL`, env.url(["http"])])),
};

/** Runs one cluster role in this process; resolves once it is serving (or, for migrate, done). */
export async function runClusterRole(role: string): Promise<void> {
  if (!CLUSTER_ROLES.includes(role)) throw new Error(`not a cluster role: ${role}`);
  if (role === "migrate") return runMigrate(role);
  if (role === "setup-token") return runSetupToken(role);
  if (role === "gateway") return runGateway(role);
  return runService(modules.find((m) => m.name === role)!);
}

/**
 * Before new pods start (Helm pre-install/pre-upgrade hook). Services still
 * migrate at start under the same advisory lock, so this is safe to repeat.
 */
async function runMigrate(role: string): Promise<void> {
  const cfg = loadConfig({ LOG_LEVEL: env.logLevel(), DATABASE_URL: env.url(["postgres", "postgresql"]) });
  await migrateAll(cfg.DATABASE_URL, createLogger({ level: cfg.LOG_LEVEL, base: { role } }));
}

/** Every schema's migrations, on a connection of its own. */
export async function migrateAll(databaseUrl: string, logger: Logger): Promise<void> {
  const pool = createPool(databaseUrl, { max: 1, applicationName: "ttip-migrate", logger });
  try {
    for (const m of modules) {
      const applied = await migrate(pool, m.name, m.migrations, logger);
      logger.info({ schema: m.name, applied: applied.length }, "schema up to date");
    }
  } finally {
    await pool.end();
  }
}

/**
 * A cluster's first admin: run once in any pod with the database (e.g. kubectl exec into auth).
 * The token goes to this terminal only, never to the logs.
 */
async function runSetupToken(role: string): Promise<void> {
  const cfg = loadConfig({ LOG_LEVEL: env.logLevel(), DATABASE_URL: env.url(["postgres", "postgresql"]) });
  const logger = createLogger({ level: cfg.LOG_LEVEL, base: { role } });
  const pool = createPool(cfg.DATABASE_URL, { max: 1, applicationName: "ttip-setup-token", logger });
  try {
    const setup = await issueSetupToken(pool, "by main.ts setup-token");
    if (!setup) {
      console.error("an admin already exists: an admin grants roles in the console (Users → roles)");
      process.exitCode = 1;
      return;
    }
    process.stdout.write(`one-time setup token for the first admin (valid until ${setup.expiresAt.toISOString()}; enter it at /admin after signing in with a PIN):\n${setup.token}\n`);
  } finally {
    await pool.end();
  }
}

/** The public gateway in front of every service's public RPCs; stops on SIGTERM after draining. */
async function runGateway(role: string): Promise<void> {
  const cfg = loadConfig(gatewayShape) as z.infer<z.ZodObject<typeof gatewayShape>> & Record<string, string>;
  const logger = createLogger({ level: cfg.LOG_LEVEL, base: { role } });
  const tracing = await tracingFromEnv(`ttip-${role}`);
  const cache = new RedisCache(cfg.REDIS_URL);
  const gateway = await startGateway({
    logger,
    metrics: new Metrics({ role }),
    cache,
    backends: modules.flatMap((m) => publicServices(m).map((service) => ({ service, url: cfg[`${m.name.toUpperCase()}_URL`] }))),
    jwt: cfg.JWKS_URL ? { jwksUrl: cfg.JWKS_URL, issuer: cfg.JWT_ISSUER, audience: cfg.JWT_AUDIENCE } : undefined,
    partners: cfg.AUTH_URL ? { authUrl: cfg.AUTH_URL } : undefined,
    stepUp: cfg.AUTH_URL ? { authUrl: cfg.AUTH_URL } : undefined,
    ...gatewayOptions(cfg),
  });
  onShutdown(logger, [() => gateway.close(), () => cache.close(), async () => tracing?.stop()], cfg.DRAIN_DELAY_MS + cfg.DRAIN_TIMEOUT_MS + 5_000);
}

type ServiceModule = (typeof modules)[number];

/** One service with its database pool, JetStream bus, Redis cache and peers; stops on SIGTERM after draining. */
async function runService(module: ServiceModule): Promise<void> {
  const role = module.name;
  const cfg = loadServiceConfig(module);
  const logger = createLogger({ level: cfg.LOG_LEVEL, base: { role } });
  const tracing = await tracingFromEnv(`ttip-${role}`);
  const peers = createPeers((name) => (cfg as Record<string, unknown>)[`${name.toUpperCase()}_URL`] as string | undefined, undefined, { frames: cfg.RPC_FRAMES === "on" });
  const { pool, bus, cache } = await connectSharedState(cfg, role, logger);
  const service = await startService(module, { logger, pool, bus, cache, metrics: new Metrics({ role }), peers }, serverOptions(cfg));
  onShutdown(
    logger,
    [() => service.close(), async () => peers.close(), () => bus.close(), () => cache.close(), () => pool.end(), async () => tracing?.stop()],
    cfg.DRAIN_DELAY_MS + cfg.DRAIN_TIMEOUT_MS + 5_000,
  );
}

/**
 * One service's connections, as the chart's default (a replica of the whole platform keeps sharedState's 10
 * for all of them): on a 2-core PostgreSQL more connections run more statements at once, each switched away
 * more often. bench/pool-sizes.ts, 5 against 10: PostgreSQL's CPU per tip 0.95-0.96x, its context switches
 * 0.87-0.96x, tips/s the same.
 */
const SERVICE_POOL_MAX = 5;

/** A service's configuration: the common settings, the internal key, its peers' URLs, Postgres, NATS and Redis. */
function loadServiceConfig(module: ServiceModule) {
  const peerUrls = Object.fromEntries((module.calls ?? []).map((name) => [`${name.toUpperCase()}_URL`, env.url(["http"])]));
  return loadConfig({
    ...common,
    ...internalKey,
    ...peerUrls,
    ...sharedState,
    DATABASE_POOL_MAX: z.coerce.number().int().positive().default(SERVICE_POOL_MAX),
  });
}

/** PostgreSQL, NATS JetStream and Redis: what every process of a deployment shares. */
export const sharedState = {
  DATABASE_URL: env.url(["postgres", "postgresql"]),
  DATABASE_POOL_MAX: z.coerce.number().int().positive().default(10),
  NATS_URL: env.url(["nats", "tls"]),
  NATS_STREAM: z.string().regex(/^[A-Za-z0-9_-]+$/, "letters, digits, - and _").default("TTIP"),
  // The first token of every subject on the wire: another deployment (or test) on the same server uses its own, with its own stream.
  NATS_SUBJECT_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/, "letters, digits, - and _").default("ttip"),
  NATS_STREAM_MAX_AGE_HOURS: z.coerce.number().int().min(0).default(0),
  NATS_STREAM_MAX_BYTES: z.coerce.number().int().min(0).default(0),
  NATS_STREAM_REPLICAS: z.coerce.number().int().min(0).max(5).default(0),
  REDIS_URL: env.url(["redis", "rediss"]),
};

/** This process's pool, JetStream bus and Redis cache; the caller closes them. */
export async function connectSharedState(cfg: z.infer<z.ZodObject<typeof sharedState>>, role: string, logger: Logger) {
  const pool = createPool(cfg.DATABASE_URL, { max: cfg.DATABASE_POOL_MAX, applicationName: `ttip-${role}`, logger });
  const bus = await JetStreamBus.connect({
    servers: cfg.NATS_URL,
    stream: cfg.NATS_STREAM,
    subjectPrefix: cfg.NATS_SUBJECT_PREFIX,
    logger,
    limits: { maxAgeMs: cfg.NATS_STREAM_MAX_AGE_HOURS * 3_600_000, maxBytes: cfg.NATS_STREAM_MAX_BYTES, replicas: cfg.NATS_STREAM_REPLICAS },
  }).catch(async (err) => {
    await pool.end();
    throw err;
  });
  return { pool, bus, cache: new RedisCache(cfg.REDIS_URL) };
}

/** The gateway's guards, answers and listening settings (its backends and token checks are the caller's). */
export function gatewayOptions(cfg: z.infer<z.ZodObject<typeof common & typeof gatewaySettings>>) {
  const trustedProxies = cfg.TRUSTED_PROXIES.length ? cfg.TRUSTED_PROXIES : cfg.TRUST_PROXY ? [...PRIVATE_NETWORKS] : [];
  return {
    rateLimit: { points: cfg.RATE_LIMIT_POINTS, durationSeconds: cfg.RATE_LIMIT_WINDOW_SECONDS },
    corsOrigins: cfg.CORS_ALLOWED_ORIGINS,
    trustedProxies,
    adminNetworks: cfg.ADMIN_ALLOWED_NETWORKS,
    web: cfg.ADMIN_CONSOLE === "on" ? adminConsole(cfg.ADMIN_ALLOWED_NETWORKS, trustedProxies) : undefined,
    ...serverOptions(cfg),
  };
}

/** Where a role's server listens and how it drains, from the settings every role shares. */
export function serverOptions(cfg: z.infer<z.ZodObject<typeof common>>) {
  return {
    host: cfg.HOST,
    port: cfg.PORT,
    drainTimeoutMs: cfg.DRAIN_TIMEOUT_MS,
    drainDelayMs: cfg.DRAIN_DELAY_MS,
    maxConnectionAgeMs: cfg.GRPC_MAX_CONNECTION_AGE_MS,
    frames: cfg.RPC_FRAMES === "on",
    readMaxBytes: cfg.READ_MAX_BYTES,
    maxCallsInFlight: cfg.MAX_CALLS_IN_FLIGHT,
  };
}
