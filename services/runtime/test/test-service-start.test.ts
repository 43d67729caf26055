// startTestService whose module's start throws closes what it had opened (the database, the bus, Redis, the
// modules started with it) before it rethrows: a test file's `before` that fails then fails the file, instead of
// leaving open connections that keep its process, and the whole run, waiting.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";
import { sourceLoaderFlags } from "../src/testing/source-loader.js";

/** Far longer than the start and close take; a process still running then is held open by what the start left. */
const EXIT_LIMIT_MS = 60_000;

test("a test service whose start fails leaves nothing open: the process that caught the error exits by itself", async () => {
  const fixture = new URL("./fixtures/test-service-start-fails.ts", import.meta.url).pathname;
  const child = spawn(process.execPath, [...sourceLoaderFlags(), fixture], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const limit = setTimeout(() => child.kill("SIGKILL"), EXIT_LIMIT_MS);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on("exit", (c, s) => resolve([c, s])));
  clearTimeout(limit);
  assert.match(out, /^refused: this service's start refused$/m);
  assert.deepEqual([code, signal], [0, null], `the process had to be killed after ${EXIT_LIMIT_MS} ms: something the failed start opened kept it running`);
});
