// The providers' callback signatures. Both sides (webhooks and simulators) use
// these, so a simulator can only pass what the real provider would.
import { timingSafeEqual, verify } from "node:crypto";
import { hmac, spkiPublicKeyOf } from "@ttip/runtime";

/**
 * Twilio's X-Twilio-Signature: base64 HMAC-SHA1, keyed with the auth token,
 * of the full URL Twilio called followed by every POST parameter name and
 * value, sorted by name.
 */
export function twilioSignature(authToken: string, url: string, params: Record<string, string>): string {
  const data = Object.keys(params)
    .sort()
    .reduce((acc, k) => acc + k + params[k], url);
  return hmac("sha1", authToken, data, "base64");
}

export function checkTwilioSignature(authToken: string, url: string, params: Record<string, string>, given: string): boolean {
  if (!authToken || !given) return false;
  const expected = Buffer.from(twilioSignature(authToken, url, params));
  const actual = Buffer.from(given);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/**
 * SendGrid's signed event webhook: ECDSA (P-256, SHA-256) over the timestamp
 * header followed by the raw body; the public key is base64 DER (SPKI) as the
 * SendGrid console shows it.
 */
export function checkSendgridSignature(publicKeyBase64: string, timestamp: string, rawBody: Buffer, signatureBase64: string): boolean {
  if (!publicKeyBase64 || !timestamp || !signatureBase64) return false;
  try {
    // Imported once per key text: a key changed in the config is a new key.
    return verify("sha256", Buffer.concat([Buffer.from(timestamp), rawBody]), spkiPublicKeyOf(publicKeyBase64), Buffer.from(signatureBase64, "base64"));
  } catch {
    return false;
  }
}

/** Compares secrets without leaking their length or content through timing. */
export function sameSecret(expected: string, given: string): boolean {
  const a = hmac("sha256", "cmp", expected);
  const b = hmac("sha256", "cmp", given);
  return expected.length > 0 && timingSafeEqual(a, b);
}
