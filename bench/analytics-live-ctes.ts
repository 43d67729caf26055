// Analytics' live batch statement (the inbox's statement with the rollups and side records as CTEs,
// store.ts liveBatchCtes) as two trees build it, on one durable PostgreSQL: PostgreSQL's CPU per batch
// (the backend's own, /proc) and WAL records and bytes (pg_walinspect over each round's window: the
// heap's lock records apart, which INSERT ... ON CONFLICT DO UPDATE writes for each row it meets),
// for batches of a tip's payment events and of SMS-sent counts as the live consumers make them. The
// other tree's statement is the yardstick, run in alternating rounds on the same connection, each
// batch with events of its own.
//   BENCH_OTHER_ANALYTICS=<another tree>/services/analytics/src/store.ts [BENCH_OTHER_LOCK=exclusive] node --import tsx bench/analytics-live-ctes.ts [batches per round=200] [rounds=4] [events per batch=16]
// BENCH_FILL_ROLLUPS=n (say 300000): this month's partition first holds n hour rows of other workers, analysed, as a
// production's does by mid-month. On the young partition alone (~1,500 rows) a statement that joins it to a batch's
// rows (an UPDATE ... FROM) was planned as a hash join reading the whole partition each batch (the batch's rows
// estimated at 9, 73-81 in fact); on a grown one, as index probes of its key.
import assert from "node:assert/strict";
import { loadavg } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createPool, migrate, opaqueUnnest, type BusMessage } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { factsOf } from "../services/analytics/src/facts.js";
import * as thisTree from "../services/analytics/src/store.js";
import { cast, generateDay } from "../services/analytics/test/events.js";
import { quietWalSettings, walBetween, walFlushed } from "./pg-wal.js";
import { processCpuMs } from "./process-cpu.js";

const batches = Number(process.argv[2] ?? 200);
const rounds = Number(process.argv[3] ?? 4);
const size = Number(process.argv[4] ?? 16);
const other = process.env.BENCH_OTHER_ANALYTICS;
if (!other) throw new Error("BENCH_OTHER_ANALYTICS=<another tree>/services/analytics/src/store.ts names the yardstick");
type Store = typeof thisTree;
const variants: [string, Store][] = [["before", (await import(path.resolve(other))) as Store], ["after", thisTree]];
// How each tree's consumer takes analytics' lock (ingest.ts): BENCH_OTHER_LOCK=exclusive when the other tree's does too.
const lockOf = new Map<Store, string>([[variants[0][1], process.env.BENCH_OTHER_LOCK === "exclusive" ? "pg_advisory_xact_lock" : "pg_advisory_xact_lock_shared"], [thisTree, "pg_advisory_xact_lock"]]);

const inboxKey = (subject: string) => `analytics-${subject.split(".").slice(1).join("-").replace(/_/g, "-")}`;

/** The statement consumeEventBatches sends for a live batch (runtime outbox.ts inboxStatement, with analytics' lock). */
function statement(store: Store, batch: BusMessage[]): { text: string; values: unknown[] } {
  const values: unknown[] = [batch.map((m) => inboxKey(m.subject)), batch.map((m) => m.id), batch.map((m) => m.subject), "ttip.analytics.rebuild"];
  const live = store.liveBatchCtes(batch.map((m) => ({ id: m.id, applied: factsOf(m.subject, m.data) })), values.length + 1);
  if (!live) throw new Error("a month without its partition");
  return {
    text: `WITH locked AS (SELECT ${lockOf.get(store)}(hashtext($4))),
     fresh AS (INSERT INTO analytics.inbox (consumer, event_id, subject)
      SELECT e.consumer, e.id, e.subject FROM ${opaqueUnnest(["text", "uuid", "text"])} AS e(consumer, id, subject), locked
       WHERE NOT EXISTS (SELECT 1 FROM analytics.inbox i WHERE i.consumer = e.consumer AND i.event_id = e.id)
      RETURNING event_id),
     ${live.sql} SELECT event_id FROM fresh`,
    values: [...values, ...live.values],
  };
}

