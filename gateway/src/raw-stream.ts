// Server streams in Connect's binary protocol (a customer's WatchTip)
// forwarded as bytes, as raw-forward.ts forwards unary calls: the request's
// message goes on as the client sent it (inflated here, up to the read
// limit) and each message of the answer goes back as the service encoded it,
// never decoded and encoded again here. Every check still runs: the same
// interceptors as the decoding path run around the forwarding, on a
// placeholder message, and the answer is held to what connect-stream.ts
// holds a stream to: the client's deadline (also while its window is
// full), the client going away (the service's stream is cancelled), a
// message's size (connect-stream-call.ts reads one whole up to its limit),
// compression as the client accepts, the service's trailers and errors
// relayed as the decoding path relays them (application metadata only).
// JSON streams, gRPC and gRPC-web streams keep the decoding path (forward.ts).
import type { DescMethod, Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type ContextValues, type StreamRequest, type StreamResponse } from "@connectrpc/connect";
import { compressionNegotiate } from "@connectrpc/connect/protocol";
import { createEndStreamSerialization, endStreamFlag } from "@connectrpc/connect/protocol-connect";
import {
  acceptedCompressions,
  COMPRESSED_FLAG,
  connectStreamCall,
  envelopedMessages,
  envelopeOf,
  LightHeaders,
  messagesOf,
  readRpcBody,
  refusedBodyKey,
  requestBodyLimit,
  streamEnvelope,
  takenInTime,
  UnaryServerCall,
  unparsableBody,
  type Http2Upstream,
  type PartsExchange,
} from "@ttip/runtime";
import { isMetadata, relayedError } from "./forward.js";

export type StreamNext = (req: StreamRequest) => Promise<StreamResponse>;

/** One server-streaming RPC forwarded as bytes to a service over HTTP/2 or frames. */
export interface RawStreamRoute {
  method: DescMethod & { methodKind: "server_streaming" };
  session: Http2Upstream;
  /** The stand-in for the request message the interceptors are handed (none of them reads one). */
  input: Message;
}

/** The one content type forwarded as bytes: a Connect stream in binary, exactly (connect-es's own match). */
export const CONNECT_STREAM_BINARY = "application/connect+proto";

const endStream = createEndStreamSerialization({});

/** Per call: the body for the service, and its deadline. */
interface RawStreamCall {
  route: RawStreamRoute;
  /** The request's envelopes, uncompressed. */
  body: Uint8Array;
  deadline: number | undefined;
}

const rawStreamKey = createContextKey<RawStreamCall | undefined>(undefined, { description: "stream forwarded as bytes" });

/**
 * The last of the chain: the stream opened on the service (connect-stream-call.ts),
 * its application metadata kept, each message's bytes as they come, its errors
 * relayed as this gateway's own (forward.ts's relayedError).
 */
export async function openOnBackend(req: StreamRequest): Promise<StreamResponse> {
  const call = req.contextValues.get(rawStreamKey);
  if (!call) throw new ConnectError("no request body for the backend", Code.Internal);
  let answer;
  try {
    answer = await connectStreamCall({
      session: call.route.session,
      service: req.service.typeName,
      method: req.method.name,
      header: req.header,
      body: call.body,
      signal: req.signal,
      deadline: call.deadline,
    });
  } catch (err) {
    throw relayedError(err);
  }
  const header = new LightHeaders();
  answer.header.forEach((value, key) => isMetadata(key) && header.set(key, value));
  const trailer = new LightHeaders();
  return { stream: true, service: req.service, method: req.method, header, trailer, message: relayed(answer.messages, answer.trailer, trailer) as AsyncIterable<never> };
}

/** The service's messages, its errors as this gateway's; its trailers' metadata into `trailer` at the end. */
async function* relayed(messages: AsyncIterable<Uint8Array>, from: Headers, trailer: Headers): AsyncGenerator<Uint8Array> {
  try {
    yield* messages;
  } catch (err) {
    throw relayedError(err);
  }
  from.forEach((value, key) => isMetadata(key) && trailer.set(key, value));
}

/**
 * Serves one Connect binary stream: the checks and the call to the service
 * (`chain`), then each message written as it comes under the client's
 * deadline, then the end of the stream, as connect-stream.ts answers one.
 */
