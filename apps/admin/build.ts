// Builds the admin console once and reuses the build until its sources change
// (a hash over them, as apps/web/build.ts does). esbuild bundles it in about
// a second, so `make run`'s first start stays quick; nothing is fetched.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { withBuildLock } from "@ttip/runtime/build-lock";

const dir = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(dir, "../..");
export const ADMIN_DIST = path.join(dir, "dist");
// The web app's browser helpers (device key, error sentences) are shared, so they count too, as does
// payment's list of the currencies it takes and runtime's M-Pesa limits.
const SOURCES = [
  path.join(dir, "src"), path.join(dir, "build.ts"), path.join(dir, "package.json"), path.join(root, "apps/web/src/lib"), path.join(root, "apps/web/src/components/charts.tsx"),
  path.join(root, "services/payment/src/cards/currencies.ts"), path.join(root, "services/runtime/src/mpesa-limits.ts"), path.join(root, "proto/gen"),
];

function files(p: string): string[] {
  if (!existsSync(p)) return [];
  if (!statSync(p).isDirectory()) return [p];
  return readdirSync(p).sort().flatMap((name) => files(path.join(p, name)));
}

function fingerprint(): string {
  const h = createHash("sha256");
  for (const f of SOURCES.flatMap(files)) h.update(path.relative(root, f)).update("\0").update(readFileSync(f)).update("\0");
  return h.digest("hex");
}

const stampOf = (dist: string) => path.join(dist, "sources.sha256");

export function adminBuildIsCurrent(dist = ADMIN_DIST): boolean {
  return existsSync(path.join(dist, "index.html")) && existsSync(stampOf(dist)) && readFileSync(stampOf(dist), "utf8") === fingerprint();
}

/**
 * Bundles the console into `dist` when missing or stale. One build at a time (a lock beside `dist`):
 * test files ask for it in parallel, and a second build swapping its own in would remove the first's
 * under whoever was reading it.
 */
export async function ensureAdminBuild(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`), dist = ADMIN_DIST): Promise<void> {
  if (adminBuildIsCurrent(dist)) return;
  await withBuildLock(`${dist}.lock`, async () => {
    if (!adminBuildIsCurrent(dist)) await bundle(log, dist);
  }, { staleMs: 2 * 60_000 });
}

async function bundle(log: (line: string) => void, dist: string): Promise<void> {
  const started = Date.now();
  const sum = fingerprint();
  const { build } = await import("esbuild");
  const out = `${dist}.${process.pid}.tmp`;
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: [path.join(dir, "src/main.tsx")],
    outdir: path.join(out, "assets"),
    entryNames: "app-[hash]",
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    jsx: "automatic",
    minify: true,
    sourcemap: false,
    legalComments: "none",
    metafile: true,
    logLevel: "silent",
    define: { "process.env.NODE_ENV": '"production"' },
  }).then((result) => {
    const js = Object.keys(result.metafile!.outputs).find((f) => f.endsWith(".js"))!;
    const css = Object.keys(result.metafile!.outputs).find((f) => f.endsWith(".css"));
    const html = readFileSync(path.join(dir, "src/index.html"), "utf8")
      .replace("%APP_JS%", `/admin/assets/${path.basename(js)}`)
      .replace("%APP_CSS%", css ? `<link rel="stylesheet" href="/admin/assets/${path.basename(css)}">` : "");
    writeFileSync(path.join(out, "index.html"), html);
  });
  writeFileSync(path.join(out, "sources.sha256"), sum);
  rmSync(dist, { recursive: true, force: true });
  renameSync(out, dist);
  log(`admin console built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  ensureAdminBuild().catch((err) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
