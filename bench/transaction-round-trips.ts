// What a transaction's BEGIN costs as a round trip of its own: the same
// withTransaction (UPDATE ... RETURNING, then SELECT) on two pools that differ
// only in pipelinedBegin, BEGIN alone (as before) or in the first statement's
// write (now), in short alternating blocks in this process so that the
// machine's load falls on both alike. Prints per transaction: writes to
// PostgreSQL's sockets, this process's CPU microseconds, PostgreSQL's (its
// processes', coarse: 10 ms ticks) and wall time; and the ratio now / before.
//   node --import tsx bench/transaction-round-trips.ts [blocks=40] [transactions per block=250] [concurrency=8]
//   BENCH_DURABLE=0: fsync off (less noise from the disk; the CPU figures are what matter).
import { createPool, withTransaction, type Pool, type PoolClient } from "@ttip/runtime";
import { countWrites, startPostgres } from "@ttip/runtime/testing";
import { cpuMs } from "./process-cpu.js";

const blocks = Number(process.argv[2] ?? 40);
const perBlock = Number(process.argv[3] ?? 250);
const concurrency = Number(process.argv[4] ?? 8);

const pg = await startPostgres({ durable: process.env.BENCH_DURABLE !== "0" });
const counters: { writes: () => number }[] = [];
const writes = () => counters.reduce((n, c) => n + c.writes(), 0);
/** A pool whose sockets' writes are counted (pg corks one statement's messages into one write). */
function countedPool(pipelinedBegin: boolean): Pool {
  const pool = createPool(pg.url, { max: concurrency, pipelinedBegin });
  pool.on("connect", (client) => {
    const counter = countWrites(client);
    counters.push(counter);
  });
  return pool;
}
const ways = new Map<string, Pool>([
  ["BEGIN alone (before)", countedPool(false)],
  ["BEGIN with the first statement", countedPool(true)],
]);

/** CPU ms of the postmaster and its children (backends, background processes). */
const postgresCpuMs = () => cpuMs(new Map([["postgres", pg.pid]]), new Set(["postgres"])).get("postgres")!;

const statements = async (tx: PoolClient, id: number) => {
  await tx.query("UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n", [id]);
  await tx.query("SELECT n FROM counters WHERE id = $1", [id]);
};

type Figures = { writes: number; cpuUs: number; pgCpuMs: number; wallMs: number; transactions: number };

async function block(pool: Pool, into: Figures): Promise<void> {
  let next = 0;
  const pg0 = postgresCpuMs();
  const w0 = writes();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (next++ < perBlock) await withTransaction(pool, (tx) => statements(tx, 1 + worker));
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  into.wallMs += performance.now() - t0;
  into.cpuUs += cpu.user + cpu.system;
  into.writes += writes() - w0;
  into.pgCpuMs += postgresCpuMs() - pg0;
  into.transactions += perBlock;
}

try {
  const setup = [...ways.values()][0];
  await setup.query("CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL)");
  await setup.query("INSERT INTO counters SELECT g, 0 FROM generate_series(1, $1::int) g", [concurrency]);
  const figures = new Map([...ways.keys()].map((name) => [name, { writes: 0, cpuUs: 0, pgCpuMs: 0, wallMs: 0, transactions: 0 }]));
  for (const pool of ways.values()) await block(pool, { writes: 0, cpuUs: 0, pgCpuMs: 0, wallMs: 0, transactions: 0 }); // warm-up
  for (let b = 0; b < blocks; b++) {
    // Each goes first every other block; the table is vacuumed now and then (its updated rows pile up).
    const order = [...ways];
    for (const [name, pool] of b % 2 ? order.reverse() : order) await block(pool, figures.get(name)!);
    if (b % 10 === 9) await setup.query("VACUUM counters");
  }
  console.log(`${blocks} blocks of ${perBlock} transactions (UPDATE, SELECT) per way, concurrency ${concurrency}, ${process.env.BENCH_DURABLE === "0" ? "fsync off" : "durable PostgreSQL"}; per transaction:`);
  const per = (f: Figures) => ({ writes: f.writes / f.transactions, cpuUs: f.cpuUs / f.transactions, pgCpuUs: (f.pgCpuMs * 1000) / f.transactions, wallUs: (f.wallMs * 1000) / f.transactions });
  for (const [name, f] of figures) {
    const p = per(f);
    console.log(`  ${name.padEnd(31)} writes ${p.writes.toFixed(2)}  node CPU ${p.cpuUs.toFixed(1)} us  postgres CPU ${p.pgCpuUs.toFixed(1)} us  wall ${p.wallUs.toFixed(0)} us`);
  }
  const [before, now] = [...figures.values()].map(per);
  console.log(`  now / before: writes ${(now.writes / before.writes).toFixed(2)}, node CPU ${(now.cpuUs / before.cpuUs).toFixed(2)}, postgres CPU ${(now.pgCpuUs / before.pgCpuUs).toFixed(2)}, wall ${(now.wallUs / before.wallUs).toFixed(2)}`);
} finally {
  for (const pool of ways.values()) await pool.end();
  await pg.stop();
}
