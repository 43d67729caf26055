import type http from "node:http";
import type { DescService } from "@bufbuild/protobuf";
import { Code, createClient, createContextValues, type Interceptor, type Transport } from "@connectrpc/connect";
import { Health } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import {
  admission,
  clientAddress,
  DEFAULT_READ_MAX_BYTES,
  internalTransport,
  networkList,
  partnerCallOutcome,
  recordPartnerCall,
  revocationChecker,
  serverInterceptors,
  signingInterceptor,
  startServer,
  tracingInterceptor,
  upstreamSessions,
  type Cache,
  type Logger,
  type Metrics,
  type RequestValues,
  type RunningServer,
  type ServerOptions,
} from "@ttip/runtime";
import { authInterceptor, principalKey, type JwtOptions, type Principal as GatewayPrincipal } from "./auth.js";
import { corsFilter } from "./cors.js";
import { forwardService } from "./forward.js";
import { metricsGuard } from "./metrics-guard.js";
import { authPartnerVerifier, partnerInterceptor, type PartnerVerifier } from "./partner.js";
import { policyInterceptor } from "./policy.js";
import { rawForwarding, rawRoutes } from "./raw-forward.js";
import { clientAddressKey, liveStreamsInterceptor, rateLimitInterceptor, refusedCredentialsInterceptor, sharedBudget } from "./rate-limit.js";

export {
  authInterceptor,
  CLIENT_ADDRESS_HEADER,
  principalKey,
  PRINCIPAL_HEADERS,
  SESSION_HEADER,
  type JwtOptions,
  type Principal,
} from "./auth.js";
export {
  authPartnerVerifier,
  PARTNER_HEADERS,
  partnerInterceptor,
  partnerKey,
  type PartnerOptions,
  type PartnerVerifier,
  type SignedCall,
  type VerifiedPartner,
} from "./partner.js";
export { policyInterceptor, ruleFor, STEP_UP_HEADER, undeclaredMethods, type PolicyOptions, type Rule } from "./policy.js";

export interface Backend {
  service: DescService;
  /** The owning service's gRPC address, e.g. http://wallet:8080. */
  url: string;
  /** The owning service in this same process (one-process runs): called through this instead of its address. */
  local?: Transport;
}

export interface GatewayOptions {
  logger: Logger;
  metrics: Metrics;
  /** Holds the rate-limit counters (Redis in a cluster, memory in one process). */
  cache: Cache;
  /** The public services and where each is served. */
  backends: Backend[];
  jwt?: JwtOptions;
  rateLimit: { points: number; durationSeconds: number };
  corsOrigins: string[];
  /** CIDRs admin RPCs are accepted from (with role admin); loopback only when omitted. */
  adminNetworks?: string[];
  /**
   * Partner calls signed with an API key: auth's gRPC address (its internal
   * service checks HMAC and replay) or a verifier of one's own. Omitted: signed calls are refused.
   */
  partners?: { authUrl?: string; verify?: PartnerVerifier; maxSkewSeconds?: number; rateLimit?: { points: number; durationSeconds: number } };
  /**
   * Admin money actions need a device step-up token: auth's gRPC address (its
   * internal service verifies and spends it) or a verifier of one's own.
   * Omitted: such actions are refused.
   */
  stepUp?: { authUrl?: string; verify?: (token: string, userId: string) => Promise<void> };
  /**
   * Proxies (CIDRs) whose X-Forwarded-For entries are believed: the client is
   * the right-most address not in this list. Empty or omitted: the socket's peer.
   */
  trustedProxies?: string[];
  /** Serves every path that is not an RPC (the web app's pages and assets), in this process. */
  web?: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** How often a signed-in stream's session is asked about again (default 5 s): a revoked one's streams end within it. */
  streamRecheckMs?: number;
  host?: string;
  port?: number;
  drainTimeoutMs?: number;
  /** How long to keep serving, NOT_SERVING, after shutdown starts (default 0). */
  drainDelayMs?: number;
  /** See ServerOptions.maxConnectionAgeMs in the runtime. */
  maxConnectionAgeMs?: number;
  /** Calls to the backends and from other processes in frames (ServerOptions.frames in the runtime; default true). */
  frames?: boolean;
  /** See ServerOptions.streamApi in the runtime (default true; false: the benches' yardstick). */
  streamApi?: boolean;
  /** Largest request body read, in bytes (default 1 MiB); larger ones are refused unread. */
  readMaxBytes?: number;
  /**
   * Unary calls in binary protobuf go to a service in another process as bytes
   * (raw-forward.ts; default true). false: every call is decoded and encoded
   * again, as JSON ones are (bench/gateway-overhead.ts's yardstick).
   */
  forwardBytes?: boolean;
  /**
   * Server streams in Connect's binary protocol go to a service in another process as bytes too
   * (raw-stream.ts; default true, with forwardBytes). false: their messages are decoded and encoded
   * again (forward.ts; bench/gateway-stream.ts's yardstick).
   */
  forwardStreamBytes?: boolean;
  /** Decoded calls go through connect-es's client, as before (forward.ts; the benches' yardstick). Default false. */
  forwardViaClient?: boolean;
  /**
   * Unary calls forwarded at once; past it new ones are refused UNAVAILABLE
   * (reason OVERLOADED, retry-after) before any check runs (default
   * GATEWAY_MAX_CALLS_IN_FLIGHT; 0: no bound).
   */
  maxCallsInFlight?: number;
  /** Live streams one caller may hold open at once on this replica (default MAX_LIVE_STREAMS). */
  maxLiveStreams?: { signedIn: number; perAddress: number };
}

