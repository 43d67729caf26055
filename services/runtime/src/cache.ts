import { Redis, type Command } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract } from "rate-limiter-flexible";
import { inClientSpan, tracingEnabled } from "./tracing.js";

/** Points charged to one budget's key. */
export interface BudgetCharge {
  key: string;
  points: number;
}

/** A budget key's count in its window after a charge, and the milliseconds until that window ends. */
export interface BudgetCount {
  consumedPoints: number;
  msBeforeNext: number;
}

/** Keys charged in one round trip at most: a bound on the script's run time (Redis does nothing else meanwhile). */
export const MAX_BUDGET_CHARGES = 1_000;

/** A small key-value cache with expiry: Redis in a cluster, a Map in one process. */
export interface Cache {
  get(key: string): Promise<string | null>;
  /** Several keys in one round trip (MGET): each one's value, or null, in the order asked. */
  getMany(keys: readonly string[]): Promise<Array<string | null>>;
  set(key: string, value: string, ttlSeconds: number): Promise<void>;
  /** Deletes the keys (one command for all of them). */
  del(...keys: string[]): Promise<void>;
  /** Adds 1 to one field of a hash (created at 0) and sets the hash to expire in ttlSeconds. */
  incrementField(key: string, field: string, ttlSeconds: number): Promise<void>;
  /** A hash's fields and values; {} when there is none. */
  getFields(key: string): Promise<Record<string, string>>;
  /** A rate limiter sharing this cache's store: points per durationSeconds per key. */
  rateLimiter(options: { keyPrefix: string; points: number; durationSeconds: number }): RateLimiterAbstract;
  /**
   * Adds each charge's points to its key's count, in fixed windows of durationSeconds
   * (a key's window starts with its first charge), every key in one round trip; answers
   * each count after its charge, in order. In Redis the keys are rateLimiter({ keyPrefix })'s,
   * so both count the same budget (replicas of two versions share it); the in-memory cache
   * keeps its budgets apart from its rate limiters (one process has one version).
   */
  chargeBudgets(keyPrefix: string, durationSeconds: number, charges: readonly BudgetCharge[]): Promise<BudgetCount[]>;
  /**
   * Claims a cool-down atomically: when `key` was last claimed at least
   * `cooldownMs` before `nowMs` (or never), records `nowMs` and answers 0;
   * otherwise answers the milliseconds left. `nowMs` is the caller's clock (a
   * test moves it forward instead of sleeping); the store's own expiry bounds
   * the wait, so a clock that runs behind never makes it longer.
   */
  claimCooldown(key: string, nowMs: number, cooldownMs: number): Promise<number>;
  close(): Promise<void>;
}

// KEYS[1] the cool-down; ARGV now (ms), cool-down (ms). One script, so two
// claims racing for the same key cannot both win.
const CLAIM_COOLDOWN = `
local last = redis.call('GET', KEYS[1])
local now = tonumber(ARGV[1])
local cooldown = tonumber(ARGV[2])
if last then
  local left = math.min(tonumber(last) + cooldown - now, redis.call('PTTL', KEYS[1]))
  if left > 0 then return left end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', cooldown)
return 0`;

// KEYS the budgets' keys; ARGV[1] the window (ms), ARGV[i + 1] the points charged to KEYS[i].
// INCRBY creates a key at 0; one that has no expiry yet (new) gets its window. Two commands
// a key, where rate-limiter-flexible's script runs three (a SET NX first).
const CHARGE_BUDGETS = `
local window = tonumber(ARGV[1])
local counts = {}
for i, key in ipairs(KEYS) do
  local consumed = redis.call('INCRBY', key, ARGV[i + 1])
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, window)
    ttl = window
  end
  counts[2 * i - 1] = consumed
  counts[2 * i] = ttl
end
return counts`;

function assertCharges(durationSeconds: number, charges: readonly BudgetCharge[]): void {
  if (!Number.isSafeInteger(durationSeconds) || durationSeconds < 1) throw new RangeError(`budget: window must be whole seconds (got ${durationSeconds})`);
  if (charges.length > MAX_BUDGET_CHARGES) throw new RangeError(`budget: at most ${MAX_BUDGET_CHARGES} keys a charge (got ${charges.length})`);
  for (const c of charges) {
    if (!Number.isSafeInteger(c.points) || c.points < 1) throw new RangeError(`budget: points must be a positive whole number (got ${c.points} for ${c.key})`);
  }
}

