// One HTTP/2 connection to another of our processes, shared by every call
// to it: a service's peers (peers.ts) and the gateway's backends. It replaces
// connect-node's Http2SessionManager, which per call copied the headers,
// awaited its state in an async function, added two listeners to the stream
// and, at one call at a time, ref'd and unref'd the socket and stopped and
// started its idle timer (with node's own request, ~14% of the gateway's
// profile). What it did that we need is kept, once per connection instead of
// once per call:
// - a connection opened at the first call and whenever the last one is over
//   (closed, failed, or told GOAWAY): a restarted peer is reached again;
// - GOAWAY: the calls on their way finish on the old connection (node closes
//   it after them), new ones go on a new connection;
// - a connection that fails to open, or is closed before it opened, fails the
//   calls waiting for it UNAVAILABLE (a ConnectError: connect-node's stream
//   client reports any other error INTERNAL);
// - an idle connection closes after IDLE_TIMEOUT_MS (node's session timeout,
//   which node renews on every frame already);
// - the socket never holds the process open (the caller's own server does).
// What it adds: a connection is retired before its stream ids run out.
// Deadlines, cancellation, resets and a refused call sent again are each call's
// own (connectUnaryCall, http2-exchange.ts; server streams: connect-stream-call.ts).
// Like the manager as we made it, no PING keepalive: a lost connection is found
// by TCP or by a call's deadline.
import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { FrameLink, type FrameOutcome, type FrameStreamOutcome } from "./frames.js";
import type { Http2Upstream } from "./http2-exchange.js";

/** A connection without a frame this long is closed (connect-node's idle timeout). */
const IDLE_TIMEOUT_MS = 15 * 60_000;

/**
 * Streams one connection opens before new calls go on a new one. A client's stream ids are the
 * odd numbers below 2^31 (RFC 9113, 5.1.1), 2^30 in all; past the last, node fails each new
 * stream (ERR_HTTP2_OUT_OF_STREAMS) but keeps the connection, which looks usable here, so every
 * call to the backend would fail from then on (after ~12 days at 1,000 calls a second).
 */
const MAX_STREAMS_PER_CONNECTION = 2 ** 30 - 1024;

export class UpstreamSession implements Http2Upstream {
  /** The origin calls go to (connect-node's client checks a request's URL against it). */
  readonly authority: string;
  /** The connection new calls go on: open or opening, not told to go away. */
  #current: http2.ClientHttp2Session | undefined;
  /** Resolves when #current is connected; rejects when it failed first. */
  #connected: Promise<http2.ClientHttp2Session> | undefined;
  /** Every connection not yet closed (the current one and those finishing their calls), for close(). */
  readonly #live = new Set<http2.ClientHttp2Session>();
  /** Streams opened on #current. */
  #streams = 0;
  #closed = false;
  /** Unary calls in frames (frames.ts) when the server speaks them; undefined: every call on HTTP/2. */
  readonly #frames: FrameLink | undefined;

