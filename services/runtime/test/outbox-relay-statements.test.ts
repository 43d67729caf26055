// What a relay pass costs PostgreSQL: its claim and its mark are prepared statements
// with fixed texts, planned once per connection (the generic plan) whatever the batch's
// size, and a batch is two round trips (BEGIN with the claim, the mark with COMMIT).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import type { BusMessage, EventBus } from "../src/bus.js";
import { createPool, migrate, type Pool } from "../src/db.js";
import { OutboxRelay, writeOutbox } from "../src/outbox.js";
import { captureLogger, countWrites, createTestDatabase, type TestDatabase } from "../src/testing/index.js";

const { logger } = captureLogger("silent");
let db: TestDatabase;
let pool: Pool;
before(async () => {
  db = await createTestDatabase();
  // One connection: every pass prepares on, and plans in, the same session.
  pool = createPool(db.url, { max: 1 });
  await migrate(pool, "payment", undefined);
});
after(async () => {
  await pool.end();
  await db.drop();
});

test("the relay's claim and mark are prepared once and planned once per connection, in two round trips per batch, whatever the batch's size", async () => {
  const published: string[] = [];
  const bus = { publish: async (m: BusMessage) => void published.push(m.id) } as unknown as EventBus;
  const relay = new OutboxRelay({ pool, schema: "payment", bus, logger, batchSize: 50 });
  const written: string[] = [];
  const client = await pool.connect();
  const counter = countWrites(client);
  client.release();
  let passes = 0;
  try {
    for (let pass = 0; pass < 16; pass++) {
      // Batches of 1 to 7 rows: a text with the batch in it would be a new statement each time.
      for (let i = 0; i <= pass % 7; i++) {
        const id = randomUUID();
        written.push(id);
        await writeOutbox(pool, "payment", { id, subject: "ttip.payment.x", data: new Uint8Array([i]) });
      }
      const before = counter.writes();
      assert.equal(await relay.flush(), (pass % 7) + 1);
      assert.equal(counter.writes() - before, 2, `pass ${pass}: BEGIN with the claim, the mark with COMMIT`);
      passes++;
    }
  } finally {
    counter.stop();
  }
  assert.deepEqual(published, written, "every row published once, in order");
  const left = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM payment.outbox WHERE published_at IS NULL");
  assert.equal(left.rows[0].n, 0);
  const { rows } = await pool.query<{ statement: string; generic_plans: bigint; custom_plans: bigint }>(
    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%outbox%' AND statement NOT LIKE 'INSERT%'",
  );
  const claim = rows.find((r) => r.statement.startsWith("SELECT seq"));
  const mark = rows.find((r) => r.statement.startsWith("UPDATE"));
  assert.ok(claim && mark, `claim and mark prepared: ${rows.map((r) => r.statement).join(" | ")}`);
  assert.equal(rows.length, 2, "one text each, whatever the batch");
  for (const r of [claim, mark]) {
    // PostgreSQL plans the first five calls for their values, then keeps the generic plan if it costs no more.
    assert.ok(r.custom_plans <= 5n && Number(r.generic_plans + r.custom_plans) === passes, `${r.statement}: ${r.generic_plans} generic, ${r.custom_plans} custom plans`);
  }
});
