// Input checks every server runs before a handler sees a request: the body's
// size, whether a binary body parses, and whether every string can be stored
// by PostgreSQL. One place, so no service has to remember them.
import { Readable } from "node:stream";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { fromBinary, toBinary, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type ContextValues, type Interceptor } from "@connectrpc/connect";
import type { Compression, UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { fieldError } from "./field-errors.js";

/** Default largest request body (bytes) a server reads: every request message of ours is far smaller. */
export const DEFAULT_READ_MAX_BYTES = 1024 * 1024;

/** Why a body over `max` bytes is refused (RESOURCE_EXHAUSTED), the same words for every protocol and for calls in this process. */
export function tooLargeMessage(max: number): string {
  return `the request body is larger than the ${max} bytes this server reads`;
}

/** Why a request body was refused before parsing; read by inputInterceptor. */
export interface RefusedBody {
  code: Code;
  message: string;
  /** Headers the refusal carries (UNIMPLEMENTED names the encodings taken). */
  metadata?: Headers;
}
export const refusedBodyKey = createContextKey<RefusedBody | undefined>(undefined, { description: "refused request body" });

const BINARY = /^application\/(?:proto|connect\+proto|grpc|grpc\+proto|grpc-web|grpc-web\+proto)$/;
const ENVELOPED = /^application\/(?:connect\+|grpc)/;

/** A Content-Type's media type, lower case and without parameters ("" when none). */
export function mediaType(contentType: string | null | undefined): string {
  return (contentType ?? "").split(";")[0].trim().toLowerCase();
}

class TooLarge extends Error {}

/**
 * A body of at most `max` bytes; a larger one is TooLarge, and its rest is
 * read and dropped (discardRest) rather than the request destroyed: on
 * HTTP/1.1 that resets the connection before the refusal goes out, so the
 * client saw ECONNRESET where HTTP/2's got the error. A node stream (a
 * request, or an RPC exchange's `body`) is read by its events (readStream).
 */
async function readAll(body: AsyncIterable<Uint8Array> & { body?: unknown }, max: number): Promise<Buffer> {
  const stream = body instanceof Readable ? body : body.body instanceof Readable ? body.body : undefined;
  // One already over (ended, destroyed) is left to its iterator, which knows how it ended.
  if (stream && !stream.readableEnded && !stream.destroyed) return readStream(stream, max);
  const it = body[Symbol.asyncIterator]();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (let r = await it.next(); !r.done; r = await it.next()) {
    size += r.value.byteLength;
    if (size > max) {
      void discardRest(it, size);
      throw new TooLarge();
    }
    chunks.push(r.value);
  }
  return Buffer.concat(chunks);
}

/**
 * readAll's reading of a node stream by its 'data' and 'end': its async
 * iterator makes a promise, a result and a microtask hop per chunk and per
 * end, ~3% of the gateway's CPU a call. The same outcomes: the body, TooLarge
 * (the rest dropped), the stream's error, or ERR_STREAM_PREMATURE_CLOSE when
 * it closes before its end (the client went away), as the iterator rejects.
 */
function readStream(stream: Readable, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (err: Error | undefined) => {
      stream.off("data", onData).off("end", onEnd).off("error", onError).off("close", onClose);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size <= max) return void chunks.push(chunk);
      finish(new TooLarge());
      void discardRest(stream[Symbol.asyncIterator](), size);
    };
    const onEnd = () => finish(undefined);
    const onError = (err: Error) => finish(err);
    const onClose = () => finish(Object.assign(new Error("Premature close"), { code: "ERR_STREAM_PREMATURE_CLOSE" }));
    stream.on("data", onData).on("end", onEnd).on("error", onError).on("close", onClose);
  });
}

/** A refused body is read and dropped up to this size in all; a client sending more is cut off (its request destroyed). */
const DISCARD_MAX_BYTES = 64 * 1024 * 1024;

/** Reads the rest of a refused body in the background, dropping it, while the refusal is answered. */
async function discardRest(it: AsyncIterator<Uint8Array>, read: number): Promise<void> {
  try {
    for (let r = await it.next(); !r.done; r = await it.next()) {
      read += r.value.byteLength;
      if (read > DISCARD_MAX_BYTES) return void (await it.return?.());
    }
  } catch {
    // The client went away: nothing left to drop.
  }
}

/**
 * The request encodings our servers take, the one list: connect-es's
 * compressions (server.ts's acceptCompression) and the one-call inflaters the
 * services' guard and the gateway's edge use, by the exact name connect-es
 * matches.
 */
