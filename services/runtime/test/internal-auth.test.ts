import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { signInternal, verifyInternal } from "../src/internal-auth.js";

test("internal signature: covers the identity headers, expires, and needs the shared key", () => {
  const key = randomBytes(32);
  const h = new Headers({ "x-ttip-subject": "u1", "x-ttip-roles": "worker" });
  signInternal(h, key);
  assert.equal(verifyInternal(h, key), true);
  assert.equal(verifyInternal(h, randomBytes(32)), false, "another key");
  const changed = new Headers(h);
  changed.set("x-ttip-roles", "worker,admin");
  assert.equal(verifyInternal(changed, key), false, "a role added after signing");
  const added = new Headers(h);
  added.set("x-ttip-session", "s1");
  assert.equal(verifyInternal(added, key), false, "a header added after signing");
  assert.equal(verifyInternal(h, key, Date.now() + 61_000), false, "older than a minute");
  assert.equal(verifyInternal(new Headers({ "x-ttip-internal": "v1.1.x" }), key), false);
});

test("internal signature: covers the step-up time when present, and reads as before without it", () => {
  const key = randomBytes(32);
  const plain = new Headers({ "x-ttip-subject": "u1", "x-ttip-roles": "finance" });
  signInternal(plain, key);
  const forged = new Headers(plain);
  forged.set("x-ttip-step-up-at", String(Math.floor(Date.now() / 1000)));
  assert.equal(verifyInternal(forged, key), false, "a step-up claimed after signing");

  const stepped = new Headers({ "x-ttip-subject": "u1", "x-ttip-roles": "finance", "x-ttip-step-up-at": "1700000000" });
  signInternal(stepped, key);
  assert.equal(verifyInternal(stepped, key), true);
  const moved = new Headers(stepped);
  moved.set("x-ttip-step-up-at", "1700000060");
  assert.equal(verifyInternal(moved, key), false, "the step-up time changed");
  const dropped = new Headers(stepped);
  dropped.delete("x-ttip-step-up-at");
  assert.equal(verifyInternal(dropped, key), false, "the step-up removed");
});
