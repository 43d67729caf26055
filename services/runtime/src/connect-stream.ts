// A server's Connect server-streaming calls (binary or JSON: the gateway's
// callers watching a tip) answered on HTTP/2's stream API, as connect-unary.ts
// answers unary ones: the one request message read and parsed once, the
// handler run behind the server's interceptors as connect-es's own pipeline
// runs it (local-server.ts streamInvoker), each message written as an
// envelope as it comes, then the end of the stream with the trailers or the
// error, as connect-es writes them. connect-node's handler puts a dozen async
// iterables, two linked AbortControllers and a DOMException per call around
// the same steps. Other transports (HTTP/1.1, the compatibility layer) and
// client or bidi streams still go through it.
import { create, fromBinary, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ContextValues } from "@connectrpc/connect";
import { compressionNegotiate, type Compression } from "@connectrpc/connect/protocol";
import { createEndStreamSerialization, endStreamFlag } from "@connectrpc/connect/protocol-connect";
import { COMPRESS_MIN_BYTES, connectHandlerContext, jsonAnswer, jsonRequest, UnaryServerCall, type ConnectUnaryOptions } from "./connect-unary.js";
import { acceptedCompressions, COMPRESSED_FLAG, compressedWithoutEncoding, envelopedMessages, envelopeFrames, envelopeOf, readRpcBody, refusedBodyKey, requestBodyLimit, unparsableBody } from "./input.js";
import { streamInvoker, type DirectSpec, type StreamInvoker } from "./local-server.js";
import type { PartsExchange } from "./rpc-exchange.js";

type StreamSpec = Extract<DirectSpec, { kind: "server_streaming" }>;
type Format = "binary" | "json";

/** The content types connect-es takes for a Connect stream; it answers in the request's. */
const STREAM_TYPE = /^application\/connect\+(?:(json)(?:; ?charset=utf-?8)?|(proto))$/i;
const ANSWER_TYPE: Record<Format, string> = { binary: "application/connect+proto", json: "application/connect+json" };

const endStream = createEndStreamSerialization({});

/**
 * Answers a POST of a server-streaming method in the Connect protocol on an
 * HTTP/2 stream (returns true), or leaves it to connect-node (returns false).
 * `path` is the URL's path. As on connect-node's road: the read limit on the
 * request message, one message exactly, a body that does not decompress or
 * parse refused by inputInterceptor (inside the interceptors, as connect-es's
 * own refusals of a stream's input are), the deadline and the client going
 * away on the handler's signal, the head after the first message (a handler
 * may still set headers until then), trailers and errors in the end of the
 * stream, messages from 1 KiB compressed as the client accepts.
 */
export function connectStreamHandler(options: ConnectUnaryOptions): (exchange: PartsExchange, path: string) => boolean {
  // Each method's handler behind the interceptors, composed on its first call (bounded by the server's methods).
  const invokers = new Map<StreamSpec, StreamInvoker>();
  const invokerOf = (spec: StreamSpec) => {
    let invoke = invokers.get(spec);
    if (!invoke) invokers.set(spec, (invoke = streamInvoker(spec, options.interceptors)));
    return invoke;
  };
  return (exchange, path) => {
    const type = exchange.method === "POST" ? STREAM_TYPE.exec(exchange.headers["content-type"] ?? "") : null;
    if (!type) return false;
    const spec = options.methods.get(path);
    if (spec?.kind !== "server_streaming") return false;
    // A bug (the service's contextValues threw, say): logged and counted, the stream reset, never left open.
    serveStream(options, spec, invokerOf(spec), exchange, type[1] ? "json" : "binary").catch((err) => {
      options.failedOutside?.(err, path);
      exchange.reset();
    });
    return true;
  };
}

async function serveStream(options: ConnectUnaryOptions, spec: StreamSpec, invoke: StreamInvoker, exchange: PartsExchange, format: Format): Promise<void> {
  const call = new UnaryServerCall(exchange, "connect");
  const header = call.header;
  const values = options.contextValues?.(exchange) ?? createContextValues();
  const context = connectHandlerContext(spec.method, call, values, ANSWER_TYPE[format]);
  const compression = compressionNegotiate(acceptedCompressions, header.get("connect-content-encoding"), header.get("connect-accept-encoding"), "connect-accept-encoding");
  if (compression.response) context.responseHeader.set("connect-content-encoding", compression.response.name);
  const envelope = (flags: number, data: Uint8Array) => streamEnvelope(flags, data, compression.response);
  let headSent = false;
  const head = () => {
    if (headSent) return;
    headSent = true;
    const out: Record<string, string> = {};
    context.responseHeader.forEach((value, key) => (out[key] = value));
    exchange.writeHead(200, out);
  };
  let error: ConnectError | undefined;
  try {
    if (compression.error) throw compression.error;
    if (call.timeoutError) throw call.timeoutError;
    const messages = await requestMessages(spec, exchange, compression.request, options.readMaxBytes, values, format);
    const output = invoke(context, messages);
    for (let r = await output.next(); !r.done; r = await output.next()) {
      // The client is gone: the handler's generator ends (its finally blocks run).
      if (exchange.closed) return void (await output.return?.());
      const data = format === "binary" ? toBinary(spec.method.output, r.value as Message) : jsonAnswer(spec.method.output, r.value as Message);
      const bytes = await envelope(0, data);
      head();
      // Undefined in the usual case, the client's window open: no promise, listener nor race per message.
      const taken = exchange.write(bytes);
      // Past its deadline (a handler that yields late, or the client's window full): its end cannot follow the part unsent.
      if (call.signal.aborted || (taken && !(await takenInTime(taken, call.signal)))) {
        await output.return?.();
        call.fail(call.signal.reason);
        if (!exchange.closed) exchange.reset();
        return;
      }
    }
    call.done();
  } catch (e) {
    // Past the deadline (or the client's cancel), the answer is the deadline's, whatever the handler threw.
    error = call.fail(e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e));
  }
  if (exchange.closed) return;
  const last = await envelope(endStreamFlag, endStream.serialize({ metadata: context.responseTrailer, error }));
  // The client may have gone while the end was compressed: nothing to write (writeHead would throw).
  if (exchange.closed) return;
  head();
  exchange.end(last);
}

