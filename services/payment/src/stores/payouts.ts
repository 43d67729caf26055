// Payouts as workers and the admin console read them; the payout flow's own statements live in payouts.ts.
import type { Queryable } from "@ttip/runtime";
import type { PayoutRow } from "../payouts.js";
import type { Cursor, PageRow } from "./page.js";
import { commonFilters, searchPage, workerPage, type CommonSearch } from "./search.js";

export async function searchPayouts(db: Queryable, s: CommonSearch, cursor: Cursor, limit: number): Promise<PageRow<PayoutRow>[]> {
  return searchPage<PayoutRow>(db, "payouts", "payout_id", commonFilters(s), cursor, limit);
}

/** An admin's re-query: a status query, or the first send of one never sent; due now for the reconciler. */
export async function makePayoutDue(tx: Queryable, payoutId: string): Promise<void> {
  await tx.query("UPDATE payment.payouts SET next_check_at = now() - interval '1 second' WHERE payout_id = $1 AND status IN ('pending', 'resolving')", [payoutId]);
}

/** A worker's payouts, filtered by status code (null = any), newest first. */
export async function workerPayouts(db: Queryable, workerId: string, status: string | null | undefined, cursor: Cursor, limit: number): Promise<PageRow<PayoutRow>[]> {
  return workerPage<PayoutRow>(db, "payouts", "payout_id", workerId, status, cursor, limit);
}

/** The payout an earlier request of the worker's under this idempotency key made. */
export async function payoutByIdempotencyKey(db: Queryable, workerId: string, key: string): Promise<PayoutRow | undefined> {
  return (await db.query<PayoutRow>("SELECT * FROM payment.payouts WHERE worker_id = $1 AND idempotency_key = $2", [workerId, key])).rows[0];
}
