// A server's Connect unary calls in binary (what our own processes send each
// other: the peers' calls, the gateway's forwarded ones) or JSON (the
// gateway's callers: apps, web pages, partners) answered straight from the
// HTTP request: the body read and parsed once, the handler run behind the
// server's interceptors as for a call in this process (local-server.ts), the
// answer written as connect-es writes it. connect-node's universal handler
// builds request and response streams, two linked AbortControllers and a
// DOMException per call around the same steps; every other protocol, GET and
// the other streams still go through it (Connect server streams on HTTP/2:
// connect-stream.ts).
import { create, fromBinary, fromJsonString, toBinary, toJsonString, type DescMessage, type DescMethod, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { compressionNegotiate, mergeNonProtocolHeaders } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes, parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import { acceptedCompressions, decompressMessage, readRpcBody, refusedBodyKey, unparsableBody } from "./input.js";
import { LightHeaders } from "./light-headers.js";
import { callValues, LocalCall, unaryInvoker, type DirectSpec, type UnaryInvoker } from "./local-server.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import type { RpcExchange } from "./rpc-exchange.js";

/** connect-es compresses an answer from this size on (its compressMinBytes default). */
export const COMPRESS_MIN_BYTES = 1024;

export interface ConnectUnaryOptions {
  /** The unary methods served directly, by request path ("/pkg.Service/Method"). */
  methods: Map<string, DirectSpec>;
  /** The server's interceptors, outermost first. */
  interceptors: Interceptor[];
  readMaxBytes: number;
  contextValues?: (req: RpcExchange) => ContextValues;
  /** Told of a call that failed outside its handler (a bug, or an answer that could not be written): see failuresOutsideCalls. */
  failedOutside?: (err: unknown, path: string) => void;
}

/**
 * What a server does with a call that failed outside its handler's try (a bug: the service's
 * contextValues threw, an answer could not be written): an error line (the logger redacts) and a
 * count by path. The caller gets a reset stream or a bare 500, which say nothing of it.
 */
export function failuresOutsideCalls(logger: Logger, metrics: Metrics): (err: unknown, path: string) => void {
  // Labelled by request path: only the server's own methods get here, so the label set is bounded.
  const counter = metrics.counter("ttip_rpc_failed_outside_call_total", "Calls that failed outside their handler (a bug or an answer that could not be written); the caller got a reset or a 500.", ["path"]);
  return (err, path) => {
    logger.error({ err, path }, "call failed outside its handler");
    counter.inc({ path });
  };
}

/**
 * How a call's messages are written: binary ("application/proto", exactly) or
 * JSON (the content types connect-es takes for unary JSON). Each answers in
 * its own content type, as connect-es does.
 */
type Format = "binary" | "json";

const UNARY_JSON = /^application\/json(?:; ?charset=utf-?8)?$/i;

/** The call's format by its whole content type; undefined: left to connect-node (its 415 and the rest). */
function formatOf(contentType: string | undefined): Format | undefined {
  if (contentType === undefined) return undefined;
  // As connect-es matches it: "application/proto; charset=utf-8" is its 415.
  if (contentType.toLowerCase() === "application/proto") return "binary";
  return UNARY_JSON.test(contentType) ? "json" : undefined;
}

/**
 * Answers a POST of a unary method in application/proto or JSON (returns
 * true), or leaves the request to connect-node (returns false). `path` is the URL's
 * path. What the server promises holds as on the other path: the read limit
 * on the message, a body that does not parse or decompress refused with the
 * code the guard gives (inputInterceptor answers it, inside the
 * interceptors), the deadline and the client going away on the handler's
 * signal, headers and trailers back (trailer-*), errors as Connect's JSON
 * with their metadata, answers from 1 KiB compressed as the client accepts.
 */
export function connectUnaryHandler(options: ConnectUnaryOptions): (exchange: RpcExchange, path: string) => boolean {
  // Each method's handler behind the interceptors, composed on its first call (bounded by the server's methods).
  const invokers = new Map<UnarySpec, UnaryInvoker>();
  const invokerOf = (spec: UnarySpec) => {
    let invoke = invokers.get(spec);
    if (!invoke) invokers.set(spec, (invoke = unaryInvoker(spec, options.interceptors)));
    return invoke;
  };
  return (exchange, path) => {
    if (exchange.method !== "POST") return false;
    const format = formatOf(exchange.headers["content-type"]);
    if (format === undefined) return false;
    const spec = options.methods.get(path);
    if (spec?.kind !== "unary") return false;
    serve(options, spec, invokerOf(spec), exchange, format).catch((err) => {
      // A bug (the service's contextValues threw, say), or the answer could not be written.
      options.failedOutside?.(err, path);
      exchange.respond(500, {}, EMPTY);
    });
    return true;
  };
}

const EMPTY = new Uint8Array(0);

type UnarySpec = Extract<DirectSpec, { kind: "unary" }>;

/**
 * A unary call's server side, from its HTTP request, before the handler runs:
 * its headers, its deadline (the protocol's timeout header: a malformed one is
 * `timeoutError`, for the caller to answer in its protocol, as connect-es
 * does), and one signal for the call: the deadline, the client going away
 * before its answer, the call's end. One copy for the services' Connect
 * calls (below) and the gateway's calls forwarded as bytes.
 */
export class UnaryServerCall {
  readonly header: Headers;
  /** The request's URL, as connect-es hands it to handlers. */
  readonly url: string;
  /** The client's deadline, ms since the epoch. */
  readonly deadline: number | undefined;
  readonly timeoutError: ConnectError | undefined;
  private readonly call: LocalCall;
  private readonly gone: () => void;

  /** `header`: the request's headers when the caller made them already (the gateway's, cheaper to read); else made here. */
  constructor(
    private readonly exchange: RpcExchange,
    timeoutHeader: "connect" | "grpc",
    header?: Headers,
  ) {
    this.header = header ?? requestHeaders(exchange.rawHeaders);
    this.url = `http://${exchange.authority}${exchange.url}`;
    const timeout =
      timeoutHeader === "connect"
        ? parseConnectTimeout(this.header.get("connect-timeout-ms"), Number.MAX_SAFE_INTEGER)
        : parseGrpcTimeout(this.header.get("grpc-timeout"), Number.MAX_SAFE_INTEGER);
    this.timeoutError = timeout.error;
    this.deadline = timeout.timeoutMs === undefined ? undefined : Date.now() + timeout.timeoutMs;
    this.call = new LocalCall(undefined, timeout.timeoutMs);
    this.gone = () => this.call.fail(new ConnectError("the client cancelled the call", Code.Canceled));
    exchange.onClose(this.gone);
  }

  get signal(): AbortSignal {
    return this.call.signal;
  }

  /** The call answered: its signal aborts (code still watching it lets go); the client's going away is no longer heard. */
  done(): void {
    this.exchange.offClose(this.gone);
    this.call.done();
  }

  /** The call failed with `reason`: the error to answer (the deadline's or the cancellation's if one came first). */
  fail(reason: unknown): ConnectError {
    this.exchange.offClose(this.gone);
    return this.call.fail(reason);
  }
}

/** The handler's context of a Connect call served from its exchange (unary here, server-streaming in connect-stream.ts). */
export function connectHandlerContext(method: DescMethod, call: UnaryServerCall, values: ContextValues, contentType: string): HandlerContext {
  const deadline = call.deadline;
  return {
    service: method.parent,
    method,
    protocolName: "connect",
    requestMethod: "POST",
    url: call.url,
    signal: call.signal,
    timeoutMs: deadline === undefined ? () => undefined : () => deadline - Date.now(),
    requestHeader: call.header,
    // LightHeaders (light-headers.ts): the handler and the interceptors set and read a few; node's would check and sort each.
    responseHeader: responseHeaders(contentType),
    responseTrailer: new LightHeaders(),
    values,
  };
}

async function serve(options: ConnectUnaryOptions, spec: UnarySpec, invoke: UnaryInvoker, exchange: RpcExchange, format: Format): Promise<void> {
  const call = new UnaryServerCall(exchange, "connect");
  const header = call.header;
  const values = options.contextValues?.(exchange) ?? callValues();
  const context = connectHandlerContext(spec.method, call, values, format === "binary" ? "application/proto" : "application/json");
  // As connect-es: a client that names no encoding it accepts gets the answer in its request's own;
  // an encoding the server does not take is refused by decompressMessage (requestMessage).
  const compression = compressionNegotiate(acceptedCompressions, header.get("content-encoding"), header.get("accept-encoding"), "accept-encoding");
  let status = 200;
  let body: Uint8Array;
  try {
    const message = await requestMessage(spec, exchange, header, options.readMaxBytes, values, format);
    if (call.timeoutError) throw call.timeoutError;
    const output = (await invoke(context, message)).message;
    body = format === "binary" ? toBinary(spec.method.output, output) : jsonAnswer(spec.method.output, output);
    call.done();
  } catch (e) {
    // Past the deadline (or the client's cancel), the answer is the deadline's, whatever the handler threw.
    const error = call.fail(e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e));
    status = codeToHttpStatus(error.code);
    context.responseHeader.set("content-type", "application/json");
    if (!error.isWireError) mergeNonProtocolHeaders(context.responseHeader, error.metadata);
    body = errorToJsonBytes(error, {});
  }
  if (exchange.closed) return;
  if (compression.response && body.byteLength >= COMPRESS_MIN_BYTES) {
    body = await compression.response.compress(body);
    context.responseHeader.set("content-encoding", compression.response.name);
  }
  const out = trailerMuxed(context.responseHeader, context.responseTrailer);
  out["content-length"] = String(body.byteLength);
  exchange.respond(status, out, body);
}

