// How a posting statement run on its own (PostEntry's, PostEntries') claims its entry's key, on a
// durable PostgreSQL: INSERT ... ON CONFLICT DO NOTHING, the yardstick (the statement as every
// posting ran it before, and as one inside a caller's transaction still does), against an INSERT
// where no entry has the key ("alone": a key lost to a concurrent posting fails the statement,
// which runs again the first way). Both through postEntry, alternated in blocks in this process, so
// the machine's load falls on both alike. Per posting: WAL records and bytes of the statement and
// buffer blocks it touched (pg_stat_statements: the load does not change them), the WAL written in
// all (commits included), and CPU of this process and of PostgreSQL (/proc, coarse: 10 ms ticks).
//   node --import tsx bench/wallet-entry-claims.ts [blocks=10] [postings per block=400] [concurrency=16]
import { loadavg } from "node:os";
import { type EntryClaim, postEntry } from "../services/wallet/src/ledger.js";
import { cpuMs } from "./process-cpu.js";
import { startWalletLedger } from "./wallet-ledger.js";

const blocks = Number(process.argv[2] ?? 10);
const perBlock = Number(process.argv[3] ?? 400);
const concurrency = Number(process.argv[4] ?? 16);

const { pool, tipInput, randomWorker, postgres, withBackends, stop } = await startWalletLedger(concurrency + 4);
try {
  /** A tip's credit, as payment posts one. */
  const tip = (claim: EntryClaim) => postEntry(pool, tipInput(randomWorker()), claim);

  /** `count` postings, `concurrency` at a time. */
  const post = async (claim: EntryClaim, count: number) => {
    let left = count;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await tip(claim);
    }));
  };

  const claims: EntryClaim[] = ["in-transaction", "alone"];
  const totals = new Map(claims.map((c) => [c, { postings: 0, nodeMs: 0, pgMs: 0, wal: 0 }]));
  // Warm: statements prepared on every connection, code compiled, both ways.
  for (const c of claims) await post(c, 200);
  await pool.query("SELECT pg_stat_statements_reset()");
  for (let b = 0; b < blocks; b++) {
    for (const c of b % 2 ? [...claims].reverse() : claims) {
      const { rows: [{ lsn }] } = await pool.query<{ lsn: string }>("SELECT pg_current_wal_lsn() AS lsn");
      const node = process.cpuUsage();
      const pgBefore = cpuMs(postgres, withBackends).get("postgres")!;
      await post(c, perBlock);
      const t = totals.get(c)!;
      t.pgMs += cpuMs(postgres, withBackends).get("postgres")! - pgBefore;
      const used = process.cpuUsage(node);
      t.nodeMs += (used.user + used.system) / 1000;
      t.wal += Number((await pool.query<{ wal: string }>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1) AS wal", [lsn])).rows[0].wal);
      t.postings += perBlock;
    }
  }
  const { rows: stats } = await pool.query<{ claim: EntryClaim; calls: number; blocks: number; records: number; bytes: number }>(
    `SELECT CASE WHEN query LIKE '%ON CONFLICT (idempotency_key)%' THEN 'in-transaction' ELSE 'alone' END AS claim, sum(calls)::float8 AS calls,
            sum(shared_blks_hit + shared_blks_read)::float8 AS blocks, sum(wal_records)::float8 AS records, sum(wal_bytes)::float8 AS bytes
       FROM pg_stat_statements WHERE query LIKE 'WITH lines AS%' GROUP BY 1`,
  );
  const per = (c: EntryClaim) => {
    const t = totals.get(c)!;
    const s = stats.find((r) => r.claim === c)!;
    return { t, s, nodeUs: (t.nodeMs * 1000) / t.postings, pgUs: (t.pgMs * 1000) / t.postings, wal: t.wal / t.postings };
  };
  console.log(`${blocks} blocks of ${perBlock} postings a way, alternated, concurrency ${concurrency}, durable PostgreSQL; a tip's credit of three lines to 200 wallets; load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  for (const c of claims) {
    const { s, nodeUs, pgUs, wal } = per(c);
    console.log(
      `  ${(c === "in-transaction" ? "yardstick: ON CONFLICT DO NOTHING" : "alone: where no entry has the key").padEnd(36)} statement: ${(s.records / s.calls).toFixed(2)} WAL records, ` +
        `${(s.bytes / s.calls).toFixed(0)} WAL bytes, ${(s.blocks / s.calls).toFixed(1)} blocks; WAL written ${wal.toFixed(0)} bytes; CPU us: this process ${nodeUs.toFixed(0)}, postgres ${pgUs.toFixed(0)}  (${s.calls} statements)`,
    );
  }
  const [old, now] = claims.map(per);
  console.log(`  alone / yardstick: WAL records ${((now.s.records / now.s.calls) / (old.s.records / old.s.calls)).toFixed(3)}x, WAL written ${(now.wal / old.wal).toFixed(3)}x, postgres CPU ${(now.pgUs / old.pgUs).toFixed(2)}x, this process ${(now.nodeUs / old.nodeUs).toFixed(2)}x`);
  const { rows: [net] } = await pool.query<{ net: string }>("SELECT sum(amount_minor)::text AS net FROM wallet.postings");
  console.log(`ledger: sum over all postings ${net.net} (must be 0)`);
} finally {
  await stop();
}
