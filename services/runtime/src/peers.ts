import { ConnectError, createContextValues, type Interceptor, type Transport } from "@connectrpc/connect";
import { Http2SessionManager, createConnectTransport } from "@connectrpc/connect-node";
import { runUnaryCall } from "@connectrpc/connect/protocol";
import { createTransport as createGrpcProtocolTransport } from "@connectrpc/connect/protocol-grpc";
import { signingInterceptor } from "./internal-auth.js";
import type { LocalServer } from "./local-server.js";
import { requestIdPropagation } from "./interceptors.js";
import { tracingInterceptor } from "./tracing.js";

/** How a service reaches another one over gRPC, by the other's name (e.g. "wallet"). */
export type Peers = (service: string) => Transport;

/**
 * gRPC transports to other services from a name -> URL lookup made at call
 * time, so services that start in any order can name each other. One HTTP/2
 * session per URL is shared by all calls.
 */
export function createPeers(
  urlOf: (service: string) => string | undefined,
  /** A service served by this same process (RunningServer.local): called without a socket. */
  localOf: (service: string) => LocalServer | undefined = () => undefined,
): Peers & { close(): void } {
  // Every call is signed: the receiving service believes the identity it carries only then.
  const interceptors = [tracingInterceptor("client"), requestIdPropagation(), signingInterceptor()];
  const sessions = http2Sessions();
  /** The transport over each URL's session. */
  const remotes = new Map<string, Transport>();
  const locals = new Map<string, Transport>();
  const transportFor = (service: string): Transport => {
    const local = localOf(service);
    if (local) {
      let transport = locals.get(service);
      if (!transport) locals.set(service, (transport = localTransport(local, interceptors)));
      return transport;
    }
    const url = urlOf(service);
    if (!url) throw new Error(`no address configured for the ${service} service (set ${service.toUpperCase()}_URL)`);
    let remote = remotes.get(url);
    if (!remote) remotes.set(url, (remote = internalTransport(url, sessions.get(url), interceptors)));
    return remote;
  };
  const peers = (service: string): Transport => ({
    unary: async (...args) => {
      // A server ending its connection (maximum age, shutdown) refuses calls that
      // crossed its GOAWAY; HTTP/2 guarantees those were not processed, so they
      // are sent again, on a new connection.
      for (let attempt = 1; ; attempt++) {
        try {
          return await transportFor(service).unary(...args);
        } catch (err) {
          if (attempt >= MAX_REFUSED_RETRIES || !refusedUnprocessed(err)) throw err;
        }
      }
    },
    stream: (...args) => transportFor(service).stream(...args),
  });
  return Object.assign(peers, {
    close: () => {
      sessions.close();
      remotes.clear();
    },
  });
}

/** One HTTP/2 session per URL, shared by every call to it (a service's peers, the gateway's backends). */
export function http2Sessions(): { get(url: string): Http2SessionManager; close(): void } {
  const sessions = new Map<string, Http2SessionManager>();
  return {
    get(url) {
      let session = sessions.get(url);
      if (!session) sessions.set(url, (session = new Http2SessionManager(url)));
      return session;
    },
    close() {
      for (const session of sessions.values()) session.abort();
      sessions.clear();
    },
  };
}

const MAX_REFUSED_RETRIES = 3;

/**
 * A call from one of our processes to another (a service's peers, the
 * gateway's backends): the Connect protocol, binary, over one HTTP/2 session.
 * Measured against gRPC on these 2-core machines (bench/rpc-clients.ts, a
 * tiny unary call at 16 concurrent): connect-node's gRPC client ~420 us of
 * CPU per call and our server ~470 us to answer it; the Connect protocol
 * ~220 and ~200 us; a stock @grpc/grpc-js client ~170 us, the server ~330 us
 * for it. The services still serve gRPC (and gRPC-web) to everyone else.
 */
export function internalTransport(url: string, sessionManager: Http2SessionManager, interceptors: Interceptor[]): Transport {
  return createConnectTransport({ baseUrl: url, httpVersion: "2", sessionManager, useBinaryFormat: true, interceptors });
}

/** RST_STREAM(REFUSED_STREAM): the server did not process the call (RFC 9113, 8.7). */
function refusedUnprocessed(err: unknown): boolean {
  if (!(err instanceof ConnectError)) return false;
  const cause = err.cause as { code?: string; message?: string } | undefined;
  return /NGHTTP2_REFUSED_STREAM/.test(err.rawMessage) || /NGHTTP2_REFUSED_STREAM/.test(cause?.message ?? "");
}

/**
 * A server in this same process (RunningServer.local), called with the same
 * interceptors and signed identity as over the network: a unary RPC runs its
 * handler behind the server's interceptors with the messages handed over as
 * they are; other kinds speak gRPC to the server's handlers. No socket or
 * HTTP/2 either way (one-process runs: `make run`, tests, benches).
 */
export function localTransport(local: LocalServer, interceptors: Interceptor[] = []): Transport {
  const grpc = createGrpcProtocolTransport({
    httpClient: local.client,
    baseUrl: "http://in-process",
    useBinaryFormat: true,
    interceptors,
    acceptCompression: [],
    sendCompression: null,
    compressMinBytes: Number.MAX_SAFE_INTEGER,
    readMaxBytes: 0xffffffff,
    writeMaxBytes: 0xffffffff,
  });
  return {
    unary(method, signal, timeoutMs, header, message, contextValues) {
      if (!local.servesUnary(method)) return grpc.unary(method, signal, timeoutMs, header, message, contextValues);
      return runUnaryCall({
        interceptors,
        signal,
        timeoutMs,
        req: {
          stream: false,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: `http://in-process/${method.parent.typeName}/${method.name}`,
          header: new Headers(header),
          contextValues: contextValues ?? createContextValues(),
          message,
        },
        next: (req) => local.unary(req, timeoutMs) as Promise<never>,
      });
    },
    stream: (...args) => grpc.stream(...args),
  };
}
