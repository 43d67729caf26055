// migrate(): a file marked OUTSIDE_TRANSACTION runs statement by statement outside a
// transaction (what CREATE INDEX CONCURRENTLY needs), with the schema's search_path, and is
// recorded once; an unmarked file still runs in one transaction, all or nothing.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { createPool, migrate, OUTSIDE_TRANSACTION } from "../src/db.js";
import { createTestDatabase, eventually, type TestDatabase } from "../src/testing/index.js";

let db: TestDatabase;
let dir: string;
before(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), "ttip-migrations-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
  await db.drop();
});

const indexes = async (schema: string) =>
  (await db.pool.query<{ name: string; valid: boolean }>(
    `SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname LIKE 'things%' ORDER BY 1`,
    [schema],
  )).rows;

test("a file outside a transaction builds its index concurrently, in the schema, and runs once", async () => {
  await writeFile(path.join(dir, "0001_things.sql"), "CREATE TABLE things (id int PRIMARY KEY, at timestamptz NOT NULL);\nINSERT INTO things SELECT g, now() FROM generate_series(1, 100) g;\n");
  await writeFile(
    path.join(dir, "0002_things_at.sql"),
    `${OUTSIDE_TRANSACTION}\n-- a comment between statements\nDROP INDEX CONCURRENTLY IF EXISTS things_at;\nCREATE INDEX CONCURRENTLY things_at ON things USING brin (at);\n`,
  );
  assert.deepEqual(await migrate(db.pool, "outside_tx", dir), ["runtime/0001_outbox_inbox", "runtime/0002_idempotent_requests", "runtime/0003_outbox_traceparent", "runtime/0004_outbox_event_id_not_indexed", "runtime/0005_inbox_processed_at", "runtime/0006_outbox_one_index_when_deleting", "0001_things", "0002_things_at"]);
  assert.deepEqual(await indexes("outside_tx"), [{ name: "things_at", valid: true }, { name: "things_pkey", valid: true }]);
  assert.deepEqual(await migrate(db.pool, "outside_tx", dir), [], "recorded: not run again");
});

test("a concurrent build in a file without the mark fails (it runs in a transaction) and nothing of the file is kept", async () => {
  const own = await mkdtemp(path.join(os.tmpdir(), "ttip-migrations-"));
  try {
    await writeFile(path.join(own, "0001_things.sql"), "CREATE TABLE things (id int PRIMARY KEY);\nCREATE INDEX CONCURRENTLY things_id ON things (id);\n");
    await assert.rejects(migrate(db.pool, "inside_tx", own), /0001_things failed: .*cannot run inside a transaction block/);
    const { rows } = await db.pool.query("SELECT 1 FROM pg_tables WHERE schemaname = 'inside_tx' AND tablename = 'things'");
    assert.equal(rows.length, 0, "the table of the failed file rolled back");
  } finally {
    await rm(own, { recursive: true, force: true });
  }
});

test("a file outside a transaction that fails part way is not recorded, runs again from its start, and leaves the session's search_path as it was", async () => {
  const own = await mkdtemp(path.join(os.tmpdir(), "ttip-migrations-"));
  const pool = createPool(db.url, { max: 1 });
  try {
    await writeFile(path.join(own, "0001_things.sql"), "CREATE TABLE things (id int PRIMARY KEY);\n");
    const second = path.join(own, "0002_things_id.sql");
    await writeFile(second, `${OUTSIDE_TRANSACTION}\nDROP INDEX CONCURRENTLY IF EXISTS things_id;\nCREATE INDEX CONCURRENTLY things_id ON things (id);\nSELECT 1 / 0;\n`);
    const pathBefore = (await pool.query<{ search_path: string }>("SHOW search_path")).rows[0].search_path;
    await assert.rejects(migrate(pool, "part_way", own), /0002_things_id failed: division by zero/);
    assert.equal((await pool.query("SHOW search_path")).rows[0].search_path, pathBefore);
    assert.deepEqual(await indexes("part_way"), [{ name: "things_id", valid: true }, { name: "things_pkey", valid: true }]);
    const { rows } = await pool.query("SELECT version FROM part_way.schema_migrations WHERE version = '0002_things_id'");
    assert.equal(rows.length, 0, "not recorded");
    await writeFile(second, `${OUTSIDE_TRANSACTION}\nDROP INDEX CONCURRENTLY IF EXISTS things_id;\nCREATE INDEX CONCURRENTLY things_id ON things (id);\n`);
    // Edited before it was ever recorded: allowed, and run from its start.
    assert.deepEqual(await migrate(pool, "part_way", own), ["0002_things_id"]);
    assert.deepEqual(await indexes("part_way"), [{ name: "things_id", valid: true }, { name: "things_pkey", valid: true }]);
  } finally {
    await pool.end();
    await rm(own, { recursive: true, force: true });
  }
});

test("two replicas migrating at once: the one waiting for the lock holds no snapshot that the other's concurrent build waits out", async () => {
  const own = await mkdtemp(path.join(os.tmpdir(), "ttip-migrations-"));
  const holder = await db.pool.connect();
  try {
    await writeFile(path.join(own, "0001_things.sql"), "CREATE TABLE things (id int PRIMARY KEY, at timestamptz);\n");
    await migrate(db.pool, "two_replicas", own);
    await writeFile(path.join(own, "0002_things_at.sql"), `${OUTSIDE_TRANSACTION}\nDROP INDEX CONCURRENTLY IF EXISTS things_at;\nCREATE INDEX CONCURRENTLY things_at ON things (at);\n`);
    // A live transaction on the table holds the first replica's build at its start, migration lock taken.
    await holder.query("BEGIN");
    await holder.query("INSERT INTO two_replicas.things VALUES (1, now())");
    const first = migrate(db.pool, "two_replicas", own);
    await eventually("the first replica's build waiting for the live transaction", async () =>
      (await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY things_at%' AND wait_event_type = 'Lock'")).rows.length > 0, 10_000);
    const second = migrate(db.pool, "two_replicas", own);
    await eventually("the second replica asking for the migration lock", async () =>
      (await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE query LIKE '%advisory_lock(hashtext($1))%' AND pid <> pg_backend_pid()")).rows.length > 0, 10_000);
    await holder.query("COMMIT");
    // Before, the second waited in pg_advisory_lock with a snapshot, the build waited for it to end:
    // PostgreSQL's deadlock check failed one of the two (the lock's wait, or the build).
    const outcomes = await Promise.allSettled([first, second]);
    assert.deepEqual(outcomes.map((o) => (o.status === "fulfilled" ? o.value : String(o.reason))), [["0002_things_at"], []]);
    assert.deepEqual(await indexes("two_replicas"), [{ name: "things_at", valid: true }, { name: "things_pkey", valid: true }]);
  } finally {
    holder.release();
    await rm(own, { recursive: true, force: true });
  }
});
