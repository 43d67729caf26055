// A bench run in the image's form (deploy/Dockerfile's production stage): the code compiled as
// platform/build.ts compiles it (esbuild, one bundle with its packages, no keepNames, linked source
// maps), Node's flags from the ENTRYPOINT and its NODE_ENV, no loader at run time. Under tsx the
// same sources pay tsx's loader hooks and keepNames' __name wrappers; this is what a pod pays.
// A bench re-runs itself so: its own entry bundled with the image's options (the platform in its
// process), and the production bundle (ttip.mjs) built beside it for the processes it starts.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Plugin } from "esbuild";

const root = fileURLToPath(new URL("../", import.meta.url));
/** Under the clone, beside the installed packages: the bench's bundle resolves the packages left external there. */
const OUT_DIR = path.join(root, "node_modules/.cache/ttip-image-bench");
/** Set in the re-run process: the production bundle's entry (the image's /app/ttip.mjs). */
const IMAGE_ENTRY_VAR = "TTIP_BENCH_IMAGE_ENTRY";

/** The production stage's ENTRYPOINT flags and NODE_ENV, read from the Dockerfile so the two cannot drift. */
export function imageRuntime(): { nodeFlags: string[]; env: Record<string, string> } {
  const dockerfile = readFileSync(path.join(root, "deploy/Dockerfile"), "utf8");
  const stage = dockerfile.slice(dockerfile.lastIndexOf("AS production"));
  const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(stage)![1]) as string[];
  const nodeEnv = /^ENV NODE_ENV=(\S+)/m.exec(stage)![1];
  return { nodeFlags: entrypoint.slice(1, -1), env: { NODE_ENV: nodeEnv } };
}

/** In the re-run process: the production bundle's entry; undefined in a run from source. */
export function imageEntry(): string | undefined {
  return process.env[IMAGE_ENTRY_VAR];
}

/** esbuild runs from its package (a binary beside it), and only where the bench builds. */
function esbuildOutside(): Plugin {
  return { name: "esbuild-outside", setup: (b) => b.onResolve({ filter: /^esbuild$/ }, () => ({ path: "esbuild", external: true })) };
}

/**
 * The bench's own files and the testing helpers keep their source address for import.meta.url:
 * they start other scripts beside them (the customers', the simulators'), which stay source.
 */
function sourceAddresses(): Plugin {
  return {
    name: "source-addresses",
    setup(b) {
      b.onLoad({ filter: /[\\/](bench|services[\\/]runtime[\\/]src[\\/]testing)[\\/][^\\/]*\.ts$/ }, (args) => ({
        contents: readFileSync(args.path, "utf8").replace(/\bimport\.meta\.url\b/g, JSON.stringify(pathToFileURL(args.path).href)),
        loader: "ts",
      }));
    },
  };
}

/** The image's trees built (platform/build.ts) under the bench's cache: the production entry (ttip.mjs) and the folder. */
export async function imageBuild(): Promise<{ productionEntry: string; dir: string }> {
  const { buildPlatform } = await import("../platform/build.js");
  const { productionEntry } = await buildPlatform(OUT_DIR);
  return { productionEntry, dir: OUT_DIR };
}

/**
 * Builds the image's trees and `benchEntry` bundled the same way, runs that with the image's flags
 * (then this process's own node flags, so a flag given to compare still wins) and environment, and
 * resolves to its exit code.
 */
export async function rerunInImageForm(benchEntry: string, ownNodeFlags: string[]): Promise<number> {
  const t0 = performance.now();
  const { bundleImageTree } = await import("../platform/build.js");
  const { productionEntry } = await imageBuild();
  const bench = await bundleImageTree(OUT_DIR, "bench", benchEntry, [esbuildOutside(), sourceAddresses()]);
  const { nodeFlags, env } = imageRuntime();
  const flags = [...nodeFlags, ...ownNodeFlags.filter((f) => !nodeFlags.includes(f))];
  console.log(`image form: built in ${((performance.now() - t0) / 1000).toFixed(1)} s; node ${flags.join(" ")}, NODE_ENV=${env.NODE_ENV}`);
  const child = spawn(process.execPath, [...flags, bench.entry, ...process.argv.slice(2)], {
    env: { ...process.env, ...env, [IMAGE_ENTRY_VAR]: productionEntry, NODE_OPTIONS: "" },
    stdio: "inherit",
  });
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}
