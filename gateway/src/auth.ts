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

/** The key set could not be fetched (auth restarting or slow): the token is not known to be bad. */
class KeySetUnavailable extends Error {}

/**
 * The remote key set, its own failures told apart from a token's: a key the set lacks is the token's fault
 * ("invalid token"), a fetch that failed or timed out is not, and is answered UNAVAILABLE (retried) rather
 * than UNAUTHENTICATED, which signs every user out.
 */
function keySetOrUnavailable(remote: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      throw new KeySetUnavailable("the key set could not be fetched", { cause: err });
    }
  };
}

/**
 * Verifies bearer tokens against auth's JWKS (EdDSA or ES256 only, so
 * "alg":"none" and HMAC confusion are refused). A call without a token goes on
 * as anonymous; per-RPC role rules decide what anonymous callers may do.
 */
export function authInterceptor(options: JwtOptions | undefined, isRevoked?: (sessionId: string) => Promise<boolean>, streamRecheckMs = STREAM_RECHECK_MS): Interceptor {
  let keys: JWTVerifyGetKey | undefined;
  if (options?.jwks) keys = createLocalJWKSet(options.jwks);
  else if (options?.jwksUrl) keys = keySetOrUnavailable(createRemoteJWKSet(new URL(options.jwksUrl), { cooldownDuration: 30_000 }));
  const verified = verifiedTokens();
  const verify = async (token: string): Promise<GatewayPrincipal> => {
    const known = verified.get(token);
    if (known) return known;
    if (!keys || !options) throw new ConnectError("token verification is not configured on this gateway", Code.Unauthenticated);
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: options.issuer,
        audience: options.audience,
        algorithms: ["EdDSA", "ES256"],
      });
      if (!payload.sub) throw new ConnectError("token has no subject", Code.Unauthenticated);
      const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === "string") : [];
      const sessionId = typeof payload.sid === "string" ? payload.sid : undefined;
      const principal = { subject: payload.sub, roles, sessionId };
      verified.set(token, principal, payload.exp);
      return principal;
    } catch (err) {
      if (err instanceof ConnectError) throw err;
      if (err instanceof KeySetUnavailable) throw new ConnectError("cannot check the token right now; retry shortly", Code.Unavailable, undefined, undefined, err.cause);
      const reason = err instanceof errors.JWTExpired ? "token expired" : "invalid token";
      throw new ConnectError(reason, Code.Unauthenticated);
    }
  };
  return (next) => (req) => {
    // Only the gateway may say who is calling: drop every header it sets, whoever sent it.
    for (const name of GATEWAY_HEADER_NAMES) req.header.delete(name);
    const authorization = req.header.get("authorization");
    // No token (most calls: a customer's tip): on as anonymous, with no async step of this check's own.
    if (!authorization) return nextSettled(next, req);
    return withToken(next, req, authorization);
  };

  async function withToken(next: Next, req: Request, authorization: string): Promise<Response> {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!match) throw new ConnectError("authorization header must be 'Bearer <token>'", Code.Unauthenticated);
    const principal = await verify(match[1]);
    req.contextValues.set(principalKey, principal);
    // A signed token of a revoked session is refused within seconds, not when it expires.
    // If the revocation store cannot answer, the call fails (UNAVAILABLE) rather than trust the token.
    if (principal.sessionId && isRevoked) {
      const revoked = await isRevoked(principal.sessionId).catch(() => {
        throw new ConnectError("cannot check the session right now; retry shortly", Code.Unavailable);
      });
      if (revoked) throw revokedError();
    }
    const res = await next(req);
    if (!res.stream || !principal.sessionId || !isRevoked) return res;
    const sessionId = principal.sessionId;
    return { ...res, message: whileSessionLives(res.message, () => isRevoked(sessionId), streamRecheckMs) };
  }
}

const revokedError = () => new ConnectError("this session was revoked: sign in again", Code.Unauthenticated);

/** How often an open stream's session is asked about again: a revoked session's stream ends within this. */
const STREAM_RECHECK_MS = 5_000;

/**
 * A signed-in stream's messages until its session is revoked: asked again when a message comes
 * `everyMs` after the last ask, and after `everyMs` of quiet (a notification stream is idle for hours).
 * If the store cannot answer, the stream goes on (the call was allowed, and a blip must not cut
 * every open stream); it is asked again next time.
 */
async function* whileSessionLives<T>(messages: AsyncIterable<T>, isRevoked: () => Promise<boolean>, everyMs: number): AsyncGenerator<T> {
  const source = messages[Symbol.asyncIterator]();
  let pending = source.next();
  let askedAt = Date.now();
  try {
    for (;;) {
      const dueInMs = askedAt + everyMs - Date.now();
      let timer: NodeJS.Timeout | undefined;
      const got = dueInMs > 0 ? await Promise.race([pending, new Promise<undefined>((wake) => (timer = setTimeout(() => wake(undefined), dueInMs)))]) : undefined;
      clearTimeout(timer);
      if (!got) {
        if (await isRevoked().catch(() => false)) throw revokedError();
        askedAt = Date.now();
        continue;
      }
      if (got.done) return;
      yield got.value;
      pending = source.next();
    }
  } finally {
    // The call's end aborts its signal, which cancels the service's stream; a return() queued behind a
    // pending next() would wait for a message that may never come, so it is not awaited.
    pending.catch(() => undefined);
    source.return?.()?.catch(() => undefined);
  }
}

type Next = Parameters<Interceptor>[0];
type Request = Parameters<Next>[0];
type Response = Awaited<ReturnType<Next>>;

/** Every header only the gateway sets, listed once (not per call). */
const GATEWAY_HEADER_NAMES = Object.values(GATEWAY_HEADERS);

/**
 * `next(req)` from a check that needs no await of its own: a synchronous throw becomes the
 * rejection an async check would have given, without the async function's promise and hops.
 */
export function nextSettled(next: Next, req: Request): ReturnType<Next> {
  try {
    return next(req);
  } catch (err) {
    return Promise.reject(err);
  }
}

/** How long a verified token is believed without checking its signature again (a key withdrawn from the JWKS stops it within this). */
const VERIFIED_TOKEN_MEMORY_MS = 60_000;
/** Tokens remembered at most; when full, the memory starts over (each token is simply verified again). */
const MAX_VERIFIED_TOKENS = 20_000;

/**
 * Tokens whose signature and claims were verified, with their caller: a phone
 * making several calls with one token pays for the signature check once. Each
 * is remembered until the token expires or for VERIFIED_TOKEN_MEMORY_MS,
 * whichever comes first; revocation is checked on every call all the same.
 */
function verifiedTokens() {
  const memory = new Map<string, { principal: GatewayPrincipal; until: number }>();
  return {
    get(token: string): GatewayPrincipal | undefined {
      const known = memory.get(token);
      if (!known) return undefined;
      if (known.until > Date.now()) return known.principal;
      memory.delete(token);
      return undefined;
    },
    set(token: string, principal: GatewayPrincipal, exp: number | undefined) {
      const now = Date.now();
      const until = Math.min(now + VERIFIED_TOKEN_MEMORY_MS, exp === undefined ? Infinity : exp * 1000);
      if (until <= now) return;
      if (memory.size >= MAX_VERIFIED_TOKENS) memory.clear();
      memory.set(token, { principal, until });
    },
  };
}
