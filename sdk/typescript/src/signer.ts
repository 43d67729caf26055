import { create, toBinary, toJson, type DescMessage } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";

/** The headers a signed partner call carries. */
export const PARTNER_HEADERS = Object.freeze({
  keyId: "x-ttip-key-id",
  timestamp: "x-ttip-timestamp",
  signature: "x-ttip-signature",
  /** A request id, signed and spent once: identical calls in one second are not replays. */
  nonce: "x-ttip-nonce",
});

export interface PartnerKey {
  /** The key's id (a UUID), shown with the key. */
  keyId: string;
  /** The secret (ttip_sk_…), shown once when the key was issued. */
  secret: string;
}

const encoder = new TextEncoder();

function hex(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The string a partner signs: METHOD \n path (with query) \n unix seconds \n
 * hex SHA-256 of the raw request body, then \n nonce when the call carries one
 * (without a nonce, the first scheme: still accepted, but two identical calls
 * in one second are one signed request, and the second is refused as a replay).
 */
export function stringToSign(method: string, path: string, unixSeconds: number, bodySha256Hex: string, nonce = ""): string {
  const lines = [method.toUpperCase(), path, String(unixSeconds), bodySha256Hex];
  return (nonce ? [...lines, nonce] : lines).join("\n");
}

/** Hex HMAC-SHA256 of `message` under `secret` (Web Crypto: Node 20+, browsers, Deno, Bun). */
export async function hmacSha256Hex(secret: string, message: string | Uint8Array): Promise<string> {
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return hex(await crypto.subtle.sign("HMAC", key, (typeof message === "string" ? encoder.encode(message) : message) as BufferSource));
}

/** The four headers for a request with exactly these body bytes, under a fresh nonce unless one is given. */
export async function signRequest(key: PartnerKey, method: string, path: string, body: Uint8Array, now = Date.now(), nonce: string = crypto.randomUUID()): Promise<Record<string, string>> {
  const at = Math.floor(now / 1000);
  const digest = hex(await crypto.subtle.digest("SHA-256", body as BufferSource));
  return {
    [PARTNER_HEADERS.keyId]: key.keyId,
    [PARTNER_HEADERS.timestamp]: String(at),
    [PARTNER_HEADERS.nonce]: nonce,
    [PARTNER_HEADERS.signature]: await hmacSha256Hex(key.secret, stringToSign(method, path, at, digest, nonce)),
  };
}

/**
 * The bytes the transport will send for a unary message, by its content type:
 * Connect binary or JSON as is, gRPC and gRPC-web in one uncompressed envelope.
 * Do not turn on send compression with this signer: the body would differ.
 */
function bodyBytes(schema: DescMessage, message: unknown, contentType: string): Uint8Array {
  const msg = create(schema, message as never);
  if (/^application\/json/.test(contentType)) return encoder.encode(JSON.stringify(toJson(schema, msg)));
  const bytes = toBinary(schema, msg);
  if (/^application\/proto/.test(contentType)) return bytes;
  if (/^application\/grpc/.test(contentType)) {
    const framed = new Uint8Array(5 + bytes.length);
    new DataView(framed.buffer).setUint32(1, bytes.length);
    framed.set(bytes, 5);
    return framed;
  }
  throw new Error(`cannot sign a body of content type ${contentType}`);
}

/** Refuses a key that cannot sign (`who` names the caller in the error). */
export function assertPartnerKey(key: PartnerKey, who: string): void {
  if (!/^[0-9a-f-]{36}$/i.test(key.keyId)) throw new Error(`${who}: keyId must be the key's UUID`);
  if (!key.secret) throw new Error(`${who}: secret is required`);
}

/**
 * A Connect interceptor that signs every unary call with a partner key. Works
 * with the Connect (binary or JSON), gRPC and gRPC-web transports left at their
 * default encoding: it re-encodes the message to sign it, so a transport with
 * its own `jsonOptions`, `useHttpGet` or compression sends other bytes than it
 * signed. createPartnerTransport signs the bytes sent, whatever the options.
 */
export function partnerSigner(key: PartnerKey, options: { now?: () => number; nonce?: () => string } = {}): Interceptor {
  assertPartnerKey(key, "partnerSigner");
  return (next) => async (req) => {
    if (req.stream) throw new Error("partner keys sign unary calls only");
    const body = bodyBytes(req.method.input, req.message, req.header.get("content-type") ?? "");
    const url = new URL(req.url);
    const headers = await signRequest(key, req.requestMethod, url.pathname + url.search, body, options.now?.() ?? Date.now(), options.nonce?.() ?? crypto.randomUUID());
    for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
    return next(req);
  };
}
