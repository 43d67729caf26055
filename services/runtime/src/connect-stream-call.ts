// One Connect server-streaming call (binary) to another of our processes, as
// connect-es's client makes it, without its pipeline: the gateway's WatchTip
// to payment goes this way (peers.ts internalTransport). connect-node's stream
// client cost the caller ~290 us of CPU per stream (bench/rpc-clients.ts, "a
// stream"), three times a unary call on the same connection: a dozen async
// iterables and transforms per call around the same steps. Here: the request's
// envelopes in one write, the answer's envelopes split as they come (the
// stream's own flow control: nothing is read ahead of the caller), the end of
// the stream's trailers or error, and a reset or lost connection mapped as a
// unary call's (http2-exchange.ts). In frames where the connection has them
// (frames.ts: a server of ours), else on an HTTP/2 stream. No compression is
// asked for (the hops are on the cluster's network); an answer compressed
// anyway is inflated.
import type http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromHttpStatus, createEndStreamSerialization, endStreamFlag, parseContentType } from "@connectrpc/connect/protocol-connect";
import { ANSWER_MAX_BYTES, BY_HTTP2, FRAME_REFUSED, FrameReset } from "./frames.js";
import { H2, requestStream, resetError, streamBroken, type Http2Upstream } from "./http2-exchange.js";
import { COMPRESSED_FLAG, decompressMessage } from "./input.js";

/** A call the server refused unprocessed is sent at most this often in all (as a unary call). */
const MAX_SENDS = 3;
/**
 * A message is read whole up to this, as a unary call's answer in frames (frames.ts): a larger
 * one fails RESOURCE_EXHAUSTED before it is read, not after up to 4 GiB were held.
 */
export const MESSAGE_MAX_BYTES = ANSWER_MAX_BYTES;
/** Flags (1) and length (4) in front of each message. */
const ENVELOPE_HEAD_BYTES = 5;

const endStream = createEndStreamSerialization({});

export interface ConnectStreamCall {
  session: Http2Upstream;
  /** The service's type name and the method's name. */
  service: string;
  method: string;
  /** Request metadata (already signed where it must be). */
  header: Headers;
  /** The request's envelopes, binary, uncompressed. */
  body: Uint8Array;
  /** The call's end: its deadline, the caller's cancellation. The stream is cancelled when it aborts. */
  signal: AbortSignal;
  /** The caller's deadline, ms since the epoch. */
  deadline: number | undefined;
}

export interface ConnectStreamAnswer {
  header: Headers;
  /** Filled from the end of the stream once the messages are read. */
  trailer: Headers;
  /** Each message's bytes, uncompressed; ends after the end of the stream, throws its error. */
  messages: AsyncIterable<Uint8Array>;
}

/** An answer's head, and its body as it comes: on an HTTP/2 stream or in frames. */
interface Opened {
  status: number;
  header: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Buffer>;
  /** Why the body failed (`err`) or ended before the end of the stream (none): its reset code, or the connection lost. */
  broken(err: unknown): Promise<ConnectError>;
  /** The reader stopped: the call is cancelled (the server's handler hears it) unless it is over. */
  cancel(): void;
}
const REFUSED = Symbol("refused unprocessed");

/**
 * Opens the call and waits for the answer's head: an answer other than a
 * Connect stream fails as connect-es's client fails it (the HTTP status's
 * code, or the content type's). A stream refused unprocessed is sent again.
 */
export async function connectStreamCall(call: ConnectStreamCall): Promise<ConnectStreamAnswer> {
  const headers: http2.OutgoingHttpHeaders = { "content-type": "application/connect+proto", "connect-protocol-version": "1" };
  call.header.forEach((value, key) => (headers[key] = value));
  const path = `/${call.service}/${call.method}`;
  let opened: Opened | typeof REFUSED = REFUSED;
  for (let send = 1; send <= MAX_SENDS && opened === REFUSED; send++) {
    if (call.deadline !== undefined) headers["connect-timeout-ms"] = String(Math.max(1, Math.floor(call.deadline - Date.now())));
    opened = await open(call.session, path, headers, call.body, call.signal);
  }
  if (opened === REFUSED) throw new ConnectError(`the ${call.service} service refused the call (NGHTTP2_REFUSED_STREAM)`, Code.Unavailable);
  const { status } = opened;
  const header = new Headers();
  for (const key in opened.header) {
    const value = opened.header[key];
    if (key[0] !== ":" && value !== undefined) header.set(key, Array.isArray(value) ? value.join(", ") : String(value));
  }
  try {
    if (status !== 200) throw new ConnectError(`HTTP ${status}`, codeFromHttpStatus(status), header);
    const contentType = header.get("content-type");
    const type = parseContentType(contentType);
    if (type?.binary !== true || !type.stream) throw new ConnectError(`unsupported content type ${contentType}`, type === undefined ? Code.Unknown : Code.Internal, header);
  } catch (err) {
    opened.cancel();
    throw err;
  }
  const trailer = new Headers();
  return { header, trailer, messages: messagesOf(opened, header, trailer) };
}

