// A migrated database to copy: the test harness starts services on a fresh database each time,
// and migrating one (the runtime's tables and the service's, ~0.5 s of CPU for payment and wallet,
// most of it PostgreSQL's) cost every such test file again. The first file to ask for a set of
// schemas migrates a template on the test server, under a lock; every file after copies it
// (CREATE DATABASE … TEMPLATE). The template's name is a hash of the schemas and of their migration
// files' names and contents, so an edited or added migration makes a new one, and it lives only as
// long as the test server does. The service's own start still runs migrate(), which checks each
// applied file's checksum against the files.
import { createHash } from "node:crypto";
import type pg from "pg";
import { createPool, migrate, migrationsToRun } from "../db.js";
import { KEEP_PUBLISHED } from "../outbox.js";

/** A schema and its migrations folder, as a service module names them. */
export interface MigratedSchema {
  name: string;
  migrations?: string;
}

/** The template's database name: the schemas in order, with every file migrate() would run for them (name and checksum). */
export async function templateName(schemas: readonly MigratedSchema[]): Promise<string> {
  const h = createHash("sha256");
  for (const s of schemas) {
    h.update(`schema ${s.name} ${s.migrations ?? ""}\0`);
    for (const m of await migrationsToRun(s.migrations)) h.update(`${m.version} ${m.checksum}\0`);
  }
  return `ttip_template_${h.digest("hex").slice(0, 24)}`;
}

async function exists(admin: pg.Client, name: string): Promise<boolean> {
  return (await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [name])).rowCount === 1;
}

/** Waits until no session is connected to `name` (a pool's end() resolves before its connections close). */
export async function noSessionsLeft(admin: pg.Client, name: string): Promise<void> {
  for (let i = 0; i < 250; i++) {
    const { rows } = await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1", [name]);
    if (rows[0].n === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The migrated template for `schemas` on `admin`'s server, made now if it is not there. Files
 * asking for the same one at once wait on an advisory lock (asked, not waited in, as migrate() does);
 * a template half made by a process that died is dropped and made again (only a finished one has
 * the name).
 */
export async function migratedTemplate(admin: pg.Client, serverUrl: string, schemas: readonly MigratedSchema[]): Promise<string> {
  const name = await templateName(schemas);
  if (await exists(admin, name)) return name;
  const key = `ttip.test-template.${name}`;
  while (!(await admin.query<{ locked: boolean }>("SELECT pg_try_advisory_lock(hashtext($1)) AS locked", [key])).rows[0].locked) {
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    if (await exists(admin, name)) return name;
    const building = `${name}_part`;
    await admin.query(`DROP DATABASE IF EXISTS ${building} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${building}`);
    // Migrated as its copies run (createTestDatabase): keeping published rows, so runtime migration 0006
    // keeps the index of unpublished ones. Dropped here, each copy's relay would make it again at its
    // start, concurrently, a build that waits for every transaction open then (a test's included).
    await admin.query(`ALTER DATABASE ${building} SET ${KEEP_PUBLISHED} = on`);
    const url = new URL(serverUrl);
    url.pathname = `/${building}`;
    const pool = createPool(url.toString(), { max: 1 });
    let migrated = false;
    try {
      for (const s of schemas) await migrate(pool, s.name, s.migrations);
      migrated = true;
    } finally {
      await pool.end();
      await noSessionsLeft(admin, building);
      if (!migrated) await admin.query(`DROP DATABASE IF EXISTS ${building} WITH (FORCE)`);
    }
    // Renamed only when whole; no connections to it from here on, so every copy can start at once.
    await admin.query(`ALTER DATABASE ${building} RENAME TO ${name}`);
    await admin.query(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS false`);
    return name;
  } finally {
    await admin.query("SELECT pg_advisory_unlock(hashtext($1))", [key]);
  }
}
