// Writes Next's route types (routes.d.ts: the routes and their params, PageProps<Route>, …;
// validator.ts: each page, layout and route handler checked against them) into .route-types/, for
// `make typecheck`. The same generator as `next typegen`, without its two side effects: typegen
// writes into .next/, which `next build` empties and refills while the type-check runs beside the
// tests (whether the types were checked depended on which finished first), and it rewrites
// tsconfig.json and next-env.d.ts for any other folder. Segment config values (dynamic, revalidate)
// are refused by `next build` itself.
import { rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  collectAppFiles,
  combineSlots,
  createPagesMapping,
  extractSlotsFromAppRoutes,
  extractSlotsFromDefaultFiles,
  processAppRoutes,
  processLayoutRoutes,
} from "next/dist/build/entries.js";
import type { PAGE_TYPES } from "next/dist/lib/page-types.js";
import { findPagesDir } from "next/dist/lib/find-pages-dir.js";
import loadConfigModule from "next/dist/server/config.js";
import { createValidFileMatcher } from "next/dist/server/lib/find-page-file.js";
import { createRouteTypesManifest, writeRouteTypesManifest, writeValidatorFile } from "next/dist/server/lib/router-utils/route-types-utils.js";
import { PHASE_PRODUCTION_BUILD } from "next/dist/shared/lib/constants.js";

const dir = path.dirname(fileURLToPath(import.meta.url));
/** Outside .next/ (next build empties it) and git (.gitignore); apps/tsconfig.typecheck.json includes it. */
export const ROUTE_TYPES_DIR = path.join(dir, ".route-types");

// An ambient const enum's value cannot be read under isolatedModules: its member's string, typed.
const APP_PAGES = "app" as PAGE_TYPES.APP;
// The module is CommonJS: its default export arrives as `default` of module.exports.
const loadConfig = (loadConfigModule as unknown as { default: typeof loadConfigModule }).default ?? loadConfigModule;

export async function writeRouteTypes(outDir = ROUTE_TYPES_DIR): Promise<void> {
  const config = await loadConfig(PHASE_PRODUCTION_BUILD, dir);
  const { appDir, pagesDir } = findPagesDir(dir);
  // The web app is App Router only: a pages/ folder would need typegen's pages half too.
  if (!appDir || pagesDir) throw new Error(`expected an app/ folder and no pages/ folder in ${dir}`);
  const matcher = createValidFileMatcher(config.pageExtensions, appDir);
  const mapping = (pagePaths: string[]) =>
    createPagesMapping({ pagePaths, isDev: false, pagesType: APP_PAGES, pageExtensions: config.pageExtensions, pagesDir: undefined, appDir });
  const { appPaths, layoutPaths, defaultPaths } = await collectAppFiles(appDir, matcher);
  const [pages, layouts, defaults] = await Promise.all([mapping(appPaths), mapping(layoutPaths), mapping(defaultPaths)]);
  const isSrcDir = path.relative(dir, appDir).startsWith("src");
  const { appRoutes, appRouteHandlers } = processAppRoutes(pages, matcher, dir, isSrcDir);
  const validatorFilePath = path.join(outDir, "validator.ts");
  const manifest = await createRouteTypesManifest({
    dir,
    pageRoutes: [],
    appRoutes,
    appRouteHandlers,
    pageApiRoutes: [],
    layoutRoutes: processLayoutRoutes(layouts, dir, isSrcDir),
    slots: combineSlots(extractSlotsFromAppRoutes(pages), extractSlotsFromDefaultFiles(defaults)),
    redirects: config.redirects,
    rewrites: config.rewrites,
    validatorFilePath,
  });
  // A route removed since the last run must not stay in the types.
  rmSync(outDir, { recursive: true, force: true });
  await writeRouteTypesManifest(manifest, path.join(outDir, "routes.d.ts"), config);
  await writeValidatorFile(manifest, validatorFilePath);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeRouteTypes().catch((err) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
