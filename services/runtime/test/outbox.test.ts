import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { connect } from "nats";
import { InProcessBus, JetStreamBus, type EventBus } from "../src/bus.js";
import { migrate, withTransaction } from "../src/db.js";
import { consumeEvents, OutboxRelay, outboxCte, writeOutbox } from "../src/outbox.js";
import { captureLogger, crashBeforeFirstAck, createTestDatabase, eventually, type TestDatabase, testEnv, uniqueName } from "../src/testing/index.js";

const { logger } = captureLogger("silent");

for (const kind of ["jetstream", "in-process"] as const) {
  describe(`outbox -> ${kind} bus -> idempotent consumer`, () => {
    let db: TestDatabase;
    let bus: EventBus;
    const prefix = uniqueName("ev");
    const stream = uniqueName("S").toUpperCase();

    before(async () => {
      db = await createTestDatabase();
      await migrate(db.pool, "payment", undefined);
      await migrate(db.pool, "analytics", undefined);
      await db.pool.query("CREATE TABLE payment.tips (id uuid PRIMARY KEY, worker text NOT NULL, amount_minor bigint NOT NULL)");
      await db.pool.query("CREATE TABLE analytics.worker_totals (worker text PRIMARY KEY, total_minor bigint NOT NULL, tips int NOT NULL)");
      bus =
        kind === "jetstream"
          ? await JetStreamBus.connect({ servers: testEnv().natsUrl, stream, subjectPrefix: prefix, logger, redeliveryDelayMs: 50 })
          : new InProcessBus(logger, 50);
    });
    after(async () => {
      await bus.close();
      await db.drop();
    });

    test("each committed event is applied exactly once despite re-publishing, redelivery and lost acks", async () => {
      const subject = "ttip.payment.tip_succeeded";
      const amounts = [100n, 250n, 5000n, 1n, 999n, 12_345n, 700n, 42n];
      for (const amount of amounts) {
        await withTransaction(db.pool, async (tx) => {
          const id = randomUUID();
          await tx.query("INSERT INTO payment.tips VALUES ($1, 'w1', $2)", [id, amount]);
          await writeOutbox(tx, "payment", { id, subject, data: new TextEncoder().encode(`${amount}`) });
        });
      }
      // A transaction that rolls back leaves no event behind.
      await assert.rejects(
        withTransaction(db.pool, async (tx) => {
          await writeOutbox(tx, "payment", { id: randomUUID(), subject, data: new TextEncoder().encode("1000000") });
          throw new Error("business rule failed");
        }),
      );

      const relay = new OutboxRelay({ pool: db.pool, schema: "payment", bus, logger });
      assert.equal(await relay.flush(), amounts.length);
      // The relay crashed before marking rows published: it publishes them all again.
      await db.pool.query("UPDATE payment.outbox SET published_at = NULL");
      assert.equal(await relay.flush(), amounts.length);
      assert.equal(await relay.flush(), 0);

      let firstFailures = 0;
      const failedOnce = new Set<string>();
      const sub = await consumeEvents({
        bus: crashBeforeFirstAck(bus),
        pool: db.pool,
        schema: "analytics",
        consumer: uniqueName("totals"),
        subject: "ttip.payment.>",
        logger,
        handle: async (m, tx) => {
          await tx.query(
            `INSERT INTO analytics.worker_totals VALUES ('w1', $1, 1)
               ON CONFLICT (worker) DO UPDATE SET total_minor = worker_totals.total_minor + $1, tips = worker_totals.tips + 1`,
            [BigInt(new TextDecoder().decode(m.data))],
          );
          // The handler fails once per event after writing: its writes roll back.
          if (!failedOnce.has(m.id)) {
            failedOnce.add(m.id);
            firstFailures++;
            throw new Error("transient failure");
          }
        },
      });
      const expected = amounts.reduce((a, b) => a + b, 0n);
      await eventually("all events applied", async () => {
        const inbox = await db.pool.query("SELECT count(*)::int AS n FROM analytics.inbox");
        return inbox.rows[0].n === amounts.length && failedOnce.size === amounts.length;
      }, 20_000);
      // Let any further redeliveries arrive before counting.
      await new Promise((r) => setTimeout(r, 1500));
      await sub.stop();

      const totals = await db.pool.query("SELECT total_minor, tips FROM analytics.worker_totals WHERE worker = 'w1'");
      assert.equal(totals.rows[0].total_minor, expected);
      assert.equal(totals.rows[0].tips, amounts.length);
      assert.equal(firstFailures, amounts.length);
      const inbox = await db.pool.query("SELECT count(*)::int AS n FROM analytics.inbox");
      assert.equal(inbox.rows[0].n, amounts.length);
      const unpublished = await db.pool.query("SELECT count(*)::int AS n FROM payment.outbox WHERE published_at IS NULL");
      assert.equal(unpublished.rows[0].n, 0);

      if (kind === "jetstream") {
        // The stream itself holds each event once: the bus deduplicated the re-publish.
        const nc = await connect({ servers: testEnv().natsUrl });
        const info = await (await nc.jetstreamManager()).streams.info(stream);
        assert.equal(info.state.messages, amounts.length);
        await nc.close();
      }
    });
  });
}

