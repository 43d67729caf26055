import type { BlockList } from "node:net";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { CONSOLE_READERS, inNetworks, MONEY_MOVERS, MONEY_VIEWERS, networkList, type Role } from "@ttip/runtime";
import { principalKey } from "./auth.js";
import { partnerKey } from "./partner.js";
import { clientAddressKey } from "./rate-limit.js";

/**
 * Who may call an RPC through the gateway:
 * - "anonymous": anyone (the service may still look at the caller);
 * - "signed_in": a verified token, with one of `roles` when given;
 *   `adminNetwork` also demands a client address inside an allow-listed network;
 * - "admin": one of `roles` (default: admin) and a client address inside an
 *   allow-listed network; with `stepUp`, also a device step-up token (header
 *   x-ttip-step-up, purpose "admin") that auth verifies and spends: an action
 *   that moves money needs the admin's device, not only a stolen token.
 */
export type Rule =
  | { access: "anonymous" }
  | { access: "signed_in"; roles?: Role[]; adminNetwork?: boolean }
  | { access: "admin"; roles?: readonly Role[]; stepUp?: boolean };

export const STEP_UP_HEADER = "x-ttip-step-up";

const anonymous: Rule = { access: "anonymous" };
const signedIn: Rule = { access: "signed_in" };
// The admin console: support reads, finance reads and moves money, admin does all.
const consoleRead: Rule = { access: "admin", roles: CONSOLE_READERS };
const moneyView: Rule = { access: "admin", roles: MONEY_VIEWERS };
const moneyDesk: Rule = { access: "admin", roles: MONEY_MOVERS };
const moneyAction: Rule = { access: "admin", roles: MONEY_MOVERS, stepUp: true };
const adminOnly: Rule = { access: "admin" };

/** Per-RPC rules, by "package.Service/Method" or by "package.Service" for all its methods. */
export const DEFAULT_RULES: Record<string, Rule> = {
  // Logging in cannot need a token; every other auth RPC acts on the caller's own account.
  "ttip.auth.v1.AuthService": signedIn,
  "ttip.auth.v1.AuthService/StartPhoneVerification": anonymous,
  "ttip.auth.v1.AuthService/VerifyPhoneOtp": anonymous,
  "ttip.auth.v1.AuthService/VerifyPin": anonymous,
  "ttip.auth.v1.AuthService/ResetPin": anonymous,
  "ttip.auth.v1.AuthService/RefreshSession": anonymous,
  "ttip.auth.v1.AuthService/GetJwks": anonymous,
  // A worker's own wallet; the tip page quotes fees before anyone signs in.
  "ttip.wallet.v1.WalletService": { access: "signed_in", roles: ["worker"] },
  "ttip.wallet.v1.WalletService/QuoteFees": anonymous,
  // Figures of one's own work or venue; analytics checks whose (a worker their own, a manager their venue's).
  "ttip.analytics.v1.AnalyticsService": { access: "signed_in", roles: ["worker", "venue_manager", "admin"] },
  // A venue's staff, shifts and pooled tips: the venue service checks that a manager
  // manages that venue (qr's list) and that a worker is on its staff.
  "ttip.venue.v1.VenueService": { access: "signed_in", roles: ["worker", "venue_manager", "admin"] },
  // The first admin: any PIN-signed user holding the one-time setup token, from an admin network.
  "ttip.auth.v1.AuthService/ClaimFirstAdmin": { access: "signed_in", adminNetwork: true },
  // Accounts: everyone in the console reads; only admins change them.
  "ttip.auth.v1.AuthAdminService": adminOnly,
  "ttip.auth.v1.AuthAdminService/GetUser": consoleRead,
  "ttip.auth.v1.AuthAdminService/SearchUsers": consoleRead,
  "ttip.auth.v1.AuthAdminService/ListUserSessions": consoleRead,
  "ttip.auth.v1.AuthAdminService/ListAuditEvents": consoleRead,
  // Payments: reads for the console; holds and blocks for the money desk; what moves money needs the device.
  "ttip.payment.v1.PaymentAdminService": moneyAction,
  "ttip.payment.v1.PaymentAdminService/ListFraudAlerts": consoleRead,
  "ttip.payment.v1.PaymentAdminService/ListUnmatchedCallbacks": consoleRead,
  "ttip.payment.v1.PaymentAdminService/ListSuspensePayments": consoleRead,
  "ttip.payment.v1.PaymentAdminService/HoldPayouts": moneyDesk,
  "ttip.payment.v1.PaymentAdminService/BlockPhoneNumber": moneyDesk,
  "ttip.payment.v1.PaymentAdminService/UnblockPhoneNumber": moneyDesk,
  // The ledger: finance reads it; reversing an entry moves money; fees, limits and modes are admin's.
  "ttip.wallet.v1.WalletAdminService": adminOnly,
  "ttip.wallet.v1.WalletAdminService/GetTrialBalance": moneyView,
  "ttip.wallet.v1.WalletAdminService/GetAccount": moneyView,
  "ttip.wallet.v1.WalletAdminService/ListAccounts": moneyView,
  "ttip.wallet.v1.WalletAdminService/GetJournalEntry": moneyView,
  "ttip.wallet.v1.WalletAdminService/ListFeeSchedules": moneyView,
  "ttip.wallet.v1.WalletAdminService/ReverseEntry": { access: "admin", roles: MONEY_MOVERS, stepUp: true },
  "ttip.analytics.v1.AnalyticsAdminService": moneyView,
  // Templates and deliveries: everyone in the console reads; admins edit.
  "ttip.notification.v1.NotificationAdminService": adminOnly,
  "ttip.notification.v1.NotificationAdminService/ListTemplates": consoleRead,
  "ttip.notification.v1.NotificationAdminService/RenderTemplate": consoleRead,
  "ttip.notification.v1.NotificationAdminService/GetDelivery": consoleRead,
  "ttip.notification.v1.NotificationAdminService/ListDeliveries": consoleRead,
  // Signed partner calls are held to PARTNER_SCOPES; a token holder gets nowhere here.
  "ttip.auth.v1.PartnerService": { access: "signed_in", roles: ["partner"] },
  // A worker's own consents to partner keys.
  "ttip.auth.v1.PartnerConsentService": { access: "signed_in", roles: ["worker"] },
  // Partner webhooks: the console reads the delivery log; replaying one is an admin's.
  "ttip.auth.v1.PartnerAdminService": adminOnly,
  "ttip.auth.v1.PartnerAdminService/ListAllWebhookDeliveries": consoleRead,
};

