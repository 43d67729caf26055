import { DependencyUnavailableError, fieldError, partnerNotLinkedError, type Principal, type Queryable } from "@ttip/runtime";
import { qrInternalClient } from "./peer-clients.js";
import type { Deps } from "./tips.js";

export const isPartner = (caller: Principal | undefined): caller is Principal => caller?.roles.includes("partner") === true;

/** Whether a partner key may act for the worker (at the venue) or the venue: qr keeps the links. */
export async function partnerLinked(deps: Deps, keyId: string, workerId: string, venueId: string): Promise<boolean> {
  const qr = qrInternalClient(deps.ctx);
  try {
    return (await qr.checkPartnerLink({ keyId, workerId, venueId }, { timeoutMs: 5_000 })).linked;
  } catch (err) {
    // Unknown is not linked, but it is not the partner's fault either: retry. Why is logged, not told: the error's
    // text names internal addresses and services, and the caller is outside.
    deps.ctx.logger.warn({ err }, "partner link check failed");
    throw new DependencyUnavailableError("cannot check the partner key's link right now; retry shortly");
  }
}

/**
 * A partner key creates tips only for workers and venues linked to it:
 * PERMISSION_DENIED naming the missing link otherwise.
 */
export async function requirePartnerLinked(deps: Deps, keyId: string, workerId: string, venueId: string): Promise<void> {
  if (!(await partnerLinked(deps, keyId, workerId, venueId))) throw partnerNotLinkedError(keyId, workerId || null, venueId || null);
}

/** Where a partner's tip keys begin: a key space no other caller may write in. */
const PARTNER_KEY_SPACE = "partner:";
/**
 * The key spaces of the tips payment makes itself: a paybill payment's (c2b:<receipt>) and a USSD session's
 * (ussd:<session>). A caller's tip under "c2b:R" would make the real payment R's tip a duplicate key for good: never
 * credited, never parked.
 */
const RESERVED_KEY_SPACES = [PARTNER_KEY_SPACE, "c2b:", "ussd:"];

/**
 * The key a CreateTip is stored under. A partner's keys are its own, as qr and auth keep theirs: two
 * partners both sending their invoice number "INV-1001" make two tips, and neither is answered the
 * other's tip (its card's client secret with it). A tip a partner created before keys were scoped is
 * still found under its bare key by that partner. Other callers' keys (the tip page's random ids)
 * stay bare, and may not begin in the partners' space or payment's own.
 */
export async function tipKeyOf(db: Queryable, caller: Principal | undefined, key: string): Promise<string> {
  if (!isPartner(caller)) {
    const reserved = RESERVED_KEY_SPACES.find((space) => key.startsWith(space));
    if (reserved) throw fieldError("idempotency_key", `must not begin with "${reserved}"`);
    return key;
  }
  const { rowCount } = await db.query("SELECT 1 FROM payment.tips WHERE idempotency_key = $1 AND customer_subject = $2", [key, caller.subject]);
  return rowCount ? key : `${PARTNER_KEY_SPACE}${caller.subject}:${key}`;
}