function assertCooldown(nowMs: number, cooldownMs: number): void {
  if (!Number.isSafeInteger(nowMs) || nowMs < 0) throw new RangeError(`cool-down: now must be epoch milliseconds (got ${nowMs})`);
  if (!Number.isSafeInteger(cooldownMs) || cooldownMs < 1) throw new RangeError(`cool-down: length must be a positive whole ms (got ${cooldownMs})`);
}

/** Far above a Redis command's milliseconds, under a call's deadline. */
const REDIS_COMMAND_TIMEOUT_MS = 2_000;

export class RedisCache implements Cache {
  readonly redis: Redis;

  /** `commandTimeoutMs`: REDIS_COMMAND_TIMEOUT_MS unless given (a test process that stalls for seconds). */
  constructor(url: string, private readonly prefix = "ttip:", { commandTimeoutMs = REDIS_COMMAND_TIMEOUT_MS }: { commandTimeoutMs?: number } = {}) {
    // Commands fail fast instead of queueing forever while Redis is down, or hanging while it is connected and mute
    // (a half-open connection, a failover): callers answer UNAVAILABLE rather than hold every call behind one.
    this.redis = new Redis(url, { maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false, commandTimeout: commandTimeoutMs });
    traceCommands(this.redis);
    // EVALSHA, the script sent again only if Redis has lost it.
    this.redis.defineCommand("ttipChargeBudgets", { lua: CHARGE_BUDGETS });
  }

  get(key: string) {
    return this.redis.get(this.prefix + key);
  }
  async getMany(keys: readonly string[]) {
    if (!keys.length) return [];
    return this.redis.mget(keys.map((key) => this.prefix + key));
  }
  async set(key: string, value: string, ttlSeconds: number) {
    await this.redis.set(this.prefix + key, value, "EX", ttlSeconds);
  }
  async del(...keys: string[]) {
    if (keys.length) await this.redis.del(keys.map((key) => this.prefix + key));
  }
  async incrementField(key: string, field: string, ttlSeconds: number) {
    // One round trip: the count and its expiry together.
    await this.redis.multi().hincrby(this.prefix + key, field, 1).expire(this.prefix + key, ttlSeconds).exec();
  }
  getFields(key: string) {
    return this.redis.hgetall(this.prefix + key);
  }
  rateLimiter(o: { keyPrefix: string; points: number; durationSeconds: number }) {
    return new RateLimiterRedis({
      storeClient: this.redis,
      keyPrefix: `${this.prefix}rl:${o.keyPrefix}`,
      points: o.points,
      duration: o.durationSeconds,
    });
  }
  async chargeBudgets(keyPrefix: string, durationSeconds: number, charges: readonly BudgetCharge[]) {
    assertCharges(durationSeconds, charges);
    if (!charges.length) return [];
    const keys = charges.map((c) => `${this.prefix}rl:${keyPrefix}:${c.key}`);
    const run = (this.redis as unknown as { ttipChargeBudgets(...args: (string | number)[]): Promise<number[]> }).ttipChargeBudgets;
    const counts = await run.call(this.redis, keys.length, ...keys, durationSeconds * 1000, ...charges.map((c) => c.points));
    return charges.map((_, i) => ({ consumedPoints: Number(counts[2 * i]), msBeforeNext: Number(counts[2 * i + 1]) }));
  }
  async claimCooldown(key: string, nowMs: number, cooldownMs: number) {
    assertCooldown(nowMs, cooldownMs);
    return Number(await this.redis.eval(CLAIM_COOLDOWN, 1, `${this.prefix}cd:${key}`, nowMs, cooldownMs));
  }
  async close() {
    await this.redis.quit();
  }
}

/**
 * Every command this client sends (the cache's and the rate limiters' scripts)
 * in a client span while tracing, named by the command, never its keys or values.
 * Exported for its bench (bench/redis-command-span.ts); RedisCache applies it.
 */
