// What a payment.tips row's width costs the statements that answer a tip's whole row (TIP_COLUMNS,
// 61 columns: placement, the push's answer, the callback's decision, the credit each RETURNING it):
// the same rows by id read with every column, against their id alone, through the runtime's pool
// (named statements, its row parser), in alternated blocks. Per row: this process's CPU (the answer's
// parsing, every value through its column's parser) and PostgreSQL's (its processes': each value
// written as text by its type's output function). The table is payment.tips' columns and types
// (payment's migrations), its rows filled with values of each column's type.
//   node --import tsx bench/pg-row-width.ts [blocks=20] [statements per block=1000] [rows per statement=6] [concurrency=4]
import os from "node:os";
import { createPool, migrate, type Pool } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { payment } from "@ttip/payment";
import { TIP_COLUMNS } from "../services/payment/src/tips.js";
import { cpuMs } from "./process-cpu.js";

const blocks = Number(process.argv[2] ?? 20);
const perBlock = Number(process.argv[3] ?? 1_000);
const rowsPer = Number(process.argv[4] ?? 6);
const concurrency = Number(process.argv[5] ?? 4);
const TIPS = 256;

/** A value of each type payment.tips has, as SQL. */
const VALUE_OF_TYPE: Record<string, string> = {
  uuid: "gen_random_uuid()",
  text: "'ws_CO_191220191020363925'",
  bigint: "(random() * 1e7)::bigint",
  integer: "5",
  smallint: "5",
  boolean: "true",
  "timestamp with time zone": "now() - random() * interval '1 day'",
  numeric: "129.456789",
  bytea: "'\\x00'::bytea",
};

const pg = await startPostgres({ durable: false });
const pool = createPool(pg.url, { max: concurrency });
const postgresCpuMs = () => cpuMs(new Map([["postgres", pg.pid]]), new Set(["postgres"])).get("postgres")!;

/** Rows of `rowsPer` ids per statement, `concurrency` at a time: this process's and PostgreSQL's CPU. */
async function block(db: Pool, text: string, ids: string[]): Promise<{ us: number; pgMs: number }> {
  let next = 0;
  const [cpu0, pg0] = [process.cpuUsage(), postgresCpuMs()];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < perBlock; i = next++) {
        const start = (i * rowsPer) % (TIPS - rowsPer);
        const { rows } = await db.query(text, [ids.slice(start, start + rowsPer)]);
        if (rows.length !== rowsPer) throw new Error(`${rows.length} rows, not ${rowsPer}`);
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return { us: cpu.user + cpu.system, pgMs: postgresCpuMs() - pg0 };
}

try {
  await migrate(pool, "payment", payment.migrations);
  const { rows: columns } = await pool.query<{ name: string; type: string }>(
    "SELECT column_name AS name, data_type AS type FROM information_schema.columns WHERE table_schema = 'payment' AND table_name = 'tips' ORDER BY ordinal_position",
  );
  const unknown = columns.filter((c) => !VALUE_OF_TYPE[c.type]);
  if (unknown.length) throw new Error(`no value for ${unknown.map((c) => `${c.name} ${c.type}`).join(", ")}`);
  // The columns and their types without the constraints and triggers: only what the answer is made of.
  await pool.query("CREATE TABLE wide (LIKE payment.tips)");
  await pool.query(`INSERT INTO wide (${columns.map((c) => c.name).join(", ")}) SELECT ${columns.map((c) => VALUE_OF_TYPE[c.type]).join(", ")} FROM generate_series(1, ${TIPS})`);
  await pool.query("ALTER TABLE wide ADD PRIMARY KEY (tip_id)");
  await pool.query("ANALYZE wide");
  const ids = (await pool.query<{ tip_id: string }>("SELECT tip_id FROM wide ORDER BY tip_id")).rows.map((r) => r.tip_id);
  const ways: [string, string][] = [
    ["id alone", "SELECT tip_id FROM wide WHERE tip_id = ANY ($1::uuid[])"],
    [`TIP_COLUMNS (${TIP_COLUMNS.split(", ").length})`, `SELECT ${TIP_COLUMNS} FROM wide WHERE tip_id = ANY ($1::uuid[])`],
  ];
  for (const [, text] of ways) await block(pool, text, ids); // warm-up: prepared on every connection, plans settled
  const totals = new Map(ways.map(([name]) => [name, { us: 0, pgMs: 0 }]));
  for (let b = 0; b < blocks; b++) {
    for (const [name, text] of b % 2 ? [...ways].reverse() : ways) {
      const got = await block(pool, text, ids);
      const total = totals.get(name)!;
      total.us += got.us;
      total.pgMs += got.pgMs;
    }
  }
  const rows = blocks * perBlock * rowsPer;
  const per = (name: string) => ({ node: totals.get(name)!.us / rows, pg: (totals.get(name)!.pgMs * 1000) / rows });
  console.log(`${blocks} blocks of ${perBlock} statements of ${rowsPer} rows per way, concurrency ${concurrency}; CPU per row:`);
  for (const [name] of ways) console.log(`  ${name.padEnd(18)} this process ${per(name).node.toFixed(1)} us  PostgreSQL ${per(name).pg.toFixed(1)} us`);
  const [narrow, wide] = ways.map(([name]) => per(name));
  console.log(`  the other columns cost per row: this process ${(wide.node - narrow.node).toFixed(1)} us, PostgreSQL ${(wide.pg - narrow.pg).toFixed(1)} us; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
} finally {
  await pool.end();
  await pg.stop();
}
