import { InvalidStateError, withTransaction, type Queryable } from "@ttip/runtime";
import { approvalRefused } from "../ledger.js";
import { closeTipAlerts } from "../stores/fraud-alerts.js";
import { runAfterCredit, type Deps } from "../tips.js";
import { cardResultMessage, type CardTipRow } from "./convert.js";
import { emitCardTipFailed, emitCardTipSucceeded, splitOf } from "./tips.js";

/**
 * An admin's decision on a card tip held by a rule (country mismatch, a
 * payment that did not match): approval pays the worker from suspense;
 * rejection leaves it in suspense for a refund to the card.
 */
export async function reviewCardTip(
  deps: Deps, tip: CardTipRow, approve: boolean, adminId: string, note: string,
  /** Records the admin's decision in the transaction that applies it. */
  record: (tx: Queryable) => Promise<void>,
): Promise<CardTipRow> {
  if (approve) {
    await refuseApprovalUnderChargeback(deps, tip);
    await deps.cards!.ledger.releaseFromSuspense(splitOf(tip)).catch(approvalRefused);
  } else await deps.cards!.ledger.closeApproval(splitOf(tip));
  const updated = await withTransaction(deps.ctx.pool, async (tx) => {
    const { rows } = await tx.query<CardTipRow>(
      `UPDATE payment.tips SET status = $2, result_code = CASE WHEN $3 THEN result_code ELSE 'review_rejected' END, result_message = $4
        WHERE tip_id = $1 AND status = 'held_for_review' RETURNING *`,
      [tip.tip_id, approve ? "succeeded" : "failed", approve, cardResultMessage(approve ? "0" : "review_rejected")],
    );
    const t = rows[0];
    if (!t) return undefined;
    await closeTipAlerts(tx, tip.tip_id, approve ? "approved" : "rejected", adminId, note);
    await record(tx);
    // Rejected, it ended without money: told as any card tip that fails is (analytics counts a card attempt at its end),
    // unless it was told failed before it was held (expired, then paid late): told twice, it would count twice.
    if (approve) await emitCardTipSucceeded(tx, t);
    else if (!t.replaced_failure_at) await emitCardTipFailed(tx, t);
    return t;
  });
  if (!updated) throw new InvalidStateError("tip_id: the tip was reviewed meanwhile");
  deps.changes.announce(tip.tip_id);
  if (approve) runAfterCredit(deps, updated);
  return updated;
}

/**
 * A chargeback decides a disputed tip's money: approved while one is open, the worker could withdraw
 * it before a lost dispute takes it back from the wallet, below zero (a dispute opened while the tip was
 * held set nothing aside: the money was in suspense); after a lost one it is gone. Read as the disputes
 * are now, just before the wallet is asked: the row the request loaded may predate a dispute's opening.
 */
async function refuseApprovalUnderChargeback(deps: Deps, tip: CardTipRow): Promise<void> {
  const { rows } = await deps.ctx.pool.query<{ status: "open" | "lost" }>("SELECT DISTINCT status FROM payment.card_disputes WHERE tip_id = $1 AND status IN ('open', 'lost')", [tip.tip_id]);
  const statuses = new Set(rows.map((r) => r.status));
  if (statuses.has("lost") || tip.card_state === "dispute_lost") throw new InvalidStateError("tip_id: the payment was charged back; the tip can only be rejected");
  if (statuses.has("open") || tip.card_state === "disputed") throw new InvalidStateError("tip_id: a chargeback is open on this payment; approve or reject once it is decided");
}
