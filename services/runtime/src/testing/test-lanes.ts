// Which test files `make test` runs beside the two lanes the rest share.
import { readFileSync } from "node:fs";
import path from "node:path";

/**
 * Files that wait on other processes far more than they compute, and need neither the test
 * servers nor the web build. The chart's cluster test spent 40 s of CPU (its control plane's
 * included) in its 229 s (loaded machine; about 3 minutes quiet), waiting on controllers: in one
 * of the two lanes it left a core idle for minutes. It runs in a lane of its own from the start.
 */
export const BESIDE_THE_LANES = ["charts/test/kube.test.ts"];

/** The files of `BESIDE_THE_LANES` among `files`, and the others, each in their given order. */
export function splitBeside(files: readonly string[], root: string): [beside: string[], pooled: string[]] {
  const beside = files.filter((f) => BESIDE_THE_LANES.includes(path.relative(root, f)));
  return [beside, files.filter((f) => !beside.includes(f))];
}

/**
 * The entries that each run test files in one process (the web app's browser files share one platform,
 * page server and chromium there; the admin console's share chromium and the loaded services' code):
 * an entry's files are its `import "./….test.js";` lines, so each list lives once, in its entry. A run
 * that includes all of an entry's files runs the entry instead, first (their walls are the pooled
 * lane's longest); a run of some runs those alone.
 */
export const TOGETHER_ENTRIES = ["apps/web/test/browser.group.ts", "apps/admin/test/console.group.ts"];

/** The test files `entry` imports, as paths from `root`, in its order. */
export function togetherFiles(root: string, entry: string): string[] {
  const dir = path.dirname(entry);
  const text = readFileSync(path.join(root, entry), "utf8");
  return [...text.matchAll(/^import\s+"(\.{1,2}\/[^"]+\.test)\.js";/gm)].map((m) => path.join(dir, `${m[1]}.ts`));
}

/** `files` with the files of each of `entries` replaced by that entry, first, when all of them are there. */
export function runTogether(files: readonly string[], root: string, entries: readonly string[] = TOGETHER_ENTRIES): string[] {
  const run: string[] = [];
  let rest = [...files];
  for (const entry of entries) {
    const together = new Set(togetherFiles(root, entry).map((f) => path.join(root, f)));
    if (!together.size || rest.filter((f) => together.has(f)).length < together.size) continue;
    run.push(path.join(root, entry));
    rest = rest.filter((f) => !together.has(f));
  }
  return [...run, ...rest];
}
