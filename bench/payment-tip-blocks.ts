// PostgreSQL's work per M-Pesa tip in payment (durable, fsync on): shared
// blocks hit and dirtied per tip (pg_stat_statements, all statements), WAL
// bytes and records per tip (pg_stat_wal), payment.tips' sequential scans and
// each of its indexes' scans and blocks (pg_stat_user_indexes, pg_statio), and
// the statements touching most blocks per tip. The tips are those of
// bench/payment-tips.ts (CreateTip over gRPC -> STK push to the Daraja
// simulator -> its callback -> SUCCEEDED, the wallet entry posted), measured
// after `fill` tips already in the table, as plans depend on its size.
//   node --import tsx bench/payment-tip-blocks.ts [seconds=10] [concurrency=16] [fill=1000] [statements=8]
//   BENCH_SCHEMA_SQL="DROP INDEX ...": run once after the migrations, to compare a variant of the schema.
//   BENCH_ANALYZE=0: no ANALYZE after the fill (the statistics autovacuum left, or none).
//   BENCH_EXPLAIN=1: the measured run with auto_explain (analyze, buffers: its figures are then not
//   comparable), printing the first plan of each statement that reads payment.tips as the server ran
//   it (generic plans included), and its first plan scanning payment.tips whole if one did.
import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { startDarajaSimulator } from "@ttip/payment/testing";
import { createPool } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { closedLoop } from "./load.js";
import { startWalletAndPayment } from "./payment-config.js";

const seconds = Number(process.argv[2] ?? 10);
const concurrency = Number(process.argv[3] ?? 16);
const fill = Number(process.argv[4] ?? 1_000);
const statementRows = Number(process.argv[5] ?? 8);

const explain = process.env.BENCH_EXPLAIN === "1";
const pg = await startPostgres({ durable: true, statementStats: true });
// One session for auto_explain's settings (ALTER SYSTEM runs outside a transaction, after LOAD names them).
const admin = createPool(pg.url, { max: 1 });
if (explain) {
  // Loaded into every session now, off until the plans are wanted (a reload reaches open sessions).
  await admin.query("LOAD 'auto_explain'");
  await admin.query("ALTER SYSTEM SET session_preload_libraries = 'auto_explain'");
  await admin.query("ALTER SYSTEM SET auto_explain.log_min_duration = -1");
  await admin.query("SELECT pg_reload_conf()");
}
const pool = createPool(pg.url, { max: 40 });
// auto_explain's plans, sent to the session as notices, by the statement's first words.
const plans = new Map<string, string>();
if (explain) {
  pool.on("connect", (c) => c.on("notice", (msg: { message?: string }) => {
    const text = msg.message ?? "";
    const m = /Query Text: ([\s\S]*?)\n(?=\S)/.exec(text);
    if (!m || !/payment\.tips/.test(m[1])) return;
    const key = m[1].replace(/\s+/g, " ").slice(0, 100);
    const plan = text.slice(m.index + m[0].length);
    if (!plans.has(key)) plans.set(key, plan);
    // A statement's first plan that scans the table whole, if one does.
    if (/Seq Scan on tips/.test(plan) && !plans.has(`${key} (scanning)`)) plans.set(`${key} (scanning)`, plan);
  }));
}
const sim = await startDarajaSimulator({ callbackDelayMs: 0 });
const services = await startWalletAndPayment(pool, sim);
if (process.env.BENCH_SCHEMA_SQL) await pool.query(process.env.BENCH_SCHEMA_SQL);
const client = createClient(PaymentService, createGrpcTransport({ baseUrl: services.paymentUrl }));

const workers = Array.from({ length: 200 }, () => randomUUID());
let n = 0;
/** Tips payment has answered CreateTip for: counted here, as counting the table would scan it in the measured figures. */
let created = 0;
const oneTip = async () => {
  // Ends in 5678: the simulator's plain success (other endings script failures).
  const phone = `07${String(n++ % 10_000).padStart(4, "0")}5678`;
  const { tip } = await client.createTip({
    idempotencyKey: randomUUID(), recipient: { case: "workerId", value: workers[n % workers.length] },
    amount: { currency: "KES", amountMinor: 15_000n }, payment: { case: "mpesaPhone", value: phone },
  });
  created++;
  for await (const m of client.watchTip({ tipId: tip!.tipId })) {
    if (m.tip!.status !== TipStatus.PENDING && m.tip!.status !== TipStatus.SUCCEEDED) throw new Error(`tip ended ${TipStatus[m.tip!.status]}`);
  }
};

/**
 * The bench's own statements carry this comment: left out of the statements' figures. None reads
 * payment.tips, whose scans and blocks are payment's alone.
 */
const OWN = "/* bench's own */";

/**
 * Waits until every tip's wallet entry is recorded (the credit of the last tips may still be in flight):
 * payment.uncredited holds those decided and not yet recorded (every tip here has succeeded, so is decided).
 */