/**
 * The gateway's default bound on calls in flight: its calls each make a few
 * behind it, so it is below the services' (DEFAULT_MAX_CALLS_IN_FLIGHT) and
 * the refusal happens here, at the entry, before any service did part of a call.
 */
export const GATEWAY_MAX_CALLS_IN_FLIGHT = 128;

/** The peer address (for HTTP/2, the session's socket stands behind the request's). */
function socketAddress(socket: unknown): string | undefined {
  return (socket as { remoteAddress?: string } | undefined)?.remoteAddress;
}

/** Who called, as a kind ("anonymous", or the token's roles): never the person. */
function callerKind(principal: GatewayPrincipal | undefined): string {
  if (!principal) return "anonymous";
  return principal.roles.length ? [...principal.roles].sort().join("+") : "signed_in";
}

function partnerOptions(options: GatewayOptions, transportFor: (url: string, interceptors?: Interceptor[]) => import("@connectrpc/connect").Transport) {
  const p = options.partners;
  if (!p) return undefined;
  // Auth's internal service believes only calls signed with the internal key.
  const verify = p.verify ?? (p.authUrl ? authPartnerVerifier(transportFor(p.authUrl, [signingInterceptor()])) : undefined);
  if (!verify) throw new Error("partners: give authUrl or verify");
  // Counted off the call's path: a cache that cannot answer loses a count, never a call.
  const countCall = (keyId: string, code: Code | undefined) =>
    void recordPartnerCall(options.cache, keyId, partnerCallOutcome(code)).catch((err) => options.logger.warn({ err }, "partner usage not counted"));
  return { verify, maxSkewSeconds: p.maxSkewSeconds, countCall };
}

/**
 * Connect, gRPC-web and gRPC on one port, forwarding every public RPC to its
 * service (the Connect protocol over HTTP/2; see internalTransport). Unary
 * calls in binary protobuf and Connect binary server streams go as bytes
 * (raw-forward.ts, raw-stream.ts); JSON and the other streams are decoded and
 * encoded again (forward.ts). Both pass the same checks.
 */