const REQUEST_ENCODINGS = {
  gzip: { compression: compressionGzip, inflate: gunzipSync },
  br: { compression: compressionBrotli, inflate: brotliDecompressSync },
} as const;
type RequestEncoding = keyof typeof REQUEST_ENCODINGS;

/** What connect-es's routers take (createConnectRouter's acceptCompression). */
export const acceptedCompressions: Compression[] = Object.values(REQUEST_ENCODINGS).map((e) => e.compression);

function isRequestEncoding(encoding: string): encoding is RequestEncoding {
  return Object.hasOwn(REQUEST_ENCODINGS, encoding);
}

/**
 * Refuses an encoding our servers do not take, as connect-es does:
 * UNIMPLEMENTED, with the ones we take in `acceptHeader` (the protocol's
 * accept-encoding header). Names are matched exactly, as connect-es matches
 * them, so the gateway and the services behind it take the same ones.
 */
export function checkRequestEncoding(encoding: string | null, acceptHeader: string): void {
  if (!encoding || encoding === "identity" || isRequestEncoding(encoding)) return;
  const accepted = Object.keys(REQUEST_ENCODINGS).join(",");
  throw new ConnectError(`unknown compression "${encoding}": supported encodings are ${accepted}`, Code.Unimplemented, { [acceptHeader]: accepted });
}

/**
 * A request message's bytes decompressed as `encoding` says, at most `max`
 * bytes (none or "identity": as they are; the caller held the body to its limit). zlib's one-call form with
 * maxOutputLength inflates one 16 KiB chunk at a time and stops at the first
 * chunk past `max`, so a small body that would inflate to gigabytes costs one
 * chunk over the limit. Refusals as connect-es words them: RESOURCE_EXHAUSTED
 * past `max`, INVALID_ARGUMENT for bytes that do not decompress,
 * UNIMPLEMENTED for an encoding we do not take (checkRequestEncoding).
 * One copy for the services' guard and the gateway's edge.
 */
export function decompressMessage(encoding: string | null, data: Uint8Array, max: number, acceptHeader = "accept-encoding"): Uint8Array {
  checkRequestEncoding(encoding, acceptHeader);
  if (!encoding || !isRequestEncoding(encoding)) return data; // none, or "identity"
  if (data.byteLength === 0) return data;
  try {
    return REQUEST_ENCODINGS[encoding].inflate(data, { maxOutputLength: max });
  } catch (err) {
    if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE")
      throw new ConnectError(`the request message is larger than the ${max} bytes this server reads once decompressed`, Code.ResourceExhausted);
    throw new ConnectError(`the request body does not decompress as ${encoding}: ${(err as Error).message}`, Code.InvalidArgument);
  }
}

/**
 * The envelopes of a gRPC, gRPC-web or Connect-streaming body, in order: each
 * one's flags and data as sent; one cut short throws `cutShort(true)` in its
 * header, `cutShort(false)` in its data. One copy for the guard here and the
 * services' Connect streams (connect-stream.ts).
 */
export function* envelopeFrames(body: Uint8Array, cutShort: (inHeader: boolean) => Error): Generator<{ flags: number; data: Uint8Array }> {
  for (let at = 0; at < body.byteLength; ) {
    if (body.byteLength - at < ENVELOPE_HEADER_BYTES) throw cutShort(true);
    const flags = body[at];
    const length = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
    at += ENVELOPE_HEADER_BYTES;
    if (body.byteLength - at < length) throw cutShort(false);
    yield { flags, data: body.subarray(at, at + length) };
    at += length;
  }
}

/** An envelope's flags (gRPC's and Connect's): its message is compressed. */
export const COMPRESSED_FLAG = 0b01;
/** An envelope's flags (Connect's): the end of the stream, not a message. */
const END_STREAM_FLAG = 0b10;

/**
 * The messages inside a gRPC / gRPC-web / Connect-streaming body, decompressed
 * (envelopedMessage); end-of-stream frames skipped. A body cut short is a plain
 * Error, which unparsableBody words as the caller's mistake.
 */
export function envelopedMessages(body: Uint8Array, encoding: string | null, max: number, acceptHeader: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const { flags, data } of envelopeFrames(body, (inHeader) => new Error(inHeader ? "truncated envelope header" : "truncated message"))) {
    if (!(flags & END_STREAM_FLAG)) out.push(envelopedMessage(flags, data, encoding, max, acceptHeader));
  }
  return out;
}

