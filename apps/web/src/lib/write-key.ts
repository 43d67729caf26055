// The idempotency key of one intended write, and which answers settle it.
// Shared by the browser's forms (use-write.ts) and the server actions that
// post on a form's behalf (the tip page's M-Pesa form works without scripts).
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * A fresh key, a random (version 4) UUID: some writes use it as the new
 * thing's id too. Built from getRandomValues, not randomUUID: the latter exists
 * only in secure contexts, and a phone on a venue's LAN may open the app over
 * plain http.
 */
export function newWriteKey(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The service answered, so whether the write happened is known: a success or
 * a refusal that changed nothing. Anything else (no answer, a lost connection,
 * a deadline, an internal fault) may have hidden a write that went through, so
 * a retry must carry the same key for the service to replay it.
 */
const SETTLING = new Set<Code>([
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.Unimplemented,
  Code.Unauthenticated,
  Code.ResourceExhausted,
]);

export function settlesWrite(err: unknown): boolean {
  return err instanceof ConnectError && SETTLING.has(err.code);
}
