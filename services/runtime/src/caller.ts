import type { HandlerContext } from "@connectrpc/connect";
import { PermissionDeniedError, UnauthenticatedError } from "./domain-errors.js";
import { PRINCIPAL_HEADERS } from "./headers.js";

/** Who is calling, as proved by a verified access token. */
export interface Principal {
  subject: string;
  roles: string[];
}

export type Role = "customer" | "worker" | "venue_manager" | "admin" | "partner" | "support" | "finance";

/**
 * The admin console's roles, by what they may do. Support reads (users, tips,
 * payouts, alerts) and changes nothing; finance reads money and moves it
 * (holds, reviews, suspense, refunds); admin does everything, and alone
 * changes accounts, roles, keys and templates. The contracts declare which
 * RPC takes which; the gateway and each service enforce those declarations.
 */
export const CONSOLE_READERS: readonly Role[] = ["admin", "support", "finance"];
export const MONEY_VIEWERS: readonly Role[] = ["admin", "finance"];
export const MONEY_MOVERS: readonly Role[] = ["admin", "finance"];

/** The verified caller of this call, or undefined for an anonymous one. */
export function callerOf(ctx: Pick<HandlerContext, "requestHeader">): Principal | undefined {
  const subject = ctx.requestHeader.get(PRINCIPAL_HEADERS.subject);
  if (!subject) return undefined;
  const roles = (ctx.requestHeader.get(PRINCIPAL_HEADERS.roles) ?? "").split(",").map((r) => r.trim()).filter(Boolean);
  return { subject, roles };
}

/**
 * The caller, who must be signed in and hold one of `roles` (any role when
 * none are named; handlers name none: the roles an RPC needs are its declared
 * access, which accessInterceptor enforces before the handler runs): UNAUTHENTICATED without a token, PERMISSION_DENIED without the role.
 */
export function requireCaller(ctx: Pick<HandlerContext, "requestHeader">, ...roles: Role[]): Principal {
  const caller = callerOf(ctx);
  if (!caller) throw new UnauthenticatedError("sign in first: this call needs an access token");
  if (roles.length && !roles.some((r) => caller.roles.includes(r))) throw new PermissionDeniedError(`this call needs the role ${roles.join(" or ")}`);
  return caller;
}

/** Headers that make a direct call look like one the gateway verified (tests, trusted in-cluster callers). */
export function callerHeaders(subject: string, ...roles: Role[]): Record<string, string> {
  return { [PRINCIPAL_HEADERS.subject]: subject, [PRINCIPAL_HEADERS.roles]: roles.join(",") };
}

/**
 * A partner key acting for a worker or venue it is not linked to (qr keeps the
 * links: a worker's own, or a venue's that has the worker on its staff). Names
 * the missing link and who can make it.
 */
export function partnerNotLinkedError(keyId: string, workerId: string | null, venueId: string | null): PermissionDeniedError {
  const what = workerId
    ? `worker ${workerId}` + (venueId ? ` nor to venue ${venueId} with them on its staff` : " nor to a venue with them on its staff")
    : `venue ${venueId}`;
  const who = workerId ? "the worker or a manager of their venue" : "a manager of the venue";
  return new PermissionDeniedError(`partner key ${keyId} is not linked to ${what}: ${who} links it with QrService.LinkPartner`);
}
