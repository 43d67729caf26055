// Whether payment.tips' success decision pays as a HOT update. A HOT update writes no index entry,
// but the decision sets three columns that indexes name: status (tips_worker_facts' INCLUDE,
// tips_pending_due's condition), mpesa_receipt and credit_key (unique indexes), so today it writes
// one entry into each of the table's indexes. Here an M-Pesa tip's life as payment writes it (placed
// pending, its push's id stored, its success decided, its wallet entry recorded), each step in a
// transaction of its own on one connection, in three databases of one durable PostgreSQL, grown with
// tips of 150 workers: `before` as the migrations leave it; `triggers` and `ctes` with none of those
// columns in any index of payment.tips: the receipts and the credit keys kept unique in narrow tables
// (as tip_checkout_ids is), the pending tips' due times in a queue table (as uncredited is), the
// succeeded tips' amounts, which the fraud rules' median reads, in a table of their own (the status
// left out of tips_worker_facts), kept by triggers (every writer, whatever its statement) or by the
// statements themselves (no trigger: the cheapest form such tables could take). Rounds alternate.
// Per tip: WAL records, bytes and full-page images (pg_walinspect), payment.tips' updates and how many
// were HOT, the index entries written into payment.tips' indexes and the side tables' (the
// existing tip_checkout_ids and uncredited too), the side tables' heap records, and the backend's CPU
// (/proc: the one figure that depends on the machine's load). Then what the fraud rules' pass over a
// worker's newest tips reads (shared blocks) with the status in the index, from the heap, and from
// the side table.
// A fourth layout, `unguarded`, is the migrations' without the three BEFORE UPDATE row triggers on
// payment.tips (the rollout guards of 0025, 0029 and 0037): with any such trigger on a table,
// PostgreSQL locks the row before each update to hand the trigger its old version (a Heap LOCK
// record), whether or not the trigger's columns or WHEN clause then let it fire: what they cost.
//   node --import tsx bench/pg-tips-hot.ts [tips per round=1000] [rounds=4] [grown tips=50000]
import { randomUUID } from "node:crypto";
import os from "node:os";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { createPool, migrate } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { processCpuMs } from "./process-cpu.js";
import { quietWalSettings, walBetween, walFlushed, type WalPart } from "./pg-wal.js";

const perRound = Number(process.argv[2] ?? 1_000);
const rounds = Number(process.argv[3] ?? 4);
const grown = Number(process.argv[4] ?? 50_000);

