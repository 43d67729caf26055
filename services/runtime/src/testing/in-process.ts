// The fast test tier, as connect-es's own tests do it: a module's handlers
// behind the same interceptors a server runs (errors, input limits, signed
// identity, declared access, step-up, protovalidate), called through a router
// transport. No socket, no HTTP/2, no server start; real Postgres and Redis,
// the in-process bus. For handler rules; the real-server tests keep the wire.
import type { DescService } from "@bufbuild/protobuf";
import { createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { InProcessBus } from "../bus.js";
import { RedisCache } from "../cache.js";
import type { Role } from "../caller.js";
import type { Clock } from "../clock.js";
import { migrate } from "../db.js";
import { inputInterceptor } from "../input.js";
import { signingInterceptor } from "../internal-auth.js";
import { errorInterceptor } from "../interceptors.js";
import type { Logger } from "../log.js";
import { Metrics } from "../metrics.js";
import { createPeers } from "../peers.js";
import { serviceInterceptors, type ServiceContext, type ServiceModule } from "../service.js";
import { captureLogger, createTestDatabase, testEnv, uniqueName, type TestDatabase } from "./index.js";
import { asCaller } from "./service.js";

export interface InProcessService {
  db: TestDatabase;
  ctx: ServiceContext;
  /** A client of the module's handlers; with `as`, calls carry that caller as the gateway would set it. */
  client<S extends DescService>(service: S, as?: { subject: string; roles: Role[]; stepUp?: boolean }): Client<S>;
  close(): Promise<void>;
}

/** Starts `module` in this process for one test file: migrated, its background work started, its RPCs callable without a server. */
export async function startInProcessService(module: ServiceModule, options: { logger?: Logger; clock?: Clock } = {}): Promise<InProcessService> {
  const logger = options.logger ?? captureLogger("silent").logger;
  const db = await createTestDatabase();
  const bus = new InProcessBus(logger, 50);
  const cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
  const peers = createPeers(() => undefined);
  // One object for start() and routes(): modules keep their state per context.
  const ctx: ServiceContext = { logger, pool: db.pool, bus, cache, metrics: new Metrics(), peers, clock: options.clock };
  await migrate(db.pool, module.name, module.migrations, logger);
  const stop = module.start ? await module.start(ctx) : async () => undefined;
  const router = { interceptors: [errorInterceptor(logger), inputInterceptor(), ...serviceInterceptors(), createValidateInterceptor()] };
  const transportAs = (as?: Parameters<typeof asCaller>[0]) =>
    createRouterTransport((r) => module.routes(r, ctx), { router, transport: { interceptors: [...(as ? [asCaller(as)] : []), signingInterceptor()] } });
  return {
    db,
    ctx,
    client: (desc, as) => createClient(desc, transportAs(as)),
    close: async () => {
      await stop();
      peers.close();
      await bus.close();
      await cache.close();
      await db.drop();
    },
  };
}
