// A server's RPCs for callers in the same process (one-process runs: `make
// run`, the end-to-end test and bench). Unary and server-streaming calls go
// straight to the handler behind the server's own interceptors, the request
// and response messages handed over as they are: no encoding, envelopes,
// HTTP/2 frames or header parsing. Other kinds go through the server's
// universal handlers (gRPC, every interceptor, still no socket).
import { create, type DescMessage, type DescMethod, type Message } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  createServiceImplSpec,
  type ContextKey,
  type ContextValues,
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
  type UniversalClientFn,
  type UniversalHandler,
} from "@connectrpc/connect/protocol";
import { encodedLargerThan, refusedBodyKey, tooLargeMessage, unencodedReadLimitKey } from "./input.js";
import { LightHeaders } from "./light-headers.js";

export interface LocalServer {
  /** gRPC to the server's universal handlers, for every kind of RPC. */
  readonly client: UniversalClientFn;
  /** Whether this server serves `method` (a unary or server-streaming RPC) through `unary` or `stream`. */
  serves(method: DescMethod): boolean;
  /**
   * Runs a unary RPC as the server would (every server interceptor, the same
   * handler context), with `timeoutMs` as the call's deadline. `req.signal`
   * becomes the handler's: it must abort at that deadline, on cancellation and
   * once the call is over, as a LocalCall's does (timeLeftOn gives its deadline). `req.header` becomes the
   * handler's request header, not copied: the caller made it for this call and
   * reads it no more. A failure is the ConnectError a remote caller would get,
   * with the response's headers and trailers as its metadata.
   */
  unary(req: UnaryRequest, timeoutMs: number | undefined): Promise<UnaryResponse>;
  /**
   * Runs a server-streaming RPC the same way (`req.header` handed over too). It resolves once the handler
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
 * A call's context values: connect's ContextValues with its methods on a
 * prototype (createContextValues makes an object and three closures per call).
 * Values are kept as createContextValues keeps them, by the key's symbol.
 */
class CallValues implements ContextValues {
  get<T>(key: ContextKey<T>): T {
    return key.id in this ? (this as unknown as Record<symbol, T>)[key.id] : key.defaultValue;
  }
  set<T>(key: ContextKey<T>, value: T): this {
    (this as unknown as Record<symbol, T>)[key.id] = value;
    return this;
  }
  delete(key: ContextKey<unknown>): this {
    delete (this as unknown as Record<symbol, unknown>)[key.id];
    return this;
  }
}

/** New, empty context values for one call (createContextValues' equal). */
export function callValues(): ContextValues {
  return new CallValues();
}

const noDeadline = () => undefined;

/** The handler's `timeoutMs`: the time left until `timeoutMs` from now. */
function timeLeft(timeoutMs: number | undefined): () => number | undefined {
  if (timeoutMs === undefined) return noDeadline;
  const deadline = Date.now() + timeoutMs;
  return () => deadline - Date.now();
}

/**
 * The handler's context for a call from this process. Its signal is the
 * caller's own (a LocalCall's): that one already aborts at the deadline, when
 * the caller cancels, when the call fails and once it is over, which is what
 * a handler's signal promises. createHandlerContext would link two more
 * AbortControllers and start a second timer for the same deadline: a quarter
 * of an in-process call's CPU (bench/runtime-call.ts). The request's headers
 * are the caller's, handed over (LocalServer); the values are the server's
 * own: nothing the caller set there crosses, as over the network.
 */
function handlerContext(req: UnaryRequest | StreamRequest, timeoutMs: number | undefined): HandlerContext {
  return {
    service: req.service,
    method: req.method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: req.url,
    signal: req.signal,
    timeoutMs: timeLeft(timeoutMs),
    requestHeader: req.header,
    responseHeader: new LightHeaders(),
    responseTrailer: new LightHeaders(),
    values: new CallValues(),
  };
}

/**
 * handlerContext's equal for a unary call, as a class. Every field is its
 * own: a copy of it (an object spread) has them all.
 */
class UnaryContext implements HandlerContext {
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";
  readonly service: HandlerContext["service"];
  readonly method: DescMethod;
  readonly url: string;
  readonly signal: AbortSignal;
  readonly timeoutMs: () => number | undefined;
  readonly requestHeader: Headers;
  readonly responseHeader = new LightHeaders();
  readonly responseTrailer = new LightHeaders();
  readonly values: ContextValues = new CallValues();

