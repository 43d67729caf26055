// Analytics: how fast events become figures, and how fast a worker's dashboard
// answers over a year of rollups.
//   node --import tsx bench/analytics.ts [events=20000] [workers=10000] [days=365] [tipped hours per worker-day=2] [ingest|query|both|expiry] [past|live]
// 1. Ingest: `events` generated events (tips, failures, scans, payouts,
//    deliveries) are stored in a JetStream stream, then analytics' consumers
//    apply them (inbox + rollups, a batch of what has arrived per transaction).
//    "past" (default): the events fall on the days before today, most rows new.
//    "live": they fall in the last half hour, as a running platform's do (rows
//    added to far more than made), and with BENCH_CHUNK=n they are published n
//    at a time, each n applied before the next, so batches are as small as a
//    live platform's (tip-e2e's were ~20 events a statement; the figures print it);
//    with BENCH_RATE=n instead they are published at n a second while analytics'
//    consumers run, as a platform's come (tip-e2e's ~170 tips/s make ~700 events/s),
//    so its batches are what its consumers make of that rate (BENCH_BATCH_INTERVAL_MS:
//    ingest.ts's BATCH_INTERVAL_MS; 0 takes each batch as soon as the last is applied).
//    Yardstick in the same process: the same events through the runtime's
//    one-event-per-transaction consumers whose handler does nothing (the inbox
//    row alone): the exactly-once bookkeeping without analytics' work.
//    Per event, for each (load-independent): PostgreSQL's statements, buffer
//    accesses (blocks) and WAL records, full-page images and bytes, and where
//    the WAL went by record type (pg_walinspect) and the blocks by statement.
// 2. Query: a year of rollups for `workers` workers is generated in SQL (the
//    rows the events would make: hour rows for each tipped hour; and day rows for
//    each day, which a worker had before only the platform kept day rows: read by
//    nothing now, kept so a tree from before reads what it wrote and the table is
//    as large), then GetWorkerEarnings' queries (today, week, month, by hour and
//    weekday over 365 days, ratings) run for random workers. Yardstick: a
//    primary-key read on the same connection pool.
// 3. Expiry ("expiry" alone): the inbox's retention (runtime's InboxRetention) on an inbox of
//    BENCH_INBOX_ROWS rows (default 1,000,000: 8 days of ~1.4 events/s) applied over the stream's
//    7 days, 24 h and 15 minutes since the last sweep, oldest first in the heap: its statement's plan
//    and cost (EXPLAIN ANALYZE, BUFFERS, rolled back) with the inbox's processed_at index and without it.
import { randomUUID } from "node:crypto";
import { consumeEvents, createLogger, createPool, JetStreamBus, Metrics, migrate, type ServiceContext } from "@ttip/runtime";
import { startNats, startPostgres } from "@ttip/runtime/testing";
import { createAnalyticsModule, consumerName, SUBJECTS } from "@ttip/analytics";
import { READERS } from "../services/analytics/src/facts.js";
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
const live = process.argv[7] === "live";
/** Events published at a time in live mode, each lot applied before the next (0: all stored first). */
const chunk = Number(process.env.BENCH_CHUNK ?? 0);
/** Events published a second in live mode while analytics' consumers run (0: not paced by rate). */
const publishRate = Number(process.env.BENCH_RATE ?? 0);
const batchIntervalMs = process.env.BENCH_BATCH_INTERVAL_MS === undefined ? undefined : Number(process.env.BENCH_BATCH_INTERVAL_MS);

const logger = createLogger({ level: "warn" });
const [pg, nats] = await Promise.all([startPostgres({ durable: true, statementStats: true }), startNats()]);
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
  await pool.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; CREATE EXTENSION IF NOT EXISTS pg_walinspect");
  await migrate(pool, "analytics", createAnalyticsModule().migrations);
  await ensurePartitionsAround(pool);

  // --- 1. ingest -----------------------------------------------------------
  if (parts === "expiry") await expiry();
  else {
    if (parts !== "query") await ingest();
    if (parts !== "ingest") await query();
  }
} finally {
  await pool.end();
  await Promise.all([pg.stop(), nats.stop()]);
}

