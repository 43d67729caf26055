// payment.tips' indexes as migration 0039 leaves them (one index, tips_pending_due, for both pollers
// of pending tips) against before (tips_due and tips_card_pending): a tip's insert and its success
// update, each in the transaction that writes it, on one connection, the two layouts alternated in
// rounds on one PostgreSQL (durable, fsync on). Per tip: the backend's CPU (/proc, user+system), and
// the relation locks it took outside its 16 fast-path slots (pg_locks, read inside the transaction
// after the insert and again after the update: a count, the same at any load).
//   node --import tsx bench/pg-tips-indexes.ts [tips per round=2000] [rounds=6] [fill=20000]
import { randomUUID } from "node:crypto";
import os from "node:os";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { createPool, migrate } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { processCpuMs } from "./process-cpu.js";

const perRound = Number(process.argv[2] ?? 2_000);
const rounds = Number(process.argv[3] ?? 6);
const fill = Number(process.argv[4] ?? 20_000);

const LAYOUTS = {
  before: [
    "DROP INDEX IF EXISTS payment.tips_pending_due",
    "CREATE INDEX IF NOT EXISTS tips_due ON payment.tips (next_check_at) WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS tips_card_pending ON payment.tips (next_check_at) WHERE status = 'pending' AND method = 'card'",
  ],
  after: [
    "CREATE INDEX IF NOT EXISTS tips_pending_due ON payment.tips (method, next_check_at) WHERE status = 'pending'",
    "DROP INDEX IF EXISTS payment.tips_due",
    "DROP INDEX IF EXISTS payment.tips_card_pending",
  ],
} as const;
type Layout = keyof typeof LAYOUTS;

// A pending M-Pesa tip as payment places it, and its success as the callback decides it (named: prepared, as the services' hot statements are).
const INSERT = {
  name: "bench_tip_insert",
  text: `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
           phone, phone_masked, status, callback_token, deadline_at, next_check_at, checkout_request_id)
         VALUES ($1, $2, 'fp', $3, 'KES', 10000, 10000, 9500, '254700000001', 'x', 'pending', $2, now() + interval '1 minute', now() + interval '30 seconds', $4)`,
};
const SUCCEED = {
  name: "bench_tip_succeed",
  text: `UPDATE payment.tips SET status = 'succeeded', mpesa_receipt = $2, credit_key = $2, credit_kind = 'worker', completed_at = now()
          WHERE tip_id = $1 AND status = 'pending'`,
};
const SLOW_LOCKS = { name: "bench_slow_locks", text: "SELECT count(*)::int AS n FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' AND NOT fastpath" };

const server = await startPostgres({ durable: true });
const pool = createPool(server.url, { max: 2 });
await migrate(pool, "payment", fileURLToPath(new URL("../services/payment/migrations", import.meta.url)));
await pool.query(
  `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
     phone, phone_masked, status, callback_token, deadline_at, next_check_at, mpesa_receipt, credit_key, credit_kind)
   SELECT gen_random_uuid(), 'fill' || i, 'fp', gen_random_uuid(), 'KES', 1000, 1000, 950, '2547' || lpad(i::text, 8, '0'), 'x', 'succeeded',
          'fill-token' || i, now(), now(), 'fill-r' || i, 'fill-r' || i, 'worker'
     FROM generate_series(1, $1::int) i`,
  [fill],
);
await pool.query("VACUUM ANALYZE payment.tips");
const client = new pg.Client({ connectionString: server.url });
await client.connect();
const backend = Number((await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);

async function round(layout: Layout): Promise<{ cpuMs: number; slowAfterInsert: number; slowAfterUpdate: number; indexes: number }> {
  for (const sql of LAYOUTS[layout]) await pool.query(sql);
  await pool.query("CHECKPOINT");
  const indexes = Number((await pool.query("SELECT count(*) AS n FROM pg_index WHERE indrelid = 'payment.tips'::regclass")).rows[0].n);
  let slowAfterInsert = 0;
  let slowAfterUpdate = 0;
  const cpu0 = processCpuMs(backend);
  for (let i = 0; i < perRound; i++) {
    const tipId = randomUUID();
    await client.query("BEGIN");
    await client.query({ ...INSERT, values: [tipId, randomUUID(), randomUUID(), `ws_CO_${randomUUID()}`] });
    slowAfterInsert += (await client.query(SLOW_LOCKS)).rows[0].n;
    await client.query("COMMIT");
    await client.query("BEGIN");
    await client.query({ ...SUCCEED, values: [tipId, `R${randomUUID()}`] });
    slowAfterUpdate += (await client.query(SLOW_LOCKS)).rows[0].n;
    await client.query("COMMIT");
  }
  return { cpuMs: (processCpuMs(backend) - cpu0) / perRound, slowAfterInsert: slowAfterInsert / perRound, slowAfterUpdate: slowAfterUpdate / perRound, indexes };
}

try {
  console.log(`payment.tips filled with ${fill} tips; ${perRound} tips per round, ${rounds} rounds each way, alternated; load ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const order: Layout[] = r % 2 ? ["after", "before"] : ["before", "after"];
    const got = new Map<Layout, Awaited<ReturnType<typeof round>>>();
    for (const layout of order) got.set(layout, await round(layout));
    const b = got.get("before")!;
    const a = got.get("after")!;
    ratios.push(a.cpuMs / b.cpuMs);
    const line = (x: typeof a) => `${x.indexes} indexes, backend CPU ${x.cpuMs.toFixed(3)} ms/tip, locks past fast-path: insert ${x.slowAfterInsert.toFixed(2)}, update ${x.slowAfterUpdate.toFixed(2)}`;
    console.log(`round ${r + 1}: before ${line(b)}; after ${line(a)}; CPU after/before ${(a.cpuMs / b.cpuMs).toFixed(2)} (load ${os.loadavg()[0].toFixed(1)})`);
  }
  ratios.sort((x, y) => x - y);
  console.log(`CPU per tip after/before: median ${ratios[Math.floor(ratios.length / 2)].toFixed(2)}, range ${ratios[0].toFixed(2)}-${ratios[ratios.length - 1].toFixed(2)}`);
} finally {
  await client.end();
  await pool.end();
  await server.stop();
}
