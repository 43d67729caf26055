import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import pg from "pg";
import type { BusMessage, EventBus } from "../src/bus.js";
import { migrate, withTransaction, type Pool } from "../src/db.js";
import { OutboxRelay, writeOutbox } from "../src/outbox.js";
import { captureLogger, createTestDatabase, eventually, type TestDatabase } from "../src/testing/index.js";

const { logger } = captureLogger("silent");
let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
  for (const schema of ["woken", "polled"]) await migrate(db.pool, schema, undefined);
});
after(() => db.drop());

/** A bus that keeps what it was given. */
function recordingBus(): { bus: EventBus; published: Set<string> } {
  const published = new Set<string>();
  const bus = { publish: async (m: BusMessage) => void published.add(m.id) } as unknown as EventBus;
  return { bus, published };
}

/** db.pool, counting the relay's one-statement looks and its batches (which check out a client). */
function countingPool(): { pool: Pool; looks: () => number; batches: () => number } {
  let looks = 0;
  let batches = 0;
  const pool = {
    query: (...args: Parameters<Pool["query"]>) => {
      looks++;
      return (db.pool.query as (...a: unknown[]) => unknown)(...args);
    },
    connect: () => {
      batches++;
      return db.pool.connect();
    },
  } as unknown as Pool;
  return { pool, looks: () => looks, batches: () => batches };
}

test("a row this process commits wakes the idle relay at once, though its next look is a minute away", async () => {
  const { bus, published } = recordingBus();
  const { pool, looks, batches } = countingPool();
  const relay = new OutboxRelay({ pool, schema: "woken", bus, logger, pollIntervalMs: 60_000, maxPollIntervalMs: 60_000 });
  relay.start();
  try {
    // Its first pass (at start) finds nothing; then it sleeps for a minute.
    await eventually("the first pass", () => batches() === 1 && db.pool.idleCount === db.pool.totalCount);
    await new Promise((r) => setTimeout(r, 100));
    const ids = [randomUUID(), randomUUID()];
    await withTransaction(db.pool, async (tx) => {
      for (const id of ids) await writeOutbox(tx, "woken", { id, subject: "ttip.woken.x", data: new Uint8Array([1]) });
    });
    await eventually("the committed rows published", () => ids.every((id) => published.has(id)), 10_000);
    assert.deepEqual([looks(), batches()], [0, 2], "woken by the commit, the relay went straight to its batch");
  } finally {
    await relay.stop();
  }
});

test("an idle relay looks less and less often, and still relays within its bound a row written by another process", async () => {
  const { bus, published } = recordingBus();
  const { pool, looks } = countingPool();
  const relay = new OutboxRelay({ pool, schema: "polled", bus, logger, pollIntervalMs: 20, maxPollIntervalMs: 320 });
  relay.start();
  try {
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 1_300));
    const elapsed = performance.now() - t0;
    // Every 20 ms that would be 65 looks; waits of 20, 40, 80, 160, 320, 320, ... ms make about 8.
    assert.ok(looks() <= Math.ceil(elapsed / 320) + 5, `${looks()} looks in ${elapsed.toFixed(0)} ms`);
    // Another process (a client of its own, which tells this one nothing) writes a row.
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    const id = randomUUID();
    try {
      await other.query("INSERT INTO polled.outbox (event_id, subject, payload) VALUES ($1, 'ttip.polled.x', '\\x01')", [id]);
    } finally {
      await other.end();
    }
    const looked = looks();
    await eventually("the other process's row published by a look", () => published.has(id), 10_000);
    assert.ok(looks() > looked, "found by a look, not a wake-up");
  } finally {
    await relay.stop();
  }
});
