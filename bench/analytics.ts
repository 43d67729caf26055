// Analytics: how fast events become figures, and how fast a worker's dashboard
// answers over a year of rollups.
//   node --import tsx bench/analytics.ts [events=20000] [workers=10000] [days=365] [tipped hours per worker-day=2] [ingest|query|both]
// 1. Ingest: `events` generated events (tips, failures, scans, payouts,
//    deliveries) are stored in a JetStream stream, then analytics' consumers
//    apply them (inbox + rollups, a batch of what has arrived per transaction).
//    Yardstick in the same process: the same events through the runtime's
//    one-event-per-transaction consumers whose handler does nothing (the inbox
//    row alone): the exactly-once bookkeeping without analytics' work.
// 2. Query: a year of rollups for `workers` workers is generated in SQL (the
//    rows the events would make: hour rows for each tipped hour, day rows for
//    each day), then GetWorkerEarnings' query (today, week, month, by hour and
//    weekday over 365 days, ratings) runs for random workers. Yardstick: a
//    primary-key read on the same connection pool.
import { randomUUID } from "node:crypto";
import { consumeEvents, createLogger, createPool, JetStreamBus, Metrics, migrate, type ServiceContext } from "@ttip/runtime";
import { startNats, startPostgres } from "@ttip/runtime/testing";
import { createAnalyticsModule, consumerName, SUBJECTS } from "@ttip/analytics";
import { startConsumers } from "../services/analytics/src/ingest.js";
import { ensurePartitionsAround } from "../services/analytics/src/store.js";
import { workerEarnings } from "../services/analytics/src/queries.js";
import { cast, generateDay } from "../services/analytics/test/events.js";
import { closedLoop, percentiles } from "./load.js";

const events = Number(process.argv[2] ?? 20_000);
const workers = Number(process.argv[3] ?? 10_000);
const days = Number(process.argv[4] ?? 365);
const hoursPerDay = Number(process.argv[5] ?? 2);
const parts = process.argv[6] ?? "both";