export function traceCommands(redis: Redis): void {
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (command: Command, ...rest: unknown[]) => {
    // Off (the usual case): ioredis's own call and promise, without a span's name, attributes, closure and catch per command.
    if (!tracingEnabled()) return (send as (...a: unknown[]) => Promise<unknown>)(command, ...rest);
    const sent = inClientSpan(`redis ${command.name}`, { "db.system": "redis", "db.operation": command.name }, () => (send as (...a: unknown[]) => Promise<unknown>)(command, ...rest));
    // A caller with a callback ignores the returned promise (ioredis settles the callback from the command's own).
    sent.catch(() => undefined);
    return sent;
  };
}

/** Budget keys a MemoryCache holds before it drops the expired ones (at most once a second). */
const MEMORY_BUDGET_KEYS = 10_000;

export class MemoryCache implements Cache {
  private readonly entries = new Map<string, { value: string; expires: number }>();
  private readonly hashes = new Map<string, { fields: Map<string, number>; expires: number }>();
  private readonly budgets = new Map<string, { consumed: number; expires: number }>();
  private budgetsSweptAt = 0;

  async get(key: string) {
    const e = this.entries.get(key);
    if (!e) return null;
    if (e.expires <= Date.now()) {
      this.entries.delete(key);
      return null;
    }
    return e.value;
  }
  async getMany(keys: readonly string[]) {
    return Promise.all(keys.map((key) => this.get(key)));
  }
  async set(key: string, value: string, ttlSeconds: number) {
    this.entries.set(key, { value, expires: Date.now() + ttlSeconds * 1000 });
  }
  async del(...keys: string[]) {
    for (const key of keys) {
      this.entries.delete(key);
      this.hashes.delete(key);
    }
  }
  async incrementField(key: string, field: string, ttlSeconds: number) {
    const now = Date.now();
    let h = this.hashes.get(key);
    if (!h || h.expires <= now) this.hashes.set(key, (h = { fields: new Map(), expires: 0 }));
    h.fields.set(field, (h.fields.get(field) ?? 0) + 1);
    h.expires = now + ttlSeconds * 1000;
  }
  async getFields(key: string) {
    const h = this.hashes.get(key);
    if (!h || h.expires <= Date.now()) return {};
    return Object.fromEntries([...h.fields].map(([f, n]) => [f, String(n)]));
  }
  rateLimiter(o: { keyPrefix: string; points: number; durationSeconds: number }) {
    return new RateLimiterMemory({ keyPrefix: o.keyPrefix, points: o.points, duration: o.durationSeconds });
  }
  async chargeBudgets(keyPrefix: string, durationSeconds: number, charges: readonly BudgetCharge[]) {
    assertCharges(durationSeconds, charges);
    const now = Date.now();
    if (this.budgets.size >= MEMORY_BUDGET_KEYS && now - this.budgetsSweptAt >= 1_000) {
      this.budgetsSweptAt = now;
      for (const [key, b] of this.budgets) if (b.expires <= now) this.budgets.delete(key);
    }
    return charges.map(({ key, points }) => {
      const k = `${keyPrefix}:${key}`;
      let b = this.budgets.get(k);
      if (!b || b.expires <= now) this.budgets.set(k, (b = { consumed: 0, expires: now + durationSeconds * 1000 }));
      b.consumed += points;
      return { consumedPoints: b.consumed, msBeforeNext: b.expires - now };
    });
  }
  async claimCooldown(key: string, nowMs: number, cooldownMs: number) {
    assertCooldown(nowMs, cooldownMs);
    // No await between the read and the write: atomic within the process.
    const k = `cd:${key}`;
    const e = this.entries.get(k);
    const wall = Date.now();
    if (e && e.expires > wall) {
      const left = Math.min(Number(e.value) + cooldownMs - nowMs, e.expires - wall);
      if (left > 0) return left;
    }
    this.entries.set(k, { value: String(nowMs), expires: wall + cooldownMs });
    return 0;
  }
  async close() {
    this.entries.clear();
    this.hashes.clear();
    this.budgets.clear();
  }
}