async function ingest() {
  const c = cast(200, 20);
  const batch: ReturnType<typeof generateDay>["events"] = [];
  const HALF_HOUR = 1_800_000;
  for (let d = 0; batch.length < events; d++) {
    const start = live ? new Date(Date.now() - HALF_HOUR) : new Date(Date.now() - (d + 1) * 86_400_000);
    batch.push(...generateDay(c, start, 2_000, d + 1, live ? HALF_HOUR : undefined).events);
  }
  batch.length = events;
  const bus = await JetStreamBus.connect({ servers: nats.url, logger, stream: "BENCH" });
  const publish = (messages: typeof batch) =>
    Promise.all(Array.from({ length: 16 }, async (_, k) => {
      for (let i = k; i < messages.length; i += 16) await bus.publish(messages[i]);
    }));
  const paced = live && (chunk > 0 || publishRate > 0);
  const t0 = performance.now();
  if (!paced) {
    await publish(batch);
    console.log(`stored ${events} events in JetStream in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }

  const inboxCount = async (prefix: string) =>
    (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.inbox WHERE consumer LIKE $1", [`${prefix}%`])).rows[0].n;
  const waitFor = async (prefix: string, n = events, pollMs = 50) => {
    for (;;) {
      if ((await inboxCount(prefix)) >= n) return;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  };
  const ctx = { logger, pool, bus, metrics: new Metrics() } as unknown as ServiceContext;
  // Paced: analytics' consumers run while the events come, `chunk` at a time (before the yardstick,
  // which then reads them all from the stream).
  let analyticsRun: { seconds: number; cost: Cost } | undefined;
  const runAnalytics = async () => {
    const account = await startAccount();
    const started = performance.now();
    const stop = await startConsumers(ctx, undefined, { batchIntervalMs });
    if (paced && publishRate > 0) {
      // Each 10 ms, the events due by then.
      for (let sent = 0; sent < batch.length; ) {
        const due = Math.min(batch.length, Math.floor(((performance.now() - started) / 1000) * publishRate));
        if (due > sent) await publish(batch.slice(sent, due));
        sent = Math.max(sent, due);
        await new Promise((r) => setTimeout(r, 10));
      }
      await waitFor("analytics-");
    } else if (paced) {
      for (let i = 0; i < batch.length; i += chunk) {
        await publish(batch.slice(i, i + chunk));
        await waitFor("analytics-", Math.min(i + chunk, batch.length), 5);
      }
    } else await waitFor("analytics-");
    const seconds = (performance.now() - started) / 1000;
    await stop();
    return { seconds, cost: await account() };
  };
  if (paced) analyticsRun = await runAnalytics();

  // Yardstick: inbox only.
  const account = await startAccount();
  const started = performance.now();
  const yard = await Promise.all(SUBJECTS.map((subject) =>
    consumeEvents({ bus, pool, schema: "analytics", consumer: `yardstick-${consumerName(subject)}`, subject, logger, handle: async () => undefined })));
  await waitFor("yardstick-");
  const yardSeconds = (performance.now() - started) / 1000;
  for (const s of yard) await s.stop();
  const yardCost = await account();

  const { seconds, cost } = analyticsRun ?? (await runAnalytics());
  const rate = events / seconds;
  const yardRate = events / yardSeconds;
  const how = publishRate > 0 ? `, published at ${publishRate}/s while analytics applies them` : chunk > 0 ? `, published ${chunk} at a time, each lot applied before the next` : ", all stored first";
  console.log(`events: ${live ? `live (the last half hour)${how}` : "on the days before today, all stored first"}; batch interval ${batchIntervalMs ?? "default"} ms`);
  // Paced, analytics' time includes waiting for the events to be published: its events/s are the pace's, not what it can
  // take, and the yardstick (every event stored first) is no measure for them. The per-event costs below hold either way.
  const bound = paced ? "; paced by the publishing, not a capacity figure" : "";
  console.log(`ingest: ${rate.toFixed(0)} events/s into rollups (${events} events, ${READERS.length} consumers, durable PostgreSQL${bound})`);
  const ratio = paced ? "" : `: analytics ingests ${(rate / yardRate).toFixed(2)}x that`;
  console.log(`        yardstick (inbox row only, one event per transaction, all stored first) ${yardRate.toFixed(0)} events/s${ratio}`);
  const perEvent = (c: Cost) =>
    `${(c.statements / events).toFixed(2)} statements, ${(c.blocks / events).toFixed(1)} blocks, ${(c.wal.records / events).toFixed(2)} WAL records ` +
    `(${(c.wal.fpi / events).toFixed(2)} with full pages, ${(c.wal.bytes / events).toFixed(0)} B)`;
  console.log(`per event: analytics ${perEvent(cost)}; ${(events / Math.max(1, cost.statements)).toFixed(1)} events a statement`);
  console.log(`           yardstick ${perEvent(yardCost)}`);
  console.log("analytics' WAL per event by the relation of the record's first block (commits have none):");
  for (const r of cost.wal.relations) console.log(`  ${(r.count / events).toFixed(2).padStart(6)} records ${(r.bytes / events).toFixed(0).padStart(5)} B  ${r.relation}`);
  console.log("analytics' WAL records per event by type (pg_walinspect):");
  for (const t of cost.wal.types) console.log(`  ${(t.count / events).toFixed(2).padStart(6)}  ${(t.fpi / events).toFixed(2).padStart(5)} fpi  ${(t.bytes / events).toFixed(0).padStart(5)} B  ${t.type}`);
  console.log("analytics' statements by blocks per event (pg_stat_statements):");
  for (const q of cost.top) console.log(`  ${(q.blocks / events).toFixed(1).padStart(6)} blocks ${(q.wal / events).toFixed(2).padStart(6)} WAL ${(q.calls / events).toFixed(3).padStart(6)} calls  ${q.text}`);
  await bus.close();
}

interface Cost {
  statements: number;
  blocks: number;
  wal: {
    records: number;
    fpi: number;
    bytes: number;
    types: { type: string; count: number; fpi: number; bytes: number }[];
    relations: { relation: string; count: number; bytes: number }[];
  };
  top: { calls: number; blocks: number; wal: number; text: string }[];
}

/** From now: PostgreSQL's statements, blocks and WAL, until the returned function is called. */
async function startAccount(): Promise<() => Promise<Cost>> {
  await pool.query("SELECT pg_stat_statements_reset()");
  const from = (await pool.query<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn")).rows[0].lsn;
  return async () => {
    const to = (await pool.query<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn")).rows[0].lsn;
    const { rows: types } = await pool.query<{ type: string; count: string; fpi: string; bytes: string }>(
      `SELECT resource_manager || '/' || record_type AS type, count(*) AS count, count(*) FILTER (WHERE fpi_length > 0) AS fpi, sum(record_length) AS bytes
         FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn) GROUP BY 1 ORDER BY 2 DESC`,
      [from, to],
    );
    // A record's first block names its relation by file node (block_ref "rel tablespace/database/filenode").
    const { rows: relations } = await pool.query<{ relation: string; count: string; bytes: string }>(
      `SELECT COALESCE(n.nspname || '.' || c.relname, 'file node ' || w.node, '(no block: commits and the like)') AS relation,
              count(*) AS count, sum(w.record_length) AS bytes
         FROM (SELECT record_length, substring(block_ref from 'rel \\d+/\\d+/(\\d+)') AS node FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn)) w
         LEFT JOIN pg_class c ON c.relfilenode::text = w.node LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
        GROUP BY 1 ORDER BY 2 DESC LIMIT 12`,
      [from, to],
    );
    const { rows } = await pool.query<{ calls: string; blocks: string; wal: string; query: string }>(
      `SELECT calls, shared_blks_hit + shared_blks_read + local_blks_hit + local_blks_read AS blocks, wal_records AS wal, query
         FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_current_wal%' AND query NOT LIKE '%pg_get_wal_records_info%' AND query NOT LIKE '%FROM analytics.inbox WHERE consumer LIKE%'
        ORDER BY shared_blks_hit + shared_blks_read DESC`,
    );
    const all = rows.map((r) => ({ calls: Number(r.calls), blocks: Number(r.blocks), wal: Number(r.wal), text: r.query.replace(/\s+/g, " ").trim().slice(0, 100) }));
    const t = types.map((r) => ({ type: r.type, count: Number(r.count), fpi: Number(r.fpi), bytes: Number(r.bytes) }));
    return {
      statements: all.reduce((n, r) => n + r.calls, 0),
      blocks: all.reduce((n, r) => n + r.blocks, 0),
      wal: {
        records: t.reduce((n, r) => n + r.count, 0),
        fpi: t.reduce((n, r) => n + r.fpi, 0),
        bytes: t.reduce((n, r) => n + r.bytes, 0),
        types: t.slice(0, 12),
        relations: relations.map((r) => ({ relation: r.relation, count: Number(r.count), bytes: Number(r.bytes) })),
      },
      top: all.slice(0, 8),
    };
  };
}

async function expiry() {
  const rows = Number(process.env.BENCH_INBOX_ROWS ?? 1_000_000);
  const HOUR_S = 3600;
  const windowS = 7 * 24 * HOUR_S + 24 * HOUR_S; // the chart's stream max age (168 h) plus the 24 h margin
  const spanS = windowS + 900; // 15 minutes (a sweep's interval) of rows past the window
  const started = performance.now();
  await pool.query(
    `INSERT INTO analytics.inbox (consumer, event_id, subject, processed_at)
     SELECT 'analytics-payment-tip-succeeded', gen_random_uuid(), 'ttip.payment.tip_succeeded', now() - make_interval(secs => $2 * (1 - g::float8 / $1))
       FROM generate_series(1, $1) g`,
    [rows, spanS],
  );
  await pool.query("VACUUM ANALYZE analytics.inbox");
  const size = (await pool.query<{ s: string }>("SELECT pg_size_pretty(pg_total_relation_size('analytics.inbox')) AS s")).rows[0].s;
  console.log(`inbox: ${rows} rows over ${(spanS / 86_400).toFixed(2)} days (${size} with its indexes), made in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  // InboxRetention's statement (services/runtime/src/inbox-retention.ts), batches of 1,000: the first
  // finds the 15 minutes' rows; the last of a sweep finds fewer than a batch (here: none), and ends it.
  const sweep = (cutoffS: number) => `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) DELETE FROM analytics.inbox WHERE ctid = ANY(ARRAY(
      SELECT ctid FROM analytics.inbox WHERE processed_at < now() - make_interval(secs => ${cutoffS}) LIMIT 1000 FOR UPDATE SKIP LOCKED))`;
  const explain = async (label: string) => {
    for (const [what, cutoff] of [["a sweep's first batch (rows due)", windowS], ["its last (none due)", spanS + 60]] as const) {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const plan = (await client.query<{ "QUERY PLAN": string }>(sweep(cutoff))).rows.map((r) => r["QUERY PLAN"]);
        await client.query("ROLLBACK");
        console.log(`  ${label}, ${what}:`);
        // Each scan with its rows removed and buffers (the lines under it), and the time.
        plan.forEach((line, i) => {
          const underScan = plan.slice(Math.max(0, i - 2), i).some((l) => /Scan/.test(l));
          if (/Scan|Execution Time/.test(line) || (underScan && /Rows Removed|Buffers/.test(line))) console.log(`    ${line.trim()}`);
        });
      } finally {
        client.release();
      }
    }
  };
  console.log("the retention sweep's statement (EXPLAIN ANALYZE, rolled back):");
  await explain("with the processed_at index");
  await pool.query("DROP INDEX analytics.inbox_processed_at");
  await explain("without it");
  await pool.query("CREATE INDEX inbox_processed_at ON analytics.inbox (processed_at)");
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