async function credited(): Promise<void> {
  for (let i = 0; i < 100 && (await pool.query(`SELECT 1 FROM payment.uncredited LIMIT 1 ${OWN}`)).rowCount; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Waits until every session's counts have reached pg_stat_* (tables, indexes, WAL). A session flushes
 * them at most once a second; what it did within a second of its last flush waits, once it is idle,
 * for PostgreSQL's idle flush 10 s later (PGSTAT_IDLE_INTERVAL). Read 0.6 s after the run, a 5 s run's
 * updates and heap blocks of payment.tips came out 12-13% short (and the warm-up's tail fell into the run).
 */
const statisticsFlushed = () => new Promise((r) => setTimeout(r, 11_000));

const num = (v: unknown) => Number(v ?? 0);
const per = (v: unknown, tips: number) => (num(v) / Math.max(1, tips)).toFixed(1);

try {
  // The table at `fill` tips, analysed as autovacuum would have by then, before anything is counted.
  let filled = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (filled++ < fill) await oneTip();
  }));
  await credited();
  if (process.env.BENCH_ANALYZE !== "0") await pool.query("ANALYZE payment.tips; ANALYZE payment.callbacks; ANALYZE payment.receipts");
  await closedLoop(concurrency, 2, oneTip); // warm: statements prepared, generic plans chosen
  await credited();
  await statisticsFlushed();
  const stats = async () => (await pool.query(
    `SELECT pg_current_wal_lsn() AS lsn, (SELECT wal_records FROM pg_stat_wal) AS records, (SELECT wal_fpi FROM pg_stat_wal) AS fpi,
            (SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'payment.tips'::regclass) AS seq_scans,
            (SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = 'payment.tips'::regclass) AS seq_rows,
            (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'payment.tips'::regclass) AS updates,
            (SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'payment.tips'::regclass) AS hot_updates,
            (SELECT heap_blks_hit + heap_blks_read FROM pg_statio_user_tables WHERE relid = 'payment.tips'::regclass) AS heap_blocks ${OWN}`,
  )).rows[0];
  const indexes = async () => new Map((await pool.query<{ name: string; scans: string; blocks: string }>(
    `SELECT i.indexrelname AS name, i.idx_scan AS scans, io.idx_blks_hit + io.idx_blks_read AS blocks
       FROM pg_stat_user_indexes i JOIN pg_statio_user_indexes io USING (indexrelid)
      WHERE i.relid = 'payment.tips'::regclass ORDER BY i.indexrelname`,
  )).rows.map((r) => [r.name, r]));
  if (explain) {
    for (const setting of ["log_min_duration = 0", "log_analyze = on", "log_buffers = on", "log_timing = off", "log_level = 'notice'"]) {
      await admin.query(`ALTER SYSTEM SET auto_explain.${setting}`);
    }
    await admin.query("SELECT pg_reload_conf()");
  }
  await pool.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()");
  const createdBefore = created;
  const before = await stats();
  const indexesBefore = await indexes();

  const r = await closedLoop(concurrency, seconds, oneTip);
  await credited();
  await statisticsFlushed();
  const after = await stats();
  const indexesAfter = await indexes();
  const tips = created - createdBefore;
  const { rows: [wal] } = await pool.query("SELECT pg_wal_lsn_diff($1, $2) AS bytes", [after.lsn, before.lsn]);
  const { rows: [blocks] } = await pool.query(
    `SELECT sum(shared_blks_hit) AS hit, sum(shared_blks_read) AS read, sum(shared_blks_dirtied) AS dirtied, sum(shared_blks_written) AS written,
            sum(calls) AS calls, sum(plans) AS plans
       FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%pg_current_wal_lsn%' AND query NOT LIKE '%bench''s own%'`,
  );
  console.log(`${tips} tips in ${seconds} s at concurrency ${concurrency} (${r.perSecond.toFixed(0)} tips/s), payment.tips held ${createdBefore} before`);
  console.log(
    `per tip: shared blocks hit ${per(blocks.hit, tips)}, read ${per(blocks.read, tips)}, dirtied ${per(blocks.dirtied, tips)}, written ${per(blocks.written, tips)};` +
      ` statements ${per(blocks.calls, tips)}, plans ${per(blocks.plans, tips)}`,
  );
  console.log(
    `per tip: WAL ${per(wal.bytes, tips)} bytes, ${per(num(after.records) - num(before.records), tips)} records, ${per(num(after.fpi) - num(before.fpi), tips)} full-page images`,
  );
  console.log(
    `payment.tips per tip: heap blocks ${per(num(after.heap_blocks) - num(before.heap_blocks), tips)};` +
      ` updates ${per(num(after.updates) - num(before.updates), tips)}, of them HOT (no index entries) ${per(num(after.hot_updates) - num(before.hot_updates), tips)};` +
      ` sequential scans ${num(after.seq_scans) - num(before.seq_scans)} in all (${per(num(after.seq_rows) - num(before.seq_rows), tips)} rows read per tip)`,
  );
  console.log("payment.tips' indexes: scans in the run, blocks per tip");
  for (const [name, a] of indexesAfter) {
    const b = indexesBefore.get(name);
    console.log(`  ${name.padEnd(40)} ${String(num(a.scans) - num(b?.scans)).padStart(7)} ${per(num(a.blocks) - num(b?.blocks), tips).padStart(7)}`);
  }
  const { rows: top } = await pool.query(
    `SELECT calls, shared_blks_hit + shared_blks_read AS blocks, shared_blks_dirtied AS dirtied, wal_bytes, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
       FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%pg_current_wal_lsn%' AND query NOT LIKE '%bench''s own%'
      ORDER BY shared_blks_hit + shared_blks_read DESC LIMIT $1`,
    [statementRows],
  );
  console.log("statements by blocks: calls per tip, blocks per call and per tip, dirtied per tip, WAL bytes per tip");
  for (const s of top) {
    const calls = num(s.calls);
    console.log(
      `  ${per(calls, tips).padStart(5)} ${(num(s.blocks) / Math.max(1, calls)).toFixed(1).padStart(7)} ${per(s.blocks, tips).padStart(6)} ${per(s.dirtied, tips).padStart(5)} ${per(s.wal_bytes, tips).padStart(7)}  ${s.query}`,
    );
  }
  if (explain) for (const [key, plan] of plans) console.log(`\n=== ${key}\n${plan}`);
} finally {
  await services.close();
  await sim.close();
  await admin.end();
  await pool.end();
  await pg.stop();
}
