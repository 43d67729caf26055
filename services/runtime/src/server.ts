import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, createContextValues, type ConnectRouter, type ContextValues, type Interceptor } from "@connectrpc/connect";
import {
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
  type ConnectNodeAdapterOptions,
} from "@connectrpc/connect-node";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { Health } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { HealthStatus, ServingStatus } from "./health.js";
import { connectStreamHandler } from "./connect-stream.js";
import { connectUnaryHandler, failuresOutsideCalls } from "./connect-unary.js";
import { frameServer, FRAMES_PREFACE, SERVER_IDLE_TIMEOUT_MS } from "./frames.js";
import { localServer, recordingRouter, type DirectSpec, type LocalServer } from "./local-server.js";
import { StartupError } from "./startup.js";
import { acceptedCompressions, DEFAULT_READ_MAX_BYTES, guardRequestBody, inputInterceptor } from "./input.js";
import { accessLogInterceptor, errorInterceptor, requestIdInterceptor } from "./interceptors.js";
import { admission, DEFAULT_MAX_CALLS_IN_FLIGHT, type Admission } from "./admission.js";
import { inHttpServerSpan, TRACEPARENT_HEADER, tracingEnabled, tracingInterceptor } from "./tracing.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import { registerReflection } from "./reflection.js";
import { answersInParts, nodeExchange, StreamExchange, type RpcExchange } from "./rpc-exchange.js";
import { validateInterceptor } from "./validation.js";

/** Handles a plain HTTP request and returns true, or returns false to leave it to the RPC router. */
export type HttpFilter = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => boolean;

