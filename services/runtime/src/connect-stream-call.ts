// One Connect server-streaming call (binary) over an HTTP/2 session, as
// connect-es's client makes it, without its pipeline: the gateway's WatchTip
// to payment goes this way (peers.ts internalTransport). connect-node's stream
// client cost the caller ~290 us of CPU per stream (bench/rpc-clients.ts, "a
// stream"), three times a unary call on the same connection: a dozen async
// iterables and transforms per call around the same steps. Here: the request's
// envelopes in one write, the answer's envelopes split as they come (the
// stream's own flow control: nothing is read ahead of the caller), the end of
// the stream's trailers or error, and a reset or lost connection mapped as a
// unary call's (http2-exchange.ts). No compression is asked for (the hops are
// on the cluster's network); an answer compressed anyway is inflated.
import type http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromHttpStatus, createEndStreamSerialization, endStreamFlag, parseContentType } from "@connectrpc/connect/protocol-connect";
import { connectionLost, H2, resetError, type Http2Upstream } from "./http2-exchange.js";
import { COMPRESSED_FLAG, decompressMessage } from "./input.js";

/** A call the server refused unprocessed is sent at most this often in all (as a unary call). */
const MAX_SENDS = 3;
/** A message is read whole up to the protocol's bound, as connect-es's clients read it. */
const MESSAGE_MAX_BYTES = 0xffffffff;
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

type Opened = { stream: http2.ClientHttp2Stream; connection: http2.Http2Session | undefined; status: number; header: http2.IncomingHttpHeaders };
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
  const { stream, status } = opened;
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
    stream.close(H2.CANCEL);
    throw err;
  }
  const trailer = new Headers();
  return { header, trailer, messages: messagesOf(opened, header, trailer) };
}

/** The request sent and the answer's head read; REFUSED when the server did not process it. */
function open(session: Http2Upstream, path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array, signal: AbortSignal): Promise<Opened | typeof REFUSED> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(ConnectError.from(signal.reason));
    let stream: http2.ClientHttp2Stream | undefined;
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
    };
    // Until the head: a cancellation closes the stream and fails the call; after it, the messages' reader hears it.
    const onAbort = () =>
      settle(() => {
        stream?.close(H2.CANCEL);
        reject(ConnectError.from(signal.reason));
      });
    signal.addEventListener("abort", onAbort, { once: true });
    session.request("POST", path, headers, {}).then(
      (s) => {
        stream = s;
        // Given up while the stream was being opened: it came anyway, and would stay open on the server.
        if (settled) return void s.close(H2.CANCEL);
        const connection = s.session;
        const broken = (err?: Error) =>
          settle(() => {
            signal.removeEventListener("abort", onAbort);
            if (s.rstCode === H2.REFUSED_STREAM) return resolve(REFUSED);
            if (connectionLost(connection, s.rstCode, err)) reject(new ConnectError(`the connection to the server was lost${err ? `: ${err.message}` : ""}`, Code.Unavailable, undefined, undefined, err));
            else reject(resetError(s.rstCode ?? H2.INTERNAL_ERROR, false));
          });
        s.once("response", (h) =>
          settle(() => {
            s.off("error", broken).off("close", onClose);
            s.on("error", () => undefined); // the reader hears it (and its reset code); never unhandled before it reads
            // From here the reader owns the stream: a cancellation closes it, and the read fails.
            signal.removeEventListener("abort", onAbort);
            signal.addEventListener("abort", () => s.close(H2.CANCEL), { once: true });
            resolve({ stream: s, connection, status: Number(h[":status"]), header: h });
          }),
        );
        const onClose = () => broken();
        s.once("error", broken);
        s.once("close", onClose);
        s.end(body);
      },
      (err: unknown) =>
        settle(() => {
          signal.removeEventListener("abort", onAbort);
          reject(new ConnectError(`cannot reach the server: ${(err as Error).message}`, Code.Unavailable, undefined, undefined, err));
        }),
    );
  });
}

/**
 * The answer's messages as they come: each envelope whole, then the end of
 * the stream (its trailers into `trailer`, or its error thrown with the
 * answer's headers in its metadata), as connect-es's client reads them. A
 * caller that stops reading cancels the stream (the handler hears it).
 */
async function* messagesOf(opened: Opened, header: Headers, trailer: Headers): AsyncGenerator<Uint8Array> {
  const { stream, connection } = opened;
  const encoding = header.get("connect-content-encoding");
  let pending: Buffer = Buffer.alloc(0);
  let ended = false;
  try {
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        while (pending.length >= ENVELOPE_HEAD_BYTES) {
          const length = pending.readUInt32BE(1);
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
      throw lost(stream, connection, err as Error);
    }
    // Node ends a reset stream's body as well (its rstCode set): that answer is cut short.
    if (stream.rstCode !== undefined && stream.rstCode !== H2.NO_ERROR) throw lost(stream, connection, undefined);
    if (pending.length > 0) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    if (!ended) throw new ConnectError("protocol error: missing EndStreamResponse", Code.InvalidArgument);
  } finally {
    // Read to its end, failed, or left by the caller: a stream still open is cancelled.
    if (!stream.closed) stream.close(H2.CANCEL);
  }
}

function lost(stream: http2.ClientHttp2Stream, connection: http2.Http2Session | undefined, err: Error | undefined): ConnectError {
  if (connectionLost(connection, stream.rstCode, err)) return new ConnectError(`the connection to the server was lost${err ? `: ${err.message}` : ""}`, Code.Unavailable, undefined, undefined, err);
  return resetError(stream.rstCode ?? H2.INTERNAL_ERROR, true);
}

/** A compressed message: only in the encoding the answer names (none asked for, but one may come). */
function inflated(encoding: string | null, data: Uint8Array): Uint8Array {
  if (encoding === null || encoding === "identity") throw new ConnectError("protocol error: received compressed output without encoding", Code.Internal);
  return decompressMessage(encoding, data, MESSAGE_MAX_BYTES, "connect-accept-encoding");
}
