// consumeEventBatches on JetStream: many events per transaction, each applied
// once across a failed batch (rolled back whole, delivered again) and events
// the inbox already holds.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { InProcessBus, JetStreamBus, type DeliveredMessage } from "../src/bus.js";
import { createPool, migrate } from "../src/db.js";
import { Metrics } from "../src/metrics.js";
import { consumeEventBatches } from "../src/outbox.js";
import { captureLogger, createTestDatabase, eventually, testEnv, uniqueName, type TestDatabase } from "../src/testing/index.js";

const { logger } = captureLogger("silent");

describe("consumeEventBatches (JetStream, PostgreSQL)", () => {
  let db: TestDatabase;
  let bus: JetStreamBus;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "batches", undefined);
    await db.pool.query("CREATE TABLE batches.applied (event_id uuid NOT NULL, batch int NOT NULL)");
    bus = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream: uniqueName("B").toUpperCase(), subjectPrefix: uniqueName("ev"), logger, redeliveryDelayMs: 50 });
  });
  after(async () => {
    await bus.close();
    await db.drop();
  });

  /** The bus, counting every delivery the consumer gets by id (duplicates included, before its inbox skips them). */
  const countingDeliveries = (delivered: Map<string, number>, on: JetStreamBus | InProcessBus = bus) => {
    const counting = Object.create(on) as typeof on;
    counting.subscribeBatches = (o) =>
      on.subscribeBatches({
        ...o,
        handler: async (messages) => {
          for (const m of messages) delivered.set(m.id, (delivered.get(m.id) ?? 0) + 1);
          await o.handler(messages);
        },
      });
    return counting;
  };

  test("each event applied once, in batches, across a failed batch and events applied before", async () => {
    const ids: string[] = Array.from({ length: 300 }, () => randomUUID());
    // Ten were applied by an earlier run: recorded in the inbox, not to be applied again.
    const earlier = ids.slice(0, 10);
    await db.pool.query("INSERT INTO batches.inbox (consumer, event_id, subject) SELECT 'c1', unnest($1::uuid[]), 'ttip.x.y'", [earlier]);
    for (const id of ids) await bus.publish({ id, subject: "ttip.x.y", data: new Uint8Array([1]) });
    let calls = 0;
    let failed = false;
    const metrics = new Metrics();
    const sub = await consumeEventBatches({
      bus, pool: db.pool, schema: "batches", consumer: "c1", subject: "ttip.x.y", logger, metrics, maxBatch: 64,
      handleBatch: async (messages, tx) => {
        calls++;
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), $2", [messages.map((m) => m.id), calls]);
        // The second batch fails after writing: its inbox rows and writes roll back together.
        if (calls === 2 && !failed) {
          failed = true;
          throw new Error("simulated failure mid-batch");
        }
      },
    });
    const count = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM batches.applied")).rows[0].n;
    // Every new event applied, and every one the inbox already held seen (and counted) as a duplicate.
    await eventually("every event handled", async () =>
      (await count()) >= ids.length - earlier.length && /ttip_inbox_events_total\{consumer="c1",outcome="duplicate"\} 10\b/.test(await metrics.registry.metrics()), 20_000);
    await sub.stop();
    const { rows } = await db.pool.query<{ event_id: string; n: number }>("SELECT event_id, count(*)::int AS n FROM batches.applied GROUP BY event_id");
    assert.equal(rows.length, ids.length - earlier.length, "every new event applied");
    assert.ok(rows.every((r) => r.n === 1), "none twice");
    assert.ok(rows.every((r) => !earlier.includes(r.event_id)), "none the inbox already held");
    assert.ok(failed);
    const batches = (await db.pool.query<{ n: number }>("SELECT count(DISTINCT batch)::int AS n FROM batches.applied")).rows[0].n;
    assert.ok(batches < ids.length / 4, `batched: ${batches} transactions for ${ids.length} events`);
    const text = await metrics.registry.metrics();
    assert.match(text, /ttip_inbox_events_total\{consumer="c1",outcome="duplicate"\} 10/);
  });

  test("effectCte: inbox and effect in one statement; events recorded before apply nothing; a shared lock waits for an exclusive holder", async () => {
    const ids: string[] = Array.from({ length: 120 }, () => randomUUID());
    const earlier = ids.slice(0, 5);
    await db.pool.query("INSERT INTO batches.inbox (consumer, event_id, subject) SELECT 'c3', unnest($1::uuid[]), 'ttip.x.w'", [earlier]);
    for (const id of ids) await bus.publish({ id, subject: "ttip.x.w", data: new Uint8Array([1]) });
    // A rebuild holds the lock exclusively: no batch lands until it lets go.
    const rebuild = await db.pool.connect();
    await rebuild.query("SELECT pg_advisory_lock(hashtext('test.rebuild'))");
    const sub = await consumeEventBatches({
      bus, pool: db.pool, schema: "batches", consumer: "c3", subject: "ttip.x.w", logger, maxBatch: 64, sharedLock: "test.rebuild",
      effectCte: (messages, first) => ({
        sql: `applied AS (INSERT INTO batches.applied SELECT e, 0 FROM unnest($${first}::uuid[]) AS e WHERE e IN (SELECT event_id FROM fresh))`,
        values: [messages.map((m) => m.id)],
      }),
    });
    const count = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM batches.applied WHERE batch = 0")).rows[0].n;
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await count(), 0, "nothing lands while the lock is held exclusively");
    await rebuild.query("SELECT pg_advisory_unlock(hashtext('test.rebuild'))");
    rebuild.release();
    await eventually("every new event applied", async () => (await count()) >= ids.length - earlier.length, 20_000);
    await sub.stop();
    const { rows } = await db.pool.query<{ event_id: string; n: number }>("SELECT event_id, count(*)::int AS n FROM batches.applied WHERE batch = 0 GROUP BY event_id");
    assert.equal(rows.length, ids.length - earlier.length, "every new event applied");
    assert.ok(rows.every((r) => r.n === 1 && !earlier.includes(r.event_id)), "each once, none the inbox held before");
  });

  test("exclusiveLock: a batch's statement, or its transaction with handleBatch, holds the lock exclusively before it applies anything", async () => {
    const handlers: ((messages: DeliveredMessage[]) => Promise<void>)[] = [];
    const direct = Object.create(bus) as JetStreamBus;
    direct.subscribeBatches = async (o) => {
      handlers.push(o.handler);
      return { stop: async () => undefined };
    };
    // The batch number says whether the applying statement saw its session hold the lock exclusively.
    const held = "CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND mode = 'ExclusiveLock' AND granted) THEN 31 ELSE 30 END";
    const options = { bus: direct, pool: db.pool, schema: "batches", subject: "ttip.x.x", logger, maxBatch: 64, exclusiveLock: "test.rollups" };
    await consumeEventBatches({
      ...options, consumer: "c31",
      effectCte: (messages, first) => ({
        sql: `applied AS (INSERT INTO batches.applied SELECT e, ${held} FROM unnest($${first}::uuid[]) AS e WHERE e IN (SELECT event_id FROM fresh))`,
        values: [messages.map((m) => m.id)],
      }),
    });
    await consumeEventBatches({
      ...options, consumer: "c32",
      handleBatch: async (messages, tx) => {
        await tx.query(`INSERT INTO batches.applied SELECT e, ${held} + 2 FROM unnest($1::uuid[]) AS e`, [messages.map((m) => m.id)]);
      },
    });
    const ids = [randomUUID(), randomUUID()];
    for (const [i, handler] of handlers.entries()) await handler([{ id: ids[i], subject: "ttip.x.x", data: new Uint8Array([1]), deliveryCount: 1 }]);
    const { rows } = await db.pool.query<{ batch: number }>("SELECT batch FROM batches.applied WHERE event_id = ANY($1::uuid[]) ORDER BY batch", [ids]);
    assert.deepEqual(rows.map((r) => r.batch), [31, 33], "both applied under the exclusive lock");
    await assert.rejects(consumeEventBatches({ ...options, consumer: "c33", sharedLock: "test.rebuild", effectCte: () => undefined }), /not both/);
  });

  test("effectCte: the same events delivered twice at once (redelivered while the first delivery is applied), in either order, are applied once", async () => {
    const ids: string[] = Array.from({ length: 40 }, () => randomUUID());
    // The bus hands the same events to two handler calls at once, as a redelivery after the ack wait does.
    let handler!: (messages: DeliveredMessage[]) => Promise<void>;
    const twice = Object.create(bus) as JetStreamBus;
    twice.subscribeBatches = async (o) => {
      handler = o.handler;
      return { stop: async () => undefined };
    };
    await consumeEventBatches({
      bus: twice, pool: db.pool, schema: "batches", consumer: "c21", subject: "ttip.x.r", logger, maxBatch: 64, sharedLock: "test.rebuild.twice",
      effectCte: (messages, first) => ({
        sql: `applied AS (INSERT INTO batches.applied SELECT e, 21 FROM unnest($${first}::uuid[]) AS e WHERE e IN (SELECT event_id FROM fresh))`,
        values: [messages.map((m) => m.id)],
      }),
    });
    const delivered = ids.map((id) => ({ id, subject: "ttip.x.r", data: new Uint8Array([1]), deliveryCount: 1 }));
    // Held back by an exclusive holder of the lock, both statements start (their snapshots taken) before either commits.
    const rebuild = await db.pool.connect();
    try {
      await rebuild.query("SELECT pg_advisory_lock(hashtext('test.rebuild.twice'))");
      // The second in the opposite order: the two may deadlock on the inbox's rows, and the one refused is tried again.
      const both = Promise.allSettled([handler(delivered), handler([...delivered].reverse())]);
      await new Promise((r) => setTimeout(r, 200));
      await rebuild.query("SELECT pg_advisory_unlock(hashtext('test.rebuild.twice'))");
      const outcomes = await both;
      assert.ok(outcomes.every((o) => o.status === "fulfilled"), "both deliveries settled as applied");
    } finally {
      rebuild.release();
    }
    const { rows } = await db.pool.query<{ event_id: string; n: number }>("SELECT event_id, count(*)::int AS n FROM batches.applied WHERE batch = 21 GROUP BY event_id");
    assert.equal(rows.length, ids.length, "every event applied");
    assert.ok(rows.every((r) => r.n === 1), "none twice");
  });

  test("idempotentEffect: no inbox row; an event delivered twice, and its key under another id, change nothing more; only effectCte takes it", async () => {
    // The effect is keyed by what the event reports (its first byte), as qr counts a tip by its id.
    await db.pool.query("CREATE TABLE batches.keyed (key int PRIMARY KEY, event_id uuid NOT NULL)");
    const ids: string[] = Array.from({ length: 30 }, () => randomUUID());
    const other = randomUUID(); // reports key 0 again, under an id of its own
    for (const [i, id] of ids.entries()) await bus.publish({ id, subject: "ttip.x.k", data: new Uint8Array([i]) });
    await bus.publish({ id: ids[5], subject: "ttip.x.k", data: new Uint8Array([5]) }); // the same id: the bus may drop it
    await bus.publish({ id: other, subject: "ttip.x.k", data: new Uint8Array([0]) });
    const sentinel = randomUUID();
    await bus.publish({ id: sentinel, subject: "ttip.x.k", data: new Uint8Array([200]) });
    let handler!: (messages: DeliveredMessage[]) => Promise<void>;
    const both = Object.create(bus) as JetStreamBus;
    both.subscribeBatches = (o) => {
      handler = o.handler;
      return bus.subscribeBatches(o);
    };
    const committed: string[] = [];
    const sub = await consumeEventBatches({
      bus: both, pool: db.pool, schema: "batches", consumer: "c22", subject: "ttip.x.k", logger, maxBatch: 8, idempotentEffect: true,
      effectCte: (messages, first) => ({
        sql: `kept AS (INSERT INTO batches.keyed SELECT k, e FROM unnest($${first}::int[], $${first + 1}::uuid[]) AS t(k, e) ON CONFLICT DO NOTHING)`,
        values: [messages.map((m) => m.data[0]), messages.map((m) => m.id)],
      }),
      afterCommit: (messages) => committed.push(...messages.map((m) => m.id)),
    });
    const keyed = async () => (await db.pool.query<{ key: number; event_id: string }>("SELECT key, event_id FROM batches.keyed ORDER BY key")).rows;
    await eventually("the last event applied", async () => (await keyed()).some((r) => r.key === 200), 20_000);
    // Every batch again at once, as a redelivery after the ack wait hands it over.
    await handler(ids.map((id, i) => ({ id, subject: "ttip.x.k", data: new Uint8Array([i]), deliveryCount: 2 })));
    await sub.stop();
    const rows = await keyed();
    assert.deepEqual(rows.map((r) => r.key), [...ids.keys(), 200], "each key once");
    assert.equal(rows[0].event_id, ids[0], "key 0 as its first event wrote it");
    const inbox = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM batches.inbox WHERE consumer = 'c22'");
    assert.equal(inbox.rows[0].n, 0, "no inbox row");
    assert.ok(committed.includes(other) && committed.includes(sentinel), "afterCommit hears the batches that committed");
    await assert.rejects(
      consumeEventBatches({ bus, pool: db.pool, schema: "batches", consumer: "c23", subject: "ttip.x.k", logger, idempotentEffect: true, handleBatch: async () => undefined }),
      /idempotentEffect takes effectCte alone/,
    );
  });

  test("effectCte declining a batch (null): handleBatch applies it in a transaction; afterCommit hears each applied event once, whichever way it went", async () => {
    const ids: string[] = Array.from({ length: 60 }, () => randomUUID());
    const earlier = ids.slice(0, 3);
    await db.pool.query("INSERT INTO batches.inbox (consumer, event_id, subject) SELECT 'c16', unnest($1::uuid[]), 'ttip.x.q'", [earlier]);
    // Every event whose first byte is 1 needs the transaction (as a batch needing a table made first would): the last
    // 20, so that batches of the first 40 go by effectCte alone, however many of what is queued each takes.
    for (const [i, id] of ids.entries()) await bus.publish({ id, subject: "ttip.x.q", data: new Uint8Array([i >= 40 ? 1 : 0]) });
    const committed: string[] = [];
    let declined = 0;
    const sub = await consumeEventBatches({
      bus, pool: db.pool, schema: "batches", consumer: "c16", subject: "ttip.x.q", logger, maxBatch: 8,
      effectCte: (messages, first) => {
        if (messages.some((m) => m.data[0] === 1)) {
          declined++;
          return null;
        }
        return {
          sql: `applied AS (INSERT INTO batches.applied SELECT e, 6 FROM unnest($${first}::uuid[]) AS e WHERE e IN (SELECT event_id FROM fresh))`,
          values: [messages.map((m) => m.id)],
        };
      },
      handleBatch: async (messages, tx) => {
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), 7", [messages.map((m) => m.id)]);
      },
      afterCommit: (messages) => committed.push(...messages.map((m) => m.id)),
    });
    const fresh = ids.slice(earlier.length);
    await eventually("every new event applied", async () => committed.length >= fresh.length, 20_000);
    await sub.stop();
    const { rows } = await db.pool.query<{ event_id: string; batch: number }>("SELECT event_id, batch FROM batches.applied WHERE event_id = ANY($1::uuid[])", [ids]);
    assert.deepEqual(rows.map((r) => r.event_id).sort(), [...fresh].sort(), "each new event applied once, none the inbox held before");
    assert.deepEqual([...committed].sort(), [...fresh].sort(), "afterCommit heard each once");
    assert.ok(declined > 0 && rows.some((r) => r.batch === 7) && rows.some((r) => r.batch === 6), `both ways taken (declined ${declined})`);
  });

  test("beforeTransaction: asked once per delivered batch with no transaction open, its answer handed to handleBatch; a failure brings the batch back with nothing written", async () => {
    const ids: string[] = Array.from({ length: 40 }, () => randomUUID());
    for (const id of ids) await bus.publish({ id, subject: "ttip.x.b", data: new Uint8Array([1]) });
    // One connection: a statement made by beforeTransaction inside the batch's transaction would wait for itself, and nothing would be applied.
    const pool = createPool(db.url, { max: 1 });
    let asks = 0;
    let answered = 0;
    const sub = await consumeEventBatches<{ ask: number }>({
      bus, pool, schema: "batches", consumer: "c5", subject: "ttip.x.b", logger, maxBatch: 64,
      beforeTransaction: async (messages) => {
        asks++;
        const { rows } = await pool.query<{ n: number }>("SELECT $1::int AS n", [messages.length]);
        assert.equal(rows[0].n, messages.length);
        // The first ask fails (the other service cannot answer now): the batch comes back later.
        if (asks === 1) throw new Error("peer unavailable");
        return { ask: asks };
      },
      handleBatch: async (messages, tx, prepared) => {
        answered++;
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), $2", [messages.map((m) => m.id), 1000 + prepared.ask]);
      },
    });
    const applied = async () => (await db.pool.query<{ batch: number }>("SELECT batch FROM batches.applied WHERE event_id = ANY($1::uuid[])", [ids])).rows;
    await eventually("every event applied", async () => (await applied()).length === ids.length, 20_000);
    await sub.stop();
    await pool.end();
    const batches = (await applied()).map((r) => r.batch);
    assert.ok(asks >= 2 && answered >= 1);
    assert.ok(batches.every((b) => b >= 1002 && b <= 1000 + asks), `each applied with the answer of its own delivery's ask, none with the failed first: ${[...new Set(batches)]}`);
  });

  test("beforeTransaction failing again and again is asked less and less often, not at each redelivery; a stop does not wait out the wait", async () => {
    const id = randomUUID();
    await bus.publish({ id, subject: "ttip.x.w", data: new Uint8Array([1]) });
    let down = true;
    const asked: number[] = [];
    const sub = await consumeEventBatches({
      bus, pool: db.pool, schema: "batches", consumer: "c-wait", subject: "ttip.x.w", logger, maxBatch: 8,
      askRetryWaitMs: { firstMs: 100, maxMs: 200 },
      beforeTransaction: async () => {
        asked.push(Date.now());
        if (down) throw new Error("peer unavailable");
      },
      handleBatch: async (messages, tx) => {
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), 77", [messages.map((m) => m.id)]);
      },
    });
    // Three asks first (a consumer's start and the bus's pulls may be slow on a busy machine), then a window of 1.5 s.
    await eventually("asked three times", () => asked.length >= 3, 10_000);
    const from = asked.length;
    await new Promise((r) => setTimeout(r, 1_500));
    const whileDown = asked.length - from;
    // The bus brings the batch back every 50 ms: 30 asks in 1.5 s before; waiting the longest wait (200 ms) at most ~8.
    assert.ok(whileDown <= 10, `asked ${whileDown} times in 1.5 s`);
    const gaps = asked.slice(1).map((t, i) => t - asked[i]);
    // A few ms short allowed: a timer's wait and Date.now round to the millisecond apart (a 199 ms gap seen once); a redelivery is 50 ms.
    assert.ok(gaps.slice(2).every((g) => g >= 195), `from the third failure on, each ask waits the longest wait: ${gaps}`);
    down = false;
    await eventually("applied once the peer answers", async () => (await db.pool.query("SELECT 1 FROM batches.applied WHERE event_id = $1", [id])).rowCount === 1, 10_000);
    await sub.stop();

    // A minute's wait under way: stop ends it.
    await bus.publish({ id: randomUUID(), subject: "ttip.x.w2", data: new Uint8Array([1]) });
    let failures = 0;
    const waiting = await consumeEventBatches({
      bus, pool: db.pool, schema: "batches", consumer: "c-wait2", subject: "ttip.x.w2", logger, maxBatch: 8,
      askRetryWaitMs: { firstMs: 60_000, maxMs: 60_000 },
      beforeTransaction: async () => {
        failures++;
        throw new Error("peer unavailable");
      },
      handleBatch: async () => undefined,
    });
    await eventually("the second failure, now waiting a minute", async () => failures >= 2, 10_000);
    const stopAt = Date.now();
    await waiting.stop();
    assert.ok(Date.now() - stopAt < 10_000, `stopped in ${Date.now() - stopAt} ms`);
  });

  test("an event that cannot be applied holds back none of the others in its batch", async () => {
    const ids: string[] = Array.from({ length: 100 }, () => randomUUID());
    const poison = ids[37];
    let poisonDeliveries = 0;
    for (const id of ids) await bus.publish({ id, subject: "ttip.x.z", data: new Uint8Array([1]) });
    const sub = await consumeEventBatches({
      bus, pool: db.pool, schema: "batches", consumer: "c2", subject: "ttip.x.z", logger, maxBatch: 64,
      handleBatch: async (messages, tx) => {
        // batch: minus the delivery count (this test's rows are told apart by a negative one).
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), unnest($2::int[])", [messages.map((m) => m.id), messages.map((m) => -m.deliveryCount)]);
        const bad = messages.find((m) => m.id === poison);
        if (bad) {
          poisonDeliveries = Math.max(poisonDeliveries, bad.deliveryCount);
          throw new Error("cannot be applied");
        }
      },
    });
    const applied = async () =>
      (await db.pool.query<{ event_id: string; n: number; deliveries: number }>("SELECT event_id, count(*)::int AS n, -max(batch) AS deliveries FROM batches.applied WHERE batch < 0 GROUP BY event_id")).rows;
    // The others applied, and the poison event back at least twice more meanwhile.
    await eventually("the others applied, the bad one redelivered", async () => (await applied()).length >= ids.length - 1 && poisonDeliveries >= 3, 20_000);
    await sub.stop();
    const rows = await applied();
    assert.equal(rows.length, ids.length - 1, "every other event applied");
    assert.ok(rows.every((r) => r.n === 1 && r.event_id !== poison), "each once, the bad one never");
    // Applied when first delivered: none waited for its batch to come back without the bad one.
    const first = Math.min(...rows.map((r) => r.deliveries));
    assert.equal(first, 1, "a first delivery reports 1");
    assert.deepEqual(rows.filter((r) => r.deliveries !== first).map((r) => r.event_id), []);
  });

  test("a batch partly applied: the bus acknowledges the events applied and brings back only the one that failed", async () => {
    const ids: string[] = Array.from({ length: 100 }, () => randomUUID());
    const poison = ids[37];
    for (const id of ids) await bus.publish({ id, subject: "ttip.x.p", data: new Uint8Array([1]) });
    const delivered = new Map<string, number>();
    const sub = await consumeEventBatches({
      bus: countingDeliveries(delivered), pool: db.pool, schema: "batches", consumer: "c4", subject: "ttip.x.p", logger, maxBatch: 64,
      handleBatch: async (messages, tx) => {
        // 100000: this test's rows (the first test numbers its batches from 1).
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), 100000", [messages.map((m) => m.id)]);
        if (messages.some((m) => m.id === poison)) throw new Error("cannot be applied");
      },
    });
    const applied = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM batches.applied WHERE batch = 100000")).rows[0].n;
    await eventually("the others applied, the bad one back twice more", async () => (await applied()) >= ids.length - 1 && (delivered.get(poison) ?? 0) >= 3, 20_000);
    await sub.stop();
    assert.equal(await applied(), ids.length - 1, "every other event applied once");
    // Its batch-mates were acknowledged with the batch: none came again with it.
    assert.deepEqual(ids.filter((id) => id !== poison && delivered.get(id) !== 1), [], "every other event delivered once");
  });

  test("make run's in-process bus: an event that cannot be applied holds back none after it, and comes back alone", async () => {
    const local = new InProcessBus(logger, 50);
    const ids: string[] = Array.from({ length: 100 }, () => randomUUID());
    const poison = ids[37];
    for (const id of ids) await local.publish({ id, subject: "ttip.x.q", data: new Uint8Array([1]) });
    const delivered = new Map<string, number>();
    const sub = await consumeEventBatches({
      bus: countingDeliveries(delivered, local), pool: db.pool, schema: "batches", consumer: "c40", subject: "ttip.x.q", logger, maxBatch: 64,
      handleBatch: async (messages, tx) => {
        // 800000: this test's rows.
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), 800000", [messages.map((m) => m.id)]);
        if (messages.some((m) => m.id === poison)) throw new Error("cannot be applied");
      },
    });
    const later = randomUUID();
    await local.publish({ id: later, subject: "ttip.x.q", data: new Uint8Array([1]) });
    const applied = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM batches.applied WHERE batch = 800000")).rows[0].n;
    try {
      await eventually("the others and a later one applied, the bad one back twice more", async () => (await applied()) >= ids.length && (delivered.get(poison) ?? 0) >= 3, 20_000);
    } finally {
      await sub.stop();
      await local.close();
    }
    assert.equal(await applied(), ids.length, "every other event, and the later one, applied once");
    assert.deepEqual([...ids, later].filter((id) => id !== poison && delivered.get(id) !== 1), [], "none delivered again with the bad one");
  });

  test("make run's in-process bus: an event that cannot be applied, alone in its batch (a quiet system's), holds back none after it", async () => {
    const local = new InProcessBus(logger, 50);
    const poison = randomUUID();
    const delivered = new Map<string, number>();
    const sub = await consumeEventBatches({
      bus: countingDeliveries(delivered, local), pool: db.pool, schema: "batches", consumer: "c41", subject: "ttip.x.r", logger, maxBatch: 64,
      handleBatch: async (messages, tx) => {
        // 810000: this test's rows.
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), 810000", [messages.map((m) => m.id)]);
        if (messages.some((m) => m.id === poison)) throw new Error("cannot be applied");
      },
    });
    const later = Array.from({ length: 5 }, () => randomUUID());
    const applied = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM batches.applied WHERE batch = 810000")).rows[0].n;
    try {
      await local.publish({ id: poison, subject: "ttip.x.r", data: new Uint8Array([1]) });
      await eventually("the bad one delivered alone", async () => (delivered.get(poison) ?? 0) >= 1);
      for (const id of later) await local.publish({ id, subject: "ttip.x.r", data: new Uint8Array([1]) });
      // Before, the bad one was delivered again in place for good: none after it was ever applied.
      await eventually("the later ones applied, the bad one back again", async () => (await applied()) >= later.length && (delivered.get(poison) ?? 0) >= 2, 20_000);
    } finally {
      await sub.stop();
      await local.close();
    }
    assert.equal(await applied(), later.length, "each later event applied once");
  });

  test("make run's in-process bus: two messages that always fail, each alone (a subscriber's), are delivered again after the wait, not in turns without a pause; the others go on", async () => {
    const local = new InProcessBus(logger, 50);
    const poisons = [randomUUID(), randomUUID()];
    const delivered = new Map<string, number>();
    const seen: string[] = [];
    const sub = await local.subscribe({
      durable: "s42", subject: "ttip.x.p",
      handler: async (m) => {
        delivered.set(m.id, (delivered.get(m.id) ?? 0) + 1);
        if ((poisons as string[]).includes(m.id)) throw new Error("cannot be applied");
        seen.push(m.id);
      },
    });
    const later = randomUUID();
    try {
      for (const id of [...poisons, later]) await local.publish({ id, subject: "ttip.x.p", data: new Uint8Array([1]) });
      await eventually("the later one applied", async () => seen.includes(later));
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      await sub.stop();
      await local.close();
    }
    // Before, thousands in that second: each one's failure put the other first, due at once.
    for (const id of poisons) assert.ok((delivered.get(id) ?? 0) < 30, `delivered ${delivered.get(id)} times in about a second`);
  });

  test("changesState: an event that changes nothing gets no inbox row or handler call, and is acknowledged with its batch, even when a batch-mate fails", async () => {
    const ids: string[] = Array.from({ length: 60 }, () => randomUUID());
    const idle = new Set(ids.filter((_, i) => i % 3 === 0));
    const poison = ids[37];
    for (const id of ids) await bus.publish({ id, subject: "ttip.x.n", data: new Uint8Array([idle.has(id) ? 0 : 1]) });
    const delivered = new Map<string, number>();
    const sub = await consumeEventBatches({
      bus: countingDeliveries(delivered), pool: db.pool, schema: "batches", consumer: "c6", subject: "ttip.x.n", logger, maxBatch: 64,
      changesState: (m) => m.data[0] === 1,
      handleBatch: async (messages, tx) => {
        assert.deepEqual(messages.filter((m) => idle.has(m.id)), [], "no event that changes nothing reaches the handler");
        // 200000: this test's rows.
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), 200000", [messages.map((m) => m.id)]);
        if (messages.some((m) => m.id === poison)) throw new Error("cannot be applied");
      },
    });
    const applied = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM batches.applied WHERE batch = 200000")).rows[0].n;
    await eventually("the others applied, the bad one back twice more", async () => (await applied()) >= 39 && (delivered.get(poison) ?? 0) >= 3, 20_000);
    await sub.stop();
    assert.equal(await applied(), 39, "the 40 that change something, but the bad one, applied once");
    const { rows } = await db.pool.query<{ event_id: string }>("SELECT event_id FROM batches.inbox WHERE consumer = 'c6'");
    assert.equal(rows.length, 39, "an inbox row for each event applied");
    assert.deepEqual(rows.filter((r) => idle.has(r.event_id)), [], "none for an event that changes nothing");
    assert.deepEqual(ids.filter((id) => id !== poison && delivered.get(id) !== 1), [], "every other event delivered once, those that change nothing included");
  });

  test("changesState that throws (an event it cannot read) holds back none of its batch-mates: the event goes to the transaction and fails there alone", async () => {
    const ids: string[] = Array.from({ length: 60 }, () => randomUUID());
    const poison = ids[37];
    for (const id of ids) await bus.publish({ id, subject: "ttip.x.u", data: new Uint8Array([id === poison ? 9 : 1]) });
    const delivered = new Map<string, number>();
    const unreadable = (m: DeliveredMessage) => {
      if (m.data[0] === 9) throw new Error("not an event this consumer can decode");
    };
    const sub = await consumeEventBatches({
      bus: countingDeliveries(delivered), pool: db.pool, schema: "batches", consumer: "c31", subject: "ttip.x.u", logger, maxBatch: 64,
      changesState: (m) => (unreadable(m), true),
      handleBatch: async (messages, tx) => {
        // 700000: this test's rows.
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), 700000", [messages.map((m) => m.id)]);
        for (const m of messages) unreadable(m);
      },
    });
    const applied = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM batches.applied WHERE batch = 700000")).rows[0].n;
    await eventually("the others applied, the unreadable one back twice more", async () => (await applied()) >= ids.length - 1 && (delivered.get(poison) ?? 0) >= 3, 20_000);
    await sub.stop();
    assert.equal(await applied(), ids.length - 1, "every other event applied once");
    assert.deepEqual(ids.filter((id) => id !== poison && delivered.get(id) !== 1), [], "every other event delivered once: none brought back with the unreadable one");
  });

  test("afterCommit gets each event once, after its batch committed: not for a batch rolled back and applied again", async () => {
    const ids: string[] = Array.from({ length: 40 }, () => randomUUID());
    for (const id of ids) await bus.publish({ id, subject: "ttip.x.c", data: new Uint8Array([1]) });
    let calls = 0;
    const reported = new Map<string, number>();
    const sub = await consumeEventBatches({
      bus, pool: db.pool, schema: "batches", consumer: "c7", subject: "ttip.x.c", logger, maxBatch: 64,
      handleBatch: async (messages, tx) => {
        calls++;
        // 300000: this test's rows.
        await tx.query("INSERT INTO batches.applied SELECT unnest($1::uuid[]), 300000", [messages.map((m) => m.id)]);
        if (calls === 1) throw new Error("the first batch fails after its handler's work");
      },
      afterCommit: (messages) => {
        for (const m of messages) reported.set(m.id, (reported.get(m.id) ?? 0) + 1);
      },
    });
    const applied = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM batches.applied WHERE batch = 300000")).rows[0].n;
    await eventually("every event applied", async () => (await applied()) === ids.length && reported.size === ids.length);
    await sub.stop();
    assert.ok(calls > 1, "the failed batch was applied again");
    assert.deepEqual(ids.filter((id) => reported.get(id) !== 1), [], "each event reported once");
    const { rows } = await db.pool.query<{ event_id: string }>("SELECT event_id FROM batches.inbox WHERE consumer = 'c7'");
    assert.equal(rows.length, ids.length, "and committed once");
  });

  test("an afterCommit that throws changes nothing about the committed batch: applied once, not delivered again", async () => {
    const ids: string[] = Array.from({ length: 20 }, () => randomUUID());
    for (const id of ids) await bus.publish({ id, subject: "ttip.x.d", data: new Uint8Array([1]) });
    const handled = new Map<string, number>();
    const metrics = new Metrics();
    const sub = await consumeEventBatches({
      bus, pool: db.pool, schema: "batches", consumer: "c8", subject: "ttip.x.d", logger, metrics, maxBatch: 64,
      handleBatch: async (messages) => {
        for (const m of messages) handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      },
      afterCommit: () => {
        throw new Error("a watcher's signal failed");
      },
    });
    await eventually("every event handled", async () => handled.size === ids.length);
    // Time for a redelivery or a split to show, had the failure been taken as the batch's.
    await new Promise((r) => setTimeout(r, 500));
    await sub.stop();
    assert.deepEqual(ids.filter((id) => handled.get(id) !== 1), [], "each event handled once");
    const text = await metrics.registry.metrics();
    assert.match(text, /^ttip_inbox_events_total\{consumer="c8",outcome="applied"\} 20$/m);
    assert.doesNotMatch(text, /^ttip_inbox_events_total\{consumer="c8",outcome="duplicate"\}/m);
  });

  test("a batch's transaction takes the idle connection that has run the inbox statement, not the last released", async () => {
    const pool = createPool(db.url, { max: 3 });
    const backends: number[] = [];
    const sub = await consumeEventBatches({
      bus, pool, schema: "batches", consumer: "c9", subject: "ttip.x.e", logger, metrics: new Metrics(), maxBatch: 64,
      handleBatch: async (_messages, tx) => void backends.push((await tx.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0].pid),
    });
    try {
      await bus.publish({ id: randomUUID(), subject: "ttip.x.e", data: new Uint8Array([1]) });
      // Its transaction committed and its connection back in the pool (the handler runs before the commit).
      await eventually("the first batch applied", async () => backends.length === 1 && pool.idleCount === pool.totalCount);
      // The batch's connection is handed out first; two others are released after it, on top.
      const held = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
      const pidOf = async (c: (typeof held)[0]) => (await c.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0].pid;
      assert.equal(await pidOf(held[0]), backends[0]);
      const others = [await pidOf(held[1]), await pidOf(held[2])];
      held.forEach((c) => c.release());
      await bus.publish({ id: randomUUID(), subject: "ttip.x.e", data: new Uint8Array([1]) });
      await eventually("the second batch applied", async () => backends.length === 2);
      assert.equal(backends[1], backends[0], `the connection that ran the inbox statement (the last released: ${others[1]})`);
    } finally {
      await sub.stop();
      await pool.end();
    }
  });
});