export interface ServerOptions {
  /** The process role, e.g. "wallet" or "gateway"; used in logs. */
  name: string;
  logger: Logger;
  metrics: Metrics;
  /** The application services; they get health statuses and reflection. */
  services: DescService[];
  routes: (router: ConnectRouter) => void;
  /** Run before the built-in ones (after metrics and request ids). */
  interceptors?: Interceptor[];
  /** Enforce protovalidate rules on requests (default true). */
  validate?: boolean;
  host?: string;
  port?: number;
  /** How long in-flight calls may run after shutdown starts (default 10 s). */
  drainTimeoutMs?: number;
  /**
   * After shutdown starts, how long to keep accepting connections and calls
   * while health reports NOT_SERVING (default 0), so clients and balancers
   * still routed here move away before the listener closes.
   */
  drainDelayMs?: number;
  /**
   * Health of services this process does not run itself (the gateway asks the
   * backend). When set, `services` are not reported as local.
   */
  remoteHealth?: (service: string) => Promise<ServingStatus | undefined>;
  /** Per-request values for handlers and interceptors, from the request's headers and connection. */
  contextValues?: RequestValues;
  /**
   * Runs before RPC routing; returns true when it answered the request (CORS
   * preflight). On HTTP/2 it sees the requests the server does not answer on
   * the stream API (below) and every one with an Origin header (the answer's
   * CORS headers are set on its response object).
   */
  httpFilter?: HttpFilter;
  /**
   * Takes RPC calls before the router (the gateway's forwarding as bytes):
   * returns true when it answers the call. Sees POSTs only, after httpFilter;
   * on HTTP/2 straight from the stream, without the compatibility layer.
   */
  rpcFilter?: (exchange: RpcExchange) => boolean;
  /**
   * Answers Connect unary and server-streaming calls (and rpcFilter's) on
   * HTTP/2's stream API (default true). false: every HTTP/2 request goes through node's
   * compatibility layer, as before (the benches' yardstick).
   */
  streamApi?: boolean;
  /** Answers plain HTTP requests no RPC, /metrics or /healthz matched (the web app on the gateway); 404 otherwise. */
  fallback?: (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;
  /**
   * Ends each HTTP/2 session (GOAWAY; open calls finish) after about this
   * long (+-10% jitter), so clients reconnect through the Service and spread
   * over pods the autoscaler added. 0 or absent: sessions live until closed.
   */
  maxConnectionAgeMs?: number;
  /** Serve our processes' unary calls in frames (frames.ts; default true); false: a frames preface is answered as HTTP/1.1 does (400), so clients use HTTP/2. */
  frames?: boolean;
  /** One access-log line per call, with this kind of caller (the gateway's). Errors are then not logged again. */
  accessLog?: { callerKind: (values: ContextValues) => string };
  /** Largest request body read, in bytes (default 1 MiB); larger ones get RESOURCE_EXHAUSTED unread. */
  readMaxBytes?: number;
  /**
   * The bound on unary calls in flight (admission.ts), shared by every interceptor list of this
   * server (the gateway's byte forwarding runs its own). Default: DEFAULT_MAX_CALLS_IN_FLIGHT.
   */
  admission?: Admission;
  /** Bounds on connections that send nothing (defaults: CONNECTION_LIMITS); tests make them short. */
  connectionLimits?: Partial<ConnectionLimits>;
}

/**
 * Bounds on connections that send nothing: anyone who reaches the port could otherwise hold
 * connections open. HTTP/1.1's are node's own (headers and keep-alive timeouts).
 */
export interface ConnectionLimits {
  /** A connection whose first bytes have not told its protocol within this is closed. */
  firstBytesMs: number;
  /** Connections still sending their first bytes at once; past it the one that waited longest is closed. */
  maxFirstBytes: number;
  /** An HTTP/2 session or a frames connection with nothing read or written this long is told GOAWAY (its calls finish), and cut an idle period later. */
  idleMs: number;
  /** An HTTP/1.1 request's headers are read whole within this, or it is answered 408 and closed (node's headersTimeout). */
  http1HeadersMs: number;
}

const CONNECTION_LIMITS: ConnectionLimits = {
  // Our clients and stock ones send their preface at once; a browser closes a preconnected socket it has not used in 10 s.
  firstBytesMs: 30_000,
  // An honest connection spends a round trip here at most, so a flood of silent ones evicts its own oldest first.
  maxFirstBytes: 1024,
  // Longer than our clients' idle timeout (they close theirs first): see SERVER_IDLE_TIMEOUT_MS.
  idleMs: SERVER_IDLE_TIMEOUT_MS,
  http1HeadersMs: 60_000, // node's default
};

/** Per-request context values, from what every transport's request has. */
export type RequestValues = (req: Pick<RpcExchange, "headers" | "socket">) => ContextValues;

export interface RunningServer {
  readonly port: number;
  /** http://host:port, for Connect, gRPC-web and gRPC (h2c) clients alike. */
  readonly url: string;
  readonly health: HealthStatus;
  /**
   * This server's RPCs for a caller in the same process (one-process runs):
   * every interceptor runs as for a call over the network, but no socket,
   * HTTP/2 framing or encoding is paid for (peers.ts localTransport).
   */
  readonly local: LocalServer;
  /** Stops accepting, lets in-flight calls finish (up to the drain timeout), then closes. */
  close(): Promise<void>;
}

/** The interceptors every server runs, outermost first. */
export function serverInterceptors(options: ServerOptions): Interceptor[] {
  const { logger, metrics } = options;
  return [
    tracingInterceptor("server"),
    metrics.interceptor(),
    requestIdInterceptor(),
    ...(options.accessLog ? [accessLogInterceptor(logger, options.accessLog.callerKind)] : []),
    // Before any check that costs (tokens, budgets in Redis, decoding): a refusal is cheap only before them.
    (options.admission ?? admission(DEFAULT_MAX_CALLS_IN_FLIGHT)).interceptor,
    errorInterceptor(logger, { relayed: options.accessLog !== undefined }),
    inputInterceptor(),
    ...(options.interceptors ?? []),
    ...(options.validate === false ? [] : [validateInterceptor()]),
  ];
}

/** Plain HTTP that is not an RPC: /metrics, /healthz and /readyz, then the service's own fallback, else 404. */
function plainHttpFallback(options: ServerOptions, health: HealthStatus): NonNullable<ConnectNodeAdapterOptions["fallback"]> {
  const { logger, metrics } = options;
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/metrics") {
      metrics.registry.metrics().then(
        (body) => {
          res.writeHead(200, { "content-type": metrics.registry.contentType });
          res.end(body);
        },
        (err) => {
          logger.error({ err }, "metrics collection failed");
          res.writeHead(500);
          res.end();
        },
      );
      return;
    }
    if (req.method === "GET" && (path === "/healthz" || path === "/readyz")) {
      const serving = health.get("") === ServingStatus.SERVING;
      res.writeHead(serving ? 200 : 503, { "content-type": "text/plain" });
      res.end(serving ? "ok\n" : "shutting down\n");
      return;
    }
    if (options.fallback) {
      options.fallback(req, res as http.ServerResponse);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  };
}

