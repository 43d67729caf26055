// Reads one HTTP/1.1 answer from a connection's bytes, as they come, for the
// outside-API client (http-client.ts): its head, then a Content-Length, a
// chunked or a close-delimited body. Everything is limited (the head, each
// chunk's size line, the body); anything not well formed is refused rather
// than guessed at, since the caller then treats the request as in doubt.

/** A head larger than this is refused (node's own limit). */
export const MAX_HEAD_BYTES = 16 * 1024;
/** At most this many header lines in a head. */
const MAX_HEADER_LINES = 100;
/** A chunk's size line with its extensions. */
const MAX_CHUNK_LINE = 256;

export interface Answer {
  status: number;
  statusText: string;
  /** Lower-cased names; a repeated header's values joined by ", ". */
  headers: Map<string, string>;
  body: Buffer;
  /** Whether the connection may carry another request after this answer. */
  keepAlive: boolean;
}

/** A malformed or oversized answer; `code` names what was wrong. */
export class AnswerError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const CRLF = Buffer.from("\r\n");
const HEAD_END = Buffer.from("\r\n\r\n");
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const DIGITS = /^\d{1,15}$/;
const CHUNK_LINE = /^([0-9A-Fa-f]{1,8})[\t ]*(?:;[\t\x20-\x7e\x80-\xff]*)?$/;

type Mode = "head" | "length" | "chunk-line" | "chunk-data" | "chunk-end" | "trailers" | "close" | "done";

/**
 * One answer's reader. push() each chunk of bytes; it returns the answer once
 * whole (and throws AnswerError on a bad one); closed() when the connection
 * ends. One reader per request.
 */
export class AnswerReader {
  private mode: Mode = "head";
  private buf: Buffer = Buffer.alloc(0);
  private status = 0;
  private statusText = "";
  private headers = new Map<string, string>();
  private keepAlive = true;
  private readonly body: Buffer[] = [];
  private bodyBytes = 0;
  /** Bytes still to come of the body (length) or of the current chunk. */
  private remaining = 0;
  private trailerBytes = 0;
  /** Bytes that came after the whole answer (a server answering more than it was asked). */
  extra = 0;

  constructor(
    private readonly maxBody: number,
    /** The answer to a HEAD request: a head alone, whatever its Content-Length says. */
    private readonly headOnly = false,
  ) {}

  push(chunk: Buffer): Answer | undefined {
    if (this.finished) {
      this.extra += chunk.length;
      return undefined;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (!this.finished && this.buf.length) if (!this.step()) return undefined;
    if (!this.finished) return undefined;
    this.extra += this.buf.length;
    return this.answer();
  }

  private get finished(): boolean {
    return this.mode === "done";
  }

  /** The connection closed: the answer if it was the kind read until the close, else an AnswerError. */
  closed(): Answer {
    if (this.mode === "close") {
      this.mode = "done";
      return this.answer();
    }
    throw new AnswerError("ECONNRESET", this.mode === "head" && this.buf.length === 0 && this.status === 0 ? "socket hang up" : "answer cut off");
  }

  /** One step of the machine on the bytes buffered; false when it needs more. */
  private step(): boolean {
    switch (this.mode) {
      case "head":
        return this.readHead();
      case "length":
        return this.readLength();
      case "chunk-line":
        return this.readChunkLine();
      case "chunk-data":
        return this.readChunkData();
      case "chunk-end":
        return this.readChunkEnd();
      case "trailers":
        return this.readTrailers();
      case "close":
        this.take(this.buf.length);
        return true;
      default:
        return false;
    }
  }

  private readHead(): boolean {
    const end = this.buf.indexOf(HEAD_END);
    if (end < 0) {
      if (this.buf.length > MAX_HEAD_BYTES) throw new AnswerError("HPE_HEADER_OVERFLOW", "answer head too large");
      return false;
    }
    if (end > MAX_HEAD_BYTES) throw new AnswerError("HPE_HEADER_OVERFLOW", "answer head too large");
    const lines = this.buf.toString("latin1", 0, end).split("\r\n");
    this.buf = this.buf.subarray(end + 4);
    this.parseHead(lines);
    return true;
  }

  private parseHead(lines: string[]): void {
    const status = STATUS_LINE.exec(lines[0]);
    if (!status) throw new AnswerError("HPE_INVALID_CONSTANT", "not an HTTP/1.x status line");
    if (lines.length - 1 > MAX_HEADER_LINES) throw new AnswerError("HPE_HEADER_OVERFLOW", "too many header lines");
    const headers = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      const colon = line.indexOf(":");
      const name = line.slice(0, colon);
      if (colon <= 0 || !TOKEN.test(name)) throw new AnswerError("HPE_INVALID_HEADER_TOKEN", "malformed header line");
      const value = line.slice(colon + 1).trim();
      if (!FIELD_VALUE.test(value)) throw new AnswerError("HPE_INVALID_HEADER_TOKEN", "control character in a header value");
      const lower = name.toLowerCase();
      const before = headers.get(lower);
      headers.set(lower, before === undefined ? value : `${before}, ${value}`);
    }
    const code = Number(status[2]);
    if (code < 200) {
      // An interim answer (100 Continue, 103 Early Hints): the real one follows. 101 would switch protocols, never asked for.
      if (code === 101) throw new AnswerError("HPE_INVALID_CONSTANT", "unrequested protocol switch");
      return;
    }
    this.status = code;
    this.statusText = status[3] ?? "";
    this.headers = headers;
    const connection = (headers.get("connection") ?? "").toLowerCase();
    this.keepAlive = status[1] === "1" ? !/(^|,)\s*close\s*(,|$)/.test(connection) : /(^|,)\s*keep-alive\s*(,|$)/.test(connection);
    this.bodyMode(headers);
  }

