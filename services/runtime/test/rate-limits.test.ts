import assert from "node:assert/strict";
import { test } from "node:test";
import { Code } from "@connectrpc/connect";
import { MemoryCache, RedisCache } from "../src/cache.js";
import { DependencyUnavailableError, RateLimitedError } from "../src/domain-errors.js";
import { consumeOrRefuse } from "../src/rate-limits.js";
import { testEnv, uniqueName } from "../src/testing/index.js";

test("a spent budget refuses with retry-after in whole seconds and says the wait in the unit a person reads", async () => {
  const cache = new MemoryCache();
  for (const [seconds, said] of [[90, /retry in (89|90) s$/], [600, /retry in 10 min$/], [86_400, /retry in 24 h$/]] as const) {
    const limiter = cache.rateLimiter({ keyPrefix: `w${seconds}`, points: 1, durationSeconds: seconds });
    await consumeOrRefuse(limiter, "k", "spent");
    const refused = await consumeOrRefuse(limiter, "k", "spent").then(() => undefined, (e: unknown) => e);
    assert.ok(refused instanceof RateLimitedError, `${seconds} s window: refused`);
    assert.equal(refused.code, Code.ResourceExhausted);
    assert.match(refused.message, said);
    assert.ok(refused.retryAfterSeconds! > seconds - 5 && refused.retryAfterSeconds! <= seconds, `retry-after ${refused.retryAfterSeconds}`);
  }
  await cache.close();
});

test("a budget whose store cannot be reached refuses UNAVAILABLE, to retry (before, the store's error became INTERNAL)", async () => {
  const cache = new RedisCache(testEnv().redisUrl, `${uniqueName("limits")}:`);
  const limiter = cache.rateLimiter({ keyPrefix: "gone", points: 5, durationSeconds: 60 });
  await consumeOrRefuse(limiter, "k", "spent");
  await cache.close();
  const refused = await consumeOrRefuse(limiter, "k", "spent").then(() => undefined, (e: unknown) => e);
  assert.ok(refused instanceof DependencyUnavailableError, String(refused));
  assert.equal(refused.code, Code.Unavailable);
  assert.match(refused.message, /cannot be checked now .*; retry$/);
});