/** Listens on the configured port; a port in use is a StartupError that says what to do. */
function listenOn(listener: net.Server, options: ServerOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    listener.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "EADDRINUSE") return reject(err);
      reject(new StartupError(`Port ${options.port} on ${options.host ?? "127.0.0.1"} is already in use (another TTIP, or another program). Stop it, or choose another port with PORT=<port>.`));
    });
    listener.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
}

/**
 * Serves Connect, gRPC-web and gRPC on one plaintext port: HTTP/2 with prior
 * knowledge (gRPC clients) and HTTP/1.1 (browsers, curl) are told apart by the
 * first bytes of each connection. Adds grpc.health.v1, reflection, /metrics
 * and /healthz.
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { logger } = options;
  const health = healthOf(options);
  const adapter = rpcAdapter(options, health);
  const inFlight = inFlightRequests();
  const onRequest = requestHandler(options, adapter, inFlight);
  const limits = { ...CONNECTION_LIMITS, ...options.connectionLimits };
  const h1 = http1Server(onRequest, limits.http1HeadersMs);
  const onStream = streamHandler(options, adapter, inFlight, onRequest);
  const { h2, sessions } = http2Server(onStream, options.maxConnectionAgeMs ?? 0, limits.idleMs);
  // Our own processes' unary calls in frames (frames.ts), counted for the drain as HTTP/2's streams.
  const frames = frameServer({ serve: adapter.serveRpc, track: (exchange) => inFlight.track({ once: (_event, listener) => exchange.onClose(listener) }), maxAgeMs: options.maxConnectionAgeMs ?? 0, idleTimeoutMs: limits.idleMs });
  const { listener, sockets, unrouted } = connectionListener(h1, h2, frames, options.frames ?? true, limits);

  await listenOn(listener, options);
  const port = (listener.address() as net.AddressInfo).port;
  const host = options.host === undefined || options.host === "0.0.0.0" || options.host === "::" ? "127.0.0.1" : options.host;
  logger.info({ port, services: options.services.map((s) => s.typeName) }, `${options.name} listening`);

  let closing: Promise<void> | undefined;
  const close = () => (closing ??= drainAndClose(options, { health, listener, h1, sessions, frames, sockets, unrouted, inFlight }));
  return { port, url: `http://${host}:${port}`, health, local: adapter.local, close };
}

/** Health statuses: the application services are SERVING from the start, unless their health is another process's. */
function healthOf(options: ServerOptions): HealthStatus {
  const health = new HealthStatus(options.remoteHealth);
  if (!options.remoteHealth) for (const service of options.services) health.set(service.typeName, ServingStatus.SERVING);
  return health;
}

/** The service's routes plus health and reflection, behind every server's interceptors. */
function rpcAdapter(options: ServerOptions, health: HealthStatus) {
  return nodeAdapter({
    routes: (router) => {
      options.routes(router);
      health.register(router);
      registerReflection(router, [...options.services, Health]);
    },
    contextValues: options.contextValues,
    rpcFilter: options.rpcFilter,
    readMaxBytes: options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES,
    interceptors: serverInterceptors(options),
    fallback: plainHttpFallback(options, health),
  }, failuresOutsideCalls(options.logger, options.metrics));
}

