// A server's RPCs for callers in the same process (one-process runs: `make
// run`, the end-to-end test and bench). Unary and server-streaming calls go
// straight to the handler behind the server's own interceptors, the request
// and response messages handed over as they are: no encoding, envelopes,
// HTTP/2 frames or header parsing. Other kinds go through the server's
// universal handlers (gRPC, every interceptor, still no socket).
import type { DescMethod, Message } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  createServiceImplSpec,
  type ConnectRouter,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  createUniversalHandlerClient,
  getAbortSignalReason,
  invokeUnaryImplementation,
  transformInvokeImplementation,
  type UniversalClientFn,
  type UniversalHandler,
} from "@connectrpc/connect/protocol";
import { encodedLargerThan, refusedBodyKey, tooLargeMessage, unencodedReadLimitKey } from "./input.js";

export interface LocalServer {
  /** gRPC to the server's universal handlers, for every kind of RPC. */
  readonly client: UniversalClientFn;
  /** Whether this server serves `method` (a unary or server-streaming RPC) through `unary` or `stream`. */
  serves(method: DescMethod): boolean;
  /**
   * Runs a unary RPC as the server would (every server interceptor, the same
   * handler context), with `timeoutMs` as the call's deadline. `req.signal`
   * becomes the handler's: it must abort at that deadline, on cancellation and
   * once the call is over, as a LocalCall's does. A failure is the
   * ConnectError a remote caller would get, with the response's headers and
   * trailers as its metadata.
   */
  unary(req: UnaryRequest, timeoutMs: number | undefined): Promise<UnaryResponse>;
  /**
   * Runs a server-streaming RPC the same way. It resolves once the handler
   * sent its first message (or finished), as a gRPC response's headers
   * arrive; the messages are then pulled one at a time from the handler, so
   * it runs at most one message ahead of its reader. Failures, at the start
   * or while reading, are ConnectErrors as in `unary`.
   */
  stream(req: StreamRequest, timeoutMs: number | undefined): Promise<StreamResponse>;
}

const methodKey = (method: DescMethod) => `${method.parent.typeName}/${method.name}`;

export type DirectSpec = Extract<MethodImplSpec, { kind: "unary" | "server_streaming" }>;

/**
 * `router`, also remembering each unary and server-streaming method's
 * implementation for localServer. A service registered with its own options
 * (interceptors of its own) is served through the universal handlers only.
 */
export function recordingRouter(router: ConnectRouter): { router: ConnectRouter; methods: Map<string, DirectSpec> } {
  const methods = new Map<string, DirectSpec>();
  const recording: ConnectRouter = {
    handlers: router.handlers,
    service(service, impl, options) {
      router.service(service, impl, options);
      if (!options)
        for (const spec of Object.values(createServiceImplSpec(service, impl).methods))
          if (spec.kind === "unary" || spec.kind === "server_streaming") methods.set(methodKey(spec.method), spec);
      return recording;
    },
    rpc(method, impl, options) {
      router.rpc(method, impl as never, options);
      return recording;
    },
  };
  return { router: recording, methods };
}

/**
 * The handler's context for a call from this process. Its signal is the
 * caller's own (a LocalCall's): that one already aborts at the deadline, when
 * the caller cancels, when the call fails and once it is over, which is what
 * a handler's signal promises. createHandlerContext would link two more
 * AbortControllers and start a second timer for the same deadline: a quarter
 * of an in-process call's CPU (bench/runtime-call.ts).
 */
function handlerContext(req: UnaryRequest | StreamRequest, timeoutMs: number | undefined): HandlerContext {
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

/** The error a remote caller would get for `err`: its cause stays here, the response's headers and trailers become its metadata. */
function relayed(err: unknown, context: HandlerContext): ConnectError {
  const e = ConnectError.from(err);
  const metadata = new Headers(context.responseHeader);
  context.responseTrailer.forEach((value, key) => metadata.set(key, value));
  e.metadata.forEach((value, key) => metadata.set(key, value));
  const relayed = new ConnectError(e.rawMessage, e.code, metadata);
  relayed.details.push(...e.details);
  return relayed;
}

/**
 * `context` with the refusal a network call gets when `message` is larger than
 * the server reads (guardRequestBody's), for inputInterceptor to answer.
 */
function withReadLimit(context: HandlerContext, message: Message, readMaxBytes: number): HandlerContext {
  if (encodedLargerThan(context.method.input, message, readMaxBytes))
    context.values.set(refusedBodyKey, { code: Code.ResourceExhausted, message: tooLargeMessage(readMaxBytes) });
  return context;
}

/** A server-streaming call's one request message, read ahead so its size is checked before the interceptors run. */
async function oneMessage(messages: AsyncIterable<Message>): Promise<{ message: Message | undefined; all: AsyncIterable<Message> }> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  const all = (async function* () {
    if (first.done) return;
    yield first.value;
    for (let next = await it.next(); !next.done; next = await it.next()) yield next.value;
  })();
  return { message: first.done ? undefined : first.value, all };
}

