import { Code, ConnectError, createContextKey, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { BoundedMap, budgetNetwork, MAX_BUDGET_CHARGES, type BudgetCharge, type BudgetCount } from "@ttip/runtime";
import { nextSettled, principalKey } from "./auth.js";
import { partnerKey, signsAsPartner } from "./partner.js";

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

/** Where the budgets are counted (Redis, shared by every replica): many keys charged in one round trip. */
export interface BudgetStore {
  charge(charges: readonly BudgetCharge[]): Promise<BudgetCount[]>;
}

/** Keys remembered at most; past it, a call of a new key waits for the store's answer. */
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
  /** In the charge on its way to the store. */
  sending: boolean;
}

/** Nothing known of the key (its window, if any, over) and nothing of it on the way: one to forget, or whose next call is its first. */
function unknownHere(s: KeyState, now: number): boolean {
  return s.resetsAt <= now && !s.sending && !s.charged && !s.waiting.length;
}

/** One key's part of a charge: what it held when the charge was sent. */
interface Sent {
  key: string;
  state: KeyState;
  charged: number;
  waiting: KeyState["waiting"];
}

/**
 * How long the charge of a call that passed at once may wait for others' (ms):
 * one store round trip for the calls of this long, not one per turn of the
 * event loop (at one call at a time, that was one per call). Short beside any
 * budget's window (60 s by default). Not what bounds a key's calls admitted
 * unseen: a key holding back a quarter of its margin sends at once whatever
 * this is. 50, not 10: at 10 the timer's wake-up, the script and its answer
 * were ~8% of the gateway's CPU at one call at a time (0.2-0.3 scripts a call).
 */
const FLUSH_MS = 50;

/**
 * A shared budget (the store: Redis, so every replica draws from it) with one
 * store call in flight at a time for all keys: the calls of every key arriving
 * meanwhile are charged together in the next one (one script, MAX_BUDGET_CHARGES
 * keys at most). Every call is charged to the store.
 *
 * A call waits for the store's answer only near the limit. While the last
 * answer left more than `margin` points (less the calls admitted here since),
 * it passes at once and its charge goes with the next one sent: on the next
 * turn when a call waits for the store or a key holds back a quarter of its
 * margin, else within `flushMs` (FLUSH_MS). So the store costs about one round
 * trip per flushMs, not one per call or per key; its count is exact (every
 * call is in it within flushMs and two round trips); and this replica never
 * admits past what it knows. What it knows is the store's last answer: before
 * it hears again, it admits at most a quarter of a key's margin, or the calls
 * of flushMs, and those of one round trip (without flushMs: the latter only).
 * So a key exceeds its budget only when other replicas spent what this one
 * believed left, and only by what each admits so.
 *
 * A key this replica does not know (a new client, or its last window over)
 * has its first call pass at once too, when the budget is larger than the
 * margin: a client's first call does not wait for Redis. The price: a key
 * whose budget other replicas have spent gets one call more on each replica
 * that meets it first in that window. When the store fails, the keys'
 * knowledge is dropped: their next calls, and the first calls of new keys
 * until the store answers again, wait for the store (and fail with it).
 */