/** Counts the requests in flight, so a drain knows when the last one has ended. */
function inFlightRequests() {
  let count = 0;
  let idle: (() => void) | undefined;
  return {
    get count() {
      return count;
    },
    /** Counts a request until its response (or its HTTP/2 stream) closes. */
    track(res: { once(event: "close", listener: () => void): unknown }) {
      count++;
      res.once("close", () => {
        count--;
        if (count === 0) idle?.();
      });
    },
    /** Resolves once no request is in flight. */
    drained(): Promise<void> {
      return new Promise<void>((resolve) => {
        if (count === 0) resolve();
        else idle = resolve;
      });
    },
  };
}
type InFlightRequests = ReturnType<typeof inFlightRequests>;

/** Every request of both HTTP versions: counted, offered to the HTTP filter, then routed. */
function requestHandler(options: ServerOptions, adapter: ReturnType<typeof rpcAdapter>, inFlight: InFlightRequests) {
  const { handler, isRpc } = adapter;
  return (req: NodeReq, res: NodeRes) => {
    inFlight.track(res);
    const serve = () => {
      try {
        if (options.httpFilter?.(req, res)) return;
        (handler as (a: typeof req, b: typeof res) => void)(req, res);
      } catch (err) {
        // Thrown here, outside any handler, it would end the process: a filter reading a request line no URL holds
        // ("//a:99999/") is the caller's mistake, anything else this server's.
        const invalidUrl = (err as { code?: string }).code === "ERR_INVALID_URL";
        if (!invalidUrl) options.logger.error({ err }, "request handler failed");
        if (res.headersSent) return void res.destroy();
        res.writeHead(invalidUrl ? 400 : 500, { "content-type": "text/plain; charset=utf-8" });
        res.end(invalidUrl ? "the request's path or Host names no URL\n" : "internal error\n");
      }
    };
    // A plain HTTP request that may write (a provider's webhook, a posted form) gets a span,
    // so the events it writes carry a trace. RPCs have theirs (tracingInterceptor); reads
    // of pages, assets and /metrics would only add noise.
    if (!tracingEnabled() || req.method === "GET" || req.method === "HEAD" || isRpc(req.url ?? "")) return serve();
    const traceparent = req.headers[TRACEPARENT_HEADER];
    inHttpServerSpan(req.method ?? "POST", req.url ?? "/", typeof traceparent === "string" ? traceparent : undefined, () => new Promise<void>((resolve) => {
      res.once("close", resolve);
      serve();
    })).catch((err) => options.logger.error({ err }, "request handler failed"));
  };
}

type StreamListener = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;

/**
 * Every HTTP/2 stream: an RPC the server answers on the stream API (a
 * Connect unary or server-streaming call, the gateway's forwarded ones)
 * is counted until its stream closes and served; every other request gets the compatibility
 * layer's request and response, built here as node's own stream listener
 * builds them, and goes the HTTP/1.1 way (requestHandler).
 */
function streamHandler(options: ServerOptions, adapter: ReturnType<typeof rpcAdapter>, inFlight: InFlightRequests, onRequest: (req: NodeReq, res: NodeRes) => void): StreamListener {
  // A CORS answer needs its response object: requests from a page keep the compatibility layer.
  const viaFilter = options.httpFilter !== undefined;
  const streamApi = options.streamApi ?? true;
  return (stream, headers, _flags, rawHeaders) => {
    if (streamApi && headers[":method"] === "POST" && headers.expect === undefined && !(viaFilter && headers.origin !== undefined)) {
      const exchange = new StreamExchange(stream, headers, rawHeaders);
      if (adapter.serveRpc(exchange)) return void inFlight.track(stream);
    }
    compatibilityRequest(stream, headers, rawHeaders, onRequest);
  };
}

