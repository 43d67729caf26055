// Payment's subjects are read by one durable ("analytics-payment") that took over the durable each
// of them had. The inbox still keys each event by its subject (consumerName), so an event the old
// durables applied, delivered again to the new one, is found and counted once; the new durable
// starts where the old ones had got to, and they are deleted. And a tip's events out of order in
// one batch add what they add in order.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { connect, type NatsConnection } from "nats";
import { PaymentMethod, TipCreatedSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { InProcessBus, JetStreamBus, Metrics, migrate, withTransaction, type BusMessage, type EventBus, type ServiceContext } from "@ttip/runtime";
import { captureLogger, createTestDatabase, eventually, kesMinor, testEnv, uniqueName, type TestDatabase } from "@ttip/runtime/testing";
import { addsAnything, consumerName, factsOf, READERS, SUBJECTS, type Reader } from "../src/facts.js";
import { startConsumers } from "../src/ingest.js";
import { ensurePartitionsAround, RollupBatch } from "../src/store.js";
import { cast, event, generateDay } from "./events.js";

const DAY = 86_400_000;
const EAT = 3 * 3_600_000;
/** The layout before: a durable for each subject, named and keyed consumerName(subject). */
const PER_SUBJECT: Reader[] = SUBJECTS.map((s) => ({ durable: consumerName(s), filter: s, subjects: [s], replaces: [] }));
const PAYMENT = READERS.find((r) => r.durable === "analytics-payment")!;
const TABLES = ["rollups", "workers", "payout_requests", "payout_results", "result_reasons"] as const;

/** A tip's created and succeeded events, now. */
function tip(worker: string, amount: bigint): { created: BusMessage; succeeded: BusMessage } {
  const tipId = randomUUID();
  const common = { tipId, workerId: worker, amount: kesMinor(amount), method: PaymentMethod.MPESA };
  return {
    created: event("ttip.payment.tip_created", TipCreatedSchema, new Date(), common),
    succeeded: event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(), { ...common, fee: kesMinor(0n), net: kesMinor(amount), mpesaReceipt: `R${tipId.slice(0, 8)}`, rating: 4 }),
  };
}