const logger = createLogger({ level: "warn" });
const [pg, nats] = await Promise.all([startPostgres({ durable: true }), startNats()]);
const pool = createPool(pg.url, { max: 20 });
try {
  // On a loaded machine the server may still be starting once its port is open.
  for (let i = 0; ; i++) {
    try {
      await pool.query("SELECT 1");
      break;
    } catch (err) {
      if (i >= 100) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  await migrate(pool, "analytics", createAnalyticsModule().migrations);
  await ensurePartitionsAround(pool);

  // --- 1. ingest -----------------------------------------------------------
  if (parts !== "query") await ingest();
  if (parts !== "ingest") await query();
} finally {
  await pool.end();
  await Promise.all([pg.stop(), nats.stop()]);
}

async function ingest() {
  const c = cast(200, 20);
  const batch: ReturnType<typeof generateDay>["events"] = [];
  for (let d = 0; batch.length < events; d++) batch.push(...generateDay(c, new Date(Date.now() - (d + 1) * 86_400_000), 2_000, d + 1).events);
  batch.length = events;
  const bus = await JetStreamBus.connect({ servers: nats.url, logger, stream: "BENCH" });
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 16 }, async (_, k) => {
    for (let i = k; i < batch.length; i += 16) await bus.publish(batch[i]);
  }));
  console.log(`stored ${events} events in JetStream in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const inboxCount = async (prefix: string) =>
    (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.inbox WHERE consumer LIKE $1", [`${prefix}%`])).rows[0].n;
  const waitFor = async (prefix: string) => {
    for (;;) {
      if ((await inboxCount(prefix)) >= events) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  // Yardstick: inbox only.
  let started = performance.now();
  const yard = await Promise.all(SUBJECTS.map((subject) =>
    consumeEvents({ bus, pool, schema: "analytics", consumer: `yardstick-${consumerName(subject)}`, subject, logger, handle: async () => undefined })));
  await waitFor("yardstick-");
  const yardSeconds = (performance.now() - started) / 1000;
  for (const s of yard) await s.stop();

  const ctx = { logger, pool, bus, metrics: new Metrics() } as unknown as ServiceContext;
  started = performance.now();
  const stop = await startConsumers(ctx);
  await waitFor("analytics-");
  const seconds = (performance.now() - started) / 1000;
  await stop();
  const rate = events / seconds;
  const yardRate = events / yardSeconds;
  console.log(`ingest: ${rate.toFixed(0)} events/s into rollups (${events} events, ${SUBJECTS.length} consumers, durable PostgreSQL)`);
  console.log(`        yardstick (inbox row only, one event per transaction) ${yardRate.toFixed(0)} events/s: analytics ingests ${(rate / yardRate).toFixed(2)}x that`);
  await bus.close();
}

async function query() {
  // --- 2. a worker's dashboard over a year ----------------------------------
  const started = performance.now();
  await pool.query("CREATE TABLE IF NOT EXISTS public.bench_workers (n int PRIMARY KEY, id uuid NOT NULL)");
  const ids = Array.from({ length: workers }, () => randomUUID());
  await pool.query("INSERT INTO bench_workers SELECT g, ($1::uuid[])[g] FROM generate_series(1, $2) g", [ids, workers]);
  const client = await pool.connect();
  try {
    await client.query("SET synchronous_commit = off");
    // One statement per month keeps each transaction (and its WAL) bounded.
    const today = Math.floor((Date.now() + 3 * 3_600_000) / 86_400_000) * 86_400_000 - 3 * 3_600_000;
    for (let m = 0; m < Math.ceil(days / 30); m++) {
      const from = Math.max(0, m * 30);
      const to = Math.min(days, from + 30);
      if (from >= to) break;
      const dayStart = `to_timestamp(${today / 1000}) - make_interval(days => d)`;
      await client.query(
        `INSERT INTO analytics.rollups (dim, id, sub, grain, bucket, method, result_code, currency, succeeded, amount_minor, fee_minor, net_minor, rating_sum, rating_count, rated_5)
         SELECT 2, w.id, '00000000-0000-0000-0000-000000000000', 'h', ${dayStart} + make_interval(hours => 6 + ((w.n * 7 + d * 3 + h * 5) % 14)),
                'mpesa', '0', 'KES', 3, 45000, 1350, 43650, 5, 1, 1
           FROM bench_workers w, generate_series(${from}, ${to - 1}) d, generate_series(0, ${hoursPerDay - 1}) h
         ON CONFLICT DO NOTHING`,
      );
      await client.query(
        `INSERT INTO analytics.rollups (dim, id, sub, grain, bucket, method, result_code, currency, succeeded, amount_minor, fee_minor, net_minor, rating_sum, rating_count, rated_5)
         SELECT 2, w.id, '00000000-0000-0000-0000-000000000000', 'd', ${dayStart},
                'mpesa', '0', 'KES', 3 * ${hoursPerDay}, 45000 * ${hoursPerDay}, 1350 * ${hoursPerDay}, 43650 * ${hoursPerDay}, 5 * ${hoursPerDay}, ${hoursPerDay}, ${hoursPerDay}
           FROM bench_workers w, generate_series(${from}, ${to - 1}) d
         ON CONFLICT DO NOTHING`,
      );
    }
    await client.query("ANALYZE analytics.rollups");
  } finally {
    client.release();
  }
  const total = (await pool.query<{ n: string }>("SELECT count(*)::text AS n FROM analytics.rollups")).rows[0].n;
  const size = (await pool.query<{ s: string }>(
    "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) AS s FROM pg_inherits WHERE inhparent = 'analytics.rollups'::regclass",
  )).rows[0].s;
  console.log(`generated ${days} days: ${total} rollup rows (${workers} workers x ${days} days, ${hoursPerDay} tipped hours a day), ${size}, in ${((performance.now() - started) / 1000).toFixed(0)} s`);

  const range = { from: new Date(Date.now() - 365 * 86_400_000), to: new Date() };
  const pick = () => ids[Math.floor(Math.random() * ids.length)];
  for (let i = 0; i < 200; i++) await workerEarnings(pool, pick(), range, "KES"); // warm the cache
  const yardstick = await closedLoop(4, 5, () => pool.query("SELECT worker_id FROM analytics.workers WHERE worker_id = $1", [pick()]));
  const dash = await closedLoop(4, 10, () => workerEarnings(pool, pick(), range, "KES"));
  const check = await workerEarnings(pool, ids[0], range, "KES");
  console.log(`worker dashboard over 365 days of ${workers} workers: ${dash.perSecond.toFixed(0)} queries/s at concurrency 4  ${percentiles(dash)}  (${dash.calls} queries)`);
  console.log(`        yardstick primary-key read: ${percentiles(yardstick)}; dashboard p99 is ${(dash.percentile(0.99) / yardstick.percentile(0.99)).toFixed(1)}x`);
  console.log(`        sample: ${check.inRange.tips} tips in range, ${check.byHour.filter((h) => h.tips > 0n).length} hours of the day with tips`);
}
