// A server's Connect unary calls in binary (what our own processes send each
// other: the peers' calls, the gateway's forwarded ones) answered straight
// from the HTTP request: the body read and parsed once, the handler run behind
// the server's interceptors as for a call in this process (local-server.ts),
// the answer written as connect-es writes it. connect-node's universal
// handler builds request and response streams, two linked AbortControllers
// and a DOMException per call around the same steps; every other protocol,
// JSON, GET and streams still go through it.
import { create, fromBinary, toBinary, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ContextValues, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { compressionNegotiate, invokeUnaryImplementation, mergeNonProtocolHeaders } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes, parseTimeout as parseConnectTimeout, trailerMux } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import { acceptedCompressions, decompressMessage, readRpcBody, refusedBodyKey, unparsableBody } from "./input.js";
import { LocalCall, type DirectSpec } from "./local-server.js";
import type { RpcExchange } from "./rpc-exchange.js";

/** connect-es compresses an answer from this size on (its compressMinBytes default). */
const COMPRESS_MIN_BYTES = 1024;

export interface ConnectUnaryOptions {
  /** The unary methods served directly, by request path ("/pkg.Service/Method"). */
  methods: Map<string, DirectSpec>;
  /** The server's interceptors, outermost first. */
  interceptors: Interceptor[];
  readMaxBytes: number;
  contextValues?: (req: RpcExchange) => ContextValues;
}

/**
 * Answers a POST of a unary method in application/proto (returns true), or
 * leaves the request to connect-node (returns false). `path` is the URL's
 * path. What the server promises holds as on the other path: the read limit
 * on the message, a body that does not parse or decompress refused with the
 * code the guard gives (inputInterceptor answers it, inside the
 * interceptors), the deadline and the client going away on the handler's
 * signal, headers and trailers back (trailer-*), errors as Connect's JSON
 * with their metadata, answers from 1 KiB compressed as the client accepts.
 */
export function connectUnaryHandler(options: ConnectUnaryOptions): (exchange: RpcExchange, path: string) => boolean {
  return (exchange, path) => {
    // The whole content type, as connect-es matches it: "application/proto; charset=utf-8" is its 415.
    if (exchange.method !== "POST" || exchange.headers["content-type"]?.toLowerCase() !== "application/proto") return false;
    const spec = options.methods.get(path);
    if (spec?.kind !== "unary") return false;
    serve(options, spec, exchange).catch(() => {
      // Only writing can fail here: the client is gone.
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

  constructor(
    private readonly exchange: RpcExchange,
    timeoutHeader: "connect" | "grpc",
  ) {
    this.header = requestHeaders(exchange.rawHeaders);
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

async function serve(options: ConnectUnaryOptions, spec: UnarySpec, exchange: RpcExchange): Promise<void> {
  const call = new UnaryServerCall(exchange, "connect");
  const header = call.header;
  const values = options.contextValues?.(exchange) ?? createContextValues();
  const deadline = call.deadline;
  const context: HandlerContext = {
    service: spec.method.parent,
    method: spec.method,
    protocolName: "connect",
    requestMethod: "POST",
    url: call.url,
    signal: call.signal,
    timeoutMs: deadline === undefined ? () => undefined : () => deadline - Date.now(),
    requestHeader: header,
    responseHeader: new Headers({ "content-type": "application/proto" }),
    responseTrailer: new Headers(),
    values,
  };
  // As connect-es: a client that names no encoding it accepts gets the answer in its request's own;
  // an encoding the server does not take is refused by decompressMessage (requestMessage).
  const compression = compressionNegotiate(acceptedCompressions, header.get("content-encoding"), header.get("accept-encoding"), "accept-encoding");
  let status = 200;
  let body: Uint8Array;
  try {
    const message = await requestMessage(spec, exchange, header, options.readMaxBytes, values);
    if (call.timeoutError) throw call.timeoutError;
    const output = await invokeUnaryImplementation(spec, context, message, options.interceptors);
    body = toBinary(spec.method.output, output);
    call.done();
  } catch (e) {
    const error = e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e);
    call.fail(error);
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
  const out: Record<string, string> = {};
  trailerMux(context.responseHeader, context.responseTrailer).forEach((value, key) => (out[key] = value));
  out["content-length"] = String(body.byteLength);
  exchange.respond(status, out, body);
}

/**
 * The request message, or an empty one with the refusal noted for
 * inputInterceptor, as guardRequestBody does: a body over the read limit,
 * one that does not decompress, or does not parse.
 */
async function requestMessage(spec: UnarySpec, exchange: RpcExchange, header: Headers, readMaxBytes: number, values: ContextValues): Promise<Message> {
  const input = spec.method.input;
  const body = await readRpcBody(exchange, readMaxBytes, readMaxBytes, values);
  if (!body) return create(input);
  try {
    return fromBinary(input, decompressMessage(header.get("content-encoding"), body, readMaxBytes));
  } catch (err) {
    const refused = err instanceof ConnectError ? err : unparsableBody(input, err);
    values.set(refusedBodyKey, { code: refused.code, message: refused.rawMessage, metadata: refused.metadata });
    return create(input);
  }
}

/** A request's headers as connect-es hands them to handlers (HTTP/2's pseudo-headers left out). */
export function requestHeaders(raw: string[]): Headers {
  const header = new Headers();
  for (let i = 0; i < raw.length; i += 2) if (raw[i][0] !== ":") header.append(raw[i], raw[i + 1]);
  return header;
}