/** A stream as node's compatibility layer hands it over (its onServerStream): CONNECT refused, Expect answered. */
function compatibilityRequest(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, rawHeaders: string[], onRequest: (req: NodeReq, res: NodeRes) => void) {
  const req = new http2.Http2ServerRequest(stream, headers, {}, rawHeaders);
  const res = new http2.Http2ServerResponse(stream);
  if (headers[":method"] === "CONNECT") {
    res.statusCode = 405;
    return void res.end();
  }
  if (headers.expect !== undefined) {
    if (headers.expect !== "100-continue") {
      res.statusCode = 417;
      return void res.end();
    }
    res.writeContinue();
  }
  onRequest(req, res);
}

/** The HTTP/1.1 server, handed its connections by the listener (connectionListener). */
function http1Server(onRequest: (req: http.IncomingMessage, res: http.ServerResponse) => void, headersMs: number): http.Server {
  // Node checks the headers and request timeouts every `connectionsCheckingInterval` (30 s by default).
  const h1 = http.createServer({ headersTimeout: headersMs, connectionsCheckingInterval: Math.min(30_000, Math.max(1, headersMs / 2)) }, onRequest);
  // It checks them only on a server that listens; this one never does.
  h1.emit("listening");
  return h1;
}

/** The HTTP/2 server and its open sessions, each retired after `maxAgeMs` (0: never) or `idleMs` without a frame. */
function http2Server(onStream: StreamListener, maxAgeMs: number, idleMs: number) {
  // No request listener: that would put node's compatibility layer on every stream.
  const h2 = http2.createServer({});
  h2.on("stream", onStream);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    // Jitter, so sessions opened together do not all reconnect at once.
    const timer = maxAgeMs > 0 ? setTimeout(() => retire(session), maxAgeMs * (0.9 + Math.random() * 0.2)) : undefined;
    timer?.unref();
    // Streams whose request was read whole: calls running (a server stream waiting for news, as WatchTip does for up to 15 minutes).
    const calls = new Set<http2.ServerHttp2Stream>();
    session.on("stream", (stream) => {
      calls.add(stream);
      stream.once("close", () => calls.delete(stream));
    });
    // Idle (node re-arms the timer on every frame): GOAWAY, its streams finish; still open an idle period later: cut,
    // unless a call is running on it (as a frames connection: frames.ts), which its deadline or its end closes.
    // A stream whose request never ended is no call: the client sends nothing, and the session is cut all the same.
    session.setTimeout(idleMs);
    session.on("timeout", () => {
      for (const stream of calls) if (stream.readableEnded) return;
      if (session.closed) session.destroy();
      else retire(session);
    });
    session.once("close", () => {
      clearTimeout(timer);
      sessions.delete(session);
    });
  });
  // GOAWAY: calls in flight finish; the client opens new calls on a new
  // connection. A call the client started before the GOAWAY reached it is
  // refused unprocessed (REFUSED_STREAM), and the peers' transport retries it.
  const retire = (session: http2.ServerHttp2Session) => {
    if (!session.closed && !session.destroyed) session.close();
  };
  return { h2, sessions };
}

/** The one TCP listener and its open sockets; each connection goes to h1, h2 or frames by its first bytes. */
function connectionListener(h1: http.Server, h2: http2.Http2Server, frames: Frames, acceptFrames: boolean, limits: ConnectionLimits) {
  const sockets = new Set<net.Socket>();
  /** Connections whose protocol is not known yet, the one that waited longest first (a Set keeps insertion order). */
  const unrouted = new Set<net.Socket>();
  // No Nagle: small gRPC frames would otherwise wait ~40 ms for delayed ACKs.
  const listener = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    const longest = unrouted.size >= limits.maxFirstBytes ? unrouted.values().next().value : undefined;
    if (longest) {
      unrouted.delete(longest);
      longest.destroy();
    }
    unrouted.add(socket);
    socket.once("close", () => unrouted.delete(socket));
    routeConnection(socket, { h1, h2, frames, acceptFrames, firstBytesMs: limits.firstBytesMs, routed: () => unrouted.delete(socket) });
  });
  return { listener, sockets, unrouted };
}

