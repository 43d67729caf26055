import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import type { BusMessage, EventBus } from "../src/bus.js";
import { migrate } from "../src/db.js";
import { OutboxRelay, writeOutbox } from "../src/outbox.js";
import { captureLogger, createTestDatabase, type TestDatabase } from "../src/testing/index.js";

const { logger } = captureLogger("silent");
let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
  await migrate(db.pool, "payment", undefined);
});
after(() => db.drop());

// The relay sends BEGIN with its claim and COMMIT with its mark (withTransactionBracketed):
// a publish that fails in between must leave that row and the rest for the next pass.
test("the outbox relay marks only what the bus took: a failed publish is retried with the rows after it; a bus that throws rolls the batch back", async () => {
  const ids = [randomUUID(), randomUUID(), randomUUID()];
  for (const id of ids) await writeOutbox(db.pool, "payment", { id, subject: "ttip.payment.x", data: new Uint8Array([1]) });
  const published = new Set<string>();
  let mode: "fail-second" | "throw" | "ok" = "fail-second";
  const bus = {
    async publish(m: BusMessage) {
      if (mode === "fail-second" && m.id === ids[1]) throw new Error("nats down");
      published.add(m.id);
    },
  } as unknown as EventBus;
  const busThrowing = { publish(m: BusMessage) { if (m.id === ids[2]) throw new Error("sync boom"); published.add(m.id); return Promise.resolve(); } } as unknown as EventBus;
  const state = async () => (await db.pool.query<{ event_id: string; published: boolean; attempts: number; last_error: string | null }>(
    "SELECT event_id, published_at IS NOT NULL AS published, attempts, last_error FROM payment.outbox ORDER BY seq")).rows;
  assert.equal(await new OutboxRelay({ pool: db.pool, schema: "payment", bus, logger }).flush(), 1);
  let rows = await state();
  assert.deepEqual(rows.map((r) => r.published), [true, false, false]);
  assert.equal(rows[1].attempts, 1);
  assert.match(rows[1].last_error ?? "", /nats down/);
  for (const r of rows) if (r.published) assert.ok(published.has(r.event_id));
  // A bus that throws before answering: the batch rolls back, nothing more is marked, no transaction is left open.
  mode = "ok";
  await assert.rejects(new OutboxRelay({ pool: db.pool, schema: "payment", bus: busThrowing, logger }).flush());
  rows = await state();
  assert.deepEqual(rows.map((r) => r.published), [true, false, false]);
  const locks = await db.pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()");
  assert.equal(locks.rows[0].n, 0);
  assert.equal(await new OutboxRelay({ pool: db.pool, schema: "payment", bus, logger }).flush(), 2);
  rows = await state();
  assert.deepEqual(rows.map((r) => r.published), [true, true, true]);
  for (const r of rows) assert.ok(published.has(r.event_id));
});
