// A limiter's refusal as the caller reads it: RESOURCE_EXHAUSTED saying what is spent and when to retry.
import type { RateLimiterAbstract } from "rate-limiter-flexible";
import { DependencyUnavailableError, RateLimitedError } from "./domain-errors.js";

/**
 * Takes one point from a limiter; RESOURCE_EXHAUSTED with retry-after when none is left, UNAVAILABLE (to retry, not
 * INTERNAL) when its store cannot be reached: the request is refused uncounted rather than let through unlimited.
 */
export async function consumeOrRefuse(limiter: RateLimiterAbstract, key: string, what: string): Promise<void> {
  try {
    await limiter.consume(key);
  } catch (rejection) {
    if (rejection instanceof Error) throw new DependencyUnavailableError(`the limits on this request cannot be checked now (${rejection.message}); retry`);
    throw rateLimitRefusal(what, (rejection as { msBeforeNext: number }).msBeforeNext);
  }
}

/**
 * Refuses, spending nothing, when `key` has no points left: a check made before other budgets are spent, so that a
 * caller this one refuses does not spend them (its points are taken by consumeOrRefuse once those pass).
 */
export async function refuseIfSpent(limiter: RateLimiterAbstract, key: string, what: string): Promise<void> {
  let res;
  try {
    res = await limiter.get(key);
  } catch (err) {
    throw new DependencyUnavailableError(`the limits on this request cannot be checked now (${(err as Error).message}); retry`);
  }
  if (res && res.consumedPoints >= limiter.points) throw rateLimitRefusal(what, res.msBeforeNext);
}

/**
 * RESOURCE_EXHAUSTED saying `what` and when a retry may succeed: in words, in the unit a person reads ("retry in
 * 40 s", "in 17 min", "in 23 h"; never "in 84213 s"), and exactly in retry-after (whole seconds, at least one).
 */
export function rateLimitRefusal(what: string, msLeft: number): RateLimitedError {
  const retryAfter = Math.max(1, Math.ceil(msLeft / 1000));
  const when = retryAfter < 120 ? `${retryAfter} s` : retryAfter < 7_200 ? `${Math.ceil(retryAfter / 60)} min` : `${Math.ceil(retryAfter / 3_600)} h`;
  return new RateLimitedError(`${what}; retry in ${when}`, retryAfter);
}