/**
 * Graceful shutdown: NOT_SERVING first (and still serving for the drain delay),
 * then no new connections, GOAWAY to HTTP/2 sessions, and up to the drain
 * timeout for calls in flight before the remaining sockets are cut.
 */
async function drainAndClose(
  options: ServerOptions,
  server: { health: HealthStatus; listener: net.Server; h1: http.Server; sessions: Set<http2.ServerHttp2Session>; frames: Frames; sockets: Set<net.Socket>; unrouted: Set<net.Socket>; inFlight: InFlightRequests },
): Promise<void> {
  const { logger } = options;
  const { health, listener, h1, sessions, frames, sockets, unrouted, inFlight } = server;
  health.shutdown();
  if (options.drainDelayMs) {
    logger.info({ delayMs: options.drainDelayMs }, `${options.name} NOT_SERVING; still accepting calls before draining`);
    await new Promise((resolve) => setTimeout(resolve, options.drainDelayMs));
  }
  listener.close();
  // Connections that have not told their protocol hold no call and no answer: nothing to wait for.
  // Ended now, none is handed to a server after the GOAWAY below (it would go on taking calls).
  for (const socket of unrouted) socket.destroy();
  for (const session of sessions) session.close(); // GOAWAY: open streams may finish
  frames.goAway(); // the same for calls in frames
  h1.close(); // its idle keep-alive connections, and its timeouts' check
  const drained = inFlight.drained();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), options.drainTimeoutMs ?? 10_000);
  });
  const late = await Promise.race([drained.then(() => false), timedOut]);
  clearTimeout(timer);
  if (late) logger.warn({ inFlight: inFlight.count }, "drain timeout: closing connections with calls still running");
  // Drained: each connection told GOAWAY ends itself once its last answer is flushed (a call's stream closes
  // before its last bytes leave the process); cutting it now could drop that answer.
  else if (!(await socketsClosed(sockets, SOCKETS_CLOSE_GRACE_MS))) logger.info({ connections: sockets.size }, "cutting connections still open after the drain");
  for (const socket of sockets) socket.destroy();
  logger.info(`${options.name} stopped`);
}

/** How long a drained server waits for its connections to end themselves before cutting them. */
const SOCKETS_CLOSE_GRACE_MS = 2_000;

/** Whether every socket closed within `ms`. */
function socketsClosed(sockets: Set<net.Socket>, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    if (sockets.size === 0) return resolve(true);
    let open = sockets.size;
    const timer = setTimeout(() => resolve(false), ms);
    for (const socket of sockets) {
      socket.once("close", () => {
        if (--open > 0) return;
        clearTimeout(timer);
        resolve(true);
      });
    }
  });
}

type NodeReq = http.IncomingMessage | http2.Http2ServerRequest;
type NodeRes = http.ServerResponse | http2.Http2ServerResponse;

/**
 * connectNodeAdapter's routing, with every RPC handler behind guardRequestBody
 * (read limit, binary bodies that do not parse are the caller's mistake).
 */
