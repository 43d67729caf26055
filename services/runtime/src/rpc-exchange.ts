// One RPC request and its answer, whatever carries them: an HTTP/1.1
// request or HTTP/2's compatibility objects (nodeExchange), or an HTTP/2
// stream served on node's stream API (StreamExchange). The services' Connect
// unary calls (connect-unary.ts), their Connect server streams on HTTP/2
// (connect-stream.ts) and the gateway's calls forwarded as bytes are answered
// through it, so they take the cheap road on HTTP/2: node's
// compatibility layer builds an Http2ServerRequest and an Http2ServerResponse
// (streams, header objects, events) per call, a large share of what a hop
// that receives a call and makes another costs.
import type http from "node:http";
import type http2 from "node:http2";
import type { Readable } from "node:stream";

export interface RpcExchange extends AsyncIterable<Buffer> {
  readonly method: string;
  /** The request's path and query. */
  readonly url: string;
  /** The request's host (HTTP/2's :authority). */
  readonly authority: string;
  /** The request's headers, names in lower case. */
  readonly headers: http.IncomingHttpHeaders;
  /** The request's headers as sent, name then value (HTTP/2's pseudo-headers included). */
  readonly rawHeaders: string[];
  /** The request's body as node's stream (read by its events: cheaper than the iterator); undefined: read by the iterator (a frame's body, whole already: frames.ts). */
  readonly body: Readable | undefined;
  /** The connection, for the peer's address. */
  readonly socket: { remoteAddress?: string } | null | undefined;
  /** Nothing can be written any more: the client went away, or the answer is out. */
  readonly closed: boolean;
  /** `listener` runs once when the exchange is over: answered, reset, or the connection gone. */
  onClose(listener: () => void): void;
  offClose(listener: () => void): void;
  /** The one answer, its body whole; trailers (gRPC's status) after the body. */
  respond(status: number, headers: Record<string, string>, body: Uint8Array, trailers?: Record<string, string>): void;
}

/**
 * An answer written in parts as it comes (a server stream's messages): on an
 * HTTP/2 stream (StreamExchange) or in frames (frames.ts).
 */
export interface PartsExchange extends RpcExchange {
  /** false: the client takes only a whole answer (a call in frames made as a unary one). */
  readonly inParts?: boolean;
  /** Starts the answer: its head goes out with the first part or the end. */
  writeHead(status: number, headers: Record<string, string>): void;
  /**
   * A part. Undefined when the client may take more at once (no promise made per message); else a
   * promise that resolves once it may (its flow control: a slow reader holds the writer, not this
   * process's memory).
   */
  write(chunk: Uint8Array): Promise<void> | undefined;
  /** The last part: the answer is complete. */
  end(chunk: Uint8Array): void;
  /** Gives up on the answer: the client's read fails INTERNAL, never reads as an answer cut short. */
  reset(): void;
}

/** The exchange can answer in parts (a server stream's): an HTTP/2 stream, or a frames call whose client reads one. */
export function answersInParts(exchange: RpcExchange): exchange is PartsExchange {
  const parts = exchange as Partial<PartsExchange>;
  return parts.writeHead !== undefined && parts.inParts !== false;
}

/**
 * The client's Host (HTTP/2's :authority) when it is a host name or address with an optional port, else "localhost".
 * A call's URL is this host before the path: a Host of `h\other.Service\Method#` made a URL whose path was another
 * RPC's, and a partner's signature for that RPC opened the one routed.
 */
function hostOf(given: string | undefined): string {
  if (given === undefined || !/^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/.test(given)) return "localhost";
  // What the pattern lets by and a URL refuses (a port past 65535, 1.2.3.999, [:::]) would throw where the URL is read.
  return URL.canParse(`http://${given}`) ? given : "localhost";
}

type NodeReq = http.IncomingMessage | http2.Http2ServerRequest;
type NodeRes = http.ServerResponse | http2.Http2ServerResponse;

/** A request on HTTP/1.1 or HTTP/2's compatibility objects as an exchange. */
export function nodeExchange(req: NodeReq, res: NodeRes): RpcExchange {
  return {
    method: req.method ?? "GET",
    url: req.url ?? "/",
    authority: hostOf("authority" in req ? req.authority : req.headers.host),
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    body: req,
    socket: req.socket,
    get closed() {
      return res.destroyed;
    },
    onClose: (listener) => void res.once("close", listener),
    offClose: (listener) => void res.off("close", listener),
    respond(status, headers, body, trailers) {
      if (res.destroyed) return;
      // The head went out already (a write failed): the answer can only end.
      if (res.headersSent) return void res.end();
      (res as http.ServerResponse).writeHead(status, headers);
      if (trailers) res.addTrailers(trailers);
      res.end(body);
    },
    [Symbol.asyncIterator]: () => (req as AsyncIterable<Buffer>)[Symbol.asyncIterator](),
  };
}

/**
 * A server stream's parts held in one turn of the event loop are handed to
 * the stream from this size on: one DATA frame's default size (RFC 9113, 6.5.2).
 */
const HELD_MAX_BYTES = 16_384;

/** HTTP/2's INTERNAL_ERROR (RFC 9113, 7). */
const HTTP2_INTERNAL_ERROR = 2;

/** Ignores a stream's errors: its 'close' tells the call the client is gone, as the compatibility layer does. */
const ignore = () => {};

/**
 * An HTTP/2 stream answered on node's stream API: headers in, one respond()
 * and one write of the whole answer, trailers only when asked for; or a
 * server stream's answer in parts (writeHead, write, end).
 */