/**
 * One envelope's message: as it is, or decompressed (decompressMessage) when
 * its flags say compressed; compressed without an encoding header is
 * INVALID_ARGUMENT. The services' guard and the gateway's edge alike.
 */
export function envelopedMessage(flags: number, data: Uint8Array, encoding: string | null, max: number, acceptHeader: string): Uint8Array {
  if (!(flags & COMPRESSED_FLAG)) return data;
  if (!encoding || encoding === "identity") throw compressedWithoutEncoding();
  return decompressMessage(encoding, data, max, acceptHeader);
}

/**
 * The refusal of an envelope flagged compressed in a request that names no encoding (or
 * "identity"): the client broke the protocol ("if the encoding is omitted or identity, this bit
 * must be 0", Connect's and gRPC's specs), so INVALID_ARGUMENT, not the INTERNAL connect-es gives.
 */
export function compressedWithoutEncoding(): ConnectError {
  return new ConnectError("a compressed message without its encoding header", Code.InvalidArgument);
}

/** A gRPC, gRPC-web or Connect-streaming envelope's header: a flags byte and the message's length. */
export const ENVELOPE_HEADER_BYTES = 5;

/**
 * The largest body read for a request of one message held to `readMaxBytes`:
 * the limit is the message's, as for a call in this process (local-server.ts)
 * and in connect-es, so an envelope's header is not counted against it.
 */
export function requestBodyLimit(readMaxBytes: number, enveloped: boolean): number {
  return enveloped ? readMaxBytes + ENVELOPE_HEADER_BYTES : readMaxBytes;
}

/**
 * The request body exactly as the caller sent it (unary and server-streaming
 * POSTs), for checks over the raw bytes such as a partner's signed body hash.
 */
export const rawRequestBodyKey = createContextKey<Uint8Array | undefined>(undefined, { description: "raw request body" });

/**
 * Reads a unary or server-streaming request body once, up to `readMaxBytes`,
 * and checks that a binary body parses as the method's input. A body that is
 * too large or does not parse is replaced by an empty message and noted in the
 * context, so inputInterceptor answers RESOURCE_EXHAUSTED or INVALID_ARGUMENT
 * in the caller's own protocol (Connect would call a bad binary body INTERNAL).
 * Client-streaming bodies are left to Connect's own limit.
 */
export function guardRequestBody(handler: UniversalHandler, readMaxBytes: number): UniversalHandler {
  const kind = handler.method.methodKind;
  if (kind !== "unary" && kind !== "server_streaming") return handler;
  const input = handler.method.input;
  const guarded = async (req: UniversalServerRequest) => {
    if (req.method !== "POST" || !isByteStream(req.body)) return handler(req);
    const type = mediaType(req.header.get("content-type"));
    const enveloped = ENVELOPED.test(type);
    const refuse = (code: Code, message: string, metadata?: Headers) => {
      req.contextValues?.set(refusedBodyKey, { code, message, metadata });
      // A stand-in that parses, so the refusal is answered by inputInterceptor rather than
      // connect-es's "cannot decode" (an empty JSON body) or its own size check (content-length).
      const header = new Headers(req.header);
      header.delete("content-length");
      const empty = BINARY.test(type) ? new Uint8Array(0) : EMPTY_JSON;
      return handler({ ...req, header, body: oneChunk(enveloped ? envelopeOf(empty) : empty) });
    };
    const declared = Number(req.header.get("content-length") ?? NaN);
    const tooLarge = tooLargeMessage(readMaxBytes);
    const bodyMax = requestBodyLimit(readMaxBytes, enveloped);
    if (declared > bodyMax) return refuse(Code.ResourceExhausted, tooLarge);
    let body: Uint8Array;
    try {
      body = await readAll(req.body, bodyMax);
    } catch (err) {
      if (err instanceof TooLarge) return refuse(Code.ResourceExhausted, tooLarge);
      throw err;
    }
    req.contextValues?.set(rawRequestBodyKey, body);
    if (BINARY.test(type)) {
      try {
        const messages = enveloped
          ? type.includes("connect")
            ? envelopedMessages(body, req.header.get("connect-content-encoding"), readMaxBytes, "connect-accept-encoding")
            : envelopedMessages(body, req.header.get("grpc-encoding"), readMaxBytes, "grpc-accept-encoding")
          : [decompressMessage(req.header.get("content-encoding"), body, readMaxBytes)];
        for (const m of messages) fromBinary(input, m);
      } catch (err) {
        const refused = err instanceof ConnectError ? err : unparsableBody(input, err);
        return refuse(refused.code, refused.rawMessage, refused.metadata);
      }
    }
    return handler({ ...req, body: oneChunk(body) });
  };
  const wrapped: UniversalHandler = Object.assign(guarded, {
    protocolNames: handler.protocolNames,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
    requestPath: handler.requestPath,
    service: handler.service,
    method: handler.method,
  });
  return wrapped;
}

