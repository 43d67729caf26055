// Unary calls in binary protobuf (Connect binary, gRPC, gRPC-web) forwarded as
// bytes: the gateway needs nothing from the message, so it neither decodes the
// request nor encodes it again, and the answer's bytes go back as they came.
// Every check still runs: the same interceptors as the decoding path (tracing,
// metrics, request id, access log, errors, the body's size, token, partner
// signature and usage, rate limit, policy) run around the forwarding, on a
// placeholder message. The backend is called with the Connect protocol (its
// cheapest), so only the framing differs between the legs: a gRPC envelope is
// five bytes in front of the same message bytes. A compressed request is
// inflated here, up to the read limit (runtime's decompressMessage, as the
// services do), and goes on uncompressed: a body that inflates past the limit
// stops at the edge. Connect binary server streams go as bytes too
// (raw-stream.ts); JSON, Connect GET and the other streams keep the decoding
// path (forward.ts).
import { create, type DescMethod, type DescService, type Message } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  type ContextValues,
  type Interceptor,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import {
  checkRequestEncoding,
  COMPRESSED_FLAG,
  connectUnaryCall,
  decompressMessage,
  envelopedMessage,
  envelopeOf,
  intercepted,
  answersInParts,
  LightHeaders,
  readRpcBody,
  refusedBodyKey,
  type Http2Upstream,
  requestBodyLimit,
  UnaryServerCall,
  type Logger,
  type RequestValues,
  type RpcExchange,
} from "@ttip/runtime";
import { isMetadata, outgoingHeaders, relayedError } from "./forward.js";
import { CONNECT_STREAM_BINARY, openOnBackend, serveRawStream, type RawStreamRoute, type StreamNext } from "./raw-stream.js";

type UnaryNext = (req: UnaryRequest) => Promise<UnaryResponse>;

/** The client's protocol, by its request's content type; undefined: not forwarded as bytes. */
type Protocol = "connect" | "grpc" | "grpc-web";

const PROTOCOLS: Record<string, Protocol> = {
  "application/proto": "connect",
  "application/grpc": "grpc",
  "application/grpc+proto": "grpc",
  "application/grpc-web": "grpc-web",
  "application/grpc-web+proto": "grpc-web",
};

/** What each protocol answers with (connect-es answers the same). */
const RESPONSE_TYPE: Record<Protocol, string> = {
  connect: "application/proto",
  grpc: "application/grpc+proto",
  "grpc-web": "application/grpc-web+proto",
};

/** One unary RPC forwarded as bytes to a service over HTTP/2. */
export interface RawRoute {
  method: DescMethod & { methodKind: "unary" };
  session: Http2Upstream;
  /** Stand-ins for the messages the interceptors are handed (none of them reads one). */
  input: Message;
  output: Message;
}

/** The unary and server-streaming RPCs of `service` served at `session`, by request path. */
export function rawRoutes(service: DescService, session: Http2Upstream): Array<[string, RawRoute | RawStreamRoute]> {
  return service.methods.flatMap((method): Array<[string, RawRoute | RawStreamRoute]> => {
    const path = `/${service.typeName}/${method.name}`;
    if (method.methodKind === "unary") return [[path, { method: method as RawRoute["method"], session, input: create(method.input), output: create(method.output) }]];
    if (method.methodKind === "server_streaming") return [[path, { method: method as RawStreamRoute["method"], session, input: create(method.input) }]];
    return [];
  });
}

export interface RawForwardingOptions {
  routes: Map<string, RawRoute | RawStreamRoute>;
  /** The server's interceptors then the gateway's, outermost first: the checks every call passes. */
  interceptors: Interceptor[];
  /** Around the call to the backend (client tracing). */
  clientInterceptors: Interceptor[];
  contextValues: RequestValues;
  readMaxBytes: number;
  logger: Logger;
}

/**
 * An RPC filter for startServer (its rpcFilter): takes the POSTs of a
 * forwarded unary RPC in a binary content type (returns true and answers
 * them), leaves the rest to the RPC router (returns false).
 */
