import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createTransport as createGrpcProtocolTransport } from "@connectrpc/connect/protocol-grpc";
import { connectStreamCall } from "./connect-stream-call.js";
import { connectUnaryCall, type Http2Upstream } from "./http2-exchange.js";
import { envelopeOf } from "./input.js";
import { LightHeaders } from "./light-headers.js";
import { signingInterceptor } from "./internal-auth.js";
import { callValues, LocalCall, timeLeftOn, type LocalServer } from "./local-server.js";
import { requestIdPropagation } from "./interceptors.js";
import { tracingInterceptor } from "./tracing.js";
import { upstreamSessions } from "./upstream.js";

/** How a service reaches another one over gRPC, by the other's name (e.g. "wallet"). */
export type Peers = (service: string) => Transport;

/**
 * gRPC transports to other services from a name -> URL lookup made at call
 * time, so services that start in any order can name each other. One HTTP/2
 * connection per URL (upstream.ts) is shared by all calls.
 */
export function createPeers(
  urlOf: (service: string) => string | undefined,
  /** A service served by this same process (RunningServer.local): called without a socket. */
  localOf: (service: string) => LocalServer | undefined = () => undefined,
  /** `frames`: unary calls in frames to peers that speak them (frames.ts; default); false: all on HTTP/2. */
  { frames = true }: { frames?: boolean } = {},
): Peers & { close(): void } {
  // Every call is signed: the receiving service believes the identity it carries only then.
  const interceptors = [tracingInterceptor("client"), requestIdPropagation(), signingInterceptor()];
  const sessions = upstreamSessions(frames);
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
    unary: (...args) => transportFor(service).unary(...args),
    stream: (...args) => transportFor(service).stream(...args),
  });
  return Object.assign(peers, {
    close: () => {
      sessions.close();
      remotes.clear();
    },
  });
}

/**
 * The connection a peer's calls go on: unary calls through connectUnaryCall,
 * server streams through connectStreamCall, client and bidi streams through connect-node's client. An UpstreamSession (upstream.ts);
 * connect-node's Http2SessionManager fits too (tests compare the two).
 */
export type PeerConnection = Http2Upstream & { readonly authority: string };

/**
 * A call from one of our processes to another (a service's peers, the
 * gateway's backends): the Connect protocol, binary, over one HTTP/2 connection.
 * Measured against gRPC on these 2-core machines (bench/rpc-clients.ts, a
 * tiny unary call at 16 concurrent): connect-node's gRPC client ~420 us of
 * CPU per call and our server ~470 us to answer it; the Connect protocol
 * ~220 and ~200 us; a stock @grpc/grpc-js client ~170 us, the server ~330 us
 * for it. The services still serve gRPC (and gRPC-web) to everyone else.
 * Unary calls, nearly all of them, are sent by connectUnary, without
 * connect-node's client machinery, server streams by connectServerStream. A session with
 * frames (upstreamSessions' default) carries both in frames on a
 * TCP connection of their own to a server that speaks them (frames.ts: ~38 us
 * of CPU per call on each side in bench/rpc-clients.ts, HTTP/2 ~130).
 */
export function internalTransport(url: string, sessionManager: PeerConnection, interceptors: Interceptor[]): Transport {
  const connect = createConnectTransport({ baseUrl: url, httpVersion: "2", sessionManager, useBinaryFormat: true, interceptors });
  return {
    unary(method, signal, callerTimeoutMs, header, message, contextValues) {
      const timeoutMs = connectTimeout(callerTimeoutMs);
      // One signal for the call, every send of it: the deadline, the caller's cancellation, the end of the call.
      const call = new LocalCall(signal, timeoutMs);
      if (call.signal.aborted) return Promise.reject(call.fail(undefined));
      const req: UnaryRequest = { ...requestOf(url, method, header, contextValues, call), stream: false, message: asMessage(method.input, message) };
      const deadline = deadlineOf(timeoutMs);
      const send = intercepted<(req: UnaryRequest) => Promise<UnaryResponse>>((r) => connectUnary(sessionManager, r, deadline), interceptors);
      return send(req).then(
        (res) => (call.done(), res as never),
        (err) => Promise.reject(call.fail(err)),
      );
    },
    stream(method, signal, callerTimeoutMs, header, input, contextValues) {
      // Client and bidi streams (none between our services): connect-node's client.
      if (method.methodKind !== "server_streaming") return connect.stream(method, signal, callerTimeoutMs, header, input, contextValues);
      const timeoutMs = connectTimeout(callerTimeoutMs);
      const call = new LocalCall(signal, timeoutMs);
      if (call.signal.aborted) return Promise.reject(call.fail(undefined));
      const req: StreamRequest = {
        ...requestOf(url, method, header, contextValues, call),
        stream: true,
        message: asMessages(method.input, input),
      };
      const deadline = deadlineOf(timeoutMs);
      const send = intercepted<(req: StreamRequest) => Promise<StreamResponse>>((r) => connectServerStream(sessionManager, r, deadline), interceptors);
      return send(req).then(
        (res) => ({ ...res, message: cancelledWhenDropped(endingCall(call, res.message), call) }) as never,
        (err) => Promise.reject(call.fail(err)),
      );
    },
  };
}