/**
 * Whether the client took a part before the call's signal aborted (its deadline; the client gone, when
 * the exchange is closed already). A client that stopped reading without closing its connection (its
 * host gone silent) holds the handler until the deadline, never longer: nothing else ends the call then.
 */
export async function takenInTime(write: Promise<void>, signal: AbortSignal): Promise<boolean> {
  let onAbort!: () => void;
  const aborted = new Promise<false>((resolve) => signal.addEventListener("abort", (onAbort = () => resolve(false)), { once: true }));
  try {
    return await Promise.race([write.then(() => true), aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** One envelope: flags, length, data; from COMPRESS_MIN_BYTES compressed (as connect-es's transformCompressEnvelope). */
export async function streamEnvelope(flags: number, data: Uint8Array, compression: Compression | null): Promise<Uint8Array> {
  if (compression && data.byteLength >= COMPRESS_MIN_BYTES) return envelopeOf(await compression.compress(data), flags | COMPRESSED_FLAG);
  return envelopeOf(data, flags);
}

/**
 * The request's messages, read as connect-node's road reads them, so a
 * request that is not one good message gets the same refusal: the body over
 * the read limit, or binary that does not split, decompress or parse, noted
 * for inputInterceptor with one empty message in its place (guardRequestBody);
 * JSON split and parsed as connect-es's pipeline reads it (its errors where
 * it raises them), and none or more than one message left to its
 * ensureSingle.
 */
async function requestMessages(spec: StreamSpec, exchange: PartsExchange, compression: Compression | null, readMaxBytes: number, values: ContextValues, format: Format): Promise<AsyncIterable<Message>> {
  const input = spec.method.input;
  const body = await readRpcBody(exchange, requestBodyLimit(readMaxBytes, true), readMaxBytes, values);
  if (!body) return messagesOf([create(input)]);
  if (format === "json") return jsonMessages(input, body, compression, readMaxBytes);
  try {
    const encoding = (exchange.headers["connect-content-encoding"] as string | undefined) ?? null;
    const messages = envelopedMessages(body, encoding, readMaxBytes, "connect-accept-encoding").map((data) => fromBinary(input, data));
    return messagesOf(messages);
  } catch (err) {
    const refused = err instanceof ConnectError ? err : unparsableBody(input, err);
    values.set(refusedBodyKey, { code: refused.code, message: refused.rawMessage, metadata: refused.metadata });
    return messagesOf([create(input)]);
  }
}

/**
 * A request's messages, read once, as connect's createAsyncIterable hands them over (one iterator,
 * itself; return() and throw() end it), without its generators compiled for older engines (an
 * async generator, a delegator and an async-values wrapper, with their promises, per message):
 * a server stream's one request message went through them for each stream (a tip's WatchTip, at
 * the gateway and at payment).
 */
export function messagesOf<T>(items: readonly T[]): AsyncIterableIterator<T> {
  let at = 0;
  const over = (): IteratorResult<T> => ((at = items.length), { done: true, value: undefined });
  const it: AsyncIterableIterator<T> = {
    next: () => Promise.resolve(at < items.length ? { done: false, value: items[at++] } : over()),
    return: (value?: unknown) => (over(), Promise.resolve({ done: true, value }) as Promise<IteratorResult<T>>),
    throw: (err?: unknown) => (over(), Promise.reject(err)),
    [Symbol.asyncIterator]: () => it,
  };
  return it;
}

/** A JSON stream's messages, as connect-es's pipeline splits, decompresses and parses them. */
async function* jsonMessages(input: DescMessage, body: Uint8Array, compression: Compression | null, readMaxBytes: number): AsyncIterable<Message> {
  for (const { flags, data } of envelopeFrames(body, () => new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument))) {
    if (flags & endStreamFlag) continue; // skipped, as connect-es skips one in a request
    if (!(flags & COMPRESSED_FLAG)) yield jsonRequest(input, data);
    else if (!compression) throw compressedWithoutEncoding();
    else yield jsonRequest(input, await compression.decompress(data, readMaxBytes));
  }
}
