// Input checks every server runs before a handler sees a request: the body's
// size, whether a binary body parses, and whether every string can be stored
// by PostgreSQL. One place, so no service has to remember them.
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { fromBinary, toBinary, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
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

async function readAll(body: AsyncIterable<Uint8Array>, max: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max) throw new TooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
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

/** The messages inside a gRPC / gRPC-web / Connect-streaming body, decompressed. */
function envelopes(body: Uint8Array, encoding: string | null, max: number, acceptHeader: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < body.byteLength) {
    if (body.byteLength - at < 5) throw new Error("truncated envelope header");
    const flags = body[at];
    const length = Buffer.from(body.buffer, body.byteOffset + at + 1, 4).readUInt32BE(0);
    at += 5;
    if (body.byteLength - at < length) throw new Error("truncated message");
    const data = body.subarray(at, at + length);
    at += length;
    if (flags & 0b10) continue; // an end-of-stream frame, not a message
    out.push(envelopedMessage(flags, data, encoding, max, acceptHeader));
  }
  return out;
}

/**
 * One envelope's message: as it is, or decompressed (decompressMessage) when
 * its flags say compressed; compressed without an encoding header is
 * INVALID_ARGUMENT. The services' guard and the gateway's edge alike.
 */
export function envelopedMessage(flags: number, data: Uint8Array, encoding: string | null, max: number, acceptHeader: string): Uint8Array {
  if (!(flags & 0b01)) return data;
  if (!encoding || encoding === "identity") throw new ConnectError("a compressed message without its encoding header", Code.InvalidArgument);
  return decompressMessage(encoding, data, max, acceptHeader);
}

/** A gRPC, gRPC-web or Connect-streaming envelope's header: a flags byte and the message's length. */
const ENVELOPE_HEADER_BYTES = 5;

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
      return handler({ ...req, body: oneChunk(enveloped ? new Uint8Array(5) : new Uint8Array(0)) });
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
            ? envelopes(body, req.header.get("connect-content-encoding"), readMaxBytes, "connect-accept-encoding")
            : envelopes(body, req.header.get("grpc-encoding"), readMaxBytes, "grpc-accept-encoding")
          : [decompressMessage(req.header.get("content-encoding"), body, readMaxBytes)];
        for (const m of messages) fromBinary(input, m);
      } catch (err) {
        if (err instanceof ConnectError) return refuse(err.code, err.rawMessage, err.metadata);
        const reason = err instanceof RangeError && /call stack/i.test(err.message) ? "nested too deeply" : (err as Error).message;
        return refuse(Code.InvalidArgument, `the request body is not a valid ${input.typeName} in binary protobuf: ${reason}`);
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

function isByteStream(body: unknown): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}

async function* oneChunk(data: Uint8Array): AsyncIterable<Uint8Array> {
  if (data.byteLength) yield data;
}

/**
 * Whether `message` takes more than `max` bytes in binary protobuf, the size a
 * network caller's body is held to (a call in this process hands the message
 * over unencoded). Estimated from above without encoding: a string at 3 bytes
 * per UTF-16 unit, FIELD_BOUND bytes of tag, length or value per field. Only a
 * message whose estimate passes `max` is encoded to know for sure, so a call's
 * usual small message costs one walk over its set fields.
 */
export function encodedLargerThan(desc: DescMessage, message: Message, max: number): boolean {
  return sizeBound(desc, message, 0) > max && toBinary(desc, message).byteLength > max;
}

/** A field's tag (at most 5 bytes) and its varint value or length prefix (at most 10), rounded up. */
const FIELD_BOUND = 16;

function sizeBound(desc: DescMessage, message: Message, depth: number): number {
  // Deeper than parsing allows: let the encoder say.
  if (depth > 32) return Infinity;
  const record = message as unknown as Record<string, unknown>;
  let size = 0;
  for (const unknown of (record.$unknown as Array<{ data: Uint8Array }> | undefined) ?? []) size += unknown.data.byteLength + FIELD_BOUND;
  for (const field of desc.fields) {
    const value = field.oneof ? oneofValue(record[field.oneof.localName], field) : record[field.localName];
    if (value === undefined || value === null) continue;
    size += fieldBound(field, value, depth);
  }
  return size;
}

