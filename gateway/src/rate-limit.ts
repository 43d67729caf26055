import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { RateLimiterAbstract } from "rate-limiter-flexible";
import { principalKey } from "./auth.js";
import { partnerKey } from "./partner.js";

/** The caller's network address, set per request by the HTTP layer. */
export const clientAddressKey = createContextKey<string>("unknown", { description: "client address" });

/**
 * Per-client request budget: a partner by key, a signed-in caller by subject,
 * anyone else by address. Over budget answers RESOURCE_EXHAUSTED with retry-after seconds.
 */
export function rateLimitInterceptor(limiter: RateLimiterAbstract, partnerLimiter: RateLimiterAbstract = limiter): Interceptor {
  return (next) => async (req) => {
    const partner = req.contextValues.get(partnerKey);
    const principal = req.contextValues.get(principalKey);
    const key = partner ? `key:${partner.keyId}` : principal ? `sub:${principal.subject}` : `ip:${req.contextValues.get(clientAddressKey)}`;
    try {
      await (partner ? partnerLimiter : limiter).consume(key);
    } catch (rejection) {
      if (rejection instanceof Error) throw rejection; // the store failed, not the budget
      const retryAfter = Math.max(1, Math.ceil((rejection as { msBeforeNext: number }).msBeforeNext / 1000));
      throw new ConnectError(`rate limit exceeded; retry in ${retryAfter} s`, Code.ResourceExhausted, {
        "retry-after": String(retryAfter),
      });
    }
    return next(req);
  };
}