/** The side tables of the layouts without the decision's columns in payment.tips' indexes. */
const SIDE_TABLES = `
CREATE TABLE payment.tip_receipts (mpesa_receipt text PRIMARY KEY, tip_id uuid NOT NULL);
CREATE TABLE payment.tip_credit_keys (credit_key text PRIMARY KEY, tip_id uuid NOT NULL);
CREATE TABLE payment.pending_tips (method text NOT NULL, next_check_at timestamptz NOT NULL, tip_id uuid NOT NULL, PRIMARY KEY (method, next_check_at, tip_id));
CREATE TABLE payment.worker_succeeded (worker_id uuid NOT NULL, created_at timestamptz NOT NULL, tip_id uuid NOT NULL, amount_minor bigint NOT NULL,
  PRIMARY KEY (worker_id, created_at, tip_id) INCLUDE (amount_minor));
`;
const SIDE_TRIGGERS = `
CREATE FUNCTION payment.tip_sides_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  was payment.tips;
BEGIN
  IF TG_OP = 'UPDATE' THEN was := OLD; END IF;
  IF was.mpesa_receipt IS DISTINCT FROM NEW.mpesa_receipt THEN
    IF was.mpesa_receipt IS NOT NULL THEN DELETE FROM payment.tip_receipts WHERE mpesa_receipt = was.mpesa_receipt AND tip_id = NEW.tip_id; END IF;
    IF NEW.mpesa_receipt IS NOT NULL THEN INSERT INTO payment.tip_receipts VALUES (NEW.mpesa_receipt, NEW.tip_id); END IF;
  END IF;
  IF was.credit_key IS DISTINCT FROM NEW.credit_key THEN
    IF was.credit_key IS NOT NULL THEN DELETE FROM payment.tip_credit_keys WHERE credit_key = was.credit_key AND tip_id = NEW.tip_id; END IF;
    IF NEW.credit_key IS NOT NULL THEN INSERT INTO payment.tip_credit_keys VALUES (NEW.credit_key, NEW.tip_id); END IF;
  END IF;
  IF (was.status = 'pending') IS DISTINCT FROM (NEW.status = 'pending') OR (NEW.status = 'pending' AND was.next_check_at IS DISTINCT FROM NEW.next_check_at) THEN
    IF was.status = 'pending' THEN DELETE FROM payment.pending_tips WHERE method = was.method AND next_check_at = was.next_check_at AND tip_id = NEW.tip_id; END IF;
    IF NEW.status = 'pending' THEN INSERT INTO payment.pending_tips VALUES (NEW.method, NEW.next_check_at, NEW.tip_id); END IF;
  END IF;
  IF NEW.worker_id IS NOT NULL AND (was.status = 'succeeded') IS DISTINCT FROM (NEW.status = 'succeeded') THEN
    IF was.status = 'succeeded' THEN DELETE FROM payment.worker_succeeded WHERE worker_id = NEW.worker_id AND created_at = NEW.created_at AND tip_id = NEW.tip_id; END IF;
    IF NEW.status = 'succeeded' THEN INSERT INTO payment.worker_succeeded VALUES (NEW.worker_id, NEW.created_at, NEW.tip_id, NEW.amount_minor); END IF;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER tips_sides_inserted AFTER INSERT ON payment.tips FOR EACH ROW EXECUTE FUNCTION payment.tip_sides_follow();
CREATE TRIGGER tips_sides_updated AFTER UPDATE OF mpesa_receipt, credit_key, status, next_check_at ON payment.tips FOR EACH ROW
  WHEN (OLD.mpesa_receipt IS DISTINCT FROM NEW.mpesa_receipt OR OLD.credit_key IS DISTINCT FROM NEW.credit_key
        OR OLD.status IS DISTINCT FROM NEW.status OR OLD.next_check_at IS DISTINCT FROM NEW.next_check_at)
  EXECUTE FUNCTION payment.tip_sides_follow();
`;
const INDEXES_AFTER = `
DROP INDEX payment.tips_mpesa_receipt_key;
DROP INDEX payment.tips_credit_key_key;
DROP INDEX payment.tips_pending_due;
DROP INDEX payment.tips_worker_facts;
CREATE INDEX tips_worker_facts ON payment.tips (worker_id, created_at DESC);
`;