  /**
   * `maxStreams`: streams a connection opens before it is retired (its calls finish there).
   * `frames`: unary calls go in frames on a connection of their own to a server that speaks them (one of ours).
   */
  constructor(
    private readonly url: string,
    private readonly options: http2.ClientSessionOptions = {},
    private readonly maxStreams = MAX_STREAMS_PER_CONNECTION,
    frames = false,
  ) {
    this.authority = new URL(url).origin;
    const link = (this.#frames = frames ? new FrameLink(url) : undefined);
    this.frames = link && ((path, headers, body, signal) => link.exchange(path, headers, body, signal));
    this.framesStream = link && ((path, headers, body, signal) => link.stream(path, headers, body, signal));
  }

  /** A unary call in frames (connectUnaryCall): BY_HTTP2 when the server does not speak them; undefined: frames off. */
  readonly frames: ((path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array, signal: AbortSignal) => Promise<FrameOutcome>) | undefined;
  /** A server stream in frames (connectStreamCall), as `frames`. */
  readonly framesStream: ((path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array, signal: AbortSignal) => Promise<FrameStreamOutcome>) | undefined;

  /**
   * A stream for one call. `headers` is the call's own object: the method and
   * path are set on it (node copies it again; the manager copied it first).
   */
  request(method: string, path: string, headers: http2.OutgoingHttpHeaders, options: http2.ClientSessionRequestOptions): Promise<http2.ClientHttp2Stream> {
    headers[":method"] = method;
    headers[":path"] = path;
    const conn = this.#current;
    if (conn === undefined || this.#connected !== undefined || !usable(conn)) return this.#connect().then((c) => this.#stream(c, headers, options));
    // Node refuses a stream by throwing (a session it no longer takes them on): a rejection, as the manager's async request.
    try {
      return Promise.resolve(this.#stream(conn, headers, options));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A stream on `conn`; the current connection's last one retires it (closed after its calls). */
  #stream(conn: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, options: http2.ClientSessionRequestOptions): http2.ClientHttp2Stream {
    const stream = conn.request(headers, options);
    if (conn === this.#current && ++this.#streams >= this.maxStreams) {
      this.#retire(conn);
      // Closed once this last stream is over, not now: closed before its HEADERS went out, node refuses it.
      stream.once("close", () => conn.close());
    }
    return stream;
  }

  /** Nothing to do: without PINGs, answer bytes need not be noted (connectUnaryCall calls it per chunk). */
  notifyResponseByteRead(): void {}

  /** Closes every connection at once (the process stopping): calls still on them, or waiting for one to open, fail. */
  close(): void {
    this.#closed = true;
    this.#frames?.close();
    for (const conn of this.#live) conn.destroy(undefined, http2.constants.NGHTTP2_CANCEL);
    this.#live.clear();
    this.#current = undefined;
  }

  /** The current connection once connected; a new one when there is none or it cannot take calls. */
  #connect(): Promise<http2.ClientHttp2Session> {
    if (this.#closed) return Promise.reject(closing());
    const current = this.#current;
    if (current !== undefined && usable(current)) return this.#connected ?? Promise.resolve(current);
    const conn = http2.connect(this.url, this.options);
    this.#current = conn;
    this.#streams = 0;
    this.#live.add(conn);
    conn.unref();
    conn.setTimeout(IDLE_TIMEOUT_MS, () => conn.close());
    // Node hands a failed connection's error to the session: heard here, so it never goes unhandled.
    conn.on("error", () => this.#forget(conn));
    conn.once("close", () => this.#forget(conn));
    // Told to go away: the calls on it finish there (node closes it after them); new calls go on a new one.
    conn.once("goaway", () => this.#retire(conn));
    const connected = new Promise<http2.ClientHttp2Session>((resolve, reject) => {
      const settle = () => {
        conn.off("connect", onConnect);
        conn.off("error", onError);
        conn.off("close", onClose);
      };
      const onConnect = () => (settle(), resolve(conn));
      const onError = (err: Error) => (settle(), reject(err));
      // Destroyed before it connected (close() meanwhile, or its socket torn down): node emits close before any error.
      const onClose = () => (settle(), reject(this.#closed ? closing() : new ConnectError("the connection closed before it opened", Code.Unavailable)));
      conn.once("connect", onConnect);
      conn.once("error", onError);
      conn.once("close", onClose);
    }).finally(() => {
      if (this.#connected === connected) this.#connected = undefined;
    });
    this.#connected = connected;
    return connected;
  }

  /** A connection that takes no new calls: the next call opens another. */
  #retire(conn: http2.ClientHttp2Session): void {
    if (this.#current !== conn) return;
    this.#current = undefined;
    this.#connected = undefined;
  }

  #forget(conn: http2.ClientHttp2Session): void {
    this.#retire(conn);
    this.#live.delete(conn);
  }
}

function closing(): ConnectError {
  return new ConnectError("the connection is closed (its process is stopping)", Code.Unavailable);
}

/** Takes new streams: not closing, not destroyed. */
function usable(conn: http2.ClientHttp2Session): boolean {
  return !conn.closed && !conn.destroyed;
}

/**
 * One UpstreamSession per URL (a peer, a backend), closed together. After close() (the process
 * stopping) a URL's session is a closed one: its calls are refused UNAVAILABLE, none opens a connection.
 * `frames`: unary calls in frames to servers that speak them (ours); false: all on HTTP/2.
 */
export function upstreamSessions(frames = true): { get(url: string): UpstreamSession; close(): void } {
  const sessions = new Map<string, UpstreamSession>();
  let closed = false;
  return {
    get(url) {
      let session = sessions.get(url);
      if (!session) {
        sessions.set(url, (session = new UpstreamSession(url, {}, MAX_STREAMS_PER_CONNECTION, frames)));
        if (closed) session.close();
      }
      return session;
    },
    close() {
      closed = true;
      for (const session of sessions.values()) session.close();
    },
  };
}
