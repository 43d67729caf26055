import type pg from "pg";
import { eventually } from "./eventually.js";

/** Where `work` runs: on the pool as it likes, or in a transaction of its own (only that transaction's records are counted). */
export type WalWork = { outside: () => Promise<unknown> } | { inTransaction: (tx: pg.PoolClient) => Promise<unknown> };

/**
 * The heap WAL records `work` wrote to `relation`, by record type ("INSERT" for INSERT+INIT, a
 * page's first, too), read with pg_walinspect (the caller's database has the extension).
 * In a transaction of its own, only that transaction's records count: a service running beside
 * the test may write the same relation in the same WAL range. pg_walinspect reads only what is
 * flushed, and refuses a start past it (a test server may commit without waiting for the flush):
 * the range runs from the end of what was written before the work, once flushed (earlier work's
 * records not yet flushed then are not in it), to the end of what the work wrote, once flushed.
 */
export async function heapWalRecords(pool: pg.Pool, relation: string, work: WalWork): Promise<Record<string, number>> {
  const from = await flushedWrites(pool);
  const xid = "outside" in work ? (await work.outside(), null) : await inOwnTransaction(pool, work.inTransaction);
  const to = await flushedWrites(pool);
  if (to === from) return {}; // nothing written anywhere (pg_walinspect refuses an empty range)
  const { rows } = await pool.query<{ type: string; n: number }>(
    `SELECT split_part(record_type, '+', 1) AS type, count(*)::int AS n FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn)
      WHERE resource_manager = 'Heap' AND ($4::text IS NULL OR xid::text = $4)
        AND block_ref ~ ('rel \\d+/' || (SELECT oid FROM pg_database WHERE datname = current_database()) || '/' || pg_relation_filenode($3::regclass) || '( |$)')
      GROUP BY 1`,
    [from, to, relation, xid],
  );
  return Object.fromEntries(rows.map((r) => [r.type, r.n]));
}

/** The end of the WAL written so far, once it is flushed. */
async function flushedWrites(pool: pg.Pool): Promise<string> {
  const written = (await pool.query<{ l: string }>("SELECT pg_current_wal_insert_lsn()::text AS l")).rows[0].l;
  await eventually("the WAL written flushed", async () => (await pool.query<{ ok: boolean }>("SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS ok", [written])).rows[0].ok, 10_000);
  return written;
}

/** Runs `work` in a transaction of its own that commits; answers its transaction id. */
async function inOwnTransaction(pool: pg.Pool, work: (tx: pg.PoolClient) => Promise<unknown>): Promise<string> {
  const tx = await pool.connect();
  try {
    await tx.query("BEGIN");
    const xid = (await tx.query<{ xid: string }>("SELECT pg_current_xact_id()::text AS xid")).rows[0].xid;
    await work(tx);
    await tx.query("COMMIT");
    return xid;
  } finally {
    await tx.query("ROLLBACK").catch(() => undefined);
    tx.release();
  }
}
