// The idempotency key of one intended write, and which answers settle it.
// Shared by the browser's forms (use-write.ts) and the server actions that
// post on a form's behalf (the tip page's M-Pesa form works without scripts).
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";

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

/** Unanswered writes a WriteKey remembers (the oldest forgotten first): a form's few edits back and forth. */
const MAX_UNANSWERED = 16;

/**
 * The keys of intended writes, each kept until the service answers for it. A
 * changed request (an amount edited after a lost answer) is another intended
 * write and gets a new key: under the kept one the service would refuse it
 * (its fingerprint differs) or answer with the first write's result. Going
 * back to a request still unanswered is that write again, under its own key:
 * the first may have gone through, and a new key would make it twice.
 */
export class WriteKey {
  private key: string;
  /** The request the key was last sent for; undefined while it was never sent, or when the caller did not say. */
  private sentFor: string | undefined;
  /** Keys sent and not answered for yet, by the request (its fields, without the key), oldest first. */
  private readonly unanswered = new Map<string, string>();

  /**
   * `make`: where new keys come from (the phone's tests give numbered ones); `unanswered`: writes still unanswered
   * when this was last saved (unansweredWrites), so a request asked again after a restart is the same write.
   */
  constructor(first?: string, private readonly make: () => string = newWriteKey, unanswered: Iterable<[string, string]> = []) {
    this.key = first ?? make();
    for (const [intent, key] of unanswered) this.unanswered.set(intent, key);
  }

  /** The writes asked for and not answered for yet, as [intent, key], oldest first: what to save. */
  unansweredWrites(): [string, string][] {
    return [...this.unanswered];
  }

  /** Whether a request asking `intent` was sent and not answered for: it may have been done, and asked again is replayed. */
  sentUnanswered(intent: string): boolean {
    return this.unanswered.has(intent);
  }

  /** The key to send a request with; `intent` says what the request asks (its fields, without the key). */
  use(intent?: string): string {
    if (intent === undefined || intent === this.sentFor) return this.key;
    const kept = this.unanswered.get(intent);
    if (kept !== undefined) this.key = kept;
    else {
      if (this.sentFor !== undefined) this.key = this.make();
      this.unanswered.set(intent, this.key);
      if (this.unanswered.size > MAX_UNANSWERED) this.unanswered.delete(this.unanswered.keys().next().value!);
    }
    this.sentFor = intent;
    return this.key;
  }

  /** The service answered for `used`: that write is done, and the same request again is a new one. */
  settle(used: string): void {
    for (const [intent, key] of this.unanswered) if (key === used) this.unanswered.delete(intent);
    if (this.key !== used) return;
    this.key = this.make();
    this.sentFor = undefined;
  }
}

/**
 * The service answered, so whether the write happened is known: a success or
 * a refusal that changed nothing. Anything else (no answer, a lost connection,
 * a deadline, an internal fault) may have hidden a write that went through, so
 * a retry must carry the same key for the service to replay it.
 *
 * Not UNAUTHENTICATED nor RESOURCE_EXHAUSTED: the gateway answers them (an
 * expired session, a rate limit) before any service reads the key, so they say
 * nothing of an earlier send under it whose answer was lost. Settled, that
 * send's write was asked again under a new key: a second payout. Kept, the
 * same request again is replayed, or done once; a service refusing so stores
 * nothing under the key.
 */
const SETTLING = new Set<Code>([
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.Unimplemented,
]);

export function settlesWrite(err: unknown): boolean {
  if (!(err instanceof ConnectError)) return false;
  // A withdrawal limit is the service's answer, after it read the key: payment stores the payout refused under it.
  return SETTLING.has(err.code) || (err.code === Code.ResourceExhausted && err.findDetails(DomainErrorInfoSchema).some((d) => d.reason === "LIMIT_EXCEEDED"));
}
