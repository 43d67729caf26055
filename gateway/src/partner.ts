import { createHash } from "node:crypto";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createContextKey, type Interceptor, type Transport } from "@connectrpc/connect";
import { AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { isUuid, rawRequestBodyKey } from "@ttip/runtime";
import { nextSettled, principalKey } from "./auth.js";

/**
 * The headers of a partner's signed call. The signature is hex HMAC-SHA256,
 * under the key's secret, of auth's string to sign:
 * METHOD \n path (with query) \n unix seconds \n hex SHA-256 of the raw body
 * [\n nonce]. The nonce (optional, sent by the SDKs) is a request id spent
 * once, so two identical calls within one second are not taken for a replay.
 */
export const PARTNER_HEADERS = Object.freeze({
  keyId: "x-ttip-key-id",
  timestamp: "x-ttip-timestamp",
  signature: "x-ttip-signature",
  nonce: "x-ttip-nonce",
});
const REQUIRED_HEADERS = [PARTNER_HEADERS.keyId, PARTNER_HEADERS.timestamp, PARTNER_HEADERS.signature];
const PARTNER_HEADER_NAMES = Object.values(PARTNER_HEADERS);

/** Whether a call carries any of a partner's headers (listed once, looked for in place). */
export function signsAsPartner(header: Headers): boolean {
  for (const name of PARTNER_HEADER_NAMES) if (header.has(name)) return true;
  return false;
}

/** A partner key whose signature auth verified for this call. */
export interface VerifiedPartner {
  keyId: string;
  partnerName: string;
  scopes: string[];
}

export const partnerKey = createContextKey<VerifiedPartner | undefined>(undefined, { description: "verified partner key" });

export interface SignedCall {
  keyId: string;
  method: string;
  path: string;
  unixSeconds: number;
  bodySha256: Uint8Array;
  signature: string;
  /** "" for a call signed without one (the first scheme). */
  nonce: string;
}

/** Checks a signed call (HMAC, replay); throws UNAUTHENTICATED saying why when it does not verify. */
export type PartnerVerifier = (call: SignedCall) => Promise<{ partnerName: string; scopes: string[] }>;

export interface PartnerOptions {
  verify: PartnerVerifier;
  /** How far a timestamp may be from the gateway's clock, either way (default 300 s, auth's window). */
  maxSkewSeconds?: number;
  now?: () => number;
  /** Told how each call of a verified key ended (code undefined: OK), for the key's usage; must not throw. */
  countCall?: (keyId: string, code: Code | undefined) => void;
}

const refused = (why: string) => new ConnectError(`partner signature refused: ${why}`, Code.Unauthenticated);

/** Asks auth, over its internal service, whether a signed call is genuine and fresh. */
export function authPartnerVerifier(transport: Transport): PartnerVerifier {
  const auth = createClient(AuthInternalService, transport);
  return async (call) => {
    try {
      const res = await auth.verifyPartnerSignature(
        { ...call, timestamp: timestampFromMs(call.unixSeconds * 1000) },
        { timeoutMs: 5_000 },
      );
      return { partnerName: res.partnerName, scopes: res.scopes };
    } catch (err) {
      const e = ConnectError.from(err);
      // Auth's answer names what is wrong (bad signature, replayed, revoked): pass it on.
      if (e.code === Code.Unauthenticated) throw new ConnectError(e.rawMessage, Code.Unauthenticated);
      if (e.code === Code.InvalidArgument) throw refused(e.rawMessage);
      throw new ConnectError("cannot check the partner signature right now; retry shortly", Code.Unavailable);
    }
  };
}

/**
 * Authenticates a partner's signed call: the three headers, a timestamp inside
 * the skew window, then auth's verdict on the HMAC and on replay. A call with
 * none of the headers goes on unchanged (bearer token or anonymous).
 */
export function partnerInterceptor(options: PartnerOptions | undefined): Interceptor {
  const maxSkew = options?.maxSkewSeconds ?? 300;
  const now = options?.now ?? Date.now;
  // A call with none of the headers (most: a customer's tip) goes on with no async step of this check's own.
  return (next) => (req) => (signsAsPartner(req.header) ? signed(next, req) : nextSettled(next, req));

  async function signed(next: Parameters<Interceptor>[0], req: Parameters<Parameters<Interceptor>[0]>[0]) {
    if (!options) throw refused("partner calls are not accepted by this gateway");
    const missing = REQUIRED_HEADERS.filter((h) => !req.header.has(h));
    if (missing.length) throw refused(`missing header ${missing.join(", ")}`);
    if (req.contextValues.get(principalKey)) throw refused("send a partner signature or a bearer token, not both");
    if (req.stream) throw refused("partner keys sign unary calls only");

    // One spelling of the key: the services see it as the caller (tip keys, budgets, usage are kept under it).
    const keyId = req.header.get(PARTNER_HEADERS.keyId)!.toLowerCase();
    if (!isUuid(keyId)) throw refused(`${PARTNER_HEADERS.keyId} is not a key id (a UUID)`);
    const stamp = req.header.get(PARTNER_HEADERS.timestamp)!;
    if (!/^\d{1,12}$/.test(stamp)) throw refused(`${PARTNER_HEADERS.timestamp} must be unix seconds`);
    const skew = Math.round(Number(stamp) - now() / 1000);
    if (skew < -maxSkew) throw refused(`stale timestamp: ${-skew} s behind the gateway's clock (at most ${maxSkew} s)`);
    // Not stale: the signer's clock runs fast (or the stamp is not unix seconds).
    if (skew > maxSkew) throw refused(`timestamp in the future: ${skew} s ahead of the gateway's clock (at most ${maxSkew} s; check the signer's clock)`);
    const signature = req.header.get(PARTNER_HEADERS.signature)!;
    if (!/^[0-9a-f]{64}$/.test(signature)) throw refused(`${PARTNER_HEADERS.signature} must be 64 lowercase hex digits (HMAC-SHA256)`);
    const nonce = req.header.get(PARTNER_HEADERS.nonce) ?? "";
    if (req.header.has(PARTNER_HEADERS.nonce) && !/^[A-Za-z0-9_-]{16,64}$/.test(nonce)) {
      throw refused(`${PARTNER_HEADERS.nonce} must be 16 to 64 letters, digits, - or _ (a UUID will do)`);
    }

    const method = req.requestMethod.toUpperCase();
    const body = req.contextValues.get(rawRequestBodyKey) ?? (method === "GET" ? new Uint8Array(0) : undefined);
    if (!body) throw refused("the request body could not be read for the signature check");
    const url = new URL(req.url, "http://gateway");
    const verdict = await options.verify({
      keyId,
      method,
      path: url.pathname + url.search,
      unixSeconds: Number(stamp),
      bodySha256: createHash("sha256").update(body).digest(),
      signature,
      nonce,
    });
    req.contextValues.set(partnerKey, { keyId, ...verdict });
    // Services see the key as the caller, with the role partner.
    req.contextValues.set(principalKey, { subject: keyId, roles: ["partner"] });
    if (!options.countCall) return next(req);
    try {
      const res = await next(req);
      options.countCall(keyId, undefined);
      return res;
    } catch (err) {
      options.countCall(keyId, ConnectError.from(err).code);
      throw err;
    }
  }
}
