// A held M-Pesa tip's approval, in three steps, none holding a lock or a connection across a wallet call:
// the claim (a short transaction: the tip's receipt checked under its row lock, then approval_receipt
// set), the wallet's release from suspense (outside any transaction, idempotent on the approval's key),
// and the record (a short transaction: the tip succeeded, once). The claim is the decision: a late STK
// callback taking the tip's row after it is flagged as paid twice if the approval goes through, as one
// after the tip succeeded is; it no longer waits for the wallet. An approval again (another admin's at
// the same time, or after the process stopped between steps) finishes the claimed one under the same
// key: the wallet posts once, one record wins.
import { clockOf, formatMoney, InvalidStateError, type Queryable, withTransaction } from "@ttip/runtime";
import { closeSuspenseMatch, refuseSpentReceiptApproval, spentApprovalRefusal, spentReceiptOf } from "./c2b.js";
import { recordAlert } from "./fraud.js";
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
  /**
   * Settled as posted (settleOlderApproval): the approval's key holds its release already, nothing is posted. Kept
   * with the claim (approval_found_posted), with `spent` as found then: an approval again finishes it the same way.
   */
  posted?: boolean;
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
 * resumer), only a claim taken already. `settle`: the release found posted already (settleOlderApproval).
 */
export async function claimApproval(deps: Deps, tipId: string, by?: Reviewer, settle?: { posted: true }): Promise<ClaimedApproval | undefined> {
  return withTransaction(deps.ctx.pool, async (tx) => {
    const tip = await lockHeldTip(tx, tipId);
    if (!tip) return undefined;
    if (tip.rejection_claim) throw new InvalidStateError("tip_id: a rejection of this tip is under way (it closes the tip's approval): reject it to finish");
    if (tip.approval_receipt) return claimedBefore(tx, tip as ClaimedApproval["tip"]);
    if (!by) return undefined;
    if (!settle) await refuseSpentReceiptApproval(tx, tip);
    // Nothing would reach the worker (the wallet refuses a zero line, and the claim would be retried for ever).
    if (!settle && approvedSplit(tip).workerMinor === 0n) {
      throw new InvalidStateError(`tip_id: M-Pesa took ${formatMoney(tip.received_minor ?? tip.charged_minor, "KES")}, which does not cover the tip's fee of ` +
        `${formatMoney(tip.charged_minor - tip.worker_receives_minor, "KES")}: nothing would reach the worker; reject it, and the payment goes back to support to refund`);
    }
    const spent = settle && (await spentReceiptOf(tx, tip));
    const claimed = await markClaimed(tx, tipId, "approval", by, new Date(clockOf(deps.ctx).now()), settle && (spent || "plain"));
    await by.record(tx);
    return { tip: claimed as ClaimedApproval["tip"], ...(settle && { spent: spent || undefined, posted: true }) };
  });
}

/**
 * An approval claimed before, as its claim decided it: found posted (settleOlderApproval), with its receipt's money
 * as found then (a payment reopened since was paid to the worker all the same); otherwise its receipt's money now.
 */
async function claimedBefore(tx: Queryable, tip: ClaimedApproval["tip"]): Promise<ClaimedApproval> {
  const found = tip.approval_found_posted;
  if (found) return { tip, posted: true, ...(found !== "plain" && { spent: found }) };
  return { tip, spent: await spentReceiptOf(tx, tip) };
}

/**
 * A claimed approval carried out: its money paid (payApproval), then the tip recorded succeeded, once. Undefined
 * when another approval recorded it first, or a rejection ended it.
 */
export async function finishApproval(deps: Deps, claimed: ClaimedApproval): Promise<TipRow | undefined> {
  const foundPosted = await payApproval(deps, claimed);
  const { tip } = claimed;
  return withTransaction(deps.ctx.pool, async (tx) => {
    const t = await endHeldTip(tx, tip.tip_id, { approve: true, resultMessage: resultMessage("0"), workerMinor: approvedSplit(tip).workerMinor });
    if (!t) return undefined;
    await closeTipAlerts(tx, tip.tip_id, "approved", tip.review_claimed_by ?? "", tip.review_note ?? "");
    // Its release posted before its receipt's money was found spent (an older replica's, or an answer lost): paid twice.
    if (foundPosted && claimed.spent) await flagPaidTwice(tx, t, claimed.spent);
    await emitTipSucceeded(tx, t);
    return t;
  });
}

