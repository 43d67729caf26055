// Builds the web app once and reuses the build until its sources change:
// `make run` and the browser tests call ensureWebBuild(); it rebuilds only
// when a source file (or the contracts' generated code) is newer than the
// fingerprint kept beside the build.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { withBuildLock } from "@ttip/runtime/build-lock";

const dir = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(dir, "../..");
const SOURCES = [path.join(dir, "src"), path.join(dir, "public"), path.join(dir, "next.config.mjs"), path.join(dir, "package.json"), path.join(root, "proto/gen"), path.join(root, "services/venue/src/rounding-rule.ts"), path.join(root, "services/payment/src/cards/currencies.ts"), path.join(root, "services/runtime/src/mpesa-limits.ts")];
const STAMP = path.join(dir, ".next", "ttip-sources.sha256");

function files(p: string): string[] {
  if (!existsSync(p)) return [];
  if (!statSync(p).isDirectory()) return [p];
  return readdirSync(p).sort().flatMap((name) => files(path.join(p, name)));
}

/** A hash over the sources' paths and contents (not times: a fresh clone has new times). */
function fingerprint(): string {
  const h = createHash("sha256");
  for (const f of SOURCES.flatMap(files)) h.update(path.relative(root, f)).update("\0").update(readFileSync(f)).update("\0");
  return h.digest("hex");
}

export function webBuildIsCurrent(): boolean {
  return existsSync(path.join(dir, ".next", "BUILD_ID")) && existsSync(STAMP) && readFileSync(STAMP, "utf8") === fingerprint();
}

/** Runs `next build` when the build is missing or stale; resolves when a current build is there. */
export async function ensureWebBuild(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<void> {
  if (webBuildIsCurrent()) return;
  // One build at a time (two test files, or make run beside make test): the others wait for it.
  await withBuildLock(path.join(dir, ".build-lock"), async () => {
    if (!webBuildIsCurrent()) await build(log);
  }, { staleMs: 10 * 60_000, pollMs: 500 });
}

async function build(log: (line: string) => void): Promise<void> {
  const sum = fingerprint();
  log("building the web app (once; reused until its sources change)…");
  const started = Date.now();
  const nextBin = path.join(path.dirname(fileURLToPath(import.meta.resolve("next/package.json"))), "dist/bin/next");
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [nextBin, "build"], {
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NEXT_TELEMETRY_DISABLED: "1", NODE_ENV: "production" },
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`next build failed (exit ${code}):\n${out.slice(-4000)}`))));
  });
  // The cluster's web image runs Next's standalone server, which serves the assets from beside it.
  const standalone = path.join(dir, ".next", "standalone", path.relative(root, dir));
  if (existsSync(standalone)) cpSync(path.join(dir, ".next", "static"), path.join(standalone, ".next", "static"), { recursive: true });
  writeFileSync(STAMP, sum);
  log(`web app built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  ensureWebBuild().catch((err) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