/** One send: in frames where the connection has them and the server takes it so, else on HTTP/2. */
async function open(session: Http2Upstream, path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array, signal: AbortSignal): Promise<Opened | typeof REFUSED> {
  if (session.framesStream) {
    const outcome = await session.framesStream(path, headers, body, signal).catch((err: unknown) => {
      throw err instanceof FrameReset ? resetError(err.rstCode, false) : err;
    });
    if (outcome === FRAME_REFUSED) return REFUSED;
    if (outcome !== BY_HTTP2) {
      const framed = outcome.body;
      return {
        status: outcome.status,
        header: outcome.header,
        body: framed,
        // A RESET's code as an HTTP/2 reset's; an END without the end of the stream as RST_STREAM NO_ERROR.
        broken: (err) => Promise.resolve(err instanceof FrameReset ? resetError(err.rstCode, true) : err instanceof ConnectError ? err : resetError(H2.NO_ERROR, true)),
        cancel: () => framed.cancel(),
      };
    }
  }
  return openHttp2(session, path, headers, body, signal);
}

/** The request sent on an HTTP/2 stream and the answer's head read; REFUSED when the server did not process it. */
function openHttp2(session: Http2Upstream, path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array, signal: AbortSignal): Promise<Opened | typeof REFUSED> {
  return requestStream<Opened | typeof REFUSED>(session, path, headers, body, signal, (s, settle, resolve, reject) => {
    const connection = s.session;
    const broken = (err?: Error) =>
      settle(() => {
        const why = streamBroken(s, connection, false, err);
        if (why === FRAME_REFUSED) resolve(REFUSED);
        else reject(why);
      });
    const onClose = () => broken();
    s.once("response", (h) =>
      settle(() => {
        s.off("error", broken).off("close", onClose);
        s.on("error", () => undefined); // the reader hears it (and its reset code); never unhandled before it reads
        // From here the reader owns the stream: a cancellation closes it, and the read fails.
        signal.addEventListener("abort", () => s.close(H2.CANCEL), { once: true });
        resolve({ status: Number(h[":status"]), header: h, body: s, broken: (err) => cutShort(s, connection, err), cancel: () => void (s.closed || s.close(H2.CANCEL)) });
      }),
    );
    s.once("error", broken);
    s.once("close", onClose);
  });
}

/**
 * Why an HTTP/2 stream's body failed or ended before the end of the stream, once
 * the stream closed (its reset code is known only then): the reset's code, the
 * connection lost (UNAVAILABLE), or a stream closed without either (INTERNAL: the
 * server broke off its answer), never the caller's mistake.
 */
async function cutShort(s: http2.ClientHttp2Stream, connection: http2.Http2Session | undefined, err: unknown): Promise<ConnectError> {
  if (err instanceof ConnectError) return err;
  if (!s.closed && !s.destroyed) await new Promise((resolve) => s.once("close", resolve));
  const why = streamBroken(s, connection, true, err as Error | undefined);
  return why === FRAME_REFUSED ? resetError(H2.REFUSED_STREAM, true) : why;
}

/**
 * The answer's messages as they come: each envelope whole, then the end of
 * the stream (its trailers into `trailer`, or its error thrown with the
 * answer's headers in its metadata), as connect-es's client reads them. A
 * caller that stops reading cancels the stream (the handler hears it).
 */
async function* messagesOf(opened: Opened, header: Headers, trailer: Headers): AsyncGenerator<Uint8Array> {
  const encoding = header.get("connect-content-encoding");
  let pending: Buffer = Buffer.alloc(0);
  let ended = false;
  try {
    try {
      for await (const chunk of opened.body) {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        while (pending.length >= ENVELOPE_HEAD_BYTES) {
          const length = pending.readUInt32BE(1);
          if (length > MESSAGE_MAX_BYTES) throw new ConnectError(`message size ${length} is larger than the ${MESSAGE_MAX_BYTES} bytes read`, Code.ResourceExhausted);
          if (pending.length < ENVELOPE_HEAD_BYTES + length) break;
          const flags = pending[0];
          let data: Uint8Array = pending.subarray(ENVELOPE_HEAD_BYTES, ENVELOPE_HEAD_BYTES + length);
          pending = pending.subarray(ENVELOPE_HEAD_BYTES + length);
          if (flags & COMPRESSED_FLAG) data = inflated(encoding, data);
          if (ended) throw new ConnectError(`protocol error: received extra ${flags & endStreamFlag ? "EndStreamResponse" : "message after EndStreamResponse"}`, Code.InvalidArgument);
          if (!(flags & endStreamFlag)) {
            yield data;
            continue;
          }
          ended = true;
          const end = endStream.parse(data);
          if (end.error) {
            header.forEach((value, key) => end.error!.metadata.append(key, value));
            throw end.error;
          }
          end.metadata.forEach((value, key) => trailer.set(key, value));
        }
      }
    } catch (err) {
      if (err instanceof ConnectError) throw err;
      throw await opened.broken(err);
    }
    // Ended before the end of the stream, or inside a message: cut short (its reset, the connection lost).
    if (!ended || pending.length > 0) throw await opened.broken(undefined);
  } finally {
    // Read to its end, failed, or left by the caller: a call still open is cancelled.
    opened.cancel();
  }
}

/** A compressed message: only in the encoding the answer names (none asked for, but one may come). */
function inflated(encoding: string | null, data: Uint8Array): Uint8Array {
  if (encoding === null || encoding === "identity") throw new ConnectError("protocol error: received compressed output without encoding", Code.Internal);
  return decompressMessage(encoding, data, MESSAGE_MAX_BYTES, "connect-accept-encoding");
}