export async function startGateway(options: GatewayOptions): Promise<RunningServer> {
  // One connection to each backend (the runtime's UpstreamSession) for every call to it, forwarded as bytes or not.
  const upstreams = upstreamSessions(options.frames ?? true);
  const transportFor = (url: string, interceptors?: Interceptor[]) =>
    internalTransport(url, upstreams.get(url), [tracingInterceptor("client"), ...(interceptors ?? [])]);
  const trusted = options.trustedProxies?.length ? networkList(options.trustedProxies, "trusted proxy") : undefined;
  const partners = partnerOptions(options, transportFor);
  const stepUpAuth = options.stepUp?.authUrl ? createClient(AuthInternalService, transportFor(options.stepUp.authUrl, [signingInterceptor()])) : undefined;
  const verifyStepUp =
    options.stepUp?.verify ??
    (stepUpAuth ? async (stepUpToken: string, userId: string) => void (await stepUpAuth.verifyStepUpToken({ stepUpToken, userId, purpose: "admin" }, { timeoutMs: 5_000 })) : undefined);
  const owners = new Map(options.backends.map((b) => [b.service.typeName, b.url]));
  const budget = (keyPrefix: string, limit: { points: number; durationSeconds: number }) =>
    sharedBudget({ charge: (charges) => options.cache.chargeBudgets(keyPrefix, limit.durationSeconds, charges) }, { points: limit.points });
  const limiter = budget("gateway", options.rateLimit);
  const partnerLimiter = budget("gateway-partner", options.partners?.rateLimit ?? options.rateLimit);
  const contextValues: RequestValues = (req) =>
    createContextValues().set(clientAddressKey, clientAddress(socketAddress(req.socket), req.headers["x-forwarded-for"], trusted));

  const serverOptions: ServerOptions = {
    name: "gateway",
    logger: options.logger,
    metrics: options.metrics,
    services: options.backends.map((b) => b.service),
    // One line per call here; errors are logged by the service where they happen.
    accessLog: { callerKind: (values) => callerKind(values.get(principalKey)) },
    // Input rules are enforced once, by the service that owns them.
    validate: false,
    interceptors: [
      refusedCredentialsInterceptor(limiter),
      authInterceptor(options.jwt, revocationChecker(options.cache), options.streamRecheckMs),
      partnerInterceptor(partners),
      rateLimitInterceptor(limiter, partnerLimiter),
      liveStreamsInterceptor(options.maxLiveStreams),
      policyInterceptor({ adminNetworks: options.adminNetworks, services: options.backends.map((b) => b.service), verifyStepUp }),
    ],
    routes: (router) => {
      for (const b of options.backends) forwardService(router, b.service, b.local ?? transportFor(b.url), { viaClient: options.forwardViaClient });
    },
    remoteHealth: async (service) => {
      const url = owners.get(service);
      if (!url) return undefined;
      const res = await createClient(Health, transportFor(url)).check({ service }, { timeoutMs: 2_000 });
      return res.status;
    },
    contextValues,
    // Browsers speak HTTP/1.1 to a plaintext port; the web app's handler expects its objects.
    fallback: options.web ? (req, res) => options.web!(req as http.IncomingMessage, res as http.ServerResponse) : undefined,
    host: options.host,
    port: options.port,
    drainTimeoutMs: options.drainTimeoutMs,
    drainDelayMs: options.drainDelayMs,
    maxConnectionAgeMs: options.maxConnectionAgeMs,
    frames: options.frames,
    streamApi: options.streamApi,
    readMaxBytes: options.readMaxBytes,
    // One count for the calls forwarded as bytes and the decoded ones.
    admission: admission(options.maxCallsInFlight ?? GATEWAY_MAX_CALLS_IN_FLIGHT),
  };
  // Services in this process are called without encoding already (their `local` transport).
  const raw = rawForwarding({
    routes: new Map(
      options.forwardBytes === false
        ? []
        : options.backends
            .filter((b) => !b.local)
            .flatMap((b) => rawRoutes(b.service, upstreams.get(b.url)))
            .filter(([, route]) => options.forwardStreamBytes !== false || route.method.methodKind === "unary"),
    ),
    interceptors: serverInterceptors(serverOptions),
    clientInterceptors: [tracingInterceptor("client")],
    contextValues,
    readMaxBytes: options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES,
    logger: options.logger,
  });
  const cors = corsFilter(options.corsOrigins);
  const metricsFromInside = metricsGuard();
  const server = await startServer({ ...serverOptions, httpFilter: (req, res) => metricsFromInside(req, res) || cors(req, res), rpcFilter: raw });
  return {
    ...server,
    close: async () => {
      await server.close();
      upstreams.close();
    },
  };
}
