// migrate(): a file in a transaction waits for a table's lock only lockTimeoutMs, so a migration
// queued behind a long transaction does not hold the live service's readers and writers behind it
// in PostgreSQL's lock queue; it rolls back, pauses and tries again, and gives up after its tries.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { migrate } from "../src/db.js";
import type { Logger } from "../src/log.js";
import { captureLogger, createTestDatabase, eventually, type TestDatabase } from "../src/testing/index.js";

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

const quick = { lockTimeoutMs: 200, lockPauseMs: 100, lockTries: 3 };
const columns = async (schema: string) =>
  (await db.pool.query<{ name: string }>(
    "SELECT column_name AS name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'things' ORDER BY 1",
    [schema],
  )).rows.map((r) => r.name);

test("a file blocked by a long transaction gives up after its tries and keeps nothing", async () => {
  await writeFile(path.join(dir, "0001_things.sql"), "CREATE TABLE things (id int PRIMARY KEY);\n");
  await migrate(db.pool, "held", dir);
  await writeFile(path.join(dir, "0002_things_at.sql"), "ALTER TABLE things ADD COLUMN at timestamptz;\n");
  const holder = await db.pool.connect();
  try {
    await holder.query("BEGIN");
    await holder.query("SELECT * FROM held.things");
    const started = Date.now();
    const migrating = migrate(db.pool, "held", dir, undefined, quick);
    const outcome = migrating.then(() => "applied", (err: Error) => err.message);
    await eventually("the ALTER waiting for the holder's lock", async () =>
      (await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'ALTER TABLE things%' AND wait_event_type = 'Lock'")).rows.length > 0, 10_000);
    assert.match(await outcome, /0002_things_at failed: .*lock timeout/);
    // Three tries of 200 ms with pauses of 100 and 200 ms between them.
    assert.ok(Date.now() - started >= 3 * 200 + 100 + 200, "tried three times");
    assert.deepEqual(await columns("held"), ["id"], "rolled back");
    const { rows } = await db.pool.query("SELECT 1 FROM held.schema_migrations WHERE version = '0002_things_at'");
    assert.equal(rows.length, 0, "not recorded");
  } finally {
    await holder.query("ROLLBACK");
    holder.release();
  }
  assert.deepEqual(await migrate(db.pool, "held", dir, undefined, quick), ["0002_things_at"], "applied once the transaction ended");
  assert.deepEqual(await columns("held"), ["at", "id"]);
});

test("a file blocked for less than its tries is applied by a later try", async () => {
  const own = await mkdtemp(path.join(os.tmpdir(), "ttip-migrations-"));
  const holder = await db.pool.connect();
  try {
    await writeFile(path.join(own, "0001_things.sql"), "CREATE TABLE things (id int PRIMARY KEY);\n");
    await migrate(db.pool, "briefly_held", own);
    await writeFile(path.join(own, "0002_things_at.sql"), "ALTER TABLE things ADD COLUMN at timestamptz;\n");
    await holder.query("BEGIN");
    await holder.query("SELECT * FROM briefly_held.things");
    const gaveUp: unknown[] = [];
    const logger = { info() {}, warn(o: unknown) { gaveUp.push(o); } } as unknown as Logger;
    const migrating = migrate(db.pool, "briefly_held", own, logger, { lockTimeoutMs: 200, lockPauseMs: 500 });
    await eventually("the first try giving up", async () => gaveUp.length > 0, 10_000);
    await holder.query("COMMIT");
    assert.deepEqual(await migrating, ["0002_things_at"]);
    assert.deepEqual(gaveUp, [{ version: "0002_things_at", attempt: 1 }]);
    assert.deepEqual(await columns("briefly_held"), ["at", "id"]);
  } finally {
    holder.release();
    await rm(own, { recursive: true, force: true });
  }
});

test("by default a file waits for a lock a second a try (a table's writers queue behind its waiting DDL)", async () => {
  const own = await mkdtemp(path.join(os.tmpdir(), "ttip-migrations-"));
  try {
    await writeFile(path.join(own, "0001_seen.sql"), "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout;\n");
    await migrate(db.pool, "default_wait", own);
    assert.deepEqual((await db.pool.query("SELECT lock_timeout FROM default_wait.seen")).rows, [{ lock_timeout: "1s" }]);
  } finally {
    await rm(own, { recursive: true, force: true });
  }
});

test("a start waiting for another session's migrations of its schema says so in its log, and goes on once they end", async () => {
  const { logger, records } = captureLogger("info");
  const holder = await db.pool.connect();
  try {
    await holder.query("SELECT pg_advisory_lock(hashtext('ttip.migrate.migrating_elsewhere'))");
    const migrating = migrate(db.pool, "migrating_elsewhere", undefined, logger);
    const waiting = await eventually("a line saying it waits", () => records().find((r) => /waiting for another session's migrations of migrating_elsewhere/.test(String(r.msg))));
    assert.equal(waiting.level, "warn");
    await holder.query("SELECT pg_advisory_unlock(hashtext('ttip.migrate.migrating_elsewhere'))");
    assert.ok((await migrating).length > 0, "the runtime's migrations applied once the lock was let go");
  } finally {
    await holder.query("SELECT pg_advisory_unlock_all()");
    holder.release();
  }
});
