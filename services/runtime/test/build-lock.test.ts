// One build of a tree at a time across processes: the lock every build the tests share takes.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { withBuildLock } from "../src/build-lock.js";

const parent = mkdtempSync(path.join(os.tmpdir(), "ttip-build-lock-"));
after(() => rmSync(parent, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("withBuildLock: callers at once run one after another, and the lock is gone after each, thrown or not", async () => {
  const lock = path.join(parent, "one-at-a-time.lock");
  let inside = 0;
  let mostInside = 0;
  const work = (fail: boolean) => async () => {
    mostInside = Math.max(mostInside, ++inside);
    await sleep(50);
    inside--;
    if (fail) throw new Error("compile error");
    return "built";
  };
  const results = await Promise.allSettled([false, true, false, false].map((fail) => withBuildLock(lock, work(fail), { staleMs: 60_000, pollMs: 10 })));
  assert.equal(mostInside, 1);
  assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled", "fulfilled"]);
  assert.equal(existsSync(lock), false);
});

test("withBuildLock: a lock another holds is waited for; one left by a killed build (older than staleMs) is taken over", async () => {
  const held = path.join(parent, "held.lock");
  mkdirSync(held);
  let ranAt = 0;
  const released = sleep(150).then(() => (rmSync(held, { recursive: true }), Date.now()));
  await withBuildLock(held, async () => void (ranAt = Date.now()), { staleMs: 60_000, pollMs: 10 });
  assert.ok(ranAt >= (await released), "ran only once the holder let go");

  const stale = path.join(parent, "stale.lock");
  mkdirSync(stale);
  const old = new Date(Date.now() - 60_000);
  utimesSync(stale, old, old);
  assert.equal(await withBuildLock(stale, async () => "taken over", { staleMs: 30_000, pollMs: 10 }), "taken over");
});

test("withBuildLock: a holder working past staleMs keeps its lock (it touches it): the next waits, not takes over", async () => {
  const lock = path.join(parent, "slow.lock");
  let inside = 0;
  let mostInside = 0;
  const slow = async () => {
    mostInside = Math.max(mostInside, ++inside);
    await sleep(400);
    inside--;
  };
  await Promise.all([withBuildLock(lock, slow, { staleMs: 100, pollMs: 10 }), sleep(20).then(() => withBuildLock(lock, slow, { staleMs: 100, pollMs: 10 }))]);
  assert.equal(mostInside, 1);
  assert.equal(existsSync(lock), false);
});
