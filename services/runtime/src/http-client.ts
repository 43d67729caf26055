// Calls to outside HTTP APIs (Safaricom, SMS and e-mail providers, PayPal)
// over kept HTTP/1.1 connections on net/tls sockets, with the answer read by
// http1-answer.ts: node:http's agent, ClientRequest and IncomingMessage cost
// several times the socket's own work per call (bench/http-client.ts), and
// every tip makes about three such calls. Knowing each connection's bytes
// also says exactly what a failure means: nothing written (certainly not
// sent), or written and then no whole answer (in doubt).
import net from "node:net";
import tls from "node:tls";
import { type Answer, AnswerError, AnswerReader } from "./http1-answer.js";

/** What callers read of an answer (a subset of fetch's Response, so test doubles may return one). */
export interface HttpReply {
  readonly status: number;
  readonly ok: boolean;
  readonly statusText: string;
  readonly headers: { get(name: string): string | null };
  text(): Promise<string>;
}

export interface HttpCall {
  method: string;
  headers: Record<string, string>;
  body?: string | URLSearchParams;
  timeoutMs: number;
  /**
   * Send again, once, on a new connection when a kept connection turns out to
   * have been closed by the server before any byte of an answer. It is
   * usually the race with the server's idle timeout, but the server may have
   * read the request before closing: only for requests safe to repeat.
   */
  repeatOnStaleConnection?: boolean;
}

/**
 * Error codes of failures that happened before the request was sent: nothing
 * reached the server. ECONNECT_TIMEOUT and ECONNECT_FAILED are this module's:
 * the timeout ran out before the request was written (waiting for a
 * connection, or making one), or the connection (TCP, TLS) failed otherwise
 * before it was written (the first failure's code is in the message).
 */
export const HTTP_NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "ECONNECT_TIMEOUT", "ECONNECT_FAILED"]);

/** At most this much of an answer is read: these APIs answer a few hundred bytes. */
const MAX_REPLY_BYTES = 1 << 20;
// An idle connection is closed after 4 s, or a second before the server's
// Keep-Alive timeout when it announces a shorter one (as node's agent and
// fetch do): fewer requests meet a connection the server is closing, whose
// outcome is then unknown. (Requests time out by their own timer.)
const IDLE_MS = 4_000;
/** Connections open at once per origin; more requests wait for one (their timeout running). */
export const HTTP_MAX_SOCKETS = 64;

type Failure = Error & { code?: string; staleConnection?: boolean };
const failure = (code: string, message: string): Failure => Object.assign(new Error(message), { code });

class Headers {
  constructor(private readonly head: Map<string, string>) {}
  get(name: string): string | null {
    return this.head.get(name.toLowerCase()) ?? null;
  }
}

class Reply implements HttpReply {
  readonly status: number;
  readonly statusText: string;
  readonly headers: Headers;
  private readonly body: string;
  constructor(answer: Answer) {
    this.status = answer.status;
    this.statusText = answer.statusText;
    this.headers = new Headers(answer.headers);
    this.body = answer.body.toString("utf8");
  }
  get ok() {
    return this.status >= 200 && this.status < 300;
  }
  async text(): Promise<string> {
    return this.body;
  }
}

/**
 * One request. Rejects with an Error whose `code` says what failed: one of
 * HTTP_NOT_SENT (nothing was sent), "TimeoutError" (written, no answer in
 * time), or another (ECONNRESET, ECONNLOST, a malformed answer's HPE_*, ETOOLARGE...:
 * the request may have arrived). `staleConnection` marks a kept connection
 * closed before any answer byte.
 */