const server = await startPostgres({ durable: true });
// Room for the rounds' WAL positions, read beside the connection the batches hold.
const pool = createPool(server.url, { max: 4 });
try {
  // No checkpoint nor vacuum of the rollups' dead versions (their records) in one round and not the other.
  await quietWalSettings((sql, values) => pool.query(sql, values));
  await migrate(pool, "analytics", fileURLToPath(new URL("../services/analytics/migrations", import.meta.url)));
  const now = new Date();
  for (const [, store] of variants) await store.ensurePartitionsAround(pool, now);
  const fillRollups = Number(process.env.BENCH_FILL_ROLLUPS ?? 0);
  if (fillRollups > 0) {
    // Hours of today so far (all in this month's partition), keys no batch's event names.
    await pool.query(
      `INSERT INTO analytics.rollups (dim, id, sub, grain, bucket, method, result_code, currency, created)
       SELECT 1, gen_random_uuid(), '00000000-0000-0000-0000-000000000000', 'h', date_trunc('hour', now()) - (i % (1 + extract(hour FROM now())::int)) * interval '1 hour', 'mpesa', '', 'KES', 1
         FROM generate_series(1, $1::int) i`,
      [fillRollups],
    );
    await pool.query("VACUUM ANALYZE analytics.rollups");
    console.log(`this month's rollup partition filled with ${fillRollups} rows of other workers, analysed`);
  }
  // Events of the last half hour, as a live platform's: most rows they add to exist after the first batches.
  // Each batch of its own events: one the inbox has seen is a no-op, which would count as an event measured.
  const needed = (batches * rounds * 2 + 20 * 2) * size;
  const kinds: Record<string, BusMessage[]> = { "payment events": [], "SMS sent": [] };
  const crew = cast(50, 10);
  for (let seed = 7; kinds["payment events"].length < needed || kinds["SMS sent"].length < needed; seed++) {
    // About 0.5 SMS-sent events a tip (the fewer kind).
    const { events } = generateDay(crew, new Date(now.getTime() - 30 * 60_000), Math.ceil((needed - kinds["SMS sent"].length) * 2.2), seed, 29 * 60_000);
    for (const m of events) {
      if (m.subject.startsWith("ttip.payment.tip_")) kinds["payment events"].push(m);
      else if (m.subject === "ttip.notification.delivery_updated") kinds["SMS sent"].push(m);
    }
  }
  // A pool connection, as the consumers use: each statement prepared once, run by its kept plan.
  const client = await pool.connect();
  const { rows: [{ pid }] } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
  await client.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").catch(() => undefined);
  for (const [kind, list] of Object.entries(kinds)) {
    let next = 0;
    const take = () => {
      const batch = list.slice(next, next + size);
      next += size;
      assert.equal(batch.length, size, `${kind}: events for every batch`);
      return batch;
    };
    // Warm both statements (prepared, generic plans) and the rows they add to.
    for (let i = 0; i < 20; i++) for (const [, store] of variants) {
      const { text, values } = statement(store, take());
      await client.query(text, values);
    }
    const cpu = new Map<string, number[]>();
    const wal = new Map<string, { records: number; bytes: number; locks: number; fpis: number }[]>();
    const query = (sql: string, values?: unknown[]) => pool.query(sql, values);
    for (let r = 0; r < rounds; r++) {
      for (const [name, store] of r % 2 ? [...variants].reverse() : variants) {
        const from = await walFlushed(query);
        const before = processCpuMs(pid);
        for (let i = 0; i < batches; i++) {
          const { text, values } = statement(store, take());
          await client.query(text, values);
        }
        cpu.set(name, [...(cpu.get(name) ?? []), ((processCpuMs(pid) - before) * 1000) / batches]);
        const w = await walBetween(query, from, await walFlushed(query), 50);
        const locks = w.byKind.find((k) => k.name === "Heap LOCK")?.records ?? 0;
        wal.set(name, [...(wal.get(name) ?? []), { records: w.all.records / batches / size, bytes: w.written / batches / size, locks: locks / batches / size, fpis: w.all.fpis / batches / size }]);
      }
    }
    const [b, a] = variants.map(([name]) => cpu.get(name)!);
    const ratios = a.map((x, i) => (b[i] ? x / b[i] : NaN));
    console.log(`${kind}, batches of ${size}: PostgreSQL CPU µs per batch, before ${b.map((x) => x.toFixed(0)).join(", ")}; after ${a.map((x) => x.toFixed(0)).join(", ")}; after/before per round ${ratios.map((x) => x.toFixed(2)).join(", ")}`);
    for (const [name] of variants) {
      const per = wal.get(name)!;
      console.log(`  ${name.padEnd(6)} per event: WAL records ${per.map((x) => x.records.toFixed(2)).join(", ")} (heap lock records ${per.map((x) => x.locks.toFixed(2)).join(", ")}; full-page images ${per.map((x) => x.fpis.toFixed(2)).join(", ")}); WAL bytes ${per.map((x) => x.bytes.toFixed(0)).join(", ")}`);
    }
  }
  console.log(`load average at the end ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  client.release();
} finally {
  await pool.end();
  await server.stop();
}
