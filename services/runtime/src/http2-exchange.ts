// One Connect unary call over an HTTP/2 session and its whole answer, without
// a client library's streams in between: the peers' transport sends the
// services' calls with it (peers.ts), the gateway forwards calls as bytes with
// it (gateway/src/raw-forward.ts). The one place that reads an answer, maps a
// reset or a lost connection to its code and sends a refused call again.
import type http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromHttpStatus, errorFromJsonBytes, parseContentType } from "@connectrpc/connect/protocol-connect";
// A call the server did not process (RST_STREAM REFUSED_STREAM, RFC 9113 8.7; a frame refused): it may be sent again.
import { BY_HTTP2, FRAME_REFUSED as REFUSED_STREAM, type FrameOutcome, type FrameStreamOutcome } from "./frames.js";
import { decompressMessage } from "./input.js";

/**
 * What a call needs of its connection: a stream for its request, and the news
 * that answer bytes came (a keepalive would count them). The runtime's
 * UpstreamSession (upstream.ts: peers, the gateway's backends), or
 * connect-node's Http2SessionManager.
 */
export interface Http2Upstream {
  request(method: string, path: string, headers: http2.OutgoingHttpHeaders, options: http2.ClientSessionRequestOptions): Promise<http2.ClientHttp2Stream>;
  notifyResponseByteRead(stream: http2.ClientHttp2Stream): void;
  /**
   * The connection's own road for a unary call (UpstreamSession: frames.ts, to a server that speaks
   * them): its answer, REFUSED_STREAM (send again), or BY_HTTP2 (send it on the HTTP/2 connection).
   */
  frames?(path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array, signal: AbortSignal): Promise<FrameOutcome>;
  /** The same road for a server stream (connect-stream-call.ts): its head and body as they come, REFUSED_STREAM, or BY_HTTP2. */
  framesStream?(path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array, signal: AbortSignal): Promise<FrameStreamOutcome>;
}

type Http2Answer = { status: number; header: http2.IncomingHttpHeaders; body: Uint8Array };

/** One send of a call: in frames where the connection has them and the server takes it so, else on HTTP/2. */
async function exchange(session: Http2Upstream, path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array, signal: AbortSignal) {
  if (session.frames) {
    const outcome = await session.frames(path, headers, body, signal);
    if (outcome !== BY_HTTP2) return outcome;
  }
  return http2Exchange(session, path, headers, body, signal);
}

/**
 * One request and its whole answer on the session. An answer counts only if
 * its stream ended cleanly: node ends a reset stream's body too, and a
 * message cut short can still parse. A reset fails the call with the code
 * gRPC gives its HTTP/2 error code (resetError), a lost connection or a
 * session that cannot be opened UNAVAILABLE, `signal` with its reason; a
 * refused stream resolves as REFUSED_STREAM.
 */
function http2Exchange(session: Http2Upstream, path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array, signal: AbortSignal) {
  return requestStream<Http2Answer | typeof REFUSED_STREAM>(session, path, headers, body, signal, (s, settle, resolve, reject) => {
    // Taken now: a closed stream no longer names its session.
    const connection = s.session;
    let status = 0; // 0: no answer yet
    let header: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    const fail = (err?: Error) =>
      settle(() => {
        const why = streamBroken(s, connection, status !== 0, err);
        if (why === REFUSED_STREAM) resolve(why);
        else reject(why);
      });
    s.once("response", (h) => {
      status = Number(h[":status"]);
      header = h;
    });
    s.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      session.notifyResponseByteRead(s);
    });
    s.once("end", () => {
      // Node ends a reset stream's body as well (its rstCode set): that answer is cut short.
      if (status === 0 || (s.rstCode !== undefined && s.rstCode !== H2.NO_ERROR)) return fail();
      settle(() => resolve({ status, header, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) }));
    });
    s.once("error", (err) => fail(err));
    s.once("close", () => fail());
  });
}

/**
 * Opens a stream for a call on the session and sends its request; `onStream`
 * reads the answer, settling the call once through `settle`. A cancellation
 * before it settles closes the stream (CANCEL) and rejects with the signal's
 * reason; a session that cannot be opened rejects UNAVAILABLE. The opening
 * both a unary call (http2Exchange) and a server stream (connect-stream-call.ts) make.
 */
export function requestStream<T>(
  session: Http2Upstream,
  path: string,
  headers: http2.OutgoingHttpHeaders,
  body: Uint8Array,
  signal: AbortSignal,
  onStream: (stream: http2.ClientHttp2Stream, settle: (fn: () => void) => void, resolve: (value: T) => void, reject: (err: unknown) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(ConnectError.from(signal.reason));
    let stream: http2.ClientHttp2Stream | undefined;
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      fn();
    };
    const onAbort = () =>
      settle(() => {
        stream?.close(H2.CANCEL);
        reject(ConnectError.from(signal.reason));
      });
    signal.addEventListener("abort", onAbort, { once: true });
    session.request("POST", path, headers, {}).then(
      (s) => {
        stream = s;
        // Given up while the stream was being opened (its connection still connecting): the
        // stream came anyway, its request sent without an end, and would stay open on the
        // connection, and the call's on the server, until the connection closes.
        if (settled) return void s.close(H2.CANCEL);
        if (signal.aborted) return onAbort();
        onStream(s, settle, resolve, reject);
        s.end(body);
      },
      (err: unknown) => settle(() => reject(new ConnectError(`cannot reach the server: ${(err as Error).message}`, Code.Unavailable, undefined, undefined, err))),
    );
  });
}

