// Where PostgreSQL's work per tip goes, statement by statement and index by index: read by
// bench/tip-e2e.ts (BENCH_PG_STATEMENTS=N, on a server started with statementStats) and by any
// bench that resets pg_stat_statements before its window and reads it after.
// - statements (pg_stat_statements since the reset): per tip its calls, execution and planning
//   time (wall time inside the server: CPU, and lock or I/O waits), mean execution per call, rows,
//   shared blocks hit, read and dirtied, and WAL records; ranked by time.
// - indexes (pg_stat_user_indexes and pg_statio_user_indexes between two readings): per tip each
//   index's scans and blocks touched; an index never scanned whose blocks were touched is written
//   for nothing in that window (each insert or non-HOT update of its table adds an entry).
type Query = (sql: string, values?: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>;

export interface StatementFigures {
  calls: number;
  execMs: number;
  planMs: number;
  plans: number;
  rows: number;
  hit: number;
  read: number;
  dirtied: number;
  wal: number;
  text: string;
}

/** Starts a window: the extension made and its counts reset. */
export async function resetStatements(query: Query): Promise<void> {
  await query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  await query("SELECT pg_stat_statements_reset()");
}

/**
 * The bench's own statements in a window, not the platform's: its readings of the server's counters
 * and settings (no service's SQL names these), and whatever names BENCH_OWN (tip-e2e's drain check).
 */
const HARNESS_STATEMENTS = "pg_stat_|pg_statio_|pg_current_wal|pg_wal_lsn_diff|pg_reload_conf|pg_control_|information_schema|^ALTER SYSTEM";
/** Put in a statement's text (an alias, a comment) to keep it out of statementFigures. */
export const BENCH_OWN = "bench_own";

/** Every statement since the reset, the most time first; the bench's own statements left out (HARNESS_STATEMENTS). */
export async function statementFigures(query: Query, chars = 90): Promise<StatementFigures[]> {
  const { rows } = await query(
    `SELECT calls, total_exec_time AS exec_ms, total_plan_time AS plan_ms, plans, rows, shared_blks_hit AS hit, shared_blks_read AS read,
            shared_blks_dirtied AS dirtied, wal_records AS wal, query
       FROM pg_stat_statements WHERE query !~ $1 ORDER BY total_exec_time + total_plan_time DESC`,
    [`${HARNESS_STATEMENTS}|${BENCH_OWN}`],
  );
  return rows.map((r) => ({
    calls: Number(r.calls), execMs: Number(r.exec_ms), planMs: Number(r.plan_ms), plans: Number(r.plans), rows: Number(r.rows),
    hit: Number(r.hit), read: Number(r.read), dirtied: Number(r.dirtied), wal: Number(r.wal),
    text: String(r.query).replace(/\s+/g, " ").trim().slice(0, chars),
  }));
}

/** The figures summed over all statements. */
export function statementTotals(all: StatementFigures[]): Omit<StatementFigures, "text"> {
  const sum = (f: (r: StatementFigures) => number) => all.reduce((n, r) => n + f(r), 0);
  return {
    calls: sum((r) => r.calls), execMs: sum((r) => r.execMs), planMs: sum((r) => r.planMs), plans: sum((r) => r.plans), rows: sum((r) => r.rows),
    hit: sum((r) => r.hit), read: sum((r) => r.read), dirtied: sum((r) => r.dirtied), wal: sum((r) => r.wal),
  };
}

/** A table of the `top` statements per tip (time, calls, blocks, WAL per tip; mean time, rows per call), with the totals first. */
export function statementLines(all: StatementFigures[], tips: number, top: number): string[] {
  const t = Math.max(1, tips);
  const total = statementTotals(all);
  const line = (r: Omit<StatementFigures, "text">, text: string) =>
    [((r.execMs + r.planMs) / t).toFixed(3).padStart(7), (r.execMs / t).toFixed(3).padStart(7), (r.calls / t).toFixed(2).padStart(6),
      ((r.execMs / Math.max(1, r.calls)) * 1000).toFixed(0).padStart(6), (r.plans / Math.max(1, r.calls)).toFixed(2).padStart(5),
      (r.rows / Math.max(1, r.calls)).toFixed(1).padStart(6), ((r.hit + r.read) / t).toFixed(1).padStart(7), (r.dirtied / t).toFixed(2).padStart(7),
      (r.wal / t).toFixed(2).padStart(7), ` ${text}`].join(" ");
  return [
    " ms/tip  exec/tip calls/tip mean us plans/call rows/call blocks/tip dirtied/tip WAL/tip",
    "   (ms/tip: execution and planning; mean us: execution per call; blocks: shared hit or read)",
    line(total, "(all statements)"),
    ...all.slice(0, top).map((r) => line(r, r.text)),
  ];
}

export interface IndexCounts {
  /** schema.index -> [scans, blocks hit or read] */
  indexes: Map<string, { table: string; scans: number; blocks: number }>;
  /** schema.table -> rows inserted and updated not HOT (each adds an entry to every index, a partial one's if it matches) */
  entries: Map<string, number>;
}

/** Each index's scans and blocks so far, and each table's index-writing row changes. */
export async function indexCounts(query: Query): Promise<IndexCounts> {
  const { rows } = await query(
    `SELECT i.schemaname || '.' || i.indexrelname AS name, i.schemaname || '.' || i.relname AS tbl, i.idx_scan AS scans,
            io.idx_blks_hit + io.idx_blks_read AS blocks
       FROM pg_stat_user_indexes i JOIN pg_statio_user_indexes io USING (indexrelid)`,
  );
  const { rows: tables } = await query(
    "SELECT schemaname || '.' || relname AS name, n_tup_ins + n_tup_upd - n_tup_hot_upd AS entries FROM pg_stat_user_tables",
  );
  return {
    indexes: new Map(rows.map((r) => [String(r.name), { table: String(r.tbl), scans: Number(r.scans), blocks: Number(r.blocks) }])),
    entries: new Map(tables.map((r) => [String(r.name), Number(r.entries)])),
  };
}

/**
 * The indexes whose tables took index entries in the window, per tip: first those never scanned
 * (written, not read: candidates to drop if no rarer path needs them), then the `top` most touched.
 */
export function indexLines(from: IndexCounts, to: IndexCounts, tips: number, top: number): string[] {
  const t = Math.max(1, tips);
  const rows = [...to.indexes].map(([name, now]) => {
    const was = from.indexes.get(name) ?? { scans: 0, blocks: 0 };
    const entries = (to.entries.get(now.table) ?? 0) - (from.entries.get(now.table) ?? 0);
    return { name, scans: (now.scans - was.scans) / t, blocks: (now.blocks - was.blocks) / t, entries: entries / t };
  }).filter((r) => r.entries > 0);
  const line = (r: (typeof rows)[number]) => `${r.scans.toFixed(2).padStart(9)} ${r.blocks.toFixed(1).padStart(10)} ${r.entries.toFixed(2).padStart(13)}  ${r.name}`;
  const unread = rows.filter((r) => r.scans === 0).sort((a, b) => b.blocks - a.blocks);
  const read = rows.filter((r) => r.scans > 0).sort((a, b) => b.blocks - a.blocks).slice(0, top);
  return [
    "scans/tip blocks/tip table entries/tip  (entries: its table's inserts and non-HOT updates)",
    `never scanned in the window (${unread.length}):`,
    ...unread.map(line),
    "scanned, the most blocks:",
    ...read.map(line),
  ];
}

// PostgreSQL's CPU by phase of its work (BENCH_PG_PERF=1 in bench/tip-e2e.ts): pg_stat_statements
// counts wall time (CPU, and waits for locks and for the CPU on a loaded machine); a sampling profile
// of the server's processes (perf record, call graphs) says where its CPU went. A phase's share is
// the samples with its function on the stack (inclusive; phases nest: planning is inside
// GetCachedPlan, AFTER triggers inside ExecutorFinish).
export const PG_PHASES: [name: string, fns: string[]][] = [
  ["parse and analyse (unprepared or first-seen texts)", ["exec_parse_message", "pg_analyze_and_rewrite_fixedparams", "pg_analyze_and_rewrite_varparams"]],
  ["plan cache: plan choice, revalidation, copies", ["GetCachedPlan"]],
  ["planning", ["standard_planner"]],
  ["executor start (plan trees set up per call)", ["standard_ExecutorStart"]],
  ["executor run", ["standard_ExecutorRun"]],
  ["executor finish (data-modifying CTEs the query left unread, AFTER triggers)", ["standard_ExecutorFinish"]],
  ["of which AFTER triggers (foreign keys, PL/pgSQL ones)", ["AfterTriggerEndQuery"]],
  // ExecInitModifyTable sets up its subplan too (scans, joins, CTE scans): its own share is not the opening alone.
  ["modifying statements set up (ExecInitModifyTable, their subplans' set-up included)", ["ExecInitModifyTable"]],
  ["of which result tables opened", ["ExecInitResultRelation"]],
  ["of which their indexes opened (per modifying statement, each index locked)", ["ExecOpenIndices"]],
  ["PL/pgSQL (functions and triggers)", ["plpgsql_call_handler"]],
  ["index entries written", ["ExecInsertIndexTuples"]],
  ["index scans", ["index_getnext_slot", "index_getnext_tid"]],
  ["hash joins' tables built", ["MultiExecHash"]],
  ["WAL records inserted", ["XLogInsert"]],
  ["commit", ["CommitTransactionCommand"]],
  ["of which WAL flush (fdatasync)", ["XLogFlush"]],
  ["client socket reads and writes", ["secure_read", "secure_write"]],
];

/** Starts sampling the processes' CPU (all threads, call graphs) into `file`; stop() ends it and waits for the file. */
export async function startPgPerf(pids: number[], file: string): Promise<{ stop(): Promise<void> }> {
  const { spawn } = await import("node:child_process");
  const perf = spawn("perf", ["record", "-F", "997", "-g", "-o", file, "-p", pids.join(",")], { stdio: ["ignore", "ignore", "pipe"] });
  let errors = "";
  perf.stderr.on("data", (d: Buffer) => (errors += d.toString()));
  // perf ends on SIGINT by writing its file and exiting 0, or by the signal itself (code null).
  const exited = new Promise<number | null>((resolve) => perf.on("exit", (code, signal) => resolve(signal === "SIGINT" ? 0 : code)));
  perf.on("error", (err) => (errors += err.message));
  return {
    stop: async () => {
      perf.kill("SIGINT");
      const code = await exited;
      if (code !== 0) throw new Error(`perf record ended with ${code}: ${errors.slice(-500)}`);
    },
  };
}

/** Each phase's share of the samples, and the `top` functions by their own samples, from a profile startPgPerf wrote. */
export async function pgPerfShares(file: string, top: number): Promise<{ samples: string; phases: [string, number][]; self: [string, number][] }> {
  const { execFile } = await import("node:child_process");
  const report = (args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile("perf", ["report", "-i", file, "--stdio", "--sort", "symbol", "-g", "none", ...args], { maxBuffer: 64 << 20 }, (err, out) => (err ? reject(err) : resolve(out))));
  const children = await report(["--children"]);
  // "  52.46%     0.00%  [.] PortalRun" (children, self, symbol)
  const inclusive = new Map<string, number>();
  for (const m of children.matchAll(/^\s+([\d.]+)%\s+([\d.]+)%\s+\[[.k]\]\s+(\S+)/gm)) inclusive.set(m[3], Math.max(inclusive.get(m[3]) ?? 0, Number(m[1])));
  const samples = /# Samples: (\S+)/.exec(children)?.[1] ?? "?"; // perf rounds it ("3K")
  const phases = PG_PHASES.map(([name, fns]) => [name, Math.max(0, ...fns.map((f) => inclusive.get(f) ?? 0))] as [string, number]);
  const own = await report(["--no-children"]);
  const self = [...own.matchAll(/^\s+([\d.]+)%\s+\[[.k]\]\s+(\S+)/gm)].slice(0, top).map((m) => [m[2], Number(m[1])] as [string, number]);
  return { samples, phases, self };
}

/** The shares as lines, in ms per tip of the server's CPU (`cpuMsPerTip`, measured apart from /proc). */
export function pgPerfLines(shares: { samples: string; phases: [string, number][]; self: [string, number][] }, cpuMsPerTip: number): string[] {
  const ms = (pct: number) => ((pct / 100) * cpuMsPerTip).toFixed(3).padStart(6);
  return [
    `${shares.samples} samples; share of PostgreSQL's CPU and ms per tip, by phase (inclusive, phases nest):`,
    ...shares.phases.map(([name, pct]) => `  ${pct.toFixed(1).padStart(5)}% ${ms(pct)}  ${name}`),
    "functions by their own samples:",
    ...shares.self.map(([fn, pct]) => `  ${pct.toFixed(1).padStart(5)}% ${ms(pct)}  ${fn}`),
  ];
}
