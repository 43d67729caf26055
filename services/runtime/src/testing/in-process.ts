// The fast test tier, as connect-es's own tests do it: a module's handlers
// behind the same interceptors a server runs (errors, input limits, signed
// identity, declared access, step-up, protovalidate), called through a router
// transport. No socket, no HTTP/2, no server start; real Postgres and Redis,
// the in-process bus with each module's outbox relayed to it. For handler
// rules; the real-server tests keep the wire.
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { InProcessBus } from "../bus.js";
import { RedisCache } from "../cache.js";
import type { Role } from "../caller.js";
import type { Clock } from "../clock.js";
import { migrate } from "../db.js";
import { inputInterceptor } from "../input.js";
import { signingInterceptor } from "../internal-auth.js";
import { errorInterceptor, requestIdPropagation } from "../interceptors.js";
import type { Logger } from "../log.js";
import { Metrics } from "../metrics.js";
import { OutboxRelay } from "../outbox.js";
import type { Peers } from "../peers.js";
import { serviceInterceptors, type ServiceContext, type ServiceModule } from "../service.js";
import { captureLogger, createTestDatabase, testEnv, uniqueName, type TestDatabase } from "./index.js";
import { asCaller } from "./as-caller.js";
import { validateInterceptor } from "../validation.js";

export interface InProcessService {
  db: TestDatabase;
  ctx: ServiceContext;
  /** A client of the module's handlers; with `as`, calls carry that caller as the gateway would set it. */
  client<S extends DescService>(service: S, as?: { subject: string; roles: Role[]; stepUp?: boolean }): Client<S>;
  close(): Promise<void>;
}

export interface InProcessOptions {
  logger?: Logger;
  clock?: Clock;
  /**
   * The services `module` calls, started beside it on the same database, bus and
   * cache; its peer calls reach their handlers through router transports too.
   */
  with?: ServiceModule[];
}

/** Starts `module` in this process for one test file: migrated, its background work started, its RPCs callable without a server. */
export async function startInProcessService(module: ServiceModule, options: InProcessOptions = {}): Promise<InProcessService> {
  const logger = options.logger ?? captureLogger("silent").logger;
  // Already migrated (a template's copy): migrate() below finds every file applied and checks its checksum.
  const db = await createTestDatabase({ migrated: [...(options.with ?? []), module] });
  // The clock also times the bus's duplicate window: a test moves past it to deliver an event again.
  const bus = new InProcessBus(logger, 50, {}, options.clock);
  const cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
  const stops: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const stop of stops) await stop();
    await bus.close();
    await cache.close();
    await db.drop();
  };
  // A peer's calls go as createPeers sends them: the request id passed on, the identity signed.
  // Its handlers are routed at its first call, after its start() (which some modules' routes() need).
  const routed = new Map<string, Transport>();
  for (const m of options.with ?? []) routed.set(m.name, lazyTransport(() => routerTransport(m, ctx, logger, [requestIdPropagation(), signingInterceptor()])));
  // A peer not started answers as an unreachable one does: UNAVAILABLE, at call time.
  const peers: Peers = (name) => routed.get(name) ?? unreachable(`${name} is not started in this test (pass it in \`with\`)`);
  // One object for start() and routes(): modules keep their state per context.
  const ctx: ServiceContext = { logger, pool: db.pool, bus, cache, metrics: new Metrics(), peers, clock: options.clock };
  try {
    for (const m of [...(options.with ?? []), module]) {
      await migrate(db.pool, m.name, m.migrations, logger);
      // Events leave through the outbox, as startService relays them: work done on the bus (a delivery, a consumer) happens here too.
      const relay = new OutboxRelay({ pool: db.pool, schema: m.name, bus, logger, metrics: ctx.metrics });
      relay.start();
      stops.unshift(() => relay.stop());
      if (m.start) stops.unshift(await m.start(ctx));
    }
  } catch (err) {
    // A failed start must not leave the database and Redis open: the test file would never end.
    await close();
    throw err;
  }
  const transportAs = (as?: Parameters<typeof asCaller>[0]) => routerTransport(module, ctx, logger, [...(as ? [asCaller(as)] : []), signingInterceptor()]);
  return { db, ctx, client: (desc, as) => createClient(desc, transportAs(as)), close };
}

/** A transport made at its first call. */
function lazyTransport(make: () => Transport): Transport {
  let made: Transport | undefined;
  const transport = () => (made ??= make());
  return { unary: (...args) => transport().unary(...args), stream: (...args) => transport().stream(...args) };
}

/** `module`'s handlers behind the server's own interceptors, called with `clientInterceptors`. */
function routerTransport(module: ServiceModule, ctx: ServiceContext, logger: Logger, clientInterceptors: Interceptor[]): Transport {
  const router = { interceptors: [errorInterceptor(logger), inputInterceptor(), ...serviceInterceptors(), validateInterceptor()] };
  return createRouterTransport((r) => module.routes(r, ctx), { router, transport: { interceptors: clientInterceptors } });
}

function unreachable(why: string): Transport {
  const fail = () => Promise.reject(new ConnectError(why, Code.Unavailable));
  return { unary: fail, stream: fail };
}
