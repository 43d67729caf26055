import { DependencyUnavailableError, partnerNotLinkedError, type Principal } from "@ttip/runtime";
import { qrInternalClient } from "./peer-clients.js";
import type { Deps } from "./tips.js";

export const isPartner = (caller: Principal | undefined): caller is Principal => caller?.roles.includes("partner") === true;

/** Whether a partner key may act for the worker (at the venue) or the venue: qr keeps the links. */
export async function partnerLinked(deps: Deps, keyId: string, workerId: string, venueId: string): Promise<boolean> {
  const qr = qrInternalClient(deps.ctx);
  try {
    return (await qr.checkPartnerLink({ keyId, workerId, venueId }, { timeoutMs: 5_000 })).linked;
  } catch (err) {
    // Unknown is not linked, but it is not the partner's fault either: retry.
    throw new DependencyUnavailableError(`cannot check the partner key's link right now; retry shortly (${err instanceof Error ? err.message : String(err)})`);
  }
}

/**
 * A partner key creates tips only for workers and venues linked to it:
 * PERMISSION_DENIED naming the missing link otherwise.
 */
export async function requirePartnerLinked(deps: Deps, keyId: string, workerId: string, venueId: string): Promise<void> {
  if (!(await partnerLinked(deps, keyId, workerId, venueId))) throw partnerNotLinkedError(keyId, workerId || null, venueId || null);
}
