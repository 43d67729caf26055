// The inbox's insert (outbox.ts, inboxRace): events recorded with one heap WAL record each (no
// speculative insert to confirm), and exactly once when two transactions record the same event
// at the same time: the second waits for the first, loses on the key, runs again once and skips
// the event as a duplicate instead of failing its delivery.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { BusMessage, DeliveredMessage, EventBus } from "../src/bus.js";
import { InProcessBus } from "../src/bus.js";
import { migrate, type Queryable } from "../src/db.js";
import { Metrics } from "../src/metrics.js";
import { consumeEventBatches, consumeEvents } from "../src/outbox.js";
import { captureLogger, createTestDatabase, eventually, heapWalRecords, type TestDatabase } from "../src/testing/index.js";

const { logger } = captureLogger("silent");
const SCHEMA = "inbox_insert";

describe("the inbox's insert (PostgreSQL)", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, SCHEMA, undefined);
    await db.pool.query(`CREATE TABLE ${SCHEMA}.applied (event_id uuid NOT NULL, consumer text NOT NULL)`);
    await db.pool.query("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
  });
  after(() => db.drop());

  /** A bus whose consumers' handlers the test calls itself, as many at once as it likes. */
  const handBus = () => {
    const handlers: { batch?: (m: DeliveredMessage[]) => Promise<void>; one?: (m: DeliveredMessage) => Promise<void> } = {};
    const bus = Object.create(new InProcessBus(logger)) as EventBus;
    bus.subscribeBatches = async (o) => {
      handlers.batch = o.handler;
      return { stop: async () => undefined };
    };
    bus.subscribe = async (o) => {
      handlers.one = o.handler;
      return { stop: async () => undefined };
    };
    return { bus, handlers };
  };
  const events = (n: number, subject = "ttip.x.y"): DeliveredMessage[] =>
    Array.from({ length: n }, () => ({ id: randomUUID(), subject, data: new Uint8Array([1]), deliveryCount: 1 }) as BusMessage & DeliveredMessage);
  const applied = async (consumer: string) =>
    (await db.pool.query<{ event_id: string; n: number }>(`SELECT event_id, count(*)::int AS n FROM ${SCHEMA}.applied WHERE consumer = $1 GROUP BY event_id`, [consumer])).rows;
  const apply = (consumer: string) => async (messages: DeliveredMessage[], tx: Queryable) => {
    await tx.query(`INSERT INTO ${SCHEMA}.applied SELECT unnest($1::uuid[]), $2`, [messages.map((m) => m.id), consumer]);
  };

  /** The heap WAL records, by type, that `work` wrote to the inbox table. */
  const inboxHeapRecords = (work: () => Promise<void>) => heapWalRecords(db.pool, `${SCHEMA}.inbox`, { outside: work });

  test("a batch's events recorded with one heap WAL record each, no confirmation; delivered again, none", async () => {
    const { bus, handlers } = handBus();
    await consumeEventBatches({ bus, pool: db.pool, schema: SCHEMA, consumer: "wal-batch", subject: "ttip.x.y", logger, handleBatch: apply("wal-batch") });
    const batch = events(20);
    const written = await inboxHeapRecords(() => handlers.batch!(batch));
    assert.deepEqual(written, { INSERT: 20 }, "one insert per event, no HEAP_CONFIRM");
    assert.deepEqual(await inboxHeapRecords(() => handlers.batch!(batch)), {}, "nothing written for events the inbox holds");
    assert.equal((await applied("wal-batch")).length, 20);
  });

  test("effectCte and consumeEvents: one heap WAL record per event too", async () => {
    const { bus, handlers } = handBus();
    await consumeEventBatches({ bus, pool: db.pool, schema: SCHEMA, consumer: "wal-cte", subject: "ttip.x.y", logger, effectCte: () => undefined });
    assert.deepEqual(await inboxHeapRecords(() => handlers.batch!(events(10))), { INSERT: 10 });
    await consumeEvents({ bus, pool: db.pool, schema: SCHEMA, consumer: "wal-one", subject: "ttip.x.y", logger, handle: async () => undefined });
    const one = events(1)[0];
    assert.deepEqual(await inboxHeapRecords(() => handlers.one!(one)), { INSERT: 1 });
    assert.deepEqual(await inboxHeapRecords(() => handlers.one!(one)), {});
  });

  /**
   * Two deliveries of the same events at once, the first holding its transaction open after its
   * inbox rows are written: the second's insert waits on them, and once the first commits it
   * fails on the key, runs again and finds them. Its delivery settles (not nak'd), applying nothing.
   */
  const race = async (deliver: (handlers: ReturnType<typeof handBus>["handlers"]) => [Promise<void>, Promise<void>], subscribe: (bus: EventBus, hold: () => Promise<void>) => Promise<unknown>) => {
    const { bus, handlers } = handBus();
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let holding = 0;
    await subscribe(bus, async () => {
      if (holding++ === 0) await released;
    });
    const [first, second] = deliver(handlers);
    await eventually("the second delivery waiting on the first's inbox rows", async () => {
      const { rows } = await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%inbox%'");
      return holding === 1 && rows.length > 0;
    }, 10_000);
    release();
    const outcomes = await Promise.allSettled([first, second]);
    assert.deepEqual(outcomes.map((o) => o.status), ["fulfilled", "fulfilled"], "both deliveries settle: the second as a duplicate, not an error");
  };

  for (const n of [1, 5]) {
    test(`a batch of ${n} recorded by two transactions at once is applied once; the second's delivery settles`, async () => {
      const consumer = `race-batch-${n}`;
      const batch = events(n);
      const metrics = new Metrics();
      await race(
        (h) => {
          const first = h.batch!(batch);
          return [first, new Promise<void>((r) => setTimeout(r, 50)).then(() => h.batch!(batch))];
        },
        (bus, hold) => consumeEventBatches({
          bus, pool: db.pool, schema: SCHEMA, consumer, subject: "ttip.x.y", logger, metrics,
          handleBatch: async (messages, tx) => {
            await apply(consumer)(messages, tx);
            await hold();
          },
        }),
      );
      const rows = await applied(consumer);
      assert.equal(rows.length, n);
      assert.ok(rows.every((r) => r.n === 1), "none twice");
      assert.match(await metrics.registry.metrics(), new RegExp(`ttip_inbox_events_total\\{consumer="${consumer}",outcome="duplicate"\\} ${n}\\b`));
    });
  }

  test("one event recorded by two transactions at once (consumeEvents) is applied once; the second's delivery settles", async () => {
    const one = events(1)[0];
    const metrics = new Metrics();
    await race(
      (h) => {
        const first = h.one!(one);
        return [first, new Promise<void>((r) => setTimeout(r, 50)).then(() => h.one!(one))];
      },
      (bus, hold) => consumeEvents({
        bus, pool: db.pool, schema: SCHEMA, consumer: "race-one", subject: "ttip.x.y", logger, metrics,
        handle: async (m, tx) => {
          await apply("race-one")([m], tx);
          await hold();
        },
      }),
    );
    const rows = await applied("race-one");
    assert.deepEqual(rows.map((r) => r.n), [1]);
    assert.match(await metrics.registry.metrics(), /ttip_inbox_events_total\{consumer="race-one",outcome="duplicate"\} 1\b/);
  });
  test("a batch whose effect lost a race on a key of its own (raced) is run again once at once and settles; without raced its delivery fails", async () => {
    const lost = Object.assign(new Error("duplicate key value violates unique constraint"), { code: "23505", constraint: "effect_key" });
    for (const raced of [undefined, (err: unknown) => (err as { constraint?: string }).constraint === "effect_key"]) {
      const { bus, handlers } = handBus();
      const consumer = `raced-${raced ? "on" : "off"}`;
      let runs = 0;
      await consumeEventBatches({
        bus, pool: db.pool, schema: SCHEMA, consumer, subject: "ttip.x.y", logger, raced,
        handleBatch: async (messages, tx) => {
          await apply(consumer)(messages, tx);
          // The first run's insert lost to another replica's committed transaction; the next one's snapshot sees it.
          if (runs++ === 0) throw lost;
        },
      });
      const delivered = handlers.batch!(events(1));
      if (raced) {
        await delivered;
        assert.equal(runs, 2, "run again once");
        assert.equal((await applied(consumer)).length, 1, "applied once, the first run rolled back");
      } else {
        await assert.rejects(delivered, /duplicate key/, "left to the bus's redelivery");
        assert.equal((await applied(consumer)).length, 0);
      }
    }
  });

  // A batch of one: a larger one would also settle without inboxRace's second run, split to single events.
  test("an event whose effect is one statement (effectCte) waits on another replica's inbox row, then skips it as a duplicate", async () => {
    const { bus, handlers } = handBus();
    const metrics = new Metrics();
    const consumer = "race-cte";
    await consumeEventBatches({
      bus, pool: db.pool, schema: SCHEMA, consumer, subject: "ttip.x.y", logger, metrics,
      effectCte: (_messages, first) => ({
        sql: `counted AS (INSERT INTO ${SCHEMA}.applied SELECT event_id, $${first} FROM fresh)`,
        values: [consumer],
      }),
    });
    const batch = events(1);
    // Another replica records it in a transaction still open.
    const other = await db.pool.connect();
    try {
      await other.query("BEGIN");
      await other.query(`INSERT INTO ${SCHEMA}.inbox (consumer, event_id, subject) SELECT $1, unnest($2::uuid[]), 'ttip.x.y'`, [consumer, batch.map((m) => m.id)]);
      await other.query(`INSERT INTO ${SCHEMA}.applied SELECT unnest($1::uuid[]), $2`, [batch.map((m) => m.id), consumer]);
      const delivered = handlers.batch!(batch);
      await eventually("the batch's statement waiting on the other's inbox rows", async () =>
        (await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%inbox%'")).rows.length > 0, 10_000);
      await other.query("COMMIT");
      await delivered;
    } finally {
      other.release();
    }
    assert.deepEqual((await applied(consumer)).map((r) => r.n), [1], "applied by the other replica alone");
    assert.match(await metrics.registry.metrics(), new RegExp(`ttip_inbox_events_total\\{consumer="${consumer}",outcome="duplicate"\\} 1\\b`));
  });
});