/**
 * The scope a partner key needs for each RPC it may call, by
 * "package.Service/Method". An RPC not listed is closed to partner keys,
 * whatever scopes they hold. Never an …AdminService or …InternalService method.
 */
export const PARTNER_SCOPES: Record<string, string> = {
  "ttip.payment.v1.PaymentService/CreateTip": "tips:create",
  "ttip.payment.v1.PaymentService/GetTip": "tips:read",
  "ttip.qr.v1.QrService/CreateQrCode": "qr:write",
  "ttip.qr.v1.QrService/RotateQrCode": "qr:write",
  "ttip.qr.v1.QrService/RevokeQrCode": "qr:write",
  "ttip.qr.v1.QrService/GetQrCode": "qr:read",
  "ttip.qr.v1.QrService/ListQrCodes": "qr:read",
  "ttip.qr.v1.QrService/RenderQrCode": "qr:read",
  "ttip.wallet.v1.WalletService/QuoteFees": "fees:read",
  "ttip.auth.v1.PartnerService/CreateWebhookSubscription": "webhooks:write",
  "ttip.auth.v1.PartnerService/DeleteWebhookSubscription": "webhooks:write",
  "ttip.auth.v1.PartnerService/ListWebhookSubscriptions": "webhooks:read",
  "ttip.auth.v1.PartnerService/ListWebhookDeliveries": "webhooks:read",
  // And the worker's consent, which auth checks on every call.
  "ttip.auth.v1.PartnerService/ListWorkerPayouts": "payouts:read",
  "ttip.auth.v1.PartnerService/GetWorkerStatement": "statements:read",
};

export interface PolicyOptions {
  /** CIDRs admin calls may come from, e.g. ["10.8.0.0/16"]. Default: loopback only. */
  adminNetworks?: string[];
  /** Extra or overriding rules (merged over DEFAULT_RULES). */
  rules?: Record<string, Rule>;
  /** Partner scopes per RPC (default PARTNER_SCOPES). */
  partnerScopes?: Record<string, string>;
  /**
   * Checks and spends an admin's device step-up token (auth's
   * VerifyStepUpToken, purpose "admin"); throws when it is not good. Without
   * it, rules with stepUp refuse every call.
   */
  verifyStepUp?: (token: string, userId: string) => Promise<void>;
}

