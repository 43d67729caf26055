import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { commitWith, createPool, withTransaction, type Pool } from "../src/db.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/index.js";

// A named statement's rows are described by PostgreSQL (Describe, then RowDescription) on the
// first run on a connection only: the later runs are sent without Describe and take the columns
// the first was told. These tests count the Describe messages each connection writes.

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
  await db.pool.query("CREATE TABLE described (id int PRIMARY KEY, amount int NOT NULL, label text NOT NULL, at timestamptz NOT NULL DEFAULT now())");
  await db.pool.query("INSERT INTO described (id, amount, label) SELECT g, g * 100, 'row ' || g FROM generate_series(1, 5) g");
});
after(() => db.drop());

/** pg's connection of a client: its Describe messages are counted by wrapping describe(). */
type Connection = { describe(message: unknown): void };

/** A one-connection pool whose connections count the Describe messages they write, each apart. */
function countingPool(): { pool: Pool; describes: number[] } {
  const describes: number[] = [];
  const pool = createPool(db.url, { max: 1 });
  pool.on("connect", (client) => {
    const connection = (client as unknown as { connection: Connection }).connection;
    const index = describes.push(0) - 1;
    const describe = connection.describe.bind(connection);
    connection.describe = (message) => {
      describes[index]++;
      describe(message);
    };
  });
  return { pool, describes };
}

const SELECT = "SELECT id, amount, label, at, $2::int8 AS big, NULL::text AS nothing FROM described WHERE id = $1";
const UPDATE = "UPDATE described SET label = label WHERE id = $1";

test("a named statement is described on its first run on a connection only; the later runs' rows and fields are the same", async () => {
  const { pool, describes } = countingPool();
  try {
    const first = await pool.query(SELECT, [2, 9_007_199_254_740_993n]);
    for (let run = 0; run < 3; run++) {
      const again = await pool.query(SELECT, [2, 9_007_199_254_740_993n]);
      assert.deepEqual(again.rows, first.rows);
      assert.deepEqual(again.fields, first.fields);
    }
    const row = first.rows[0];
    assert.equal(row.big, 9_007_199_254_740_993n, "int8 through its parser");
    assert.ok(row.at instanceof Date, "timestamptz through its parser");
    assert.deepEqual(Object.keys(row), ["id", "amount", "label", "at", "big", "nothing"]);
    assert.equal(row.nothing, null);
    // A statement without rows (NoData): its later runs answer the same empty result.
    const update = await pool.query(UPDATE, [3]);
    const updateAgain = await pool.query(UPDATE, [3]);
    assert.deepEqual([updateAgain.rowCount, updateAgain.rows, updateAgain.fields], [1, [], []]);
    assert.deepEqual([update.rowCount, update.rows, update.fields], [1, [], []]);
    // Behind BEGIN and in front of COMMIT, both in the statement's write, on the same connection.
    const inTransaction = await withTransaction(pool, async (tx) => {
      const read = await tx.query(SELECT, [4, 1n]);
      await commitWith(tx, UPDATE, [4]);
      return read.rows[0];
    });
    assert.deepEqual([inTransaction.id, inTransaction.amount, inTransaction.big], [4, 400, 1n]);
    assert.deepEqual(describes, [2], "one Describe per statement on the one connection");
  } finally {
    await pool.end();
  }
});

test("a statement failing on its first run is described again on the next", async () => {
  const { pool, describes } = countingPool();
  try {
    const text = "SELECT label, amount FROM described WHERE id = $1::int";
    await assert.rejects(pool.query(text, ["not a number"]), /invalid input syntax/);
    assert.equal((await pool.query<{ label: string }>(text, [1])).rows[0].label, "row 1");
    assert.equal((await pool.query<{ label: string }>(text, [5])).rows[0].label, "row 5");
    assert.deepEqual(describes, [2], "the failed run told nothing: described again once, then no more");
  } finally {
    await pool.end();
  }
});

