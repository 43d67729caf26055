// A server's RPCs for callers in the same process (one-process runs: `make
// run`, the end-to-end test and bench). Unary calls go straight to the
// handler behind the server's own interceptors, the request and response
// messages handed over as they are: no encoding, envelopes, HTTP/2 frames or
// header parsing. Other kinds go through the server's universal handlers
// (gRPC, every interceptor, still no socket).
import type { DescMethod } from "@bufbuild/protobuf";
import {
  ConnectError,
  createContextValues,
  createHandlerContext,
  createServiceImplSpec,
  type ConnectRouter,
  type Interceptor,
  type MethodImplSpec,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { createUniversalHandlerClient, invokeUnaryImplementation, type UniversalClientFn, type UniversalHandler } from "@connectrpc/connect/protocol";

export interface LocalServer {
  /** gRPC to the server's universal handlers, for every kind of RPC. */
  readonly client: UniversalClientFn;
  /** Whether `method` is a unary RPC this server serves, so `unary` may call it. */
  servesUnary(method: DescMethod): boolean;
  /**
   * Runs a unary RPC as the server would (every server interceptor, the same
   * handler context), with `timeoutMs` as the call's deadline. A failure is
   * the ConnectError a remote caller would get, with the response's headers
   * and trailers as its metadata.
   */
  unary(req: UnaryRequest, timeoutMs: number | undefined): Promise<UnaryResponse>;
}

/** Why a finished call's signal is aborted: one object, so no AbortError (and its stack) is made per call. */
const CALL_FINISHED = new ConnectError("the call finished");

const methodKey = (method: DescMethod) => `${method.parent.typeName}/${method.name}`;

/**
 * `router`, also remembering each unary method's implementation for
 * localServer. A service registered with its own options (interceptors of its
 * own) is served through the universal handlers only.
 */
type UnarySpec = Extract<MethodImplSpec, { kind: "unary" }>;

export function recordingRouter(router: ConnectRouter): { router: ConnectRouter; unary: Map<string, UnarySpec> } {
  const unary = new Map<string, UnarySpec>();
  const recording: ConnectRouter = {
    handlers: router.handlers,
    service(service, impl, options) {
      router.service(service, impl, options);
      if (!options) for (const spec of Object.values(createServiceImplSpec(service, impl).methods)) if (spec.kind === "unary") unary.set(methodKey(spec.method), spec);
      return recording;
    },
    rpc(method, impl, options) {
      router.rpc(method, impl as never, options);
      return recording;
    },
  };
  return { router: recording, unary };
}

export function localServer(handlers: UniversalHandler[], unary: Map<string, UnarySpec>, interceptors: Interceptor[]): LocalServer {
  return {
    client: createUniversalHandlerClient(handlers),
    servesUnary: (method) => unary.has(methodKey(method)),
    async unary(req, timeoutMs) {
      const spec = unary.get(methodKey(req.method));
      if (!spec) throw new Error(`${methodKey(req.method)} is not a unary RPC of this server`);
      const context = createHandlerContext({
        service: req.service,
        method: req.method,
        protocolName: "grpc",
        requestMethod: "POST",
        url: req.url,
        timeoutMs,
        requestSignal: req.signal,
        requestHeader: req.header,
        // The server's own values: nothing the caller set crosses, as over the network.
        contextValues: createContextValues(),
      });
      try {
        const message = await invokeUnaryImplementation(spec, context, req.message, interceptors);
        return { stream: false, service: req.service, method: req.method, header: context.responseHeader, trailer: context.responseTrailer, message };
      } catch (err) {
        const e = ConnectError.from(err);
        const metadata = new Headers(context.responseHeader);
        context.responseTrailer.forEach((value, key) => metadata.set(key, value));
        e.metadata.forEach((value, key) => metadata.set(key, value));
        // Its cause stays here, as over the network.
        const relayed = new ConnectError(e.rawMessage, e.code, metadata);
        relayed.details.push(...e.details);
        throw relayed;
      } finally {
        context.abort(CALL_FINISHED);
      }
    },
  };
}
