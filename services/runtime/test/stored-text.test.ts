import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { storableJson, storableText } from "../src/stored-text.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/index.js";

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
});
after(() => db.drop());

const stored = async (text: string, json: string) =>
  (await db.pool.query<{ text: string; json: unknown }>("SELECT $1::text AS text, $2::jsonb AS json", [text, json])).rows[0];

test("a stranger's NULs are stored as U+FFFD, in text and in JSON keys and values; everything else as it came", async () => {
  const words = "HTTP 400: bad\u0000request \\u0000 ok";
  // As they come, PostgreSQL refuses both: the write recording them failed every time.
  await assert.rejects(stored(words, "{}"), (e: { code?: string }) => e.code === "22021");
  await assert.rejects(stored("", JSON.stringify({ reason: words })), (e: { code?: string }) => e.code === "22P05");
  const value = { "k\u0000ey": words, list: ["\u0000", "a\\\u0000b", "\\u0000"], n: 1 };
  const row = await stored(storableText(words), storableJson(value));
  assert.equal(row.text, "HTTP 400: bad\ufffdrequest \\u0000 ok", "the NUL replaced; the text \\u0000 (no NUL) kept");
  assert.deepEqual(row.json, { "k\ufffdey": "HTTP 400: bad\ufffdrequest \\u0000 ok", list: ["\ufffd", "a\\\ufffdb", "\\u0000"], n: 1 });
  assert.equal(storableText("no nul"), "no nul");
  assert.equal(storableJson({ a: "b" }), '{"a":"b"}');
});