test("a migration that changes a statement's columns: the old connection's run fails (0A000) and is dropped; the new connection describes it again, with the new type", async () => {
  const { pool, describes } = countingPool();
  const text = "SELECT amount, label FROM described WHERE id = $1";
  try {
    assert.equal((await pool.query(text, [1])).rows[0].amount, 100);
    assert.equal((await pool.query(text, [1])).rows[0].amount, 100);
    // A change that leaves the statement's columns as they are: it runs on, undescribed.
    await db.pool.query("ALTER TABLE described ADD COLUMN note text");
    assert.deepEqual((await pool.query(text, [1])).rows, [{ amount: 100, label: "row 1" }]);
    assert.deepEqual(describes, [1]);
    await db.pool.query("ALTER TABLE described ALTER COLUMN amount TYPE int8");
    const outdated = await pool.query(text, [1]).then(() => assert.fail("the outdated plan ran"), (err: unknown) => err);
    assert.equal((outdated as { code?: string }).code, "0A000");
    const now = await pool.query(text, [1]);
    assert.equal(now.rows[0].amount, 100n, "int8 now: parsed as the new column's type");
    assert.equal(now.fields[0].dataTypeID, pg.types.builtins.INT8);
    assert.equal((await pool.query(text, [1])).rows[0].amount, 100n);
    assert.deepEqual(describes, [1, 1], "described once on each connection");
  } finally {
    await pool.end();
    await db.pool.query("ALTER TABLE described ALTER COLUMN amount TYPE int, DROP COLUMN IF EXISTS note");
  }
});

test("a connection reset (its session ended) leaves nothing behind: the new connection prepares and describes the statement again", async () => {
  const { pool, describes } = countingPool();
  const text = "SELECT label, pg_backend_pid() AS pid FROM described WHERE id = $1";
  try {
    const { pid } = (await pool.query<{ pid: number }>(text, [1])).rows[0];
    await pool.query(text, [1]);
    await db.pool.query("SELECT pg_terminate_backend($1)", [pid]);
    await pool.query(text, [1]).catch(() => undefined); // may meet the ended session first
    const after = (await pool.query<{ label: string; pid: number }>(text, [2])).rows[0];
    assert.notEqual(after.pid, pid);
    assert.equal(after.label, "row 2");
    assert.equal((await pool.query<{ label: string }>(text, [3])).rows[0].label, "row 3");
    assert.equal(describes[0], 1);
    assert.equal(describes.at(-1), 1, "the new connection described it once");
  } finally {
    await pool.end();
  }
});

test("a value Bind cannot encode fails its run only: the statement stays prepared on the connection, parsed before or in the same write", async () => {
  const { pool, describes } = countingPool();
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const unencodable = (tx: pg.PoolClient, text: string) => tx.query(text, [1, cyclic]);
  try {
    const before = "SELECT label, pg_backend_pid() AS pid FROM described WHERE id = $1 AND $2::jsonb IS NOT NULL";
    const { pid } = (await pool.query<{ pid: number }>(before, [1, {}])).rows[0];
    // In a transaction (its connection is kept after a failed statement): second, then first statement.
    await assert.rejects(withTransaction(pool, async (tx) => {
      await tx.query("SELECT $1::int AS one", [1]);
      await unencodable(tx, before);
    }), /circular/i);
    await assert.rejects(withTransaction(pool, (tx) => unencodable(tx, before)), /circular/i);
    const again = (await pool.query<{ label: string; pid: number }>(before, [2, {}])).rows[0];
    assert.deepEqual(again, { label: "row 2", pid }, "the same connection runs the statement it had prepared");

    const fresh = "SELECT label FROM described WHERE id = $1 AND $2::jsonb IS NOT NULL ORDER BY id";
    await assert.rejects(withTransaction(pool, (tx) => unencodable(tx, fresh)), /circular/i);
    assert.equal((await pool.query<{ label: string }>(fresh, [3, {}])).rows[0].label, "row 3");
    assert.equal((await pool.query<{ label: string }>(fresh, [4, {}])).rows[0].label, "row 4");
    assert.equal(describes.length, 1, "one connection throughout");
  } finally {
    await pool.end();
  }
});