describe("one durable for payment's subjects, taking over the durable each had (real PostgreSQL and JetStream)", () => {
  let db: TestDatabase;
  let nc: NatsConnection;
  const { logger } = captureLogger("silent");
  const day = new Date(Math.floor((Date.now() + EAT) / DAY) * DAY - EAT - 3 * DAY);

  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "analytics", fileURLToPath(new URL("../migrations", import.meta.url)));
    await ensurePartitionsAround(db.pool);
    nc = await connect({ servers: testEnv().natsUrl });
  });
  after(async () => {
    await nc?.close();
    await db?.drop();
  });

  /** What the rollups and side tables hold from the generated day (before `until`), as text. */
  const tables = async (until: Date) => {
    const out: Record<string, string[]> = {};
    for (const t of TABLES) {
      const where = t === "rollups" ? "WHERE bucket < $1" : t === "workers" ? "WHERE first_seen_at < $1" : "";
      out[t] = (await db.pool.query<{ r: string }>(`SELECT x::text AS r FROM analytics.${t} x ${where} ORDER BY 1`, where ? [until] : [])).rows.map((x) => x.r);
    }
    return out;
  };
  const inboxRows = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.inbox")).rows[0].n;
  const durables = async (stream: string) => {
    const names: string[] = [];
    for await (const c of await (await nc.jetstreamManager()).consumers.list(stream)) names.push(c.name);
    return names.sort();
  };
  const metric = async (metrics: Metrics, outcome: string) =>
    Number(new RegExp(`^ttip_inbox_events_total\\{consumer="analytics-payment",outcome="${outcome}"\\} (\\d+)$`, "m").exec(await metrics.registry.metrics())?.[1] ?? 0);
  const empty = () => db.pool.query(`TRUNCATE analytics.inbox, ${TABLES.map((t) => `analytics.${t}`).join(", ")}`);

  /**
   * A generated day ingested by the per-subject durables (acknowledging or not), then the new
   * layout started and a later tip published: answers what the day left, what it leaves after,
   * and how many of payment's events came to the new durable as ones it had applied.
   */
  async function takeOver(seed: number, oldAcks: boolean) {
    await empty();
    const stream = uniqueName("S").toUpperCase();
    const bus = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream, subjectPrefix: uniqueName("ev"), logger, redeliveryDelayMs: 100 });
    try {
      const { events } = generateDay(cast(6, 2), day, 60, seed);
      const counted = events.filter((m) => addsAnything(factsOf(m.subject, m.data)));
      const payments = counted.filter((m) => PAYMENT.subjects.includes(m.subject)).length;
      assert.ok(payments > 0 && payments < counted.length, "the day has payment's events and others");
      for (const m of events) await bus.publish(m);
      // Before: every event applied (its inbox row committed); with oldAcks false none acknowledged,
      // as when a process dies between its commit and its acks, so each comes again.
      const old: EventBus = oldAcks ? bus : {
        publish: (m) => bus.publish(m),
        subscribe: (o) => bus.subscribe(o),
        subscribeBatches: (o) => bus.subscribeBatches({ ...o, handler: async (b) => {
          await o.handler(b);
          throw new Error("died after its commit, before its acks");
        } }),
        close: async () => undefined,
      };
      const stopOld = await startConsumers({ logger, pool: db.pool, bus: old, metrics: new Metrics() } as unknown as ServiceContext, PER_SUBJECT);
      await eventually("the day applied by the per-subject durables", async () => (await inboxRows()) === counted.length);
      const jsm = await nc.jetstreamManager();
      if (oldAcks) {
        await eventually("their acknowledgements taken", async () => {
          for (const r of PER_SUBJECT) if ((await jsm.consumers.info(stream, r.durable)).num_ack_pending) return false;
          return true;
        });
      }
      await stopOld();
      const until = new Date(day.getTime() + DAY);
      const before = await tables(until);
      assert.ok(before.rollups.length > 0);

      const metrics = new Metrics();
      const stop = await startConsumers({ logger, pool: db.pool, bus, metrics } as unknown as ServiceContext);
      try {
        const later = tip(randomUUID(), 700n);
        await bus.publish(later.created);
        await bus.publish(later.succeeded);
        // Delivered in stream order: once the later tip is in, the new durable has had the day's events.
        await eventually("the later tip applied", async () => (await inboxRows()) === counted.length + 2);
        const { rows: [mine] } = await db.pool.query<{ created: number; succeeded: number }>(
          "SELECT sum(created)::int AS created, sum(succeeded)::int AS succeeded FROM analytics.rollups WHERE dim = 1 AND grain = 'd' AND bucket >= $1", [until]);
        assert.deepEqual(mine, { created: 1, succeeded: 1 }, "the later tip counted once");
        return { before, after: await tables(until), payments, again: await metric(metrics, "duplicate"), durables: await durables(stream) };
      } finally {
        await stop();
      }
    } finally {
      await bus.close();
    }
  }

  test("events the per-subject durables applied but did not acknowledge come again to the new durable and change nothing", async () => {
    const r = await takeOver(21, false);
    assert.deepEqual(r.after, r.before, "the day's rollups and side records unchanged");
    assert.ok(r.again >= r.payments, `payment's ${r.payments} events came again and were found in the inbox (${r.again})`);
    assert.ok(r.durables.includes("analytics-payment"));
    for (const name of PAYMENT.replaces) assert.ok(!r.durables.includes(name), `${name} deleted`);
    for (const other of READERS.filter((x) => x !== PAYMENT)) assert.ok(r.durables.includes(other.durable), `${other.durable} kept`);
  });

  test("the new durable starts where the per-subject ones had got to: nothing they acknowledged comes again", async () => {
    const r = await takeOver(22, true);
    assert.deepEqual(r.after, r.before);
    assert.equal(r.again, 0);
    for (const name of PAYMENT.replaces) assert.ok(!r.durables.includes(name), `${name} deleted`);
  });

  test("on the in-process bus too, the new durable starts where the per-subject ones had got to", async () => {
    await empty();
    const bus = new InProcessBus(logger, 10);
    try {
      const { events } = generateDay(cast(4, 2), day, 30, 23);
      const counted = events.filter((m) => addsAnything(factsOf(m.subject, m.data))).length;
      for (const m of events) await bus.publish(m);
      const stopOld = await startConsumers({ logger, pool: db.pool, bus, metrics: new Metrics() } as unknown as ServiceContext, PER_SUBJECT);
      await eventually("the day applied by the per-subject durables", async () => (await inboxRows()) === counted);
      await stopOld();
      const metrics = new Metrics();
      const stop = await startConsumers({ logger, pool: db.pool, bus, metrics } as unknown as ServiceContext);
      try {
        const later = tip(randomUUID(), 900n);
        await bus.publish(later.created);
        await bus.publish(later.succeeded);
        await eventually("the later tip applied", async () => (await inboxRows()) === counted + 2);
        assert.equal(await metric(metrics, "duplicate"), 0, "nothing the per-subject durables had read came again");
        assert.equal(await metric(metrics, "applied"), 2);
      } finally {
        await stop();
      }
    } finally {
      await bus.close();
    }
  });

  test("a tip's success before its creation, in one batch, adds what the two add in order", async () => {
    await empty();
    const bus = new InProcessBus(logger, 10);
    const batches: string[][] = [];
    const recording: EventBus = {
      publish: (m) => bus.publish(m),
      subscribe: (o) => bus.subscribe(o),
      subscribeBatches: (o) => bus.subscribeBatches({ ...o, handler: (b) => {
        batches.push(b.map((m) => m.subject));
        return o.handler(b);
      } }),
      close: () => bus.close(),
    };
    const worker = randomUUID();
    const tips = [tip(worker, 1_000n), tip(worker, 2_500n)];
    const reversed = tips.flatMap((t) => [t.succeeded, t.created]);
    for (const m of reversed) await bus.publish(m);
    const stop = await startConsumers({ logger, pool: db.pool, bus: recording, metrics: new Metrics() } as unknown as ServiceContext);
    try {
      await eventually("the tips applied", async () => (await inboxRows()) === reversed.length);
    } finally {
      await stop();
      await bus.close();
    }
    assert.deepEqual(batches, [reversed.map((m) => m.subject)], "one batch, each success before its creation");
    const far = new Date(Date.now() + 2 * DAY);
    const live = await tables(far);
    const { rows: [w] } = await db.pool.query<{ created: number; succeeded: number; amount: string; rated: number }>(
      `SELECT sum(created)::int AS created, sum(succeeded)::int AS succeeded, sum(amount_minor)::text AS amount, sum(rated_4)::int AS rated
         FROM analytics.rollups WHERE dim = 2 AND id = $1 AND grain = 'h'`, [worker]);
    assert.deepEqual(w, { created: 2, succeeded: 2, amount: "3500", rated: 2 });
    // The same events in order, written by RollupBatch one at a time: the same tables.
    await empty();
    for (const m of tips.flatMap((t) => [t.created, t.succeeded])) {
      await withTransaction(db.pool, async (tx) => {
        const b = new RollupBatch();
        b.add(factsOf(m.subject, m.data));
        await b.write(tx);
      });
    }
    assert.deepEqual(await tables(far), live);
  });
});