export async function httpRequest(url: string | URL, call: HttpCall): Promise<HttpReply> {
  const target = typeof url === "string" ? new URL(url) : url;
  const request = requestText(target, call);
  const origin = originOf(target);
  try {
    return await exchange(origin, request, call, false);
  } catch (err) {
    if (call.repeatOnStaleConnection && (err as Failure).staleConnection) return await exchange(origin, request, call, true);
    throw err;
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const PATH = /^[\x21-\xff]+$/;

/**
 * The request's bytes as one string, written in one piece: the caller's
 * headers as given (names and values checked as node checks them, so a line
 * break cannot smuggle a header), then Host, Content-Length and URL
 * credentials as node would add them (a caller's own Host is kept, its
 * Content-Length is not: the body's length is the one sent).
 */
function requestText(target: URL, call: HttpCall): string {
  const path = target.pathname + target.search;
  if (!TOKEN.test(call.method)) throw failure("ERR_INVALID_HTTP_TOKEN", `invalid method ${JSON.stringify(call.method)}`);
  if (!PATH.test(path)) throw failure("ERR_UNESCAPED_CHARACTERS", "request path contains unescaped characters");
  const body = call.body === undefined ? undefined : call.body.toString();
  let head = `${call.method} ${path} HTTP/1.1\r\n`;
  let host = false;
  let authorization = false;
  let connection = false;
  for (const name in call.headers) {
    const value = call.headers[name];
    if (!TOKEN.test(name)) throw failure("ERR_INVALID_HTTP_TOKEN", `invalid header name ${JSON.stringify(name)}`);
    if (!FIELD_VALUE.test(value)) throw failure("ERR_INVALID_CHAR", `invalid character in header "${name}"`);
    const lower = name.toLowerCase();
    if (lower === "content-length") continue;
    host ||= lower === "host";
    authorization ||= lower === "authorization";
    connection ||= lower === "connection";
    head += `${name}: ${value}\r\n`;
  }
  if (!host) head += `host: ${target.host}\r\n`;
  if (!connection) head += "connection: keep-alive\r\n";
  if (body !== undefined) head += `content-length: ${Buffer.byteLength(body)}\r\n`;
  if (!authorization && (target.username || target.password)) {
    const credentials = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
    head += `authorization: Basic ${Buffer.from(credentials).toString("base64")}\r\n`;
  }
  return `${head}\r\n${body ?? ""}`;
}

/** One scheme, host and port: its idle connections, how many are open, the requests waiting for one. */
class Origin {
  readonly idle: Connection[] = [];
  readonly waiting: Exchange[] = [];
  open = 0;
  constructor(
    readonly secure: boolean,
    readonly host: string,
    readonly port: number,
  ) {}
}

const origins = new Map<string, Origin>();

function originOf(target: URL): Origin {
  const key = `${target.protocol}//${target.host}`;
  let origin = origins.get(key);
  if (!origin) {
    const secure = target.protocol === "https:";
    if (!secure && target.protocol !== "http:") throw failure("ERR_INVALID_PROTOCOL", `protocol "${target.protocol}" not supported`);
    const host = target.hostname.startsWith("[") ? target.hostname.slice(1, -1) : target.hostname; // an IPv6 address without its brackets
    origins.set(key, (origin = new Origin(secure, host, Number(target.port) || (secure ? 443 : 80))));
  }
  return origin;
}

/** One request's life: waiting for a connection, written on one, answered or failed. Settles once. */
class Exchange {
  connection: Connection | undefined;
  /** The request's bytes were handed to a connection: from here on a failure is in doubt. */
  written = false;
  /** Whether it went on a connection an earlier request used. */
  reused = false;
  settled = false;
  reader!: AnswerReader;
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly origin: Origin,
    readonly request: string,
    readonly headOnly: boolean,
    timeoutMs: number,
    private readonly resolve: (reply: Reply) => void,
    private readonly reject: (err: Failure) => void,
  ) {
    this.timer = setTimeout(timedOut, timeoutMs, this, timeoutMs);
  }

  answered(answer: Answer): void {
    if (this.settle()) this.resolve(new Reply(answer));
  }

  /**
   * A failure. Before the request was written it is one of HTTP_NOT_SENT; after, a kept
   * connection that closed before any answer byte is marked stale.
   */
  failed(err: Failure, answerStarted: boolean): void {
    if (!this.settle()) return;
    if (!this.written && !HTTP_NOT_SENT.has(err.code ?? "")) err = failure("ECONNECT_FAILED", `${err.code ?? "connection failed"}: ${err.message}`);
    // Written, it is in doubt whatever the code: an unreachable host can be reported on the connection that carried it.
    if (this.written && HTTP_NOT_SENT.has(err.code ?? "")) err = failure("ECONNLOST", `${err.code} after the request was written: ${err.message}`);
    if (this.written && this.reused && !answerStarted && (err.code === "ECONNRESET" || err.code === "EPIPE")) err.staleConnection = true;
    this.reject(err);
  }

  timedOut(ms: number): void {
    const written = this.written;
    const err = failure(written ? "TimeoutError" : "ECONNECT_TIMEOUT", `no answer within ${ms} ms`);
    const connection = this.connection;
    if (!written) {
      const at = this.origin.waiting.indexOf(this);
      if (at >= 0) this.origin.waiting.splice(at, 1);
    }
    this.failed(err, false);
    connection?.socket.destroy(); // its bytes, if any, now belong to nobody
  }

  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.timer);
    return true;
  }
}

// A module function, not a closure per request.
function timedOut(exchange: Exchange, ms: number): void {
  exchange.timedOut(ms);
}

/** One kept socket: at most one request on it at a time. */
class Connection {
  exchange: Exchange | undefined;
  /** Bytes of the current answer came. */
  private answerStarted = false;
  private uses = 0;
  private idleMs = IDLE_MS;
  readonly socket: net.Socket;