export function rawForwarding(options: RawForwardingOptions): (exchange: RpcExchange) => boolean {
  const send = intercepted<UnaryNext>(sendToBackend, options.clientInterceptors);
  // Every check, then the call to the backend with the headers the checks decided.
  const chain = intercepted<UnaryNext>((r) => send({ ...r, header: outgoingHeaders(r.header, r.contextValues) }), options.interceptors);
  const open = intercepted<StreamNext>(openOnBackend, options.clientInterceptors);
  const streamChain = intercepted<StreamNext>((r) => open({ ...r, header: outgoingHeaders(r.header, r.contextValues) }), options.interceptors);
  return (exchange) => {
    if (exchange.method !== "POST") return false;
    const url = exchange.url;
    const q = url.indexOf("?");
    const route = options.routes.get(q < 0 ? url : url.slice(0, q));
    if (!route) return false;
    if (route.method.methodKind === "server_streaming") return stream(options, streamChain, route as RawStreamRoute, exchange);
    // The whole content type, as connect-es matches it: a binary one with parameters is refused there (415).
    const protocol = PROTOCOLS[(exchange.headers["content-type"] ?? "").toLowerCase()];
    if (!protocol) return false;
    serve(options, chain, route as RawRoute, protocol, exchange).catch((err: unknown) => {
      // A client that went away while its body was read is no failure of ours.
      if (exchange.closed) return;
      options.logger.error({ err, rpc: url }, "forwarding failed outside the call");
      exchange.respond(500, {}, EMPTY);
    });
    return true;
  };
}

/** A Connect binary stream on an exchange that answers in parts: served as bytes (raw-stream.ts); anything else left to the router. */
function stream(options: RawForwardingOptions, chain: StreamNext, route: RawStreamRoute, exchange: RpcExchange): boolean {
  if ((exchange.headers["content-type"] ?? "").toLowerCase() !== CONNECT_STREAM_BINARY || !answersInParts(exchange)) return false;
  serveRawStream(chain, route, exchange, options.contextValues(exchange), options.readMaxBytes).catch((err: unknown) => {
    if (exchange.closed) return;
    options.logger.error({ err, rpc: exchange.url }, "forwarding failed outside the call");
    exchange.reset();
  });
  return true;
}

/** What the backend answered, kept beside the placeholder message the interceptors see. */
interface Answer {
  body: Uint8Array;
  /** The body's content-encoding ("" when none). */
  encoding: string;
}

/** Per call: the body to send, and where the backend's answer is left for the writer. */
interface RawCall {
  route: RawRoute;
  /** The request message, decompressed. */
  body: Uint8Array;
  /** Encodings the client accepts back. */
  accept: string | undefined;
  /** The client's deadline, ms since the epoch. */
  deadline: number | undefined;
  answer?: Answer;
}

const rawCallKey = createContextKey<RawCall | undefined>(undefined, { description: "call forwarded as bytes" });

async function serve(options: RawForwardingOptions, chain: UnaryNext, route: RawRoute, protocol: Protocol, exchange: RpcExchange): Promise<void> {
  // What the checks read, set and delete, cheaply (the runtime's light-headers.ts); the call reads its deadline from them first.
  const header: Headers = LightHeaders.fromRaw(exchange.rawHeaders);
  const call = new UnaryServerCall(exchange, protocol === "connect" ? "connect" : "grpc", header);
  const values = options.contextValues(exchange);
  let result: UnaryResponse | ConnectError;
  let forwarded: RawCall;
  let body;
  try {
    body = await readRpcBody(exchange, requestBodyLimit(options.readMaxBytes, protocol !== "connect"), options.readMaxBytes, values);
  } catch (err) {
    // The body could not be read (the client went away): nothing to answer.
    call.fail(err);
    throw err;
  }
  try {
    const message = body && requestMessage(protocol, body, header, options.readMaxBytes, values);
    forwarded = {
      route,
      body: message ?? EMPTY,
      accept: (protocol === "connect" ? header.get("accept-encoding") : header.get("grpc-accept-encoding")) ?? undefined,
      deadline: call.deadline,
    };
    values.set(rawCallKey, forwarded);
    // A timeout header the client got wrong is answered in its protocol, as connect-es does.
    if (call.timeoutError) throw call.timeoutError;
    result = await chain({
      stream: false,
      service: route.method.parent,
      method: route.method,
      requestMethod: "POST",
      url: call.url,
      signal: call.signal,
      header,
      contextValues: values,
      message: route.input,
    });
    call.done();
  } catch (err) {
    // The error as the interceptors left it (with its request id), even when the deadline or the client's going away caused it.
    result = ConnectError.from(err);
    call.fail(result);
  }
  if (exchange.closed) return;
  if (result instanceof ConnectError) writeError(exchange, protocol, result);
  else writeAnswer(exchange, protocol, result, forwarded!.answer!);
}

const EMPTY = new Uint8Array(0);

/**
 * The one message of a unary request, decompressed here at the edge (at most
 * `max` bytes, as the service would read it), so a body that inflates past
 * the limit is refused before it leaves the gateway, and the service gets the
 * message uncompressed (it need not inflate it again). A malformed envelope,
 * an encoding the services do not take, or a refusal of decompressMessage is
 * noted for inputInterceptor, with the code the service would answer.
 */
