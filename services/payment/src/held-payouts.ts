// The admin's way out of a payout held for the amount M-Pesa reported (payouts.ts, holdForAmountMismatch): support
// reads M-Pesa's statement and says what was paid. The outcome is recorded with its event in one transaction; the
// wallet's hold is then settled (with any difference booked) or released, and retried by reconciliation if the
// wallet does not answer now. Nothing here sends a B2C.
import { fieldError, formatMoney, InvalidStateError, NotFoundError, type Queryable, withTransaction } from "@ttip/runtime";
import { HELD_PAYOUT_CONFIRM_DIFFERENCE_ABOVE_MINOR } from "@ttip/runtime/mpesa-limits";
import { paymentMetrics } from "./metrics.js";
import { announceOutcome, payoutChangeKey, resolveHold, type Finish, type PayoutDeps } from "./payouts.js";
import { closePayoutAlerts } from "./stores/fraud-alerts.js";
import { loadPayout, payoutOf, type Payout, type PayoutRow } from "./stores/payouts.js";
import { refuseOwnAccount } from "./own-account.js";

/**
 * What M-Pesa's statement shows for the payout; when paid, the difference from the payout's amount the admin
 * confirmed (paid minus the payout, as the console showed it), if any.
 */
export type StatementOutcome = { paid: true; paidMinor: bigint; receipt: string; confirmedDifferenceMinor?: bigint } | { paid: false };

/** The request's field that confirms a difference over the limit. */
const CONFIRMATION_FIELD = "paid.confirmed_difference";

/**
 * A paid amount differing from the payout's by more than HELD_PAYOUT_CONFIRM_DIFFERENCE_ABOVE_MINOR either way is
 * taken only with that exact difference confirmed: the platform's fees account or the worker's wallet books it, and
 * a typo (9600 for 96) would book thousands. INVALID_ARGUMENT naming the confirmation field otherwise.
 */
function requireConfirmedDifference(p: Payout, o: StatementOutcome): void {
  if (!o.paid) return;
  const asked = p.amount.amountMinor;
  const difference = o.paidMinor - asked;
  if ((difference < 0n ? -difference : difference) <= HELD_PAYOUT_CONFIRM_DIFFERENCE_ABOVE_MINOR) return;
  if (o.confirmedDifferenceMinor === difference) return;
  const said = `${formatMoney(o.paidMinor, "KES")} paid for this ${formatMoney(asked, "KES")} payout is a difference of ${formatMoney(difference, "KES")} `
    + `for ${difference > 0n ? "the platform's fees account" : "the worker's wallet"}, over the ${formatMoney(HELD_PAYOUT_CONFIRM_DIFFERENCE_ABOVE_MINOR, "KES")} taken unconfirmed`;
  throw fieldError(CONFIRMATION_FIELD, o.confirmedDifferenceMinor === undefined
    ? `${said}: check the paid amount, and confirm that difference here if it is right; nothing changed`
    : `confirms ${formatMoney(o.confirmedDifferenceMinor, "KES")}, but ${said}; nothing changed`);
}

/** A receipt is one payout's: another's (a neighbouring statement line) is refused naming the field, not left to the unique index. */
async function requireReceiptUnused(tx: Queryable, payoutId: string, receipt: string): Promise<void> {
  const { rows: [other] } = await tx.query<{ payout_id: string }>(
    "SELECT payout_id FROM payment.payouts WHERE mpesa_receipt = $1 AND payout_id <> $2", [receipt, payoutId],
  );
  if (other) throw fieldError("paid.mpesa_receipt", `${receipt} is the receipt of payout ${other.payout_id}; check the statement line; nothing changed`);
}

export interface HeldPayoutResolution {
  payoutId: string;
  outcome: StatementOutcome;
  note: string;
  admin: string;
  /** Claims the call's idempotency key in the resolution's transaction: true when an earlier call under it did. */
  claim: (tx: Queryable) => Promise<boolean>;
  /** The audit record, in the same transaction, about the payout's worker. */
  record: (tx: Queryable, workerId: string) => Promise<unknown>;
}

