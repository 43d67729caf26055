import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { RateLimiterAbstract, RateLimiterRes } from "rate-limiter-flexible";
import { principalKey } from "./auth.js";
import { partnerKey } from "./partner.js";

/** The caller's network address, set per request by the HTTP layer. */
export const clientAddressKey = createContextKey<string>("unknown", { description: "client address" });

/** A call over its budget: how long until the window frees points. */
export interface OverBudget {
  msBeforeNext: number;
}

/** Takes one point of `key`'s budget; rejects with OverBudget when none is left, with an Error when the store fails. */
export interface Budget {
  consume(key: string): Promise<unknown>;
}

/** Keys remembered at most; past it, calls of new keys go to the store one by one. */
const MAX_KEYS = 100_000;

interface KeyState {
  /** Points left at the store's last answer, less the calls admitted here since. */
  remaining: number;
  /** When that answer's window ends (ms since the epoch); past it, nothing is known. */
  resetsAt: number;
  /** Calls admitted ahead of the store's answer, still to be charged to it. */
  charged: number;
  /** Calls that wait for the store's answer to know whether they pass. */
  waiting: Array<{ resolve: () => void; reject: (reason: unknown) => void }>;
  sending: boolean;
}

/**
 * A shared budget (the store: Redis, so every replica draws from it) with one
 * store call per key in flight at a time: calls arriving meanwhile are charged
 * together in the next one (consume(key, n)), so a busy key costs one script
 * per round trip, not one per call. Every call is charged to the store.
 *
 * A call waits for the store's answer only near the limit. While the last
 * answer left more than `margin` points (less the calls admitted here since),
 * it passes at once and is charged in the next batch. So the store's count is
 * exact, this replica never admits past what it knows, and a key can exceed
 * its budget only if other replicas admit more than `margin` of its calls
 * within one round trip to the store. When the store fails, the key's
 * knowledge is dropped: its next calls wait for the store (and fail with it).
 */
export function sharedBudget(store: RateLimiterAbstract, options: { points: number; margin?: number }): Budget {
  const margin = options.margin ?? Math.max(10, Math.ceil(options.points / 10));
  const keys = new Map<string, KeyState>();

  // A full map is swept at most once a second: a flood of new keys (addresses) then costs
  // one store call each, not a scan of every remembered key each.
  let sweptAt = 0;
  const forget = (now: number) => {
    if (now - sweptAt < 1_000) return;
    sweptAt = now;
    for (const [key, s] of keys) if (s.resetsAt <= now && !s.sending && !s.charged && !s.waiting.length) keys.delete(key);
  };

  const send = (key: string, s: KeyState) => {
    const charged = s.charged;
    const waiting = s.waiting;
    const n = charged + waiting.length;
    if (n === 0 || s.sending) return;
    s.sending = true;
    s.charged = 0;
    s.waiting = [];
    const settle = (res: RateLimiterRes) => {
      // This batch holds the store's counts (consumed - n, consumed]: first the calls
      // already admitted, then the waiting ones in arrival order.
      const before = res.consumedPoints - n;
      waiting.forEach((w, i) => (before + charged + i + 1 <= options.points ? w.resolve() : w.reject({ msBeforeNext: res.msBeforeNext } satisfies OverBudget)));
      s.remaining = Math.max(0, options.points - res.consumedPoints) - s.charged;
      s.resetsAt = Date.now() + res.msBeforeNext;
    };
    store.consume(key, n).then(settle, (err: unknown) => {
      if (err instanceof Error) {
        s.resetsAt = 0;
        for (const w of waiting) w.reject(err);
      } else if ((err as RateLimiterRes).consumedPoints < n) {
        // Refused without counting (a block): nobody waiting passes.
        for (const w of waiting) w.reject({ msBeforeNext: (err as RateLimiterRes).msBeforeNext } satisfies OverBudget);
      } else settle(err as RateLimiterRes);
    }).finally(() => {
      s.sending = false;
      send(key, s);
    });
  };

  return {
    consume(key) {
      const now = Date.now();
      let s = keys.get(key);
      if (!s) {
        if (keys.size >= MAX_KEYS) forget(now);
        if (keys.size >= MAX_KEYS) return store.consume(key);
        keys.set(key, (s = { remaining: 0, resetsAt: 0, charged: 0, waiting: [], sending: false }));
      }
      if (s.resetsAt > now && s.remaining > margin && !s.waiting.length) {
        s.remaining--;
        s.charged++;
        send(key, s);
        return Promise.resolve();
      }
      const state = s;
      return new Promise<void>((resolve, reject) => {
        state.waiting.push({ resolve, reject });
        send(key, state);
      });
    },
  };
}

/**
 * Per-client request budget: a partner by key, a signed-in caller by subject,
 * anyone else by address. Over budget answers RESOURCE_EXHAUSTED with retry-after seconds.
 */
export function rateLimitInterceptor(limiter: Budget, partnerLimiter: Budget = limiter): Interceptor {
  return (next) => async (req) => {
    const partner = req.contextValues.get(partnerKey);
    const principal = req.contextValues.get(principalKey);
    const key = partner ? `key:${partner.keyId}` : principal ? `sub:${principal.subject}` : `ip:${req.contextValues.get(clientAddressKey)}`;
    try {
      await (partner ? partnerLimiter : limiter).consume(key);
    } catch (rejection) {
      if (rejection instanceof Error) throw rejection; // the store failed, not the budget
      const retryAfter = Math.max(1, Math.ceil((rejection as OverBudget).msBeforeNext / 1000));
      throw new ConnectError(`rate limit exceeded; retry in ${retryAfter} s`, Code.ResourceExhausted, {
        "retry-after": String(retryAfter),
      });
    }
    return next(req);
  };
}