// The statements as payment's own (named: prepared, as the services' hot statements are).
const PLACE = {
  name: "bench_tip_place",
  text: `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
           phone, phone_masked, status, callback_token, deadline_at, next_check_at, account_reference)
         VALUES ($1, $2, 'fp', $3, 'KES', 10000, 10000, 9500, $4, '2547****0001', 'pending', $5, now() + interval '1 minute', now() + interval '30 seconds', $6)`,
};
const PUSHED = {
  name: "bench_tip_pushed",
  text: "UPDATE payment.tips SET checkout_request_id = $2, merchant_request_id = $2 WHERE tip_id = $1 AND status = 'pending'",
};
const SUCCEED = {
  name: "bench_tip_succeed",
  text: `UPDATE payment.tips SET status = 'succeeded', result_code = '0', result_message = 'ok', mpesa_receipt = $2, credit_key = $2,
           credit_kind = 'worker', received_minor = NULL, completed_at = now()
          WHERE tip_id = $1 AND status = 'pending' AND credit_key IS NULL`,
};
// The same writes with the side tables kept by the statements (no trigger): the cheapest form the side tables could take.
const PLACE_CTES = {
  name: "bench_tip_place_ctes",
  text: `WITH t AS (${PLACE.text} RETURNING method, next_check_at, tip_id) INSERT INTO payment.pending_tips SELECT * FROM t`,
};
const SUCCEED_CTES = {
  name: "bench_tip_succeed_ctes",
  text: `WITH d AS (${SUCCEED.text} RETURNING tip_id, worker_id, created_at, amount_minor, method, next_check_at, mpesa_receipt, credit_key),
    r AS (INSERT INTO payment.tip_receipts SELECT mpesa_receipt, tip_id FROM d),
    k AS (INSERT INTO payment.tip_credit_keys SELECT credit_key, tip_id FROM d),
    q AS (DELETE FROM payment.pending_tips p USING d WHERE p.method = d.method AND p.next_check_at = d.next_check_at AND p.tip_id = d.tip_id)
    INSERT INTO payment.worker_succeeded SELECT worker_id, created_at, tip_id, amount_minor FROM d WHERE worker_id IS NOT NULL`,
};
const CREDITED = { name: "bench_tip_credited", text: "UPDATE payment.tips SET credit_entry_id = $2, credited_at = now() WHERE tip_id = $1 AND credit_entry_id IS NULL" };

type Layout = "before" | "triggers" | "ctes" | "unguarded";
const layouts: Layout[] = ["before", "triggers", "ctes", "unguarded"];
const UNGUARDED = `
DROP TRIGGER tips_reopened_receipt_kept ON payment.tips;
DROP TRIGGER tips_unclaimed_approval_checked ON payment.tips;
DROP TRIGGER tips_approval_found_posted_cleared ON payment.tips;
`;

interface Figures {
  records: number;
  bytes: number;
  fpis: number;
  tipsUpdates: number;
  tipsHot: number;
  tipsLocks: number;
  tipsIndexEntries: number;
  sideIndexEntries: number;
  sideHeapRecords: number;
  cpuMs: number;
  parts: WalPart[];
}

const server = await startPostgres({ durable: true });
const admin = createPool(server.url, { max: 2 });
const workers = Array.from({ length: 150 }, () => randomUUID());
const dbs = new Map<Layout, Awaited<ReturnType<typeof database>>>();

