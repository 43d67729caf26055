// A live batch written by CTEs of the inbox's statement (liveBatchCtes) must leave the tables as
// RollupBatch.write() leaves them for the same events, counting only those the inbox took (fresh).
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { randomUUID } from "node:crypto";
import { DeliveryUpdatedSchema, PaymentMethod, TipFailedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { migrate, withTransaction } from "@ttip/runtime";
import { createTestDatabase, kesMinor, type TestDatabase } from "@ttip/runtime/testing";
import { factsOf, REASON_MAX } from "../src/facts.js";
import { REBUILD_LOCK } from "../src/ingest.js";
import { ensurePartitionsAround, liveBatchCtes, RollupBatch, type LiveEvent } from "../src/store.js";
import { cast, event, generateDay } from "./events.js";

const TABLES = ["rollups", "workers", "payout_requests", "payout_results", "result_reasons"] as const;

describe("a live batch in the inbox's statement (real PostgreSQL)", () => {
  let db: TestDatabase;
  const day = new Date(Date.UTC(2026, 10, 10));

  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "analytics", fileURLToPath(new URL("../migrations", import.meta.url)));
    await ensurePartitionsAround(db.pool, day);
  });
  after(() => db?.drop());

  /** Every row of the tables a batch writes, as text, in one order. */
  const tables = async () => {
    const out: Record<string, string[]> = {};
    for (const t of TABLES) out[t] = (await db.pool.query<{ r: string }>(`SELECT t::text AS r FROM analytics.${t} t ORDER BY 1`)).rows.map((x) => x.r);
    return out;
  };
  const empty = () => db.pool.query(`TRUNCATE ${TABLES.map((t) => `analytics.${t}`).join(", ")}`);

  test("it writes what write() writes for the events the inbox took, and nothing for those it held before", async () => {
    const { events } = generateDay(cast(8, 2), day, 150, 11);
    const live: LiveEvent[] = events.map((m) => ({ id: m.id, applied: factsOf(m.subject, m.data) }));
    // Every fifth event was applied before: the inbox's statement does not answer it as fresh.
    const fresh = live.filter((_, i) => i % 5 !== 0);
    const batch = liveBatchCtes(live, 2);
    assert.ok(batch, "every month it writes has its partition");
    await db.pool.query(`WITH fresh AS (SELECT unnest($1::uuid[]) AS event_id), ${batch.sql} SELECT 1`, [fresh.map((e) => e.id), ...batch.values]);
    const inOneStatement = await tables();
    await empty();
    await withTransaction(db.pool, async (tx) => {
      const b = new RollupBatch();
      for (const e of fresh) b.add(e.applied);
      await b.write(tx);
    });
    const byWrite = await tables();
    for (const t of TABLES) assert.ok(byWrite[t].length > 0, `the day writes ${t}`);
    assert.deepEqual(inOneStatement, byWrite);
    // The same statement again, every event now held before: nothing changes.
    await db.pool.query(`WITH fresh AS (SELECT event_id FROM (SELECT unnest($1::uuid[]) AS event_id) e WHERE false), ${batch.sql} SELECT 1`, [[], ...batch.values]);
    assert.deepEqual(await tables(), byWrite);
  });

  test("a batch writing a month whose partition is not known to exist is declined: write() makes it, in a transaction", async () => {
    const { events } = generateDay(cast(2, 1), new Date(Date.UTC(2031, 0, 5)), 3, 5);
    assert.equal(liveBatchCtes(events.map((m) => ({ id: m.id, applied: factsOf(m.subject, m.data) })), 2), null);
  });

  test("a month's partition made by a batch that ends its transaction is remembered once committed: the month's next batch goes by the inbox's statement", async () => {
    const live = (seed: number) => generateDay(cast(2, 1), new Date(Date.UTC(2037, 2, 5)), 3, seed).events.map((m) => ({ id: m.id, applied: factsOf(m.subject, m.data) }));
    const first = live(7);
    assert.equal(liveBatchCtes(first, 2), null, "the month is new");
    await withTransaction(db.pool, async (tx) => {
      const b = new RollupBatch();
      for (const e of first) b.add(e.applied);
      await b.write(tx, { endsTransaction: true });
    });
    assert.ok(liveBatchCtes(live(8), 2), "the next batch of the month is written by the inbox's statement, its partition not looked up again");
    // Rolled back (no endsTransaction here, and the transaction fails): a month it made is not remembered.
    const other = generateDay(cast(2, 1), new Date(Date.UTC(2037, 5, 5)), 3, 9).events.map((m) => ({ id: m.id, applied: factsOf(m.subject, m.data) }));
    await withTransaction(db.pool, async (tx) => {
      const b = new RollupBatch();
      for (const e of other) b.add(e.applied);
      await b.write(tx);
      throw new Error("the batch failed after its partition was made");
    }).catch(() => undefined);
    assert.equal(liveBatchCtes(other, 2), null, "a partition rolled back with its transaction is not taken as there");
  });

  test("a batch with figures only (SMS sent counts) has the rollups' CTE alone, and writes what write() writes", async () => {
    const at = new Date(Date.UTC(2026, 10, 10, 14));
    const sent = () => event("ttip.notification.delivery_updated", DeliveryUpdatedSchema, at, { deliveryId: randomUUID(), userId: randomUUID(), channel: "sms", status: "sent", templateKey: "TIP_RECEIVED", attempt: 1 });
    const live = [sent(), sent(), sent()].map((m) => ({ id: m.id, applied: factsOf(m.subject, m.data) }));
    const batch = liveBatchCtes(live, 2);
    assert.ok(batch);
    // No side table in the statement: each CTE there opens its table and indexes on every run, with nothing to write.
    assert.deepEqual([...batch.sql.matchAll(/INSERT INTO (analytics\.\w+)/g)].map((m) => m[1]), ["analytics.rollups"]);
    await empty();
    await db.pool.query(`WITH fresh AS (SELECT unnest($1::uuid[]) AS event_id), ${batch.sql} SELECT 1`, [live.map((e) => e.id), ...batch.values]);
    const inOneStatement = await tables();
    await empty();
    await withTransaction(db.pool, async (tx) => {
      const b = new RollupBatch();
      for (const e of live) b.add(e.applied);
      await b.write(tx);
    });
    assert.ok((await tables()).rollups.length > 0);
    assert.deepEqual(inOneStatement, await tables());
  });

  test("rows that exist are added to, and a row another batch made after the statement's snapshot, while it waited for the lock, is added to as well", async () => {
    const at = new Date(Date.UTC(2026, 10, 10, 15));
    const sent = () => {
      const m = event("ttip.notification.delivery_updated", DeliveryUpdatedSchema, at, { deliveryId: randomUUID(), userId: randomUUID(), channel: "sms", status: "sent", templateKey: "TIP_RECEIVED", attempt: 1 });
      return { id: m.id, applied: factsOf(m.subject, m.data) };
    };
    const [first, second, third] = [[sent()], [sent(), sent()], [sent(), sent(), sent()]];
    const ids = (live: LiveEvent[]) => live.map((e) => e.id);
    await empty();
    // The first batch makes the hour's and the day's rows in a transaction holding the live batches'
    // lock; the second's statement takes its snapshot before it and waits for the lock, as a live
    // batch's does (the inbox's statement takes the lock in `fresh`): its rows are not in that snapshot.
    const holder = await db.pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT pg_advisory_xact_lock(hashtext($1))", [REBUILD_LOCK]);
      const a = liveBatchCtes(first, 2)!;
      await holder.query(`WITH fresh AS (SELECT unnest($1::uuid[]) AS event_id), ${a.sql} SELECT 1`, [ids(first), ...a.values]);
      const b = liveBatchCtes(second, 3)!;
      const waiting = db.pool.query(
        `WITH locked AS (SELECT pg_advisory_xact_lock(hashtext($1))), fresh AS (SELECT e AS event_id FROM unnest($2::uuid[]) AS e, locked), ${b.sql} SELECT 1`,
        [REBUILD_LOCK, ids(second), ...b.values],
      );
      for (let i = 0; ; i++) {
        const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'");
        if (rows[0].n > 0) break;
        if (i > 500) assert.fail("the second batch never waited for the lock");
        await new Promise((r) => setTimeout(r, 10));
      }
      await holder.query("COMMIT");
      await waiting;
    } finally {
      holder.release();
    }
    // A third batch: every row exists (the UPDATE alone).
    const c = liveBatchCtes(third, 2)!;
    await db.pool.query(`WITH fresh AS (SELECT unnest($1::uuid[]) AS event_id), ${c.sql} SELECT 1`, [ids(third), ...c.values]);
    const live = await tables();
    await empty();
    await withTransaction(db.pool, async (tx) => {
      const batch = new RollupBatch();
      for (const e of [...first, ...second, ...third]) batch.add(e.applied);
      await batch.write(tx);
    });
    const written = await tables();
    assert.ok(written.rollups.length > 0);
    assert.deepEqual(live, written, "each of the six events counted once");
  });

  test("a failure's reason is kept to REASON_MAX characters, by either way of writing", async () => {
    const at = new Date(Date.UTC(2026, 10, 10, 12));
    const failed = (code: string) =>
      event("ttip.payment.tip_failed", TipFailedSchema, at, { tipId: randomUUID(), workerId: randomUUID(), amount: kesMinor(10_000n), method: PaymentMethod.MPESA, resultCode: code, reason: "x".repeat(REASON_MAX + 100) });
    const [live, written] = [failed(`live-${randomUUID()}`), failed(`written-${randomUUID()}`)];
    const batch = liveBatchCtes([{ id: live.id, applied: factsOf(live.subject, live.data) }], 2);
    assert.ok(batch);
    await db.pool.query(`WITH fresh AS (SELECT unnest($1::uuid[]) AS event_id), ${batch.sql} SELECT 1`, [[live.id], ...batch.values]);
    await withTransaction(db.pool, async (tx) => {
      const b = new RollupBatch();
      b.add(factsOf(written.subject, written.data));
      await b.write(tx);
    });
    const lengths = await db.pool.query<{ n: number }>("SELECT length(reason)::int AS n FROM analytics.result_reasons WHERE result_code LIKE 'live-%' OR result_code LIKE 'written-%'");
    assert.deepEqual(lengths.rows.map((r) => r.n), [REASON_MAX, REASON_MAX]);
  });
});
