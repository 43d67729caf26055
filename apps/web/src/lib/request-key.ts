// The tip form's idempotency key when the form is posted by the browser itself
// (no scripts, or the server action posted again): the server keeps nothing
// between posts, so the key is worked out from the page's seed and the
// request. The same request from the same page is the same write; an edited
// one (another amount after a lost answer) is another write, with its own key.
import { createHash } from "node:crypto";

/**
 * The key of the request `intent` (what it asks, without the key) from the page holding `seed`:
 * SHA-256 of both, shaped as a UUID of RFC 9562's custom version 8.
 */
export function requestKey(seed: string, intent: string): string {
  const b = createHash("sha256").update(seed).update("\0").update(intent).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = b.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
