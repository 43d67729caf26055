import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InProcessBus, JetStreamBus, type EventBus } from "../bus.js";
import { RedisCache } from "../cache.js";
import type { Clock } from "../clock.js";
import { signingInterceptor } from "../internal-auth.js";
import type { Logger } from "../log.js";
import { Metrics } from "../metrics.js";
import { createPeers } from "../peers.js";
import { startService, type RunningService, type ServiceContext, type ServiceModule } from "../service.js";
import type { Role } from "../caller.js";
import { asCaller } from "./as-caller.js";
import { captureLogger, createTestDatabase, testEnv, uniqueName, type TestDatabase } from "./index.js";

export interface TestService {
  db: TestDatabase;
  ctx: ServiceContext;
  service: RunningService;
  transport: Transport;
  /** Each started module's own URL, by name (e.g. a payment service's callback base). */
  urls: ReadonlyMap<string, string>;
  /**
   * A gRPC client; with `as`, calls carry that caller as the gateway would set
   * it, and with `stepUp` a device step-up the gateway verified just now.
   */
  client<S extends DescService>(service: S, as?: { subject: string; roles: Role[]; stepUp?: boolean }): Client<S>;
  close(): Promise<void>;
}

export interface TestServiceOptions {
  /** "jetstream" (default): a stream of its own on the test NATS server. */
  bus?: "jetstream" | "in-process";
  logger?: Logger;
  /** Extra modules started on the same database and bus (e.g. a service this one calls). */
  with?: ServiceModule[];
  /** The services' clock (e.g. an AdjustableClock the test moves forward); absent: the system's. */
  clock?: Clock;
}

/**
 * Starts `module` as a real gRPC server on loopback with a fresh database,
 * its own Redis key prefix and its own JetStream stream, for one test file.
 */
export async function startTestService(module: ServiceModule, options: TestServiceOptions = {}): Promise<TestService> {
  const logger = options.logger ?? captureLogger("silent").logger;
  // What is open so far, closed newest first: a start that fails part way closes it all before it throws, or its
  // connections (the pool, the bus, Redis, the modules already started) keep the test file's process from exiting.
  const opened: (() => Promise<void> | void)[] = [];
  const closeAll = async () => {
    const failures: unknown[] = [];
    for (const close of opened.splice(0).reverse()) await Promise.resolve().then(close).catch((err) => failures.push(err));
    if (failures.length) throw failures[0];
  };
  try {
    // Already migrated (a template's copy): the starts below find every file applied and check its checksum.
    const db = await createTestDatabase({ migrated: [...(options.with ?? []), module] });
    opened.push(() => db.drop());
    const bus: EventBus =
      options.bus === "in-process"
        ? new InProcessBus(logger, 50)
        : await JetStreamBus.connect({
            servers: testEnv().natsUrl,
            stream: uniqueName("S").toUpperCase(),
            subjectPrefix: uniqueName("ev"),
            logger,
            redeliveryDelayMs: 100,
          });
    opened.push(() => bus.close());
    const cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
    opened.push(() => cache.close());
    const urls = new Map<string, string>();
    const peers = createPeers((name) => urls.get(name));
    opened.push(() => peers.close());
    const ctx: ServiceContext = { logger, pool: db.pool, bus, cache, metrics: new Metrics(), peers, clock: options.clock };
    for (const m of options.with ?? []) {
      const s = await startService(m, ctx);
      opened.push(() => s.close());
      urls.set(m.name, s.server.url);
    }
    const service = await startService(module, ctx);
    opened.push(() => service.close());
    urls.set(module.name, service.server.url);
    // Signed like a peer service's calls, so direct calls in tests are believed.
    const transport = createGrpcTransport({ baseUrl: service.server.url, interceptors: [signingInterceptor()] });
    return {
      db,
      ctx,
      service,
      transport,
      urls,
      client: (desc, as) =>
        createClient(
          desc,
          as
            ? createGrpcTransport({
                baseUrl: service.server.url,
                interceptors: [asCaller(as), signingInterceptor()],
              })
            : transport,
        ),
      close: closeAll,
    };
  } catch (err) {
    await closeAll().catch((closing) => logger.warn({ err: closing }, "closing what a failed test service start had opened"));
    throw err;
  }
}
