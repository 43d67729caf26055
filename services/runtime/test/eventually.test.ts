import assert from "node:assert/strict";
import { test } from "node:test";
import { eventually } from "../src/testing/index.js";

test("eventually: returns the first truthy value, names what it waited for, retries errors only when asked", async () => {
  let calls = 0;
  assert.equal(await eventually("the third call", () => (++calls === 3 ? "done" : undefined), { everyMs: 1 }), "done");
  assert.equal(calls, 3);
  await assert.rejects(eventually("nothing", () => false, { timeoutMs: 20, everyMs: 5 }), /timed out after 20 ms waiting for nothing/);
  await assert.rejects(eventually("a broken check", () => { throw new Error("boom"); }), /boom/);
  let attempts = 0;
  const value = await eventually("a server coming back", () => {
    if (++attempts < 3) throw new Error("ECONNREFUSED");
    return attempts;
  }, { everyMs: 1, retryErrors: true });
  assert.equal(value, 3);
  await assert.rejects(eventually("a server that stays down", () => { throw new Error("ECONNREFUSED"); }, { timeoutMs: 20, everyMs: 5, retryErrors: true }), /last error: Error: ECONNREFUSED/);
});
