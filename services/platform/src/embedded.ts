import path from "node:path";
import { z } from "zod";
import { startGateway } from "@ttip/gateway";
import {
  createLogger,
  createPeers,
  createPool,
  env,
  InProcessBus,
  loadConfig,
  MemoryCache,
  Metrics,
  onShutdown,
  startEmbeddedPostgres,
  startService,
  type RunningService,
} from "@ttip/runtime";
import { modules, publicServices } from "./modules.js";

export interface EmbeddedPlatform {
  gatewayUrl: string;
  services: RunningService[];
  close(): Promise<void>;
}

/**
 * The whole platform in one process with nothing to install: PGlite behind
 * its socket server, the in-process bus and cache, each service on its own
 * loopback port and the gateway in front, exactly as in a cluster.
 */
export async function startEmbedded(envVars: Record<string, string | undefined> = process.env): Promise<EmbeddedPlatform> {
  const cfg = loadConfig(
    {
      PORT: env.port(8080),
      HOST: z.string().default("127.0.0.1"),
      LOG_LEVEL: env.logLevel(),
      // "memory" keeps nothing between runs.
      DATA_DIR: z.string().default(path.resolve(".data/pglite")),
    },
    envVars,
  );
  const logger = createLogger({ level: cfg.LOG_LEVEL, base: { mode: "embedded" } });
  const postgres = await startEmbeddedPostgres(cfg.DATA_DIR === "memory" ? undefined : cfg.DATA_DIR);
  // PGlite is one session: every service shares one connection.
  const pool = createPool(postgres.url, { max: 1, applicationName: "ttip-embedded", logger });
  const bus = new InProcessBus(logger);
  const cache = new MemoryCache();
  const metrics = new Metrics({ mode: "embedded" });
  const urls = new Map<string, string>();
  const peers = createPeers((name) => urls.get(name));
  const ctx = { logger, pool, bus, cache, metrics, peers };

  const services: RunningService[] = [];
  for (const module of modules) {
    const service = await startService(module, ctx);
    urls.set(module.name, service.server.url);
    services.push(service);
  }
  const gateway = await startGateway({
    logger,
    metrics,
    cache,
    backends: services.flatMap((s, i) => publicServices(modules[i]).map((service) => ({ service, url: s.server.url }))),
    // Tokens are verified with auth's published keys, as in a cluster.
    jwt: { jwksUrl: `${urls.get("auth")}/.well-known/jwks.json`, issuer: "ttip-auth", audience: "ttip" },
    rateLimit: { points: 600, durationSeconds: 60 },
    corsOrigins: ["*"],
    host: cfg.HOST,
    port: cfg.PORT,
  });

  const close = async () => {
    await gateway.close();
    for (const s of services) await s.close();
    peers.close();
    await bus.close();
    await pool.end();
    await postgres.close();
  };
  return { gatewayUrl: gateway.url, services, close };
}

/** `make run`: start, print where to open it, stop cleanly on Ctrl-C. */
export async function runEmbedded(): Promise<void> {
  const platform = await startEmbedded();
  const logger = createLogger({ base: { mode: "embedded" } });
  onShutdown(logger, [() => platform.close()]);
  const lines = [
    "",
    `TTIP is running on ${platform.gatewayUrl}`,
    "  Connect, gRPC-web and gRPC on one port; every service behind it:",
    ...platform.services.map((s) => `    ${s.name.padEnd(13)} ${s.server.url}`),
    "  Try:",
    `    curl -s ${platform.gatewayUrl}/grpc.health.v1.Health/Check -H 'content-type: application/json' -d '{"service":"ttip.wallet.v1.WalletService"}'`,
    `    npx buf curl --http2-prior-knowledge --protocol grpc ${platform.gatewayUrl}/grpc.health.v1.Health/List`,
    `  Metrics: ${platform.gatewayUrl}/metrics   Stop: Ctrl-C`,
    "",
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