function fieldBound(field: DescField, value: unknown, depth: number): number {
  switch (field.fieldKind) {
    case "scalar":
      return scalarBound(value);
    case "enum":
      return FIELD_BOUND;
    case "message":
      return FIELD_BOUND + messageBound(field.message, value, depth);
    case "list": {
      let size = 0;
      for (const item of value as unknown[]) size += field.listKind === "message" ? FIELD_BOUND + messageBound(field.message, item, depth) : scalarBound(item);
      return size;
    }
    case "map": {
      let size = 0;
      for (const [key, item] of Object.entries(value as Record<string, unknown>))
        size += FIELD_BOUND + scalarBound(key) + (field.mapKind === "message" ? FIELD_BOUND + messageBound(field.message, item, depth) : scalarBound(item));
      return size;
    }
  }
}

function scalarBound(value: unknown): number {
  if (typeof value === "string") return value.length * 3 + FIELD_BOUND;
  if (value instanceof Uint8Array) return value.byteLength + FIELD_BOUND;
  return FIELD_BOUND;
}

function messageBound(desc: DescMessage, value: unknown, depth: number): number {
  if (typeof value === "object" && value !== null && "$typeName" in value) return sizeBound(desc, value as Message, depth + 1);
  // Well-known wrappers held as plain values; a Struct held as JSON is left to the encoder.
  return typeof value === "object" && value !== null && !(value instanceof Uint8Array) ? Infinity : FIELD_BOUND + scalarBound(value);
}

/** PostgreSQL's text types cannot hold U+0000; anything else a JS string holds is storable. */
const UNSTORABLE = /\u0000/;

/**
 * The path of the first string field (at any depth, map keys included) that
 * PostgreSQL could not store, e.g. "message" or "items[2].name", or undefined.
 */
export function unstorableStringField(desc: DescMessage, message: Message, depth = 0): string | undefined {
  if (depth > 32) return undefined; // parsing already bounds nesting; this keeps the walk finite
  const record = message as unknown as Record<string, unknown>;
  for (const field of desc.fields) {
    const value = field.oneof ? oneofValue(record[field.oneof.localName], field) : record[field.localName];
    if (value === undefined || value === null) continue;
    const found = unstorableIn(field, value, depth);
    if (found !== undefined) return found === "" ? field.name : `${field.name}${found}`;
  }
  return undefined;
}

function oneofValue(oneof: unknown, field: DescField): unknown {
  const o = oneof as { case?: string; value?: unknown } | undefined;
  return o?.case === field.localName ? o.value : undefined;
}

/** "" when the value itself is unstorable, a suffix like "[3]" or ".name" for a part of it. */
function unstorableIn(field: DescField, value: unknown, depth: number): string | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return typeof value === "string" && UNSTORABLE.test(value) ? "" : undefined;
    case "enum":
      return undefined;
    case "message":
      return unstorableInMessage(field.message, value, depth);
    case "list": {
      const items = value as unknown[];
      for (let i = 0; i < items.length; i++) {
        const item = items[i];
        const found =
          field.listKind === "scalar" ? (typeof item === "string" && UNSTORABLE.test(item) ? "" : undefined)
          : field.listKind === "message" ? unstorableInMessage(field.message, item, depth)
          : undefined;
        if (found !== undefined) return `[${i}]${found}`;
      }
      return undefined;
    }
    case "map": {
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        if (UNSTORABLE.test(key)) return `[${JSON.stringify(key)}]`;
        const found =
          field.mapKind === "scalar" ? (typeof item === "string" && UNSTORABLE.test(item) ? "" : undefined)
          : field.mapKind === "message" ? unstorableInMessage(field.message, item, depth)
          : undefined;
        if (found !== undefined) return `[${JSON.stringify(key)}]${found}`;
      }
      return undefined;
    }
  }
}

function unstorableInMessage(desc: DescMessage, value: unknown, depth: number): string | undefined {
  if (typeof value === "object" && value !== null && "$typeName" in value) {
    const found = unstorableStringField(desc, value as Message, depth + 1);
    return found === undefined ? undefined : `.${found}`;
  }
  // Well-known types held as plain values (wrappers, Struct as JSON).
  return unstorableJson(value, depth + 1);
}

