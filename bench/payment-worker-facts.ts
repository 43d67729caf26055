// What the fraud rules' facts cost PostgreSQL per CreateTip (fraud.ts TIP_FACTS_SQL, the statement
// every tip placement runs per tip), against the size of the worker's history: the worker's rules
// (velocity and the median of succeeded tips) read the worker's newest tips of the last 90 days, 200
// or the velocity limit if larger (all of them, before). Per size:
// shared blocks and server time of one call (EXPLAIN ANALYZE, BUFFERS) and the mean time of `calls` calls one after
// another on one connection, and the yardstick in the same run: a tip read by its id.
// The worker's newest tips were updated after the last VACUUM (as their callbacks and credits do), so
// their pages are not all-visible, as in production; the rest are.
//   node --import tsx bench/payment-worker-facts.ts [history sizes=10,100,1000,10000] [calls=200]
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { createPool, migrate } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { TIP_FACTS_SQL, tipFactsColumns } from "../services/payment/src/fraud.js";
import { TIP_COLUMNS } from "../services/payment/src/tips.js";

const sizes = (process.argv[2] ?? "10,100,1000,10000").split(",").map(Number);
const calls = Number(process.argv[3] ?? 200);
/** Tips of other workers around them: the index the worker's pass reads holds theirs too. */
const OTHERS = 20_000;

const pg = await startPostgres({ durable: true });
const pool = createPool(pg.url, { max: 4 });

/** `count` succeeded tips to `workerId`, spread evenly over the last 90 days, KES 10 to 500. */
async function history(workerId: string | null, count: number): Promise<void> {
  await pool.query(
    `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
       phone, phone_masked, status, callback_token, deadline_at, next_check_at, created_at, completed_at, mpesa_receipt, credit_key, credit_kind, credit_entry_id)
     SELECT gen_random_uuid(), k, 'fp', COALESCE($2::uuid, gen_random_uuid()), 'KES', a, a, a, '2547' || lpad((i % 99999999)::text, 8, '0'), 'x', 'succeeded',
            k, now(), now(), now() - i * interval '90 days' / ($1::int + 1), now() - i * interval '90 days' / ($1::int + 1), k, k, 'worker', 'e'
       FROM generate_series(1, $1::int) i, LATERAL (SELECT gen_random_uuid()::text AS k, 1000 + (i * 7919 % 491) * 100 AS a) x`,
    [count, workerId],
  );
}

/** Mean microseconds of each of `runs` over `calls` calls, taken in turn (a call of each, then again) so the machine's load falls on both alike. */
async function meanMicros(...runs: (() => Promise<unknown>)[]): Promise<number[]> {
  for (let i = 0; i < 10; i++) for (const run of runs) await run(); // prepared and planned
  const spent = runs.map(() => 0);
  for (let i = 0; i < calls; i++) {
    for (const [k, run] of runs.entries()) {
      const t0 = performance.now();
      await run();
      spent[k] += performance.now() - t0;
    }
  }
  return spent.map((ms) => (ms * 1000) / calls);
}

try {
  await migrate(pool, "payment", fileURLToPath(new URL("../services/payment/migrations", import.meta.url)));
  await history(null, OTHERS);
  const workers = new Map<number, string>();
  for (const size of sizes) {
    const workerId = randomUUID();
    workers.set(size, workerId);
    await history(workerId, size);
  }
  await pool.query("VACUUM ANALYZE payment.tips");
  // The newest 5% of each worker's tips (at least one) updated since: not all-visible.
  for (const [size, workerId] of workers) {
    await pool.query(
      `UPDATE payment.tips SET checks = checks + 1 WHERE tip_id IN
         (SELECT tip_id FROM payment.tips WHERE worker_id = $1 ORDER BY created_at DESC LIMIT $2)`,
      [workerId, Math.max(1, Math.ceil(size / 20))],
    );
  }
  const facts = `WITH ${TIP_FACTS_SQL} SELECT ${tipFactsColumns("j")} FROM judged j`;
  // The rules' limits at their defaults (config.ts: 5 tips from a number, 30 to a worker, within 10 minutes).
  const params = (workerId: string) => ["254700000001", workerId, 600_000, `key-${randomUUID()}`, 120, 3, 5, 30, 5_000n];
  const { rows: [anyTip] } = await pool.query<{ tip_id: string }>("SELECT tip_id FROM payment.tips LIMIT 1");
  const byId = `SELECT ${TIP_COLUMNS} FROM payment.tips WHERE tip_id = $1`;
  console.log(`payment.tips: ${OTHERS} tips of other workers, and per size one worker's; ${calls} calls each, load average ${(await import("node:os")).loadavg()[0].toFixed(1)}`);
  console.log("worker's tips in 90 days  blocks per call  executing (us, one call)  us per call  a tip read by id (us)  ratio");
  for (const [size, workerId] of workers) {
    const { rows: plan } = await pool.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${facts}`, params(workerId));
    const explained = (plan[0]["QUERY PLAN"] as { Plan: Record<string, number>; "Execution Time": number }[])[0];
    const blocks = explained.Plan["Shared Hit Blocks"] + explained.Plan["Shared Read Blocks"];
    const [factsUs, yardstickUs] = await meanMicros(() => pool.query(facts, params(workerId)), () => pool.query(byId, [anyTip.tip_id]));
    console.log(`${String(size).padStart(24)}  ${String(blocks).padStart(15)}  ${(explained["Execution Time"] * 1000).toFixed(0).padStart(24)}  ${factsUs.toFixed(0).padStart(11)}  ${yardstickUs.toFixed(0).padStart(21)}  ${(factsUs / yardstickUs).toFixed(1).padStart(5)}`);
  }
} finally {
  await pool.end();
  await pg.stop();
}