/** A response's headers with only its content type (set as fetch sets it: the constant needs no check). */
function responseHeaders(contentType: string): LightHeaders {
  const header = new LightHeaders();
  header.set("content-type", contentType);
  return header;
}

/**
 * The headers of a unary Connect answer as connect-es's trailerMux makes them (each trailer as
 * "trailer-<name>", appended to a header of that name if there is one), written straight into
 * the record the exchange takes: no Headers copied for it.
 */
export function trailerMuxed(header: Headers, trailer: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  header.forEach((value, key) => (out[key] = value));
  trailer.forEach((value, key) => {
    const name = `trailer-${key}`;
    const had = out[name];
    out[name] = had === undefined ? value : `${had}, ${value}`;
  });
  return out;
}

/**
 * The request message, or an empty one with the refusal noted for
 * inputInterceptor, as guardRequestBody does: a body over the read limit,
 * one that does not decompress, or does not parse (JSON: INVALID_ARGUMENT
 * with connect-es's words).
 */
async function requestMessage(spec: UnarySpec, exchange: RpcExchange, header: Headers, readMaxBytes: number, values: ContextValues, format: Format): Promise<Message> {
  const input = spec.method.input;
  const body = await readRpcBody(exchange, readMaxBytes, readMaxBytes, values);
  if (!body) return create(input);
  try {
    const bytes = decompressMessage(header.get("content-encoding"), body, readMaxBytes);
    return format === "binary" ? fromBinary(input, bytes) : jsonRequest(input, bytes);
  } catch (err) {
    const refused = err instanceof ConnectError ? err : unparsableBody(input, err);
    values.set(refusedBodyKey, { code: refused.code, message: refused.rawMessage, metadata: refused.metadata });
    return create(input);
  }
}