function requestMessage(protocol: Protocol, body: Uint8Array, header: Headers, max: number, values: ContextValues): Uint8Array | undefined {
  try {
    if (protocol === "connect") return decompressMessage(header.get("content-encoding"), body, max);
    const encoding = header.get("grpc-encoding");
    // As connect-es: an encoding it does not take is refused even on an uncompressed message.
    checkRequestEncoding(encoding, "grpc-accept-encoding");
    const length = body.byteLength >= 5 ? Buffer.from(body.buffer, body.byteOffset + 1, 4).readUInt32BE(0) : -1;
    if (length !== body.byteLength - 5 || body[0] & ~COMPRESSED_FLAG) throw new ConnectError(`a unary ${protocol} request carries exactly one message envelope`, Code.InvalidArgument);
    return envelopedMessage(body[0], body.subarray(5), encoding, max, "grpc-accept-encoding");
  } catch (err) {
    if (!(err instanceof ConnectError)) throw err;
    values.set(refusedBodyKey, { code: err.code, message: err.rawMessage, metadata: err.metadata });
    return undefined;
  }
}

/**
 * The last of the chain: the call to the backend, the Connect protocol over
 * its HTTP/2 session (the runtime's connectUnaryCall, as a service's peers
 * call), asking for what the client accepts and keeping the answer as the
 * backend compressed it. Only application metadata goes back to the client.
 */
async function sendToBackend(req: UnaryRequest): Promise<UnaryResponse> {
  const call = req.contextValues.get(rawCallKey);
  if (!call) throw new ConnectError("no request body for the backend", Code.Internal);
  let answer;
  try {
    answer = await connectUnaryCall({
      session: call.route.session,
      service: req.service.typeName,
      method: req.method.name,
      header: req.header,
      body: call.body,
      signal: req.signal,
      deadline: call.deadline,
      acceptEncoding: call.accept ?? "",
      keepHeader: isMetadata,
    });
  } catch (err) {
    // The backend's error as this gateway's own, as the decoding path relays it.
    throw relayedError(err);
  }
  call.answer = { body: answer.body, encoding: answer.encoding ?? "" };
  return { stream: false, service: req.service, method: req.method, header: answer.header, trailer: answer.trailer, message: call.route.output };
}

function nodeHeaders(...all: Headers[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of all) h.forEach((value, key) => (out[key] = value));
  return out;
}

/** The backend's answer in the client's protocol: the same message bytes, framed as it expects. */
function writeAnswer(exchange: RpcExchange, protocol: Protocol, result: UnaryResponse, answer: Answer): void {
  const headers = nodeHeaders(result.header);
  headers["content-type"] = RESPONSE_TYPE[protocol];
  if (protocol === "connect") {
    if (answer.encoding) headers["content-encoding"] = answer.encoding;
    result.trailer.forEach((value, key) => (headers[`trailer-${key}`] = value));
    exchange.respond(200, headers, answer.body);
    return;
  }
  if (answer.encoding) headers["grpc-encoding"] = answer.encoding;
  const message = envelopeOf(answer.body, answer.encoding ? COMPRESSED_FLAG : 0);
  if (protocol === "grpc-web") {
    const trailer = setTrailerStatus(new Headers(result.trailer), undefined);
    exchange.respond(200, headers, Buffer.concat([message, envelopeOf(trailerSerialize(trailer), trailerFlag)]));
    return;
  }
  // The backend's metadata (application metadata only: no status of its own) and the status OK.
  const trailers = nodeHeaders(result.trailer);
  trailers["grpc-status"] = "0";
  exchange.respond(200, headers, message, trailers);
}

/** A refusal or the backend's error, in the client's protocol (as connect-es writes them). */
function writeError(exchange: RpcExchange, protocol: Protocol, err: ConnectError): void {
  if (protocol === "connect") {
    const headers = nodeHeaders(err.metadata);
    headers["content-type"] = "application/json";
    exchange.respond(codeToHttpStatus(err.code), headers, errorToJsonBytes(err, {}));
    return;
  }
  // The status and the error's metadata in the trailers (gRPC-web: the body's trailer frame), as connect-es answers.
  const status = setTrailerStatus(new Headers(), err);
  const headers = { "content-type": RESPONSE_TYPE[protocol] };
  if (protocol === "grpc-web") {
    exchange.respond(200, headers, envelopeOf(trailerSerialize(status), trailerFlag));
    return;
  }
  exchange.respond(200, headers, EMPTY, nodeHeaders(status));
}