/**
 * Why a stream ended without its END_STREAM (or its answer whole): REFUSED_STREAM
 * (not processed: send again), the connection gone (UNAVAILABLE), else its reset code.
 */
export function streamBroken(s: http2.ClientHttp2Stream, connection: http2.Http2Session | undefined, answered: boolean, err?: Error): ConnectError | typeof REFUSED_STREAM {
  if (s.rstCode === H2.REFUSED_STREAM) return REFUSED_STREAM;
  if (connectionLost(connection, s.rstCode, err)) return new ConnectError(`the connection to the server was lost${err ? `: ${err.message}` : ""}`, Code.Unavailable, undefined, undefined, err);
  return resetError(s.rstCode ?? H2.INTERNAL_ERROR, answered);
}

/** HTTP/2's error codes (RFC 9113, 7) that a call's end is judged by. */
export const H2 = { NO_ERROR: 0, INTERNAL_ERROR: 2, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11, INADEQUATE_SECURITY: 12, HTTP_1_1_REQUIRED: 13 } as const;
const H2_NAMES = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"];

/**
 * A stream the server reset, by its code as gRPC maps them (PROTOCOL-HTTP2.md,
 * the table connect-node's connectErrorFromH2ResetCode holds): CANCEL is
 * CANCELED, ENHANCE_YOUR_CALM RESOURCE_EXHAUSTED, INADEQUATE_SECURITY and
 * HTTP_1_1_REQUIRED PERMISSION_DENIED, REFUSED_STREAM UNAVAILABLE, the rest
 * INTERNAL (NO_ERROR too: the stream closed before its answer was whole).
 * connect-node gives INTERNAL for every code but CANCEL (node's stream error
 * comes first) and waits for the deadline after a NO_ERROR before an answer.
 */
export function resetError(rstCode: number, answered: boolean): ConnectError {
  const name = `${H2_NAMES[rstCode] ?? "unknown"} (0x${rstCode.toString(16)})`;
  const message = rstCode === H2.NO_ERROR ? `http/2 stream closed ${answered ? "before the end of its answer" : "unanswered"} with error code ${name}` : `http/2 stream closed with error code ${name}`;
  switch (rstCode) {
    case H2.CANCEL:
      return new ConnectError(message, Code.Canceled);
    case H2.REFUSED_STREAM:
      return new ConnectError(message, Code.Unavailable);
    case H2.ENHANCE_YOUR_CALM:
      return new ConnectError(message, Code.ResourceExhausted);
    case H2.INADEQUATE_SECURITY:
    case H2.HTTP_1_1_REQUIRED:
      return new ConnectError(message, Code.PermissionDenied);
    default:
      return new ConnectError(message, Code.Internal);
  }
}

/**
 * The connection under the stream is gone (the socket failed, closed, or the
 * session was destroyed), as opposed to the server resetting this one call:
 * node closes the streams of a lost session with CANCEL, which is no
 * cancellation by anyone. UNAVAILABLE, as gRPC clients say for a dropped
 * connection (connect-node says CANCELED, or ABORTED on ECONNRESET: a
 * caller would read either as a decision of the server's).
 */
export function connectionLost(session: http2.Http2Session | undefined, rstCode: number | undefined, err: Error | undefined): boolean {
  if (err) return (err as { code?: string }).code !== "ERR_HTTP2_STREAM_ERROR";
  return session === undefined || ((session.destroyed || session.closed) && (rstCode === undefined || rstCode === H2.CANCEL || rstCode === H2.NO_ERROR));
}

/** A call the server refused unprocessed is sent at most this often in all. */
const MAX_SENDS = 3;

/** A response message is read whole; as connect-es's clients, no smaller limit than the protocol's. */
const RESPONSE_MAX_BYTES = 0xffffffff;
/** An error body is at most this large once decompressed (Connect's error JSON is a message and details). */
const MAX_ERROR_BYTES = 1024 * 1024;