/** Why a binary body that does not parse as `input` is the caller's mistake (INVALID_ARGUMENT; Connect would call it INTERNAL). */
export function unparsableBody(input: DescMessage, err: unknown): ConnectError {
  const reason = err instanceof RangeError && /call stack/i.test(err.message) ? "nested too deeply" : (err as Error).message;
  return new ConnectError(`the request body is not a valid ${input.typeName} in binary protobuf: ${reason}`, Code.InvalidArgument);
}

function isByteStream(body: unknown): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}

const EMPTY_JSON = new TextEncoder().encode("{}");

/** One envelope: `flags`, the data's length, the data. */
export function envelopeOf(data: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(ENVELOPE_HEADER_BYTES + data.byteLength);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.byteLength);
  out.set(data, ENVELOPE_HEADER_BYTES);
  return out;
}

async function* oneChunk(data: Uint8Array): AsyncIterable<Uint8Array> {
  if (data.byteLength) yield data;
}

/**
 * Whether `message` takes more than `max` bytes in binary protobuf, the size a
 * network caller's body is held to (a call in this process hands the message
 * over unencoded). Estimated from above without encoding (inspectMessage's
 * sizeBound); only a message whose estimate passes `max` is encoded to know
 * for sure, so a call's usual small message costs one walk over its set fields.
 */
export function encodedLargerThan(desc: DescMessage, message: Message, max: number): boolean {
  return largerThan(desc, message, inspectMessage(desc, message), max);
}

function largerThan(desc: DescMessage, message: Message, found: MessageFindings, max: number): boolean {
  return found.sizeBound > max && toBinary(desc, message).byteLength > max;
}

/**
 * What one walk over a request message's set fields finds: everything the
 * input checks need (an in-process call's size, strings PostgreSQL cannot
 * store, Timestamps out of range), so a call pays for one walk, not three.
 */
export interface MessageFindings {
  /**
   * At least the message's binary size: a string at 3 bytes per UTF-16 unit,
   * FIELD_BOUND bytes of tag, length or value per field (Infinity: only
   * encoding can tell).
   */
  sizeBound: number;
  /** The path of the first string (at any depth, map keys included) holding U+0000, e.g. "message" or "items[2].name". */
  unstorable: string | undefined;
  /** The path of the first Timestamp (at any depth) outside years 1 to 9999. */
  timeOutOfRange: string | undefined;
}

export function inspectMessage(desc: DescMessage, message: Message): MessageFindings {
  const found: MessageFindings = { sizeBound: 0, unstorable: undefined, timeOutOfRange: undefined };
  found.sizeBound = walkMessage(desc, message, 0, found);
  return found;
}

/** The path of the first Timestamp outside years 1 to 9999, or undefined. */
export function timestampOutOfRangeField(desc: DescMessage, message: Message): string | undefined {
  return inspectMessage(desc, message).timeOutOfRange;
}

/** A field's tag (at most 5 bytes) and its varint value or length prefix (at most 10), rounded up. */
const FIELD_BOUND = 16;

/** Deeper than parsing allows: the checks stop, the size is left to the encoder. */
const MAX_DEPTH = 32;

/** PostgreSQL's text types cannot hold U+0000; anything else a JS string holds is storable. */
const UNSTORABLE = /\u0000/;

// google.protobuf.Timestamp's valid range (0001-01-01 to 9999-12-31 UTC). Outside it a
// JavaScript Date is invalid or PostgreSQL refuses it, which failed the statement.
const MIN_TIMESTAMP_SECONDS = -62_135_596_800n;
const MAX_TIMESTAMP_SECONDS = 253_402_300_799n;

/**
 * Paths are built on the way back up, only for what a part of the walk found
 * first: `nul` and `time` are what was found before that part, `part` its
 * piece of the path ("name", "[3]", "."). Holding these in locals, not an
 * object or a closure, keeps the walk from allocating per field.
 */
function foundNew(found: MessageFindings, nul: string | undefined, time: string | undefined): boolean {
  return (nul === undefined && found.unstorable !== undefined) || (time === undefined && found.timeOutOfRange !== undefined);
}

