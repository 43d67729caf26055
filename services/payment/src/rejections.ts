// A held M-Pesa tip's rejection, in three steps as its approval (approvals.ts), none holding a lock or a
// connection across a wallet call: the claim (a short transaction: under the receipt's and the tip's row
// locks, what its receipt's money is, then rejection_claim set), the wallet's calls (outside any
// transaction, each posted once by its key: the approval's key closed, a parked payment's match key
// closed, a spent hold reversed), and the record (a short transaction: the tip failed, once). The claim
// is the decision: a rejection again (another admin's, or the resumer's after a crash) finishes it with
// what the claim read, or its money found spent since (plain to spent, never back), so a hold reversed by
// a try whose record failed is never reversed under another reading, nor left reversed for a tip then
// approved (an approval is refused while the claim stands).
import { clockOf, emitEvent, InvalidStateError, type Queryable, withTransaction } from "@ttip/runtime";
import { PaymentMethod, TipFailedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { closeApprovalKey } from "./approvals.js";
import { closeMatchBeforeReopen, lockFundingReceipt, rejectedAsSpent, reopenFundingPayment, reverseSpentHold, spentReceiptOf } from "./c2b.js";
import { resultMessage } from "./messages.js";
import { kes } from "./money.js";
import { closeTipAlerts } from "./stores/fraud-alerts.js";
import { type ClaimedTip, giveUpClaim, lockHeldTip, markClaimed, markRejectionFate, type Reviewer } from "./stores/review-claims.js";
import { endHeldTip } from "./stores/tips.js";
import { approvedSplit, type Deps, type TipRow } from "./tips.js";

/**
 * Claims a held tip for its rejection; undefined when it is no longer held. Its receipt's money is read under the
 * tip's row lock (a late callback records the receipt it names under it): spent, the rejection reverses its hold.
 * A tip claimed already is answered as it is. Without a reviewer (the resumer), only a claim taken already.
 */
export async function claimRejection(deps: Deps, tip: TipRow, by?: Reviewer): Promise<ClaimedTip | undefined> {
  return withTransaction(deps.ctx.pool, async (tx) => {
    // The paybill payment funding it locked before the tip's row, as every decision about a receipt takes them.
    await lockFundingReceipt(tx, tip);
    const held = await lockHeldTip(tx, tip.tip_id);
    if (!held) return undefined;
    if (held.rejection_claim) return held;
    if (!by) return undefined;
    const fate = (await spentReceiptOf(tx, held)) ?? "plain";
    const claimed = await markClaimed(tx, tip.tip_id, fate, by, new Date(clockOf(deps.ctx).now()));
    await by.record(tx);
    return claimed;
  });
}

/**
 * A claimed rejection carried out: the approval's key closed first, so that an approval on its way cannot pay (found
 * posted, the claim is given up: the worker has the money, an approval finishes it); then the tip recorded failed,
 * once. Undefined when another review recorded it first.
 */
export async function finishRejection(deps: Deps, tip: ClaimedTip): Promise<TipRow | undefined> {
  try {
    await closeApprovalKey(deps, tip);
  } catch (err) {
    if (err instanceof InvalidStateError) await giveUpClaim(deps.ctx.pool, tip.tip_id, "rejection");
    throw err;
  }
  // A paybill payment parked in suspense funding it: its match key closed too (an approval that failed part way
  // may have closed it), so that the payment reopened below is matched under a key nothing holds.
  const closedRound = await closeMatchBeforeReopen(deps, tip);
  const spent = tip.rejection_claim === "plain" ? undefined : tip.rejection_claim!;
  // Spent: the hold's suspense money, taken from clearing for a second payment that never came, goes back (c2b.ts).
  if (spent) await reverseSpentHold(deps, tip);
  const recorded = await withTransaction(deps.ctx.pool, async (tx) => {
    await lockFundingReceipt(tx, tip);
    const found = await lockHeldTip(tx, tip.tip_id);
    if (!found) return undefined;
    // Its money found spent since the claim (a late callback named the payment): the hold is reversed first, once.
    const learned = spent ? undefined : await spentSinceClaim(tx, found);
    if (learned) return { again: learned };
    const t = await endHeldTip(tx, tip.tip_id, { approve: false, resultMessage: resultMessage("review_rejected"), workerMinor: approvedSplit(tip).workerMinor });
    if (!t) return undefined;
    await closeTipAlerts(tx, tip.tip_id, "rejected", tip.review_claimed_by ?? "", tip.review_note ?? "");
    // A paybill payment parked in suspense funded it: back to support's open list (c2b.ts says why not refunded here).
    const reopened = await reopenFundingPayment(tx, t, closedRound);
    const ended = reopened ?? (spent ? await rejectedAsSpent(tx, t, spent) : t);
    // A tip held on a success that came after it had failed (expired, say) told that failure then: told again,
    // analytics would count two failed attempts and partners hear tip_failed twice.
    if (!ended.replaced_failure_at) await emitEvent(tx, "payment", TipFailedSchema, {
      tipId: ended.tip_id, workerId: ended.worker_id ?? "", qrCodeId: ended.qr_code_id, amount: kes(ended.amount_minor), method: PaymentMethod.MPESA,
      resultCode: ended.result_code, reason: ended.result_message, venueId: ended.venue_id, createdBy: ended.customer_subject,
    }, ended.tip_id);
    return { ended };
  });
  // Once at most: a claim's fate moves from plain to spent, never back.
  return recorded?.again ? finishRejection(deps, recorded.again) : recorded?.ended;
}

/**
 * A rejection claimed as plain whose receipt's money is found spent at its record (the tip's late callback, after the
 * claim, named the payment support refunded or credited as another tip): the claim takes that fate, for its hold to
 * be reversed before the record, as when the callback came first. Its claim taken so by another try: that fate.
 */
async function spentSinceClaim(tx: Queryable, tip: ClaimedTip): Promise<ClaimedTip | undefined> {
  if (tip.rejection_claim && tip.rejection_claim !== "plain") return tip;
  const spent = tip.rejection_claim ? await spentReceiptOf(tx, tip) : undefined;
  return spent && markRejectionFate(tx, tip.tip_id, spent);
}
