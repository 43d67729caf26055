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
