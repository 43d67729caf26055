import type { BlockList } from "node:net";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { declaredAccess, inNetworks, networkList, rolesNeeded, type DeclaredAccess } from "@ttip/runtime";
import { principalKey } from "./auth.js";
import { partnerKey } from "./partner.js";
import { clientAddressKey } from "./rate-limit.js";

/**
 * Who may call an RPC through the gateway, as its contract declares it
 * (option ttip.common.v1.access on the RPC, or service_access on its service;
 * see proto/ttip/common/v1/options.proto):
 * - "anonymous": anyone (the service may still look at the caller);
 * - "signed_in": a verified token, with one of `roles` when given;
 *   `adminNetwork` also demands a client address inside an allow-listed network;
 *   staff roles (admin, support, finance) count only from such an address;
 * - "admin": one of `roles` (admin, support, finance) and a client address
 *   inside an allow-listed network; with `stepUp`, also a device step-up token
 *   (header x-ttip-step-up, purpose "admin") that auth verifies and spends: an
 *   action that moves money or grants access needs the admin's device, not only a stolen token;
 * - "partner": partner keys only; "internal": never through the gateway.
 * `partnerScope`: the scope a partner key needs; absent, the RPC is closed to partner keys.
 */
export type Rule = DeclaredAccess;

export const STEP_UP_HEADER = "x-ttip-step-up";

/** When this call's device step-up was verified and spent (ms); forwarded, signed, to the service. */
export const stepUpVerifiedKey = createContextKey<number | undefined>(undefined, { description: "device step-up verified at" });

/**
 * The rule of an RPC, from its descriptor; undefined (refused) when it
 * declares none, so an RPC added without a declaration is closed, not open.
 */
export function ruleFor(method: DescMethod): Rule | undefined {
  return declaredAccess(method);
}

/**
 * The RPCs of `services` that declare no access: the gateway refuses them.
 * Reading every declaration also throws on a contradictory one (an unknown
 * role, a partner scope on an admin RPC), so a bad contract stops start-up.
 */
export function undeclaredMethods(services: readonly DescService[]): string[] {
  return services.flatMap((s) => s.methods.filter((m) => !ruleFor(m)).map((m) => `${s.typeName}/${m.name}`));
}

export interface PolicyOptions {
  /** CIDRs admin calls may come from, e.g. ["10.8.0.0/16"]. Default: loopback only. */
  adminNetworks?: string[];
  /** The services served, checked at start-up (see undeclaredMethods). */
  services?: readonly DescService[];
  /**
   * Checks and spends an admin's device step-up token (auth's
   * VerifyStepUpToken, purpose "admin"); throws when it is not good. Without
   * it, rules with stepUp refuse every call.
   */
  verifyStepUp?: (token: string, userId: string) => Promise<void>;
}

export function adminNetworkList(cidrs: string[]): BlockList {
  return networkList(cidrs, "admin network");
}

export { inNetworks };

const denied = (message: string) => new ConnectError(message, Code.PermissionDenied);

/** The roles of the platform's own staff: theirs only from the admin networks. */
const STAFF_ROLES: ReadonlySet<string> = new Set(["admin", "support", "finance"]);

/** A signed partner call is held to its key's scopes, and to nothing else. */
function checkPartner(rpc: string, rule: Rule | undefined, scopes: string[]) {
  const scope = rule?.partnerScope;
  if (!scope) throw denied(`${rpc} is not open to partner keys`);
  if (!scopes.includes(scope)) throw denied(`missing scope: ${rpc} needs the scope ${scope}, which this key does not have`);
}

/** Enforces each RPC's declared access from the verified token before anything is forwarded. */
export function policyInterceptor(options: PolicyOptions = {}): Interceptor {
  const admins = adminNetworkList(options.adminNetworks ?? ["127.0.0.0/8", "::1/128"]);
  // Throws now on a contradictory declaration rather than on some later call.
  undeclaredMethods(options.services ?? []);
  return (next) => async (req) => {
    const rule = ruleFor(req.method);
    const partner = req.contextValues.get(partnerKey);
    if (partner) {
      checkPartner(`${req.service.typeName}/${req.method.name}`, rule, partner.scopes);
      return next(req);
    }
    if (!rule) throw denied(`${req.service.typeName}/${req.method.name} declares no access, so it is not served here`);
    if (rule.access === "internal") throw denied(`${req.service.typeName} is not served here`);
    if (rule.access === "partner") throw denied(`${req.service.typeName}/${req.method.name} is for partner keys only`);
    const signedIn = req.contextValues.get(principalKey);
    const fromAdminNetwork = inNetworks(admins, req.contextValues.get(clientAddressKey));
    // Staff rights count only from the admin networks, on every RPC: a signed-in RPC open to admins (a venue's
    // split, a payout's detail) would otherwise take a stolen admin token from anywhere, and so would one open
    // to all whose service grants admins more (qr's codes and profiles). Outside, the caller is what their other
    // roles make them, here and in the services the call reaches.
    const principal = !signedIn || fromAdminNetwork ? signedIn : { ...signedIn, roles: signedIn.roles.filter((r) => !STAFF_ROLES.has(r)) };
    if (principal) req.contextValues.set(principalKey, principal);
    if (rule.access === "anonymous") return next(req);
    if (!signedIn || !principal) throw new ConnectError("sign in first: this call needs an access token", Code.Unauthenticated);
    const needed = rolesNeeded(rule);
    if (needed.length && !needed.some((r) => principal.roles.includes(r))) {
      if (needed.some((r) => signedIn.roles.includes(r))) throw denied("admin calls are only accepted from allow-listed networks");
      throw denied(`this call needs the role ${needed.join(" or ")}`);
    }
    const adminNetwork = rule.access === "admin" || rule.adminNetwork;
    if (adminNetwork && !fromAdminNetwork) throw denied("admin calls are only accepted from allow-listed networks");
    // An admin acting through a signed-in RPC may confirm with the device too: the service decides whether its
    // change needs it (venue: a venue the admin does not manage), and refuses without it.
    const offered = rule.access === "signed_in" && principal.roles.includes("admin") && req.header.has(STEP_UP_HEADER);
    if ((rule.access === "admin" && rule.stepUp) || offered) {
      await checkStepUp(req.header.get(STEP_UP_HEADER), principal.subject, options.verifyStepUp);
      req.contextValues.set(stepUpVerifiedKey, Date.now());
    }
    // The token is spent here; the service has no use for it.
    req.header.delete(STEP_UP_HEADER);
    return next(req);
  };
}

async function checkStepUp(token: string | null, userId: string, verify: PolicyOptions["verifyStepUp"]): Promise<void> {
  if (!token) {
    throw denied(`this action moves money or grants access: confirm it with your device first (${STEP_UP_HEADER} header with a step-up token for "admin")`);
  }
  if (!verify) throw denied("device step-up is not configured on this gateway");
  try {
    await verify(token, userId);
  } catch (err) {
    const e = ConnectError.from(err);
    // Auth down is not the admin's fault: say so, and nothing ran.
    if (e.code === Code.Unavailable || e.code === Code.DeadlineExceeded) throw new ConnectError("cannot check the device step-up right now; retry shortly", Code.Unavailable);
    throw denied(`${STEP_UP_HEADER}: the step-up token is invalid, expired or already spent: confirm with your device again`);
  }
}
