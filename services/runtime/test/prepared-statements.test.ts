import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createPool, opaqueArray, withTransaction, withTransactionBracketed, type Pool } from "../src/db.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/index.js";

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
  await db.pool.query("CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)");
  await db.pool.query("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g");
});
after(() => db.drop());

/** The statements prepared on the connection a transaction holds, after running `statements` on it. */
async function preparedAfter(pool: Pool, statements: [string, unknown[]][]): Promise<string[]> {
  return withTransaction(pool, async (client) => {
    for (const [text, values] of statements) await client.query(text, values);
    const { rows } = await client.query<{ statement: string }>("SELECT statement FROM pg_prepared_statements ORDER BY statement");
    return rows.map((r) => r.statement.replace(/\s+/g, " ").trim());
  });
}

test("a parameterised statement is prepared once per connection and answers as before", async () => {
  const text = "SELECT label FROM items WHERE id = $1";
  const labels = await withTransaction(db.pool, async (client) => {
    const out: string[] = [];
    for (const id of [3, 7, 3]) out.push((await client.query<{ label: string }>(text, [id])).rows[0].label);
    const { rows } = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = $1", [text]);
    assert.equal(rows[0].n, 1, "the statement is prepared once on this connection");
    return out;
  });
  assert.deepEqual(labels, ["item 3", "item 7", "item 3"]);
});

test("statements with * in their result, or without parameters, stay unnamed", async () => {
  const prepared = await preparedAfter(db.pool, [
    ["SELECT * FROM items WHERE id = $1", [1]],
    ["UPDATE items SET label = label WHERE id = $1 RETURNING *", [1]],
    ["SELECT count(*) AS n FROM items WHERE id > $1", [5]],
    ["SELECT id * 2 AS twice, (id + 1)*3 AS more FROM items WHERE id = $1", [1]],
    ["SELECT i.* FROM items i WHERE i.id = $1", [1]],
    ["SELECT id, * FROM items WHERE id = $1", [1]],
    ["SELECT DISTINCT ON (label) * FROM items WHERE id > $1", [1]],
    ["SELECT max(id) FROM items", []],
  ]);
  // count(*) is one column whatever the table holds, and a product is a value: prepared. The others are not.
  assert.ok(prepared.includes("SELECT count(*) AS n FROM items WHERE id > $1"), `prepared: ${prepared.join(" | ")}`);
  assert.ok(prepared.includes("SELECT id * 2 AS twice, (id + 1)*3 AS more FROM items WHERE id = $1"), `prepared: ${prepared.join(" | ")}`);
  const wildcards = ["SELECT i.* FROM", "SELECT id, * FROM", "DISTINCT ON (label) *", "SELECT * FROM items", "RETURNING *"];
  assert.ok(!prepared.some((s) => wildcards.some((w) => s.includes(w)) || s === "SELECT max(id) FROM items"), `prepared: ${prepared.join(" | ")}`);
});

test("a failing statement leaves the connection usable and the statement preparable again", async () => {
  const text = "SELECT label FROM items WHERE id = $1::int";
  await withTransaction(db.pool, async (client) => {
    await assert.rejects(client.query(text, ["not a number"]), /invalid input syntax/);
  }).catch(() => undefined);
  const { rows } = await db.pool.query<{ label: string }>(text, [2]);
  assert.equal(rows[0].label, "item 2");
});

test("preparedStatements: false sends every statement unnamed", async () => {
  const pool = createPool(db.url, { max: 1, preparedStatements: false });
  try {
    const prepared = await preparedAfter(pool, [["SELECT label FROM items WHERE id = $1", [4]]]);
    assert.deepEqual(prepared, []);
  } finally {
    await pool.end();
  }
});

test("an array behind opaqueArray gets a generic plan; as a bare parameter it is planned again on every call", async () => {
  // The plans PostgreSQL made for a statement after it ran eight times on one connection, each time with a small array.
  const plansAfterEightCalls = (text: string) =>
    withTransaction(db.pool, async (client) => {
      for (let i = 0; i < 8; i++) {
        const { rows } = await client.query<{ label: string }>(text, [[i + 1, i + 2]]);
        assert.deepEqual(rows.map((r) => r.label).sort(), [`item ${i + 1}`, `item ${i + 2}`].sort());
      }
      const { rows } = await client.query<{ generic_plans: string; custom_plans: string }>(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
        [text],
      );
      return { generic: Number(rows[0].generic_plans), custom: Number(rows[0].custom_plans) };
    });
  const bare = await plansAfterEightCalls("SELECT i.label FROM unnest($1::int[]) AS k(id) JOIN items i ON i.id = k.id");
  assert.deepEqual(bare, { generic: 0, custom: 8 }, "a bare array is estimated at its length, so the custom plan always looks cheaper");
  const hidden = await plansAfterEightCalls(`SELECT i.label FROM unnest(${opaqueArray(1, "int")}) AS k(id) JOIN items i ON i.id = k.id`);
  assert.deepEqual(hidden, { generic: 3, custom: 5 }, "five custom plans, then the generic one for good");
  const any = await plansAfterEightCalls(`SELECT label FROM items WHERE id = ANY(${opaqueArray(1, "int")})`);
  assert.deepEqual(any, { generic: 3, custom: 5 });
});

test("a named statement's Query is made from its text and values: pg copies no config, alone, behind BEGIN or before COMMIT (named: see the first test)", async () => {
  // pg copies a config object into each Query with getOwnPropertyDescriptors (its only caller there).
  const describe = Object.getOwnPropertyDescriptors;
  let copies = 0;
  Object.getOwnPropertyDescriptors = ((o: object) => (copies++, describe(o))) as typeof describe;
  try {
    const select = "SELECT label FROM items WHERE id = $1";
    const alone = await db.pool.query<{ label: string }>(select, [2]);
    const inTransaction = await withTransaction(db.pool, async (tx) => [(await tx.query<{ label: string }>(select, [4])).rows, (await tx.query<{ label: string }>(select, [5])).rows]);
    const bracketed = await withTransactionBracketed(db.pool, { text: select, values: [6] }, async (_tx, opened) => ({
      closing: { text: "SELECT label FROM items WHERE id = $1 + 0", values: [7] },
      result: opened.rows,
    }));
    assert.deepEqual([alone.rows, ...inTransaction, bracketed], [[{ label: "item 2" }], [{ label: "item 4" }], [{ label: "item 5" }], [{ label: "item 6" }]]);
    assert.equal(copies, 0, "no config copied");
  } finally {
    Object.getOwnPropertyDescriptors = describe;
  }
});
