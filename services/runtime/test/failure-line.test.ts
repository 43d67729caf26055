// The runner's closing list of failures: one line each, saying where, which test, and why.
import assert from "node:assert/strict";
import { test } from "node:test";
import { failureLine } from "../src/testing/failure-line.js";

const root = "/repo";

test("a failed assertion: the file from the root, the test's name, and the assertion's first lines, not the runner's wrapper", () => {
  const cause = new assert.AssertionError({ actual: 1, expected: 2, operator: "strictEqual" });
  const wrapper = Object.assign(new Error("test failed"), { cause });
  const line = failureLine({ name: "credits once", file: "/repo/services/wallet/test/a.test.ts", details: { error: wrapper } }, root);
  assert.equal(line, "services/wallet/test/a.test.ts: credits once: AssertionError: Expected values to be strictly equal: | 1 !== 2");
});

test("a suite whose hook threw, and a thrown non-Error: three lines at most, 300 characters at most", () => {
  const hook = Object.assign(new Error("failed running before hook"), { cause: new Error(`payment did not report SERVING\n\n${"x".repeat(400)}\nfourth\nfifth`) });
  const line = failureLine({ name: "the dev values", file: "/repo/platform/test/b.test.ts", details: { error: hook } }, root);
  assert.ok(line.startsWith("platform/test/b.test.ts: the dev values: Error: payment did not report SERVING | xxx"), line);
  assert.equal(line.length, "platform/test/b.test.ts: the dev values: ".length + 300);
  assert.equal(failureLine({ name: "t", details: { error: "a string" } }, root), "?: t: a string");
});