/**
 * The claimed approval's money: out of suspense to the tip's recipient, once per key. Refused (nothing was
 * posted under the key, and nothing can be now), the claim is given up and the tip stays held for a decision;
 * any other failure keeps it, for an approval again to finish (the wallet may have posted it). True when the
 * approval's key was found holding its release already: the money moved, nothing more is posted.
 */
export async function payApproval(deps: Deps, { tip, spent, posted }: ClaimedApproval): Promise<boolean> {
  try {
    if (posted || (spent && (await closeUnpaidSpentApproval(deps, tip, spent)))) return true;
    await closeSuspenseMatch(deps, tip);
    // Out of what M-Pesa took, which may differ from what was asked (the reason it was held).
    await deps.ledger.releaseFromSuspense({
      key: approvalKey(tip), receipt: tip.approval_receipt,
      recipient: tip.worker_id ? { workerId: tip.worker_id } : { venueId: tip.venue_id },
      ...approvedSplit(tip),
    }).catch(approvalRefused);
    return false;
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
async function closeUnpaidSpentApproval(deps: Deps, tip: TipRow, spent: "refunded" | "paid_elsewhere"): Promise<true> {
  try {
    // The close a rejection posts: a rejection after this one posts nothing new.
    await closeApprovalKey(deps, tip);
  } catch (err) {
    if (err instanceof InvalidStateError) return true;
    throw err;
  }
  throw spentApprovalRefusal(spent);
}

/** How the alert of 0029's trigger starts: an older replica's approval it refused to record, after its release posted. */
const OLDER_REPLICA_ALERT = "an approval by an older replica (during a rollout) was not recorded:%";

/**
 * An approval refused as a first claim (its receipt's money spent) of a tip an older replica approved during a
 * rollout, whose record 0029's trigger refused after that replica's wallet release was posted under the approval's
 * key: the tip could be neither approved (spent) nor rejected (the key holds an entry). Found so (the trigger's alert,
 * then the key's close refused: besides a close, only the approval's release is ever posted under it), the approval
 * settles the tip as approved, as the money moved: claimed without the spent check, nothing posted again, recorded,
 * and flagged for support to recover the payment paid twice. Otherwise the refusal stands; the key's close, posted
 * here, is the rejection's own (the same entry), so the rejection goes through.
 */
export async function settleOlderApproval(deps: Deps, tipId: string, by: Reviewer, refusal: unknown): Promise<ClaimedApproval | undefined> {
  if (!(refusal instanceof InvalidStateError)) throw refusal;
  const { rows } = await deps.ctx.pool.query<Pick<TipRow, "credit_key" | "mpesa_receipt">>(
    `SELECT credit_key, mpesa_receipt FROM payment.tips t
      WHERE tip_id = $1 AND status = 'held_for_review' AND approval_receipt IS NULL AND rejection_claim IS NULL
        AND EXISTS (SELECT 1 FROM payment.fraud_alerts a WHERE a.tip_id = t.tip_id AND a.detail LIKE $2)`,
    [tipId, OLDER_REPLICA_ALERT],
  );
  if (!rows[0]) throw refusal;
  try {
    await closeApprovalKey(deps, rows[0]);
  } catch (err) {
    if (err instanceof InvalidStateError) return claimApproval(deps, tipId, by, { posted: true });
    throw err;
  }
  throw refusal;
}

/**
 * A tip recorded approved whose release was posted before its receipt's money was found spent: support recovers the
 * payment paid twice. Open after the record, which closes the tip's earlier alerts as approved.
 */
async function flagPaidTwice(tx: Queryable, t: TipRow, spent: "refunded" | "paid_elsewhere"): Promise<void> {
  const fate = spent === "refunded" ? "was refunded to the customer" : "was credited as another tip";
  await recordAlert(tx, {
    reason: "CALLBACK_MISMATCH", action: "flag", tipId: t.tip_id, workerId: t.worker_id ?? undefined, phoneMasked: t.phone_masked,
    detail: `approved as posted: its approval's release was posted under ${approvalKey(t)}, and its payment ${fate}: paid twice, recover it`,
  });
}
