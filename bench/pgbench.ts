// pgbench against a benchmark's PostgreSQL: the yardstick the throughput
// benches divide by, and the commit-heavy load bench/pg-group-commit.ts uses.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";

/** pgbench from the Debian package, if installed. */
export function pgbenchBinary(): string | undefined {
  return ["/usr/lib/postgresql"].filter(existsSync).flatMap((root) => readdirSync(root).map((v) => path.join(root, v, "bin", "pgbench"))).find(existsSync);
}

/** The connection arguments for the server at `url` (user postgres, trust). */
function connection(url: string): string[] {
  const u = new URL(url);
  return ["-h", u.hostname, "-p", u.port, "-U", "postgres"];
}

/** Creates database `db` and initialises pgbench's TPC-B tables in it at `scale`. */
export function pgbenchInit(bin: string, url: string, db: string, scale = 1): void {
  execFileSync(path.join(path.dirname(bin), "createdb"), [...connection(url), db], { stdio: "pipe" });
  execFileSync(bin, ["-i", "-s", String(scale), "-q", ...connection(url), db], { stdio: "pipe" });
}

/** Runs pgbench with `args` (e.g. -c 8 -j 2 -T 10); its tps and average latency. */
export function pgbenchRun(bin: string, url: string, db: string, args: string[]): { tps: number; latency: string } {
  const out = execFileSync(bin, [...args, ...connection(url), db], { stdio: "pipe" }).toString();
  return { tps: Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? NaN), latency: /latency average = ([\d.]+ ms)/.exec(out)?.[1] ?? "?" };
}

/** Time for a configuration reload to reach the postmaster and a session. */
const RELOAD_MS = 300;

/**
 * Sets server parameters given as "name=value,name=value" (ALTER SYSTEM, then a
 * reload: commit_delay, commit_siblings and the WAL writer's take effect at once).
 */
export async function setPostgresSettings(query: (sql: string) => Promise<unknown>, settings: string): Promise<string[]> {
  const pairs = settings.split(",").map((s) => s.trim()).filter(Boolean).map((s) => s.split("=").map((p) => p.trim()));
  if (!pairs.length) return [];
  for (const [name, value] of pairs) {
    if (!/^[a-z_]+$/.test(name) || value === undefined || !/^[\w.]+$/.test(value)) throw new Error(`not a setting: ${name}=${value}`);
    await query(`ALTER SYSTEM SET ${name} = '${value}'`);
  }
  await query("SELECT pg_reload_conf()");
  // The reload is signalled, not waited for: the postmaster (whose new sessions take the settings) and
  // this session read the file on their next turn. Read before, a run's first flush count was the old method's.
  await new Promise((r) => setTimeout(r, RELOAD_MS));
  return pairs.map(([name, value]) => `${name}=${value}`);
}

/**
 * WAL flushes since the server started, as SQL: fdatasync (or fsync) calls; with an open_*
 * wal_sync_method each write is its own flush (O_DSYNC) and PostgreSQL counts no syncs, so the
 * writes are counted instead.
 */
export const WAL_FLUSHES_SQL = "(SELECT CASE WHEN current_setting('wal_sync_method') LIKE 'open%' THEN wal_write ELSE wal_sync END FROM pg_stat_wal)";

/** WAL flushes (WAL_FLUSHES_SQL) and commits since the server started: group commit's figure is their ratio. */
export async function walFlushes(query: (sql: string) => Promise<{ rows: Record<string, unknown>[] }>): Promise<{ syncs: number; commits: number }> {
  const { rows } = await query(`SELECT ${WAL_FLUSHES_SQL} AS syncs, (SELECT sum(xact_commit) FROM pg_stat_database) AS commits`);
  return { syncs: Number(rows[0].syncs), commits: Number(rows[0].commits) };
}
