import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { endsSession, repeatingRefusalOf } from "../src/db-answers.js";
import { createPool } from "../src/db.js";
import { createTestDatabase, eventually, type TestDatabase } from "../src/testing/index.js";

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
  await db.pool.query("CREATE TABLE refusals (id int PRIMARY KEY, name text NOT NULL CHECK (length(name) < 10))");
});
after(() => db.drop());

/** What PostgreSQL answered `sql`, as pg hands it over. */
const refusalOf = (sql: string, values: unknown[] = []) => db.pool.query(sql, values).then(() => assert.fail(`${sql} succeeded`), (err: unknown) => err);

test("PostgreSQL's refusals of a bad value, a constraint or a missing column would come again", async () => {
  const cases: [string, unknown[], string][] = [
    ["INSERT INTO refusals VALUES (1, $1)", ["a\u0000b"], "22021"],
    ["INSERT INTO refusals VALUES (1, NULL)", [], "23502"],
    ["INSERT INTO refusals VALUES (1, 'far too long a name')", [], "23514"],
    ["SELECT 1/0", [], "22012"],
    ["SELECT nothing FROM refusals", [], "42703"],
  ];
  for (const [sql, values, sqlstate] of cases) {
    const err = await refusalOf(sql, values);
    assert.equal((err as { code?: string }).code, sqlstate, sql);
    assert.equal(repeatingRefusalOf(err)?.sqlstate, sqlstate, sql);
  }
  await db.pool.query("INSERT INTO refusals VALUES (1, 'one')");
  assert.equal(repeatingRefusalOf(await refusalOf("INSERT INTO refusals VALUES (1, 'again')"))?.condition, "integrity_constraint_violation");
});

test("a cancelled statement, a lost connection and errors that are not PostgreSQL's answer may pass", async () => {
  // Cancelled (57014): as an operator's cancel or a shutdown's.
  const cancelled = db.pool.query("SELECT pg_sleep(60)").then(() => assert.fail("not cancelled"), (err: unknown) => err);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await eventually("the statement cancelled", async () => (await client.query("SELECT pg_cancel_backend(pid) AS done FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'")).rows[0]?.done === true);
    // Terminated (57P01) with the connection: the next statement's answer is lost.
    const victim = new pg.Client({ connectionString: db.url });
    await victim.connect();
    victim.on("error", () => undefined);
    const pid = (await victim.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
    const lost = victim.query("SELECT pg_sleep(60)").then(() => assert.fail("not terminated"), (err: unknown) => err);
    await eventually("the connection terminated", async () => (await client.query("SELECT pg_terminate_backend($1) AS done FROM pg_stat_activity WHERE pid = $1 AND query = 'SELECT pg_sleep(60)'", [pid])).rows[0]?.done === true);
    for (const err of [await cancelled, await lost]) assert.equal(repeatingRefusalOf(err), undefined, String(err));
    assert.equal((await cancelled as { code?: string }).code, "57014");
  } finally {
    await client.end();
  }
  for (const err of [new Error("Connection terminated unexpectedly"), Object.assign(new Error("serialization"), { severity: "ERROR", code: "40001" }), undefined, "22021"]) {
    assert.equal(repeatingRefusalOf(err), undefined, String(err));
  }
});

test("a prepared plan a migration outdated (0A000) repeats on its connection, so the pool drops that connection and the statement passes on the next", async () => {
  const pool = createPool(db.url, { max: 1 });
  try {
    const statement = { name: "refusals-all", text: "SELECT * FROM refusals" };
    await pool.query(statement);
    await db.pool.query("ALTER TABLE refusals ADD COLUMN migrated int");
    const outdated = await pool.query(statement).then(() => assert.fail("the outdated plan ran"), (err: unknown) => err);
    assert.equal((outdated as { code?: string }).code, "0A000");
    assert.equal(repeatingRefusalOf(outdated), undefined);
    assert.equal(endsSession(outdated), true);
    // The pool's one connection kept the broken statement; on a new one it is prepared again.
    assert.equal((await pool.query(statement)).fields.some((f) => f.name === "migrated"), true);
  } finally {
    await pool.end();
    await db.pool.query("ALTER TABLE refusals DROP COLUMN IF EXISTS migrated");
  }
});
