import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { PRINCIPAL_HEADERS, type Principal } from "@ttip/runtime";
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";

export { PRINCIPAL_HEADERS };

/** The verified caller, with the session its token belongs to (the `sid` claim). */
export interface GatewayPrincipal extends Principal {
  sessionId?: string;
}
export type { GatewayPrincipal as Principal };

/**
 * Further headers for backends, set only by the gateway (callers' copies are
 * dropped): the token's session id, and the client's network address (for
 * per-address limits and the audit log).
 */
export const SESSION_HEADER = "x-ttip-session";
export const CLIENT_ADDRESS_HEADER = "x-ttip-client-address";

export const principalKey = createContextKey<GatewayPrincipal | undefined>(undefined, { description: "verified caller" });

export interface JwtOptions {
  /** Where auth publishes its keys; or a fixed key set (tests, static deployments). */
  jwksUrl?: string;
  jwks?: JSONWebKeySet;
  issuer: string;
  audience: string;
}

/**
 * Verifies bearer tokens against auth's JWKS (EdDSA or ES256 only, so
 * "alg":"none" and HMAC confusion are refused). A call without a token goes on
 * as anonymous; per-RPC role rules decide what anonymous callers may do.
 */
export function authInterceptor(options: JwtOptions | undefined): Interceptor {
  let keys: JWTVerifyGetKey | undefined;
  if (options?.jwks) keys = createLocalJWKSet(options.jwks);
  else if (options?.jwksUrl) keys = createRemoteJWKSet(new URL(options.jwksUrl), { cooldownDuration: 30_000 });
  return (next) => async (req) => {
    req.header.delete(PRINCIPAL_HEADERS.subject);
    req.header.delete(PRINCIPAL_HEADERS.roles);
    req.header.delete(SESSION_HEADER);
    req.header.delete(CLIENT_ADDRESS_HEADER);
    const authorization = req.header.get("authorization");
    if (!authorization) return next(req);
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!match) throw new ConnectError("authorization header must be 'Bearer <token>'", Code.Unauthenticated);
    if (!keys || !options) throw new ConnectError("token verification is not configured on this gateway", Code.Unauthenticated);
    try {
      const { payload } = await jwtVerify(match[1], keys, {
        issuer: options.issuer,
        audience: options.audience,
        algorithms: ["EdDSA", "ES256"],
      });
      if (!payload.sub) throw new ConnectError("token has no subject", Code.Unauthenticated);
      const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === "string") : [];
      const sessionId = typeof payload.sid === "string" ? payload.sid : undefined;
      req.contextValues.set(principalKey, { subject: payload.sub, roles, sessionId });
    } catch (err) {
      if (err instanceof ConnectError) throw err;
      const reason = err instanceof errors.JWTExpired ? "token expired" : "invalid token";
      throw new ConnectError(reason, Code.Unauthenticated);
    }
    return next(req);
  };
}