function prefixNew(found: MessageFindings, nul: string | undefined, time: string | undefined, part: string): void {
  if (nul === undefined && found.unstorable !== undefined) found.unstorable = part + found.unstorable;
  if (time === undefined && found.timeOutOfRange !== undefined) found.timeOutOfRange = part + found.timeOutOfRange;
}

/** The message's size bound; its findings' paths relative to it. */
function walkMessage(desc: DescMessage, message: Message, depth: number, found: MessageFindings): number {
  if (depth > MAX_DEPTH) return Infinity;
  const record = message as unknown as Record<string, unknown>;
  let size = 0;
  for (const unknown of (record.$unknown as Array<{ data: Uint8Array }> | undefined) ?? []) size += unknown.data.byteLength + FIELD_BOUND;
  for (const field of desc.fields) {
    const value = field.oneof ? oneofValue(record[field.oneof.localName], field) : record[field.localName];
    if (value === undefined || value === null) continue;
    const nul = found.unstorable;
    const time = found.timeOutOfRange;
    size += walkField(field, value, depth, found);
    prefixNew(found, nul, time, field.name);
  }
  return size;
}

function oneofValue(oneof: unknown, field: DescField): unknown {
  const o = oneof as { case?: string; value?: unknown } | undefined;
  return o?.case === field.localName ? o.value : undefined;
}

/** A field's size bound; its findings' paths relative to the field ("" the value itself, "[3]" or ".name" a part of it). */
function walkField(field: DescField, value: unknown, depth: number, found: MessageFindings): number {
  switch (field.fieldKind) {
    case "scalar":
      return walkScalar(value, found);
    case "enum":
      return FIELD_BOUND;
    case "message":
      return FIELD_BOUND + walkValue(field.message, value, depth, found);
    case "list": {
      const items = value as unknown[];
      let size = 0;
      for (let i = 0; i < items.length; i++) {
        const nul = found.unstorable;
        const time = found.timeOutOfRange;
        size += field.listKind === "message" ? FIELD_BOUND + walkValue(field.message, items[i], depth, found) : walkScalar(items[i], found);
        if (foundNew(found, nul, time)) prefixNew(found, nul, time, `[${i}]`);
      }
      return size;
    }
    case "map": {
      let size = 0;
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        const nul = found.unstorable;
        const time = found.timeOutOfRange;
        // The key first: its path is the entry's, "[key]".
        size += FIELD_BOUND + walkScalar(key, found);
        size += field.mapKind === "message" ? FIELD_BOUND + walkValue(field.message, item, depth, found) : walkScalar(item, found);
        if (foundNew(found, nul, time)) prefixNew(found, nul, time, `[${JSON.stringify(key)}]`);
      }
      return size;
    }
  }
}

function walkScalar(value: unknown, found: MessageFindings): number {
  if (typeof value === "string") {
    if (found.unstorable === undefined && UNSTORABLE.test(value)) found.unstorable = "";
    return value.length * 3 + FIELD_BOUND;
  }
  if (value instanceof Uint8Array) return value.byteLength + FIELD_BOUND;
  return FIELD_BOUND;
}

/** A message-typed value: a message, or a well-known type held as a plain value (a wrapper's scalar, a Struct as JSON). */
function walkValue(desc: DescMessage, value: unknown, depth: number, found: MessageFindings): number {
  if (typeof value === "object" && value !== null && "$typeName" in value) {
    const nul = found.unstorable;
    const time = found.timeOutOfRange;
    const size = walkMessage(desc, value as Message, depth + 1, found);
    prefixNew(found, nul, time, ".");
    if (desc.typeName === "google.protobuf.Timestamp" && found.timeOutOfRange === undefined) {
      const { seconds, nanos } = value as unknown as { seconds: bigint; nanos: number };
      if (seconds < MIN_TIMESTAMP_SECONDS || seconds > MAX_TIMESTAMP_SECONDS || nanos < 0 || nanos > 999_999_999) found.timeOutOfRange = "";
    }
    return size;
  }
  if (typeof value === "object" && value !== null && !(value instanceof Uint8Array)) {
    // A Struct held as JSON: its size is left to the encoder.
    if (found.unstorable === undefined) found.unstorable = unstorableJson(value, depth + 1);
    return Infinity;
  }
  return FIELD_BOUND + walkScalar(value, found);
}