/** The resolution's outcome as the payout records it (and the worker reads it). */
function finishOf(p: Payout, o: StatementOutcome): Finish {
  if (!o.paid) {
    return { success: false, code: "not_paid", message: "M-Pesa's statement shows nothing sent for this payout (checked by support); the amount is back in your wallet" };
  }
  const asked = p.amount.amountMinor;
  const message = o.paidMinor === asked
    ? `Sent to M-Pesa: ${formatMoney(asked, "KES")}, confirmed on M-Pesa's statement by support`
    : `Sent to M-Pesa: M-Pesa's statement shows ${formatMoney(o.paidMinor, "KES")} sent for this ${formatMoney(asked, "KES")} payout (checked by support); `
      + (o.paidMinor > asked
        ? `your wallet is charged ${formatMoney(asked, "KES")}, the platform bears the difference`
        : `your wallet is charged ${formatMoney(o.paidMinor, "KES")}, the ${formatMoney(asked - o.paidMinor, "KES")} not sent is back in it`);
  return { success: true, code: "0", message, receipt: o.receipt };
}

/**
 * Ends a payout on hold for an amount mismatch as the statement says: recorded with its event, its alert closed and
 * the audit record written in one transaction (all or nothing: a refusal changes nothing), then its hold settled or
 * released. A retry under the same key gets the payout as it is, its hold driven again if still open.
 */
export async function resolveHeldPayout(deps: PayoutDeps, r: HeldPayoutResolution): Promise<Payout> {
  const first = await withTransaction(deps.ctx.pool, async (tx) => {
    if (await r.claim(tx)) return false;
    const { rows: [row] } = await tx.query<PayoutRow & { mismatch: boolean }>(
      `SELECT p.*, EXISTS (SELECT 1 FROM payment.payout_alerts a WHERE a.payout_id = p.payout_id AND a.kind = 'amount_mismatch') AS mismatch
         FROM payment.payouts p WHERE p.payout_id = $1 FOR UPDATE OF p`,
      [r.payoutId],
    );
    if (!row) throw new NotFoundError(`payout_id: no payout ${r.payoutId}`);
    const p = payoutOf(row);
    refuseOwnAccount(r.admin, p.workerId, "payout_id");
    if (p.status !== "on_hold" || !row.mismatch || p.holdState !== "held") {
      throw new InvalidStateError(`payout_id: payout ${r.payoutId} is ${p.status} (its hold ${p.holdState}), not held for an amount M-Pesa reported; nothing changed`);
    }
    requireConfirmedDifference(p, r.outcome);
    if (r.outcome.paid) await requireReceiptUnused(tx, r.payoutId, r.outcome.receipt);
    const f = finishOf(p, r.outcome);
    // The receipt M-Pesa's result named is kept beside the statement's that replaces it (the old value, as SET reads it).
    const { rows: [done] } = await tx.query<PayoutRow>(
      `UPDATE payment.payouts SET status = $2, result_code = $3, result_message = $4, reported_mpesa_receipt = mpesa_receipt,
              mpesa_receipt = COALESCE($5, mpesa_receipt), paid_minor = $6, completed_at = now() WHERE payout_id = $1 AND status = 'on_hold' RETURNING *`,
      [r.payoutId, f.success ? "succeeded" : "failed", f.code, f.message.slice(0, 300), f.receipt ?? null, r.outcome.paid ? r.outcome.paidMinor : null],
    );
    await announceOutcome(tx, payoutOf(done), f);
    await closePayoutAlerts(tx, r.payoutId, r.outcome.paid ? "approved" : "rejected", r.admin, r.note);
    await r.record(tx, p.workerId);
    return true;
  });
  await resolveHold(deps, r.payoutId);
  if (first) {
    paymentMetrics(deps.ctx.metrics).payouts.inc({ status: r.outcome.paid ? "succeeded" : "failed" });
    deps.changes.announce(payoutChangeKey(r.payoutId));
  }
  const p = await loadPayout(deps.ctx.pool, r.payoutId);
  if (!p) throw new NotFoundError(`payout_id: no payout ${r.payoutId}`);
  return p;
}
