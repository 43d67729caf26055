import { startGateway, type GatewayOptions } from "@ttip/gateway";
import {
  createPeers,
  localTransport,
  startService,
  type RunningServer,
  type RunningService,
  type ServiceContext,
  type ServiceModule,
  type StartServiceOptions,
} from "@ttip/runtime";
import { modules as allModules, publicServices } from "./modules.js";

export interface PlatformOptions {
  /** Shared by every service: one database (a schema each), one bus, one cache. */
  ctx: Omit<ServiceContext, "peers">;
  /** Every service by default; a test passes its own instances (e.g. pointed at simulators). */
  modules?: ServiceModule[];
  /** Where each service listens and how it drains (default: a free loopback port each). */
  serviceOptions?: (name: string) => StartServiceOptions;
  /**
   * Each service's own address, filled in as it listens (default: a map of the
   * platform's own). A caller passes its map when a service needs another's
   * address, or its own, before the whole platform has started.
   */
  urls?: Map<string, string>;
  /** How the gateway listens and guards; backends and JWKS are filled in here. */
  gateway: Omit<GatewayOptions, "logger" | "metrics" | "cache" | "backends" | "jwt" | "stepUp">;
}

export interface Platform {
  gateway: RunningServer;
  gatewayUrl: string;
  services: RunningService[];
  /** Each service's own gRPC/HTTP address, by module name. */
  urls: Map<string, string>;
  /** Stops the gateway and the services; the caller owns the pool, bus and cache. */
  close(): Promise<void>;
}

/**
 * Every service on its own loopback port, peers found by name, and the gateway
 * in front verifying tokens with auth's published keys, as in a cluster.
 * Used by `make run` (PGlite) and by the end-to-end test and bench (real servers).
 */
export async function startPlatform(options: PlatformOptions): Promise<Platform> {
  const modules = options.modules ?? allModules;
  const urls = options.urls ?? new Map<string, string>();
  // All in one process: a service calls another (and the gateway its backends) without a socket.
  const locals = new Map<string, RunningServer["local"]>();
  const peers = createPeers((name) => urls.get(name), (name) => locals.get(name));
  const ctx: ServiceContext = { ...options.ctx, peers };
  const services: RunningService[] = [];
  try {
    for (const module of modules) {
      const service = await startService(module, ctx, options.serviceOptions?.(module.name));
      urls.set(module.name, service.server.url);
      locals.set(module.name, service.server.local);
      services.push(service);
    }
    const gateway = await startGateway({
      ...options.gateway,
      logger: ctx.logger,
      metrics: ctx.metrics,
      cache: ctx.cache,
      backends: services.flatMap((s, i) => {
        const local = localTransport(s.server.local);
        return publicServices(modules[i]).map((service) => ({ service, url: s.server.url, local }));
      }),
      // Without auth (a test's subset of services) no token is verified: every one is refused.
      jwt: urls.has("auth") ? { jwksUrl: `${urls.get("auth")}/.well-known/jwks.json`, issuer: "ttip-auth", audience: "ttip" } : undefined,
      partners: urls.has("auth") ? { authUrl: urls.get("auth") } : undefined,
      stepUp: urls.has("auth") ? { authUrl: urls.get("auth") } : undefined,
    });
    return {
      gateway,
      gatewayUrl: gateway.url,
      services,
      urls,
      close: async () => {
        await gateway.close();
        for (const s of services) await s.close();
        peers.close();
      },
    };
  } catch (err) {
    for (const s of services) await s.close().catch(() => undefined);
    peers.close();
    throw err;
  }
}
