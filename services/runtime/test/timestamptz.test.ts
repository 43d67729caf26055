import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import { createPool, type Pool } from "../src/db.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/index.js";
import { timestamptzParser } from "../src/timestamptz.js";

/** pg's own timestamptz parser (pg-types registers postgres-date for it). */
const parseDate = createRequire(import.meta.url)("postgres-date") as (text: string) => unknown;
const parse = timestamptzParser(parseDate);

/** The same answer: a Date of the same time (or both invalid), or the same non-Date value. */
function assertSame(text: string): void {
  const [got, want] = [parse(text), parseDate(text)];
  if (want instanceof Date) {
    assert.ok(got instanceof Date, text);
    assert.ok(Object.is(got.getTime(), want.getTime()), `${text}: ${got.getTime()} against ${want.getTime()}`);
  } else assert.deepEqual(got, want, text);
}

let db: TestDatabase;
let pool: Pool;
before(async () => {
  db = await createTestDatabase();
  pool = createPool(db.url, { max: 1 });
});
after(async () => {
  await pool.end();
  await db.drop();
});

test("a timestamptz's text gives the Date pg's own parser gives: every fraction of 1 to 3 digits, offsets, edges and other shapes", () => {
  for (let ms = 0; ms < 1000; ms++) {
    const digits = String(ms).padStart(3, "0");
    for (const f of [digits.slice(0, 1), digits.slice(0, 2), digits]) assertSame(`2026-12-01 07:15:34.${f}+00`);
  }
  // Six digits (what PostgreSQL writes for microseconds), spread over the range and at its edges.
  for (let us = 0; us < 1_000_000; us += 997) assertSame(`1999-02-28 23:59:59.${String(us).padStart(6, "0")}+00`);
  for (const f of ["000001", "999999", "289999", "290000", "5", "57", "0001", "00001"]) assertSame(`2026-12-01 07:15:34.${f}+00`);
  for (let h = -12; h <= 14; h++) assertSame(`2026-03-01 00:00:00.5${h < 0 ? "-" : "+"}${String(Math.abs(h)).padStart(2, "0")}`);
  const others = [
    "2026-12-01 07:15:34+00", "1970-01-01 00:00:00+00", "0100-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00", "2024-02-29 12:00:00-00",
    // Left to pg's parser: a year before 100 or past 9999, BC, an offset with minutes or seconds, infinity, a date alone, odd text.
    "0099-06-15 10:00:00+00", "0001-01-01 00:00:00+00 BC", "10000-01-01 00:00:00+00", "2026-12-01 07:15:34+05:30", "2026-12-01 07:15:34.25+05:30",
    "1890-01-01 00:00:00+00:36:45", "infinity", "-infinity", "2026-12-01", "2026-12-01 07:15:34.+00", "2026-12-01 07:15:34.1234567+00",
    "2026-12-01T07:15:34+00", "2026-12-01 07:15:34Z", "2026-13-45 25:61:61+00", "abcd-ef-gh ij:kl:mn+00", "",
  ];
  for (const text of others) assertSame(text);
});

test("timestamptz columns read through the pool are the instants PostgreSQL holds, in any session time zone", async () => {
  const client = await pool.connect();
  try {
    for (const zone of ["UTC", "Africa/Nairobi", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]) {
      await client.query(`SET TimeZone = '${zone}'`);
      const { rows } = await client.query<{ t: Date; ms: string }>(
        `SELECT t, (extract(epoch FROM date_trunc('milliseconds', t)) * 1000)::bigint::text AS ms
           FROM unnest($1::timestamptz[]) AS t`,
        [["2026-12-01 07:15:34.123456+00", "1970-01-01 00:00:00+00", "1969-12-31 23:59:59.999999+00", "2024-02-29 23:30:00.5+00", "0150-07-01 12:00:00+00"]],
      );
      for (const r of rows) assert.equal(r.t.getTime(), Number(r.ms), `${zone}: ${r.ms}`);
    }
  } finally {
    await client.query("RESET TimeZone");
    client.release();
  }
});
