// A PGlite data folder that has been through initdb, for tests that start embedded Postgres
// (or the embedded platform) and do not test a first start. PGlite's initdb is the same for
// every start of one PGlite version and costs ~4 s of CPU on these machines; copying a folder
// made once (~40 MB) costs a tenth of a second. The platform's own migrations still run.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { sharedBuild } from "./shared-build.js";

/** Beside the installed packages, as the tests' compile cache: `npm ci` clears it. */
const CACHE = fileURLToPath(new URL("../../../../node_modules/.cache/ttip-pglite-folder", import.meta.url));

/** The installed PGlite's version: a folder made by another version is not used. */
function pgliteVersion(): string {
  let dir = path.dirname(createRequire(import.meta.url).resolve("@electric-sql/pglite"));
  while (!existsSync(path.join(dir, "package.json")) || JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")).name !== "@electric-sql/pglite") {
    const up = path.dirname(dir);
    if (up === dir) throw new Error("@electric-sql/pglite's package.json not found");
    dir = up;
  }
  return JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")).version;
}

export interface PgliteFolder {
  /** The data folder, a copy of its own (DATA_DIR, or startEmbeddedPostgres' argument). */
  dir: string;
  /** Removes the copy and its lock file. */
  remove(): void;
}

/** A fresh copy of a data folder PGlite has initialized (made once per PGlite version, by the production start). */
export async function initializedPgliteFolder(): Promise<PgliteFolder> {
  const template = await sharedBuild(path.join(CACHE, pgliteVersion()), async (aside) => {
    // Loaded here, not at the top: the testing barrel re-exports this file, and most tests never start PGlite.
    const { startEmbeddedPostgres } = await import("../embedded.js");
    const postgres = await startEmbeddedPostgres(path.join(aside, "pglite"));
    await postgres.close();
  });
  const root = mkdtempSync(path.join(os.tmpdir(), "ttip-pglite-"));
  const dir = path.join(root, "pglite");
  cpSync(path.join(template, "pglite"), dir, { recursive: true });
  return { dir, remove: () => rmSync(root, { recursive: true, force: true }) };
}
