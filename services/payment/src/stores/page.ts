// What the stores' keyset pages share: a cursor in, rows with their position out.
import { keysetTime, type Queryable } from "@ttip/runtime";

/** A page's cursor: the last row's time (as keysetTime wrote it) and id. */
export type Cursor = { at: string; id: string } | undefined;

/** A row of a page with its keyset position. */
export type PageRow<R> = R & { page_at: string };

/** Which rows of which payment table a page reads, ordered by (time, id). */
export interface KeysetQuery {
  table: "tips" | "payouts" | "callbacks" | "c2b_payments" | "fraud_alerts";
  /** The timestamp column the page is ordered by, and the uuid column breaking its ties. */
  time: string;
  id: string;
  /** The rows' condition, with parameters $1..$n taken from `params` in order. */
  where: string;
  params: unknown[];
}

/** Up to `limit` rows past the cursor, newest first, each with its position (page_at). */
export async function keysetRows<R extends object>(db: Queryable, q: KeysetQuery, cursor: Cursor, limit: number): Promise<PageRow<R>[]> {
  const n = q.params.length;
  const { rows } = await db.query<PageRow<R>>(
    `SELECT *, ${keysetTime(q.time)} AS page_at FROM payment.${q.table} WHERE ${q.where}
       AND ($${n + 1}::timestamptz IS NULL OR (${q.time}, ${q.id}) < ($${n + 1}::timestamptz, $${n + 2}::uuid))
     ORDER BY ${q.time} DESC, ${q.id} DESC LIMIT $${n + 3}`,
    [...q.params, cursor?.at ?? null, cursor?.id ?? null, limit],
  );
  return rows;
}
