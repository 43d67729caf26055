// Postings per second against a real PostgreSQL (durable: fsync and
// synchronous commit on), through the same postEntry the RPC uses: one
// statement, its own transaction. The yardstick, run in the same process: the
// same statement inside BEGIN/COMMIT (as settle, reversal and pool splits post).
// Each run also prints what PostgreSQL did per posting, figures the machine's
// load does not change (pg_stat_statements): plans, buffer blocks touched, WAL records
// and bytes of the posting statement (both its texts), and the WAL written per posting (commits included).
// Then PostEntries' batches (post-entries.ts: one statement for a call's entries) of each size against
// the yardstick PostEntry one entry at a time, in the same process and at the first concurrency: per entry,
// statements, write transactions (commits: transaction ids taken), CPU of this process and PostgreSQL, WAL.
//   node --import tsx bench/wallet-postings.ts [seconds=5] [concurrency=16,64] [batch sizes=1,4,16]
import { withTransaction } from "@ttip/runtime";
import { postEntry } from "../services/wallet/src/ledger.js";
import { postEntries } from "../services/wallet/src/post-entries.js";
import { closedLoop, percentiles } from "./load.js";
import { cpuMs } from "./process-cpu.js";
import { startWalletLedger } from "./wallet-ledger.js";

const seconds = Number(process.argv[2] ?? 5);
const concurrencies = (process.argv[3] ?? "16,64").split(",").map(Number);
const batchSizes = (process.argv[4] ?? "1,4,16").split(",").map(Number);

const { pool, workers, tipInput, randomWorker, postgres, withBackends, stop } = await startWalletLedger(80);
try {
  const tip = (worker: string) => postEntry(pool, tipInput(worker));
  const tipInTransaction = (worker: string) => withTransaction(pool, (tx) => postEntry(tx, tipInput(worker)));

  const run = async (label: string, concurrency: number, post: (worker: string) => Promise<unknown>, pickWorker: () => string) => {
    const { rows: [{ lsn }] } = await pool.query<{ lsn: string }>("SELECT pg_stat_statements_reset(), pg_current_wal_lsn() AS lsn");
    const cpu = process.cpuUsage();
    const pgCpu = cpuMs(postgres, withBackends).get("postgres")!;
    const r = await closedLoop(concurrency, seconds, () => post(pickWorker()));
    const used = process.cpuUsage(cpu);
    const pgUsed = cpuMs(postgres, withBackends).get("postgres")! - pgCpu;
    const { rows: [w] } = await pool.query<{ plans: number; blocks: number; records: number; bytes: number; wal: number }>(
      `SELECT sum(plans)::float8 / sum(calls) AS plans, sum(shared_blks_hit + shared_blks_read)::float8 / sum(calls) AS blocks,
              sum(wal_records)::float8 / sum(calls) AS records, sum(wal_bytes)::float8 / sum(calls) AS bytes, pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::float8 AS wal
         FROM pg_stat_statements WHERE query LIKE 'WITH lines AS%'`,
      [lsn],
    );
    console.log(
      `${label.padEnd(44)} concurrency ${String(concurrency).padStart(3)}: ${r.perSecond.toFixed(0).padStart(5)} postings/s` +
        `  ${percentiles(r)}  CPU ms/posting: this process ${((used.user + used.system) / 1000 / r.calls).toFixed(3)}, postgres ${(pgUsed / r.calls).toFixed(3)}  (${r.calls} entries, 3 legs each)` +
        `\n${"".padEnd(46)}posting statement: ${w.plans.toFixed(2)} plans, ${w.blocks.toFixed(1)} blocks, ${w.records.toFixed(1)} WAL records, ${w.bytes.toFixed(0)} WAL bytes; WAL ${(w.wal / r.calls).toFixed(0)} bytes/posting`,
    );
    return r.perSecond;
  };

  // Warm up both paths (statements prepared on every connection, code compiled) before measuring either.
  await closedLoop(16, 1, () => tip(randomWorker()));
  await closedLoop(16, 1, () => tipInTransaction(randomWorker()));
  for (const c of concurrencies) {
    const alone = await run("200 workers, shared clearing/fees", c, tip, randomWorker);
    const wrapped = await run("  yardstick: the same inside BEGIN/COMMIT", c, tipInTransaction, randomWorker);
    console.log(`  one statement alone / inside BEGIN/COMMIT: ${(alone / wrapped).toFixed(2)}x`);
    await run("one hot worker wallet", c, tip, () => workers[0]);
  }

  /** Per entry, what `call` (posting `perCall` entries) costs, load aside: statements, write transactions, CPU, WAL. */
  const perEntry = async (label: string, concurrency: number, perCall: number, call: () => Promise<unknown>) => {
    const { rows: [start] } = await pool.query<{ lsn: string; xid: string }>(
      "SELECT pg_stat_statements_reset(), pg_current_wal_lsn() AS lsn, pg_snapshot_xmax(pg_current_snapshot())::text AS xid",
    );
    const cpu = process.cpuUsage();
    const pgCpu = cpuMs(postgres, withBackends).get("postgres")!;
    const r = await closedLoop(concurrency, seconds, call);
    const used = process.cpuUsage(cpu);
    const pgUsed = cpuMs(postgres, withBackends).get("postgres")! - pgCpu;
    const { rows: [end] } = await pool.query<{ statements: number; plans: number; xids: number; wal: number }>(
      `SELECT (SELECT sum(calls) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%')::float8 AS statements,
              (SELECT sum(plans) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%')::float8 AS plans,
              (pg_snapshot_xmax(pg_current_snapshot())::text::bigint - $2::bigint)::float8 AS xids, pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::float8 AS wal`,
      [start.lsn, start.xid],
    );
    const entries = r.calls * perCall;
    console.log(
      `${label.padEnd(36)} ${(entries / r.seconds).toFixed(0).padStart(6)} entries/s  call ${percentiles(r)}` +
        `
${"".padEnd(38)}per entry: ${(end.statements / entries).toFixed(3)} statements (${(end.plans / entries).toFixed(3)} planned), ${(end.xids / entries).toFixed(3)} commits,` +
        ` CPU ms this process ${((used.user + used.system) / 1000 / entries).toFixed(3)}, postgres ${(pgUsed / entries).toFixed(3)}, WAL ${(end.wal / entries).toFixed(0)} bytes`,
    );
    return { perSecond: entries / r.seconds, cpu: (used.user + used.system) / 1000 / entries + pgUsed / entries };
  };
  const batchOf = (size: number) => () => postEntries(pool, Array.from({ length: size }, () => tipInput(randomWorker())));
  const c = concurrencies[0];
  console.log(`PostEntries' batches against PostEntry one by one, concurrency ${c} (tips' credits to 200 workers):`);
  for (const size of batchSizes) await closedLoop(c, 1, batchOf(size));
  for (const size of batchSizes) {
    const alone = await perEntry("  yardstick: PostEntry one by one", c, 1, () => tip(randomWorker()));
    const batched = await perEntry(`  PostEntries, ${size} entries a call`, c, size, batchOf(size));
    console.log(`  batches of ${size} / one by one: ${(batched.perSecond / alone.perSecond).toFixed(2)}x entries/s, ${(batched.cpu / alone.cpu).toFixed(2)}x CPU ms per entry (this process + postgres)`);
  }
  const { rows } = await pool.query(`SELECT (SELECT count(*) FROM wallet.entries) AS entries, (SELECT sum(amount_minor) FROM wallet.postings) AS net`);
  console.log(`ledger: ${rows[0].entries} entries, sum over all postings ${rows[0].net} (must be 0)`);
} finally {
  await stop();
}