describe("outboxCte: a state change and its events in one statement", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "payment", undefined);
    await db.pool.query("CREATE TABLE payment.tips (id uuid PRIMARY KEY, worker text NOT NULL, amount_minor bigint NOT NULL)");
  });
  after(() => db.drop());

  test("writes every event in order with its bytes, or none when the statement fails", async () => {
    const tipId = randomUUID();
    const events = [
      { id: randomUUID(), subject: "ttip.payment.tip_created", data: new Uint8Array([0, 1, 2, 255]) },
      { id: randomUUID(), subject: "ttip.payment.tip_succeeded", data: new Uint8Array([9]), traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
    ];
    const insert = (id: string) => {
      const announced = outboxCte("payment", events, 2);
      return db.pool.query(`WITH tip AS (INSERT INTO payment.tips VALUES ($1, 'w', 100)), ${announced.sql} SELECT 1`, [id, ...announced.values]);
    };
    await insert(tipId);
    const { rows } = await db.pool.query<{ event_id: string; subject: string; payload: Buffer; traceparent: string | null }>(
      "SELECT event_id, subject, payload, traceparent FROM payment.outbox ORDER BY seq",
    );
    assert.deepEqual(rows.map((r) => [r.event_id, r.subject, [...r.payload], r.traceparent]), events.map((e) => [e.id, e.subject, [...e.data], e.traceparent ?? null]));
    // The same tip again fails on its key: the events are not written a second time.
    await assert.rejects(insert(tipId));
    assert.equal((await db.pool.query("SELECT count(*)::int AS n FROM payment.outbox")).rows[0].n, 2);
  });

  test("onlyIfRowsIn: the events are written only if the named CTE (a guarded UPDATE's) has rows", async () => {
    const tipId = randomUUID();
    await db.pool.query("INSERT INTO payment.tips VALUES ($1, 'w', 100)", [tipId]);
    const raise = async (from: number, to: number) => {
      const event = { id: randomUUID(), subject: "ttip.payment.tip_raised", data: new Uint8Array([1]) };
      const announced = outboxCte("payment", [event], 4, "raised");
      await db.pool.query(
        `WITH raised AS (UPDATE payment.tips SET amount_minor = $3 WHERE id = $1 AND amount_minor = $2 RETURNING id), ${announced.sql} SELECT 1`,
        [tipId, from, to, ...announced.values],
      );
      return (await db.pool.query("SELECT count(*)::int AS n FROM payment.outbox WHERE event_id = $1", [event.id])).rows[0].n;
    };
    assert.equal(await raise(100, 200), 1, "the UPDATE matched: its event written");
    assert.equal(await raise(100, 300), 0, "the UPDATE matched nothing: no event");
  });
});