  constructor(
    private readonly origin: Origin,
    first: Exchange,
  ) {
    const options = { host: origin.host, port: origin.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 1_000 };
    this.socket = origin.secure ? tls.connect({ ...options, servername: net.isIP(origin.host) ? undefined : origin.host }) : net.connect(options);
    origin.open++;
    this.exchange = first;
    first.connection = this;
    this.socket.once(origin.secure ? "secureConnect" : "connect", () => this.exchange && this.write(this.exchange));
    this.socket.on("data", (chunk: Buffer) => this.data(chunk));
    this.socket.on("error", (err: Failure) => this.end(err));
    this.socket.on("end", () => this.end(undefined));
    this.socket.on("close", () => this.end(undefined));
    this.socket.on("timeout", () => this.socket.destroy());
  }

  /** Whether an idle connection can take a request: not closed or closing by either side. */
  get usable(): boolean {
    return !this.socket.destroyed && this.socket.readable && this.socket.writable;
  }

  /** Writes the request; from now on its failures are in doubt. */
  write(exchange: Exchange): void {
    exchange.connection = this;
    exchange.reused = this.uses++ > 0;
    exchange.written = true;
    exchange.reader = new AnswerReader(MAX_REPLY_BYTES, exchange.headOnly);
    this.exchange = exchange;
    this.answerStarted = false;
    this.socket.write(exchange.request);
  }

  /** Takes the connection out of the idle list for a request. */
  take(exchange: Exchange): void {
    this.socket.setTimeout(0);
    this.socket.ref();
    this.write(exchange);
  }

  private data(chunk: Buffer): void {
    const exchange = this.exchange;
    // Bytes nobody asked for: the connection is out of step with its server.
    if (!exchange?.written || exchange.settled) return void this.socket.destroy();
    this.answerStarted = true;
    let answer: Answer | undefined;
    try {
      answer = exchange.reader.push(chunk);
    } catch (err) {
      return this.fail(err as AnswerError);
    }
    if (answer) this.done(exchange, answer);
  }

  private done(exchange: Exchange, answer: Answer): void {
    this.exchange = undefined;
    exchange.answered(answer);
    if (!answer.keepAlive || !this.keepAliveHint(answer)) return void this.socket.destroy();
    release(this.origin, this);
  }

  /** Applies the server's `Keep-Alive: timeout=N`: idle no longer than a second before it; false if that leaves no time. */
  private keepAliveHint(answer: Answer): boolean {
    const hint = /(?:^|,)\s*timeout=(\d+)/i.exec(answer.headers.get("keep-alive") ?? "");
    if (hint) this.idleMs = Math.min(this.idleMs, Number(hint[1]) * 1000 - 1000);
    return this.idleMs > 0;
  }

  /** Goes idle: closed after its idle time, and keeping no process alive. */
  idle(): void {
    this.socket.setTimeout(this.idleMs);
    this.socket.unref();
  }

  private fail(err: Failure): void {
    const exchange = this.exchange;
    this.exchange = undefined;
    exchange?.failed(err, this.answerStarted);
    this.socket.destroy();
  }

  /** The socket failed, or ended: an answer read to the close is whole; anything else fails its request. */
  private end(err: Failure | undefined): void {
    const exchange = this.exchange;
    if (exchange && !exchange.settled) {
      if (err) return this.fail(err);
      if (!exchange.written) return this.fail(failure("ECONNRESET", "connection closed before the request was written"));
      let answer: Answer;
      try {
        answer = exchange.reader.closed();
      } catch (cut) {
        return this.fail(cut as AnswerError);
      }
      this.done(exchange, answer);
    }
    if (this.socket.destroyed || !this.socket.readable) this.closed();
  }

  private closedOnce = false;

  /** Leaves the origin's books; a request waiting for a connection gets a new one. */
  private closed(): void {
    if (this.closedOnce) return;
    this.closedOnce = true;
    this.socket.destroy();
    const origin = this.origin;
    origin.open--;
    const at = origin.idle.indexOf(this);
    if (at >= 0) origin.idle.splice(at, 1);
    const next = origin.waiting.shift();
    if (next) open(origin, next);
  }
}

/** A new connection for a request, which it carries first. */
function open(origin: Origin, ex: Exchange): void {
  try {
    new Connection(origin, ex);
  } catch (err) {
    ex.failed(err as Failure, false); // net refused the options themselves (a bad port): nothing sent
  }
}

/** A connection free again: to the first waiting request, else idle. */
function release(origin: Origin, connection: Connection): void {
  const next = origin.waiting.shift();
  if (next) return connection.take(next);
  origin.idle.push(connection);
  connection.idle();
}

function exchange(origin: Origin, request: string, call: HttpCall, fresh: boolean): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    const ex = new Exchange(origin, request, call.method === "HEAD", call.timeoutMs, resolve, reject);
    if (!fresh) {
      // The most recently used first: the least likely to have been closed by its server meanwhile.
      for (let kept = origin.idle.pop(); kept; kept = origin.idle.pop()) {
        if (kept.usable) return kept.take(ex);
        kept.socket.destroy();
      }
    }
    if (origin.open < HTTP_MAX_SOCKETS) open(origin, ex);
    else origin.waiting.push(ex);
  });
}
