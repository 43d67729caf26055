// Full-page images on a grown payment.tips, by wal_compression (durable PostgreSQL: fsync and
// full_page_writes on). tip-e2e's tables are young (a few thousand tips): its window after the
// checkpoint touches the same few hundred pages again and again, so few images. A production
// table of many tips has indexes on random keys (tip ids, idempotency keys, callback tokens) of
// thousands of leaf pages: a tip's insert lands on a page not changed since the checkpoint more
// often, and each such first change writes the page whole. This fills payment.tips with `fill`
// tips, then per setting (alternated): CHECKPOINT, and `windows` windows of `seconds` each of
// tips written as the tip path writes them (insert pending; the push's CheckoutRequestID; the
// outcome: succeeded with its receipt and credit key; the credit's entry id), printing per tip:
// WAL bytes written (positions) and records with their lengths (bench/pg-wal.ts's walBetween, as
// tip-e2e's figures), full-page images and their bytes as stored (pg_walinspect: exact), and
// PostgreSQL's CPU (its processes', the window's reading of the WAL not included). The later windows show the images falling off as the
// pages are touched: a steady state between checkpoints (every checkpoint_timeout, 5 min, or
// sooner by max_wal_size) is an average over them.
//   node --import tsx bench/pg-wal-compression.ts [fill=1000000] [seconds=10] [windows=3] [settings=off,lz4,off,lz4] [connections=8]
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { createPool, migrate } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { walBetween, walFlushed } from "./pg-wal.js";
import { cpuMs } from "./process-cpu.js";

const fill = Number(process.argv[2] ?? 1_000_000);
const seconds = Number(process.argv[3] ?? 10);
const windows = Number(process.argv[4] ?? 3);
const settings = (process.argv[5] ?? "off,lz4,off,lz4").split(",");
const connections = Number(process.argv[6] ?? 8);

const pg = await startPostgres({ durable: true });
const pool = createPool(pg.url, { max: connections + 1 });
const postgresCpu = () => cpuMs(new Map([["postgres", pg.pid]]), new Set(["postgres"])).get("postgres")!;

/** Tips as the tip path leaves them, written in batches (one statement each: the fill is not measured). */
async function fillTips(count: number): Promise<void> {
  const batch = 50_000;
  for (let done = 0; done < count; done += batch) {
    await pool.query(
      `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
         phone, phone_masked, status, callback_token, deadline_at, next_check_at, mpesa_receipt, credit_key, credit_kind, checkout_request_id,
         credit_entry_id, account_reference, completed_at, created_at)
       SELECT gen_random_uuid(), md5(random()::text), 'fp', w.id, 'KES', 1000, 1000, 950, '2547' || lpad((random() * 1e8)::int::text, 8, '0'), 'x',
              'succeeded', md5(random()::text), now(), now(), 'R' || md5(random()::text), 'R' || md5(random()::text), 'worker',
              'ws_CO_' || md5(random()::text), gen_random_uuid()::text, 'T' || i, now(), now() - (($2::int - i) * interval '1 second')
         FROM generate_series($1::int + 1, $1::int + LEAST($3::int, $2::int - $1::int)) i
         CROSS JOIN LATERAL (SELECT ('00000000-0000-4000-8000-' || lpad((i % 50000)::text, 12, '0'))::uuid AS id) w`,
      [done, count, batch],
    );
  }
}

/** One tip's writes, each its own transaction as on the tip path: placed, decided, credited. */
async function oneTip(n: number): Promise<void> {
  const tipId = randomUUID();
  const receipt = `R${randomUUID().replaceAll("-", "").slice(0, 10)}`;
  await pool.query(
    `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
       phone, phone_masked, status, callback_token, deadline_at, next_check_at, account_reference)
     VALUES ($1, $2, 'fp', $3, 'KES', 1000, 1000, 950, $4, 'x', 'pending', $5, now() + interval '2 minutes', now() + interval '2 minutes', $6)`,
    [tipId, randomUUID(), `00000000-0000-4000-8000-${String(n % 50_000).padStart(12, "0")}`, `2547${String(n % 1e8).padStart(8, "0")}`, randomUUID(), `B${n}`],
  );
  await pool.query("UPDATE payment.tips SET checkout_request_id = $2 WHERE tip_id = $1", [tipId, `ws_CO_${randomUUID()}`]);
  await pool.query(
    "UPDATE payment.tips SET status = 'succeeded', result_code = '0', mpesa_receipt = $2, credit_key = $2, credit_kind = 'worker', completed_at = now() WHERE tip_id = $1",
    [tipId, receipt],
  );
  await pool.query("UPDATE payment.tips SET credit_entry_id = $2, credited_at = now() WHERE tip_id = $1", [tipId, randomUUID()]);
}

const query = (sql: string, values?: unknown[]) => pool.query(sql, values);

try {
  await pool.query("CREATE EXTENSION pg_walinspect");
  await migrate(pool, "payment", fileURLToPath(new URL("../services/payment/migrations", import.meta.url)));
  const t0 = performance.now();
  await fillTips(fill);
  await pool.query("VACUUM ANALYZE payment.tips");
  const { rows: [size] } = await pool.query(
    "SELECT pg_size_pretty(pg_table_size('payment.tips')) AS heap, pg_size_pretty(pg_indexes_size('payment.tips')) AS indexes",
  );
  console.log(`payment.tips filled with ${fill} tips in ${((performance.now() - t0) / 1000).toFixed(0)} s: heap ${size.heap}, indexes ${size.indexes}; ${connections} connections`);
  let n = 0;
  for (const setting of settings) {
    await pool.query(`ALTER SYSTEM SET wal_compression = '${setting.replace(/[^a-z0-9]/g, "")}'`);
    await pool.query("SELECT pg_reload_conf()");
    await new Promise((r) => setTimeout(r, 300));
    await pool.query("CHECKPOINT");
    const figures: string[] = [];
    for (let w = 0; w < windows; w++) {
      // Flushed positions: pg_walinspect reads up to one, and the window's commits are flushed (synchronous commit).
      const from = await walFlushed(query);
      const cpu0 = postgresCpu();
      const until = performance.now() + seconds * 1000;
      let tips = 0;
      await Promise.all(Array.from({ length: connections }, async () => {
        while (performance.now() < until) {
          await oneTip(n++);
          tips++;
        }
      }));
      const cpu = postgresCpu() - cpu0;
      // Images counted by their blocks' FPW marks, not by records with one: a non-HOT update or a btree
      // split carries an image of each page it changes first, and fpi_length is their sum.
      const { written, all } = await walBetween(query, from, await walFlushed(query), 0);
      const per = (v: number) => v / Math.max(1, tips);
      figures.push(`${w * seconds}-${(w + 1) * seconds} s: ${tips} tips, WAL ${(per(written) / 1024).toFixed(1)} KB written (positions), ${per(all.records).toFixed(1)} records of ${(per(all.bytes) / 1024).toFixed(1)} KB (record lengths);` +
        ` images ${per(all.fpis).toFixed(2)}, ${(per(all.fpiBytes) / 1024).toFixed(1)} KB (${(all.fpiBytes / Math.max(1, all.fpis) / 1024).toFixed(2)} KB each); PostgreSQL CPU ${per(cpu).toFixed(2)} ms per tip`);
    }
    console.log(`wal_compression=${setting}, after a CHECKPOINT:\n  ${figures.join("\n  ")}`);
  }
} finally {
  await pool.end();
  await pg.stop();
}
