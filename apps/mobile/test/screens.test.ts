// The mobile app's screen and flow tests (jest-expo, React Native Testing Library,
// against a fake gateway) run by jest on the mobile toolchain's Node; each jest test
// is reported here as a test of its own, so `make test` counts them.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { app, runJest } from "./run-jest.js";

test("mobile app screens and flows (jest-expo)", async (t) => {
  assert.ok(existsSync(path.join(app, "node_modules/.package-lock.json")), "apps/mobile is not installed: run `make mobile` (make test does)");
  const result = await runJest("src/__tests__/");
  // A suite that failed to load has no assertion results: fail on it by name.
  for (const file of result.testResults) {
    assert.ok(file.assertionResults.length > 0, `${path.relative(app, file.name)} ran no test: ${file.message}`);
  }
  for (const file of result.testResults) {
    for (const a of file.assertionResults) {
      await t.test(a.fullName, () => assert.equal(a.status, "passed", a.failureMessages.join("\n")));
    }
  }
  assert.ok(result.numTotalTests >= 20, `expected the mobile suite's 20+ tests, jest ran ${result.numTotalTests}`);
  assert.equal(result.numFailedTests, 0);
});
