// The mobile app's screen and flow tests (jest-expo, React Native Testing Library,
// against a fake gateway) run by jest on the mobile toolchain's Node; each jest test
// is reported here as a test of its own, so `make test` counts them.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const app = fileURLToPath(new URL("..", import.meta.url));

interface JestResult {
  numTotalTests: number;
  numFailedTests: number;
  testResults: { name: string; message: string; assertionResults: { fullName: string; status: string; failureMessages: string[] }[] }[];
}

async function runJest(): Promise<JestResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "ttip-mobile-jest-"));
  const out = path.join(dir, "result.json");
  try {
    const child = spawn(path.join(app, "scripts/with-node.sh"), ["npx", "jest", "--ci", "--forceExit", "--maxWorkers=1", "--json", `--outputFile=${out}`], {
      cwd: app,
      stdio: ["ignore", "ignore", "pipe"],
      // The web app's build may have set production for this process; React's act needs development.
      env: { ...process.env, CI: "1", NODE_ENV: "test" },
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => void (stderr = (stderr + d.toString()).slice(-20_000)));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    assert.ok(existsSync(out), `jest wrote no result (exit ${code}):\n${stderr}`);
    return JSON.parse(readFileSync(out, "utf8")) as JestResult;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("mobile app screens and flows (jest-expo)", async (t) => {
  assert.ok(existsSync(path.join(app, "node_modules/.package-lock.json")), "apps/mobile is not installed: run `make mobile` (make test does)");
  const result = await runJest();
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