function nodeAdapter(
  options: Omit<ConnectNodeAdapterOptions, "contextValues"> & { contextValues?: RequestValues; rpcFilter?: ServerOptions["rpcFilter"]; readMaxBytes: number },
  failedOutside: (err: unknown, path: string) => void,
) {
  const recording = recordingRouter(createConnectRouter({ ...options, acceptCompression: acceptedCompressions }));
  const router = recording.router;
  options.routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const h of router.handlers) paths.set(h.requestPath, guardRequestBody(h, options.readMaxBytes));
  const direct = { methods: directPaths(recording.methods), interceptors: options.interceptors ?? [], readMaxBytes: options.readMaxBytes, contextValues: options.contextValues, failedOutside };
  const connectUnary = connectUnaryHandler(direct);
  // A stream's messages are written as they come: only on HTTP/2's stream API.
  const connectStream = connectStreamHandler(direct);
  const rpcFilter = options.rpcFilter;
  /** Answers an RPC straight from its exchange (returns true), or leaves it to connect-node. */
  const serveRpc = (exchange: RpcExchange): boolean => {
    if (rpcFilter?.(exchange)) return true;
    const path = exchange.url.split("?", 2)[0];
    return paths.has(path) && (connectUnary(exchange, path) || (answersInParts(exchange) && connectStream(exchange, path)));
  };
  const handler = (req: NodeReq, res: NodeRes) => {
    if (req.method === "POST" && serveRpc(nodeExchange(req, res))) return;
    const path = (req.url ?? "").split("?", 2)[0];
    const handler = paths.get(path);
    if (!handler) return options.fallback?.(req, res as never);
    const values = options.contextValues?.(req) ?? createContextValues();
    let uReq: ReturnType<typeof universalRequestFromNodeRequest>;
    try {
      uReq = universalRequestFromNodeRequest(req, res as never, undefined, values);
    } catch {
      // connect-node makes the request's URL from its Host: one that is no host (a port past 65535, an address
      // out of range) or none (HTTP/1.0) threw here, outside any handler, and ended the process.
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8" });
      res.end("the Host header is missing or names no host\n");
      return;
    }
    handler(uReq)
      .then((uRes) => universalResponseToNodeResponse(uRes, res as never))
      .catch((reason) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        failedOutside(reason, path);
      });
  };
  // In-process callers hand their messages over unencoded: nothing to pre-parse, but the same read limit.
  return { handler, serveRpc, local: localServer(router.handlers, recording.methods, options.interceptors ?? [], options.readMaxBytes), isRpc: (url: string) => paths.has(url.split("?", 2)[0]) };
}

/** The methods served directly (local-server.ts), by request path. */
function directPaths(methods: Map<string, DirectSpec>): Map<string, DirectSpec> {
  return new Map([...methods.values()].map((spec) => [`/${spec.method.parent.typeName}/${spec.method.name}`, spec]));
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

type Frames = ReturnType<typeof frameServer>;

/** The first bytes read so far open with `preface`: all of it (true), a part (undefined: wait for more), or not (false). */
function opensWith(head: Buffer, preface: Buffer): boolean | undefined {
  const n = Math.min(head.length, preface.length);
  if (!head.subarray(0, n).equals(preface.subarray(0, n))) return false;
  return head.length >= preface.length ? true : undefined;
}

interface Routes {
  h1: http.Server;
  h2: http2.Http2Server;
  frames: Frames;
  acceptFrames: boolean;
  /** The connection is closed when its first bytes have not told its protocol within this. */
  firstBytesMs: number;
  /** Told once the connection is handed over. */
  routed: () => void;
}

/** Hands a fresh connection to the HTTP/2, the HTTP/1.1 or the frames server by its first bytes. */
function routeConnection(socket: net.Socket, { h1, h2, frames, acceptFrames, firstBytesMs, routed }: Routes) {
  let head = Buffer.alloc(0);
  // From the accept, not from the last byte: a preface sent a byte at a time gains nothing.
  const timer = setTimeout(() => socket.destroy(), firstBytesMs);
  socket.once("close", () => clearTimeout(timer));
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const isH2 = opensWith(head, H2_PREFACE);
    const isFrames = acceptFrames ? opensWith(head, FRAMES_PREFACE) : false;
    if (isH2 === undefined || isFrames === undefined) return; // wait for the whole preface
    socket.off("data", onData);
    socket.pause();
    // Each server keeps its own time from here (frames and HTTP/2 their idle timeout, HTTP/1.1 node's).
    clearTimeout(timer);
    routed();
    if (isFrames) return frames.accept(socket, head);
    // Both servers start with the bytes already read: an HTTP/2 session takes
    // what is buffered on the socket before it reads its native handle, so its
    // frames go straight to the socket (a JavaScript stream in between cost a
    // third of a gateway's CPU in system calls and stream bookkeeping).
    socket.unshift(head);
    if (isH2 === true) h2.emit("connection", socket);
    else {
      h1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
}
