// A held M-Pesa tip's approval, in three steps, none holding a lock or a connection across a wallet call:
// the claim (a short transaction: the tip's receipt checked under its row lock, then approval_receipt
// set), the wallet's release from suspense (outside any transaction, idempotent on the approval's key),
// and the record (a short transaction: the tip succeeded, once). The claim is the decision: a late STK
// callback taking the tip's row after it is flagged as paid twice if the approval goes through, as one
// after the tip succeeded is; it no longer waits for the wallet. An approval again (another admin's at
// the same time, or after the process stopped between steps) finishes the claimed one under the same
// key: the wallet posts once, one record wins.
import { clockOf, InvalidStateError, withTransaction } from "@ttip/runtime";
import { closeSuspenseMatch, refuseSpentReceiptApproval, spentApprovalRefusal, spentReceiptOf } from "./c2b.js";
import { approvalRefused } from "./ledger.js";
import { resultMessage } from "./messages.js";
import { closeTipAlerts } from "./stores/fraud-alerts.js";
import { type ClaimedTip, giveUpClaim, lockHeldTip, markClaimed, type Reviewer } from "./stores/review-claims.js";
import { endHeldTip } from "./stores/tips.js";
import { approvedSplit, type Deps, emitTipSucceeded, type TipRow } from "./tips.js";

/** A claimed approval: the tip as claimed; `spent`, for one claimed before, when its receipt's money is spent since. */
export interface ClaimedApproval {
  tip: ClaimedTip & { approval_receipt: string };
  spent?: "refunded" | "paid_elsewhere";
}

/** The wallet key a held tip's approval posts under (a rejection closes it: closeApprovalKey). */
export const approvalKey = (tip: Pick<TipRow, "credit_key">) => `${tip.credit_key}:approved`;

/**
 * Closes a held tip's approval key (Ledger.closeApproval), as its rejection does and an approval found spent since
 * its claim does; refused when the approval was posted. The cause is the tip's credit key, which a held tip keeps: a
 * receipt the tip learns between two tries (a late callback) would build another close, refused as if the approval
 * had been posted. A close an older version posted under the receipt the tip had then is found under that receipt.
 */
export async function closeApprovalKey(deps: Deps, tip: Pick<TipRow, "credit_key" | "mpesa_receipt">): Promise<void> {
  const close = (cause: string) => deps.ledger.closeApproval(approvalKey(tip), { cause: { case: "mpesaReceipt", value: cause } });
  try {
    await close(tip.credit_key!);
  } catch (err) {
    if (!(err instanceof InvalidStateError) || !tip.mpesa_receipt || tip.mpesa_receipt === tip.credit_key) throw err;
    await close(tip.mpesa_receipt).catch((again: unknown) => {
      throw again instanceof InvalidStateError ? err : again;
    });
  }
}

/**
 * Claims a held tip for its approval; undefined when it is no longer held. A first claim is refused when its
 * receipt's money is spent (spentReceiptOf), read under the tip's row lock, under which a late callback records
 * the receipt it names, and when a rejection claimed it (the rejection closes the approval's key: reject it to
 * finish). A tip claimed already is answered as it is: its approval was decided then. Without a reviewer (the
 * resumer), only a claim taken already.
 */
export async function claimApproval(deps: Deps, tipId: string, by?: Reviewer): Promise<ClaimedApproval | undefined> {
  return withTransaction(deps.ctx.pool, async (tx) => {
    const tip = await lockHeldTip(tx, tipId);
    if (!tip) return undefined;
    if (tip.rejection_claim) throw new InvalidStateError("tip_id: a rejection of this tip is under way (it closes the tip's approval): reject it to finish");
    if (tip.approval_receipt) return { tip: tip as ClaimedApproval["tip"], spent: await spentReceiptOf(tx, tip) };
    if (!by) return undefined;
    await refuseSpentReceiptApproval(tx, tip);
    const claimed = await markClaimed(tx, tipId, "approval", by, new Date(clockOf(deps.ctx).now()));
    await by.record(tx);
    return { tip: claimed as ClaimedApproval["tip"] };
  });
}

/**
 * A claimed approval carried out: its money paid (payApproval), then the tip recorded succeeded, once. Undefined
 * when another approval recorded it first, or a rejection ended it.
 */
export async function finishApproval(deps: Deps, claimed: ClaimedApproval): Promise<TipRow | undefined> {
  await payApproval(deps, claimed);
  const { tip } = claimed;
  return withTransaction(deps.ctx.pool, async (tx) => {
    const t = await endHeldTip(tx, tip.tip_id, { approve: true, resultMessage: resultMessage("0"), workerMinor: approvedSplit(tip).workerMinor });
    if (!t) return undefined;
    await closeTipAlerts(tx, tip.tip_id, "approved", tip.review_claimed_by ?? "", tip.review_note ?? "");
    await emitTipSucceeded(tx, t);
    return t;
  });
}

/**
 * The claimed approval's money: out of suspense to the tip's recipient, once per key. Refused (nothing was
 * posted under the key, and nothing can be now), the claim is given up and the tip stays held for a decision;
 * any other failure keeps it, for an approval again to finish (the wallet may have posted it).
 */
export async function payApproval(deps: Deps, { tip, spent }: ClaimedApproval): Promise<void> {
  try {
    if (spent) await closeUnpaidSpentApproval(deps, tip, spent);
    await closeSuspenseMatch(deps, tip);
    // Out of what M-Pesa took, which may differ from what was asked (the reason it was held).
    await deps.ledger.releaseFromSuspense({
      key: approvalKey(tip), receipt: tip.approval_receipt,
      recipient: tip.worker_id ? { workerId: tip.worker_id } : { venueId: tip.venue_id },
      ...approvedSplit(tip),
    }).catch(approvalRefused);
  } catch (err) {
    if (err instanceof InvalidStateError) await giveUpClaim(deps.ctx.pool, tip.tip_id, "approval");
    throw err;
  }
}

/**
 * An approval claimed before its receipt's money was found spent (a late callback since): when nothing was
 * posted under its key, the key is closed, as a rejection closes it, and the approval refused as a first claim
 * would be. The key holding the approval's own entry (posted before its answer was lost), it goes on: the
 * money moved already, and the tip is recorded as approved (the callback flagged it as paid twice).
 */
async function closeUnpaidSpentApproval(deps: Deps, tip: TipRow, spent: "refunded" | "paid_elsewhere"): Promise<void> {
  try {
    // The close a rejection posts: a rejection after this one posts nothing new.
    await closeApprovalKey(deps, tip);
  } catch (err) {
    if (err instanceof InvalidStateError) return;
    throw err;
  }
  throw spentApprovalRefusal(spent);
}