/** A database of its own for a layout, migrated, grown with `grown` succeeded and credited tips of the same workers. */
async function database(layout: Layout): Promise<{ pool: ReturnType<typeof createPool>; client: pg.Client; backend: number; url: string }> {
  await admin.query(`CREATE DATABASE tips_${layout}`);
  const url = server.url.replace(/\/postgres$/, `/tips_${layout}`);
  const pool = createPool(url, { max: 2 });
  await migrate(pool, "payment", fileURLToPath(new URL("../services/payment/migrations", import.meta.url)));
  if (layout === "unguarded") await pool.query(UNGUARDED);
  else if (layout !== "before") await pool.query(SIDE_TABLES + (layout === "triggers" ? SIDE_TRIGGERS : "") + INDEXES_AFTER);
  await pool.query(
    `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
       phone, phone_masked, status, callback_token, deadline_at, next_check_at, created_at, completed_at, account_reference, checkout_request_id,
       mpesa_receipt, credit_key, credit_kind, credit_entry_id, credited_at)
     SELECT gen_random_uuid(), k, 'fp', ($2::uuid[])[1 + i % 150], 'KES', 10000, 10000, 9500, '2547' || lpad((i % 99999999)::text, 8, '0'), 'x', 'succeeded',
            k, now(), now(), now() - i * interval '1 second', now() - i * interval '1 second', 'R' || i, 'ws_CO_' || k, 'Q' || k, 'Q' || k, 'worker', 'e', now()
       FROM generate_series(1, $1::int) i, LATERAL (SELECT gen_random_uuid()::text || i AS k) x`,
    [grown, workers],
  );
  if (layout === "ctes") {
    await pool.query("INSERT INTO payment.tip_receipts SELECT mpesa_receipt, tip_id FROM payment.tips; INSERT INTO payment.tip_credit_keys SELECT credit_key, tip_id FROM payment.tips");
    await pool.query("INSERT INTO payment.worker_succeeded SELECT worker_id, created_at, tip_id, amount_minor FROM payment.tips");
  }
  await pool.query("VACUUM ANALYZE");
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const backend = Number((await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
  return { pool, client, backend, url };
}


async function inTransaction(client: pg.Client, q: { name: string; text: string }, values: unknown[]): Promise<void> {
  await client.query("BEGIN");
  await client.query({ ...q, values });
  await client.query("COMMIT");
}

let serial = 0;
async function round(layout: Layout): Promise<Figures> {
  const { client, backend, pool } = dbs.get(layout)!;
  await admin.query("CHECKPOINT");
  const from = await walFlushed((s, v) => pool.query(s, v));
  const cpu0 = processCpuMs(backend);
  for (let i = 0; i < perRound; i++) {
    const tipId = randomUUID();
    const n = ++serial;
    const ctes = layout === "ctes";
    await inTransaction(client, ctes ? PLACE_CTES : PLACE, [tipId, randomUUID(), workers[n % workers.length], `2547${String(n).padStart(8, "0")}`, randomUUID(), `B${n}`]);
    await inTransaction(client, PUSHED, [tipId, `ws_CO_${randomUUID()}`]);
    await inTransaction(client, ctes ? SUCCEED_CTES : SUCCEED, [tipId, `S${randomUUID().slice(0, 10)}${n}`]);
    await inTransaction(client, CREDITED, [tipId, randomUUID()]);
  }
  const cpuMs = (processCpuMs(backend) - cpu0) / perRound;
  const to = await walFlushed((s, v) => pool.query(s, v));
  const wal = await walBetween((s, v) => pool.query(s, v), from, to, 1_000);
  const count = (f: (p: WalPart) => boolean) => wal.byRelationKind.filter(f).reduce((s, p) => s + p.records, 0) / perRound;
  const side = /^payment\.(tip_receipts|tip_credit_keys|pending_tips|worker_succeeded|tip_checkout_ids|uncredited)/;
  return {
    records: wal.all.records / perRound,
    bytes: wal.all.bytes / perRound,
    fpis: wal.all.fpis / perRound,
    tipsUpdates: count((p) => /^payment\.tips Heap (HOT_)?UPDATE$/.test(p.name)),
    tipsHot: count((p) => p.name === "payment.tips Heap HOT_UPDATE"),
    tipsLocks: count((p) => p.name === "payment.tips Heap LOCK"),
    tipsIndexEntries: count((p) => /^payment\.tips_\S+ Btree INSERT_LEAF/.test(p.name) && !side.test(p.name)),
    sideIndexEntries: count((p) => side.test(p.name) && / Btree INSERT_LEAF/.test(p.name)),
    sideHeapRecords: count((p) => side.test(p.name) && / Heap /.test(p.name)),
    cpuMs,
    parts: wal.byRelationKind.sort((a, b) => b.records - a.records),
  };
}

// The fraud rules' pass over a worker's newest tips (fraud.ts), as it reads payment.tips today, and as the
// side tables' layouts would read it: the velocity count from tips_worker_facts, the median from worker_succeeded.
const WORKER_PASS = `SELECT count(*) FILTER (WHERE created_at > now() - interval '10 minutes') AS recent,
         percentile_disc(0.5) WITHIN GROUP (ORDER BY amount_minor) FILTER (WHERE status = 'succeeded') AS median
    FROM (SELECT created_at, status, amount_minor FROM payment.tips WHERE worker_id = $1 AND created_at > now() - interval '90 days'
           ORDER BY created_at DESC LIMIT 200) newest`;
const WORKER_PASS_SIDE = `SELECT (SELECT count(*) FROM (SELECT 1 FROM payment.tips WHERE worker_id = $1 AND created_at > now() - interval '10 minutes'
                                   ORDER BY created_at DESC LIMIT 200) n) AS recent,
         (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY amount_minor)
            FROM (SELECT amount_minor FROM payment.worker_succeeded WHERE worker_id = $1 AND created_at > now() - interval '90 days'
                   ORDER BY created_at DESC LIMIT 200) s) AS median`;

/** Shared blocks (hit or read) of one run of `sql` for a worker (EXPLAIN ANALYZE, BUFFERS), the mean over the first ten workers. */
async function blocksPerRead(layout: Layout, sql: string): Promise<number> {
  const { pool } = dbs.get(layout)!;
  let blocks = 0;
  for (const worker of workers.slice(0, 10)) {
    const { rows } = await pool.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql.replace(/\$1/g, `'${worker}'::uuid`)}`);
    const plan = (rows[0]["QUERY PLAN"] as { Plan: Record<string, number> }[])[0].Plan;
    blocks += plan["Shared Hit Blocks"] + plan["Shared Read Blocks"];
  }
  return blocks / 10;
}

const f2 = (v: number) => v.toFixed(2);
try {
  await quietWalSettings((s, v) => admin.query(s, v));
  for (const layout of layouts) dbs.set(layout, await database(layout));
  console.log(`payment.tips grown with ${grown} tips per database; ${perRound} tips per round (placed, pushed, succeeded, credited), ${rounds} rounds each way, alternated; load ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const last = new Map<Layout, Figures>();
  for (let r = 0; r < rounds; r++) {
    const got = new Map<Layout, Figures>();
    for (const layout of r % 2 ? [...layouts].reverse() : layouts) got.set(layout, await round(layout));
    const cpu = (l: Layout) => got.get(l)!.cpuMs / got.get("before")!.cpuMs;
    for (const layout of layouts) {
      const f = got.get(layout)!;
      last.set(layout, f);
      console.log(
        `round ${r + 1} ${layout.padEnd(9)}: per tip ${f2(f.records)} WAL records, ${f.bytes.toFixed(0)} bytes, ${f2(f.fpis)} full-page images; payment.tips ${f2(f.tipsUpdates)} updates (${f2(f.tipsHot)} HOT), ${f2(f.tipsLocks)} row-lock records, ` +
          `${f2(f.tipsIndexEntries)} index entries; side tables ${f2(f.sideHeapRecords)} heap records, ${f2(f.sideIndexEntries)} index entries; backend CPU ${f.cpuMs.toFixed(3)} ms`,
      );
    }
    console.log(`  CPU triggers/before ${cpu("triggers").toFixed(2)}, ctes/before ${cpu("ctes").toFixed(2)}, unguarded/before ${cpu("unguarded").toFixed(2)} (load ${os.loadavg()[0].toFixed(1)})`);
  }
  console.log(
    `\nthe fraud rules' pass over a worker's newest tips (up to 200 of ${Math.round((grown + rounds * perRound) / workers.length)}; the newest on pages not all-visible), shared blocks a read: ` +
      `before ${(await blocksPerRead("before", WORKER_PASS)).toFixed(0)} (index-only: the status in tips_worker_facts); ` +
      `the status read from the heap ${(await blocksPerRead("ctes", WORKER_PASS)).toFixed(0)}; the median from worker_succeeded ${(await blocksPerRead("ctes", WORKER_PASS_SIDE)).toFixed(0)}`,
  );
  for (const layout of layouts) {
    console.log(`\n${layout}, last round: WAL records per tip by relation and kind (bytes per tip)`);
    for (const p of last.get(layout)!.parts.filter((p) => p.records / perRound >= 0.05)) {
      console.log(`  ${f2(p.records / perRound).padStart(6)}  ${(p.bytes / perRound).toFixed(0).padStart(6)}  ${p.name}`);
    }
  }
} finally {
  for (const { client, pool } of dbs.values()) {
    await client.end();
    await pool.end();
  }
  await admin.end();
  await server.stop();
}