/** What a unary and a server-streaming request to a peer share: the method's address, headers, values and the call's signal. */
function requestOf<M extends DescMethod>(url: string, method: M, header: Parameters<typeof LightHeaders.of>[0], contextValues: ContextValues | undefined, call: LocalCall) {
  return {
    service: method.parent,
    method,
    requestMethod: "POST",
    url: `${url}/${method.parent.typeName}/${method.name}`,
    header: LightHeaders.of(header),
    contextValues: contextValues ?? callValues(),
    signal: call.signal,
  };
}

function deadlineOf(timeoutMs: number | undefined): number | undefined {
  return timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
}

/**
 * The Connect protocol's server-streaming call (binary) as connect-es sends it,
 * over the session (connectStreamCall): the request's messages encoded, the
 * answer's decoded as they come.
 */
async function connectServerStream(session: Http2Upstream, req: StreamRequest, deadline: number | undefined): Promise<StreamResponse> {
  const input = req.method.input;
  const envelopes: Uint8Array[] = [];
  for await (const m of req.message) envelopes.push(envelopeOf(toBinary(input, m)));
  const answer = await connectStreamCall({
    session,
    service: req.service.typeName,
    method: req.method.name,
    header: req.header,
    body: envelopes.length === 1 ? envelopes[0] : Buffer.concat(envelopes),
    signal: req.signal,
    deadline,
  });
  const output = req.method.output;
  const messages = (async function* () {
    for await (const bytes of answer.messages) yield answerMessage(output, bytes);
  })();
  return { stream: true, service: req.service, method: req.method, header: answer.header, trailer: answer.trailer, message: messages };
}

/**
 * A server stream read through connect-es's client cannot be ended by its reader: that client's
 * iterable drops the reader's return() (a `break`). So a stream's messages collected unread to
 * their end cancel their call (the handler hears CANCELED) instead of holding it to its deadline.
 */
const droppedStreams = new FinalizationRegistry<LocalCall>((call) => call.cancel());

/** `messages`, whose call is cancelled once they are let go unread (a call already over is left as it is). */
function cancelledWhenDropped<T extends object>(messages: T, call: LocalCall): T {
  droppedStreams.register(messages, call);
  return messages;
}

/** A stream's messages, ending its call with them: failed with the error the reader gets (the deadline's or cancellation's first), done at the end or when the reader stops. */
async function* endingCall<T>(call: LocalCall, messages: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* messages;
  } catch (err) {
    throw call.fail(err);
  } finally {
    call.done();
  }
}

/**
 * The Connect protocol's unary call (binary) as connect-es sends it, over the
 * session (connectUnaryCall): the message encoded, the answer decoded.
 */
async function connectUnary(session: Http2Upstream, req: UnaryRequest, deadline: number | undefined): Promise<UnaryResponse> {
  const { header, trailer, body } = await connectUnaryCall({
    session,
    service: req.service.typeName,
    method: req.method.name,
    header: req.header,
    body: toBinary(req.method.input, req.message),
    signal: req.signal,
    deadline,
  });
  return { stream: false, service: req.service, method: req.method, header, trailer, message: answerMessage(req.method.output, body) };
}

/** The answer's message; one that does not parse is the server's failure (INTERNAL), as connect-es's client has it. */
function answerMessage<O extends DescMessage>(output: O, body: Uint8Array): MessageShape<O> {
  try {
    return fromBinary(output, body);
  } catch (err) {
    throw new ConnectError(`parse binary: ${(err as Error).message}`, Code.Internal);
  }
}

/** A caller's timeout as connect-es's transports take it: none, or 0 and less, is no deadline. */
function connectTimeout(timeoutMs: number | undefined): number | undefined {
  return timeoutMs !== undefined && timeoutMs <= 0 ? undefined : timeoutMs;
}

/**
 * A server in this same process (RunningServer.local), called with the same
 * interceptors and signed identity as over the network: a unary or
 * server-streaming RPC runs its handler behind the server's interceptors with
 * the messages handed over as they are, under one LocalCall (deadline,
 * cancellation, the end of the call); other kinds speak gRPC to the server's
 * handlers. No socket or HTTP/2 either way (one-process runs: `make run`,
 * tests, benches).
 */
