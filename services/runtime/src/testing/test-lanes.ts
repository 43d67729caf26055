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
