// A single-host deployment: REPLICAS copies of the whole platform (every service
// and the gateway, calling each other in process), one event loop each, sharing
// PostgreSQL, NATS JetStream and Redis. node:cluster's primary owns the listening
// sockets and hands each new connection to a replica in turn, so the gateway and
// every service port are one address for all of them, as a Kubernetes Service is
// for a Deployment's pods: a provider's callback reaches whichever replica.
// Background work is shared as between pods (outbox rows and reconciliation
// leases claimed with SKIP LOCKED, durable JetStream consumers, leases); a
// WatchTip sees another replica's change at its next poll (1 s), not at once.
// Measured on 2 cores (bench/tip-e2e.ts replicas:2 against process, alternated, at
// the same 34-41 tips/s): 14.5-16.1 CPU ms per tip against 8.0-8.8, PostgreSQL's
// included, as each replica batches half the work (5.1 commits per tip against
// ~1.7). It pays only where cores, not one event loop, are left idle, so `make run`
// and the bench's process mode keep one loop. A replica that dies is replaced (a
// replacement that cannot start, after a wait that doubles each time); a
// connection the primary hands it before seeing the exit hangs until its client's
// deadline (node:cluster's round robin; platform/test/replicas.test.ts).
import cluster, { type Worker } from "node:cluster";
import os from "node:os";
import { z } from "zod";
import { ConfigError, createLogger, loadConfig, Metrics, onShutdown, StartupError, tracingFromEnv, type Logger } from "@ttip/runtime";
import { connectSharedState, gatewayOptions, gatewaySettings, internalKey, migrateAll, serverOptions, sharedState } from "./cluster.js";
import { modules } from "./modules.js";
import { startPlatform } from "./platform.js";
import { common } from "./process.js";

const portNumber = z.coerce.number().int().min(1).max(65_535);

const replicasShape = {
  ...common,
  ...internalKey,
  ...sharedState,
  ...gatewaySettings,
  // One event loop per core by default; each replica holds DATABASE_POOL_MAX connections.
  REPLICAS: z.coerce.number().int().min(1).max(64).default(os.availableParallelism()),
  // The services' own ports (provider callbacks and webhooks, JWKS): loopback unless a proxy needs them.
  SERVICES_HOST: z.string().default("127.0.0.1"),
  // <NAME>_PORT: each service's port, PORT+1, PORT+2... in the modules' order unless set.
  ...Object.fromEntries(modules.map((m) => [`${m.name.toUpperCase()}_PORT`, portNumber.optional()])),
};

type ReplicasConfig = z.infer<z.ZodObject<typeof replicasShape>> & Record<string, unknown>;

/**
 * How long the primary waits before replacing a replica that exited: 1 s after one that served, then
 * twice as long after each replacement in its place that exited before serving (2, 4, 8 s... at most
 * 60 s). Counted per place: another place's failing replacements change nothing here.
 */
function replaceAfterMs(failedStarts: number): number {
  return Math.min(1_000 * 2 ** failedStarts, 60_000);
}

/** The line the primary prints once every replica serves (harnesses wait for it). */
export const REPLICAS_SERVING = "replicas serving";

/** Each service's port: its <NAME>_PORT, else the next after the gateway's in the modules' order. */
function servicePorts(cfg: Pick<ReplicasConfig, "PORT"> & Record<string, unknown>): Map<string, number> {
  const ports = new Map(modules.map((m, i) => [m.name, (cfg[`${m.name.toUpperCase()}_PORT`] as number | undefined) ?? cfg.PORT + 1 + i]));
  const taken = [cfg.PORT, ...ports.values()];
  if (!cfg.PORT || new Set(taken).size !== taken.length) {
    throw new ConfigError([`PORT and <SERVICE>_PORT: ${taken.join(", ")}: replicas share fixed ports, so PORT must be set and every port must differ`]);
  }
  return ports;
}

/** `main.ts replicas`: the primary forks the replicas; each replica runs the platform. */
export async function runReplicas(): Promise<void> {
  const cfg = loadConfig(replicasShape) as ReplicasConfig;
  if (cluster.isPrimary) return runPrimary(cfg);
  return runReplica(cfg);
}

