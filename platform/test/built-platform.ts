// The platform's bundle for the tests that run it (the image's build, the chart's environments):
// built once and shared by the test files of a suite run, which run in parallel, and by the next
// run while the sources are the same (sharedBuild: one builds, the others wait).
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { removeOldBuilds, sharedBuild } from "@ttip/runtime/testing";
import { ADMIN_DIST, ensureAdminBuild } from "@ttip/admin";
import { buildPlatform, type BuildResult } from "../build.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
/** Beside the installed packages, as the tests' compile cache: `npm ci` clears it. */
const CACHE = path.join(root, "node_modules/.cache/ttip-platform-build");
/**
 * What a bundle is made of: the services' sources and migrations, the gateway, the admin console's
 * handler, the contracts, the packages (and the admin console's build, below). A module bundled
 * from elsewhere would run stale from a build of older sources: build.test.ts checks (unhashedInputs).
 */
const SOURCE_PATHS = ["services", "gateway/src", "apps/admin/handler.ts", "proto/gen", "platform/src", "platform/build.ts", "platform/package.json", "package-lock.json"];
const SOURCES = SOURCE_PATHS.map((p) => path.join(root, p));
/** Builds of other sources (an earlier commit's) are removed once this old: each is ~20 MB. */
const KEEP_OTHERS_MS = 60 * 60_000;

function files(p: string): string[] {
  if (!existsSync(p)) return [];
  if (!statSync(p).isDirectory()) return [p];
  // A service's tests and fixtures are no part of its bundle.
  return readdirSync(p).sort().filter((name) => name !== "test" && name !== "node_modules").flatMap((name) => files(path.join(p, name)));
}

/** A hash over the sources' paths and contents (not times: a fresh clone has new times). */
function fingerprint(): string {
  const h = createHash("sha256");
  for (const f of [...SOURCES.flatMap(files), ...files(ADMIN_DIST)]) h.update(path.relative(root, f)).update("\0").update(readFileSync(f)).update("\0");
  return h.digest("hex").slice(0, 24);
}

/** The bundle's modules (metafile inputs, relative to the repository) outside the hashed sources; the packages are the lock file's. */
export function unhashedInputs(inputs: string[]): string[] {
  const covered = (p: string) => p.startsWith("node_modules/") || p.startsWith("left-out:") || SOURCE_PATHS.some((s) => p === s || p.startsWith(`${s}/`));
  return inputs.filter((p) => !covered(p));
}

type Paths = Pick<BuildResult, "productionDir" | "productionEntry" | "developmentDir" | "developmentEntry">;
const PATHS: (keyof Paths)[] = ["productionDir", "productionEntry", "developmentDir", "developmentEntry"];

/** The result's paths relative to `dir` or under it again: the build is made aside and renamed. */
function relocated(result: BuildResult, map: (p: string) => string): BuildResult {
  return { ...result, ...Object.fromEntries(PATHS.map((k) => [k, map(result[k])])) };
}

/**
 * The platform built from the sources as they are now: a build of the same sources made before,
 * or one made now. The tree is shared: a test reads and runs it and writes nothing into it.
 */
export async function builtPlatform(): Promise<BuildResult> {
  // The bundle copies the admin console's build: made (or found current) before the hash.
  await ensureAdminBuild(() => undefined);
  const dir = await sharedBuild(path.join(CACHE, fingerprint()), async (aside) => {
    const built = await buildPlatform(aside);
    writeFileSync(path.join(aside, "result.json"), JSON.stringify(relocated(built, (p) => path.relative(aside, p))));
  });
  removeOldBuilds(CACHE, dir, KEEP_OTHERS_MS);
  return relocated(JSON.parse(readFileSync(path.join(dir, "result.json"), "utf8")) as BuildResult, (p) => path.join(dir, p));
}