function unstorableJson(value: unknown, depth: number): string | undefined {
  if (typeof value === "string") return UNSTORABLE.test(value) ? "" : undefined;
  if (typeof value !== "object" || value === null || depth > MAX_DEPTH) return undefined;
  for (const [key, item] of Object.entries(value)) {
    if (UNSTORABLE.test(key)) return `[${JSON.stringify(key)}]`;
    const found = unstorableJson(item, depth + 1);
    if (found !== undefined) return `${Array.isArray(value) ? `[${key}]` : `.${key}`}${found}`;
  }
  return undefined;
}

/**
 * The read limit of a call made in this process (local-server.ts): its message
 * arrives unencoded, so inputInterceptor holds the message's binary size to
 * it, as a network call's body is held to it before parsing.
 */
export const unencodedReadLimitKey = createContextKey<number | undefined>(undefined, { description: "read limit of an unencoded request" });

/**
 * Refuses what guardRequestBody noted, an unencoded message over the read
 * limit, then any string PostgreSQL cannot store (a NUL byte fails the
 * statement with "invalid byte sequence") or Timestamp out of its range,
 * naming the field. One walk over the message serves all three.
 */
export function inputInterceptor(): Interceptor {
  return (next) => async (req) => {
    const refused = req.contextValues.get(refusedBodyKey);
    if (refused) throw new ConnectError(refused.message, refused.code, refused.metadata);
    if (!req.stream) {
      const found = inspectMessage(req.method.input, req.message);
      const limit = req.contextValues.get(unencodedReadLimitKey);
      if (limit !== undefined && largerThan(req.method.input, req.message, found, limit)) throw new ConnectError(tooLargeMessage(limit), Code.ResourceExhausted);
      if (found.unstorable !== undefined) throw fieldError(found.unstorable, "must not contain NUL (U+0000) characters", "string.no_nul");
      if (found.timeOutOfRange !== undefined) throw fieldError(found.timeOutOfRange, "must be a time from year 1 to 9999", "timestamp.range");
    }
    return next(req);
  };
}

/** A plain HTTP body over the route's limit: answer 413. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body is larger than ${limit} bytes`);
    this.name = "BodyTooLargeError";
  }
}

/** A request's body and headers: a node request, or an RPC's exchange (rpc-exchange.ts). */
type NodeRequest = { headers: import("node:http").IncomingHttpHeaders } & AsyncIterable<Uint8Array>;
type NodeResponse = import("node:http").ServerResponse | import("node:http2").Http2ServerResponse;

/**
 * An RPC's body as sent, up to `max` bytes, kept in `values` (rawRequestBodyKey:
 * a partner's signature is checked over it). Larger: undefined, noted for
 * inputInterceptor (RESOURCE_EXHAUSTED inside the interceptors, naming the
 * message's limit `readMaxBytes`), the rest unread. The gateway's forwarding
 * and the services' Connect unary path (connect-unary.ts) alike.
 */
export async function readRpcBody(req: NodeRequest, max: number, readMaxBytes: number, values: ContextValues): Promise<Uint8Array | undefined> {
  let body: Buffer;
  try {
    body = await readHttpBody(req, max);
  } catch (err) {
    if (!(err instanceof BodyTooLargeError)) throw err;
    values.set(refusedBodyKey, { code: Code.ResourceExhausted, message: tooLargeMessage(readMaxBytes) });
    return undefined;
  }
  values.set(rawRequestBodyKey, body);
  return body;
}

/**
 * Reads a plain HTTP route's body (webhooks) up to `limit` bytes, refusing a
 * larger declared Content-Length before reading anything; past the limit
 * otherwise, the rest is read and dropped in the background (readAll, up to
 * DISCARD_MAX_BYTES): BodyTooLargeError, for answerTooLarge.
 */
export async function readHttpBody(req: NodeRequest, limit: number): Promise<Buffer> {
  if (Number(req.headers["content-length"] ?? NaN) > limit) throw new BodyTooLargeError(limit);
  try {
    return await readAll(req, limit);
  } catch (err) {
    throw err instanceof TooLarge ? new BodyTooLargeError(limit) : err;
  }
}

/** 413 with a sentence; HTTP/1.1 closes the connection after it (what is left of the body is dropped, not answered). */
export function answerTooLarge(res: NodeResponse, limit: number, contentType = "text/plain", body?: string): void {
  if (res.headersSent) return;
  const headers: Record<string, string> = { "content-type": contentType };
  if (!("stream" in res)) headers.connection = "close";
  (res as import("node:http").ServerResponse).writeHead(413, headers);
  res.end(body ?? `request body is larger than ${limit} bytes\n`);
}
