// Notification's database work per tip, as the platform hands it over: each tip's TipSucceeded
// event (the worker's SMS and in-app notice, through the trigger's consumer) and its customer's
// receipt (SendNotifications calls of a few receipts, as payment's group commit makes them), on a
// durable PostgreSQL (fsync on) and NATS JetStream, with the provider simulator. Per tip, once
// every send is recorded and every fact relayed: WAL records, full-page images and bytes
// (pg_stat_wal), commits, statements with their shared blocks and WAL (pg_stat_statements), rows
// written by table with the share of updates that were HOT; each SMS gets its delivery report
// (BENCH_REPORTS=0: none), and with BENCH_WALDUMP=1 the WAL
// records by relation (pg_waldump over the run's WAL). pgbench's TPC-B transaction's WAL records,
// measured on the same server, is the yardstick.
// BENCH_GROWN=<tips>: before the measured run, the tables hold that many tips' deliveries (two SMS, an
// in-app notice), with ids of the kind the tree's module makes (random, or in time order), then a
// CHECKPOINT: each index page a measured write touches first costs a full-page image, as on a grown
// table in production (the run's young tables otherwise stay in a few pages).
// BENCH_OTHER_NOTIFICATION=<another tree>/services/notification/src/index.ts alternates rounds of
// that tree's module (before) with this one's (after), each on a PostgreSQL and NATS of its own.
//   node --import tsx bench/notification-wal.ts [tips=600] [rounds=2] [tips per wave=16] [receipts per call=4]
import { execFileSync } from "node:child_process";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { buildEvent, createLogger, createPeers, createPool, JetStreamBus, MemoryCache, Metrics, signingInterceptor, startService, type Pool, type ServiceModule } from "@ttip/runtime";
import { startNats, startPostgres } from "@ttip/runtime/testing";
import * as thisTree from "@ttip/notification";
import { ProviderSimulator } from "@ttip/notification/testing";
import { cpuMs } from "./process-cpu.js";
import { quietWalSettings } from "./pg-wal.js";
import { pgbenchBinary, pgbenchInit, pgbenchRun } from "./pgbench.js";

const tips = Number(process.argv[2] ?? 600);
const rounds = Number(process.argv[3] ?? 2);
const wave = Number(process.argv[4] ?? 16);
const receiptsPerCall = Number(process.argv[5] ?? 4);
// BENCH_REPORTS=0: no delivery reports (by default each SMS gets one, as Africa's Talking sends them).
const reports = process.env.BENCH_REPORTS !== "0";
const WORKERS = 50;
const logger = createLogger({ level: "silent" });
const other = process.env.BENCH_OTHER_NOTIFICATION;
type NotificationExports = typeof thisTree;
const variants: [string, NotificationExports][] = other ? [["before", (await import(path.resolve(other))) as NotificationExports], ["after", thisTree]] : [["this tree", thisTree]];

/** What one round measured, per tip. */
interface Figures {
  wal: number;
  fpi: number;
  walBytes: number;
  commits: number;
  statements: number;
  blocks: number;
  pgCpuMs: number;
  serviceCpuMs: number;
  yardstickWal: number;
  byStatement: { calls: number; plans: number; blocks: number; wal: number; text: string }[];
  byTable: { name: string; ins: number; upd: number; hot: number; del: number }[];
  byRelation?: [string, number][];
}

/** An idle backend reports its table counts within 10 s (PGSTAT_IDLE_INTERVAL). */
const STATS_SETTLE_MS = 10_500;
const grownTips = Number(process.env.BENCH_GROWN ?? 0);

/**
 * `n` tips' deliveries written straight into the tables as the service writes them (a worker's SMS and
 * in-app notice, a customer's receipt; attempts, provider ids, notices), made from now minus 10 ms a tip
 * on, with ids as the module's own (read off a delivery of its warm-up): version 7 in time order, else random.
 */
