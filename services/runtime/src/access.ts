// Who may call an RPC, as the contracts declare it (ttip.common.v1.access on
// the RPC, else ttip.common.v1.service_access on its service). The gateway's
// policy is built from this, and each service enforces the same declaration
// itself (accessInterceptor), so no handler keeps a role list of its own.
import { getOption, hasOption, type DescMethod, type DescService } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { Health } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@ttip/proto/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "@ttip/proto/grpc/reflection/v1alpha/reflection_pb.js";
import { Audience, access, service_access, type Access } from "@ttip/proto/ttip/common/v1/options_pb.js";
import { CONSOLE_READERS, requireCaller, type Role } from "./caller.js";
import { PermissionDeniedError, UnauthenticatedError } from "./domain-errors.js";
import { INTERNAL_SIGNATURE_HEADER } from "./internal-auth.js";

/** The roles a token may carry; a declaration naming another is a contract bug. */
export const ROLES: readonly Role[] = ["customer", "worker", "venue_manager", "admin", "support", "finance", "partner"];

/**
 * One RPC's declared access:
 * - "anonymous": anyone (the service may still look at the caller);
 * - "signed_in": a verified token, with one of `roles` when given (with
 *   `adminNetwork`, from an allow-listed network too);
 * - "admin": one of `roles` (admin, support, finance) from an allow-listed
 *   network; with `stepUp`, also the admin's device step-up token;
 * - "partner": partner keys only;
 * - "internal": never through the gateway.
 * `partnerScope`: the scope a partner key needs (absent: closed to partner keys).
 */
export type DeclaredAccess = (
  | { access: "anonymous" }
  | { access: "signed_in"; roles?: Role[]; adminNetwork?: boolean }
  | { access: "admin"; roles: Role[]; stepUp?: boolean }
  | { access: "partner" }
  | { access: "internal" }
) & { partnerScope?: string };

/**
 * What every server adds itself (server.ts): health and reflection. Their
 * contracts are vendored and cannot carry our option; probes and tools call
 * them without a token.
 */
const SERVER_SERVICES: ReadonlySet<DescService> = new Set([Health, ServerReflection, ServerReflectionV1Alpha]);

/** The option on the RPC, else on its service; undefined when neither declares one. */
function declarationOf(method: DescMethod): Access | undefined {
  if (hasOption(method, access)) return getOption(method, access);
  if (hasOption(method.parent, service_access)) return getOption(method.parent, service_access);
  return undefined;
}

function rpcName(method: DescMethod): string {
  return `${method.parent.typeName}/${method.name}`;
}

function rolesOf(method: DescMethod, declared: Access): Role[] {
  for (const r of declared.roles) {
    if (!ROLES.includes(r as Role)) throw new Error(`${rpcName(method)} declares the unknown role "${r}" (known: ${ROLES.join(", ")})`);
  }
  return declared.roles as Role[];
}

function audienceOf(method: DescMethod, declared: Access): DeclaredAccess | undefined {
  const roles = rolesOf(method, declared);
  switch (declared.audience) {
    case Audience.PUBLIC:
      return { access: "anonymous" };
    case Audience.SIGNED_IN:
      return { access: "signed_in", ...(roles.length ? { roles } : {}), ...(declared.adminNetwork ? { adminNetwork: true } : {}) };
    case Audience.ADMIN: {
      const outside = roles.filter((r) => !CONSOLE_READERS.includes(r));
      if (outside.length) throw new Error(`${rpcName(method)} is an admin RPC but declares the role ${outside.join(", ")}`);
      return { access: "admin", roles: roles.length ? roles : ["admin"], ...(declared.stepUp ? { stepUp: true } : {}) };
    }
    case Audience.PARTNER:
      return { access: "partner" };
    case Audience.INTERNAL:
      return { access: "internal" };
    default:
      return undefined;
  }
}

/**
 * The declared access of an RPC, or undefined when it declares none (callers
 * must then refuse it: fail closed). Throws on a contradictory declaration
 * (an unknown role, a partner scope on an admin or internal RPC, a partner-only
 * RPC without a scope), which is a bug in the contracts, not in a request.
 */
export function accessOf(method: DescMethod): DeclaredAccess | undefined {
  if (SERVER_SERVICES.has(method.parent)) return { access: "anonymous" };
  const declared = declarationOf(method);
  if (!declared) return undefined;
  const base = audienceOf(method, declared);
  if (!base) return undefined;
  const scope = declared.partnerScope;
  if (scope && (base.access === "admin" || base.access === "internal")) {
    throw new Error(`${rpcName(method)} declares a partner scope: admin and internal RPCs are never open to partners`);
  }
  if (declared.stepUp && base.access !== "admin") throw new Error(`${rpcName(method)} declares step_up, which only admin RPCs take`);
  if (base.access === "partner" && !scope) throw new Error(`${rpcName(method)} is for partner keys only but declares no partner_scope`);
  return scope ? { ...base, partnerScope: scope } : base;
}

const declarations = new WeakMap<DescMethod, DeclaredAccess | null>();

/** accessOf, read once per RPC (the descriptors do not change while a process runs). */
export function declaredAccess(method: DescMethod): DeclaredAccess | undefined {
  let declared = declarations.get(method);
  if (declared === undefined) declarations.set(method, (declared = accessOf(method) ?? null));
  return declared ?? undefined;
}

/** The roles a declaration asks of the caller; none: any signed-in caller. */
export function rolesNeeded(declared: DeclaredAccess): Role[] {
  if (declared.access === "admin") return declared.roles;
  if (declared.access === "signed_in") return declared.roles ?? [];
  if (declared.access === "partner") return ["partner"];
  return [];
}

/**
 * For services: every call is held to its RPC's declared access before the
 * handler runs, as the gateway holds it, because a call may reach a service
 * without passing the gateway (a peer service, a test, a misrouted request).
 * A partner key is a caller with the role "partner" (its scopes were checked
 * by the gateway). What only the gateway can judge stays there: the admin
 * network; the device step-up it verifies is checked here again from the
 * signed header it forwards (stepUpInterceptor). An RPC that declares nothing is refused.
 * Handlers keep the checks about the resource (own wallet, own venue).
 */
export function accessInterceptor(): Interceptor {
  return (next) => (req) => {
    const rpc = `${req.service.typeName}/${req.method.name}`;
    const declared = declaredAccess(req.method);
    if (!declared) throw new PermissionDeniedError(`${rpc} declares no access, so it is not served`);
    if (declared.access === "internal") {
      // internalAuthInterceptor, which runs first, verified a signature that is present.
      if (!req.header.has(INTERNAL_SIGNATURE_HEADER)) throw new UnauthenticatedError(`${rpc} is for the platform's own services: the call is not signed with the internal key`);
    } else if (declared.access !== "anonymous") {
      // A partner scope opens the RPC to partner keys whatever roles it asks of tokens.
      const partner = declared.partnerScope ? (["partner"] as const) : [];
      const roles = rolesNeeded(declared);
      requireCaller({ requestHeader: req.header }, ...(roles.length ? [...roles, ...partner] : roles));
    }
    return next(req);
  };
}
