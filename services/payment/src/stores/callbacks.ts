// Raw provider callbacks as admins read them: those that matched nothing, and a payment's own.
import type { Queryable } from "@ttip/runtime";
import { keysetRows, type Cursor, type PageRow } from "./page.js";

/** A callback row as the converter (toCallback) reads it. */
export interface CallbackRow {
  callback_id: string;
  source: string;
  external_reference: string;
  remote_address: string;
  raw_body: Buffer;
  received_at: Date;
  resolved: boolean;
}

/** Up to `limit` callbacks that matched no payment, newest first. */
export async function unmatchedCallbacks(db: Queryable, includeResolved: boolean, cursor: Cursor, limit: number): Promise<PageRow<CallbackRow>[]> {
  return keysetRows<CallbackRow>(db, { table: "callbacks", time: "received_at", id: "callback_id", where: "NOT matched AND ($1 OR NOT resolved)", params: [includeResolved] }, cursor, limit);
}

/** Callbacks name the tip once matched; the C2B confirmation of a paybill tip carries its receipt. */
export async function callbacksOfTip(db: Queryable, tipId: string, checkoutRequestId: string | null, receipt: string | null): Promise<CallbackRow[]> {
  const { rows } = await db.query<CallbackRow>(
    `SELECT * FROM payment.callbacks WHERE tip_id = $1 OR ($2::text IS NOT NULL AND external_reference = $2) OR ($3::text IS NOT NULL AND external_reference = $3)
      ORDER BY received_at LIMIT 100`,
    [tipId, checkoutRequestId, receipt],
  );
  return rows;
}

export async function callbacksOfPayout(db: Queryable, payoutId: string): Promise<CallbackRow[]> {
  const { rows } = await db.query<CallbackRow>("SELECT * FROM payment.callbacks WHERE payout_id = $1 ORDER BY received_at LIMIT 100", [payoutId]);
  return rows;
}
