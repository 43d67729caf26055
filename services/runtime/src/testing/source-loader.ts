// How a process started from source loads TypeScript: Node 24's own type stripping with
// source-hooks.ts where this process was started that way, else tsx (Node 20's `make run`
// path, and anything started with `--import tsx`).
import { fileURLToPath } from "node:url";

const HOOKS = fileURLToPath(new URL("./source-hooks.ts", import.meta.url));

/**
 * Node's flags for source-hooks.ts (the Makefile's SOURCE_HOOKS too): enums and parameter properties
 * need more than stripping; apps/mobile's package declares no module type, and its tests are ESM.
 */
export const SOURCE_HOOKS_FLAGS: readonly string[] = [
  "--experimental-transform-types",
  "--disable-warning=ExperimentalWarning",
  "--disable-warning=MODULE_TYPELESS_PACKAGE_JSON",
  "--import",
  HOOKS,
];

/** The flags a child node process needs to run a `.ts` entry the way this process runs its own. */
export function sourceLoaderFlags(): string[] {
  return (globalThis as Record<symbol, unknown>)[Symbol.for("ttip.sourceHooks")] ? [...SOURCE_HOOKS_FLAGS] : ["--import", "tsx"];
}
