// Runs the repository's TypeScript on Node 24 without tsx: Node strips the types itself
// (--experimental-transform-types: the generated contracts declare enums), these hooks map
// the `.js` specifiers the sources import to their `.ts`/`.tsx` files and build the few JSX
// files with esbuild, and Node's compile cache keeps each module's stripped source and
// bytecode between processes. Every test file and every platform process a test starts
// loads some 1,000 modules; through tsx that cost 1-2 s of CPU per process.
// Loaded with `--import` before anything else (SOURCE_HOOKS_FLAGS in source-loader.ts).
import { existsSync, readFileSync } from "node:fs";
import nodeModule, { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

type ResolveContext = { parentURL?: string; conditions?: readonly string[]; importAttributes?: object };
type Resolved = { url: string; format?: string | null; shortCircuit?: boolean };
type Loaded = { format: string; source?: string | Buffer | null; shortCircuit?: boolean };
interface Hooks {
  resolve(specifier: string, context: ResolveContext, next: (s: string, c?: object) => Resolved): Resolved;
  load(url: string, context: object, next: (u: string, c?: object) => Loaded): Loaded;
}
/** What Node 24 has and @types/node 20 (the oldest Node `make run` supports) does not declare. */
const node24 = nodeModule as unknown as {
  registerHooks(hooks: Hooks): void;
  enableCompileCache(dir: string): unknown;
};

/** Under the clone, beside the installed packages: a clean clone starts cold, `npm ci` clears it. */
const COMPILE_CACHE = fileURLToPath(new URL("../../../../node_modules/.cache/ttip-node-compile", import.meta.url));

/** The files TypeScript's bundler resolution would take for `x.js` or an extensionless `x`, in its order. */
function candidates(href: string): string[] {
  if (href.endsWith(".js")) return [`${href.slice(0, -3)}.ts`, `${href.slice(0, -3)}.tsx`];
  const last = href.slice(href.lastIndexOf("/") + 1);
  return last.includes(".") ? [] : [`${href}.ts`, `${href}.tsx`, `${href}/index.ts`, `${href}/index.tsx`];
}

/** The first candidate file that exists, else undefined (Node's own answer stands). */
function sourceFile(href: string): string | undefined {
  return candidates(href).find((candidate) => existsSync(new URL(candidate)));
}

/**
 * A relative specifier in one of the repository's source files, resolved without asking Node
 * first: most of the imports a test loads, each would otherwise cost a thrown not-found error.
 */
function relativeSource(specifier: string, parentURL: string | undefined): string | undefined {
  if (!specifier.startsWith(".") || !parentURL?.startsWith("file:") || parentURL.includes("/node_modules/")) return undefined;
  return sourceFile(new URL(specifier, parentURL).href);
}

const require = createRequire(import.meta.url);

/** JSX is more than types: esbuild (a dev dependency, loaded only when a test reaches a .tsx file). */
function loadTsx(url: string): Loaded {
  const esbuild = require("esbuild") as typeof import("esbuild");
  const file = fileURLToPath(url);
  const { code } = esbuild.transformSync(readFileSync(file, "utf8"), { loader: "tsx", format: "esm", sourcefile: file, sourcemap: "inline", target: "es2022" });
  return { format: "module", source: code, shortCircuit: true };
}

// Through the environment, so that the processes this one starts (test files, a test's platform
// processes) find their cached modules from the first one on, this file included: stripping it
// again would load Node's TypeScript compiler (WebAssembly, about 150 ms of CPU) in every process.
process.env.NODE_COMPILE_CACHE ??= COMPILE_CACHE;
node24.enableCompileCache(process.env.NODE_COMPILE_CACHE);
// source-loader.ts reads this to start child processes the same way.
(globalThis as Record<symbol, unknown>)[Symbol.for("ttip.sourceHooks")] = true;
/**
 * Each module's imports resolved once per folder, not once per importing file: where a specifier
 * leads depends only on the importer's folder (node_modules and package.json lookups go up from
 * it), the conditions and the import's attributes. Node keys its own cache by the importing file,
 * so every generated contract file of a folder walked the same package lookups for
 * `@bufbuild/protobuf` again (resolution was ~11% of a service test file's profile samples).
 */
const resolved = new Map<string, Resolved>();

function resolveKey(specifier: string, context: ResolveContext): string | undefined {
  const parent = context.parentURL;
  if (!parent?.startsWith("file:")) return undefined;
  const folder = parent.slice(0, parent.lastIndexOf("/") + 1);
  return `${folder}\0${specifier}\0${context.conditions?.join(",") ?? ""}\0${JSON.stringify(context.importAttributes ?? {})}`;
}

function resolveUncached(specifier: string, context: { parentURL?: string }, next: (s: string, c?: object) => Resolved): Resolved {
  const relative = relativeSource(specifier, context.parentURL);
  if (relative) return next(relative, context);
  try {
    return next(specifier, context);
  } catch (err) {
    // A package's own path (`@ttip/platform/src/platform.js`) names the source by its output's name.
    const { code, url } = err as { code?: string; url?: string };
    const source = code === "ERR_MODULE_NOT_FOUND" && url?.startsWith("file:") ? sourceFile(url) : undefined;
    if (source) return next(source, context);
    throw err;
  }
}

node24.registerHooks({
  resolve(specifier, context, next) {
    const key = resolveKey(specifier, context);
    const known = key === undefined ? undefined : resolved.get(key);
    if (known) return { ...known, shortCircuit: true };
    const answer = resolveUncached(specifier, context, next);
    if (key !== undefined) resolved.set(key, { ...answer });
    return answer;
  },
  load(url, context, next) {
    return url.startsWith("file:") && url.endsWith(".tsx") ? loadTsx(url) : next(url, context);
  },
});
