import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import { arrayLiteral, byteaArray, createPool, opaqueArray, withTransaction, withTransactionBracketed, type Pool, type PoolClient } from "../src/db.js";
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

test("a named statement's empty row is built once, its rows as pg makes them; a client's type parser set later applies at once", async () => {
  const Result = createRequire(import.meta.url)("pg/lib/result.js") as { prototype: { addFields(fields: unknown[]): void } };
  const addFields = Result.prototype.addFields;
  let built = 0;
  Result.prototype.addFields = function (this: unknown, fields: unknown[]) {
    built++;
    return addFields.call(this, fields);
  };
  const client = await db.pool.connect();
  try {
    const text = "SELECT id, label, id::bigint * 2 AS doubled, NULL::text AS nothing FROM items WHERE id = ANY ($1::int[]) ORDER BY id";
    const answers = [];
    for (const ids of [[1, 2], [3], [4, 5]]) answers.push((await client.query(text, [ids])).rows);
    assert.deepEqual(answers, [
      [{ id: 1, label: "item 1", doubled: 2n, nothing: null }, { id: 2, label: "item 2", doubled: 4n, nothing: null }],
      [{ id: 3, label: "item 3", doubled: 6n, nothing: null }],
      [{ id: 4, label: "item 4", doubled: 8n, nothing: null }, { id: 5, label: "item 5", doubled: 10n, nothing: null }],
    ]);
    assert.equal(built, 1, "pg's Result built the statement's fields once for three answers");
    const rows = answers.flat();
    rows[0].label = "changed";
    assert.equal(rows[1].label, "item 2", "each row its own object");
    assert.deepEqual(Object.keys(rows[2]), ["id", "label", "doubled", "nothing"]);
    client.setTypeParser(23, (v: string) => `int4 ${v}`);
    assert.deepEqual((await client.query(text, [[6]])).rows, [{ id: "int4 6", label: "item 6", doubled: 12n, nothing: null }]);
  } finally {
    Result.prototype.addFields = addFields;
    client.release(true);
  }
});

test("arrays of strings, numbers, bigints and bytes go as the literal pg writes, character for character, and arrive whole", async () => {
  const { prepareValue } = createRequire(import.meta.url)("pg/lib/utils") as { prepareValue(v: unknown): unknown };
  const texts = ["plain", "", "NULL", 'a "quoted" word', "back\\slash\\", '\\"both"\\', "comma, {brace}", " spaced ", "naïve ✓ 𝄞", "00000000-0000-4000-8000-000000000001"];
  const bytes = [Buffer.from("x"), new Uint8Array([0, 255, 16]), new Uint8Array(new Uint8Array([9, 8, 7, 6]).buffer, 1, 2), Buffer.alloc(0), null];
  const arrays: unknown[][] = [
    texts, ["one"], ['"'], [null, "x", undefined], [undefined], [1, -2.5, 0, 1e21, Number.MAX_SAFE_INTEGER, Number.NaN, -0], [7],
    [0n, -9_007_199_254_740_993n, 12_345_678_901_234_567_890n], ["a", 1, 2n, null, 'q"'], bytes, [Buffer.from("only")], new Array(3), [],
  ];
  for (const a of arrays) assert.equal(arrayLiteral(a), prepareValue(a), JSON.stringify(a, (_, v) => (typeof v === "bigint" ? `${v}n` : v)));
  // pg's own encoding stays for what the literal does not cover.
  assert.equal(arrayLiteral([new Date(0)]), undefined);
  assert.equal(arrayLiteral(["x", new Date(0)]), undefined);
  assert.equal(arrayLiteral([true]), undefined);
  assert.equal(arrayLiteral([["nested"]]), undefined);
  // Through a prepared statement, each arrives as sent.
  const { rows } = await db.pool.query<{ t: string[]; n: string[]; b: string[]; d: Date[]; x: (Buffer | null)[]; u: string[] }>(
    "SELECT $1::text[] AS t, $2::numeric[]::text[] AS n, $3::bigint[]::text[] AS b, $4::timestamptz[] AS d, $5::bytea[] AS x, $6::uuid[]::text[] AS u",
    [texts, [1, -2.5], [-9_007_199_254_740_993n], [new Date(0)], bytes, [texts[9], texts[9]]],
  );
  assert.deepEqual(rows[0], {
    t: texts, n: ["1", "-2.5"], b: ["-9007199254740993"], d: [new Date(0)],
    x: [Buffer.from("x"), Buffer.from([0, 255, 16]), Buffer.from([8, 7]), Buffer.alloc(0), null], u: [texts[9], texts[9]],
  });
});