export function localTransport(local: LocalServer, interceptors: Interceptor[] = []): Transport {
  const grpc = universalHandlerTransport(local, interceptors);
  // The interceptors around the server's unary and stream paths, composed once, not per call
  // (they keep nothing of a call outside the function they return): a call's deadline travels on its signal, a LocalCall's.
  const unary = intercepted<AnyFn>((req) => local.unary(req as UnaryRequest, timeLeftOn(req.signal)), interceptors);
  const stream = intercepted<AnyFn>((req) => local.stream(req as StreamRequest, timeLeftOn(req.signal)), interceptors);
  return {
    unary(method, signal, callerTimeoutMs, header, message, contextValues) {
      if (!local.serves(method)) return grpc.unary(method, signal, callerTimeoutMs, header, message, contextValues);
      const timeoutMs = connectTimeout(callerTimeoutMs);
      const call = new LocalCall(signal, timeoutMs);
      return new Promise((resolve, reject) => {
        // Cancelled before it started (or no time left): the handler is not called, as over the network.
        if (call.signal.aborted) return reject(call.fail(undefined));
        call.stopped = reject;
        unary(localRequest(method, call, header, contextValues, false, asMessage(method.input, message))).then(
          (res) => (call.done(), resolve(res as never)),
          (err) => reject(call.fail(err)),
        );
      });
    },
    stream(method, signal, callerTimeoutMs, header, input, contextValues) {
      if (!local.serves(method) || method.methodKind !== "server_streaming") return grpc.stream(method, signal, callerTimeoutMs, header, input, contextValues);
      const timeoutMs = connectTimeout(callerTimeoutMs);
      const call = new LocalCall(signal, timeoutMs);
      return new Promise((resolve, reject) => {
        // Cancelled before it started (or no time left): the handler is not called, as over the network.
        if (call.signal.aborted) return reject(call.fail(undefined));
        call.stopped = reject;
        stream(localRequest(method, call, header, contextValues, true, asMessages(method.input, input))).then(
          (res) => {
            const answer = res as StreamResponse;
            // Cancelled while the first message was on its way: the handler's generator still ends.
            if (call.signal.aborted) return void letGo(answer.message[Symbol.asyncIterator]());
            resolve({ ...answer, message: cancelledWhenDropped(endsWith(call, answer.message), call) } as never);
          },
          (err) => reject(call.fail(err)),
        );
      });
    },
  };
}

/** An in-process call's request, unary or stream, made as one object of one shape (its deadline is on its signal: timeLeftOn). */
function localRequest(
  method: DescMethod,
  call: LocalCall,
  header: ConstructorParameters<typeof Headers>[0],
  contextValues: ContextValues | undefined,
  stream: boolean,
  message: unknown,
): UnaryRequest | StreamRequest {
  return {
    stream,
    service: method.parent,
    method,
    requestMethod: "POST",
    url: `http://in-process/${method.parent.typeName}/${method.name}`,
    header: LightHeaders.of(header),
    contextValues: contextValues ?? callValues(),
    signal: call.signal,
    message,
  } as UnaryRequest | StreamRequest;
}

/** gRPC to a local server's universal handlers (every kind of RPC), without a socket. */
export function universalHandlerTransport(local: LocalServer, interceptors: Interceptor[]): Transport {
  return createGrpcProtocolTransport({
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
}

/** Ends a stream nobody will read: a generator's finally blocks run when it next yields. */
function letGo(it: AsyncIterator<unknown>): void {
  it.return?.().catch(() => undefined);
}

/** The interceptors around `next`, the first one outermost (as connect applies them). */
export function intercepted<F extends (req: never) => Promise<UnaryResponse | StreamResponse>>(next: F, interceptors: Interceptor[]): F {
  return interceptors.reduceRight<F>((inner, interceptor) => interceptor(inner as never) as unknown as F, next);
}
type AnyFn = (req: UnaryRequest | StreamRequest) => Promise<UnaryResponse | StreamResponse>;

/**
 * The request's messages as messages of `schema`. Made out here, not in a call's promise: the
 * handler holds them, and a generator made there would hold that promise's answer (the stream,
 * which droppedStreams must see let go).
 */
async function* asMessages<S extends DescMessage>(schema: S, input: AsyncIterable<MessageInitShape<S>>): AsyncGenerator<MessageShape<S>> {
  for await (const m of input) yield asMessage(schema, m);
}

/** `message` as a message of `schema` (callers may pass an init object, as over the network). */
function asMessage<S extends DescMessage>(schema: S, message: MessageInitShape<S>): MessageShape<S> {
  return isMessage(message, schema) ? message : create(schema, message);
}

/**
 * A streamed answer's messages, ending `call` with the stream: done after the
 * last message, failed with the error the reader gets. A read waiting on the
 * handler gives up at the deadline or cancellation (the handler hears it from
 * its signal), as a network read does when its stream is reset.
 */
function endsWith<T>(call: LocalCall, messages: AsyncIterable<T>): AsyncIterable<T> {
  const it = messages[Symbol.asyncIterator]();
  let stop: ((reason: ConnectError) => void) | undefined;
  call.stopped = (reason) => (stop?.(reason), letGo(it));
  return {
    [Symbol.asyncIterator]: () => ({
      next: () =>
        new Promise<IteratorResult<T>>((resolve, reject) => {
          if (call.signal.aborted) return reject(call.fail(undefined));
          stop = reject;
          it.next().then(
            (r) => (r.done && call.done(), resolve(r)),
            (err) => reject(call.fail(err)),
          );
        }),
    }),
  };
}
