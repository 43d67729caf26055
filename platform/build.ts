// Compiles the platform to JavaScript for the container image (no transpiler at run time):
//   node --import tsx platform/build.ts [outDir]      (default platform/dist)
// makes two trees:
//   <outDir>/ttip        the production image: every cluster role (services, gateway, migrate)
//                        in one bundle, the migrations, the admin console's build (served by
//                        the gateway at /admin) and the one native package (argon2);
//   <outDir>/ttip-dev    the development image (values-dev.yaml): the same roles able to use
//                        the in-process simulators, and the Daraja simulator as a role.
// The production bundle's module graph may hold no embedded mode (PGlite), simulator,
// test helper or test data: a dynamic import of one becomes a module that throws, a static
// import of one fails the build, and the graph is checked again after bundling.
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";
import { ADMIN_DIST, ensureAdminBuild } from "@ttip/admin";

const root = fileURLToPath(new URL("../", import.meta.url));

/** Module paths that never belong in the production image. */
export const DEV_ONLY = /pglite|simulator|\/testing(\.[jt]s)?$|\/testing\/|testdata|\/apps\/web\/|\/apps\/admin\/(build\.ts|src\/)|node_modules\/(next|react|react-dom|esbuild)\//;

/** Packages left outside the bundle: native binaries, and pg's optional native driver (never installed). */
const EXTERNAL_PACKAGES = ["@node-rs/argon2"];
const EXTERNAL = [...EXTERNAL_PACKAGES, "pg-native"];

// CommonJS packages inside an ES module bundle still call require() for Node's built-ins.
const BANNER = [
  'import { createRequire as __ttipCreateRequire } from "node:module";',
  "const require = __ttipCreateRequire(import.meta.url);",
].join("\n");

/**
 * Source fixes a bundle needs, since import.meta.url becomes the bundle's own address:
 * each service finds its migrations beside its source ("../migrations"), in the bundle
 * beside the bundle; a module's "run as a script" check would match the bundle itself.
 */
function besideBundle(): Plugin {
  const mainCheck = "fileURLToPath(import.meta.url) === process.argv[1]";
  return {
    name: "beside-bundle",
    setup(b) {
      b.onLoad({ filter: /[\\/](services|gateway|platform)[\\/].*\.ts$/ }, (args) => {
        if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
        let source = readFileSync(args.path, "utf8");
        const service = /[\\/]services[\\/]([a-z]+)[\\/]src[\\/]/.exec(args.path)?.[1];
        const migrations = 'new URL("../migrations", import.meta.url)';
        if (service) source = source.replaceAll(migrations, `new URL("./migrations/${service}", import.meta.url)`);
        source = source.replaceAll(mainCheck, "false");
        // The admin console's build, copied beside the bundle.
        source = source.replaceAll('new URL("../../apps/admin/dist", import.meta.url)', 'new URL("./admin", import.meta.url)');
        return { contents: source, loader: "ts" };
      });
    },
  };
}

/** Development-only code: a dynamic import of it becomes a module that throws; a static import fails the build. */
function leaveOutDevOnly(): Plugin {
  return {
    name: "leave-out-dev-only",
    setup(b) {
      b.onResolve({ filter: /./ }, async (args) => {
        if (args.pluginData === "resolving") return undefined;
        const resolved = await b.resolve(args.path, { resolveDir: args.resolveDir, kind: args.kind, importer: args.importer, pluginData: "resolving" });
        // Unresolvable (an optional require in a try block): esbuild's own handling.
        if (resolved.errors.length) return undefined;
        if (resolved.external || !DEV_ONLY.test(resolved.path.split(path.sep).join("/"))) return resolved;
        if (args.kind === "dynamic-import") return { path: resolved.path, namespace: "left-out" };
        return { errors: [{ text: `${path.relative(root, args.importer)} imports development-only ${args.path} statically; import it dynamically where it is used` }] };
      });
      b.onLoad({ filter: /./, namespace: "left-out" }, (args) => ({
        contents: `throw new Error(${JSON.stringify(`${path.relative(root, args.path)} is development-only and not in the production build`)});`,
        loader: "js",
      }));
    },
  };
}

function copyMigrations(outDir: string): void {
  for (const name of readdirSync(path.join(root, "services"))) {
    const dir = path.join(root, "services", name, "migrations");
    if (existsSync(dir)) cpSync(dir, path.join(outDir, "migrations", name), { recursive: true });
  }
}

