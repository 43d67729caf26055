// The internal hop (gateway -> service, service -> service) carries the
// caller's identity in plain headers; a service must not believe them because
// of where the call came from. The sender signs them with a key every process
// of the deployment shares (INTERNAL_SIGNING_KEY, from a Secret), the receiver
// verifies: a NetworkPolicy is then the second wall, not the only one.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { BoundedMap } from "./bounded-map.js";
import { GATEWAY_HEADERS } from "./headers.js";
import { hmacSha256 } from "./prepared-keys.js";

export const INTERNAL_SIGNATURE_HEADER = "x-ttip-internal";
/** How old (or how far ahead, for clock skew) a signature may be. */
const MAX_AGE_SECONDS = 60;
const SIGNED = [GATEWAY_HEADERS.subject, GATEWAY_HEADERS.roles, GATEWAY_HEADERS.session, GATEWAY_HEADERS.clientAddress] as const;

/**
 * The key from INTERNAL_SIGNING_KEY (at least 32 characters), or this process's
 * own random one (one process: make run, the tests; a cluster's processes must
 * share one, which main.ts requires). Read once, at the first call: the key a
 * process starts with is its key for life (a new one comes with a restart),
 * and every call signs or verifies, where reading process.env cost ~1% of the
 * gateway's CPU. The same Buffer every time, so its KeyObject is made once.
 */
export function internalSigningKey(): Buffer {
  return (processKey ??= keyFromEnvironment());
}

let processKey: Buffer | undefined;

function keyFromEnvironment(): Buffer {
  const configured = process.env.INTERNAL_SIGNING_KEY;
  if (!configured) return randomBytes(32);
  if (configured.length < 32) throw new Error("INTERNAL_SIGNING_KEY must be at least 32 characters");
  return Buffer.from(configured, "utf8");
}

function mac(key: Buffer, at: string, headers: Headers): Buffer {
  let message = `v1\n${at}`;
  for (const name of SIGNED) message += `\n${headers.get(name) ?? ""}`;
  // Covered only when present, so signatures without it read as before
  // (a rolling upgrade); adding or removing it still breaks the signature.
  const stepUpAt = headers.get(GATEWAY_HEADERS.stepUpAt);
  if (stepUpAt !== null) message += `\n${GATEWAY_HEADERS.stepUpAt}:${stepUpAt}`;
  return recentMac(key, message);
}

/**
 * The MACs of the messages signed or verified lately, by key: a message is
 * the second and the identity headers, so within a second most calls repeat
 * one (every service-to-service call without an identity signs the same), and
 * in one process the receiver verifies what the sender just signed. A memo of
 * a pure function: what verifies is unchanged. Bounded: the oldest forgotten first.
 */
const recentMacs = new WeakMap<Buffer, BoundedMap<string, Buffer>>();
const RECENT_MACS_MAX = 256;

function recentMac(key: Buffer, message: string): Buffer {
  let recent = recentMacs.get(key);
  if (recent === undefined) recentMacs.set(key, (recent = new BoundedMap(RECENT_MACS_MAX)));
  let digest = recent.get(message);
  if (digest === undefined) {
    digest = hmacSha256(key, message);
    recent.set(message, digest);
  }
  return digest;
}

/** Signs the identity headers present in `headers` (even none: the call then comes from a service). */
export function signInternal(headers: Headers, key = internalSigningKey(), now = Date.now()): void {
  const at = String(Math.floor(now / 1000));
  headers.set(INTERNAL_SIGNATURE_HEADER, `v1.${at}.${mac(key, at, headers).toString("base64url")}`);
}

/** True when the signature header is ours, fresh and covers exactly these identity headers. */
export function verifyInternal(headers: Headers, key = internalSigningKey(), now = Date.now()): boolean {
  const value = headers.get(INTERNAL_SIGNATURE_HEADER);
  const m = value ? /^v1\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value) : null;
  if (!m) return false;
  if (Math.abs(now / 1000 - Number(m[1])) > MAX_AGE_SECONDS) return false;
  const given = Buffer.from(m[2], "base64url");
  const expected = mac(key, m[1], headers);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** For transports that call services: signs every outgoing call. */
export function signingInterceptor(key?: Buffer): Interceptor {
  return (next) => (req) => {
    signInternal(req.header, key ?? internalSigningKey());
    return next(req);
  };
}

/**
 * For services: a call that carries identity headers, or calls an
 * …InternalService, must carry a valid signature; else UNAUTHENTICATED. A call
 * with neither is anonymous, as through the gateway.
 */
export function internalAuthInterceptor(key?: Buffer): Interceptor {
  return (next) => (req) => {
    const claimsIdentity = SIGNED.some((name) => req.header.has(name)) || req.header.has(GATEWAY_HEADERS.stepUpAt);
    const internal = req.service.typeName.endsWith("InternalService");
    if ((claimsIdentity || internal || req.header.has(INTERNAL_SIGNATURE_HEADER)) && !verifyInternal(req.header, key ?? internalSigningKey())) {
      throw new ConnectError(
        internal
          ? `${req.service.typeName} is for the platform's own services: the call is not signed with the internal key`
          : "caller identity headers are not signed by the gateway: call through the gateway with a token",
        Code.Unauthenticated,
      );
    }
    return next(req);
  };
}
