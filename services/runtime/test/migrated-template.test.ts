// createTestDatabase({ migrated }): a copy of a template migrated once per test server. The copy
// holds the schemas' tables, rows and recorded files, so migrate() on it applies nothing; its rows
// are its own; an edited migration file makes a new template, not a stale copy.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import { migrate } from "../src/db.js";
import { createTestDatabase, testEnv, type TestDatabase } from "../src/testing/index.js";
import { templateName } from "../src/testing/migrated-template.js";

let dir: string;
const opened: TestDatabase[] = [];
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "ttip-template-migrations-"));
  await writeFile(path.join(dir, "0001_things.sql"), "CREATE TABLE things (id int PRIMARY KEY, name text NOT NULL);\nINSERT INTO things VALUES (1, 'seeded');\n");
});
after(async () => {
  for (const db of opened) await db.drop();
  await rm(dir, { recursive: true, force: true });
});

async function copy(): Promise<TestDatabase> {
  const db = await createTestDatabase({ migrated: [{ name: "templated", migrations: dir }] });
  opened.push(db);
  return db;
}

test("a copy starts migrated: its tables, seeded rows and recorded files; migrate() applies nothing", async () => {
  const db = await copy();
  assert.deepEqual((await db.pool.query("SELECT id, name FROM templated.things")).rows, [{ id: 1, name: "seeded" }]);
  const { rows } = await db.pool.query("SELECT version FROM templated.schema_migrations ORDER BY version");
  assert.ok(rows.some((r) => r.version === "0001_things") && rows.some((r) => r.version === "runtime/0001_outbox_inbox"), JSON.stringify(rows));
  assert.deepEqual(await migrate(db.pool, "templated", dir), []);
  // The outbox's relay keeps published rows for the tests to read: a database setting, not copied with the template.
  assert.equal((await db.pool.query("SELECT current_setting('ttip.outbox_keep_published', true) AS v")).rows[0].v, "on");
});

test("each copy's rows are its own", async () => {
  const [a, b] = [await copy(), await copy()];
  assert.notEqual(a.url, b.url);
  await a.pool.query("INSERT INTO templated.things VALUES (2, 'only in a')");
  assert.deepEqual((await b.pool.query("SELECT id FROM templated.things ORDER BY id")).rows, [{ id: 1 }]);
});

test("an edited or added migration file names another template; the schema's name and order count too", async () => {
  const schemas = [{ name: "templated", migrations: dir }];
  const before = await templateName(schemas);
  assert.equal(await templateName(schemas), before);
  assert.notEqual(await templateName([{ name: "other", migrations: dir }]), before);
  await writeFile(path.join(dir, "0002_more.sql"), "ALTER TABLE things ADD COLUMN at timestamptz;\n");
  const added = await templateName(schemas);
  assert.notEqual(added, before);
  await writeFile(path.join(dir, "0002_more.sql"), "ALTER TABLE things ADD COLUMN at date;\n");
  assert.notEqual(await templateName(schemas), added);
  const db = await copy();
  assert.deepEqual((await db.pool.query("SELECT data_type FROM information_schema.columns WHERE table_schema = 'templated' AND column_name = 'at'")).rows, [{ data_type: "date" }]);
});

test("a migration that fails: the copy is refused with its error, no template is left, and no connection stays open", async () => {
  const broken = await mkdtemp(path.join(os.tmpdir(), "ttip-template-broken-"));
  try {
    await writeFile(path.join(broken, "0001_broken.sql"), "CREATE TABLE broken (id int PRIMARY KEY;\n");
    const sockets = () => process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap").length;
    const open = sockets();
    await assert.rejects(createTestDatabase({ migrated: [{ name: "broken", migrations: broken }] }), /migration broken\/0001_broken failed/);
    // The file's process ends when its tests do: a client left open (its admin session) would hold it.
    assert.ok(sockets() <= open, `${sockets()} sockets open, ${open} before`);
    const name = await templateName([{ name: "broken", migrations: broken }]);
    const admin = new pg.Client({ connectionString: testEnv().databaseUrl });
    await admin.connect();
    try {
      const { rows } = await admin.query("SELECT datname FROM pg_database WHERE datname LIKE $1", [`${name}%`]);
      assert.deepEqual(rows, []);
    } finally {
      await admin.end();
    }
  } finally {
    await rm(broken, { recursive: true, force: true });
  }
});