export function sharedBudget(store: BudgetStore, options: { points: number; margin?: number; flushMs?: number }): Budget {
  const margin = options.margin ?? Math.max(10, Math.ceil(options.points / 10));
  const flushMs = options.flushMs ?? FLUSH_MS;
  // A key's calls held back at most: what other replicas do not see of it stays well within its margin.
  const maxHeldBack = Math.max(1, Math.floor(margin / 4));
  // A budget within the margin is meant exactly: every call of a key new here waits for the store.
  const firstCallAtOnce = options.points > margin;
  // The last charge was answered: a store that fails (or never answered) admits nothing unseen.
  let storeAnswering = false;
  const keys = new Map<string, KeyState>();
  /** Keys with calls to charge, by key: a key past MAX_KEYS is held only here until it is sent. */
  const due = new Map<string, KeyState>();
  let sending = false;
  /** A send is due on the next turn. */
  let scheduled = false;
  /** A send is due within flushMs: the calls in `due` passed already. */
  let flushTimer: NodeJS.Timeout | undefined;
  /** A call in `due` waits for the store's answer, or a key holds back maxHeldBack calls: send on the next turn. */
  let urgent = false;

  // A full map is swept at most once a second: a flood of new keys (addresses) then costs
  // a wait for the store each, not a scan of every remembered key each.
  let sweptAt = 0;
  const forget = (now: number) => {
    if (now - sweptAt < 1_000) return;
    sweptAt = now;
    for (const [key, s] of keys) if (unknownHere(s, now)) keys.delete(key);
  };

  const settle = ({ state: s, charged, waiting }: Sent, count: BudgetCount) => {
    // This key's part holds the store's counts (consumed - n, consumed]: first the calls
    // already admitted, then the waiting ones in arrival order.
    const before = count.consumedPoints - charged - waiting.length;
    waiting.forEach((w, i) => (before + charged + i + 1 <= options.points ? w.resolve() : w.reject({ msBeforeNext: count.msBeforeNext } satisfies OverBudget)));
    s.remaining = Math.max(0, options.points - count.consumedPoints) - s.charged;
    s.resetsAt = Date.now() + count.msBeforeNext;
  };

  const send = () => {
    scheduled = false;
    clearTimeout(flushTimer);
    flushTimer = undefined;
    if (sending || !due.size) return;
    sending = true;
    const batch: Sent[] = [];
    for (const [key, state] of due) {
      if (batch.length >= MAX_BUDGET_CHARGES) break;
      due.delete(key);
      batch.push({ key, state, charged: state.charged, waiting: state.waiting });
      state.charged = 0;
      state.waiting = [];
      state.sending = true;
    }
    // Keys left past the batch's bound (rare: a scan of at most the keys charged since the last send).
    urgent = due.size > 0 && [...due.values()].some((s) => s.waiting.length > 0 || s.charged >= maxHeldBack);
    store
      .charge(batch.map((b) => ({ key: b.key, points: b.charged + b.waiting.length })))
      .then((counts) => {
        // One count per key, or no key of this charge is known (a store that answers otherwise is failing).
        if (counts.length !== batch.length) throw new Error(`budget store answered ${counts.length} counts for ${batch.length} keys`);
        return counts;
      })
      .then(
        (counts) => {
          storeAnswering = true;
          batch.forEach((b, i) => settle(b, counts[i]));
        },
        (err: unknown) => {
          storeAnswering = false;
          for (const b of batch) {
            b.state.resetsAt = 0;
            for (const w of b.waiting) w.reject(err);
          }
        },
      )
      .finally(() => {
        for (const b of batch) b.state.sending = false;
        sending = false;
        schedule();
      });
  };
  // An urgent charge goes on the next turn, with the calls of this one (many requests read
  // from the sockets); the charges of calls that passed wait up to flushMs for others.
  // While a charge is on its way, what is due is scheduled when it is answered.
  const schedule = () => {
    if (sending || scheduled || !due.size) return;
    if (urgent) {
      scheduled = true;
      setImmediate(send);
    } else {
      // Unref'd: a process ending within flushMs loses the charges of its last calls, which passed.
      flushTimer ??= setTimeout(send, flushMs).unref();
    }
  };

  return {
    consume(key) {
      const now = Date.now();
      let s = keys.get(key) ?? due.get(key);
      if (!s) {
        if (keys.size >= MAX_KEYS) forget(now);
        s = { remaining: 0, resetsAt: 0, charged: 0, waiting: [], sending: false };
        if (keys.size < MAX_KEYS) keys.set(key, s);
      }
      // Nothing known of the key (new here, or its window over), nothing of it on the way: its first call.
      // Only a remembered key: one held in `due` alone would be new again after every charge.
      const first = unknownHere(s, now) && firstCallAtOnce && storeAnswering && keys.get(key) === s;
      due.set(key, s);
      if (first || (s.resetsAt > now && s.remaining > margin && !s.waiting.length)) {
        if (!first) s.remaining--;
        if (++s.charged >= maxHeldBack) urgent = true;
        schedule();
        return Promise.resolve();
      }
      const state = s;
      const answered = new Promise<void>((resolve, reject) => state.waiting.push({ resolve, reject }));
      urgent = true;
      schedule();
      return answered;
    },
  };
}

/** Whom a call is counted against: a partner by key, a signed-in caller by subject, anyone else by address (an IPv6 one by its /64). */
function callerKey(values: ContextValues): string {
  const partner = values.get(partnerKey);
  const principal = values.get(principalKey);
  return partner ? `key:${partner.keyId}` : principal ? `sub:${principal.subject}` : `ip:${budgetNetwork(values.get(clientAddressKey))}`;
}