/**
 * The in-process side of a server: `readMaxBytes` is the server's read limit,
 * held against each request message's binary size as a network call's body is.
 */
export function localServer(handlers: UniversalHandler[], methods: Map<string, DirectSpec>, interceptors: Interceptor[], readMaxBytes: number): LocalServer {
  const specOf = <K extends DirectSpec["kind"]>(method: DescMethod, kind: K) => {
    const spec = methods.get(methodKey(method));
    if (spec?.kind !== kind) throw new Error(`${methodKey(method)} is not a ${kind} RPC of this server`);
    return spec as Extract<DirectSpec, { kind: K }>;
  };
  return {
    client: createUniversalHandlerClient(handlers),
    serves: (method) => methods.has(methodKey(method)),
    async unary(req, timeoutMs) {
      const spec = specOf(req.method, "unary");
      const context = handlerContext(req, timeoutMs);
      // Held to the read limit by inputInterceptor, in the one walk its other checks take.
      context.values.set(unencodedReadLimitKey, readMaxBytes);
      try {
        const message = await invokeUnaryImplementation(spec, context, req.message, interceptors);
        return { stream: false, service: req.service, method: req.method, header: context.responseHeader, trailer: context.responseTrailer, message };
      } catch (err) {
        throw relayed(err, context);
      }
    },
    async stream(req, timeoutMs) {
      const spec = specOf(req.method, "server_streaming");
      const input = await oneMessage(req.message);
      const context = handlerContext(req, timeoutMs);
      if (input.message) withReadLimit(context, input.message, readMaxBytes);
      // The server's own pipeline from the request messages on: interceptors, then the handler's generator.
      const output: AsyncIterator<Message> = transformInvokeImplementation(spec, context, interceptors)(input.all)[Symbol.asyncIterator]();
      const pull = () => output.next().catch((err: unknown) => Promise.reject(relayed(err, context)));
      const first = await pull();
      let pending: Promise<IteratorResult<Message>> | undefined = Promise.resolve(first);
      const messages: AsyncIterator<Message> = {
        next() {
          // The first message was read to learn the headers; the rest are pulled when asked for.
          const next = pending ?? pull();
          pending = undefined;
          return next;
        },
        // The reader is gone: the handler's generator ends (its finally blocks run).
        return: (value?: unknown) => output.return?.(value).then(() => ({ done: true as const, value })) ?? Promise.resolve({ done: true as const, value }),
      };
      return {
        stream: true,
        service: req.service,
        method: req.method,
        header: context.responseHeader,
        // Filled in by the server's pipeline once the last message is read.
        trailer: context.responseTrailer,
        message: { [Symbol.asyncIterator]: () => messages },
      };
    },
  };
}

/** Why a finished call's signal aborts: one shared reason, so finishing a call builds no DOMException. */
const CALL_OVER = new ConnectError("the call is over", Code.Canceled);

/**
 * One in-process call's signal: a single AbortController that aborts at the
 * deadline, when the caller's signal aborts, when the call fails and once it
 * is over (what connect's runUnaryCall gives a network call, with one
 * controller and no exception built at the end of every call). `stopped`
 * hears the deadline or the cancellation, so the caller need not wait for a
 * handler that ignores its signal, as over the network.
 */
export class LocalCall {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly onCallerAbort: (() => void) | undefined;
  /** Called once if the deadline passes or the caller cancels before the call is over. */
  stopped: ((reason: ConnectError) => void) | undefined;

  constructor(
    private readonly caller: AbortSignal | undefined,
    timeoutMs: number | undefined,
  ) {
    if (timeoutMs !== undefined) {
      const expire = () => this.stop(new ConnectError("the operation timed out", Code.DeadlineExceeded));
      if (timeoutMs <= 0) expire();
      else this.timer = setTimeout(expire, timeoutMs);
    }
    if (caller?.aborted) this.stop(ConnectError.from(getAbortSignalReason(caller), Code.Canceled));
    else if (caller) caller.addEventListener("abort", (this.onCallerAbort = () => this.stop(ConnectError.from(getAbortSignalReason(caller), Code.Canceled))));
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The call is over: the handler's signal aborts so code still watching it lets go. */
  done(): void {
    this.cleanup();
    if (!this.controller.signal.aborted) this.controller.abort(CALL_OVER);
  }

  /** The call failed with `reason`: the error the caller gets (the deadline's or cancellation's if one came first). */
  fail(reason: unknown): ConnectError {
    this.cleanup();
    const signal = this.controller.signal;
    const err = signal.aborted ? ConnectError.from(getAbortSignalReason(signal), Code.Canceled) : ConnectError.from(reason);
    if (!signal.aborted) this.controller.abort(err);
    return err;
  }

  private stop(reason: ConnectError): void {
    if (this.controller.signal.aborted) return;
    this.cleanup();
    this.controller.abort(reason);
    this.stopped?.(reason);
  }

  private cleanup(): void {
    clearTimeout(this.timer);
    if (this.onCallerAbort) this.caller?.removeEventListener("abort", this.onCallerAbort);
  }
}
