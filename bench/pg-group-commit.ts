// Group commit on a durable PostgreSQL (fsync and synchronous_commit on): for
// each set of settings, pgbench at each concurrency on two loads (TPC-B, and one
// small INSERT per transaction, like an outbox or inbox row), each setting set
// measured in turn within one round, rounds repeated to see the noise. Prints
// tps, WAL flushes per commit (pg_stat_wal.wal_sync / commits: what group
// commit saves, independent of the machine's load) and PostgreSQL's CPU per
// commit (its processes', pgbench's sessions included: on a machine whose cores
// are the limit, what a setting costs or saves beside the platform's work).
//   node --import tsx bench/pg-group-commit.ts [seconds=10] [concurrency=16,64] [rounds=2]
//   BENCH_PG_VARIANTS="commit_delay=0;commit_delay=100,commit_siblings=5" replaces the default variants.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pgClient from "pg";
import { startPostgres } from "@ttip/runtime/testing";
import { pgbenchBinary, pgbenchInit, pgbenchRun, setPostgresSettings, walFlushes } from "./pgbench.js";
import { cpuMs } from "./process-cpu.js";

const seconds = Number(process.argv[2] ?? 10);
const concurrencies = (process.argv[3] ?? "16,64").split(",").map(Number);
const rounds = Number(process.argv[4] ?? 2);
// PostgreSQL's defaults first (commit_delay 0, commit_siblings 5, wal_writer_delay 200ms, wal_writer_flush_after 1MB).
const variants = (
  process.env.BENCH_PG_VARIANTS ??
  [
    "commit_delay=0,commit_siblings=5,wal_writer_delay=200ms,wal_writer_flush_after=1MB,wal_sync_method=fdatasync",
    "commit_delay=20,commit_siblings=5",
    "commit_delay=100,commit_siblings=5",
    "commit_delay=500,commit_siblings=5",
    "commit_delay=100,commit_siblings=1",
    "commit_delay=0,commit_siblings=5,wal_writer_delay=10ms,wal_writer_flush_after=0",
    // The WAL written with O_DSYNC: one system call per flush instead of a write and an fdatasync.
    "commit_delay=0,commit_siblings=5,wal_writer_delay=200ms,wal_writer_flush_after=1MB,wal_sync_method=open_datasync",
  ].join(";")
).split(";");
// A commit-heavy load: one small row per transaction.
const INSERT_SCRIPT = "INSERT INTO commits (payload) VALUES (md5(random()::text));";

const bin = pgbenchBinary();
if (!bin) throw new Error("pgbench not found (Debian package postgresql)");
const pg = await startPostgres({ durable: true });
/** CPU ms of the postmaster and its children (backends, the WAL writer, pgbench's ended sessions). */
const postgresCpuMs = () => cpuMs(new Map([["postgres", pg.pid]]), new Set(["postgres"])).get("postgres")!;
const admin = new pgClient.Client({ connectionString: pg.url });
try {
  await admin.connect();
  pgbenchInit(bin, pg.url, "bench");
  const benchDb = new URL(pg.url);
  benchDb.pathname = "/bench";
  const db = new pgClient.Client({ connectionString: benchDb.toString() });
  await db.connect();
  await db.query("CREATE TABLE commits (id bigserial PRIMARY KEY, payload text NOT NULL)");
  await db.end();
  const script = path.join(mkdtempSync(path.join(tmpdir(), "ttip-pgbench-")), "insert.sql");
  writeFileSync(script, INSERT_SCRIPT);
  const query = (sql: string) => admin.query(sql);
  const fsync = (await admin.query("SHOW fsync")).rows[0].fsync;
  const sync = (await admin.query("SHOW synchronous_commit")).rows[0].synchronous_commit;
  console.log(`durable PostgreSQL (fsync ${fsync}, synchronous_commit ${sync}); ${seconds} s per run; ${rounds} rounds`);
  for (let round = 1; round <= rounds; round++) {
    for (const concurrency of concurrencies) {
      for (const [load, args] of [["TPC-B", []], ["1 INSERT/commit", ["-n", "-f", script]]] as const) {
        for (const variant of variants) {
          const applied = await setPostgresSettings(query, variant);
          const before = await walFlushes(query);
          const cpu0 = postgresCpuMs();
          const { tps, latency } = pgbenchRun(bin, pg.url, "bench", ["-c", String(concurrency), "-j", "2", "-T", String(seconds), ...args]);
          await new Promise((r) => setTimeout(r, 600)); // statistics reach pg_stat_* within a moment
          const after = await walFlushes(query);
          const commits = Math.max(1, after.commits - before.commits);
          const perCommit = (after.syncs - before.syncs) / commits;
          const cpuUsPerCommit = ((postgresCpuMs() - cpu0) * 1000) / commits;
          console.log(
            `round ${round}  c=${String(concurrency).padStart(3)}  ${load.padEnd(15)}  ${tps.toFixed(0).padStart(6)} tps  latency ${latency.padStart(9)}` +
              `  WAL flushes/commit ${perCommit.toFixed(3)}  PostgreSQL CPU/commit ${cpuUsPerCommit.toFixed(0).padStart(4)} us  ${applied.join(" ")}`,
          );
        }
      }
    }
  }
  await setPostgresSettings(query, variants[0]);
} finally {
  await admin.end().catch(() => undefined);
  await pg.stop();
}