async function grow(pool: Pool, n: number, workers: string[]): Promise<void> {
  const { rows: [made] } = await pool.query<{ v: string }>("SELECT substr(id::text, 15, 1) AS v FROM notification.deliveries LIMIT 1");
  const id = made.v === "7"
    ? `(lpad(to_hex(g.ms), 12, '0') || '7' || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid`
    : "gen_random_uuid()";
  // CREATE TABLE AS takes no parameters: the count and the workers' ids (uuids, no quotes in them) go in the text.
  const count = Math.floor(n);
  await pool.query(
    `CREATE TEMP TABLE grown AS
     SELECT i, ((extract(epoch FROM now()) * 1000)::bigint - (${count} - i) * 10 - 60000) AS ms FROM generate_series(1, ${count}) AS i`,
  );
  await pool.query(
    `CREATE TEMP TABLE grown_ids AS
     SELECT g.i, to_timestamp(g.ms / 1000.0) AS at, '{${workers.join(",")}}'::uuid[] AS workers, k.kind, ${id} AS id, ${id} AS notice, gen_random_uuid() AS event
       FROM grown g CROSS JOIN (VALUES ('sms'), ('inapp'), ('receipt')) AS k(kind)`,
  );
  await pool.query(
    `INSERT INTO notification.deliveries (id, source_key, recipient_key, channel, user_id, address, address_masked, template_key, template_version, locale, subject, body, status, attempts, created_at, updated_at, next_attempt_at)
     SELECT id, CASE kind WHEN 'receipt' THEN 'rpc:receipt:' || event ELSE 'event:' || event END,
            CASE kind WHEN 'receipt' THEN 'phone:2547' || lpad((i % 10000000)::text, 8, '0') ELSE workers[1 + i % 50]::text END,
            CASE kind WHEN 'inapp' THEN ${Channel.IN_APP} ELSE ${Channel.SMS} END, CASE kind WHEN 'receipt' THEN NULL ELSE workers[1 + i % 50] END,
            CASE kind WHEN 'inapp' THEN workers[1 + i % 50]::text ELSE '2547' || lpad((i % 10000000)::text, 8, '0') END, '2547******' || lpad((i % 100)::text, 2, '0'),
            CASE kind WHEN 'receipt' THEN ${TemplateKey.RECEIPT} ELSE ${TemplateKey.TIP_RECEIVED} END, 1, 'en', CASE kind WHEN 'inapp' THEN 'You got a tip' ELSE '' END,
            'You got a tip of KES 100.00 from 2547******12. You get KES 97.00 after fees. Reference ' || substr(event::text, 1, 10),
            'delivered', CASE kind WHEN 'inapp' THEN 0 ELSE 1 END, at, at, at
       FROM grown_ids ORDER BY i, kind`,
  );
  await pool.query(
    `INSERT INTO notification.delivery_attempts (delivery_id, attempt, provider, provider_message_id, status, started_at, finished_at)
     SELECT id, 1, 'africastalking', 'ATXid_' || md5(id::text), 'sent', at, at FROM grown_ids WHERE kind <> 'inapp' ORDER BY i, kind`,
  );
  await pool.query(
    `INSERT INTO notification.provider_messages (provider, message_id, delivery_id)
     SELECT 'africastalking', 'ATXid_' || md5(id::text), id FROM grown_ids WHERE kind <> 'inapp' ORDER BY i, kind`,
  );
  await pool.query(
    `INSERT INTO notification.inapp_notifications (id, user_id, delivery_id, template_key, title, body, created_at)
     SELECT notice, workers[1 + i % 50], id, ${TemplateKey.TIP_RECEIVED}, 'You got a tip', 'You got a tip of KES 100.00 from 2547******12.', at
       FROM grown_ids WHERE kind = 'inapp' ORDER BY i`,
  );
  await pool.query("DROP TABLE grown, grown_ids");
  // Hint bits set and pages marked visible now, not by the measured run; then every page is clean.
  await pool.query("VACUUM ANALYZE");
  await pool.query("CHECKPOINT");
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function round(module: NotificationExports): Promise<Figures> {
  const pg = await startPostgres({ durable: true, statementStats: true });
  const nats = await startNats();
  const pool = createPool(pg.url, { max: 10 });
  // Checkpoints (and their full-page images) and autovacuum would fall in or out of a short run at random.
  await quietWalSettings((sql, values) => pool.query(sql, values));
  await pool.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  const bus = await JetStreamBus.connect({ servers: nats.url, logger });
  const sim = new ProviderSimulator();
  await sim.start();
  const peers = createPeers(() => undefined);
  const svc = await startService(
    module.createNotificationModule({ config: { providers: sim.config(), retry: module.DEFAULT_RETRY, publicUrl: () => "" }, contacts: async () => null }) as ServiceModule,
    { logger, pool, bus, cache: new MemoryCache(), metrics: new Metrics(), peers },
  );
  // Africa's Talking reports each SMS's delivery to the service's webhook, as the real one does.
  sim.atDeliveryReportUrl = `${svc.server.url}/webhooks/africastalking/delivery?token=sim-callback-token`;
  const client = createClient(NotificationInternalService, createGrpcTransport({ baseUrl: svc.server.url, interceptors: [signingInterceptor()] }));
  const workers = Array.from({ length: WORKERS }, () => randomUUID());
  await pool.query(
    "INSERT INTO notification.recipients (user_id, phone, locale) SELECT u, '2547' || lpad(i::text, 8, '0'), 'en' FROM unnest($1::uuid[]) WITH ORDINALITY AS w(u, i)",
    [workers],
  );
  let numbered = 0;
  const roundStart = (await pool.query<{ at: Date }>("SELECT now() AS at")).rows[0].at;
  /** `n` tips in waves: each wave's events published and its receipts sent together. */
  const run = async (n: number) => {
    const sentBefore = sim.sent.length;
    for (let done = 0; done < n; done += wave) {
      const batch = Array.from({ length: Math.min(wave, n - done) }, () => ({ tipId: randomUUID(), worker: workers[numbered % WORKERS], i: numbered++ }));
      const calls: (typeof batch)[] = [];
      for (let k = 0; k < batch.length; k += receiptsPerCall) calls.push(batch.slice(k, k + receiptsPerCall));
      await Promise.all([
        ...batch.map((t) =>
          bus.publish(
            buildEvent("payment", TipSucceededSchema, {
              tipId: t.tipId,
              workerId: t.worker,
              amount: { amountMinor: 10_000n, currency: "KES" },
              net: { amountMinor: 9_700n, currency: "KES" },
              customerPhoneMasked: "2547******12",
            }),
          ),
        ),
        ...calls.map((call) =>
          client.sendNotifications({
            requests: call.map((t) => ({
              idempotencyKey: `receipt:${t.tipId}`,
              recipient: { case: "phone" as const, value: `+2547${String(20_000_000 + t.i).slice(-8)}` },
              templateKey: TemplateKey.RECEIPT,
              variables: { amount: "KES 100.00", worker: "Amina", reference: t.tipId.slice(0, 10) },
              channels: [Channel.SMS],
            })),
          }),
        ),
      ]);
    }
    // Two SMS per tip (the worker's, the receipt), each recorded 'sent', and every fact relayed.
    while (sim.sent.length < sentBefore + 2 * n) await sleep(10);
    await settled("status IN ('queued', 'retrying')");
    if (!reports) return;
    // Then each SMS's delivery report, a few at a time as a provider's callbacks come.
    const sent = sim.sent.slice(sentBefore);
    for (let k = 0; k < sent.length; k += wave) await Promise.all(sent.slice(k, k + wave).map((m) => sim.reportDelivery(m.id, "delivered")));
    await settled("status <> 'delivered'");
  };
  /**
   * Until no attempt is 'sending', no fact waits in the outbox and no delivery is in the states `open` says;
   * of the round's own (BENCH_GROWN's are older), by index: a look must not read a grown table whole.
   */
  const settled = async (open: string) => {
    for (;;) {
      const { rows } = await pool.query<{ open: number }>(
        `SELECT (SELECT count(*) FROM notification.delivery_attempts WHERE status = 'sending' AND started_at >= $1)
              + (SELECT count(*) FROM notification.outbox) + (SELECT count(*) FROM notification.deliveries WHERE ${open} AND created_at >= $1) AS open`,
        [roundStart],
      );
      if (Number(rows[0].open) === 0) return;
      await sleep(20);
    }
  };
  await run(Math.min(200, tips));
  if (grownTips > 0) await grow(pool, grownTips, workers);
  // Plans as on tables that have grown (the run's tables start empty).
  await pool.query("ANALYZE");
  await pool.query("SELECT pg_stat_statements_reset()");
  await sleep(STATS_SETTLE_MS);
  const pids = new Map([["postgres", pg.pid], ["this process", process.pid]]);
  const before = await counters(pool);
  const cpu0 = cpuMs(pids, new Set(["postgres"]));
  await run(tips);
  const cpu1 = cpuMs(pids, new Set(["postgres"]));
  const lsnAfter = (await pool.query<{ lsn: string }>("SELECT pg_current_wal_lsn() AS lsn")).rows[0].lsn;
  await sleep(STATS_SETTLE_MS);
  const after = await counters(pool);
  const per = (v: number) => v / tips;
  const { rows: statements } = await pool.query<{ calls: string; plans: string; blocks: string; wal: string; query: string }>(
    `SELECT calls, plans, shared_blks_hit + shared_blks_read AS blocks, wal_records AS wal, query FROM pg_stat_statements
      WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%count(*) FROM notification.delivery_attempts%' AND query NOT LIKE 'ANALYZE%' ORDER BY wal_records DESC, calls DESC`,
  );
  const tables = [...after.tables].map(([name, a]) => {
    const b = before.tables.get(name) ?? [0, 0, 0, 0];
    return { name, ins: per(a[0] - b[0]), upd: per(a[1] - b[1]), hot: per(a[2] - b[2]), del: per(a[3] - b[3]) };
  });
  const figures: Figures = {
    wal: per(after.wal - before.wal),
    fpi: per(after.fpi - before.fpi),
    walBytes: per(after.walBytes - before.walBytes),
    // The bench's own looks are commits too: a few per run, left in.
    commits: per(after.commits - before.commits),
    statements: per(statements.reduce((s, r) => s + Number(r.calls), 0)),
    blocks: per(statements.reduce((s, r) => s + Number(r.blocks), 0)),
    pgCpuMs: per(cpu1.get("postgres")! - cpu0.get("postgres")!),
    serviceCpuMs: per(cpu1.get("this process")! - cpu0.get("this process")!),
    yardstickWal: 0,
    byStatement: statements.map((r) => ({ calls: per(Number(r.calls)), plans: Number(r.plans) / Math.max(1, Number(r.calls)), blocks: Number(r.blocks) / Math.max(1, Number(r.calls)), wal: per(Number(r.wal)), text: r.query.replace(/\s+/g, " ").slice(0, 110) })),
    byTable: tables.filter((t) => t.ins + t.upd + t.del > 0).sort((x, y) => y.ins + y.upd + y.del - (x.ins + x.upd + x.del)),
    byRelation: process.env.BENCH_WALDUMP === "1" ? await walByRelation(pool, before.lsn, lsnAfter) : undefined,
  };
  await svc.close();
  peers.close();
  await bus.close();
  await sim.close();
  // The yardstick: a TPC-B transaction's WAL records on this server.
  const pgbench = pgbenchBinary();
  if (pgbench) {
    pgbenchInit(pgbench, pg.url, "yardstick");
    // A first pass sets the fresh tables' hint bits and prunes their pages: WAL the measured pass would count at random.
    pgbenchRun(pgbench, pg.url, "yardstick", ["-c", "4", "-j", "2", "-t", "250"]);
    const w0 = await counters(pool);
    // A fixed count of transactions: 4 clients x 250.
    pgbenchRun(pgbench, pg.url, "yardstick", ["-c", "4", "-j", "2", "-t", "250"]);
    const w1 = await counters(pool);
    figures.yardstickWal = (w1.wal - w0.wal) / 1_000;
  }
  await pool.end();
  await pg.stop();
  await nats.stop();
  return figures;
}

async function counters(pool: Pool) {
  const { rows: [w] } = await pool.query<{ wal: string; fpi: string; bytes: string; commits: string; lsn: string }>(
    `SELECT wal_records AS wal, wal_fpi AS fpi, wal_bytes AS bytes, pg_current_wal_lsn() AS lsn,
            (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) AS commits FROM pg_stat_wal`,
  );
  const { rows } = await pool.query<{ name: string; ins: string; upd: string; hot: string; del: string }>(
    "SELECT schemaname || '.' || relname AS name, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_hot_upd AS hot, n_tup_del AS del FROM pg_stat_user_tables",
  );
  return {
    wal: Number(w.wal),
    fpi: Number(w.fpi),
    walBytes: Number(w.bytes),
    commits: Number(w.commits),
    lsn: w.lsn,
    tables: new Map(rows.map((r) => [r.name, [r.ins, r.upd, r.hot, r.del].map(Number)])),
  };
}

/** WAL records between two LSNs by the relation (table or index) they change, from pg_waldump. */
async function walByRelation(pool: Pool, from: string, to: string): Promise<[string, number][]> {
  const dir = (await pool.query<{ d: string }>("SELECT current_setting('data_directory') AS d")).rows[0].d;
  const waldump = path.join(path.dirname(pgbenchBinary() ?? "/usr/bin/pgbench"), "pg_waldump");
  const out = execFileSync(waldump, ["-p", path.join(dir, "pg_wal"), "-s", from, "-e", to], { maxBuffer: 1 << 30 }).toString();
  const { rows } = await pool.query<{ node: string; name: string }>(
    "SELECT pg_relation_filenode(c.oid)::text AS node, n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE pg_relation_filenode(c.oid) IS NOT NULL",
  );
  const names = new Map(rows.map((r) => [r.node, r.name]));
  const counts = new Map<string, number>();
  for (const line of out.split("\n")) {
    const kind = /rmgr: (\w+)\s.*?desc: (\w+)/.exec(line);
    if (!kind) continue;
    const rel = /rel \d+\/\d+\/(\d+)/.exec(line);
    const relation = rel ? (names.get(rel[1]) ?? `filenode ${rel[1]}`) : "-";
    const key = `${relation} ${kind[1]}/${kind[2]}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    // A full-page image is marked FPW on its block's reference (counted by the record's first block's relation).
    const images = line.match(/FPW/g)?.length ?? 0;
    if (images) counts.set(`${relation} full-page images`, (counts.get(`${relation} full-page images`) ?? 0) + images);
  }
  return [...counts].map(([k, v]) => [k, v / tips] as [string, number]).sort((a, b) => b[1] - a[1]);
}

const f2 = (v: number) => v.toFixed(2);
const results: [string, Figures][] = [];
for (let r = 0; r < rounds; r++) {
  // Alternated: before, after, after, before, ...
  const order = r % 2 === 0 ? variants : [...variants].reverse();
  for (const [name, module] of order) {
    const f = await round(module);
    results.push([name, f]);
    console.log(
      `${name} (round ${r + 1}): per tip ${f2(f.wal)} WAL records (${f2(f.fpi)} full-page images, ${f.walBytes.toFixed(0)} bytes), ${f2(f.commits)} commits, ` +
        `${f2(f.statements)} statements, ${f.blocks.toFixed(0)} shared blocks; CPU ms: PostgreSQL ${f2(f.pgCpuMs)}, this process ${f2(f.serviceCpuMs)}; ` +
        `yardstick: a TPC-B transaction writes ${f2(f.yardstickWal)} WAL records (tip / TPC-B ${f.yardstickWal ? f2(f.wal / f.yardstickWal) : "-"})`,
    );
  }
}
for (const [name] of variants) {
  const mine = results.filter(([n]) => n === name).map(([, f]) => f);
  const last = mine[mine.length - 1];
  console.log(`\n${name}: WAL records per tip ${mine.map((f) => f2(f.wal)).join(", ")}; statements ${mine.map((f) => f2(f.statements)).join(", ")}; blocks ${mine.map((f) => f.blocks.toFixed(0)).join(", ")}`);
  console.log("  by statement (last round): calls/tip  plans/call  blocks/call  WAL records/tip  statement");
  for (const s of last.byStatement.filter((s) => s.calls >= 0.01)) console.log(`  ${f2(s.calls).padStart(9)}  ${f2(s.plans).padStart(10)}  ${s.blocks.toFixed(0).padStart(11)}  ${f2(s.wal).padStart(15)}  ${s.text}`);
  console.log("  rows by table per tip: inserted  updated  (HOT)  deleted");
  for (const t of last.byTable) console.log(`  ${f2(t.ins).padStart(8)} ${f2(t.upd).padStart(8)} ${f2(t.hot).padStart(6)} ${f2(t.del).padStart(8)}  ${t.name}`);
  if (last.byRelation) {
    console.log("  WAL records per tip by relation and kind (pg_waldump):");
    for (const [k, v] of last.byRelation.filter(([, v]) => v >= 0.02)) console.log(`  ${f2(v).padStart(8)}  ${k}`);
  }
}
process.exit(0);
