import { partnerNotLinkedError, PermissionDeniedError, type Principal, type Queryable } from "@ttip/runtime";
import { partnerLinkOf } from "./partner-links.js";
import { isVenueManager } from "./stores/venues.js";

export const WORKER = 1;
export const VENUE = 2;

const isAdmin = (caller: Principal) => caller.roles.includes("admin");

async function managesVenue(db: Queryable, caller: Principal, venueId: string): Promise<boolean> {
  return caller.roles.includes("venue_manager") && (await isVenueManager(db, venueId, caller.subject));
}

/**
 * Who may manage codes of (kind, owner) at an optional venue: the worker
 * themself, a manager of the venue concerned, an admin, or a partner key
 * linked to the worker or the venue (partner-links.ts).
 */
export async function canManage(db: Queryable, caller: Principal, ownerKind: number, ownerId: string, venueId: string | null): Promise<boolean> {
  if (isAdmin(caller)) return true;
  if (caller.roles.includes("partner")) {
    const workerId = ownerKind === WORKER ? ownerId : null;
    const link = await partnerLinkOf(db, caller.subject, workerId, ownerKind === WORKER ? venueId : ownerId);
    // A worker's personal code (no venue) is theirs alone: a venue's link covers its staff's codes at that venue only.
    if (ownerKind === WORKER && venueId === null) return link?.kind === WORKER;
    return link !== undefined;
  }
  if (ownerKind === WORKER) {
    if (caller.subject === ownerId && caller.roles.includes("worker")) return true;
    return venueId !== null && (await managesVenue(db, caller, venueId));
  }
  return managesVenue(db, caller, ownerId);
}

export async function requireManage(db: Queryable, caller: Principal, ownerKind: number, ownerId: string, venueId: string | null): Promise<void> {
  if (!(await canManage(db, caller, ownerKind, ownerId, venueId))) {
    if (caller.roles.includes("partner")) throw partnerNotLinkedError(caller.subject, ownerKind === WORKER ? ownerId : null, ownerKind === WORKER ? venueId : ownerId);
    throw new PermissionDeniedError(ownerKind === WORKER ? "only the worker, a manager of their venue or an admin may do this" : "only a manager of this venue or an admin may do this");
  }
}

export async function requireVenueManager(db: Queryable, caller: Principal, venueId: string): Promise<void> {
  if (isAdmin(caller) || (await managesVenue(db, caller, venueId))) return;
  throw new PermissionDeniedError("only a manager of this venue or an admin may do this");
}
