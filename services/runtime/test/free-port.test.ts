// Ports picked free for servers that bind later: never handed out twice, in one process or across a run's.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { freePort, PORT_CLAIMS_DIR_ENV } from "../src/free-port.js";
import { sourceLoaderFlags } from "../src/testing/index.js";

const exec = promisify(execFile);
const FREE_PORT = fileURLToPath(new URL("../src/free-port.ts", import.meta.url));
const claims = mkdtempSync(path.join(os.tmpdir(), "ttip-port-claims-"));
after(() => rmSync(claims, { recursive: true, force: true }));

/** Math.random answering `draws` in turn (then the last again): the ports freePort proposes, scripted. */
async function withDraws<T>(draws: number[], run: () => Promise<T>): Promise<T> {
  const random = Math.random;
  let i = 0;
  Math.random = () => draws[Math.min(i++, draws.length - 1)];
  try {
    return await run();
  } finally {
    Math.random = random;
  }
}

/** Runs `run` with the run's folder of port claims set to `dir` (none: undefined), as the test runner sets it. */
async function withClaims<T>(dir: string | undefined, run: () => Promise<T>): Promise<T> {
  const before = process.env[PORT_CLAIMS_DIR_ENV];
  if (dir === undefined) delete process.env[PORT_CLAIMS_DIR_ENV];
  else process.env[PORT_CLAIMS_DIR_ENV] = dir;
  try {
    return await run();
  } finally {
    if (before === undefined) delete process.env[PORT_CLAIMS_DIR_ENV];
    else process.env[PORT_CLAIMS_DIR_ENV] = before;
  }
}

test("the same draw twice in one process outside a test run, and nothing listening on it meanwhile: the second call gets another port", async () => {
  const [first, second] = await withClaims(undefined, () => withDraws([0.25, 0.25, 0.75], async () => [await freePort(), await freePort()]));
  assert.notEqual(first, second);
});

test("a port another process of the run claimed is not given here, though nothing listens on it yet", async () => {
  await withClaims(claims, async () => {
    const mine = await withDraws([0.4], () => freePort());
    assert.ok(existsSync(path.join(claims, String(mine))), "claimed in the run's folder");
    // Another test file's process, drawing the same number first.
    const script = `Math.random = ((d) => () => d.shift() ?? 0.9)([0.4, 0.6]); const { freePort } = await import(process.env.FREE_PORT); console.log(await freePort());`;
    const { stdout } = await exec(process.execPath, [...sourceLoaderFlags(), "--input-type=module", "-e", script], { env: { ...process.env, FREE_PORT } });
    const theirs = Number(stdout.trim());
    assert.ok(Number.isInteger(theirs) && theirs > 0, stdout);
    assert.notEqual(theirs, mine);
    assert.ok(existsSync(path.join(claims, String(theirs))));
  });
});