/**
 * The rule for a method: its own entry, else its service's, else by the
 * service's name (…AdminService: admin; …InternalService: never through the
 * door), else anonymous, leaving the decision (and "a worker only sees their
 * own data") to the owning service, which reads the verified principal.
 */
export function ruleFor(rules: Record<string, Rule>, service: string, method: string): Rule | undefined {
  const own = rules[`${service}/${method}`] ?? rules[service];
  if (own) return own;
  if (service.endsWith("AdminService")) return { access: "admin" };
  if (service.endsWith("InternalService")) return undefined;
  return anonymous;
}

export function adminNetworkList(cidrs: string[]): BlockList {
  return networkList(cidrs, "admin network");
}

export { inNetworks };

/** Enforces the per-RPC rules from the verified token before anything is forwarded. */
export function policyInterceptor(options: PolicyOptions = {}): Interceptor {
  const rules = { ...DEFAULT_RULES, ...options.rules };
  const admins = adminNetworkList(options.adminNetworks ?? ["127.0.0.0/8", "::1/128"]);
  const scopes = options.partnerScopes ?? PARTNER_SCOPES;
  for (const rpc of Object.keys(scopes)) {
    if (/(Admin|Internal)Service\//.test(rpc)) throw new Error(`partner scope declared for ${rpc}: admin and internal RPCs are never open to partners`);
  }
  return (next) => async (req) => {
    const partner = req.contextValues.get(partnerKey);
    if (partner) {
      // A signed call is held to its key's scopes, and to nothing else.
      const rpc = `${req.service.typeName}/${req.method.name}`;
      const scope = scopes[rpc];
      if (!scope) throw new ConnectError(`${rpc} is not open to partner keys`, Code.PermissionDenied);
      if (!partner.scopes.includes(scope)) throw new ConnectError(`missing scope: ${rpc} needs the scope ${scope}, which this key does not have`, Code.PermissionDenied);
      return next(req);
    }
    const rule = ruleFor(rules, req.service.typeName, req.method.name);
    if (!rule) throw new ConnectError(`${req.service.typeName} is not served here`, Code.PermissionDenied);
    if (rule.access === "anonymous") return next(req);
    const principal = req.contextValues.get(principalKey);
    if (!principal) throw new ConnectError("sign in first: this call needs an access token", Code.Unauthenticated);
    const needed: readonly Role[] = rule.roles ?? (rule.access === "admin" ? ["admin"] : []);
    if (needed.length && !needed.some((r) => principal.roles.includes(r))) {
      throw new ConnectError(`this call needs the role ${needed.join(" or ")}`, Code.PermissionDenied);
    }
    const adminNetwork = rule.access === "admin" || rule.adminNetwork;
    if (adminNetwork && !inNetworks(admins, req.contextValues.get(clientAddressKey))) {
      throw new ConnectError("admin calls are only accepted from allow-listed networks", Code.PermissionDenied);
    }
    if (rule.access === "admin" && rule.stepUp) await checkStepUp(req.header.get(STEP_UP_HEADER), principal.subject, options.verifyStepUp);
    // The token is spent here; the service has no use for it.
    req.header.delete(STEP_UP_HEADER);
    return next(req);
  };
}

async function checkStepUp(token: string | null, userId: string, verify: PolicyOptions["verifyStepUp"]): Promise<void> {
  if (!token) {
    throw new ConnectError(`this action moves money: confirm it with your device first (${STEP_UP_HEADER} header with a step-up token for "admin")`, Code.PermissionDenied);
  }
  if (!verify) throw new ConnectError("device step-up is not configured on this gateway", Code.PermissionDenied);
  try {
    await verify(token, userId);
  } catch (err) {
    const e = ConnectError.from(err);
    // Auth down is not the admin's fault: say so, and nothing ran.
    if (e.code === Code.Unavailable || e.code === Code.DeadlineExceeded) throw new ConnectError("cannot check the device step-up right now; retry shortly", Code.Unavailable);
    throw new ConnectError(`${STEP_UP_HEADER}: the step-up token is invalid, expired or already spent: confirm with your device again`, Code.PermissionDenied);
  }
}