export interface ConnectUnaryCall {
  session: Http2Upstream;
  /** The service's type name ("ttip.qr.v1.QrService") and the method's name. */
  service: string;
  method: string;
  /** Request metadata (already signed where it must be). */
  header: Headers;
  /** The request message, binary, uncompressed. */
  body: Uint8Array;
  /** The call's end: its deadline, the caller's cancellation. */
  signal: AbortSignal;
  /** The caller's deadline, ms since the epoch: every send carries what is left of it. */
  deadline: number | undefined;
  /**
   * The gateway: the encodings its client accepts. The server is asked for
   * them and the answer's body is handed back as the server compressed it
   * (`encoding`). Without it, no compression is asked for (the hops are on
   * the cluster's own network, where inflating costs more than it saves) and
   * an answer compressed anyway is inflated here.
   */
  acceptEncoding?: string;
  /**
   * Which of the answer's headers and trailers are kept (the gateway: its
   * application metadata, the rest belongs to each leg); default all, as
   * connect-es hands them over.
   */
  keepHeader?: (name: string) => boolean;
}

export interface ConnectUnaryAnswer {
  /** The answer's headers (trailer-* taken out) and its trailers. */
  header: Headers;
  trailer: Headers;
  /** The message, binary: compressed as `encoding` says (acceptEncoding only). */
  body: Uint8Array;
  encoding: string | undefined;
}

/**
 * The Connect protocol's unary call (binary) as connect-es sends it: the
 * timeout header from what is left of the deadline, the answer checked as
 * connect-es's client checks it (status, content type, content length), its
 * error read from the JSON body with the answer's headers and trailers as
 * metadata. A call the server refused unprocessed (its connection was ending)
 * is sent again, at most MAX_SENDS times in all, under the same deadline:
 * HTTP/2 guarantees it was not processed (RFC 9113, 8.7).
 */
export async function connectUnaryCall(call: ConnectUnaryCall): Promise<ConnectUnaryAnswer> {
  const headers: http2.OutgoingHttpHeaders = { "content-type": "application/proto", "connect-protocol-version": "1" };
  call.header.forEach((value, key) => (headers[key] = value));
  if (call.acceptEncoding) headers["accept-encoding"] = call.acceptEncoding;
  const path = `/${call.service}/${call.method}`;
  let answer: Http2Answer | typeof REFUSED_STREAM = REFUSED_STREAM;
  for (let send = 1; send <= MAX_SENDS && answer === REFUSED_STREAM; send++) {
    if (call.deadline !== undefined) headers["connect-timeout-ms"] = String(Math.max(1, Math.floor(call.deadline - Date.now())));
    answer = await exchange(call.session, path, headers, call.body, call.signal);
  }
  if (answer === REFUSED_STREAM) throw new ConnectError(`the ${call.service} service refused the call (NGHTTP2_REFUSED_STREAM)`, Code.Unavailable);
  const { status, body } = answer;
  const raw = answer.header;
  const header = new Headers();
  const trailer = new Headers();
  for (const key in raw) {
    const value = raw[key];
    if (key[0] === ":" || value === undefined) continue;
    const trailing = key.startsWith("trailer-");
    const name = trailing ? key.slice(8) : key;
    if (call.keepHeader && !call.keepHeader(name)) continue;
    (trailing ? trailer : header).set(name, Array.isArray(value) ? value.join(", ") : String(value));
  }
  const contentType = raw["content-type"];
  const encoding = raw["content-encoding"];
  if (status !== 200) throw connectErrorOf(call.service, status, contentType, encoding, header, trailer, body);
  // As connect-es's client (validateResponse): another encoding of the protocol is INTERNAL, no known one UNKNOWN.
  const type = parseContentType(contentType ?? null);
  if (type?.binary !== true || type.stream) throw new ConnectError(`unsupported content type ${contentType}`, type === undefined ? Code.Unknown : Code.Internal, header);
  const promised = raw["content-length"];
  if (promised !== undefined && Number(promised) !== body.byteLength) {
    throw new ConnectError(`protocol error: promised ${promised} bytes, received ${body.byteLength}`, Code.Internal);
  }
  if (call.acceptEncoding !== undefined) return { header, trailer, body, encoding };
  return { header, trailer, body: decompressMessage(encoding ?? null, body, RESPONSE_MAX_BYTES), encoding: undefined };
}

/**
 * A Connect error answer: its JSON's code, message and details, the answer's
 * headers and trailers as its metadata; read only in a content type that
 * connect-es reads as unary JSON (application/json, charset utf-8 at most),
 * else the code of the HTTP status, as connect-es's client does.
 */
function connectErrorOf(service: string, status: number, contentType: string | undefined, encoding: string | undefined, header: Headers, trailer: Headers, body: Uint8Array): ConnectError {
  const metadata = new Headers(header);
  trailer.forEach((value, key) => metadata.set(key, value));
  const fallback = new ConnectError(`the ${service} service answered HTTP ${status}`, codeFromHttpStatus(status), metadata);
  const type = parseContentType(contentType ?? null);
  if (!type || type.binary || type.stream) return fallback;
  try {
    return errorFromJsonBytes(decompressMessage(encoding ?? null, body, MAX_ERROR_BYTES), metadata, fallback);
  } catch {
    // An error body we cannot read is the server's failure, never the caller's mistake.
    return fallback;
  }
}
