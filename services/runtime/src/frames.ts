// Unary calls and server streams between our own processes on a plain TCP
// connection in frames of our own: the peers' calls and the gateway's forwarded ones, in a
// cluster. Node's HTTP/2 costs each call a stream object on both sides, its
// header lists converted to and from nghttp2's, and several socket writes and
// wake-ups (bench/rpc-clients.ts measures each side's CPU per call); here a
// call is one frame each way, and the frames of one turn of the event loop go
// out in one write. The call is the same Connect unary call (the same headers,
// status and bodies: connectUnaryCall on the client, the server's
// connectUnaryHandler and rpcFilter behind every interceptor), only carried
// differently. Everything else stays on HTTP/2 on the same port: client and
// bidi streams, methods not served from the exchange (the server answers
// NOT_SERVED and the call goes by HTTP/2, unprocessed), stock gRPC and Connect
// clients. A server stream (the gateway's WatchTip: connect-stream-call.ts to
// the server's connectStreamHandler, ~150 us of CPU a side on HTTP/2) is answered in parts:
// HEAD (the head and the first part), DATA, END (the last part), or RESPONSE
// when the whole answer was ready at once; RESET gives the call up with
// HTTP/2's error code. The client's REQUEST names the bytes it takes unread
// (":window", STREAM_WINDOW_BYTES) and WINDOW frames give more as its reader
// takes them: a slow reader holds the server's writer, not either side's memory.
//
// A connection starts with PREFACE from the client; the server answers with
// the same bytes. A server that does not speak frames (an older release
// during a rollout) answers otherwise (HTTP/1.1's 400, HTTP/2's GOAWAY) or not
// at all, and the client sends its calls by HTTP/2: once one connection found
// that, no call waits for a preface again; a connection is tried in the
// background every RETRY_FRAMES_AFTER_MS (a rollout may upgrade it). A frame: its length (u32, the rest of the frame),
// its type (u8), the call's id (u32), then its payload. REQUEST and RESPONSE
// carry a head (u32 length, then a JSON object of lower-case names to string
// values: ":path", ":status", the Connect headers) and the body (the rest).
// As HTTP/2 has it: CANCEL gives up a call (the server's handler hears it on
// its signal), REFUSED says a call was not processed (sent again, at most
// MAX_SENDS times), GOAWAY says the server takes no call with a higher id
// (the connection ends once its calls are answered; the client opens another).
import net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import type { PartsExchange, RpcExchange } from "./rpc-exchange.js";

/** The first bytes of a connection, both ways. An HTTP/1.1 parser refuses them at once ('/' in a method), as does HTTP/2's. */
export const FRAMES_PREFACE = Buffer.from("TTIP/FRAMES/1\r\n\r\n");

const REQUEST = 1;
const RESPONSE = 2;
const CANCEL = 3;
const REFUSED = 4;
const GOAWAY = 5;
/** The server serves this call only by HTTP/2 (a stream, a method connect-node serves): sent again there, unprocessed. */
const NOT_SERVED = 6;
/** A streamed answer's head and first part (payload as RESPONSE's); DATA and END follow. */
const HEAD = 7;
/** A part of a streamed answer (the payload is the bytes). */
const DATA = 8;
/** A streamed answer's last part: the call is over. */
const END = 9;
/** The server gave the call up: the payload is HTTP/2's error code (u32), as RST_STREAM's. */
const RESET = 10;
/** The client took this many more bytes (u32) of a streamed answer: the server may send as many more. */
const WINDOW = 11;

/** The request head's name for the bytes of a streamed answer its client takes unread; absent: the client reads only whole answers. */
const WINDOW_HEADER = ":window";
/**
 * Bytes of a streamed answer a client takes before its reader has read them, per call: HTTP/2's
 * default stream window. A message larger than this comes in parts all the same.
 */
export const STREAM_WINDOW_BYTES = 65_535;

/** Length (4), type (1), id (4). */
const FRAME_HEAD_BYTES = 9;

/**
 * A request's body goes in a frame up to this size; a larger one goes by HTTP/2, where the server
 * answers it as ever (RESOURCE_EXHAUSTED past its read limit). Servers read at most 1 MiB by default.
 */
export const FRAME_BODY_MAX_BYTES = 1024 * 1024;
/** A head (path, status, headers) is at most this large: Node's HTTP/2 takes 64 KiB of headers too. */
const HEAD_MAX_BYTES = 64 * 1024;
/** A request frame larger than this breaks the connection (only a client that is not ours sends one). */
const REQUEST_FRAME_MAX_BYTES = FRAME_BODY_MAX_BYTES + HEAD_MAX_BYTES;
/** An answer frame larger than this breaks the connection: a bound on what one answer (or one message of a stream) holds in memory. */
export const ANSWER_MAX_BYTES = 256 * 1024 * 1024;
const ANSWER_FRAME_MAX_BYTES = ANSWER_MAX_BYTES;
/** Calls one connection carries at once (HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS: node's clients take 100 from a server by default). */
const MAX_CALLS_IN_FLIGHT = 1000;
/** Calls one connection carries in all before the client opens another: ids stay below 2^31, so GOAWAY's comparisons hold. */
const MAX_CALLS_PER_CONNECTION = 2 ** 31 - 1024;
/** The server's answer to the preface within this, or the client takes it for a server without frames. */
const PREFACE_TIMEOUT_MS = 5_000;
/** After a server did not speak frames, a connection is tried again this often, in the background (a rollout may upgrade it). */
const RETRY_FRAMES_AFTER_MS = 60_000;

