// payment.receipts' WAL and PostgreSQL CPU per tip, on a durable PostgreSQL: a receipt owed in the
// credit's statement (INSERT ... ON CONFLICT DO NOTHING of a group's tips, as credits.ts writes it),
// then marked sent (payment.mark_receipts_sent of the group's ids, as receipts.ts calls it). This
// tree's schema (payment's migrations: a sent receipt deleted) against the yardstick in the same
// run: the table and function as migrations 0003 and 0018 made them (receipts_unsent on created_at
// where sent_at is null, a sent receipt updated), in a schema of its own beside it, on the same tips.
// Rounds alternate, each tip's receipt owed and sent once; WAL from pg_walinspect over each round,
// CPU of the one backend (/proc, 10 ms ticks).
//   node --import tsx bench/receipts-wal.ts [tips per round=2000] [rounds=6] [tips per group=8]
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { createPool, migrate } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { quietWalSettings, walBetween, walFlushed } from "./pg-wal.js";
import { processCpuMs } from "./process-cpu.js";

const perRound = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 6);
const group = Number(process.argv[4] ?? 8);

const server = await startPostgres({ durable: true });
const pool = createPool(server.url, { max: 4 });
try {
  await quietWalSettings((sql, values) => pool.query(sql, values));
  await migrate(pool, "payment", fileURLToPath(new URL("../services/payment/migrations", import.meta.url)));
  // The yardstick: 0003's table and 0018's function, as they were.
  await pool.query(`CREATE SCHEMA yardstick;
    CREATE TABLE yardstick.receipts (
      tip_id uuid PRIMARY KEY REFERENCES payment.tips (tip_id), created_at timestamptz NOT NULL DEFAULT now(),
      sent_at timestamptz, attempts integer NOT NULL DEFAULT 0, last_error text);
    CREATE INDEX receipts_unsent ON yardstick.receipts (created_at) WHERE sent_at IS NULL;
    CREATE FUNCTION yardstick.mark_receipts_sent(tip_ids uuid[]) RETURNS integer LANGUAGE plpgsql VOLATILE
      SET enable_seqscan = off SET enable_bitmapscan = off SET enable_indexscan = on
    AS $$
    DECLARE marked integer;
    BEGIN
      UPDATE yardstick.receipts SET sent_at = now(), attempts = attempts + 1 WHERE tip_id = ANY (tip_ids);
      GET DIAGNOSTICS marked = ROW_COUNT;
      RETURN marked;
    END $$;
    CREATE EXTENSION IF NOT EXISTS pg_walinspect`);
  const total = perRound * rounds * 2 + 400;
  const { rows: tips } = await pool.query<{ tip_id: string }>(
    `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
       phone, phone_masked, status, callback_token, deadline_at, next_check_at, mpesa_receipt, credit_key, credit_kind, credit_entry_id)
     SELECT gen_random_uuid(), 'k' || i, 'fp', gen_random_uuid(), 'KES', 1000, 1000, 950, '2547' || lpad(i::text, 8, '0'), 'x', 'succeeded',
            'token' || i, now(), now(), 'r' || i, 'r' || i, 'worker', 'e' || i
       FROM generate_series(1, $1::int) i RETURNING tip_id`,
    [total],
  );
  await pool.query("VACUUM ANALYZE payment.tips");
  await pool.query("CHECKPOINT");
  const ids = tips.map((t) => t.tip_id);
  let next = 0;
  const client = await pool.connect();
  const { rows: [{ pid }] } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
  const ways = { yardstick: "yardstick", "sent deleted": "payment" } as const;
  /** `n` tips' receipts owed then sent, a group at a time, into `schema`'s table. */
  const run = async (schema: string, n: number) => {
    for (let done = 0; done < n; done += group) {
      const batch = ids.slice(next, next + group).sort();
      next += group;
      await client.query(`INSERT INTO ${schema}.receipts (tip_id) SELECT unnest($1::uuid[]) ORDER BY 1 ON CONFLICT DO NOTHING`, [batch]);
      await client.query(`SELECT ${schema}.mark_receipts_sent($1::uuid[])`, [batch]);
    }
  };
  for (const schema of Object.values(ways)) await run(schema, 200); // plans kept, code warm
  const query = (sql: string, values?: unknown[]) => pool.query(sql, values);
  const figures = new Map<string, { records: number; bytes: number; cpuUs: number }[]>();
  for (let r = 0; r < rounds; r++) {
    for (const [name, schema] of r % 2 ? Object.entries(ways).reverse() : Object.entries(ways)) {
      const from = await walFlushed(query);
      const cpu = processCpuMs(pid);
      await run(schema, perRound);
      const cpuUs = ((processCpuMs(pid) - cpu) * 1000) / perRound;
      const w = await walBetween(query, from, await walFlushed(query), 20);
      figures.set(name, [...(figures.get(name) ?? []), { records: w.all.records / perRound, bytes: w.written / perRound, cpuUs }]);
    }
  }
  client.release();
  console.log(`${rounds} rounds of ${perRound} tips a way, alternated, groups of ${group}, durable PostgreSQL; per tip (its receipt owed, then sent), commits included:`);
  for (const [name, per] of figures) {
    console.log(`  ${name.padEnd(12)} WAL records ${per.map((x) => x.records.toFixed(2)).join(", ")}; WAL bytes ${per.map((x) => x.bytes.toFixed(0)).join(", ")}; PostgreSQL CPU us ${per.map((x) => x.cpuUs.toFixed(0)).join(", ")}`);
  }
  const [old, now] = [figures.get("yardstick")!, figures.get("sent deleted")!];
  const sum = (xs: { records: number; bytes: number; cpuUs: number }[], k: "records" | "bytes" | "cpuUs") => xs.reduce((s, x) => s + x[k], 0);
  console.log(`  sent deleted / yardstick: WAL records ${(sum(now, "records") / sum(old, "records")).toFixed(3)}x, WAL bytes ${(sum(now, "bytes") / sum(old, "bytes")).toFixed(3)}x, PostgreSQL CPU ${(sum(now, "cpuUs") / sum(old, "cpuUs")).toFixed(2)}x (per round ${now.map((x, i) => (x.cpuUs / old[i].cpuUs).toFixed(2)).join(", ")})`);
  console.log(`load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
} finally {
  await pool.end();
  await server.stop();
}
