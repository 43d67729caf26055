import type { Transport } from "@connectrpc/connect";
import { universalClientResponseFromFetch, validateReadWriteMaxBytes, type CommonTransportOptions, type UniversalClientFn } from "@connectrpc/connect/protocol";
import { createTransport as connectTransport } from "@connectrpc/connect/protocol-connect";
import { createTransport as grpcTransport } from "@connectrpc/connect/protocol-grpc";
import { createTransport as grpcWebTransport } from "@connectrpc/connect/protocol-grpc-web";
import { assertPartnerKey, signRequest, type PartnerKey } from "./signer.js";

/** A signed request's body is held whole to be hashed: past this it is refused, not buffered. */
const MAX_SIGNED_BODY_BYTES = 16 * 1024 * 1024;

/** When a request is signed (unix ms) and under which nonce; a fresh UUID each call unless given. */
export interface SigningClock {
  now?: () => number;
  nonce?: () => string;
}

/**
 * Wraps an HTTP client so that each request is signed over exactly what it sends: its method,
 * its URL's path and query (a Connect GET carries its message there) and its body's bytes,
 * whatever the transport's format, JSON options or compression made of the message.
 */
export function signingHttpClient(key: PartnerKey, httpClient: UniversalClientFn, clock: SigningClock = {}): UniversalClientFn {
  assertPartnerKey(key, "signingHttpClient");
  return async (req) => {
    const body = await allBytes(req.body);
    const url = new URL(req.url);
    const headers = await signRequest(key, req.method, url.pathname + url.search, body, clock.now?.() ?? Date.now(), clock.nonce?.() ?? crypto.randomUUID());
    for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
    return httpClient({ ...req, body: req.body === undefined ? undefined : once(body) });
  };
}

/** An HTTP client over `fetch` (Node 20+, browsers, Deno, Bun) that sends a request's body as one buffer. */
export function fetchHttpClient(fetchFn: typeof fetch = globalThis.fetch): UniversalClientFn {
  return async (req) => {
    const body = req.body === undefined ? undefined : await allBytes(req.body);
    const res = await fetchFn(req.url, { method: req.method, headers: req.header, signal: req.signal, body: body as BodyInit | undefined });
    return universalClientResponseFromFetch(res);
  };
}

export interface PartnerTransportOptions extends SigningClock, Partial<Omit<CommonTransportOptions, "baseUrl" | "httpClient">> {
  baseUrl: string;
  /** "connect" (the default), "grpc" (needs an HTTP/2 client: connect-node's createNodeHttpClient) or "grpc-web". */
  protocol?: "connect" | "grpc" | "grpc-web";
  /** What carries the signed requests; by default `fetch`. In Node, connect-node's createNodeHttpClient also fits. */
  httpClient?: UniversalClientFn;
}

const PROTOCOLS = { connect: connectTransport, grpc: grpcTransport, "grpc-web": grpcWebTransport } as const;

/**
 * A transport whose every unary call is signed with a partner key, over the bytes it sends: any
 * `jsonOptions`, `useHttpGet` or `sendCompression` is covered (partnerSigner re-encodes the
 * message by default options, so it fits only a transport left at them). Streaming calls are
 * refused by the gateway for partner keys.
 */
export function createPartnerTransport(key: PartnerKey, options: PartnerTransportOptions): Transport {
  const { protocol = "connect", httpClient = fetchHttpClient(), now, nonce, ...rest } = options;
  const transport = PROTOCOLS[protocol];
  if (!transport) throw new Error(`createPartnerTransport: protocol must be connect, grpc or grpc-web, not ${String(protocol)}`);
  return transport({
    ...rest,
    httpClient: signingHttpClient(key, httpClient, { now, nonce }),
    useBinaryFormat: rest.useBinaryFormat ?? protocol !== "connect",
    interceptors: rest.interceptors ?? [],
    acceptCompression: rest.acceptCompression ?? [],
    sendCompression: rest.sendCompression ?? null,
    ...validateReadWriteMaxBytes(rest.readMaxBytes, rest.writeMaxBytes, rest.compressMinBytes),
  });
}

async function allBytes(body: AsyncIterable<Uint8Array> | undefined): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body ?? []) {
    size += chunk.byteLength;
    if (size > MAX_SIGNED_BODY_BYTES) throw new Error(`a signed request's body is at most ${MAX_SIGNED_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  chunks.reduce((at, c) => (out.set(c, at), at + c.byteLength), 0);
  return out;
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
