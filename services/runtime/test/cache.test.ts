import assert from "node:assert/strict";
import net from "node:net";
import { after, describe, test } from "node:test";
import { MemoryCache, RedisCache, type Cache } from "../src/cache.js";
import { testEnv, uniqueName } from "../src/testing/index.js";

// The same rules on both stores: Redis in a cluster, memory in one process.
const stores: [string, () => Cache][] = [
  ["redis", () => new RedisCache(testEnv().redisUrl, `${uniqueName("cache")}:`)],
  ["memory", () => new MemoryCache()],
];

for (const [name, open] of stores) {
  describe(`getMany and del on ${name}`, () => {
    const cache = open();
    after(() => cache.close());

    test("each key's value in the order asked, null for a key never set, deleted or expired", async () => {
      await cache.set("a", "1", 60);
      await cache.set("b", "2", 60);
      await cache.set("gone", "3", 60);
      await cache.del("gone");
      await cache.set("brief", "4", 1);
      assert.deepEqual(await cache.getMany(["b", "never", "a", "gone", "a"]), ["2", null, "1", null, "1"]);
      assert.deepEqual(await cache.getMany([]), []);
      await new Promise((r) => setTimeout(r, 1_100));
      assert.deepEqual(await cache.getMany(["brief", "a"]), [null, "1"]);
      await cache.del("a", "b", "never");
      await cache.del();
      assert.deepEqual(await cache.getMany(["a", "b"]), [null, null], "one del, many keys");
    });
  });

  describe(`chargeBudgets on ${name}`, () => {
    const cache = open();
    after(() => cache.close());

    test("each key's count and window, many keys in one call, in the order charged", async () => {
      const first = await cache.chargeBudgets("api", 60, [{ key: "a", points: 1 }, { key: "b", points: 3 }]);
      assert.deepEqual(first.map((c) => c.consumedPoints), [1, 3]);
      for (const c of first) assert.ok(c.msBeforeNext > 59_000 && c.msBeforeNext <= 60_000, `${c.msBeforeNext} ms left`);
      const again = await cache.chargeBudgets("api", 60, [{ key: "b", points: 2 }, { key: "c", points: 1 }, { key: "a", points: 1 }]);
      assert.deepEqual(again.map((c) => c.consumedPoints), [5, 1, 2]);
      assert.deepEqual((await cache.chargeBudgets("other", 60, [{ key: "a", points: 1 }]))[0].consumedPoints, 1, "another prefix is another budget");
      assert.deepEqual(await cache.chargeBudgets("api", 60, []), []);
    });

    test("a window ends with its length and the next starts at 0", async () => {
      // Two seconds: the second charge lands in the first window even on a loaded machine.
      assert.equal((await cache.chargeBudgets("short", 2, [{ key: "k", points: 4 }]))[0].consumedPoints, 4);
      const [inWindow] = await cache.chargeBudgets("short", 2, [{ key: "k", points: 1 }]);
      assert.ok(inWindow.consumedPoints === 5 && inWindow.msBeforeNext <= 2_000, JSON.stringify(inWindow));
      await new Promise((r) => setTimeout(r, 2_100));
      assert.equal((await cache.chargeBudgets("short", 2, [{ key: "k", points: 1 }]))[0].consumedPoints, 1);
    });

    test("points and windows that are not positive whole numbers are refused", async () => {
      await assert.rejects(cache.chargeBudgets("bad", 60, [{ key: "k", points: 0 }]), RangeError);
      await assert.rejects(cache.chargeBudgets("bad", 60, [{ key: "k", points: 1.5 }]), RangeError);
      await assert.rejects(cache.chargeBudgets("bad", 0, [{ key: "k", points: 1 }]), RangeError);
      assert.equal((await cache.chargeBudgets("bad", 60, [{ key: "k", points: 1 }]))[0].consumedPoints, 1, "nothing was counted");
    });

    if (name === "redis") {
      test("counts on the keys of rateLimiter(): a budget shared with replicas that consume through it", async () => {
        await cache.rateLimiter({ keyPrefix: "shared", points: 10, durationSeconds: 60 }).consume("k", 2);
        assert.equal((await cache.chargeBudgets("shared", 60, [{ key: "k", points: 1 }]))[0].consumedPoints, 3);
        const res = await cache.rateLimiter({ keyPrefix: "shared", points: 10, durationSeconds: 60 }).consume("k", 1);
        assert.equal(res.consumedPoints, 4);
      });
    }
  });

  describe(`claimCooldown on ${name}`, () => {
    const cache = open();
    after(() => cache.close());
    const t0 = 1_900_000_000_000;

    test("one claim per cool-down, timed by the caller's clock", async () => {
      assert.equal(await cache.claimCooldown("a", t0, 1_000), 0, "the first claim wins");
      const again = await cache.claimCooldown("a", t0, 1_000);
      assert.ok(again > 900 && again <= 1_000, `refused with the time left (${again} ms)`);
      assert.equal(await cache.claimCooldown("a", t0 + 999, 1_000), 1);
      assert.equal(await cache.claimCooldown("b", t0, 1_000), 0, "another key has its own cool-down");
      assert.equal(await cache.claimCooldown("a", t0 + 1_000, 1_000), 0, "claimed again once the clock has moved past it");
      assert.equal(await cache.claimCooldown("a", t0 + 1_400, 1_000), 600, "the new claim starts a new cool-down");
    });

    test("a clock behind the last claim waits no longer than the cool-down", async () => {
      assert.equal(await cache.claimCooldown("behind", t0, 1_000), 0);
      const left = await cache.claimCooldown("behind", t0 - 5_000, 1_000);
      assert.ok(left > 0 && left <= 1_000, `bounded by the store's expiry (${left} ms)`);
    });

    test("of claims racing for one key exactly one wins", async () => {
      const answers = await Promise.all(Array.from({ length: 10 }, () => cache.claimCooldown("race", t0, 1_000)));
      assert.equal(answers.filter((ms) => ms === 0).length, 1);
    });

    test("a time or length that is not whole milliseconds is refused", async () => {
      for (const [now, ms] of [[Number.NaN, 1_000], [-1, 1_000], [t0, 0], [t0, 1.5]]) {
        await assert.rejects(cache.claimCooldown("bad", now, ms), RangeError);
      }
    });
  });
}

describe("a Redis that takes the connection and never answers", () => {
  test("a command is refused after the command timeout, not waited on for ever", async () => {
    const mute = net.createServer((socket) => socket.on("data", () => undefined));
    await new Promise<void>((resolve) => mute.listen(0, "127.0.0.1", resolve));
    const cache = new RedisCache(`redis://127.0.0.1:${(mute.address() as net.AddressInfo).port}`);
    try {
      // Before, the rate limiter's one charge in flight waited here, and every call behind it.
      const unanswered = new Promise((resolve) => setTimeout(resolve, 10_000, "still waiting").unref()).then(String);
      await assert.rejects(Promise.race([cache.get("k"), unanswered]), /Command timed out/);
    } finally {
      cache.redis.disconnect();
      mute.close();
    }
  });
});