export async function serveRawStream(chain: StreamNext, route: RawStreamRoute, exchange: PartsExchange, values: ContextValues, readMaxBytes: number): Promise<void> {
  const header: Headers = LightHeaders.fromRaw(exchange.rawHeaders);
  const call = new UnaryServerCall(exchange, "connect", header);
  const compression = compressionNegotiate(acceptedCompressions, header.get("connect-content-encoding"), header.get("connect-accept-encoding"), "connect-accept-encoding");
  const head: Record<string, string> = { "content-type": CONNECT_STREAM_BINARY };
  if (compression.response) head["connect-content-encoding"] = compression.response.name;
  let headSent = false;
  const writeHead = (res: StreamResponse | undefined) => {
    if (headSent) return;
    headSent = true;
    res?.header.forEach((value, key) => (head[key] = value));
    exchange.writeHead(200, head);
  };
  let res: StreamResponse | undefined;
  let error: ConnectError | undefined;
  try {
    if (compression.error) throw compression.error;
    if (call.timeoutError) throw call.timeoutError;
    const body = await readRpcBody(exchange, requestBodyLimit(readMaxBytes, true), readMaxBytes, values);
    values.set(rawStreamKey, { route, body: (body && requestEnvelopes(body, header.get("connect-content-encoding"), readMaxBytes, values, route)) ?? EMPTY, deadline: call.deadline });
    res = await chain({
      stream: true,
      service: route.method.parent,
      method: route.method,
      requestMethod: "POST",
      url: call.url,
      signal: call.signal,
      header,
      contextValues: values,
      message: messagesOf([route.input]),
    });
    const messages = (res.message as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    for (let r = await messages.next(); !r.done; r = await messages.next()) {
      // The client is gone: the service's stream is cancelled.
      if (exchange.closed) return void (await messages.return?.());
      const data = r.value;
      // No promise per message unless the client takes compression (streamEnvelope compresses from 1 KiB).
      const bytes = compression.response ? await streamEnvelope(0, data, compression.response) : envelopeOf(data);
      writeHead(res);
      // Undefined in the usual case, the client's window open: no promise, listener nor race per message.
      const taken = exchange.write(bytes);
      // Past its deadline (the client's window full): its end cannot follow the part unsent.
      if (call.signal.aborted || (taken && !(await takenInTime(taken, call.signal)))) {
        await messages.return?.();
        call.fail(call.signal.reason);
        if (!exchange.closed) exchange.reset();
        return;
      }
    }
    call.done();
  } catch (e) {
    // Past the deadline (or the client's cancel), the answer is the deadline's, whatever the service said.
    error = call.fail(e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e));
  }
  if (exchange.closed) return;
  const last = await streamEnvelope(endStreamFlag, endStream.serialize({ metadata: res?.trailer ?? new LightHeaders(), error }), compression.response);
  if (exchange.closed) return;
  writeHead(res);
  exchange.end(last);
}

const EMPTY = new Uint8Array(0);

/**
 * The request's envelopes for the service: as sent when none is compressed,
 * else each message inflated here (up to `max`, as the service would read
 * it) and enveloped again uncompressed. A body that does not split or
 * inflate is noted for inputInterceptor with the code the service would
 * answer; none or more than one message is left to the service's refusal.
 */
function requestEnvelopes(body: Uint8Array, encoding: string | null, max: number, values: ContextValues, route: RawStreamRoute): Uint8Array | undefined {
  try {
    const messages = envelopedMessages(body, encoding, max, "connect-accept-encoding");
    if (!compressedAny(body)) return body;
    return Buffer.concat(messages.map((m) => envelopeOf(m)));
  } catch (err) {
    const refused = err instanceof ConnectError ? err : unparsableBody(route.method.input, err);
    values.set(refusedBodyKey, { code: refused.code, message: refused.rawMessage, metadata: refused.metadata });
    return undefined;
  }
}

/** Whether any envelope of a body that split whole is flagged compressed. */
function compressedAny(body: Uint8Array): boolean {
  for (let at = 0; at + 5 <= body.byteLength; at += 5 + Buffer.from(body.buffer, body.byteOffset + at + 1, 4).readUInt32BE(0)) {
    if (body[at] & COMPRESSED_FLAG) return true;
  }
  return false;
}
