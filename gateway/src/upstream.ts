// The gateway's HTTP/2 connection to one backend for the calls it forwards as
// bytes (raw-forward.ts), in place of connect-node's Http2SessionManager,
// which per call copied the headers, awaited its state in an async function,
// added two listeners to the stream and, at one call at a time, ref'd and
// unref'd the socket and stopped and started its idle timer (with node's own
// request, ~14% of the gateway's profile). What it did that the gateway needs
// is kept, once per connection instead of once per call:
// - a connection opened at the first call and whenever the last one is over
//   (closed, failed, or told GOAWAY): a restarted backend is reached again;
// - GOAWAY: the calls on their way finish on the old connection (node closes
//   it after them), new ones go on a new connection;
// - a connection that fails to open fails the calls waiting for it UNAVAILABLE;
// - an idle connection closes after IDLE_TIMEOUT_MS (node's session timeout,
//   which node renews on every frame already);
// - the socket never holds the process open (the gateway's listener does).
// Deadlines, cancellation, resets and a refused call sent again are each call's
// own (runtime's connectUnaryCall). Like the manager as the gateway made it,
// no PING keepalive: a lost connection is found by TCP or by a call's deadline.
import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Http2Upstream } from "@ttip/runtime";

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
  /** The connection new calls go on: open or opening, not told to go away. */
  #current: http2.ClientHttp2Session | undefined;
  /** Resolves when #current is connected; rejects when it failed first. */
  #connected: Promise<http2.ClientHttp2Session> | undefined;
  /** Every connection not yet closed (the current one and those finishing their calls), for close(). */
  readonly #live = new Set<http2.ClientHttp2Session>();
  /** Streams opened on #current. */
  #streams = 0;
  #closed = false;

  /** `maxStreams`: streams a connection opens before it is retired (its calls finish there). */
  constructor(
    private readonly url: string,
    private readonly options: http2.ClientSessionOptions = {},
    private readonly maxStreams = MAX_STREAMS_PER_CONNECTION,
  ) {}

  /**
   * A stream for one call. `headers` is the call's own object: the method and
   * path are set on it (node copies it again; the manager copied it first).
   */
  request(method: string, path: string, headers: http2.OutgoingHttpHeaders, options: http2.ClientSessionRequestOptions): Promise<http2.ClientHttp2Stream> {
    headers[":method"] = method;
    headers[":path"] = path;
    const conn = this.#current;
    if (conn !== undefined && this.#connected === undefined && usable(conn)) return Promise.resolve(this.#stream(conn, headers, options));
    return this.#connect().then((c) => this.#stream(c, headers, options));
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

  /** Closes every connection at once (the gateway stopping): calls still on them fail. */
  close(): void {
    this.#closed = true;
    for (const conn of this.#live) conn.destroy(undefined, http2.constants.NGHTTP2_CANCEL);
    this.#live.clear();
    this.#current = undefined;
  }

  /** The current connection once connected; a new one when there is none or it cannot take calls. */
  #connect(): Promise<http2.ClientHttp2Session> {
    if (this.#closed) return Promise.reject(new ConnectError("the gateway is closing", Code.Unavailable));
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
      const onConnect = () => {
        conn.off("error", onError);
        resolve(conn);
      };
      const onError = (err: Error) => {
        conn.off("connect", onConnect);
        reject(err);
      };
      conn.once("connect", onConnect);
      conn.once("error", onError);
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

/** Takes new streams: not closing, not destroyed. */
function usable(conn: http2.ClientHttp2Session): boolean {
  return !conn.closed && !conn.destroyed;
}

/** One UpstreamSession per backend URL, closed together. */
export function upstreamSessions(): { get(url: string): UpstreamSession; close(): void } {
  const sessions = new Map<string, UpstreamSession>();
  return {
    get(url) {
      let session = sessions.get(url);
      if (!session) sessions.set(url, (session = new UpstreamSession(url)));
      return session;
    },
    close() {
      for (const session of sessions.values()) session.close();
      sessions.clear();
    },
  };
}
