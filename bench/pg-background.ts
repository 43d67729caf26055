// PostgreSQL's own work beside a bench's statements: autovacuum and autoanalyze of each table,
// checkpoints and WAL written. Read before and after a measured window, so a run says what of it
// fell inside (a table analyzed mid-run changes its plans; a checkpoint writes every dirty page).
type Query = (sql: string) => Promise<{ rows: Record<string, unknown>[] }>;

/** One table's maintenance so far: counts, and the time of the last of each (ms since the epoch, NaN: never). */
interface TableUpkeep {
  autovacuums: number;
  autoanalyzes: number;
  lastAutovacuum: number;
  lastAutoanalyze: number;
}

export interface PgBackground {
  tables: Map<string, TableUpkeep>;
  /** Checkpoints since the server started: by checkpoint_timeout, and asked for (WAL past max_wal_size, CHECKPOINT). */
  checkpoints: { timed: number; requested: number; buffers: number };
  /** The last checkpoint's start (pg_control_checkpoint), ms since the epoch. */
  lastCheckpoint: number;
  /** The WAL's insert position (pg_current_wal_lsn) in bytes: exact, no kept counts. */
  walBytes: number;
  /** Autovacuum workers at work at the reading, by what they run. */
  vacuuming: string[];
}

const ms = (v: unknown) => (v === null || v === undefined ? NaN : new Date(v as string).getTime());

/** Reads PostgreSQL's maintenance counters (pg_stat_checkpointer on 17 and later, pg_stat_bgwriter before). */
export async function pgBackground(query: Query): Promise<PgBackground> {
  const { rows: tables } = await query(
    `SELECT schemaname || '.' || relname AS name, autovacuum_count, autoanalyze_count, last_autovacuum, last_autoanalyze FROM pg_stat_user_tables`,
  );
  const { rows: [v] } = await query("SELECT to_regclass('pg_catalog.pg_stat_checkpointer') IS NOT NULL AS v17");
  const { rows: [c] } = await query(
    v.v17
      ? "SELECT num_timed AS timed, num_requested AS requested, buffers_written AS buffers FROM pg_stat_checkpointer"
      : "SELECT checkpoints_timed AS timed, checkpoints_req AS requested, buffers_checkpoint AS buffers FROM pg_stat_bgwriter",
  );
  const { rows: [w] } = await query(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS wal, (SELECT checkpoint_time FROM pg_control_checkpoint()) AS last_checkpoint,
            (SELECT coalesce(array_agg(left(query, 80)), '{}') FROM pg_stat_activity WHERE backend_type = 'autovacuum worker') AS vacuuming`,
  );
  return {
    tables: new Map(tables.map((t) => [String(t.name), {
      autovacuums: Number(t.autovacuum_count), autoanalyzes: Number(t.autoanalyze_count), lastAutovacuum: ms(t.last_autovacuum), lastAutoanalyze: ms(t.last_autoanalyze),
    }])),
    checkpoints: { timed: Number(c.timed), requested: Number(c.requested), buffers: Number(c.buffers) },
    lastCheckpoint: ms(w.last_checkpoint),
    walBytes: Number(w.wal),
    vacuuming: w.vacuuming as string[],
  };
}

/**
 * What PostgreSQL did between two readings, each event timed in seconds from `windowStart` (a
 * negative time: before the window): "autovacuum: payment.tips analyze +12.3 s, ...; checkpoints:
 * none; WAL 41.2 MB". Autovacuum's counts and times are written when a table is done, so a worker
 * busy at the second reading is named apart; a table done twice between the readings shows its last.
 */
export function pgBackgroundBetween(from: PgBackground, to: PgBackground, windowStart: number): string {
  const at = (t: number) => `${t >= windowStart ? "+" : ""}${((t - windowStart) / 1000).toFixed(1)} s`;
  const upkeep: string[] = [];
  for (const [name, t] of to.tables) {
    const f = from.tables.get(name);
    if (t.autovacuums > (f?.autovacuums ?? 0)) upkeep.push(`${name} vacuum ${at(t.lastAutovacuum)}`);
    if (t.autoanalyzes > (f?.autoanalyzes ?? 0)) upkeep.push(`${name} analyze ${at(t.lastAutoanalyze)}`);
  }
  const timed = to.checkpoints.timed - from.checkpoints.timed;
  const requested = to.checkpoints.requested - from.checkpoints.requested;
  const checkpoints = timed + requested
    ? `${timed} timed, ${requested} requested (the last started ${at(to.lastCheckpoint)}), ${to.checkpoints.buffers - from.checkpoints.buffers} buffers written`
    : "none";
  return `autovacuum: ${upkeep.length ? upkeep.join(", ") : "none"}${to.vacuuming.length ? ` (at work at the end: ${to.vacuuming.join("; ")})` : ""};` +
    ` checkpoints: ${checkpoints}; WAL ${((to.walBytes - from.walBytes) / 2 ** 20).toFixed(1)} MB`;
}
