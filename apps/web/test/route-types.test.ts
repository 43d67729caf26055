// make typecheck checks the pages against Next's route types whether or not `next build` (which
// empties and refills .next/ while the type-check runs beside the tests) has finished: the
// type-check reads nothing from .next/, and route-types.ts writes the types of every route.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { ROUTE_TYPES_DIR, writeRouteTypes } from "../route-types.js";

const apps = fileURLToPath(new URL("../../", import.meta.url));
const web = path.join(apps, "web");
const nextDir = path.join(web, ".next");

/** The files a program starts from: the config's roots and what their `/// <reference path>` lines name. */
function programInputs(configPath: string): { include: string[]; files: string[] } {
  const { config, error } = ts.readConfigFile(configPath, ts.sys.readFile);
  assert.equal(error, undefined, "the config parses");
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, path.dirname(configPath));
  const files = parsed.fileNames.flatMap((f) => [
    f,
    ...ts.preProcessFile(readFileSync(f, "utf8")).referencedFiles.map((r) => path.resolve(path.dirname(f), r.fileName)),
  ]);
  return { include: config.include, files };
}

/** Every page, layout and route handler under src/app, relative to it. */
function routeFiles(dir = path.join(web, "src/app")): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? routeFiles(path.join(dir, e.name))
      : /^(page|layout|route)\.tsx?$/.test(e.name)
        ? [path.relative(path.join(web, "src/app"), path.join(dir, e.name))]
        : [],
  );
}

describe("the type-check's Next route types", () => {
  test("nothing in the apps' type-check comes from .next/ (next build rewrites it meanwhile)", () => {
    const { include, files } = programInputs(path.join(apps, "tsconfig.typecheck.json"));
    assert.deepEqual(include.filter((p) => p.includes(".next")), [], "no include pattern reaches into .next/");
    assert.deepEqual(files.filter((f) => f.startsWith(nextDir + path.sep)), [], "no root file nor its references");
    assert.equal(ROUTE_TYPES_DIR, path.join(web, ".route-types"));
    assert.ok(include.includes("web/.route-types/*.ts"), "the route types and their validator are checked");
  });

  test("route-types.ts validates every page, layout and route handler, and types each route's params", async () => {
    const out = await mkdtemp(path.join(os.tmpdir(), "ttip-route-types-"));
    try {
      await writeRouteTypes(out);
      const validator = readFileSync(path.join(out, "validator.ts"), "utf8");
      const routes = readFileSync(path.join(out, "routes.d.ts"), "utf8");
      const files = routeFiles();
      assert.ok(files.includes("t/[code]/page.tsx") && files.includes("w/layout.tsx") && files.includes("healthz/route.ts"), files.join(" "));
      const validated = [...validator.matchAll(/^\/\/ Validate (.+)$/gm)].map((m) => path.relative(path.join(web, "src/app"), path.resolve(out, m[1])));
      assert.deepEqual(validated.sort(), files.sort());
      assert.match(routes, /"\/t\/\[code\]\/tips\/\[tipId\]": \{ "code": string; "tipId": string; \}/);
      assert.match(routes, /interface PageProps<AppRoute extends AppRoutes>/);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
