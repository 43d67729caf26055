// The harness runs a platform process with the node flags a pod and `npm start` use.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { eventually, PLATFORM_NODE_FLAGS, PlatformProcess } from "../src/testing/index.js";

/**
 * The whole line the entry printed that starts with `prefix`. start() returns once the entry's port answers; its
 * output comes through a pipe the test reads on its own, so the line may arrive after the answer.
 */
const printedLine = (proc: PlatformProcess, prefix: string) =>
  eventually(`the entry's line starting ${prefix}`, () => {
    const line = proc.logs.split("\n").slice(0, -1).find((l) => l.startsWith(prefix)); // whole lines only
    assert.ok(line || proc.running, `the entry exited without it: ${proc.logs}`);
    return line;
  });

/**
 * How long an entry may take to serve: the flags fixture loads the runtime from source, which took over 30 s at
 * load 60 (this file's limit then). A wait for its health check, not a sleep: a hang still fails, within the runner's per-test limit.
 */
const STARTS_MS = 300_000;

const fixture = fileURLToPath(new URL("./fixtures/flags-server.ts", import.meta.url));
const repo = (file: string) => fileURLToPath(new URL(`../../../${file}`, import.meta.url));

test("npm start and the image's ENTRYPOINT pass the platform's node flags", async () => {
  const start = JSON.parse(await readFile(repo("package.json"), "utf8")).scripts.start as string;
  const entrypoints = (await readFile(repo("deploy/Dockerfile"), "utf8")).split("\n").filter((l) => l.startsWith("ENTRYPOINT") && l.includes("ttip.mjs"));
  assert.ok(entrypoints.length > 0, "the Dockerfile has the platform's ENTRYPOINT");
  for (const flag of PLATFORM_NODE_FLAGS) {
    assert.ok(start.split(" ").includes(flag), `npm start passes ${flag}: ${start}`);
    for (const line of entrypoints) assert.ok(line.includes(`"${flag}"`), `${line} passes ${flag}`);
  }
});

test("a PlatformProcess runs its entry with the platform's node flags", async () => {
  const proc = await PlatformProcess.create(fixture, "flags", { LOG_LEVEL: "warn" });
  try {
    await proc.start(STARTS_MS);
    const printed = await printedLine(proc, "{\"execArgv\"");
    const { execArgv } = JSON.parse(printed) as { execArgv: string[] };
    for (const flag of PLATFORM_NODE_FLAGS) assert.ok(execArgv.includes(flag), `${flag} in ${execArgv.join(" ")}`);
  } finally {
    await proc.stop();
  }
});

test("a PlatformProcess runs a compiled entry as the image runs it: without the test loader's compile cache", async () => {
  const compiled = fileURLToPath(new URL("./fixtures/compiled-server.mjs", import.meta.url));
  // The test loader (source-hooks.ts) passes its cache on through the environment; under tsx, set it here.
  const before = process.env.NODE_COMPILE_CACHE;
  process.env.NODE_COMPILE_CACHE ??= path.join(os.tmpdir(), "ttip-compile-cache-test");
  const proc = await PlatformProcess.create(compiled, "compiled", { LOG_LEVEL: "warn" });
  try {
    await proc.start(STARTS_MS);
    const printed = await printedLine(proc, "{\"compileCacheDir\"");
    assert.deepEqual(JSON.parse(printed), { compileCacheDir: null, NODE_COMPILE_CACHE: null });
  } finally {
    await proc.stop();
    if (before === undefined) delete process.env.NODE_COMPILE_CACHE;
  }
});
