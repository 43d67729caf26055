// A build shared by test files running in parallel: made once, never seen half made.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { removeOldBuilds, sharedBuild } from "../src/testing/index.js";

const parent = mkdtempSync(path.join(os.tmpdir(), "ttip-shared-build-"));
after(() => rmSync(parent, { recursive: true, force: true }));

/** A build that takes a while and writes two files, counting how often it ran. */
function slowBuild(counter: { runs: number }) {
  return async (aside: string) => {
    counter.runs++;
    mkdirSync(aside, { recursive: true });
    writeFileSync(path.join(aside, "first"), "1");
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(path.join(aside, "second"), "2");
  };
}

test("sharedBuild: callers at once get one build, whole; a later caller reuses it", async () => {
  const dir = path.join(parent, "abc");
  const counter = { runs: 0 };
  const dirs = await Promise.all([1, 2, 3].map(() => sharedBuild(dir, slowBuild(counter))));
  assert.equal(counter.runs, 1);
  assert.deepEqual(dirs, [dir, dir, dir]);
  assert.deepEqual(readdirSync(dir).sort(), ["first", "second"]);
  assert.deepEqual(readdirSync(parent), ["abc"], "no lock or half-made directory left");
  await sharedBuild(dir, slowBuild(counter));
  assert.equal(counter.runs, 1);
});

test("sharedBuild: a failed build leaves nothing, and the next caller builds; a stale lock is taken over", async () => {
  const dir = path.join(parent, "failing");
  await assert.rejects(sharedBuild(dir, async (aside) => {
    mkdirSync(aside);
    throw new Error("compile error");
  }), /compile error/);
  assert.deepEqual(readdirSync(parent).filter((n) => n.startsWith("failing")), []);

  mkdirSync(`${dir}.lock`); // a killed build's
  const old = new Date(Date.now() - 60_000);
  utimesSync(`${dir}.lock`, old, old);
  const counter = { runs: 0 };
  await sharedBuild(dir, slowBuild(counter), { staleLockMs: 30_000 });
  assert.equal(counter.runs, 1);
  assert.equal(readFileSync(path.join(dir, "second"), "utf8"), "2");
});

test("sharedBuild: a build whose lock was taken over as stale, finishing after the other's landed, gets the other's whole build", async () => {
  const dir = path.join(parent, "overtaken");
  const landed = await sharedBuild(dir, async (aside) => {
    mkdirSync(aside);
    writeFileSync(path.join(aside, "mine"), "1");
    // Meanwhile the process that took the lock over built and renamed its own into place.
    mkdirSync(dir);
    writeFileSync(path.join(dir, "theirs"), "2");
  });
  assert.equal(landed, dir);
  assert.deepEqual(readdirSync(dir), ["theirs"]);
  assert.deepEqual(readdirSync(parent).filter((n) => n.startsWith("overtaken")), ["overtaken"], "no lock or half-made directory left");
});

test("removeOldBuilds: removes the others last changed before the bound, keeps the current one and young ones", () => {
  const dirOf = (n: string) => path.join(parent, "old", n);
  for (const n of ["current", "stale", "young"]) mkdirSync(dirOf(n), { recursive: true });
  const old = new Date(Date.now() - 2 * 3600_000);
  utimesSync(dirOf("current"), old, old);
  utimesSync(dirOf("stale"), old, old);
  removeOldBuilds(path.join(parent, "old"), dirOf("current"), 3600_000);
  assert.deepEqual(["current", "stale", "young"].filter((n) => existsSync(dirOf(n))), ["current", "young"]);
});
