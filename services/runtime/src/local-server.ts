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
  createServiceImplSpec,
  type ConnectRouter,
  type HandlerContext,
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
   * handler context), with `timeoutMs` as the call's deadline. `req.signal`
   * becomes the handler's: it must abort at that deadline, on cancellation and
   * once the call is over, as runUnaryCall's does (localTransport). A failure is
   * the ConnectError a remote caller would get, with the response's headers
   * and trailers as its metadata.
   */
  unary(req: UnaryRequest, timeoutMs: number | undefined): Promise<UnaryResponse>;
}

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

/**
 * The handler's context for a unary call from this process. Its signal is the
 * caller's own (runUnaryCall's): that one already aborts at the deadline, when
 * the caller cancels, when the call fails and once it is answered, which is
 * what a handler's signal promises. createHandlerContext would link two more
 * AbortControllers and start a second timer for the same deadline: a quarter
 * of an in-process call's CPU (bench/runtime-call.ts).
 */
function handlerContext(req: UnaryRequest, timeoutMs: number | undefined): HandlerContext {
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  return {
    service: req.service,
    method: req.method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: req.url,
    signal: req.signal,
    timeoutMs: deadline === undefined ? () => undefined : () => deadline - Date.now(),
    // A copy, and the server's own values: nothing the caller set crosses, as over the network.
    requestHeader: new Headers(req.header),
    responseHeader: new Headers(),
    responseTrailer: new Headers(),
    values: createContextValues(),
  };
}

export function localServer(handlers: UniversalHandler[], unary: Map<string, UnarySpec>, interceptors: Interceptor[]): LocalServer {
  return {
    client: createUniversalHandlerClient(handlers),
    servesUnary: (method) => unary.has(methodKey(method)),
    async unary(req, timeoutMs) {
      const spec = unary.get(methodKey(req.method));
      if (!spec) throw new Error(`${methodKey(req.method)} is not a unary RPC of this server`);
      const context = handlerContext(req, timeoutMs);
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
      }
    },
  };
}
