import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import type { EventBus } from "./bus.js";
import type { Cache } from "./cache.js";
import { weakMemo } from "./bounded-map.js";
import { systemClock, type Clock } from "./clock.js";
import { migrate, type Pool } from "./db.js";
import { accessInterceptor } from "./access.js";
import { admission, DEFAULT_MAX_CALLS_IN_FLIGHT } from "./admission.js";
import { internalAuthInterceptor } from "./internal-auth.js";
import { stepUpInterceptor } from "./step-up.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import { InboxRetention } from "./inbox-retention.js";
import { OutboxRelay } from "./outbox.js";
import type { Peers } from "./peers.js";
import { startServer, type HttpFilter, type RunningServer } from "./server.js";

/** What a service gets from the process that hosts it. */
export interface ServiceContext {
  logger: Logger;
  pool: Pool;
  bus: EventBus;
  cache: Cache;
  metrics: Metrics;
  /** gRPC transports to the other services, by name. */
  peers: Peers;
  /** The time the service's rules read (lockouts, cool-downs); absent: the system's. */
  clock?: Clock;
}

/** The clock of a service's context: its own, else the system's. */
export function clockOf(ctx: Pick<ServiceContext, "clock">): Clock {
  return ctx.clock ?? systemClock;
}

/**
 * One value per service context, made on first use: a module's hooks (routes,
 * http, start) are called separately with the same context and share what it builds.
 */
export function perContext<T>(make: (ctx: ServiceContext) => T): (ctx: ServiceContext) => T {
  return weakMemo(make);
}

/**
 * What every service holds each call to before its handler, after the
 * server's own (errors, input limits): signed identity, the declared access,
 * the declared step-up. The in-process test tier runs the same list.
 */
export function serviceInterceptors(): Interceptor[] {
  return [internalAuthInterceptor(), accessInterceptor(), stepUpInterceptor()];
}

/** One service of the platform, as every host (cluster pod, embedded run, tests) starts it. */
export interface ServiceModule {
  /** e.g. "wallet"; also the Postgres schema it owns. */
  name: string;
  /** Folder of forward-only NNNN_name.sql migrations for its schema. */
  migrations?: string;
  /** The services it calls (cluster mode needs <NAME>_URL for each). */
  calls?: string[];
  /** Every gRPC service it serves (public, admin and internal). */
  services: DescService[];
  /** Registers the implementations; methods left out answer UNIMPLEMENTED. */
  routes(router: ConnectRouter, ctx: ServiceContext): void;
  /**
   * Plain HTTP endpoints beside the RPCs on the same port (provider webhooks,
   * JWKS): handle the request and return true, or return false to pass it on.
   */
  http?(ctx: ServiceContext): HttpFilter;
  /** Background work (consumers, jobs); returns how to stop it. */
  start?(ctx: ServiceContext): Promise<() => Promise<void>>;
}

export interface StartServiceOptions {
  host?: string;
  port?: number;
  drainTimeoutMs?: number;
  /** How long to keep serving, NOT_SERVING, after shutdown starts (default 0). */
  drainDelayMs?: number;
  /** See ServerOptions.maxConnectionAgeMs. */
  maxConnectionAgeMs?: number;
  interceptors?: Interceptor[];
  /** Largest request body read, in bytes (default 1 MiB). */
  readMaxBytes?: number;
  /** Unary calls served at once; past it new ones are refused UNAVAILABLE (admission.ts). Default DEFAULT_MAX_CALLS_IN_FLIGHT; 0: no bound. */
  maxCallsInFlight?: number;
}

export interface RunningService {
  name: string;
  server: RunningServer;
  /** Graceful stop: drain calls, stop background work and the outbox relay. */
  close(): Promise<void>;
}

/** Migrates the schema, serves the RPCs, relays the outbox and prunes the inbox. */
export async function startService(module: ServiceModule, ctx: ServiceContext, options: StartServiceOptions = {}): Promise<RunningService> {
  const logger = ctx.logger.child({ service: module.name });
  const scoped = { ...ctx, logger };
  await migrate(ctx.pool, module.name, module.migrations, logger);
  const relay = new OutboxRelay({ pool: ctx.pool, schema: module.name, bus: ctx.bus, logger, metrics: ctx.metrics });
  ctx.metrics.watchOutbox(module.name, ctx.pool);
  ctx.metrics.watchPool(ctx.pool, module.name);
  relay.start();
  const inboxRetention = new InboxRetention({ pool: ctx.pool, schema: module.name, bus: ctx.bus, logger, metrics: ctx.metrics });
  inboxRetention.start();
  // A part that fails to start (the background work, the HTTP filter, or the server: its port taken)
  // leaves nothing of this service running, whether it throws or rejects.
  let stopBackground: () => Promise<void> = async () => undefined;
  try {
    if (module.start) stopBackground = await module.start(scoped);
    const server = await startServer({
      name: module.name,
      logger,
      metrics: ctx.metrics,
      services: module.services,
      routes: (router) => module.routes(router, scoped),
      // Identity headers count only when signed by the gateway or a peer service;
      // then each RPC's declared access holds here as at the gateway, and a
      // money action needs the step-up its contract declares.
      interceptors: [...serviceInterceptors(), ...(options.interceptors ?? [])],
      httpFilter: module.http?.(scoped),
      host: options.host,
      port: options.port,
      drainTimeoutMs: options.drainTimeoutMs,
      drainDelayMs: options.drainDelayMs,
      maxConnectionAgeMs: options.maxConnectionAgeMs,
      readMaxBytes: options.readMaxBytes,
      admission: admission(options.maxCallsInFlight ?? DEFAULT_MAX_CALLS_IN_FLIGHT),
    });
    return {
      name: module.name,
      server,
      close: async () => {
        await server.close();
        await stopBackground();
        await relay.stop();
        await inboxRetention.stop();
      },
    };
  } catch (err) {
    await stopBackground().catch((e: unknown) => logger.warn({ err: e }, "background work failed to stop"));
    await relay.stop();
    await inboxRetention.stop();
    throw err;
  }
}
