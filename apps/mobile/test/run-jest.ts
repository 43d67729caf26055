// Runs the app's jest (on the mobile toolchain's Node) for make test's two mobile files.
// Both use the one jest.config.js, so they share its transform cache: babel over React
// Native, Expo and the app is most of a cold run's CPU (about 45 of 57 s). The lock makes
// whichever file comes second wait for the first and find that cache filled, in either order.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const app = fileURLToPath(new URL("..", import.meta.url));

export interface JestResult {
  numTotalTests: number;
  numFailedTests: number;
  testResults: { name: string; message: string; assertionResults: { fullName: string; status: string; failureMessages: string[] }[] }[];
}

/** jest on the tests whose paths match `pattern`, with `env` added; its JSON result. */
export async function runJest(pattern: string, env: Record<string, string> = {}): Promise<JestResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "ttip-mobile-jest-"));
  const out = path.join(dir, "result.json");
  const lock = path.join(app, "node_modules/.cache/jest.lock");
  mkdirSync(path.dirname(lock), { recursive: true });
  try {
    const jest = [path.join(app, "scripts/with-node.sh"), "npx", "jest", "--ci", "--forceExit", "--maxWorkers=1", "--json", `--outputFile=${out}`, pattern];
    const child = spawn("flock", [lock, ...jest], {
      cwd: app,
      stdio: ["ignore", "ignore", "pipe"],
      // The web app's build may have set production for this process; React's act needs development.
      env: { ...process.env, CI: "1", NODE_ENV: "test", ...env },
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