test("arrays of bytes go in binary, about their size on the wire (as hex text, twice it), and arrive whole: nulls, empty ones and views too", async () => {
  await db.pool.query("CREATE TABLE blobs (n int, body bytea)");
  const big = (fill: number) => new Uint8Array(32 * 1024).fill(fill);
  const bodies = [Buffer.from(big(1)), big(2), null, Buffer.alloc(0), new Uint8Array(new Uint8Array([9, 8, 7, 6]).buffer, 1, 2)];
  const raw = bodies.reduce((n, b) => n + (b?.byteLength ?? 0), 0);
  const client = await db.pool.connect();
  const stream = (client as unknown as { connection: { stream: { write(chunk: Uint8Array, ...rest: unknown[]): boolean } } }).connection.stream;
  const write = stream.write;
  let written = 0;
  stream.write = function (chunk, ...rest) {
    written += chunk.length;
    return write.call(this, chunk, ...rest);
  };
  try {
    const insert = "INSERT INTO blobs SELECT * FROM unnest($1::int[], (SELECT $2::bytea[])::bytea[])";
    await client.query(insert, [[1, 2, 3, 4, 5], bodies]);
    assert.ok(written < raw * 1.05, `${written} bytes written for ${raw} bytes of bodies`);
    // In a transaction (its BEGIN sent with the statement) and as = ANY's array.
    const found = await withTransaction(db.pool, async (tx) => (await tx.query<{ n: number }>("SELECT n FROM blobs WHERE body = ANY($1::bytea[]) ORDER BY n", [[bodies[1], bodies[4], null]])).rows);
    assert.deepEqual(found.map((r) => r.n), [2, 5]);
  } finally {
    stream.write = write;
    client.release();
  }
  const { rows } = await db.pool.query<{ body: Buffer | null }>("SELECT body FROM blobs WHERE n > $1 ORDER BY n", [0]);
  assert.deepEqual(rows.map((r) => r.body), [Buffer.from(big(1)), Buffer.from(big(2)), null, Buffer.alloc(0), Buffer.from([8, 7])]);
  // An array of nulls alone says nothing of its type: it goes as pg's text, and PostgreSQL casts it.
  assert.equal(byteaArray([null, undefined]), undefined);
  assert.equal(byteaArray([Buffer.from("x"), "x"]), undefined);
  assert.deepEqual((await db.pool.query<{ x: null[] }>("SELECT $1::bytea[] AS x", [[null]])).rows[0].x, [null]);
});

test("a statement goes to the idle connection that has run it, not to the last released; one no connection ran keeps the pool's order", async () => {
  const pool = createPool(db.url, { max: 3 });
  const pidOf = (text: string, values: unknown[]) => pool.query<{ pid: number }>(text, values).then((r) => r.rows[0].pid);
  /** Releases the clients in order: the last is the one the pool hands out next. */
  const releaseInOrder = (...clients: PoolClient[]) => clients.forEach((c) => c.release());
  try {
    const planned = "SELECT pg_backend_pid() AS pid, $1::int AS n";
    const [first, second, third] = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
    let firstPid = 0;
    for (let i = 0; i < 6; i++) firstPid = (await first.query<{ pid: number }>(planned, [i])).rows[0].pid;
    const thirdPid = (await third.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0].pid;
    releaseInOrder(first, second, third);
    assert.equal(await pidOf(planned, [7]), firstPid, "the connection that planned it, though released first");
    const [top, next] = [await pool.connect(), await pool.connect()];
    const backendOf = async (c: PoolClient) => (await c.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0].pid;
    assert.deepEqual([await backendOf(top), await backendOf(next)], [firstPid, thirdPid]);
    releaseInOrder(top, next);
    assert.equal(await pidOf("SELECT pg_backend_pid() AS pid, $1::int + 1 AS n", [7]), thirdPid, "one no connection ran: the last released, as before");
    const bracketed = await withTransactionBracketed(pool, { text: planned, values: [8] }, async (_tx, opened) => ({ result: opened.rows[0].pid }));
    assert.equal(bracketed, firstPid, "a bracketed transaction's opening statement too");
    const [busy, other] = [await pool.connect(), await pool.connect()];
    releaseInOrder(busy, other);
    const hinted = await withTransaction(pool, async (tx) => (await tx.query<{ pid: number }>(planned, [9])).rows[0].pid, planned);
    assert.equal(hinted, firstPid, "a transaction told its first statement too");
    // Read on the connection released last (the last transaction's): the one that ran it.
    const { rows } = await pool.query<{ pid: number; custom: number; generic: number }>(
      "SELECT pg_backend_pid() AS pid, custom_plans::int AS custom, generic_plans::int AS generic FROM pg_prepared_statements WHERE statement = $1",
      [planned],
    );
    assert.deepEqual(rows, [{ pid: firstPid, custom: 5, generic: 4 }], "planned five times for its values on one connection, then kept generic");
  } finally {
    await pool.end();
  }
});

test("statements asked for in the same turn each go to the idle connection that has run them, in the order asked", async () => {
  const pool = createPool(db.url, { max: 2 });
  const pid = (r: { rows: { pid: number }[] }) => r.rows[0].pid;
  try {
    const asInt = "SELECT pg_backend_pid() AS pid, $1::int AS n";
    const asText = "SELECT pg_backend_pid() AS pid, $1::text AS t";
    const [ranInt, ranText] = await Promise.all([pool.connect(), pool.connect()]);
    let [intPid, textPid] = [0, 0];
    for (let i = 0; i < 6; i++) {
      intPid = pid(await ranInt.query<{ pid: number }>(asInt, [i]));
      textPid = pid(await ranText.query<{ pid: number }>(asText, [String(i)]));
    }
    // Released in this order, the pool would hand ranText out first.
    ranInt.release();
    ranText.release();
    const [a, b] = await Promise.all([pool.query<{ pid: number }>(asInt, [7]), pool.query<{ pid: number }>(asText, ["7"])]);
    assert.deepEqual([pid(a), pid(b)], [intPid, textPid], "each on the connection that planned it");
    const [c, d] = await Promise.all([
      withTransactionBracketed(pool, { text: asText, values: ["8"] }, async (_tx, opened) => ({ result: pid(opened) })),
      withTransactionBracketed(pool, { text: asInt, values: [8] }, async (_tx, opened) => ({ result: pid(opened) })),
    ]);
    assert.deepEqual([c, d], [textPid, intPid], "each bracketed transaction's opening statement too");
  } finally {
    await pool.end();
  }
});
