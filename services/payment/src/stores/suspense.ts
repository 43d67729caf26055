// C2B payments in suspense: money that came in and matched no code, for an admin to place.
import { keysetTime, type Queryable } from "@ttip/runtime";
import type { C2bRow } from "../c2b.js";
import type { Cursor, PageRow } from "./page.js";

/** Up to `limit` payments in suspense (open ones, or all), newest first. */
export async function suspensePayments(db: Queryable, includeResolved: boolean, cursor: Cursor, limit: number): Promise<PageRow<C2bRow>[]> {
  const { rows } = await db.query<PageRow<C2bRow>>(
    `SELECT *, ${keysetTime("received_at")} AS page_at FROM payment.c2b_payments WHERE outcome = 'suspense' AND ($1 OR resolution = 'open')
       AND ($2::timestamptz IS NULL OR (received_at, callback_id) < ($2::timestamptz, $3::uuid))
     ORDER BY received_at DESC, callback_id DESC LIMIT $4`,
    [includeResolved, cursor?.at ?? null, cursor?.id ?? null, limit],
  );
  return rows;
}