export class StreamExchange implements PartsExchange {
  readonly method: string;
  readonly url: string;
  readonly authority: string;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    readonly headers: http2.IncomingHttpHeaders,
    readonly rawHeaders: string[],
  ) {
    this.method = headers[":method"] ?? "GET";
    this.url = headers[":path"] ?? "/";
    this.authority = hostOf(headers[":authority"] ?? headers.host);
    // A reset or a lost connection errors the stream: 'close' follows, which the call hears.
    stream.on("error", ignore);
  }

  get body(): Readable {
    return this.stream;
  }

  get socket() {
    return this.stream.session?.socket;
  }

  get closed(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  onClose(listener: () => void): void {
    this.stream.once("close", listener);
  }

  offClose(listener: () => void): void {
    this.stream.off("close", listener);
  }

  respond(status: number, headers: Record<string, string>, body: Uint8Array, trailers?: Record<string, string>): void {
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    // The head went out already (a write failed): the answer can only end.
    if (stream.headersSent) return void stream.end();
    const head: http2.OutgoingHttpHeaders = headers;
    head[":status"] = status;
    if (trailers) {
      stream.respond(head, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers(trailers));
      stream.end(body);
      return;
    }
    if (body.byteLength === 0) return void stream.respond(head, { endStream: true });
    // Node makes an ERR_STREAM_DESTROYED, stack and all, for this write (2-2.6% of a
    // service's CPU): the stream closes as its END_STREAM goes out, node destroys a
    // stream whose request was read to its end at once, and the write's completion
    // comes after (errorBuffer in node's writable.js). The ways around it, an empty
    // DATA frame for the END_STREAM after the body (waitForTrailers, or end() in the
    // write's callback), cost a second socket write per answer and a second wake-up
    // of the client (strace: 2 writes per answer instead of 1): more than the error.
    stream.respond(head);
    stream.end(body);
  }

  /** Starts an answer written in parts (a server stream's messages): its head goes out with the first part or the end. */
  writeHead(status: number, headers: Record<string, string>): void {
    const head: http2.OutgoingHttpHeaders = headers;
    head[":status"] = status;
    this.head = head;
  }

  /**
   * Writes a part of the answer. Parts are held until the turn of the event
   * loop is over (node's HTTP/2 sends nothing before then anyway), so what
   * follows in the same turn, most often the stream's end after its last
   * message, leaves in the same DATA frame and socket write: written at once,
   * the end waited for the message's write to complete and took a second
   * write, its END_STREAM at times a third. Undefined unless the stream took
   * less than it was given (HTTP/2's flow control: a slow reader holds the
   * writer, not this process's memory); then a promise that resolves when it
   * takes more, or is closed.
   */
  write(chunk: Uint8Array): Promise<void> | undefined {
    if (this.closed) return undefined;
    this.held.push(chunk);
    this.heldBytes += chunk.byteLength;
    if (this.heldBytes >= HELD_MAX_BYTES) this.flush();
    else this.flushing ??= setImmediate(this.flushNow);
    return this.drained;
  }

  /** The answer's last part, with the parts still held. */
  end(chunk: Uint8Array): void {
    if (this.stopHolding()) return;
    this.sendHead();
    this.stream.end(this.held.length === 0 ? chunk : Buffer.concat([...this.takeHeld(), chunk]));
  }

  /**
   * Gives up on the answer: the stream is reset (INTERNAL_ERROR), as node does for a handler that failed.
   * Once its head went out, by destroy: node's close(code) would send END_STREAM first, and the
   * client read a clean end without the end of the stream.
   */
  reset(): void {
    if (this.stopHolding()) return;
    if (this.stream.headersSent) this.stream.destroy(new Error("the server gave up on the answer"));
    else this.stream.close(HTTP2_INTERNAL_ERROR);
  }

  private head: http2.OutgoingHttpHeaders | undefined;
  /** Parts written in this turn of the event loop, not yet handed to the stream. */
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private flushing: NodeJS.Immediate | undefined;
  /** The stream took less than it was given: resolves once it takes more, or is closed. */
  private drained: Promise<void> | undefined;
  private readonly flushNow = () => {
    this.flushing = undefined;
    this.flush();
  };

  /** Hands the held parts to the stream (with the head if it has not gone out). */
  private flush(): void {
    if (this.stopHolding()) return;
    this.sendHead();
    const parts = this.takeHeld();
    if (parts.length === 0 || this.stream.write(parts.length === 1 ? parts[0] : Buffer.concat(parts))) return;
    this.drained ??= new Promise<void>((resolve) => {
      const go = () => {
        this.stream.off("drain", go);
        this.stream.off("close", go);
        this.drained = undefined;
        resolve();
      };
      this.stream.on("drain", go);
      this.stream.on("close", go);
    });
  }

  /** No flush is pending any more; true (and nothing held) when the stream is closed: nothing more goes out. */
  private stopHolding(): boolean {
    if (this.flushing) clearImmediate(this.flushing);
    this.flushing = undefined;
    if (!this.closed) return false;
    this.takeHeld();
    return true;
  }

  private takeHeld(): Uint8Array[] {
    const parts = this.held;
    this.held = [];
    this.heldBytes = 0;
    return parts;
  }

  private sendHead(): void {
    if (this.head === undefined) return;
    this.stream.respond(this.head);
    this.head = undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return this.stream[Symbol.asyncIterator]();
  }
}
