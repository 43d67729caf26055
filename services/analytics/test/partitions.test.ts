// Replicas starting together (pods of one deployment, an HPA scale-up) each
// make the rollups' monthly partitions around now: none may fail on a
// partition another one made, and each month ends up with exactly one.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { createPool, migrate, withTransaction, type Pool } from "@ttip/runtime";
import { countWrites, createTestDatabase, type TestDatabase } from "@ttip/runtime/testing";
import type { Applied } from "../src/facts.js";
import { ensurePartition, ensurePartitionsAround, forgetPartitions, ROLLUP_FILLFACTOR, RollupBatch } from "../src/store.js";

const REPLICAS = 6;
/** 24 months back, this month and 3 ahead (store.ts). */
const MONTHS = 28;

const partitions = async (pool: Pool) =>
  (
    await pool.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'analytics.rollups'::regclass ORDER BY 1`,
    )
  ).rows.map((r) => r.name);

describe("rollup partitions made by replicas starting together (real PostgreSQL)", () => {
  let db: TestDatabase;
  const replicas: Pool[] = [];

  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "analytics", fileURLToPath(new URL("../migrations", import.meta.url)));
    // One pool per replica: each is its own session, as separate processes would be.
    for (let i = 0; i < REPLICAS; i++) replicas.push(createPool(db.url, { max: 2 }));
  });

  after(async () => {
    for (const p of replicas) await p.end();
    await db?.drop();
  });

  test("every replica starts, and each month has one partition", async () => {
    const now = new Date(Date.UTC(2026, 10, 15));
    forgetPartitions();
    const results = await Promise.allSettled(replicas.map((p) => ensurePartitionsAround(p, now)));
    const failed = results.flatMap((r) => (r.status === "rejected" ? [String((r.reason as Error).message)] : []));
    assert.deepEqual(failed, [], "no replica fails on a partition another one made");
    const names = await partitions(db.pool);
    assert.equal(names.length, MONTHS);
    assert.equal(names[0], "rollups_202411");
    assert.equal(names.at(-1), "rollups_202702");
  });

  test("a month's row lands in its partition once the replicas started", async () => {
    const { rows } = await db.pool.query<{ part: string }>(
      `INSERT INTO analytics.rollups (dim, id, sub, grain, bucket, method, result_code, currency)
       VALUES (0, gen_random_uuid(), gen_random_uuid(), 'h', '2026-11-15T10:00:00Z', '', '', 'KES')
       RETURNING tableoid::regclass::text AS part`,
    );
    assert.equal(rows[0].part, "analytics.rollups_202611");
  });

  test("live writes making a month's partition together all commit, and it exists once", async () => {
    const month = new Date(Date.UTC(2031, 0, 10));
    const results = await Promise.allSettled(replicas.map((p) => withTransaction(p, (tx) => ensurePartition(tx, month))));
    assert.deepEqual(results.filter((r) => r.status === "rejected"), []);
    assert.equal((await partitions(db.pool)).filter((n) => n === "rollups_203101").length, 1);
  });

  test("a partition made by a transaction that rolled back is made again, not taken as there", async () => {
    const month = new Date(Date.UTC(2032, 4, 1));
    await assert.rejects(
      withTransaction(replicas[0], async (tx) => {
        await ensurePartition(tx, month);
        throw new Error("the batch failed after its partition was made");
      }),
      /the batch failed/,
    );
    assert.ok(!(await partitions(db.pool)).includes("rollups_203205"), "rolled back with its transaction");
    await withTransaction(replicas[1], (tx) => ensurePartition(tx, month));
    assert.ok((await partitions(db.pool)).includes("rollups_203205"));
  });

  test("a partition made inside a savepoint is not taken as committed when its transaction rolls back", async () => {
    const month = new Date(Date.UTC(2033, 2, 1));
    await assert.rejects(
      withTransaction(replicas[0], async (tx) => {
        // Inside a savepoint the new partition's catalog row carries the subtransaction's id, not the top-level one.
        await tx.query("SAVEPOINT batch");
        await ensurePartition(tx, month);
        await tx.query("RELEASE SAVEPOINT batch");
        await ensurePartition(tx, month);
        throw new Error("the batch failed after its partition was made");
      }),
      /the batch failed/,
    );
    assert.ok(!(await partitions(db.pool)).includes("rollups_203303"), "rolled back with its transaction");
    await withTransaction(replicas[1], (tx) => ensurePartition(tx, month));
    assert.ok((await partitions(db.pool)).includes("rollups_203303"), "made again, not remembered from the rolled-back one");
  });

  test("a partition committed by another transaction is remembered while a savepoint is open", async () => {
    const month = new Date(Date.UTC(2034, 6, 1));
    await withTransaction(replicas[2], (tx) => ensurePartition(tx, month));
    await withTransaction(replicas[0], async (tx) => {
      await tx.query("SAVEPOINT batch");
      await ensurePartition(tx, month);
      await tx.query("RELEASE SAVEPOINT batch");
    });
    // Remembered: the next call asks the catalog nothing, so a dropped table is not noticed.
    await db.pool.query("DROP TABLE analytics.rollups_203407");
    await withTransaction(replicas[1], (tx) => ensurePartition(tx, month));
    assert.ok(!(await partitions(db.pool)).includes("rollups_203407"));
  });

  test("batches spanning two months add to the rows that exist and make the others, in both months, exactly", async () => {
    const march = new Date(Date.UTC(2036, 2, 15, 9, 30));
    const april = new Date(Date.UTC(2036, 3, 15, 9, 30));
    const worker = randomUUID();
    const tip = (at: Date): Applied => ({ at, facts: [{ at, worker, method: "mpesa", resultCode: "0", currency: "KES", measures: { succeeded: 1n, amount_minor: 10_000n } }], records: [] });
    const write = (tips: Applied[]) =>
      withTransaction(db.pool, async (tx) => {
        const b = new RollupBatch();
        for (const t of tips) b.add(t);
        await b.write(tx);
      });
    await write([tip(march)]); // March's three rows made (the platform's hour and day, the worker's hour)
    await write([tip(march), tip(april), tip(april)]); // March's added to (its partition updated), April's made
    await write([tip(april), tip(march), tip(march)]); // both exist: one month updated in its partition, the other through the upsert
    const { rows } = await db.pool.query<{ dim: number; grain: string; month: string; succeeded: number; amount: string }>(
      `SELECT dim, grain, to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM') AS month, succeeded, amount_minor::text AS amount
         FROM analytics.rollups WHERE bucket >= '2036-03-01' AND bucket < '2036-05-01' ORDER BY month, dim, grain`,
    );
    // The platform's hour and day rows; a worker's hour rows only (facts.ts, hasDayRows).
    const expect = (month: string, n: number) =>
      [[1, "d"], [1, "h"], [2, "h"]].map(([dim, grain]) => ({ dim, grain, month, succeeded: n, amount: String(n * 10_000) }));
    assert.deepEqual(rows, [...expect("2036-03", 4), ...expect("2036-04", 3)]);
  });

  test("a batch that ends its transaction sends COMMIT with its last statement: a round trip fewer, everything committed", async () => {
    const at = new Date(Date.UTC(2036, 7, 15, 9, 30));
    const worker = randomUUID();
    const tip = (): Applied => ({
      at,
      facts: [{ at, worker, method: "mpesa", resultCode: "0", currency: "KES", measures: { succeeded: 1n, amount_minor: 10_000n } }],
      records: [{ kind: "worker", workerId: worker, at }],
    });
    const pool = createPool(db.url, { max: 1 });
    try {
      const client = await pool.connect();
      const writes = countWrites(client);
      client.release();
      // As the consumer's transaction: the inbox's statement first (BEGIN with it), then the batch.
      const batchIn = (endsTransaction: boolean) =>
        withTransaction(pool, async (tx) => {
          await tx.query("SELECT $1::int AS inbox", [1]);
          const b = new RollupBatch();
          b.add(tip());
          await b.write(tx, { endsTransaction });
        });
      await batchIn(false); // the month's partition made, the worker recorded
      await batchIn(false); // the partition seen committed: remembered, not looked up again
      const before = writes.writes();
      await batchIn(false);
      assert.equal(writes.writes() - before, 4, "BEGIN with the first statement, the rows, the worker, COMMIT alone");
      const after = writes.writes();
      await batchIn(true);
      assert.equal(writes.writes() - after, 3, "BEGIN with the first statement, the rows, the worker with COMMIT");
      writes.stop();
      const { rows } = await db.pool.query<{ grain: string; succeeded: number }>("SELECT grain, succeeded FROM analytics.rollups WHERE dim = 2 AND id = $1 ORDER BY grain", [worker]);
      assert.deepEqual(rows, [{ grain: "h", succeeded: 4 }], "every batch committed");
      // A batch with nothing to write leaves COMMIT to the transaction.
      await withTransaction(pool, async (tx) => {
        await tx.query("UPDATE analytics.rollups SET succeeded = succeeded + $2 WHERE dim = 2 AND id = $1", [worker, 10]);
        await new RollupBatch().write(tx, { endsTransaction: true });
      });
      assert.equal((await db.pool.query("SELECT sum(succeeded)::int AS n FROM analytics.rollups WHERE dim = 2 AND id = $1", [worker])).rows[0].n, 14, "the worker's hour row: 4 + 10");
    } finally {
      await pool.end();
    }
  });

  test("a batch naming one worker in upper and lower case adds both events to the worker's rows, made or already there", async () => {
    const at = new Date(Date.UTC(2036, 5, 15, 9, 30));
    const worker = randomUUID();
    const tip = (id: string): Applied => ({ at, facts: [{ at, worker: id, method: "mpesa", resultCode: "0", currency: "KES", measures: { succeeded: 1n, amount_minor: 10_000n } }], records: [] });
    const write = (ids: string[]) =>
      withTransaction(db.pool, async (tx) => {
        const b = new RollupBatch();
        for (const id of ids) b.add(tip(id));
        await b.write(tx);
      });
    await write([worker, worker.toUpperCase()]); // the rows made
    await write([worker.toUpperCase(), worker]); // the rows there (updated in their partition): both added again
    const { rows } = await db.pool.query<{ grain: string; succeeded: number; amount: string }>(
      "SELECT grain, succeeded, amount_minor::text AS amount FROM analytics.rollups WHERE dim = 2 AND id = $1 ORDER BY grain",
      [worker],
    );
    assert.deepEqual(rows, [{ grain: "h", succeeded: 4, amount: "40000" }]);
  });

  test("replicas writing batches on the same rows at once, in either month first, add every event exactly once and never deadlock", async () => {
    // Two months in every batch, most rows in one for half the replicas and in the other for the
    // rest: every batch locks the shared rows in one order (their keys'), whichever month holds most
    // of them and whether a row exists yet. A deadlock would roll a batch back whole (the consumer
    // then writes it again, as this loop does), so each one is counted, and there must be none.
    const august = new Date(Date.UTC(2037, 7, 20, 9, 30));
    const september = new Date(Date.UTC(2037, 8, 20, 9, 30));
    const workers = [randomUUID(), randomUUID(), randomUUID()];
    const BATCHES = 8;
    const tip = (at: Date, worker: string): Applied => ({ at, facts: [{ at, worker, method: "mpesa", resultCode: "0", currency: "KES", measures: { succeeded: 1n, amount_minor: 10_000n } }], records: [] });
    let deadlocks = 0;
    const replicaWrites = async (pool: Pool, i: number) => {
      const [inAugust, inSeptember] = i % 2 ? [1, 2] : [2, 1];
      for (let n = 0; n < BATCHES; n++) {
        for (;;) {
          try {
            await withTransaction(pool, async (tx) => {
              const b = new RollupBatch();
              for (const w of workers) {
                for (let k = 0; k < inAugust; k++) b.add(tip(august, w));
                for (let k = 0; k < inSeptember; k++) b.add(tip(september, w));
              }
              await b.write(tx);
            });
            break;
          } catch (err) {
            if ((err as { code?: string }).code !== "40P01") throw err;
            deadlocks++;
          }
        }
      }
    };
    await Promise.all(replicas.map(replicaWrites));
    const { rows } = await db.pool.query<{ dim: number; month: string; grain: string; succeeded: number; amount: string }>(
      `SELECT dim, to_char(bucket AT TIME ZONE 'UTC', 'MM') AS month, grain, sum(succeeded)::int AS succeeded, sum(amount_minor)::text AS amount
         FROM analytics.rollups WHERE bucket >= '2037-08-01' AND bucket < '2037-10-01' AND (dim = 1 OR id = ANY($1::uuid[]))
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
      [workers],
    );
    // Each month, per worker: half the replicas add 2 tips a batch, the other half 1; the platform has the three workers'.
    const perWorker = (REPLICAS / 2) * BATCHES * (2 + 1);
    const expect = (dim: number, n: number) =>
      ["08", "09"].flatMap((month) => (dim === 1 ? ["d", "h"] : ["h"]).map((grain) => ({ dim, month, grain, succeeded: n, amount: String(n * 10_000) })));
    assert.deepEqual(rows, [...expect(1, perWorker * workers.length), ...expect(2, perWorker * workers.length)], `exact after ${deadlocks} deadlocks retried`);
    assert.equal(deadlocks, 0, "batches lock shared rows in one order");
  });

  test("two batches, each with most rows in another month, wait for each other's rows without a deadlock (one lock order)", async () => {
    // Made to meet: a third transaction holds the first row of September that batch A reaches,
    // so A stops there holding what it took before it; B, September's batch, then takes its rows
    // and asks for one of A's. Locking in the batches' key order, B waits holding nothing A wants
    // next, and both commit once the third lets go; locking a month's rows first (its partition
    // updated directly, the other month through the upsert), A and B wait for each other.
    const august = new Date(Date.UTC(2038, 7, 20, 9, 30));
    const september = new Date(Date.UTC(2038, 8, 20, 9, 30));
    const tag = randomUUID().slice(0, 8);
    const platform = (at: Date, method: string): Applied => ({ at, facts: [{ at, method: `${tag}-${method}`, resultCode: "", currency: "KES", measures: { scans: 1n } }], records: [] });
    const batchA = [platform(august, "a"), platform(august, "b"), platform(august, "c"), platform(september, "m1"), platform(september, "m2")];
    const batchB = [platform(september, "m2"), platform(september, "m3"), platform(september, "m4"), platform(august, "a")];
    const write = (pool: Pool, facts: Applied[]) =>
      withTransaction(pool, async (tx) => {
        const b = new RollupBatch();
        for (const f of facts) b.add(f);
        await b.write(tx);
      });
    await write(db.pool, [...batchA, ...batchB]); // every row exists: each month's rows are updated in place
    const waiting = async () =>
      (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0].n;
    const until = async (n: number) => {
      for (let i = 0; (await waiting()) < n; i++) {
        if (i > 500) assert.fail(`${n} transactions never waited for a lock`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const holder = await db.pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query(
        "SELECT 1 FROM analytics.rollups WHERE dim = 1 AND grain = 'd' AND bucket = $1 AND method = $2 FOR UPDATE",
        [new Date(Date.UTC(2038, 8, 19, 21)), `${tag}-m1`],
      );
      const a = write(replicas[0], batchA);
      await until(1);
      const b = write(replicas[1], batchB);
      await until(2);
      await holder.query("ROLLBACK");
      const outcomes = await Promise.allSettled([a, b]);
      const deadlocked = outcomes.filter((o) => o.status === "rejected").map((o) => String((o as PromiseRejectedResult).reason));
      assert.deepEqual(deadlocked, [], "neither batch is rolled back");
    } finally {
      holder.release();
    }
    const { rows } = await db.pool.query<{ method: string; scans: number }>(
      "SELECT method, sum(scans)::int AS scans FROM analytics.rollups WHERE dim = 1 AND method LIKE $1 GROUP BY 1 ORDER BY 1",
      [`${tag}-%`],
    );
    // Each fact counted at the hour and at the day: the setup's, then A's and B's.
    const count = (m: string) => [...batchA, ...batchB].filter((f) => f.facts[0].method === `${tag}-${m}`).length * 2 * 2;
    assert.deepEqual(rows, ["a", "b", "c", "m1", "m2", "m3", "m4"].map((m) => ({ method: `${tag}-${m}`, scans: count(m) })));
  });

  test("side records naming one worker or payout in upper and lower case are one row each, merged, in one batch", async () => {
    const at = new Date(Date.UTC(2036, 6, 15, 9, 30));
    const [worker, payout] = [randomUUID(), randomUUID()];
    await withTransaction(db.pool, async (tx) => {
      const b = new RollupBatch();
      b.add({ at, facts: [], records: [{ kind: "worker", workerId: worker, at }] });
      b.add({ at, facts: [], records: [{ kind: "worker", workerId: worker.toUpperCase(), registeredAt: at, at }] });
      b.add({ at, facts: [], records: [{ kind: "payout_request", payoutId: payout.toUpperCase(), workerId: worker, at }] });
      b.add({ at, facts: [], records: [{ kind: "payout_request", payoutId: payout, workerId: worker, at }] });
      await b.write(tx);
    });
    const { rows } = await db.pool.query<{ workers: number; registered: number; requests: number }>(
      `SELECT (SELECT count(*)::int FROM analytics.workers WHERE worker_id = $1) AS workers,
              (SELECT count(*)::int FROM analytics.workers WHERE worker_id = $1 AND registered_at IS NOT NULL) AS registered,
              (SELECT count(*)::int FROM analytics.payout_requests WHERE payout_id = $2) AS requests`,
      [worker, payout],
    );
    assert.deepEqual(rows, [{ workers: 1, registered: 1, requests: 1 }]);
  });

  test("a worker's row gains a registration and an earlier first sight, and is left alone by what adds nothing", async () => {
    const worker = randomUUID();
    const at = (day: number) => new Date(Date.UTC(2036, 4, day, 12));
    const write = (registeredAt: Date | undefined, seen: Date) =>
      withTransaction(db.pool, async (tx) => {
        const b = new RollupBatch();
        b.add({ at: seen, facts: [], records: [{ kind: "worker", workerId: worker, registeredAt, at: seen }] });
        await b.write(tx);
      });
    const row = async () =>
      (await db.pool.query<{ registered: string | null; first: string }>(
        "SELECT to_char(registered_at AT TIME ZONE 'UTC', 'DD') AS registered, to_char(first_seen_at AT TIME ZONE 'UTC', 'DD') AS first FROM analytics.workers WHERE worker_id = $1",
        [worker],
      )).rows;
    await write(undefined, at(10)); // seen in a tip first
    assert.deepEqual(await row(), [{ registered: null, first: "10" }]);
    await write(undefined, at(12)); // a later tip adds nothing
    assert.deepEqual(await row(), [{ registered: null, first: "10" }]);
    await write(at(8), at(8)); // the sign-up arrives late
    assert.deepEqual(await row(), [{ registered: "08", first: "08" }]);
    await write(undefined, at(5)); // an earlier tip, replayed
    assert.deepEqual(await row(), [{ registered: "08", first: "05" }]);
    await write(at(9), at(9)); // a second registration adds nothing
    assert.deepEqual(await row(), [{ registered: "08", first: "05" }]);
  });

  test("every partition keeps room for its rows' updates: one made before the migration that sets it, and those made after", async () => {
    const other = await createTestDatabase();
    const first = await mkdtemp(path.join(tmpdir(), "analytics-migrations-"));
    try {
      const dir = fileURLToPath(new URL("../migrations", import.meta.url));
      // The schema as it was before: its first migration only, and a partition made then (packed full).
      await copyFile(path.join(dir, "0001_analytics.sql"), path.join(first, "0001_analytics.sql"));
      await migrate(other.pool, "analytics", first);
      await other.pool.query(`CREATE TABLE analytics.rollups_202001 PARTITION OF analytics.rollups FOR VALUES FROM ('2020-01-01Z') TO ('2020-02-01Z')`);
      await migrate(other.pool, "analytics", dir);
      forgetPartitions();
      await ensurePartitionsAround(other.pool, new Date(Date.UTC(2026, 10, 15)));
      const { rows } = await other.pool.query<{ name: string; options: string[] | null }>(
        `SELECT c.relname AS name, c.reloptions AS options FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'analytics.rollups'::regclass ORDER BY 1`,
      );
      assert.equal(rows.length, MONTHS + 1);
      assert.deepEqual(rows.filter((r) => r.options?.join() !== `fillfactor=${ROLLUP_FILLFACTOR}`), [], "each partition's fillfactor");
    } finally {
      forgetPartitions();
      await rm(first, { recursive: true, force: true });
      await other.drop();
    }
  });
});
