// The WAL a measured window wrote, read from the WAL itself (pg_walinspect) between two flushed
// positions: exact, whatever the statistics collector has or has not flushed yet. Records, bytes
// and full-page images (a page's first change after a checkpoint writes the whole page), in all,
// by kind of record (Heap INSERT, Btree INSERT_LEAF, Transaction COMMIT...) and by the relation a
// record's first block is in.
// Two sizes, printed apart: the WAL written (the distance between the two positions: what the disk
// and a replica take, page headers and the records' alignment included) and the records' own
// lengths summed (what the parts below add up to). bench/pg-wal-compression.ts reads the same.
type Query = (sql: string, values?: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>;

/** A flushed WAL position (pg_current_wal_flush_lsn): pg_walinspect refuses to read past it. */
export async function walFlushed(query: Query): Promise<string> {
  const { rows: [r] } = await query("SELECT pg_current_wal_flush_lsn()::text AS lsn");
  return String(r.lsn);
}

export interface WalPart {
  name: string;
  records: number;
  bytes: number;
  fpis: number;
  fpiBytes: number;
}

export interface WalWindow {
  /** Bytes of WAL written between the two positions (page headers and alignment included). */
  written: number;
  /** The records in all: `bytes` is their lengths summed (images included), less than `written`. */
  all: WalPart;
  byKind: WalPart[];
  byRelation: WalPart[];
  byRelationKind: WalPart[];
}

/** The window's WAL in all and its `top` largest parts by resource manager and by relation. */
export async function walBetween(query: Query, from: string, to: string, top: number): Promise<WalWindow> {
  await query("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
  const { rows: [w] } = await query("SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn) AS written", [from, to]);
  // One pass over the records (record_length is a record's whole length, its images included); a
  // record's relation is its first block's (the heap for a heap change, the index for an index
  // insert), named through its file node (0: the database's default tablespace); a record with no
  // block (a commit) is named by its kind. The flag bits of a record type (INIT_PAGE) are left on.
  const { rows } = await query(
    `WITH r AS (
       SELECT resource_manager || ' ' || split_part(record_type, '+', 1) AS kind, record_length AS bytes, fpi_length, block_ref,
              substring(block_ref from 'rel \\d+/\\d+/(\\d+)')::oid AS node
         FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn))
     SELECT 'kind' AS part, kind AS name, count(*) AS records, sum(bytes) AS bytes,
            sum((SELECT count(*) FROM regexp_matches(coalesce(block_ref, ''), 'FPW', 'g'))) AS fpis, sum(fpi_length) AS fpi_bytes
       FROM r GROUP BY kind
     UNION ALL
     SELECT 'relation', coalesce(pg_filenode_relation(0, node)::regclass::text, CASE WHEN node IS NULL THEN '(no block)' ELSE 'node ' || node END),
            count(*), sum(bytes), sum((SELECT count(*) FROM regexp_matches(coalesce(block_ref, ''), 'FPW', 'g'))), sum(fpi_length)
       FROM r GROUP BY 2
     UNION ALL
     SELECT 'relation kind', coalesce(pg_filenode_relation(0, node)::regclass::text, '(no block)') || ' ' || kind,
            count(*), sum(bytes), sum((SELECT count(*) FROM regexp_matches(coalesce(block_ref, ''), 'FPW', 'g'))), sum(fpi_length)
       FROM r GROUP BY 2`,
    [from, to],
  );
  const parts = rows.map((r) => ({
    part: String(r.part), name: String(r.name), records: Number(r.records), bytes: Number(r.bytes), fpis: Number(r.fpis), fpiBytes: Number(r.fpi_bytes),
  }));
  const largest = (part: string) => parts.filter((p) => p.part === part).sort((a, b) => b.bytes - a.bytes).slice(0, top);
  const kinds = parts.filter((p) => p.part === "kind");
  const sum = (f: (p: WalPart) => number) => kinds.reduce((n, p) => n + f(p), 0);
  return {
    written: Number(w.written),
    all: { name: "all", records: sum((p) => p.records), bytes: sum((p) => p.bytes), fpis: sum((p) => p.fpis), fpiBytes: sum((p) => p.fpiBytes) },
    byKind: largest("kind"),
    byRelation: largest("relation"),
    byRelationKind: largest("relation kind"),
  };
}

/** Lines for a report: the window's WAL per tip, then its largest parts. */
export function walPerTip(wal: WalWindow, tips: number): string[] {
  const n = Math.max(1, tips);
  const part = (p: WalPart) =>
    `${(p.records / n).toFixed(1).padStart(8)}  ${(p.bytes / n / 1024).toFixed(2).padStart(7)}  ${(p.fpis / n).toFixed(2).padStart(6)}  ${(p.fpiBytes / n / 1024).toFixed(2).padStart(8)}  ${p.name}`;
  const { all } = wal;
  return [
    `WAL per tip (pg_walinspect over the window): ${(wal.written / n / 1024).toFixed(2)} KB written (positions); ${(all.records / n).toFixed(1)} records of ${(all.bytes / n / 1024).toFixed(2)} KB (record lengths);` +
      ` full-page images ${(all.fpis / n).toFixed(2)} per tip, ${(all.fpiBytes / n / 1024).toFixed(2)} KB (${((all.fpiBytes / Math.max(1, all.bytes)) * 100).toFixed(0)}% of the records' bytes)`,
    `   records       KB    FPIs   FPI KB  by kind of record (KB: record lengths)`,
    ...wal.byKind.map(part),
    `   records       KB    FPIs   FPI KB  by relation (a record's first block)`,
    ...wal.byRelation.map(part),
    `   records       KB    FPIs   FPI KB  by relation and kind of record`,
    ...wal.byRelationKind.map(part),
  ];
}

/**
 * No checkpoint (its full-page images) nor autovacuum (its records) falling in or out of a measured
 * window by chance: a WAL bench's server settings, applied at once.
 */
export async function quietWalSettings(query: Query): Promise<void> {
  await query("ALTER SYSTEM SET checkpoint_timeout = '1h'");
  await query("ALTER SYSTEM SET max_wal_size = '4GB'");
  await query("ALTER SYSTEM SET autovacuum = off");
  await query("SELECT pg_reload_conf()");
}
