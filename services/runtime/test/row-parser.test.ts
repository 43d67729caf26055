import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { createPool, type Pool } from "../src/db.js";
import { rowParser } from "../src/deferred-begin.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/index.js";

let db: TestDatabase;
let pool: Pool;
before(async () => {
  db = await createTestDatabase();
  pool = createPool(db.url, { max: 2 });
});
after(async () => {
  await pool.end();
  await db.drop();
});

/** A statement whose row holds every kind of value our statements return, and odd column names. */
const TEXT = `SELECT $1::int8 AS amount_minor, $2::text AS "label", now() - interval '1 day' AS created_at, NULL::text AS nothing,
    ARRAY['a', 'b"c']::text[] AS codes, '{"k": [1, 2]}'::jsonb AS doc, true AS ok, 1.5::float8 AS rate, $3::uuid AS id,
    'x' AS "with ""quotes"" and \\ backslash", 'y' AS "constructor", 'z' AS "a b", 2::int AS "0"`;
const VALUES = [123_456_789_012n, "héllo 'there'", "7f1c8c9e-3b1a-4a57-9a53-0d8c6c2f1b11"];

test("rows parsed by the statement's row parser are the rows pg's own parser gives, on the same answers", async () => {
  // pg's own client: no prepared-statement wrapper, pg's Result.parseRow.
  const plain = new pg.Client({ connectionString: db.url });
  await plain.connect();
  try {
    const expected = (await plain.query({ text: TEXT, values: VALUES })).rows;
    // The pool's named statement, run more than once: the first answer builds its parser, the next reuse it.
    for (let run = 0; run < 3; run++) {
      const result = await pool.query(TEXT, VALUES);
      const { rows } = result;
      assert.equal(rows.length, 1);
      const pgParseRow = (pg as unknown as { Result: { prototype: { parseRow: unknown } } }).Result.prototype.parseRow;
      assert.notEqual((result as unknown as { parseRow: unknown }).parseRow, pgParseRow, "parsed by the statement's own parser");
      const [got, want] = [rows[0] as Record<string, unknown>, expected[0] as Record<string, unknown>];
      assert.deepEqual(Object.keys(got), Object.keys(want), "the same names in the same order");
      // now() differs between the two runs: same type, the rest equal.
      assert.ok(got.created_at instanceof Date && want.created_at instanceof Date);
      assert.deepEqual({ ...got, created_at: 0 }, { ...want, created_at: 0 });
      assert.equal(typeof got.amount_minor, "bigint");
      assert.equal(Object.getPrototypeOf(got), Object.prototype);
    }
  } finally {
    await plain.end();
  }
});

test("the parser answers as pg's Result.parseRow, and leaves to it what a literal would change", () => {
  const field = (name: string, format = "text") => ({ name, dataTypeID: 25, format });
  const parse = (fields: ReturnType<typeof field>[], values: (string | null)[]) => {
    const result = new (pg as unknown as { Result: new () => { addFields(f: unknown): void; parseRow(v: unknown): object; _parsers?: unknown[] } }).Result();
    result.addFields(fields);
    const own = rowParser(fields);
    return { pg: result.parseRow(values), own: own?.call(result, values), compiled: own !== null };
  };
  const fields = [field("a"), field('b"\\c'), field("d")];
  for (const values of [["1", null, "x"], [null, null, null], ["", "\u2028", "}; throw 1; {"]]) {
    const { pg: want, own } = parse(fields, values);
    assert.deepEqual(own, want);
    assert.deepEqual(Object.keys(own!), Object.keys(want));
  }
  assert.deepEqual(parse(fields, ["1", "2"]).own, parse(fields, ["1", "2"]).pg, "a row of another length: pg's parser");
  for (const odd of [[field("a"), field("a")], [field("__proto__")], [field("a", "binary")]]) assert.equal(parse(odd, odd.map(() => null)).compiled, false);
});
