import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { CLIENT_ADDRESS_HEADER, GATEWAY_HEADERS, PRINCIPAL_HEADERS, SESSION_HEADER, type Principal } from "@ttip/runtime";
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";

export { CLIENT_ADDRESS_HEADER, PRINCIPAL_HEADERS, SESSION_HEADER };

/** The verified caller, with the session its token belongs to (the `sid` claim). */
export interface GatewayPrincipal extends Principal {
  sessionId?: string;
}
export type { GatewayPrincipal as Principal };

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
export function authInterceptor(options: JwtOptions | undefined, isRevoked?: (sessionId: string) => Promise<boolean>): Interceptor {
  let keys: JWTVerifyGetKey | undefined;
  if (options?.jwks) keys = createLocalJWKSet(options.jwks);
  else if (options?.jwksUrl) keys = createRemoteJWKSet(new URL(options.jwksUrl), { cooldownDuration: 30_000 });
  return (next) => async (req) => {
    // Only the gateway may say who is calling: drop every header it sets, whoever sent it.
    for (const name of Object.values(GATEWAY_HEADERS)) req.header.delete(name);
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
    // A signed token of a revoked session is refused within seconds, not when it expires.
    // If the revocation store cannot answer, the call fails (UNAVAILABLE) rather than trust the token.
    const sessionId = req.contextValues.get(principalKey)?.sessionId;
    if (sessionId && isRevoked) {
      const revoked = await isRevoked(sessionId).catch(() => {
        throw new ConnectError("cannot check the session right now; retry shortly", Code.Unavailable);
      });
      if (revoked) throw new ConnectError("this session was revoked: sign in again", Code.Unauthenticated);
    }
    return next(req);
  };
}