  constructor(req: UnaryRequest, timeoutMs: number | undefined) {
    this.service = req.service;
    this.method = req.method;
    this.url = req.url;
    this.signal = req.signal;
    this.timeoutMs = timeLeft(timeoutMs);
    this.requestHeader = req.header;
  }
}

/**
 * The handler's context for `req` as the interceptors hand it on: the call's
 * own when they passed its parts on (they do: they set headers and values in
 * place), else a copy with theirs, as connect's mergeRequest makes.
 */
function contextFor(context: HandlerContext, req: UnaryRequest | StreamRequest): HandlerContext {
  if (req.header === context.requestHeader && req.signal === context.signal && req.contextValues === context.values && req.service === context.service) return context;
  const { protocolName, requestMethod, method, url, timeoutMs, responseHeader, responseTrailer } = context;
  return { protocolName, requestMethod, method, url, timeoutMs, responseHeader, responseTrailer, service: req.service, requestHeader: req.header, signal: req.signal, values: req.contextValues };
}

/** The handler's context of the unary call running, passed through the interceptors in the call's values. */
const unaryContextKey = createContextKey<HandlerContext | undefined>(undefined, { description: "unary call's handler context" });

/**
 * The call's handler context on the request the chain starts with, too: an interceptor may hand on
 * new context values (`{ ...req, contextValues }`), and a spread keeps this own field. One that
 * rebuilds the request from its fields keeps the values instead; only one doing both loses the call.
 */
const HANDLER_CONTEXT = Symbol("the call's handler context");
type CarriesContext = { [HANDLER_CONTEXT]?: HandlerContext };

/** The handler context of the call `req` belongs to: in its values, else on the request. */
function callContext(req: UnaryRequest | StreamRequest, key: ContextKey<HandlerContext | undefined>): HandlerContext {
  const context = req.contextValues.get(key) ?? (req as CarriesContext)[HANDLER_CONTEXT];
  if (!context) throw new ConnectError("an interceptor handed on a request with neither the call's context values nor its other fields", Code.Internal);
  return context;
}

/**
 * A unary answer with the context's headers and trailers. Every field is its
 * own: an interceptor that copies the answer (`{ ...res }`, as connect's
 * contract allows) keeps them all, the trailers too.
 */
class UnaryAnswer implements UnaryResponse {
  readonly stream = false;
  readonly service: UnaryResponse["service"];
  readonly method: UnaryResponse["method"];
  readonly header: Headers;
  readonly trailer: Headers;