function unstorableJson(value: unknown, depth: number): string | undefined {
  if (typeof value === "string") return UNSTORABLE.test(value) ? "" : undefined;
  if (typeof value !== "object" || value === null || depth > 32) return undefined;
  for (const [key, item] of Object.entries(value)) {
    if (UNSTORABLE.test(key)) return `[${JSON.stringify(key)}]`;
    const found = unstorableJson(item, depth + 1);
    if (found !== undefined) return `${Array.isArray(value) ? `[${key}]` : `.${key}`}${found}`;
  }
  return undefined;
}

/**
 * Refuses what guardRequestBody noted, then any string PostgreSQL cannot store
 * (a NUL byte fails the statement with "invalid byte sequence"), naming the field.
 */
export function inputInterceptor(): Interceptor {
  return (next) => async (req) => {
    const refused = req.contextValues.get(refusedBodyKey);
    if (refused) throw new ConnectError(refused.message, refused.code, refused.metadata);
    if (!req.stream) {
      const field = unstorableStringField(req.method.input, req.message);
      if (field !== undefined) throw fieldError(field, "must not contain NUL (U+0000) characters", "string.no_nul");
      const time = timestampOutOfRangeField(req.method.input, req.message);
      if (time !== undefined) throw fieldError(time, "must be a time from year 1 to 9999", "timestamp.range");
    }
    return next(req);
  };
}

// google.protobuf.Timestamp's valid range (0001-01-01 to 9999-12-31 UTC). Outside it a
// JavaScript Date is invalid or PostgreSQL refuses it, which failed the statement.
const MIN_TIMESTAMP_SECONDS = -62_135_596_800n;
const MAX_TIMESTAMP_SECONDS = 253_402_300_799n;

/** The path of the first Timestamp (at any depth) outside that range, or undefined. */
export function timestampOutOfRangeField(desc: DescMessage, message: Message, depth = 0): string | undefined {
  if (depth > 32) return undefined;
  const record = message as unknown as Record<string, unknown>;
  for (const field of desc.fields) {
    const value = field.oneof ? oneofValue(record[field.oneof.localName], field) : record[field.localName];
    if (value === undefined || value === null || !("message" in field) || !field.message) continue;
    const items: [string, unknown][] =
      field.fieldKind === "message" ? [["", value]]
      : field.fieldKind === "list" ? (value as unknown[]).map((v, i) => [`[${i}]`, v])
      : field.fieldKind === "map" ? Object.entries(value as Record<string, unknown>).map(([k, v]) => [`[${JSON.stringify(k)}]`, v])
      : [];
    for (const [suffix, item] of items) {
      if (typeof item !== "object" || item === null || !("$typeName" in item)) continue;
      if (field.message.typeName === "google.protobuf.Timestamp") {
        const { seconds, nanos } = item as unknown as { seconds: bigint; nanos: number };
        if (seconds < MIN_TIMESTAMP_SECONDS || seconds > MAX_TIMESTAMP_SECONDS || nanos < 0 || nanos > 999_999_999) return `${field.name}${suffix}`;
        continue;
      }
      const inner = timestampOutOfRangeField(field.message, item as Message, depth + 1);
      if (inner !== undefined) return `${field.name}${suffix}.${inner}`;
    }
  }
  return undefined;
}

/** A plain HTTP body over the route's limit: answer 413. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body is larger than ${limit} bytes`);
    this.name = "BodyTooLargeError";
  }
}

type NodeRequest = import("node:http").IncomingMessage | import("node:http2").Http2ServerRequest;
type NodeResponse = import("node:http").ServerResponse | import("node:http2").Http2ServerResponse;

/**
 * Reads a plain HTTP route's body (webhooks) up to `limit` bytes, refusing a
 * larger declared Content-Length before reading anything and stopping at the
 * limit otherwise: BodyTooLargeError, for answerTooLarge.
 */
export async function readHttpBody(req: NodeRequest, limit: number): Promise<Buffer> {
  if (Number(req.headers["content-length"] ?? NaN) > limit) throw new BodyTooLargeError(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BodyTooLargeError(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** 413 with a sentence; the rest of the body is not read (HTTP/1.1 closes the connection). */
export function answerTooLarge(res: NodeResponse, limit: number, contentType = "text/plain", body?: string): void {
  if (res.headersSent) return;
  const headers: Record<string, string> = { "content-type": contentType };
  if (!("stream" in res)) headers.connection = "close";
  (res as import("node:http").ServerResponse).writeHead(413, headers);
  res.end(body ?? `request body is larger than ${limit} bytes\n`);
}