/** connect-es's JSON options for a server's messages (getJsonOptions): fields a newer client sends are ignored; answers written with the defaults. */
const JSON_OPTIONS = { ignoreUnknownFields: true };
const utf8Decoder = new TextDecoder();
const utf8Encoder = new TextEncoder();

/** A JSON request message as connect-es parses it; what does not parse is INVALID_ARGUMENT. */
export function jsonRequest<I extends DescMessage>(input: I, bytes: Uint8Array): Message {
  try {
    return fromJsonString(input, utf8Decoder.decode(bytes), JSON_OPTIONS);
  } catch (err) {
    throw ConnectError.from(err, Code.InvalidArgument);
  }
}

/** An answer in JSON as connect-es writes it; one that cannot be written is INTERNAL. */
export function jsonAnswer<O extends DescMessage>(output: O, message: Message): Uint8Array {
  try {
    return utf8Encoder.encode(toJsonString(output, message as never));
  } catch (err) {
    throw ConnectError.from(err, Code.Internal);
  }
}

/**
 * A request's headers as connect-es hands them to handlers (HTTP/2's pseudo-headers left out), in
 * LightHeaders: the same answers as node's Headers for every name, cheaper to make and read.
 */
export function requestHeaders(raw: string[]): Headers {
  return LightHeaders.fromRaw(raw);
}