/** The preface's timers; tests make them short. */
export interface FrameLinkTimes {
  /** PREFACE_TIMEOUT_MS */
  prefaceTimeoutMs?: number;
  /** RETRY_FRAMES_AFTER_MS */
  retryFramesAfterMs?: number;
}
/** A connection without a call this long is closed (as the HTTP/2 connection's idle timeout). */
const IDLE_TIMEOUT_MS = 15 * 60_000;
/**
 * Answers a server holds unsent before it reads no more calls from that connection until they are
 * sent: a client that sends calls but does not read their answers would otherwise grow the
 * process's memory without end (each answer up to what its handler writes).
 */
const SERVER_UNSENT_MAX_BYTES = 1024 * 1024;

/** An answer as the HTTP/2 exchange gives it: the status, the headers (trailer-* included), the body. */
export type FrameAnswer = { status: number; header: Record<string, string | undefined>; body: Uint8Array };
/** The call was not processed: it may be sent again. */
export const FRAME_REFUSED = Symbol("refused unprocessed");
/** The call goes by HTTP/2: the server does not speak frames, or does not serve it from a frame. */
export const BY_HTTP2 = Symbol("by HTTP/2");
export type FrameOutcome = FrameAnswer | typeof FRAME_REFUSED | typeof BY_HTTP2;

/** A streamed answer's head, and its body as it comes. */
export type FrameStreamAnswer = { status: number; header: Record<string, string | undefined>; body: FrameStreamBody };
export type FrameStreamOutcome = FrameStreamAnswer | typeof FRAME_REFUSED | typeof BY_HTTP2;

/** The server reset the call (RESET) with this HTTP/2 error code. */
export class FrameReset extends Error {
  constructor(readonly rstCode: number) {
    super(`the server reset the call with HTTP/2 error code ${rstCode}`);
  }
}

/**
 * Frames from a byte stream: each whole frame handed on as its type, id and
 * payload (a view of the bytes read); a frame longer than `max` is an error.
 */
