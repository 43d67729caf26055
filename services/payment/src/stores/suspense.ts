// C2B payments in suspense: money that came in and matched no code, for an admin to place.
import type { Queryable } from "@ttip/runtime";
import type { C2bRow } from "../c2b.js";
import { keysetRows, type Cursor, type PageRow } from "./page.js";

/** Up to `limit` payments in suspense (open ones, or all), newest first. */
export async function suspensePayments(db: Queryable, includeResolved: boolean, cursor: Cursor, limit: number): Promise<PageRow<C2bRow>[]> {
  return keysetRows<C2bRow>(db, { table: "c2b_payments", time: "received_at", id: "callback_id", where: "outcome = 'suspense' AND ($1 OR resolution = 'open')", params: [includeResolved] }, cursor, limit);
}