  constructor(
    readonly context: HandlerContext,
    readonly message: Message,
  ) {
    this.service = context.service;
    this.method = context.method as UnaryResponse["method"];
    this.header = context.responseHeader;
    this.trailer = context.responseTrailer;
  }
}

type UnaryFn = (req: UnaryRequest) => Promise<UnaryResponse>;

/**
 * A unary method's handler behind the server's interceptors, composed once:
 * connect's invokeUnaryImplementation composes them again on every call (a
 * closure per interceptor and call). The interceptors keep nothing of a call
 * outside the function they return for it, so one chain serves every call;
 * the call's context travels in its values. Answers as
 * invokeUnaryImplementation does, with the context's headers and trailers
 * holding the answer's; `context.values` must be the call's own.
 */
export type UnaryInvoker = (context: HandlerContext, message: Message) => Promise<UnaryResponse>;

export function unaryInvoker(spec: Extract<DirectSpec, { kind: "unary" }>, interceptors: Interceptor[]): UnaryInvoker {
  const { method } = spec;
  const handler: UnaryFn = async (req) => {
    const context = callContext(req, unaryContextKey);
    // create() returns a message of the output type as it is (connect's normalize).
    return new UnaryAnswer(context, create(method.output, await spec.impl(req.message as never, contextFor(context, req))));
  };
  const chain = interceptors.reduceRight<UnaryFn>((next, interceptor) => interceptor(next as never) as unknown as UnaryFn, handler);
  return async (context, message) => {
    const { requestMethod, url, signal, requestHeader: header, values: contextValues } = context;
    contextValues.set(unaryContextKey, context);
    const res = await chain({ stream: false, message, method, requestMethod, url, signal, header, service: method.parent, contextValues, [HANDLER_CONTEXT]: context } as UnaryRequest);
    return answerOf(res, context);
  };
}

/** The handler's context of the server-streaming call running, passed through the interceptors in the call's values. */
const streamContextKey = createContextKey<HandlerContext | undefined>(undefined, { description: "server stream's handler context" });

/**
 * A server-streaming method's handler behind the server's interceptors, as
 * connect's transformInvokeImplementation runs it (the same requests,
 * answers, headers, trailers and errors), composed once as unaryInvoker's
 * chain is: connect composes the interceptors again on every call and wraps
 * each message in generators compiled for older engines (a generator, a
 * delegator and an async-values wrapper, with their promises, per message and
 * layer). The output is read as a generator's: nothing runs before the first
 * read; `return()` ends the handler's generator (its finally blocks run).
 * `context.values` must be the call's own.
 */
export type StreamInvoker = (context: HandlerContext, input: AsyncIterable<Message>) => AsyncIterator<Message>;

export function streamInvoker(spec: Extract<DirectSpec, { kind: "server_streaming" }>, interceptors: Interceptor[]): StreamInvoker {
  const { method } = spec;
  const handler = async (req: StreamRequest): Promise<StreamResponse> => {
    const context = callContext(req, streamContextKey);
    const input = await singleMessage(req.message);
    const output = spec.impl(input as never, contextFor(context, req)) as AsyncIterable<unknown>;
    return { stream: true, service: method.parent, method, header: context.responseHeader, trailer: context.responseTrailer, message: normalized(method.output, output) };
  };
  const chain = interceptors.reduceRight<(req: StreamRequest) => Promise<StreamResponse>>((next, interceptor) => interceptor(next as never) as never, handler);
  return async function* (context, input) {
    const { requestMethod, url, signal, requestHeader: header, values: contextValues } = context;
    contextValues.set(streamContextKey, context);
    const res = await chain({ stream: true, message: input, method, requestMethod, url, signal, header, service: method.parent, contextValues, [HANDLER_CONTEXT]: context } as StreamRequest);
    copyHeaders(res.header, context.responseHeader);
    yield* res.message as AsyncIterable<Message>;
    copyHeaders(res.trailer, context.responseTrailer);
  };
}

/** A server stream's one request message, refused as connect's ensureSingle refuses none or more. */
async function singleMessage(messages: AsyncIterable<unknown>): Promise<unknown> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
  const second = await it.next();
  if (second.done !== true) throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
  return first.value;
}

/** The handler's messages as messages of `schema` (create() returns one as it is), as connect's normalizeIterable: no generator. */
function normalized(schema: DescMessage, messages: AsyncIterable<unknown>): AsyncIterable<Message> {
  const transform = (r: IteratorResult<unknown>): IteratorResult<Message> => (r.done === true ? r : { done: false, value: create(schema, r.value as never) });
  return {
    [Symbol.asyncIterator]() {
      const it = messages[Symbol.asyncIterator]();
      const out: AsyncIterator<Message> = { next: () => it.next().then(transform) };
      if (it.throw !== undefined) out.throw = (e?: unknown) => it.throw!(e).then(transform);
      if (it.return !== undefined) out.return = (v?: unknown) => it.return!(v).then(transform);
      return out;
    },
  };
}

/** What `to` holds becomes what `from` holds (connect's copyHeaders). */
function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  for (const key of [...to.keys()]) to.delete(key);
  from.forEach((value, key) => to.set(key, value));
}

/** The answer the interceptors gave for `context`'s call, with its headers and trailers as the context's (as connect's invokeUnaryImplementation). */
function answerOf(res: UnaryResponse, context: HandlerContext): UnaryResponse {
  if (res instanceof UnaryAnswer && res.context === context) return res;
  copyHeaders(res.header, context.responseHeader);
  copyHeaders(res.trailer, context.responseTrailer);
  return new UnaryAnswer(context, res.message);
}

