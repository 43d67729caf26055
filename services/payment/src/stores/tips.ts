// Tips as workers and the admin console read them, their feedback, and an admin's moves; the payment flow's own statements live in tips.ts.
import type { Queryable } from "@ttip/runtime";
import type { TipRow } from "../tips.js";
import type { Cursor, PageRow } from "./page.js";
import { commonFilters, searchPage, workerPage, type CommonSearch } from "./search.js";

export interface TipSearch extends CommonSearch {
  /** "mpesa" or "card"; undefined for any (null matches none). */
  method?: string | null;
}

export async function searchTips(db: Queryable, s: TipSearch, cursor: Cursor, limit: number): Promise<PageRow<TipRow>[]> {
  const f = commonFilters(s);
  if (s.method !== undefined) f.add("method = ?", s.method);
  return searchPage<TipRow>(db, "tips", "tip_id", f, cursor, limit);
}

/** A worker's tips, filtered by status code (null = any), newest first. */
export async function workerTips(db: Queryable, workerId: string, status: string | null | undefined, cursor: Cursor, limit: number): Promise<PageRow<TipRow>[]> {
  return workerPage<TipRow>(db, "tips", "tip_id", workerId, status, cursor, limit);
}

/** Takes the customer's feedback on a tip that went through, once; undefined when it did not go through or was rated before. */
export async function rateTip(db: Queryable, tipId: string, rating: number, message: string): Promise<TipRow | undefined> {
  const { rows } = await db.query<TipRow>(
    `UPDATE payment.tips SET rating = $2, message = $3, rated_at = now()
      WHERE tip_id = $1 AND status = 'succeeded' AND rated_at IS NULL RETURNING *`,
    [tipId, rating, message],
  );
  return rows[0];
}

/** An admin's re-query: due now, for the reconciler to lease and settle. */
export async function makeTipDue(tx: Queryable, tipId: string): Promise<void> {
  await tx.query("UPDATE payment.tips SET next_check_at = now() - interval '1 second' WHERE tip_id = $1 AND status = 'pending'", [tipId]);
}

/** An admin's review of an M-Pesa tip held for review: it succeeds (with what the worker receives) or fails. */
export interface ReviewOutcome {
  approve: boolean;
  /** The customer's words for the outcome. */
  resultMessage: string;
  /** What the worker receives when approved. */
  workerMinor: bigint;
}

/** Ends a held tip; undefined when it is no longer held (reviewed meanwhile). Inside the caller's transaction. */
export async function endHeldTip(tx: Queryable, tipId: string, o: ReviewOutcome): Promise<TipRow | undefined> {
  const { rows } = await tx.query<TipRow>(
    `UPDATE payment.tips SET status = $2, result_code = CASE WHEN $3 THEN result_code ELSE 'review_rejected' END,
       result_message = $4, worker_receives_minor = CASE WHEN $3 THEN $5 ELSE worker_receives_minor END
      WHERE tip_id = $1 AND status = 'held_for_review' RETURNING *`,
    [tipId, o.approve ? "succeeded" : "failed", o.approve, o.resultMessage, o.workerMinor],
  );
  return rows[0];
}
