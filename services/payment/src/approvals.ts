// A held M-Pesa tip's approval, in three steps, none holding a lock or a connection across a wallet call:
// the claim (a short transaction: the tip's receipt checked under its row lock, then approval_receipt
// set), the wallet's release from suspense (outside any transaction, idempotent on the approval's key),
// and the record (a short transaction: the tip succeeded, once). The claim is the decision: a late STK
// callback taking the tip's row after it is flagged as paid twice if the approval goes through, as one
// after the tip succeeded is; it no longer waits for the wallet. An approval again (another admin's at
// the same time, or after the process stopped between steps) finishes the claimed one under the same
// key: the wallet posts once, one record wins.
import { InvalidStateError, type Pool, withTransaction } from "@ttip/runtime";
import { closeSuspenseMatch, refuseSpentReceiptApproval, spentApprovalRefusal, spentReceiptOf } from "./c2b.js";
import { approvalRefused } from "./ledger.js";
import { approvedSplit, type Deps, TIP_COLUMNS, type TipRow } from "./tips.js";

/** A claimed approval: the tip as claimed; `spent`, for one claimed before, when its receipt's money is spent since. */
export interface ClaimedApproval {
  tip: TipRow & { approval_receipt: string };
  spent?: "refunded" | "paid_elsewhere";
}

/** The wallet key a held tip's approval posts under (a rejection closes it: Ledger.closeApproval). */
export const approvalKey = (tip: Pick<TipRow, "credit_key">) => `${tip.credit_key}:approved`;

/**
 * Claims a held tip for its approval; undefined when it is no longer held. A first claim is refused when its
 * receipt's money is spent (spentReceiptOf), read under the tip's row lock, under which a late callback records
 * the receipt it names. A tip claimed already is answered as it is: its approval was decided then.
 */
export async function claimApproval(pool: Pool, tipId: string): Promise<ClaimedApproval | undefined> {
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<TipRow>(`SELECT ${TIP_COLUMNS} FROM payment.tips WHERE tip_id = $1 AND status = 'held_for_review' FOR UPDATE`, [tipId]);
    const tip = rows[0];
    if (!tip) return undefined;
    if (tip.approval_receipt) return { tip: tip as ClaimedApproval["tip"], spent: await spentReceiptOf(tx, tip) };
    await refuseSpentReceiptApproval(tx, tip);
    const { rows: claimed } = await tx.query<ClaimedApproval["tip"]>(
      `UPDATE payment.tips SET approval_receipt = COALESCE(mpesa_receipt, credit_key) WHERE tip_id = $1 RETURNING ${TIP_COLUMNS}`, [tipId]);
    return { tip: claimed[0] };
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
    if (err instanceof InvalidStateError) await giveUpClaim(pool(deps), tip.tip_id);
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
    // The cause a rejection's close gives it, from the row as it is: a rejection after this one posts nothing new.
    await deps.ledger.closeApproval(approvalKey(tip), { cause: { case: "mpesaReceipt", value: tip.mpesa_receipt ?? tip.credit_key! } });
  } catch (err) {
    if (err instanceof InvalidStateError) return;
    throw err;
  }
  throw spentApprovalRefusal(spent);
}

/** A refused approval's claim given up: the tip held as before, for an admin's decision. */
async function giveUpClaim(db: Pool, tipId: string): Promise<void> {
  await db.query("UPDATE payment.tips SET approval_receipt = NULL WHERE tip_id = $1 AND status = 'held_for_review'", [tipId]);
}

const pool = (deps: Deps) => deps.ctx.pool;