/** The error a remote caller would get for `err`: its cause stays here, the response's headers and trailers become its metadata. */
function relayed(err: unknown, header: Headers, trailer: Headers): ConnectError {
  const e = ConnectError.from(err);
  const metadata = new Headers(header);
  trailer.forEach((value, key) => metadata.set(key, value));
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

/** Most methods one server is asked for by distinct descriptors: they are module singletons, one per method. */
const MAX_METHODS_SEEN = 1_000;

/**
 * Whether the server serves each method directly, and its unary or stream
 * chain made once (`compose`, `composeStream`), by the method's descriptor: no
 * key string built per call.
 */
function composedOnce(methods: Map<string, DirectSpec>, compose: (method: DescMethod) => UnaryInvoker, composeStream: (method: DescMethod) => StreamInvoker) {
  const seen = new Map<DescMethod, { served: boolean; unary?: UnaryInvoker; stream?: StreamInvoker }>();
  const entry = (method: DescMethod) => {
    let e = seen.get(method);
    if (!e) {
      e = { served: methods.has(methodKey(method)) };
      if (seen.size < MAX_METHODS_SEEN) seen.set(method, e);
    }
    return e;
  };
  return {
    serves: (method: DescMethod) => entry(method).served,
    get(method: DescMethod): UnaryInvoker {
      const e = entry(method);
      return (e.unary ??= compose(method));
    },
    stream(method: DescMethod): StreamInvoker {
      const e = entry(method);
      return (e.stream ??= composeStream(method));
    },
  };
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
  const composed = composedOnce(
    methods,
    (method) => unaryInvoker(specOf(method, "unary"), interceptors),
    (method) => streamInvoker(specOf(method, "server_streaming"), interceptors),
  );
  return {
    client: createUniversalHandlerClient(handlers),
    serves: (method) => composed.serves(method),
    async unary(req, timeoutMs) {
      const invoke = composed.get(req.method);
      const context = new UnaryContext(req, timeoutMs);
      // Held to the read limit by inputInterceptor, in the one walk its other checks take.
      context.values.set(unencodedReadLimitKey, readMaxBytes);
      try {
        return await invoke(context, req.message);
      } catch (err) {
        throw relayed(err, context.responseHeader, context.responseTrailer);
      }
    },
    async stream(req, timeoutMs) {
      const invoke = composed.stream(req.method);
      const input = await oneMessage(req.message);
      const context = handlerContext(req, timeoutMs);
      if (input.message) withReadLimit(context, input.message, readMaxBytes);
      // The server's own pipeline from the request messages on: interceptors, then the handler's generator.
      const output: AsyncIterator<Message> = invoke(context, input.all);
      const pull = () => output.next().catch((err: unknown) => Promise.reject(relayed(err, context.responseHeader, context.responseTrailer)));
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

/** Where a LocalCall's signal keeps the call's deadline (ms since the epoch). */
const DEADLINE = Symbol("in-process call's deadline");
type SignalWithDeadline = AbortSignal & { [DEADLINE]?: number };

/**
 * The time left (ms) until the deadline of the LocalCall whose signal
 * `signal` is; undefined when it has none, or for any other signal. The
 * deadline rides on the signal, which interceptors hand on even when they
 * build a new request (connect's contract: a request is made of its fields,
 * nothing else rides on it safely).
 */
export function timeLeftOn(signal: AbortSignal): number | undefined {
  const deadline = (signal as SignalWithDeadline)[DEADLINE];
  return deadline === undefined ? undefined : deadline - Date.now();
}

/** Whether `signal` is a LocalCall's whose deadline is at or before `deadline` (so it aborts by then). */
function endsBy(signal: AbortSignal | undefined, deadline: number): boolean {
  const by = (signal as SignalWithDeadline | undefined)?.[DEADLINE];
  return by !== undefined && by <= deadline && !signal!.aborted;
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
      const deadline = Date.now() + timeoutMs;
      (this.controller.signal as SignalWithDeadline)[DEADLINE] = deadline;
      if (timeoutMs <= 0) LocalCall.expire(this);
      // A caller's signal aborts by its own deadline (a LocalCall's does: its timer, or its caller's, and so on up),
      // and its abort stops this call: no deadline at or after it needs a timer of its own (most hops pass theirs on).
      else if (!endsBy(caller, deadline)) this.timer = setTimeout(LocalCall.expire, timeoutMs, this);
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

  /** The caller let the call go (its reader dropped a stream unread): as a cancellation. */
  cancel(): void {
    this.stop(new ConnectError("the reader let the stream go", Code.Canceled));
  }

  /** The deadline passed. */
  private static expire(call: LocalCall): void {
    call.stop(new ConnectError("the operation timed out", Code.DeadlineExceeded));
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
