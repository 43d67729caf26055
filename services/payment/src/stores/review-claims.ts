// A held M-Pesa tip's review claims (migrations 0028, 0030): the admin's decision, taken in a short
// transaction under the tip's row lock, before the wallet calls that carry it out outside any
// transaction. approval_receipt set means "being approved", rejection_claim "being rejected" (with
// the fate of its receipt read at the claim). Who decided, and when, is kept for the finishing step,
// which another admin's action or the resumer (review-resumer.ts) may take after a crash.
import type { Queryable } from "@ttip/runtime";
import { TIP_COLUMNS, type TipRow } from "../tips.js";

/** What a rejection found of its receipt's money at its claim: spent (refunded, or credited as another tip), or not. */
export type RejectionFate = "plain" | "refunded" | "paid_elsewhere";

/** A held tip with its review claims. */
export type ClaimedTip = TipRow & {
  rejection_claim: RejectionFate | null;
  /** An approval claimed as found posted already (0034): what its receipt's money was found to be at the claim. */
  approval_found_posted: RejectionFate | null;
  review_claimed_by: string | null;
  review_note: string | null;
};

/** Who took the decision, as the alerts it closes and the audit name them. */
export interface Reviewer {
  admin: string;
  note: string;
  /** The admin's action recorded, in the claim's transaction (once: a claim finished again records nothing). */
  record: (tx: Queryable) => Promise<unknown>;
}

const CLAIMED_COLUMNS = `${TIP_COLUMNS}, rejection_claim, approval_found_posted, review_claimed_by, review_note`;

/** The held tip, its row locked; undefined once it is no longer held. */
export async function lockHeldTip(tx: Queryable, tipId: string): Promise<ClaimedTip | undefined> {
  const { rows } = await tx.query<ClaimedTip>(`SELECT ${CLAIMED_COLUMNS} FROM payment.tips WHERE tip_id = $1 AND status = 'held_for_review' FOR UPDATE`, [tipId]);
  return rows[0];
}

/**
 * Claims the locked held tip for its approval (the receipt its wallet entry names) or its rejection (with its fate).
 * `foundPosted`: an approval whose release was found posted already, with its receipt's fate then (0034).
 */
export async function markClaimed(tx: Queryable, tipId: string, claim: "approval" | RejectionFate, by: Reviewer, now: Date, foundPosted?: RejectionFate): Promise<ClaimedTip> {
  const { rows } = await tx.query<ClaimedTip>(
    `UPDATE payment.tips SET approval_receipt = CASE WHEN $2 = 'approval' THEN COALESCE(mpesa_receipt, credit_key) ELSE approval_receipt END,
       approval_found_posted = CASE WHEN $2 = 'approval' THEN $6 ELSE approval_found_posted END,
       rejection_claim = CASE WHEN $2 = 'approval' THEN rejection_claim ELSE $2 END,
       review_claimed_at = $3, review_claimed_by = $4, review_note = $5
      WHERE tip_id = $1 RETURNING ${CLAIMED_COLUMNS}`,
    [tipId, claim, now, by.admin, by.note, foundPosted ?? null],
  );
  return rows[0];
}

/** A rejection's claim given the fate its receipt's money was found to have after the claim (spent since). */
export async function markRejectionFate(tx: Queryable, tipId: string, fate: Exclude<RejectionFate, "plain">): Promise<ClaimedTip> {
  const { rows } = await tx.query<ClaimedTip>(`UPDATE payment.tips SET rejection_claim = $2 WHERE tip_id = $1 RETURNING ${CLAIMED_COLUMNS}`, [tipId, fate]);
  return rows[0];
}

/** A claim given up (the wallet refused it): the tip held as before unless its other claim stands. */
export async function giveUpClaim(db: Queryable, tipId: string, claim: "approval" | "rejection"): Promise<void> {
  const cleared = claim === "approval" ? "approval_receipt = NULL, approval_found_posted = NULL" : "rejection_claim = NULL";
  const other = claim === "approval" ? "rejection_claim" : "approval_receipt";
  await db.query(
    `UPDATE payment.tips SET ${cleared}, review_claimed_at = CASE WHEN ${other} IS NULL THEN NULL ELSE review_claimed_at END
      WHERE tip_id = $1 AND status = 'held_for_review'`,
    [tipId],
  );
}

/**
 * Up to `limit` held tips whose claim was taken before `before` and not finished (the process stopped between its
 * steps, or a wallet call failed), oldest first; each one's time moved to `now`, so that one failing again waits its
 * turn behind the others. Skips rows another transaction holds (a review under way).
 */
export async function dueReviewClaims(db: Queryable, before: Date, now: Date, limit: number): Promise<ClaimedTip[]> {
  const { rows } = await db.query<ClaimedTip>(
    `UPDATE payment.tips SET review_claimed_at = $2
      WHERE tip_id IN (SELECT tip_id FROM payment.tips WHERE status = 'held_for_review' AND review_claimed_at <= $1
                        ORDER BY review_claimed_at LIMIT $3 FOR UPDATE SKIP LOCKED)
      RETURNING ${CLAIMED_COLUMNS}`,
    [before, now, limit],
  );
  return rows;
}