/** Copies the external packages and whichever of their optional (per-platform) packages are installed. */
function copyExternals(outDir: string): string[] {
  const require = createRequire(path.join(root, "services/auth/package.json"));
  const copied: string[] = [];
  for (const name of EXTERNAL_PACKAGES) {
    const pkgJson = require.resolve(`${name}/package.json`);
    const pkg = JSON.parse(readFileSync(pkgJson, "utf8")) as { optionalDependencies?: Record<string, string>; dependencies?: Record<string, string> };
    if (Object.keys(pkg.dependencies ?? {}).length) throw new Error(`${name} has dependencies: copy them too`);
    const wanted = [name, ...Object.keys(pkg.optionalDependencies ?? {})];
    for (const dep of wanted) {
      const dir = path.join(path.dirname(pkgJson), "..", "..", dep);
      if (!existsSync(dir)) continue;
      cpSync(dir, path.join(outDir, "node_modules", dep), { recursive: true, dereference: true });
      copied.push(dep);
    }
  }
  return copied;
}

export interface BuildResult {
  /** The production image's tree (its /app). */
  productionDir: string;
  productionEntry: string;
  /** Every source module bundled into the production entry, relative to the repository. */
  productionInputs: string[];
  /** The development image's tree: the same roles, the simulators, their test certificate. */
  developmentDir: string;
  developmentEntry: string;
}

/**
 * One tree as the image holds it: `entry` (a file of the repository) bundled to <outDir>/<name>/ttip.mjs
 * with the image's options, the migrations, the external packages and the admin console beside it.
 * Benches bundle their own entry with it to run the platform in the image's compiled form.
 */
export async function bundleImageTree(outDir: string, name: string, entry: string, plugins: Plugin[]) {
  const version = (JSON.parse(readFileSync(path.join(root, "platform/package.json"), "utf8")) as { version: string }).version;
  const dir = path.join(outDir, name);
  rmSync(dir, { recursive: true, force: true });
  const result = await build({
    entryPoints: { ttip: entry },
    outExtension: { ".js": ".mjs" },
    outdir: dir,
    bundle: true,
    platform: "node",
    format: "esm",
    // The images run Node 24; the bundle keeps working on Node 20 like the sources.
    target: "node20",
    external: EXTERNAL,
    banner: { js: BANNER },
    sourcemap: "linked",
    sourcesContent: false,
    metafile: true,
    logLevel: "warning",
    absWorkingDir: root,
    plugins: [...plugins, besideBundle()],
  });
  copyMigrations(dir);
  copyExternals(dir);
  // The admin console the gateway serves at /admin (ADMIN_CONSOLE=on).
  cpSync(ADMIN_DIST, path.join(dir, "admin"), { recursive: true });
  writeFileSync(path.join(dir, "package.json"), `${JSON.stringify({ name, version, private: true, type: "module" }, null, 2)}\n`);
  return { dir, entry: path.join(dir, "ttip.mjs"), inputs: Object.keys(result.metafile.inputs) };
}

export async function buildPlatform(outDir = path.join(root, "platform/dist")): Promise<BuildResult> {
  const bundle = (name: string, entry: string, plugins: Plugin[]) => bundleImageTree(outDir, name, path.join(root, "platform/src", entry), plugins);
  await ensureAdminBuild(() => undefined);
  const production = await bundle("ttip", "production.ts", [leaveOutDevOnly()]);
  const leaked = production.inputs.filter((p) => !p.startsWith("left-out:") && DEV_ONLY.test(p));
  if (leaked.length) throw new Error(`the production bundle holds development-only modules: ${leaked.join(", ")}`);

  const development = await bundle("ttip-dev", "development.ts", []);
  // The Daraja simulator signs with its own test certificate, read beside its source.
  cpSync(path.join(root, "services/payment/src/daraja/testdata"), path.join(development.dir, "testdata"), { recursive: true });

  return {
    productionDir: production.dir,
    productionEntry: production.entry,
    productionInputs: production.inputs,
    developmentDir: development.dir,
    developmentEntry: development.entry,
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = await buildPlatform(process.argv[2] ? path.resolve(process.argv[2]) : undefined);
  console.log(`${path.relative(process.cwd(), result.productionEntry)}: ${result.productionInputs.length} modules`);
  console.log(path.relative(process.cwd(), result.developmentEntry));
}
