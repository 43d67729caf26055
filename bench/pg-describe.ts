// What a named statement's Describe costs on every run: a tip's row (14 columns: uuids, text, int8,
// int4, timestamptz, a NULL) read by id through the runtime's pool, which describes a statement once
// per connection and sends the later runs without Describe (deferred-begin.ts describedColumns).
// BENCH_OTHER_DB=path/to/other/services/runtime/src/db.ts adds another tree's pool (the yardstick:
// a tree whose pool describes every run, as pg does) to the same process, in short alternating
// blocks so that the machine's load falls on both alike. Prints per statement: this process's CPU
// microseconds, PostgreSQL's (its processes', coarse: 10 ms ticks), bytes read from PostgreSQL and
// wall time; and the ratio this tree / other.
//   node --import tsx bench/pg-describe.ts [blocks=30] [statements per block=2000] [concurrency=8]
import { createPool, type Pool } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { cpuMs } from "./process-cpu.js";
import { createTipsTable, READ_TIP } from "./pg-tips-table.js";

const blocks = Number(process.argv[2] ?? 30);
const perBlock = Number(process.argv[3] ?? 2_000);
const concurrency = Number(process.argv[4] ?? 8);

const pg = await startPostgres({ durable: false });
/** Bytes each way's connections have read from PostgreSQL. */
const bytesRead = new Map<Pool, () => number>();
function counted(pool: Pool): Pool {
  const sockets: { bytesRead: number }[] = [];
  pool.on("connect", (client) => sockets.push((client as unknown as { connection: { stream: { bytesRead: number } } }).connection.stream));
  bytesRead.set(pool, () => sockets.reduce((n, s) => n + s.bytesRead, 0));
  return pool;
}
const ways = new Map<string, Pool>([["this tree", counted(createPool(pg.url, { max: concurrency }))]]);
if (process.env.BENCH_OTHER_DB) {
  const other = (await import(process.env.BENCH_OTHER_DB)) as { createPool: typeof createPool };
  ways.set("other tree", counted(other.createPool(pg.url, { max: concurrency })));
}

/** CPU ms of the postmaster and its children (backends, background processes). */
const postgresCpuMs = () => cpuMs(new Map([["postgres", pg.pid]]), new Set(["postgres"])).get("postgres")!;

const ROWS = 64;

type Figures = { cpuUs: number; pgCpuMs: number; bytes: number; wallMs: number; statements: number };
const zero = (): Figures => ({ cpuUs: 0, pgCpuMs: 0, bytes: 0, wallMs: 0, statements: 0 });

async function block(pool: Pool, ids: string[], into: Figures): Promise<void> {
  let next = 0;
  const read = bytesRead.get(pool)!;
  const [pg0, b0, cpu0, t0] = [postgresCpuMs(), read(), process.cpuUsage(), performance.now()];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < perBlock; i = next++) {
        const { rows } = await pool.query(READ_TIP, [ids[i % ROWS]]);
        if (rows.length !== 1) throw new Error("the tip's row is missing");
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  into.wallMs += performance.now() - t0;
  into.cpuUs += cpu.user + cpu.system;
  into.bytes += read() - b0;
  into.pgCpuMs += postgresCpuMs() - pg0;
  into.statements += perBlock;
}

try {
  const ids = await createTipsTable([...ways.values()][0], ROWS);
  const figures = new Map([...ways.keys()].map((name) => [name, zero()]));
  for (const pool of ways.values()) await block(pool, ids, zero()); // warm-up: every connection opened, the statement prepared
  for (let b = 0; b < blocks; b++) {
    const order = [...ways];
    for (const [name, pool] of b % 2 ? order.reverse() : order) await block(pool, ids, figures.get(name)!);
  }
  console.log(`${blocks} blocks of ${perBlock} reads of a 14-column row by a named statement per way, concurrency ${concurrency}; per statement:`);
  const per = (f: Figures) => ({ cpuUs: f.cpuUs / f.statements, pgCpuUs: (f.pgCpuMs * 1000) / f.statements, bytes: f.bytes / f.statements, wallUs: (f.wallMs * 1000) / f.statements });
  for (const [name, f] of figures) {
    const p = per(f);
    console.log(`  ${name.padEnd(10)} node CPU ${p.cpuUs.toFixed(1)} us  postgres CPU ${p.pgCpuUs.toFixed(1)} us  read ${p.bytes.toFixed(0)} B  wall ${p.wallUs.toFixed(0)} us`);
  }
  if (figures.size === 2) {
    const [now, other] = [...figures.values()].map(per);
    console.log(`  this / other: node CPU ${(now.cpuUs / other.cpuUs).toFixed(2)}, postgres CPU ${(now.pgCpuUs / other.pgCpuUs).toFixed(2)}, bytes read ${(now.bytes / other.bytes).toFixed(2)}, wall ${(now.wallUs / other.wallUs).toFixed(2)}`);
  }
} finally {
  for (const pool of ways.values()) await pool.end();
  await pg.stop();
}