/** Migrates once, forks REPLICAS replicas, replaces one that dies, and stops them all on SIGTERM. */
async function runPrimary(cfg: ReplicasConfig): Promise<void> {
  const logger = createLogger({ level: cfg.LOG_LEVEL, base: { role: "replicas" } });
  const ports = servicePorts(cfg);
  await migrateAll(cfg.DATABASE_URL, logger);
  const replicas = new Set<Worker>();
  // A replica of the start that exits before serving fails the start; any other that exits (one
  // that served, even while the start goes on, or a replacement) is replaced until stopping.
  let stopping = false;
  const replacing = new Set<NodeJS.Timeout>();
  /**
   * A replica; `failedStarts`: the replacements in its place that exited before serving, one after
   * another (the database gone, say): each next one waits twice as long, so a primary whose
   * replicas cannot start does not restart them every second. `replacement`: not one of the start's.
   */
  const fork = (failedStarts: number, replacement: boolean) =>
    new Promise<void>((resolve, reject) => {
      const replica = cluster.fork();
      let served = false;
      replicas.add(replica);
      replica.once("message", (m) => {
        if (m !== "serving") return;
        served = true;
        if (replacement) logger.info({ replica: replica.id }, "a replacement replica serves");
        resolve();
      });
      replica.once("exit", (code, signal) => {
        replicas.delete(replica);
        reject(new StartupError(`a replica exited with ${signal ?? code} while starting (its log above says why)`));
        if (stopping || (!served && !replacement)) return;
        const failed = served ? 0 : failedStarts + 1;
        const delayMs = replaceAfterMs(failed);
        logger.error({ code, signal, served, failedStarts: failed, delayMs }, `a replica exited; starting another in ${delayMs / 1_000} s`);
        // Not unref'd: with its last replica gone nothing else keeps the primary's loop alive (node:cluster
        // closes a port's handle with its last worker), and it would exit 0 instead of replacing it.
        // Its exit already said why a replacement failed: nothing more to log here.
        const timer = setTimeout(() => {
          replacing.delete(timer);
          if (!stopping) fork(failed, true).catch(() => undefined);
        }, delayMs);
        replacing.add(timer);
      });
    });
  const stopAll = async () => {
    stopping = true;
    for (const timer of replacing) clearTimeout(timer);
    await Promise.all([...replicas].map((r) => stopReplica(r)));
  };
  try {
    // One after another: the first makes what every start ensures (signing keys, templates,
    // analytics' partitions) before the others look for it.
    for (let i = 0; i < cfg.REPLICAS; i++) await fork(0, false);
  } catch (err) {
    await stopAll();
    throw err;
  }
  onShutdown(logger, [stopAll], cfg.DRAIN_DELAY_MS + cfg.DRAIN_TIMEOUT_MS + 10_000);
  const host = cfg.HOST === "0.0.0.0" || cfg.HOST === "::" ? "127.0.0.1" : cfg.HOST;
  const services = [...ports].map(([name, port]) => `${name} ${port}`).join(", ");
  process.stdout.write(`TTIP: ${cfg.REPLICAS} ${REPLICAS_SERVING} on http://${host}:${cfg.PORT} (services on ${cfg.SERVICES_HOST}: ${services})\n`);
}

/** SIGTERM to one replica (it drains), resolved when it has exited. */
function stopReplica(replica: Worker): Promise<void> {
  if (replica.isDead()) return Promise.resolve();
  const exited = new Promise<void>((resolve) => replica.once("exit", () => resolve()));
  replica.process.kill("SIGTERM");
  return exited;
}

/** One replica: the whole platform on the shared ports, its own pool, bus connection and cache client. */
async function runReplica(cfg: ReplicasConfig): Promise<void> {
  const role = `replica-${cluster.worker?.id ?? 0}`;
  const logger: Logger = createLogger({ level: cfg.LOG_LEVEL, base: { role } });
  try {
    await startReplica(cfg, role, logger);
  } catch (err) {
    // Said once, in the log beside the primary's lines, with its role (the primary only sees an
    // exit code): not thrown on to main's handler, which would print it again.
    logger.fatal({ err }, `${role} could not start: ${(err as Error)?.message ?? err}`);
    process.exit(1);
  }
}

/** The replica's platform, serving; the primary hears "serving". */
async function startReplica(cfg: ReplicasConfig, role: string, logger: Logger): Promise<void> {
  const tracing = await tracingFromEnv("ttip-replica");
  const ports = servicePorts(cfg);
  const { pool, bus, cache } = await connectSharedState(cfg, role, logger);
  const drain = serverOptions(cfg);
  const platform = await startPlatform({
    // Every replica answers /metrics on the shared port: the label says which one did.
    ctx: { logger, pool, bus, cache, metrics: new Metrics({ role: "replicas", replica: String(cluster.worker?.id ?? 0) }) },
    modules,
    // No drain delay for the services: the gateway's, taken first, is the one a balancer needs. The ports are
    // shared (node:cluster), so a closed listener's connections go to the other replicas at once; a delay each,
    // taken one service after another, outlasted the deadline below and cut the last services' drains.
    serviceOptions: (name) => ({ ...drain, drainDelayMs: 0, host: cfg.SERVICES_HOST, port: ports.get(name) }),
    gateway: gatewayOptions(cfg),
  });
  onShutdown(
    logger,
    [() => platform.close(), () => bus.close(), () => cache.close(), () => pool.end(), async () => tracing?.stop()],
    cfg.DRAIN_DELAY_MS + cfg.DRAIN_TIMEOUT_MS + 5_000,
  );
  process.send?.("serving");
}