/** Per-client request budget (callerKey). Over budget answers RESOURCE_EXHAUSTED with retry-after seconds. */
export function rateLimitInterceptor(limiter: Budget, partnerLimiter: Budget = limiter): Interceptor {
  return (next) => async (req) => {
    const partner = req.contextValues.get(partnerKey);
    const key = callerKey(req.contextValues);
    try {
      await (partner ? partnerLimiter : limiter).consume(key);
    } catch (rejection) {
      // The store failed, not the budget: transient (retried), not the caller's nor a bug, as the revocation check says it.
      if (rejection instanceof Error) throw new ConnectError("cannot check the request budget right now; retry shortly", Code.Unavailable, undefined, undefined, rejection);
      throw overBudget((rejection as OverBudget).msBeforeNext);
    }
    return next(req);
  };
}

/** Live streams one caller may hold open on one replica, unless configured: see liveStreamsInterceptor. */
export const MAX_LIVE_STREAMS = { signedIn: 16, perAddress: 64 } as const;

/**
 * Live streams (WatchTip, WatchDashboard, WatchInAppNotifications, reflection's) open at once per caller (callerKey) on this
 * replica. A budget charges a stream once, at its opening, and the
 * bound on calls in flight counts unary calls only, while each open stream has its service read the database
 * every second or two for up to an hour: before, one address could open thousands and fill the services' pools.
 * Past it RESOURCE_EXHAUSTED, naming the bound. The anonymous bound is wider: customers paying behind one carrier
 * address each watch their own tip.
 */
export function liveStreamsInterceptor(max: { signedIn: number; perAddress: number } = MAX_LIVE_STREAMS): Interceptor {
  const open = new Map<string, number>();
  return (next) => async (req) => {
    // Every kind of stream: reflection's two-way one (open to all) held as many as one address liked.
    if (req.method.methodKind === "unary") return next(req);
    const key = callerKey(req.contextValues);
    const bound = key.startsWith("ip:") ? max.perAddress : max.signedIn;
    const count = open.get(key) ?? 0;
    if (count >= bound) throw new ConnectError(`at most ${bound} live streams open at once; close one (another tab or screen) first`, Code.ResourceExhausted);
    open.set(key, count + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (open.get(key) ?? 1) - 1;
      if (left > 0) open.set(key, left);
      else open.delete(key);
    };
    req.signal.addEventListener("abort", release, { once: true });
    try {
      const res = await next(req);
      if (!res.stream) return (release(), res);
      const messages = res.message;
      return { ...res, message: (async function* () {
        try {
          yield* messages;
        } finally {
          release();
        }
      })() };
    } catch (err) {
      release();
      throw err;
    }
  };
}

function overBudget(msBeforeNext: number): ConnectError {
  const retryAfter = Math.max(1, Math.ceil(msBeforeNext / 1000));
  return new ConnectError(`rate limit exceeded; retry in ${retryAfter} s`, Code.ResourceExhausted, { "retry-after": String(retryAfter) });
}

/** Addresses remembered over their budget by refusedCredentialsInterceptor, at most (the oldest forgotten first). */
const MAX_OVER_BUDGET_ADDRESSES = 10_000;

/**
 * A call whose partner signature the gateway refuses is charged to a budget of its address: before,
 * it was charged to none, and each cost a round trip to auth and a query. An address over it has its
 * signed calls refused before they are checked, until its window frees points (known here from the
 * store's answer). Apart from the address's anonymous calls and its bearer tokens, which are checked
 * here (a signature and a revocation lookup): behind one carrier address (CGNAT), many phones' expired
 * tokens spent such a budget in a minute, and every valid token from there was refused unchecked.
 * Goes before the checks it counts.
 */
export function refusedCredentialsInterceptor(limiter: Budget): Interceptor {
  const overUntil = new BoundedMap<string, number>(MAX_OVER_BUDGET_ADDRESSES);
  return (next) => (req) => {
    if (!signsAsPartner(req.header)) return nextSettled(next, req);
    const key = `refused:${budgetNetwork(req.contextValues.get(clientAddressKey))}`;
    const until = overUntil.get(key) ?? 0;
    if (until > Date.now()) return Promise.reject(overBudget(until - Date.now()));
    return nextSettled(next, req).catch(async (err: unknown) => {
      if (!(err instanceof ConnectError) || err.code !== Code.Unauthenticated) throw err;
      try {
        await limiter.consume(key);
      } catch (rejection) {
        // The store failing does not turn a refusal into something else.
        if (rejection instanceof Error) throw err;
        const { msBeforeNext } = rejection as OverBudget;
        overUntil.set(key, Date.now() + msBeforeNext);
        throw overBudget(msBeforeNext);
      }
      throw err;
    });
  };
}
