// C2B payments in suspense: money that came in and matched no code, for an admin to place.
import type { Queryable } from "@ttip/runtime";
import type { C2bRow } from "../c2b.js";
import type { ReversalRow } from "../mpesa-reversals.js";
import { keysetRows, type Cursor, type PageRow } from "./page.js";

/**
 * A refund that still needs support: its reversal in doubt (support alerted), or refused by M-Pesa with none on its way
 * since (its money back in suspense, to refund again).
 */
const REFUND_NEEDING_SUPPORT = `resolution = 'refund' AND (
    EXISTS (SELECT 1 FROM payment.mpesa_reversals r WHERE r.suspense_receipt = c2b_payments.trans_id AND r.status IN ('sending', 'sent') AND r.alerted_at IS NOT NULL)
    OR (EXISTS (SELECT 1 FROM payment.mpesa_reversals r WHERE r.suspense_receipt = c2b_payments.trans_id AND r.status = 'failed')
      AND NOT EXISTS (SELECT 1 FROM payment.mpesa_reversals r WHERE r.suspense_receipt = c2b_payments.trans_id AND r.status <> 'failed')))`;

/** Up to `limit` payments in suspense (those needing support: open, or a refund whose reversal needs them; or all), newest first. */
export async function suspensePayments(db: Queryable, includeResolved: boolean, cursor: Cursor, limit: number): Promise<PageRow<C2bRow>[]> {
  const where = `outcome = 'suspense' AND ($1 OR resolution = 'open' OR (${REFUND_NEEDING_SUPPORT}))`;
  return keysetRows<C2bRow>(db, { table: "c2b_payments", time: "received_at", id: "callback_id", where, params: [includeResolved] }, cursor, limit);
}

/** These payments in suspense, by receipt. */
export async function suspenseRows(db: Queryable, receipts: string[]): Promise<C2bRow[]> {
  return (await db.query<C2bRow>("SELECT * FROM payment.c2b_payments WHERE trans_id = ANY($1) AND outcome = 'suspense'", [receipts])).rows;
}

/** The latest refund reversal of each of these payments that has one, by receipt. */
export async function latestSuspenseReversals(db: Queryable, receipts: string[]): Promise<Map<string, ReversalRow>> {
  const { rows } = await db.query<ReversalRow>(
    "SELECT DISTINCT ON (suspense_receipt) * FROM payment.mpesa_reversals WHERE suspense_receipt = ANY($1) ORDER BY suspense_receipt, created_at DESC", [receipts]);
  return new Map(rows.map((r) => [r.suspense_receipt!, r]));
}
