import { hmacSha256Hex } from "./signer.js";

/** The header a webhook delivery carries: "t=<unix seconds>,v1=<hex HMAC-SHA256>". */
export const WEBHOOK_SIGNATURE_HEADER = "x-ttip-webhook-signature";

export class WebhookVerificationError extends Error {
  override name = "WebhookVerificationError";
}

export interface VerifyWebhookOptions {
  /** The subscription's signing secret. */
  secret: string;
  /** The raw request body, exactly as received (before any JSON parsing). */
  body: string | Uint8Array;
  /** The value of the x-ttip-webhook-signature header (as Node's `req.headers[...]` gives it: a list is read as one header). */
  signatureHeader: string | readonly string[] | null | undefined;
  /** How old a delivery may be (default 300 s), against replays. */
  toleranceSeconds?: number;
  now?: number;
}

const decoder = new TextDecoder();

function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * Checks a webhook delivery: the HMAC-SHA256 of "<t>.<raw body>" under the
 * secret, and a timestamp within the tolerance. Returns the body as text;
 * throws WebhookVerificationError saying what is wrong.
 */
export async function verifyWebhook(options: VerifyWebhookOptions): Promise<string> {
  const given = options.signatureHeader;
  const header = typeof given === "string" ? given : given ? given.join(",") : "";
  const parts = Object.fromEntries(header.split(",").map((p) => p.trim().split("=", 2) as [string, string]));
  const t = parts.t;
  const signatures = header.split(",").map((p) => p.trim()).filter((p) => p.startsWith("v1=")).map((p) => p.slice(3));
  if (!t || !/^\d{1,12}$/.test(t) || signatures.length === 0) throw new WebhookVerificationError(`malformed ${WEBHOOK_SIGNATURE_HEADER} header`);
  const tolerance = options.toleranceSeconds ?? 300;
  const age = Math.floor((options.now ?? Date.now()) / 1000) - Number(t);
  if (Math.abs(age) > tolerance) throw new WebhookVerificationError(`stale timestamp: ${age} s old (at most ${tolerance} s)`);
  const body = typeof options.body === "string" ? options.body : decoder.decode(options.body);
  const expected = await hmacSha256Hex(options.secret, `${t}.${body}`);
  if (!signatures.some((s) => constantTimeEqual(s, expected))) throw new WebhookVerificationError("signature does not match");
  return body;
}

/** The header value for a delivery (for tests and for senders). */
export async function signWebhook(secret: string, body: string, now = Date.now()): Promise<string> {
  const t = Math.floor(now / 1000);
  return `t=${t},v1=${await hmacSha256Hex(secret, `${t}.${body}`)}`;
}
