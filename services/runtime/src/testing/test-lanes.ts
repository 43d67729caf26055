// Which test files `make test` runs beside the two lanes the rest share.
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
 * Test files that run in one process through an entry importing them (the browser files share one
 * platform, page server and chromium there), when a run includes all of them; a run of some runs
 * those alone. The entry runs first: its wall is the longest of the pooled lane's.
 */
export const RUN_TOGETHER: { entry: string; files: readonly string[] } = {
  entry: "apps/web/test/browser.group.ts",
  files: [
    "apps/web/test/tip-page.test.ts",
    "apps/web/test/card-tip.test.ts",
    "apps/web/test/venue-tip.test.ts",
    "apps/web/test/venue-manager.test.ts",
    "apps/web/test/venue-invite-role.test.ts",
    "apps/web/test/worker-app.test.ts",
    "apps/web/test/worker-double-submit.test.ts",
    "apps/web/test/worker-settings.test.ts",
  ],
};

/** `files` with the files of `RUN_TOGETHER` replaced by its entry, first, when all of them are there. */
export function runTogether(files: readonly string[], root: string): string[] {
  const together = new Set(RUN_TOGETHER.files.map((f) => path.join(root, f)));
  const present = files.filter((f) => together.has(f));
  if (present.length < together.size) return [...files];
  return [path.join(root, RUN_TOGETHER.entry), ...files.filter((f) => !together.has(f))];
}