class FrameReader {
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** No frame handed on until release(): the bytes read wait (at most one read's, the socket paused). */
  #held = false;

  constructor(
    private readonly max: number,
    private readonly onFrame: (type: number, id: number, payload: Buffer) => void,
  ) {}

  /** Reads `chunk`; false when a frame is malformed or over the bound (the connection is to be broken). */
  push(chunk: Buffer): boolean {
    let buf = chunk;
    if (this.#buffered > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      const needed = this.#needed();
      if (needed === undefined) return false;
      // Joined only once the frame waited for is whole (a large frame arrives in many reads).
      if (this.#buffered < needed) return true;
      buf = Buffer.concat(this.#chunks, this.#buffered);
      this.#chunks = [];
      this.#buffered = 0;
    }
    let at = 0;
    while (!this.#held && buf.length - at >= FRAME_HEAD_BYTES) {
      const length = buf.readUInt32BE(at);
      if (length > this.max || length < FRAME_HEAD_BYTES - 4) return false;
      if (buf.length - at - 4 < length) break;
      this.onFrame(buf[at + 4], buf.readUInt32BE(at + 5), buf.subarray(at + FRAME_HEAD_BYTES, at + 4 + length));
      at += 4 + length;
    }
    if (at === buf.length) return true;
    this.#chunks = [buf.subarray(at)];
    this.#buffered = buf.length - at;
    return this.#needed() !== undefined;
  }

  /** Hands on no frame until release(). */
  hold(): void {
    this.#held = true;
  }

  /** Hands on the frames read while held; false as push(). */
  release(): boolean {
    this.#held = false;
    if (this.#buffered === 0) return true;
    const rest = Buffer.concat(this.#chunks, this.#buffered);
    this.#chunks = [];
    this.#buffered = 0;
    return this.push(rest);
  }

  /** Bytes the next frame needs in all (its head's, until its length is known); undefined: over the bound. */
  #needed(): number | undefined {
    const first = this.#chunks[0];
    if (first.length < 4) return FRAME_HEAD_BYTES;
    const length = first.readUInt32BE(0);
    return length > this.max ? undefined : Math.max(FRAME_HEAD_BYTES, 4 + length);
  }
}

/** A frame: its head and, for REQUEST, RESPONSE and HEAD, the head's JSON and the body; for DATA and END the body alone. */
function frame(type: number, id: number, head?: Buffer, body?: Uint8Array): Buffer[] {
  const prefix = Buffer.allocUnsafe(FRAME_HEAD_BYTES + (head ? 4 : 0));
  const bodyBytes = body?.byteLength ?? 0;
  const payload = (head ? 4 + head.length : 0) + bodyBytes;
  prefix.writeUInt32BE(FRAME_HEAD_BYTES - 4 + payload, 0);
  prefix[4] = type;
  prefix.writeUInt32BE(id, 5);
  if (head) prefix.writeUInt32BE(head.length, FRAME_HEAD_BYTES);
  const parts = head ? [prefix, head] : [prefix];
  if (bodyBytes > 0) parts.push(body as Buffer);
  return parts;
}

/** A frame whose payload is one number (RESET's error code, WINDOW's bytes). */
function numberFrame(type: number, id: number, n: number): Buffer[] {
  const buf = Buffer.allocUnsafe(FRAME_HEAD_BYTES + 4);
  buf.writeUInt32BE(FRAME_HEAD_BYTES, 0);
  buf[4] = type;
  buf.writeUInt32BE(id, 5);
  buf.writeUInt32BE(n, FRAME_HEAD_BYTES);
  return [buf];
}

/** A frame's number payload; undefined when malformed. */
function numberOf(payload: Buffer): number | undefined {
  return payload.length === 4 ? payload.readUInt32BE(0) : undefined;
}

/** A REQUEST or RESPONSE payload's head and body; undefined when malformed. */
function headAndBody(payload: Buffer): { head: Record<string, string>; body: Buffer } | undefined {
  if (payload.length < 4) return undefined;
  const headLength = payload.readUInt32BE(0);
  if (headLength > HEAD_MAX_BYTES || 4 + headLength > payload.length) return undefined;
  try {
    const head: unknown = JSON.parse(payload.toString("utf8", 4, 4 + headLength));
    if (typeof head !== "object" || head === null || Array.isArray(head)) return undefined;
    for (const value of Object.values(head)) if (typeof value !== "string") return undefined;
    return { head: head as Record<string, string>, body: payload.subarray(4 + headLength) };
  } catch {
    return undefined;
  }
}

/**
 * Frames written in one turn of the event loop in one write, at its end (setImmediate): every write is
 * a system call here and wakes the other side. Answers to calls finish in tasks of their own (each
 * PostgreSQL or peer reply its own socket read), as do calls made from them; uncorked at the end of
 * each task (process.nextTick, before) they went out one write each. The delay is the rest of the
 * turn; socket.end() sends what is corked at once.
 */
export class CorkedWriter {
  /** Benches only (bench/frames-writes.ts): a write per task, as before, to compare. */
  static perTask = false;
  #corked = false;
  readonly #uncork = () => {
    this.#corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: net.Socket) {}

  write(parts: Buffer[]): void {
    if (this.socket.destroyed) return;
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      if (CorkedWriter.perTask) process.nextTick(this.#uncork);
      else setImmediate(this.#uncork);
    }
    for (const part of parts) this.socket.write(part);
  }
}

// ---------------------------------------------------------------- the client

/** What becomes of a call at a frame for it: still open, over, or a frame no server of ours sends (the connection is broken). */
type Step = "open" | "over" | "broken";

/** A call on a client's connection, unary or streamed. */
interface PendingCall {
  signal: AbortSignal;
  onAbort(): void;
  /** A frame for this call. */
  frame(type: number, payload: Buffer): Step;
  /** The connection is gone; `refused`: the server did not take the call (sent again). */
  lost(refused: boolean): void;
  /** Given up by its caller (`reason`: the signal's) or its reader (none). */
  cancelled(reason: ConnectError | undefined): void;
}

function lostConnection(): ConnectError {
  return new ConnectError("the connection to the server was lost", Code.Unavailable);
}

function malformedAnswer(): ConnectError {
  return new ConnectError("a malformed answer frame", Code.Internal);
}

/** A unary call: one answer frame. */
function unaryCall(resolve: (outcome: FrameOutcome) => void, reject: (err: unknown) => void, signal: AbortSignal, onAbort: () => void): PendingCall {
  return {
    signal,
    onAbort,
    frame(type, payload) {
      if (type === REFUSED) resolve(FRAME_REFUSED);
      else if (type === NOT_SERVED) resolve(BY_HTTP2);
      else {
        const parts = type === RESPONSE ? headAndBody(payload) : undefined;
        const status = Number(parts?.head[":status"]);
        if (!parts || !Number.isInteger(status)) reject(malformedAnswer());
        else resolve({ status, header: parts.head, body: parts.body });
      }
      return "over";
    },
    lost: (refused) => (refused ? resolve(FRAME_REFUSED) : reject(lostConnection())),
    cancelled: (reason) => reject(reason),
  };
}

/**
 * A streamed answer's body as its frames come: each part handed to the reader
 * as it asks, at most STREAM_WINDOW_BYTES unread (the server sends no more
 * until told: WINDOW once the reader took half of it). Ends at END, fails at
 * RESET (FrameReset) or when the connection is lost; a reader that stops
 * (return) cancels the call.
 */
export class FrameStreamBody implements AsyncIterable<Buffer> {
  #parts: Buffer[] = [];
  #unread = 0;
  /** Bytes the reader took that no WINDOW has given back to the server yet. */
  #taken = 0;
  #ended = false;
  #error: unknown;
  #waiting: { resolve(r: IteratorResult<Buffer>): void; reject(err: unknown): void } | undefined;

  constructor(private readonly conn: { more(id: number, bytes: number): void; cancel(id: number): void }, private readonly id: number) {}

  /** A part from the server; false when past the window it was given (the server is not ours: the connection is broken). */
  push(part: Buffer): boolean {
    if (part.length === 0 || this.#ended) return true;
    if (this.#unread + this.#taken + part.length > STREAM_WINDOW_BYTES) return false;
    const waiting = this.#waiting;
    if (waiting) {
      this.#waiting = undefined;
      this.#took(part.length);
      waiting.resolve({ done: false, value: part });
    } else {
      this.#parts.push(part);
      this.#unread += part.length;
    }
    return true;
  }

  /** The answer came whole in one frame, before any read: the reader gets it, then its end. */
  whole(answer: Buffer): void {
    if (answer.length > 0) this.#parts.push(answer);
    this.#unread += answer.length;
    this.finish();
  }

  /** The answer is complete: the reader gets what is left, then its end. */
  finish(): void {
    this.#ended = true;
    this.#wake();
  }

  /** The answer is cut short: the reader's next read fails with `err` (what came unread is dropped, as a reset stream's). */
  fail(err: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = err;
    this.#parts = [];
    this.#unread = 0;
    this.#wake();
  }

  #wake(): void {
    const waiting = this.#waiting;
    if (!waiting || this.#parts.length > 0) return;
    this.#waiting = undefined;
    if (this.#error !== undefined) waiting.reject(this.#error);
    else waiting.resolve({ done: true, value: undefined });
  }

  #took(bytes: number): void {
    this.#taken += bytes;
    if (this.#ended || this.#taken < STREAM_WINDOW_BYTES / 2) return;
    this.conn.more(this.id, this.#taken);
    this.#taken = 0;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: () => {
        const part = this.#parts.shift();
        if (part) {
          this.#unread -= part.length;
          this.#took(part.length);
          return Promise.resolve({ done: false, value: part });
        }
        if (this.#error !== undefined) return Promise.reject(this.#error);
        if (this.#ended) return Promise.resolve({ done: true, value: undefined });
        return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
      },
      return: () => {
        this.cancel();
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }

  /** The reader stops: the call is cancelled (the server's handler hears it) unless it is over. */
  cancel(): void {
    if (this.#ended) return;
    this.fail(new ConnectError("the stream's reader stopped", Code.Canceled));
    this.conn.cancel(this.id);
  }
}

/** A call answered in parts: its head first (the call resolves), then its body's frames. */
class StreamCall implements PendingCall {
  #body: FrameStreamBody | undefined;

  constructor(
    private readonly conn: ClientConnection,
    private readonly id: number,
    private readonly resolve: (outcome: FrameStreamOutcome) => void,
    private readonly reject: (err: unknown) => void,
    readonly signal: AbortSignal,
    readonly onAbort: () => void,
  ) {}

  frame(type: number, payload: Buffer): Step {
    const body = this.#body;
    if (body) {
      if (type === DATA) return body.push(payload) ? "open" : "broken";
      if (type === END) return body.push(payload) ? (body.finish(), "over") : "broken";
      if (type !== RESET) return "broken";
      body.fail(new FrameReset(numberOf(payload) ?? 0));
      return "over";
    }
    if (type === REFUSED) return this.resolve(FRAME_REFUSED), "over";
    if (type === NOT_SERVED) return this.resolve(BY_HTTP2), "over";
    if (type === RESET) return this.reject(new FrameReset(numberOf(payload) ?? 0)), "over";
    const parts = type === RESPONSE || type === HEAD ? headAndBody(payload) : undefined;
    const status = Number(parts?.head[":status"]);
    if (!parts || !Number.isInteger(status)) return this.reject(malformedAnswer()), "broken";
    const opened = (this.#body = new FrameStreamBody(this.conn, this.id));
    // A whole answer (respond(): a check's refusal, say) is held already, within ANSWER_MAX_BYTES: no window bounds it.
    if (type === RESPONSE) opened.whole(parts.body);
    else if (!opened.push(parts.body)) return this.reject(malformedAnswer()), "broken";
    this.resolve({ status, header: parts.head, body: opened });
    return type === RESPONSE ? "over" : "open";
  }

  lost(refused: boolean): void {
    if (this.#body) this.#body.fail(lostConnection());
    else if (refused) this.resolve(FRAME_REFUSED);
    else this.reject(lostConnection());
  }

  cancelled(reason: ConnectError | undefined): void {
    if (!this.#body) this.reject(reason);
    else if (reason) this.#body.fail(reason);
  }
}

/** One connection a client's calls go on. */
class ClientConnection {
  readonly #pending = new Map<number, PendingCall>();
  readonly #writer: CorkedWriter;
  readonly #reader: FrameReader;
  #nextId = 1;
  /** The server's GOAWAY: the last id it takes; the calls after it were not processed. */
  #lastTaken: number | undefined;
  /** Takes no new calls (GOAWAY, its ids spent, closed). */
  retired = false;

  constructor(
    readonly socket: net.Socket,
    private readonly gone: (conn: ClientConnection) => void,
  ) {
    this.#writer = new CorkedWriter(socket);
    this.#reader = new FrameReader(ANSWER_FRAME_MAX_BYTES, (type, id, payload) => this.#onFrame(type, id, payload));
    socket.on("data", (chunk: Buffer) => this.read(chunk));
    // A socket's error is followed by its close, which the calls hear.
    socket.on("error", () => undefined);
    socket.once("close", () => this.#lost());
    // Idle: retired first, so no new call is sent on a connection that is ending (it would fail unsent).
    // A listener of its own: the timer fires again after the next read or write (a call was on it).
    socket.setTimeout(IDLE_TIMEOUT_MS);
    socket.on("timeout", () => {
      if (this.#pending.size === 0) this.#retire();
    });
  }

  /** Bytes from the server; a malformed frame, or one over the bound, breaks the connection. */
  read(chunk: Buffer): void {
    if (chunk.length && !this.#reader.push(chunk)) this.socket.destroy();
  }

  call(path: string, headers: Record<string, unknown>, body: Uint8Array, signal: AbortSignal): Promise<FrameOutcome> {
    return this.#send(path, headers, body, signal, (id, resolve, reject, onAbort) => unaryCall(resolve, reject, signal, onAbort));
  }

  /** A call answered in parts (a server stream): resolves at its head. */
  stream(path: string, headers: Record<string, unknown>, body: Uint8Array, signal: AbortSignal): Promise<FrameStreamOutcome> {
    headers[WINDOW_HEADER] = String(STREAM_WINDOW_BYTES);
    try {
      return this.#send(path, headers, body, signal, (id, resolve, reject, onAbort) => new StreamCall(this, id, resolve, reject, signal, onAbort));
    } finally {
      delete headers[WINDOW_HEADER];
    }
  }

  #send<T>(
    path: string,
    headers: Record<string, unknown>,
    body: Uint8Array,
    signal: AbortSignal,
    pending: (id: number, resolve: (outcome: T) => void, reject: (err: unknown) => void, onAbort: () => void) => PendingCall,
  ): Promise<T> {
    if (signal.aborted) return Promise.reject(ConnectError.from(signal.reason));
    const id = this.#nextId++;
    headers[":path"] = path;
    const head = Buffer.from(JSON.stringify(headers));
    delete headers[":path"];
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => this.#cancel(id, ConnectError.from(signal.reason));
      signal.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(id, pending(id, resolve, reject, onAbort));
      this.#writer.write(frame(REQUEST, id, head, body));
      // Its ids spent: this call is its last (it ends once the calls on it are answered).
      if (this.#nextId >= MAX_CALLS_PER_CONNECTION) this.#retire();
    });
  }

  /** The caller or the reader gave the call up: CANCEL, and the server's handler hears it. */
  #cancel(id: number, reason: ConnectError | undefined): void {
    const call = this.#settle(id);
    if (!call) return;
    this.#writer.write(frame(CANCEL, id));
    call.cancelled(reason);
  }

  /** A streamed answer's reader stopped before its end. */
  cancel(id: number): void {
    this.#cancel(id, undefined);
  }

  /** A streamed answer's reader took `bytes` more: the server may send as many more. */
  more(id: number, bytes: number): void {
    if (this.#pending.has(id)) this.#writer.write(numberFrame(WINDOW, id, bytes));
  }

  /** No new calls; the connection ends once its calls are answered. */
  #retire(): void {
    this.retired = true;
    this.gone(this);
    if (this.#pending.size === 0) this.socket.end();
  }

  #settle(id: number): PendingCall | undefined {
    const call = this.#pending.get(id);
    if (!call) return undefined; // given up already (its CANCEL crossed the answer)
    this.#pending.delete(id);
    call.signal.removeEventListener("abort", call.onAbort);
    if (this.retired && this.#pending.size === 0) this.socket.end();
    return call;
  }

  #onFrame(type: number, id: number, payload: Buffer): void {
    if (type === GOAWAY) {
      this.#lastTaken = id;
      // Calls after its last were not taken: each is sent again, as a refused stream.
      for (const callId of [...this.#pending.keys()]) if (callId > id) this.#settle(callId)?.lost(true);
      return this.#retire();
    }
    const call = this.#pending.get(id);
    if (!call) return; // given up already (its CANCEL crossed the answer)
    const step = call.frame(type, payload);
    if (step !== "open") this.#settle(id);
    if (step === "broken") this.socket.destroy();
  }

  /** The connection closed: calls the server did not take are sent again, the others failed UNAVAILABLE (as HTTP/2's lost connection). */
  #lost(): void {
    this.retired = true;
    this.gone(this);
    for (const [id, call] of [...this.#pending]) {
      this.#settle(id);
      call.lost(this.#lastTaken !== undefined && id > this.#lastTaken);
    }
  }

  /** Every call fails at once (the process stopping). */
  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * A client's frames to one server: one connection for every call, opened at
 * the first call and again after the last one ended; BY_HTTP2 while the
 * server does not speak frames. Never holds the process open.
 */
export class FrameLink {
  readonly #host: string;
  readonly #port: number;
  #current: ClientConnection | undefined;
  #opening: Promise<ClientConnection | undefined> | undefined;
  /**
   * What the server answered the last preface with: unknown (no answer yet), frames, or not. While
   * not, every call goes by HTTP/2 at once and connections are tried in the background: behind a
   * proxy that swallows the preface, calls would otherwise each wait for its timeout.
   */
  #speaks: "unknown" | "frames" | "http2" = "unknown";
  /** When a connection is next tried in the background, while the server does not speak frames. */
  #retryAt = 0;
  #closed = false;
  readonly #live = new Set<ClientConnection>();
  readonly #prefaceTimeoutMs: number;
  readonly #retryAfterMs: number;

  constructor(url: string, times: FrameLinkTimes = {}) {
    this.#prefaceTimeoutMs = times.prefaceTimeoutMs ?? PREFACE_TIMEOUT_MS;
    this.#retryAfterMs = times.retryFramesAfterMs ?? RETRY_FRAMES_AFTER_MS;
    const u = new URL(url);
    this.#host = u.hostname.replace(/^\[(.*)\]$/, "$1");
    this.#port = Number(u.port || 80);
  }

  /** One call: its answer, FRAME_REFUSED (send again) or BY_HTTP2 (send it by HTTP/2); rejects as HTTP/2's exchange does. */
  exchange(path: string, headers: Record<string, unknown>, body: Uint8Array, signal: AbortSignal): Promise<FrameOutcome> {
    return this.#onConnection(body, signal, (conn) => conn.call(path, headers, body, signal));
  }

  /** One call answered in parts (a server stream): its head and body, FRAME_REFUSED or BY_HTTP2; rejects as exchange(). */
  stream(path: string, headers: Record<string, unknown>, body: Uint8Array, signal: AbortSignal): Promise<FrameStreamOutcome> {
    return this.#onConnection(body, signal, (conn) => conn.stream(path, headers, body, signal));
  }

  /** `send` on the current connection, opened if needed; BY_HTTP2 where frames do not go. */
  #onConnection<T>(body: Uint8Array, signal: AbortSignal, send: (conn: ClientConnection) => Promise<T>): Promise<T | typeof BY_HTTP2> {
    if (this.#closed) return Promise.reject(closing());
    if (body.byteLength > FRAME_BODY_MAX_BYTES) return Promise.resolve(BY_HTTP2);
    const conn = this.#current;
    if (conn && !conn.retired) return send(conn);
    if (this.#speaks === "http2") {
      this.#tryInBackground();
      return Promise.resolve(BY_HTTP2);
    }
    return new Promise<T | typeof BY_HTTP2>((resolve, reject) => {
      if (signal.aborted) return reject(ConnectError.from(signal.reason));
      // Given up while the connection opens (a peer that does not answer): the call was sent nowhere.
      const onAbort = () => reject(ConnectError.from(signal.reason));
      signal.addEventListener("abort", onAbort, { once: true });
      this.#open().then(
        (c) => {
          signal.removeEventListener("abort", onAbort);
          if (signal.aborted) return;
          if (!c) return resolve(BY_HTTP2);
          send(c).then(resolve, reject);
        },
        (err: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(err instanceof ConnectError ? err : new ConnectError(`cannot reach the server: ${(err as Error).message}`, Code.Unavailable, undefined, undefined, err));
        },
      );
    });
  }

  /** Every connection closed at once: calls on their way fail UNAVAILABLE, new ones are refused. */
  close(): void {
    this.#closed = true;
    for (const conn of this.#live) conn.destroy();
    this.#live.clear();
    this.#current = undefined;
  }

  /** Opens a connection no call waits for, at most once per RETRY_FRAMES_AFTER_MS: the calls after it go in frames if it does. */
  #tryInBackground(): void {
    if (this.#opening || Date.now() < this.#retryAt) return;
    this.#retryAt = Date.now() + this.#retryAfterMs;
    this.#open().catch(() => undefined); // unreachable: the calls by HTTP/2 say so
  }

  /** The current connection, opened if needed; undefined when the server does not speak frames. */
  #open(): Promise<ClientConnection | undefined> {
    return (this.#opening ??= this.#connect().finally(() => (this.#opening = undefined)));
  }

  #connect(): Promise<ClientConnection | undefined> {
    return new Promise((resolve, reject) => {
      if (this.#closed) return reject(closing());
      const socket = net.connect({ host: this.#host, port: this.#port, noDelay: true });
      socket.unref();
      let heard = Buffer.alloc(0);
      let connected = false;
      const done = (outcome: "frames" | "http2" | Error) => {
        clearTimeout(timer);
        socket.off("data", onData).off("error", onError).off("close", onClose).off("connect", onConnect);
        if (outcome === "frames") {
          if (this.#closed) {
            socket.destroy();
            return reject(closing());
          }
          const conn = new ClientConnection(socket, (c) => {
            if (this.#current === c) this.#current = undefined;
            if (c.socket.destroyed || c.socket.closed) this.#live.delete(c);
          });
          socket.once("close", () => this.#live.delete(conn));
          this.#live.add(conn);
          this.#current = conn;
          this.#speaks = "frames";
          // Bytes read with the preface's last ones are the first frames.
          conn.read(heard.subarray(FRAMES_PREFACE.length));
          return resolve(conn);
        }
        socket.destroy();
        if (outcome === "http2") {
          this.#speaks = "http2";
          this.#retryAt = Date.now() + this.#retryAfterMs;
          return resolve(undefined);
        }
        reject(outcome);
      };
      const onConnect = () => {
        connected = true;
        socket.write(FRAMES_PREFACE);
      };
      const onData = (chunk: Buffer) => {
        heard = Buffer.concat([heard, chunk]);
        const n = Math.min(heard.length, FRAMES_PREFACE.length);
        if (!heard.subarray(0, n).equals(FRAMES_PREFACE.subarray(0, n))) return done("http2");
        if (heard.length >= FRAMES_PREFACE.length) done("frames");
      };
      const onError = (err: Error) => done(connected ? "http2" : err);
      // Closed after it connected, without the preface back: a server that does not speak frames.
      const onClose = () => done(connected ? "http2" : new ConnectError("the connection closed before it opened", Code.Unavailable));
      const timer = setTimeout(() => done(connected ? "http2" : new ConnectError("cannot reach the server: no connection in time", Code.Unavailable)), this.#prefaceTimeoutMs);
      timer.unref();
      socket.once("connect", onConnect);
      socket.on("data", onData);
      socket.once("error", onError);
      socket.once("close", onClose);
    });
  }
}

function closing(): ConnectError {
  return new ConnectError("the connection is closed (its process is stopping)", Code.Unavailable);
}

// ---------------------------------------------------------------- the server

export interface FrameServerOptions {
  /** Answers the call from its exchange (true), or leaves it (false: the client sends it by HTTP/2). */
  serve(exchange: RpcExchange): boolean;
  /** Told of each call taken, for the drain's count (the exchange's close ends it). */
  track(exchange: RpcExchange): void;
  /** A connection is told GOAWAY after this long (0: never), as the server's HTTP/2 sessions. */
  maxAgeMs: number;
  /** A connection with no call and no byte either way this long is told GOAWAY, and cut after as long again (SERVER_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number;
}

/**
 * A server's connection idle this long is told GOAWAY: anyone who reaches the port could otherwise
 * hold connections open by sending nothing. Longer than its clients' IDLE_TIMEOUT_MS, so ours close
 * their idle connections first and a GOAWAY seldom crosses a call (one that does is sent again).
 */
export const SERVER_IDLE_TIMEOUT_MS = 20 * 60_000;

/** The server's side: connections handed over by their first bytes, and GOAWAY to all of them on drain. */
export function frameServer(options: FrameServerOptions): { accept(socket: net.Socket, head: Buffer): void; goAway(): void } {
  const connections = new Set<ServerConnection>();
  return {
    accept(socket, head) {
      const conn = new ServerConnection(socket, options);
      connections.add(conn);
      socket.once("close", () => connections.delete(conn));
      conn.start(head.subarray(FRAMES_PREFACE.length));
    },
    goAway() {
      for (const conn of connections) conn.goAway();
    },
  };
}

class ServerConnection {
  readonly #calls = new Map<number, FrameExchange>();
  readonly #writer: CorkedWriter;
  readonly #reader: FrameReader;
  #lastId = 0;
  #goneAway = false;
  /** Reading paused until the answers written are sent (SERVER_UNSENT_MAX_BYTES). */
  #paused = false;
  readonly authority: string;

  constructor(
    readonly socket: net.Socket,
    private readonly options: FrameServerOptions,
  ) {
    this.#writer = new CorkedWriter(socket);
    this.#reader = new FrameReader(REQUEST_FRAME_MAX_BYTES, (type, id, payload) => this.#onFrame(type, id, payload));
    this.authority = `${socket.localAddress ?? "localhost"}:${socket.localPort ?? 0}`;
  }

  start(first: Buffer): void {
    const { socket } = this;
    this.#writer.write([FRAMES_PREFACE]);
    // Node re-arms the timer on every read and write, and again after it fired once there is any.
    socket.setTimeout(this.options.idleTimeoutMs ?? SERVER_IDLE_TIMEOUT_MS);
    socket.on("timeout", () => this.#idle());
    socket.on("data", (chunk: Buffer) => this.#read(chunk));
    // The connection gone: every call on it hears it, as a handler hears a lost HTTP/2 stream.
    socket.once("close", () => {
      for (const exchange of [...this.#calls.values()]) exchange.abandon();
    });
    if (this.options.maxAgeMs > 0) {
      // Jitter, so connections opened together do not all reconnect at once.
      const timer = setTimeout(() => this.goAway(), this.options.maxAgeMs * (0.9 + Math.random() * 0.2));
      timer.unref();
      socket.once("close", () => clearTimeout(timer));
    }
    if (first.length) this.#read(first);
    if (!this.#paused) socket.resume();
  }

  #read(chunk: Buffer): void {
    // Past the bound or malformed: not our client; the connection is broken (its calls hear it).
    if (!this.#reader.push(chunk)) this.socket.destroy();
  }

  /** No call with a higher id is taken; the connection ends once its calls are answered. */
  goAway(): void {
    if (this.#goneAway) return;
    this.#goneAway = true;
    this.#write(frame(GOAWAY, this.#lastId));
    this.#endIfDone();
  }

  /**
   * Nothing read or written for the idle timeout: a connection without calls is told GOAWAY (it ends once
   * the client reads it and closes); one told already and still open an idle period later is cut.
   * A call running that long (no deadline) keeps the connection: its answer re-arms the timer.
   */
  #idle(): void {
    if (this.#calls.size > 0) return;
    if (this.#goneAway) return void this.socket.destroy();
    this.goAway();
  }

  #endIfDone(): void {
    if (this.#goneAway && this.#calls.size === 0 && !this.socket.destroyed) this.socket.end();
  }

  #onFrame(type: number, id: number, payload: Buffer): void {
    if (type === CANCEL) return void this.#calls.get(id)?.abandon();
    if (type === WINDOW) {
      const bytes = numberOf(payload);
      if (bytes === undefined) return void this.socket.destroy();
      return void this.#calls.get(id)?.more(bytes);
    }
    if (type !== REQUEST) return void this.socket.destroy();
    if (this.#goneAway) return this.#write(frame(REFUSED, id));
    if (id <= this.#lastId) return void this.socket.destroy(); // ids only grow
    this.#lastId = id;
    const parts = headAndBody(payload);
    const path = parts?.head[":path"];
    if (!parts || !path) return void this.socket.destroy();
    if (this.#calls.size >= MAX_CALLS_IN_FLIGHT) return this.answer(id, 429, { "content-type": "application/json" }, Buffer.from(JSON.stringify({ code: "resource_exhausted", message: `more than ${MAX_CALLS_IN_FLIGHT} calls at once on one connection` })));
    const window = parts.head[WINDOW_HEADER];
    delete parts.head[WINDOW_HEADER];
    const exchange = new FrameExchange(this, id, path, parts.head, parts.body, window === undefined ? undefined : windowOf(window));
    this.#calls.set(id, exchange);
    this.options.track(exchange);
    if (this.options.serve(exchange)) return;
    exchange.abandon();
    this.#write(frame(NOT_SERVED, id));
  }

  answer(id: number, status: number, headers: Record<string, string>, body: Uint8Array, trailers?: Record<string, string>): void {
    const head: Record<string, string> = { ":status": String(status), ...headers };
    if (trailers) for (const key in trailers) head[`trailer-${key}`] = trailers[key];
    this.#write(frame(RESPONSE, id, Buffer.from(JSON.stringify(head)), body));
  }

  /** A part of a streamed answer: HEAD or RESPONSE with `head`, DATA or END without. */
  part(id: number, type: number, head: Record<string, string> | undefined, body: Uint8Array): void {
    this.#write(frame(type, id, head && Buffer.from(JSON.stringify(head)), body));
  }

  /** The call given up by the server, with HTTP/2's error code. */
  reset(id: number, rstCode: number): void {
    this.#write(numberFrame(RESET, id, rstCode));
  }

  /** Writes a frame; past SERVER_UNSENT_MAX_BYTES unsent, no more calls are read until the client has read them. */
  #write(parts: Buffer[]): void {
    this.#writer.write(parts);
    const { socket } = this;
    if (this.#paused || socket.destroyed || socket.writableLength <= SERVER_UNSENT_MAX_BYTES) return;
    this.#paused = true;
    this.#reader.hold(); // the calls left in this read wait too
    socket.pause();
    socket.once("drain", () => {
      this.#paused = false;
      if (!this.#reader.release()) return void socket.destroy();
      if (!this.#paused) socket.resume();
    });
  }

  ended(id: number): void {
    this.#calls.delete(id);
    this.#endIfDone();
  }
}

/** A client's window (its REQUEST's ":window"): bytes, at most MAX_WINDOW_BYTES. */
function windowOf(value: string): number {
  const bytes = Number(value);
  return Number.isInteger(bytes) && bytes > 0 ? Math.min(bytes, MAX_WINDOW_BYTES) : STREAM_WINDOW_BYTES;
}
/**
 * The most a client's window and its grants add up to: the window our clients take (they never
 * hold more unread). A client's word alone (up to 2 GiB) would let one call's answer fill the
 * process's memory unsent, its handler never held.
 */
const MAX_WINDOW_BYTES = STREAM_WINDOW_BYTES;

/** HTTP/2's INTERNAL_ERROR (RFC 9113, 7): a RESET's code when the server gives an answer up. */
const INTERNAL_ERROR = 2;

/**
 * One call from a frame, served as any RPC exchange: its body whole already.
 * Answered whole (respond), or in parts when its client reads them (a server
 * stream: `window` set), never more unread by the client than its window.
 */
class FrameExchange implements PartsExchange {
  readonly method = "POST";
  readonly authority: string;
  readonly headers: Record<string, string>;
  readonly rawHeaders: string[] = [];
  readonly body = undefined;
  #closed = false;
  #listeners: Array<() => void> = [];

  constructor(
    private readonly conn: ServerConnection,
    private readonly id: number,
    readonly url: string,
    head: Record<string, string>,
    private readonly bytes: Buffer,
    /** Bytes the client takes unread, for an answer in parts; undefined: it reads only whole answers. */
    window: number | undefined,
  ) {
    this.#credit = window;
    this.authority = conn.authority;
    this.headers = {};
    for (const key in head) {
      const name = key.toLowerCase();
      this.headers[name] = head[key];
      this.rawHeaders.push(name, head[key]);
    }
    this.headers["content-length"] = String(bytes.length);
  }

  get socket() {
    return this.conn.socket;
  }

  get closed(): boolean {
    return this.#closed;
  }

  onClose(listener: () => void): void {
    this.#listeners.push(listener);
  }

  offClose(listener: () => void): void {
    const at = this.#listeners.indexOf(listener);
    if (at >= 0) this.#listeners.splice(at, 1);
  }

  respond(status: number, headers: Record<string, string>, body: Uint8Array, trailers?: Record<string, string>): void {
    if (this.#closed) return;
    this.conn.answer(this.id, status, headers, body, trailers);
    this.#end();
  }

  /** The call is over unanswered: the client gave up, or the connection is gone. */
  abandon(): void {
    if (!this.#closed) this.#end();
  }

  #end(): void {
    this.#closed = true;
    this.#unsent = [];
    this.#unsentBytes = 0;
    this.#wakeWriter();
    this.conn.ended(this.id);
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const listener of listeners) listener();
  }

  // ------------------------------------------------ an answer in parts

  /** Bytes the client may still be sent; undefined: it reads only whole answers. */
  #credit: number | undefined;
  #head: Record<string, string> | undefined;
  #headSent = false;
  /** Parts written and not sent yet (past the client's window). */
  #unsent: Uint8Array[] = [];
  #unsentBytes = 0;
  #ending = false;
  /** The writer waits for the client's window. */
  #writable: { promise: Promise<void>; resolve(): void } | undefined;

  get inParts(): boolean {
    return this.#credit !== undefined;
  }

  writeHead(status: number, headers: Record<string, string>): void {
    this.#head = { ":status": String(status), ...headers };
  }

  write(chunk: Uint8Array): Promise<void> | undefined {
    if (this.#closed || this.#ending) return undefined;
    this.#queue(chunk);
    this.#pump();
    if (this.#unsentBytes === 0) return undefined;
    if (!this.#writable) {
      let resolve = () => {};
      const promise = new Promise<void>((r) => (resolve = r));
      this.#writable = { promise, resolve };
    }
    return this.#writable.promise;
  }

  end(chunk: Uint8Array): void {
    if (this.#closed || this.#ending) return;
    this.#queue(chunk);
    this.#ending = true;
    this.#pump();
  }

  reset(): void {
    if (this.#closed) return;
    this.conn.reset(this.id, INTERNAL_ERROR);
    this.#end();
  }

  /** WINDOW: the client's reader took `bytes` more. */
  more(bytes: number): void {
    if (this.#credit === undefined || this.#closed) return;
    this.#credit = Math.min(this.#credit + bytes, MAX_WINDOW_BYTES);
    this.#pump();
  }

  #queue(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.#unsent.push(chunk);
    this.#unsentBytes += chunk.byteLength;
  }

  /** Sends what the client's window takes: the head with the first part, the end with the last. */
  #pump(): void {
    if (this.#closed) return;
    const n = Math.min(this.#credit ?? 0, this.#unsentBytes);
    const last = this.#ending && n === this.#unsentBytes;
    if (n === 0 && !last) return;
    const bytes = this.#take(n);
    this.#credit = (this.#credit ?? 0) - n;
    const head = this.#headSent ? undefined : (this.#head ?? { ":status": "200" });
    this.#headSent = true;
    this.conn.part(this.id, head ? (last ? RESPONSE : HEAD) : last ? END : DATA, head, bytes);
    if (last) return this.#end();
    if (this.#unsentBytes === 0) this.#wakeWriter();
  }

  /** The first `n` bytes of the unsent parts, taken off them. */
  #take(n: number): Uint8Array {
    if (n === this.#unsentBytes) {
      const all = this.#unsent.length === 1 ? this.#unsent[0] : Buffer.concat(this.#unsent);
      this.#unsent = [];
      this.#unsentBytes = 0;
      return all;
    }
    const joined = Buffer.concat(this.#unsent);
    this.#unsent = [joined.subarray(n)];
    this.#unsentBytes -= n;
    return joined.subarray(0, n);
  }

  #wakeWriter(): void {
    const writable = this.#writable;
    this.#writable = undefined;
    writable?.resolve();
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    let read = false;
    return {
      next: () => {
        if (read || this.bytes.length === 0) return Promise.resolve({ done: true, value: undefined });
        read = true;
        return Promise.resolve({ done: false, value: this.bytes });
      },
    };
  }
}
