// Payouts as the admin console reads and moves them; the payout flow's own statements live in payouts.ts.
import type { Queryable } from "@ttip/runtime";
import type { PayoutRow } from "../payouts.js";
import type { Cursor, PageRow } from "./page.js";
import { commonFilters, searchPage, type CommonSearch } from "./search.js";

export async function searchPayouts(db: Queryable, s: CommonSearch, cursor: Cursor, limit: number): Promise<PageRow<PayoutRow>[]> {
  return searchPage<PayoutRow>(db, "payouts", "payout_id", commonFilters(s), cursor, limit);
}

/** An admin's re-query: a status query, or the first send of one never sent; due now for the reconciler. */
export async function makePayoutDue(tx: Queryable, payoutId: string): Promise<void> {
  await tx.query("UPDATE payment.payouts SET next_check_at = now() - interval '1 second' WHERE payout_id = $1 AND status IN ('pending', 'resolving')", [payoutId]);
}