  private bodyMode(headers: Map<string, string>): void {
    if (this.headOnly || this.status === 204 || this.status === 304) {
      this.mode = "done";
      return;
    }
    const coding = headers.get("transfer-encoding");
    const length = headers.get("content-length");
    if (coding !== undefined) {
      // RFC 9112 6.1: chunked last means chunked; otherwise the body runs to the close. Either way with a
      // Content-Length too, the connection is not trusted with another request.
      if (length !== undefined) this.keepAlive = false;
      if (/(^|,)\s*chunked\s*$/i.test(coding)) this.mode = "chunk-line";
      else this.untilClose();
      return;
    }
    if (length === undefined) return this.untilClose();
    const values = new Set(length.split(",").map((v) => v.trim()));
    const [only] = values;
    if (values.size !== 1 || !DIGITS.test(only)) throw new AnswerError("HPE_INVALID_CONTENT_LENGTH", "invalid Content-Length");
    this.remaining = Number(only);
    if (this.remaining > this.maxBody) throw new AnswerError("ETOOLARGE", "answer too large");
    this.mode = this.remaining ? "length" : "done";
  }

  private untilClose(): void {
    this.keepAlive = false;
    this.mode = "close";
  }

  private readLength(): boolean {
    const n = Math.min(this.remaining, this.buf.length);
    this.take(n);
    this.remaining -= n;
    if (!this.remaining) this.mode = "done";
    return true;
  }

  private readChunkLine(): boolean {
    const end = this.buf.indexOf(CRLF);
    if (end < 0 || end > MAX_CHUNK_LINE) {
      if (end > MAX_CHUNK_LINE || this.buf.length > MAX_CHUNK_LINE) throw new AnswerError("HPE_INVALID_CHUNK_SIZE", "chunk size line too long");
      return false;
    }
    const line = CHUNK_LINE.exec(this.buf.toString("latin1", 0, end));
    if (!line) throw new AnswerError("HPE_INVALID_CHUNK_SIZE", "invalid chunk size");
    this.buf = this.buf.subarray(end + 2);
    this.remaining = parseInt(line[1], 16);
    if (this.bodyBytes + this.remaining > this.maxBody) throw new AnswerError("ETOOLARGE", "answer too large");
    this.mode = this.remaining ? "chunk-data" : "trailers";
    return true;
  }

  private readChunkData(): boolean {
    const n = Math.min(this.remaining, this.buf.length);
    this.take(n);
    this.remaining -= n;
    if (!this.remaining) this.mode = "chunk-end";
    return true;
  }

  private readChunkEnd(): boolean {
    if (this.buf.length < 2) return false;
    if (this.buf[0] !== 13 || this.buf[1] !== 10) throw new AnswerError("HPE_STRICT", "chunk not followed by CRLF");
    this.buf = this.buf.subarray(2);
    this.mode = "chunk-line";
    return true;
  }

  /** Trailer lines after the last chunk, up to an empty line: read past (nobody here uses them), counted against the head's limit. */
  private readTrailers(): boolean {
    const end = this.buf.indexOf(CRLF);
    if (end < 0) {
      if (this.trailerBytes + this.buf.length > MAX_HEAD_BYTES) throw new AnswerError("HPE_HEADER_OVERFLOW", "trailers too large");
      return false;
    }
    this.trailerBytes += end + 2;
    if (this.trailerBytes > MAX_HEAD_BYTES) throw new AnswerError("HPE_HEADER_OVERFLOW", "trailers too large");
    const line = this.buf.toString("latin1", 0, end);
    if (end > 0 && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/.test(line)) throw new AnswerError("HPE_INVALID_HEADER_TOKEN", "malformed trailer line");
    this.buf = this.buf.subarray(end + 2);
    if (end === 0) this.mode = "done";
    return true;
  }

  /** Moves n buffered bytes into the body. */
  private take(n: number): void {
    if (!n) return;
    this.bodyBytes += n;
    if (this.bodyBytes > this.maxBody) throw new AnswerError("ETOOLARGE", "answer too large");
    this.body.push(n === this.buf.length ? this.buf : this.buf.subarray(0, n));
    this.buf = this.buf.subarray(n);
  }

  private answer(): Answer {
    this.buf = Buffer.alloc(0);
    const body = this.body.length === 1 ? this.body[0] : Buffer.concat(this.body);
    return { status: this.status, statusText: this.statusText, headers: this.headers, body, keepAlive: this.keepAlive && this.extra === 0 };
  }
}
