// Production-sized tables for a bench whose warm-up made only a few hundred tips: each table a tip
// grows is filled with copies of the warm-up's finished rows until it holds about `tips` tips' worth,
// spread back in time, then analysed. On young tables PostgreSQL reads whole tables where a grown
// one is read by index (and hashes them), and the per-tip figures are not production's.
// Read by bench/tip-e2e.ts (BENCH_GROWN_TIPS=n).
//
// A copy keeps every column but its keys: a uuid in a unique index, a primary key or a foreign key
// to a grown table becomes md5(value, copy number) (so a delivery's attempts still name their copy of
// the delivery, a tip's checkout id row its copy of the tip); a unique index without a uuid has its
// text columns suffixed with the copy number; identity and serial columns take their next values;
// times move back by the copy's share of the spread. Triggers and foreign-key checks are off while
// copying (session_replication_role = replica): a copy is history, it queues no work.
type Query = (sql: string, values?: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>;

/**
 * The tables a tip grows, each with the rows that may be copied: only finished ones, so a copy
 * queues nothing (no pending tip to check, no delivery to send, no credit to retry). Outboxes,
 * payment.uncredited and payment.receipts (their rows are work owed) and the wallet's ledger (its
 * balances are sums of its postings) are not copied.
 */
export const GROWN_TABLES: Record<string, string> = {
  "payment.tips": "status = 'succeeded' AND credit_entry_id IS NOT NULL",
  "payment.tip_checkout_ids": "tip_id IN (SELECT tip_id FROM payment.tips WHERE status = 'succeeded' AND credit_entry_id IS NOT NULL)",
  "payment.callbacks": "matched",
  "analytics.inbox": "true",
  "qr.tips": "true",
  "notification.inbox": "true",
  "notification.idempotent_requests": "true",
  "notification.deliveries": "status IN ('sent', 'delivered', 'failed') AND NOT parked",
  "notification.delivery_attempts": "status IN ('sent', 'delivered', 'failed')",
  "notification.provider_messages": "true",
  "notification.inapp_notifications": "true",
};

/**
 * Columns naming whose a row is (a tip's worker), kept in one copy of SPREAD and otherwise changed as
 * keys are: the bench's few workers each get a busy worker's tips (100,000 tips, 50 workers: ~250
 * each over the 30 days), the rest go to workers of their own, not 2,000 each that the worker's
 * reads (the fraud rules' window, the worker's list) would then read per tip.
 */
const SPREAD_COLUMNS: Record<string, string[]> = { "payment.tips": ["worker_id"] };
const SPREAD = 8;

interface Column {
  name: string;
  type: string;
  skip: boolean; // identity, serial or generated: the table fills it
  key: boolean; // changed per copy
  spread: boolean; // kept in one copy of SPREAD, else changed
  time: boolean;
}

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;
const qualified = (table: string) => table.split(".").map(ident).join(".");

/** The table's columns, and which of them each copy must change (its keys) or move (its times). */
async function columnsOf(query: Query, table: string, grown: Set<string>): Promise<Column[]> {
  const { rows } = await query(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            (a.attidentity <> '' OR a.attgenerated <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%') AS skip
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [table],
  );
  // Unique indexes (the primary key's too): their uuid columns, or their text ones where they have none.
  const { rows: uniques } = await query(
    `SELECT array_agg(a.attname::text) AS names, array_agg(format_type(a.atttypid, a.atttypmod)) AS types
       FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisunique GROUP BY i.indexrelid`,
    [table],
  );
  const keys = new Set<string>();
  for (const u of uniques) {
    const names = u.names as string[];
    const types = u.types as string[];
    const uuids = names.filter((_, i) => types[i] === "uuid");
    for (const n of uuids.length ? uuids : names.filter((_, i) => /^(text|character varying)/.test(types[i]))) keys.add(n);
  }
  // Foreign keys to a grown table: changed as that table's key is, so each copy refers to its own.
  const { rows: fks } = await query(
    `SELECT confrelid::regclass::text AS target, array_agg(a.attname::text) AS names
       FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
      WHERE c.conrelid = $1::regclass AND c.contype = 'f' GROUP BY c.oid, confrelid`,
    [table],
  );
  for (const fk of fks) if (grown.has(String(fk.target))) for (const n of fk.names as string[]) keys.add(n);
  return rows.map((r) => {
    const type = String(r.type);
    const name = String(r.name);
    return { name, type, skip: r.skip === true, key: keys.has(name), spread: SPREAD_COLUMNS[table]?.includes(name) ?? false, time: /^(timestamp|date)/.test(type) };
  });
}

/** A column's value in copy `g` (a set-returning generate_series column). */
function copied(c: Column, stepSeconds: number): string {
  const col = ident(c.name);
  if (c.spread && c.type === "uuid") return `CASE WHEN g % ${SPREAD} = 0 THEN ${col} ELSE md5(${col}::text || ':' || g)::uuid END`;
  if (c.key && c.type === "uuid") return `md5(${col}::text || ':' || g)::uuid`;
  if (c.key && /^(text|character varying)/.test(c.type)) return `${col} || ':' || g`;
  if (c.time) return `${col} - make_interval(secs => g * ${stepSeconds})`;
  return col;
}

/**
 * Grows every table of GROWN_TABLES to about `tips` tips' worth: copies of its rows made by the
 * warm-up (`madeTips` tips), ceil(tips / madeTips) - 1 of them, spread over `spreadDays` before now.
 * Then ANALYZE and a CHECKPOINT. Returns the rows added by table.
 */
export async function growTables(query: Query, tips: number, madeTips: number, spreadDays = 30): Promise<Map<string, number>> {
  const copies = Math.max(0, Math.ceil(tips / Math.max(1, madeTips)) - 1);
  const added = new Map<string, number>();
  if (!copies) return added;
  const { rows: present } = await query("SELECT schemaname || '.' || relname AS name FROM pg_stat_user_tables");
  const tables = Object.keys(GROWN_TABLES).filter((t) => present.some((r) => r.name === t));
  const grown = new Set(tables);
  const stepSeconds = Math.floor((spreadDays * 86_400) / copies);
  await query("SET session_replication_role = replica");
  try {
    for (const table of tables) {
      const columns = (await columnsOf(query, table, grown)).filter((c) => !c.skip);
      const names = columns.map((c) => ident(c.name)).join(", ");
      const values = columns.map((c) => copied(c, stepSeconds)).join(", ");
      // The rows to copy, once, before any copy is in the table; a few hundred copies per statement.
      await query(`CREATE TEMP TABLE grow_from AS SELECT * FROM ${qualified(table)} WHERE ${GROWN_TABLES[table]}`);
      let n = 0;
      for (let from = 1; from <= copies; from += 200) {
        const to = Math.min(copies, from + 199);
        const { rows } = await query(
          `WITH added AS (INSERT INTO ${qualified(table)} (${names}) SELECT ${values} FROM grow_from, generate_series(${from}, ${to}) AS g RETURNING 1)
           SELECT count(*)::int AS n FROM added`,
        );
        n += Number(rows[0].n);
      }
      await query("DROP TABLE grow_from");
      added.set(table, n);
    }
  } finally {
    await query("RESET session_replication_role");
  }
  await query("ANALYZE");
  await query("CHECKPOINT");
  return added;
}
