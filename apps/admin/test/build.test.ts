// The console's build, asked for by several processes at once (test files run in parallel, make run
// beside make test): one bundles, the others wait for it, and no reader ever finds its files gone.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, test } from "node:test";
import { sourceLoaderFlags } from "@ttip/runtime/testing";

const exec = promisify(execFile);
const BUILD = fileURLToPath(new URL("../build.ts", import.meta.url));
const parent = mkdtempSync(path.join(os.tmpdir(), "ttip-admin-build-"));
after(() => rmSync(parent, { recursive: true, force: true }));

/** A process that asks for the build into `dist`, then reads every file of it again and again, as a test file's fingerprint does. */
const ASK_AND_READ = `
  import { readdirSync, readFileSync } from "node:fs";
  import path from "node:path";
  const { ensureAdminBuild } = await import(process.env.BUILD);
  const dist = process.env.DIST;
  await ensureAdminBuild((line) => console.log(line), dist);
  const files = (p) => readdirSync(p, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(p, e.name)) : [path.join(p, e.name)]));
  for (let i = 0; i < 200; i++) for (const f of files(dist)) readFileSync(f);
`;

test("ensureAdminBuild from three processes at once: one bundle, and none of them finds a file gone", async () => {
  const dist = path.join(parent, "dist");
  const ask = () => exec(process.execPath, [...sourceLoaderFlags(), "--input-type=module", "-e", ASK_AND_READ], { env: { ...process.env, BUILD, DIST: dist } });
  const runs = await Promise.allSettled([ask(), ask(), ask()]);
  const failed = runs.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => String((r.reason as { stderr?: string }).stderr ?? r.reason).slice(0, 600));
  assert.deepEqual(failed, []);
  const built = runs.flatMap((r) => (r.status === "fulfilled" ? r.value.stdout.split("\n").filter((l) => l.startsWith("admin console built")) : []));
  assert.equal(built.length, 1, "one process bundled");
  assert.ok(readdirSync(dist).includes("index.html"));
  assert.deepEqual(readdirSync(parent), ["dist"], "no lock or half-made build left");
});
