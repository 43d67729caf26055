// Paybill and till payments that M-Pesa reports through its C2B API: the
// customer paid from their own M-Pesa menu, a banking app (KE-QR) or the
// fallback of a push that never arrived. Validation answers fast; every
// confirmation is stored raw first, then applied once per M-Pesa receipt
// (TransID), whichever of the STK callback and the C2B confirmation comes
// first. Nothing is keyed on the payer's MSISDN (masked in v2, hashed in v1).
import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { QrCodeStatus } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { FeeQuote } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { asConnectError, ConcurrentChangeError, decimalMinor, DependencyUnavailableError, fieldError, formatMoney, InvalidStateError, MPESA_LIMITS, NotFoundError, type Queryable, timeOrderedUuid, withTransaction } from "@ttip/runtime";
import type { C2bConfig } from "./config.js";
import { bannedUrlWord, DarajaError } from "./daraja/client.js";
import { type AlertInput, recordAlert } from "./fraud.js";
import { resultMessage } from "./messages.js";
import { paymentMetrics } from "./metrics.js";
import { claimSuspenseReversal, reverseRefundedPayment, reversesOnRefund, suspenseReversalOf } from "./mpesa-reversals.js";
import { qrInternalClient } from "./peer-clients.js";
import { postCredit } from "./credits.js";
import { giveReceipt, lockTiesOfAmount, pruneReceiptless, receiptlessTipFor } from "./receiptless.js";
import { applyStkOutcome, emitTipSucceeded, runAfterCredit, type Deps, type TipRow } from "./tips.js";
import { newCallbackToken } from "./callback-paths.js";
import { refuseOwnAccount } from "./own-account.js";

/** A C2B validation or confirmation body, as far as we use it (the raw body is kept whole). */
export interface C2bPayment {
  transactionType: string;
  /** The M-Pesa receipt. */
  transId: string;
  transTime: string;
  /** Undefined when TransAmount is not a plain amount. */
  amountMinor: bigint | undefined;
  businessShortCode: string;
  /** The account reference as the customer typed it (empty for a till). */
  billRefNumber: string;
  /** The payer's MSISDN as C2B gives it (masked in v2, hashed in v1): only compared, never stored apart from the raw body. */
  payer: string;
}

/** The longest account reference taken as written (whole, never cut: a cut one could name a code the whole does not). */
const BILL_REF_MAX = 200;

/** Strict on what we rely on; the rest (names, MSISDN, balance) is never read. */
export function parseC2bPayment(json: unknown): C2bPayment | undefined {
  if (!json || typeof json !== "object" || Array.isArray(json)) return undefined;
  const b = json as Record<string, unknown>;
  const text = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? String(v) : typeof v === "string" ? v : undefined);
  const transId = text(b.TransID);
  const shortCode = text(b.BusinessShortCode);
  const billRef = b.BillRefNumber === undefined || b.BillRefNumber === null ? "" : text(b.BillRefNumber);
  const type = text(b.TransactionType) ?? "";
  if (!transId || !/^[A-Z0-9]{10}$/.test(transId)) return undefined;
  if (!shortCode || !/^\d{5,7}$/.test(shortCode)) return undefined;
  // A reference typed long (a banking app's free text) is still a payment: kept whole, it names no code and waits in
  // suspense for support. Refused at 40 characters, it was unreadable, and the money had nowhere to go.
  if (billRef === undefined || billRef.length > BILL_REF_MAX || type.length > 40) return undefined;
  if (b.TransAmount === undefined) return undefined;
  return {
    transactionType: type,
    transId,
    transTime: (text(b.TransTime) ?? "").slice(0, 20),
    amountMinor: decimalMinor(b.TransAmount),
    businessShortCode: shortCode,
    billRefNumber: billRef,
    // Bounded: a masked number or a SHA-256 hex is far shorter.
    payer: (text(b.MSISDN) ?? "").slice(0, 128),
  };
}

/**
 * A stored confirmation that is no C2B payment we can read, marked so (too large, or malformed) with support's alert
 * in the same transaction `tx`: M-Pesa does not send it again, and a mark without its alert was a payment nobody
 * would ever look at. Marked once: a second call (reconciliation racing the request) finds it marked and tells no one.
 */
export async function markUnreadableConfirmation(deps: Deps, tx: Queryable, callbackId: string, truncated: boolean): Promise<void> {
  const { rowCount } = await tx.query("UPDATE payment.callbacks SET outcome = $2 WHERE callback_id = $1 AND outcome = 'received'", [callbackId, truncated ? "too_large" : "malformed"]);
  if (!rowCount) return;
  await recordAlert(tx, {
    reason: "UNKNOWN_CALLBACK", action: "flag",
    detail: `paybill confirmation ${callbackId} could not be read (${truncated ? "larger than the limit: its body was not kept" : "not a C2B confirmation: its raw body is kept under that callback id"}): ` +
      "M-Pesa may have received a payment that no record shows; find it on the M-Pesa statement",
  });
  paymentMetrics(deps.ctx.metrics).c2b.inc({ kind: "confirmation", result: "unreadable" });
  deps.ctx.logger.error({ callbackId }, "C2B confirmation that cannot be read; stored raw, support told");
}

/**
 * A confirmation on the secret path from an address outside the callback allow-list: refused (an address is part of
 * what proves M-Pesa sent it), but not silently. Either M-Pesa posts from an address the list lacks, and a payment it
 * will not send again is nobody's, or the path token is known elsewhere. Support is told either way, as for one that
 * cannot be read.
 */
export async function tellOffListConfirmation(deps: Deps, callbackId: string, from: string): Promise<void> {
  paymentMetrics(deps.ctx.metrics).c2b.inc({ kind: "confirmation", result: "rejected_address" });
  deps.ctx.logger.error({ callbackId, from }, "C2B confirmation on the right path from an address outside the allow-list refused; support told");
  await recordAlert(deps.ctx.pool, {
    reason: "UNKNOWN_CALLBACK", action: "flag",
    detail: `paybill confirmation ${callbackId} came on the callback path from ${from}, outside the callback allow-list, and was refused (its raw body is kept): ` +
      "if its TransID is on the M-Pesa statement, M-Pesa posts from an address the list lacks (add it; reverse the payment from the portal); if not, the path token is known elsewhere (register a new one)",
  });
}

/** As typed from a phone keypad or a banking app: case, spaces and dashes do not matter. */
export function normaliseReference(typed: string): string {
  return typed.replace(/[\s-]/g, "").toUpperCase();
}

/** A tip's STK reference: 'T', a sequence number, a check digit (see migration 0004). */
export function tipReferenceValid(ref: string): boolean {
  const m = /^T(\d{6,17})(\d)$/.exec(ref);
  if (!m) return false;
  const w = [1, 3, 7, 9];
  const total = [...m[1]].reduce((sum, d, i) => sum + Number(d) * w[i % 4], 0);
  return total % 10 === Number(m[2]);
}

/** The documented C2B validation result codes. */
export const C2B_RESULT = {
  accepted: { ResultCode: "0", ResultDesc: "Accepted" },
  invalidAccount: { ResultCode: "C2B00012", ResultDesc: "Rejected: invalid account number" },
  invalidAmount: { ResultCode: "C2B00013", ResultDesc: "Rejected: invalid amount" },
  invalidShortCode: { ResultCode: "C2B00015", ResultDesc: "Rejected: invalid short code" },
  other: { ResultCode: "C2B00016", ResultDesc: "Rejected: other error" },
} as const;
export type C2bAnswer = (typeof C2B_RESULT)[keyof typeof C2B_RESULT];

type Target =
  /** paid: the tip already has its money (a new payment to it would be a second one). */
  /** recipientBlocked: auth blocked the tip's worker (payment's copy), which a payment from the menu may be refused for. */
  | { kind: "stk_tip"; tipId: string; paid: boolean; recipientBlocked: boolean }
  /** workerId empty: the venue's pool (a venue's own code). */
  | { kind: "worker"; workerId: string; qrCodeId: string; venueId: string; quote: FeeQuote }
  /** namesNothing: no code or tip has the reference (or there is none), as a receiptless tip's payment may name. */
  | { kind: "suspense"; reason: string; suggestions: string[]; validation: C2bAnswer; namesNothing: boolean };

/**
 * Where a payment belongs. Throws only when a lookup could not be made (the
 * qr service is down): the caller keeps the raw body and tries again later.
 */
async function findTarget(deps: Deps, c2b: C2bConfig, p: C2bPayment, timeoutMs: number): Promise<Target> {
  const suspense = (reason: string, validation: C2bAnswer, suggestions: string[] = [], namesNothing = false): Target => ({ kind: "suspense", reason, suggestions, validation, namesNothing });
  if (!c2b.shortCodes.includes(p.businessShortCode)) return suspense(`paid to short code ${p.businessShortCode}, which is not ours`, C2B_RESULT.invalidShortCode);
  const ref = normaliseReference(p.billRefNumber);
  if (p.amountMinor === undefined) return suspense("TransAmount is not a plain amount", C2B_RESULT.invalidAmount);
  // No money to apply, whatever the reference (M-Pesa moves KES 1 at least): taken as a tip's payment, it would hold
  // the tip for review with nothing received and take the receipt its real payment then finds taken.
  if (p.amountMinor < MPESA_LIMITS.minMinor) return suspense(`an amount of ${p.amountMinor} cents is below KES 1: no payment to apply`, C2B_RESULT.invalidAmount);
  // Whatever the reference, a tip's too: no consumer can pay it (a forged or corrupted confirmation), so it is never money to place.
  if (overCap(p.amountMinor)) return suspense(overCapReason(p.amountMinor), C2B_RESULT.invalidAmount);
  // A tip's own reference first: its amount is checked against the tip (a mismatch is held, not lost). T and seven or
  // more digits: longer than a six-character code, which may also be T and digits (T23456 is a worker's code).
  if (/^T\d{7,}$/.test(ref)) {
    const { rows } = await deps.ctx.pool.query<{ tip_id: string; paid: boolean; blocked: boolean }>(
      `SELECT t.tip_id, t.credit_key IS NOT NULL AS paid, COALESCE(s.account_blocked, false) AS blocked
         FROM payment.tips t LEFT JOIN payment.payout_settings s ON s.worker_id = t.worker_id WHERE t.account_reference = $1`,
      [ref],
    );
    if (rows[0]) return { kind: "stk_tip", tipId: rows[0].tip_id, paid: rows[0].paid, recipientBlocked: rows[0].blocked };
    return suspense(tipReferenceValid(ref) ? `no tip has the reference ${ref}` : `${ref} is not a valid tip reference (check digit wrong: mistyped)`, C2B_RESULT.invalidAccount, [], true);
  }
  const amount = p.amountMinor;
  if (amount === undefined || amount % 100n !== 0n || amount < MPESA_LIMITS.minMinor) return suspense(`the amount is not a whole number of shillings of at least KES 1`, C2B_RESULT.invalidAmount);
  const outlier = deps.config().fraud.outlierMinor;
  if (amount > outlier) return suspense(`KES ${amount / 100n} is over the tip limit of KES ${outlier / 100n}; an admin decides`, C2B_RESULT.invalidAmount);
  if (!ref) return suspense("no account reference (a till payment, or the reference was left empty)", C2B_RESULT.invalidAccount, [], true);
  if (ref.length > 20) return suspense(`reference ${ref.slice(0, 24)}… is longer than any code`, C2B_RESULT.invalidAccount);

  const qr = qrInternalClient(deps.ctx);
  let match;
  try {
    match = await qr.matchAccountReference({ accountReference: ref }, { timeoutMs });
  } catch (err) {
    if (asConnectError(err).code !== Code.NotFound) throw err;
    const suggestions = await qr
      .suggestAccountReferences({ accountReference: ref }, { timeoutMs })
      .then((r) => r.accountReferences, () => [] as string[]);
    const hint = suggestions.length ? `; close to ${suggestions.join(", ")} (not applied: an admin decides)` : "";
    return suspense(`no code has the reference ${ref}${hint}`, C2B_RESULT.invalidAccount, suggestions, true);
  }
  if (match.status !== QrCodeStatus.ACTIVE) {
    const state = match.status === QrCodeStatus.REVOKED ? "revoked" : match.status === QrCodeStatus.ROTATED ? "replaced by a newer code" : "not active";
    return suspense(`code ${ref} is ${state}`, C2B_RESULT.invalidAccount);
  }
  // Refused as a scan of it is (an admin may still match the payment): money must not reach a worker switched off.
  if (match.closedReason) return suspense(`code ${ref} takes no tips: ${match.closedReason}`, C2B_RESULT.invalidAccount);
  // An amount the fee takes whole (KES 1 under a KES 1 minimum fee) credits no one: refused at validation; confirmed
  // (the money taken), parked for support to refund, not retried as a confirmation that failed.
  const quote = await deps.ledger.quoteTip(amount, false).catch((err: unknown) => {
    if (asConnectError(err).code === Code.InvalidArgument) return undefined;
    throw err;
  });
  if (!quote) return suspense(`${formatMoney(amount, "KES")} does not cover the tip's fee: nothing would reach the ${match.workerId ? "worker" : "venue"}; refund it`, C2B_RESULT.invalidAmount);
  // A venue's own code: the tip goes to the venue's pool, as a scanned venue code's STK tip does.
  return { kind: "worker", workerId: match.workerId, qrCodeId: match.qrCodeId, venueId: match.venueId, quote };
}

/**
 * A confirmation above what M-Pesa lets a consumer pay in one transaction (MPESA_LIMITS: KES 250,000, Safaricom's
 * portal) reports money that cannot have moved: parked with nothing posted to suspense, and never matched to a code.
 */
const overCap = (amountMinor: bigint) => amountMinor > MPESA_LIMITS.perTransactionMinor;
/**
 * An amount no M-Pesa payment moves: below KES 1 (whole shillings, KES 1 at least: 1 to 99 cents is as impossible as
 * KES 0) or over its cap. Parked with nothing posted to suspense (nor retried by reconciliation), never matched.
 */
export const neverMoney = (amountMinor: bigint) => amountMinor < MPESA_LIMITS.minMinor || overCap(amountMinor);
/** Why M-Pesa cannot have moved this amount (neverMoney), in support's words; undefined when it can. */
export function neverMoneyWords(amountMinor: bigint): string | undefined {
  if (overCap(amountMinor)) return `over M-Pesa's ${formatMoney(MPESA_LIMITS.perTransactionMinor, "KES")} per transaction`;
  return amountMinor < MPESA_LIMITS.minMinor ? "below the KES 1 M-Pesa moves at least" : undefined;
}
const overCapReason = (amountMinor: bigint) =>
  `OVER M-PESA'S CAP: ${formatMoney(amountMinor, "KES")} is over the ${formatMoney(MPESA_LIMITS.perTransactionMinor, "KES")} a customer can pay in one transaction; ` +
  "not from M-Pesa as told (forged or corrupted): nothing posted, check the receipt with Safaricom";

/**
 * The validation answer, always within the configured budget: a lookup that
 * takes longer is answered "accepted", because refusing would turn a good tip
 * away and a bad reference still lands in suspense at confirmation.
 */
export async function validateC2b(deps: Deps, c2b: C2bConfig, p: C2bPayment): Promise<{ answer: C2bAnswer; why: string }> {
  const budget = c2b.validationBudgetMs;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<{ answer: C2bAnswer; why: string }>((resolve) => {
    timer = setTimeout(() => resolve({ answer: C2B_RESULT.accepted, why: `no decision within ${budget} ms` }), budget);
  });
  const decided = findTarget(deps, c2b, p, Math.max(100, budget - 200)).then(
    (t): { answer: C2bAnswer; why: string } =>
      t.kind === "suspense"
        ? { answer: t.validation, why: t.reason }
        : t.kind === "stk_tip" && t.paid
          ? { answer: C2B_RESULT.invalidAccount, why: "the tip of this reference is already paid" }
          : t.kind === "stk_tip" && t.recipientBlocked
            // As a blocked worker's code is (qr closes it): a failed push's reference, paid from the menu days later,
            // paid the worker blocked since. Only here: a push's own payment, confirmed, is credited (held by the block).
            ? { answer: C2B_RESULT.invalidAccount, why: "the worker of this tip is blocked: not taking tips" }
            : { answer: C2B_RESULT.accepted, why: t.kind === "stk_tip" ? "a tip's reference" : "an active code" },
    (err) => ({ answer: C2B_RESULT.accepted, why: `lookup failed (${(err as Error).message}); confirmation decides` }),
  );
  try {
    return await Promise.race([decided, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Serialises everything done about one receipt (STK callback, query, C2B confirmation), in this order: receipt, then tip.
 * The lock's key is defined once, in SQL (payment.lock_receipt), where receipt_unclaimed takes it too.
 */
export async function lockReceipt(tx: Queryable, receipt: string): Promise<void> {
  await tx.query("SELECT payment.lock_receipt($1)", [receipt]);
}

/**
 * Under the receipt's lock: "repeat" when this confirmation was recorded meanwhile, "duplicate"
 * (recorded against that tip) when a tip already owns the receipt; undefined when it is still new.
 * A duplicate that cannot be M-Pesa's report of the tip's payment (duplicateDoubt) tells support.
 */
async function receiptSettled(tx: Queryable, p: C2bPayment, insertRow: string, row: SuspenseRow): Promise<"repeat" | "duplicate" | undefined> {
  await lockReceipt(tx, p.transId);
  const again = await tx.query("SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1", [p.transId]);
  if (again.rowCount) return "repeat";
  const { rows: [owner] } = await tx.query<{ tip_id: string; paid_minor: bigint }>(
    "SELECT tip_id, COALESCE(received_minor, charged_minor) AS paid_minor FROM payment.tips WHERE mpesa_receipt = $1", [p.transId]);
  if (!owner) return undefined;
  const doubt = duplicateDoubt(p, owner.paid_minor);
  await tx.query(insertRow, row("duplicate", owner.tip_id, doubt));
  if (doubt) await recordAlert(tx, duplicateAlert(p, owner.tip_id, doubt));
  return "duplicate";
}

/**
 * Why a confirmation of the receipt of a tip's payment (recorded as its duplicate, nothing applied) is not M-Pesa's
 * report of that payment: an amount over M-Pesa's cap, or another amount than the tip's payment (one receipt, one
 * amount). Undefined when it may be. Told once: a later one is a repeat of the recorded row.
 */
function duplicateDoubt(p: C2bPayment, paidMinor: bigint): string | undefined {
  const amount = p.amountMinor ?? 0n;
  if (overCap(amount)) return overCapReason(amount);
  if (amount === paidMinor) return undefined;
  return `ANOTHER AMOUNT: ${formatMoney(amount, "KES")}, while the tip's payment with this receipt was ${formatMoney(paidMinor, "KES")}; not from M-Pesa as told`;
}
const duplicateAlert = (p: C2bPayment, tipId: string, doubt: string) => unplacedAlert(p, `recorded as a duplicate of tip ${tipId}'s payment, nothing applied`, doubt, "flag", tipId);

/** Support's alert of a confirmation not placed as a payment: `placed` says what was done with it, `reason` why. */
function unplacedAlert(p: C2bPayment, placed: string, reason: string, action: "hold" | "flag", tipId?: string): AlertInput {
  return { reason: "UNKNOWN_CALLBACK", action, tipId,
    detail: `paybill payment ${p.transId} (${formatMoney(p.amountMinor ?? 0n, "KES")}, reference "${p.billRefNumber.slice(0, 40)}") ${placed}: ${reason}` };
}

/**
 * A confirmation of a receipt already recorded that tells another amount or reference than the one recorded: not
 * M-Pesa's repeat of it (a forged or corrupted one). Nothing is applied, as for any repeat; support is told once
 * per receipt (receipt_alerts): what is recorded does not change, and a sender repeating it would add an alert each time.
 */
async function flagAlteredRepeat(deps: Deps, p: C2bPayment, recorded: { amount_minor: bigint; bill_ref_number: string; tip_id: string | null }): Promise<void> {
  const amount = p.amountMinor ?? 0n;
  if (amount === recorded.amount_minor && normaliseReference(p.billRefNumber) === normaliseReference(recorded.bill_ref_number)) return;
  deps.ctx.logger.error({ receipt: p.transId }, "C2B confirmation of a recorded receipt with another amount or reference");
  await withTransaction(deps.ctx.pool, async (tx) => {
    const first = await tx.query("INSERT INTO payment.receipt_alerts (receipt, kind) VALUES ($1, 'altered_repeat') ON CONFLICT DO NOTHING", [p.transId]);
    if (!first.rowCount) return;
    await recordAlert(tx, {
      reason: "CALLBACK_MISMATCH", action: "flag", tipId: recorded.tip_id ?? undefined,
      detail: `paybill confirmation of ${p.transId} again with another amount or reference (${amount} cents, "${p.billRefNumber.slice(0, 40)}"; recorded: ` +
        `${recorded.amount_minor} cents, "${recorded.bill_ref_number.slice(0, 40)}"): not from M-Pesa as recorded; nothing applied (told once per receipt)`,
    });
  });
}

export type C2bOutcome = "credited" | "stk_tip" | "duplicate" | "suspense" | "repeat" | "held";

/**
 * A confirmation of a receipt already recorded, before it or while it raced the first (it lost the receipt's lock):
 * nothing new, but support is told of an altered one, and what a crash may have left is finished. Undefined when new.
 */
async function answerRepeat(deps: Deps, p: C2bPayment): Promise<{ outcome: "repeat"; tipId?: string } | undefined> {
  const { rows } = await deps.ctx.pool.query<{ tip_id: string | null; amount_minor: bigint; bill_ref_number: string }>(
    "SELECT tip_id, amount_minor, bill_ref_number FROM payment.c2b_payments WHERE trans_id = $1", [p.transId]);
  if (!rows[0]) return undefined;
  await flagAlteredRepeat(deps, p, rows[0]);
  await finishC2b(deps, p.transId);
  return { outcome: "repeat", tipId: rows[0].tip_id ?? undefined };
}

/** Applies a confirmation once per TransID. The raw body is already stored under `callbackId`. */
export async function applyC2bConfirmation(deps: Deps, c2b: C2bConfig, callbackId: string, p: C2bPayment): Promise<{ outcome: C2bOutcome; tipId?: string }> {
  const { pool } = deps.ctx;
  const repeat = await answerRepeat(deps, p);
  if (repeat) return repeat;
  const target = await findTarget(deps, c2b, p, 5_000);
  const row = (outcome: string, tipId: string | null, reason = "", suggestions: string[] = []) =>
    [p.transId, callbackId, p.transactionType, p.businessShortCode, p.billRefNumber, p.amountMinor ?? 0n, p.transTime, outcome, tipId, reason, suggestions,
      outcome === "suspense" ? "open" : "none"];
  const insertRow = `INSERT INTO payment.c2b_payments (trans_id, callback_id, transaction_type, business_short_code, bill_ref_number, amount_minor,
      trans_time, outcome, tip_id, reason, suggestions, resolution) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING`;

  if (target.kind === "stk_tip") {
    // The payment of a pushed tip, reported by C2B too (or instead: its callback may be lost).
    // Recorded with the decision, under the receipt's lock: written after it, the confirmation that lost the lock to
    // another of the same receipt (answered "duplicate") could record the payment first, as a duplicate of itself.
    let recorded = false;
    const result = await applyStkOutcome(deps, target.tipId, { source: "c2b", resultCode: 0, resultDesc: "C2B confirmation", receipt: p.transId, amountMinor: p.amountMinor }, undefined,
      async (tx, decided, tip) => {
        // A second payment for a tip paid by another receipt is parked below. A tip decided without a receipt (an STK
        // query's success) is read here as before the decision gave it this one: its payment, recorded as the tip's.
        if (decided === "duplicate" && paidByAnother(tip, p.transId)) return;
        const doubt = decided === "duplicate" ? duplicateDoubt(p, tip.received_minor ?? tip.charged_minor) : undefined;
        recorded = (await tx.query(insertRow, row(decided === "duplicate" ? "duplicate" : "tip", target.tipId, doubt))).rowCount === 1;
        if (recorded && doubt) await recordAlert(tx, duplicateAlert(p, target.tipId, doubt));
      });
    const tip = (await pool.query<TipRow>("SELECT * FROM payment.tips WHERE tip_id = $1", [target.tipId])).rows[0];
    if (result === "unknown") return parkInSuspense(deps, p, callbackId, insertRow, row, `tip reference ${normaliseReference(p.billRefNumber)} could not be applied`, []);
    if (result === "duplicate" && paidByAnother(tip, p.transId)) {
      // A second payment for a tip already paid (the push and the paybill both paid), or for one rejected after review
      // (its funding payment reopened for support): the money waits in suspense.
      const why = tip.mpesa_receipt ? `already paid by ${tip.mpesa_receipt}` : "rejected after review";
      return parkInSuspense(deps, p, callbackId, insertRow, row, `a second payment for tip reference ${normaliseReference(p.billRefNumber)}, ${why}`, []);
    }
    if (!recorded) return (await answerRepeat(deps, p)) ?? { outcome: "repeat" };
    return { outcome: result === "duplicate" ? "duplicate" : result === "held" ? "held" : "stk_tip", tipId: target.tipId };
  }
  // Only a payment naming nothing we know may be a receiptless tip's: one naming a code (revoked, closed) is a paybill
  // payment of its own, which support must see in suspense.
  if (target.kind === "suspense") return parkInSuspense(deps, p, callbackId, insertRow, row, target.reason, target.suggestions, target.namesNothing);

  // A paybill tip to a worker's code: the same entry an STK tip makes, less the quoted fee.
  const paid = p.amountMinor!;
  const { quote } = target;
  const workerReceives = quote.workerReceives!.amountMinor;
  const tipId = timeOrderedUuid();
  const outcome = await withTransaction(pool, async (tx): Promise<C2bOutcome> => {
    const settled = await receiptSettled(tx, p, insertRow, row);
    if (settled) return settled;
    await insertPaybillTip(tx, { tipId, transId: p.transId, workerId: target.workerId, qrCodeId: target.qrCodeId, venueId: target.venueId,
      paid, workerReceives, feeScheduleVersion: quote.feeScheduleVersion });
    await tx.query(insertRow, row("tip", tipId));
    return "credited";
  });
  if (outcome === "repeat") return (await answerRepeat(deps, p)) ?? { outcome: "repeat" };
  if (outcome !== "credited") return { outcome };
  await postCredit(deps, tipId);
  return { outcome, tipId };
}

/** A tip row for money that has already arrived: succeeded at once, credited by the receipt. */
export async function insertPaybillTip(
  tx: Queryable,
  t: { tipId: string; transId: string; workerId: string; qrCodeId: string; venueId: string; paid: bigint; workerReceives: bigint; feeScheduleVersion: number;
    /** Default: the receipt (credited from M-Pesa clearing by postCredit). */
    creditKey?: string; creditEntryId?: string },
  // workerId empty: a tip to the venue's pool.
): Promise<TipRow> {
  const { rows } = await tx.query<TipRow>(
    `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, venue_id, qr_code_id, currency, amount_minor, fee_minor,
       charged_minor, worker_receives_minor, fee_schedule_version, phone, phone_masked, status, result_code, result_message, callback_token,
       mpesa_receipt, credit_key, credit_kind, credit_entry_id, credited_at, deadline_at, next_check_at, channel, completed_at)
     VALUES ($1, $2, '', $3, $4, $5, 'KES', $6, $7, $6, $8, $9, '', '', 'succeeded', '0', $10, $11, $12, $13,
       CASE WHEN $3::uuid IS NULL THEN 'venue' ELSE 'worker' END, $14,
       CASE WHEN $14::text IS NULL THEN NULL ELSE now() END, now(), now(), 'paybill', now())
     RETURNING *`,
    [t.tipId, `c2b:${t.transId}`, t.workerId || null, t.venueId, t.qrCodeId, t.paid, t.paid - t.workerReceives, t.workerReceives, t.feeScheduleVersion,
      resultMessage("0"), newCallbackToken(), t.transId, t.creditKey ?? t.transId, t.creditEntryId ?? null],
  );
  return rows[0];
}

/**
 * Under the receipt's lock, before parking a payment: when it is the payment of a tip an STK query reported
 * paid without a receipt (receiptless.ts: same amount, the payer's number, soon after the push), it is recorded
 * as that tip's ("duplicate": credited once already, from clearing) and the tip takes its receipt, flagged for
 * support. Parked instead, its match or refund would pay the one payment twice.
 */
async function tiedToReceiptlessTip(tx: Queryable, p: C2bPayment, callbackId: string, insertRow: string, row: SuspenseRow): Promise<boolean> {
  const tip = await receiptlessTipFor(tx, { amountMinor: p.amountMinor!, payer: p.payer, callbackId });
  if (!tip) return false;
  await giveReceipt(tx, tip.tip_id, p.transId);
  const why = `taken as tip ${tip.tip_id}'s payment: an STK query reported it paid without a receipt; same number and amount, soon after its push`;
  await tx.query(insertRow, row("duplicate", tip.tip_id, why));
  await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "flag", tipId: tip.tip_id, workerId: tip.worker_id ?? undefined, phoneMasked: tip.phone_masked, tipAmountMinor: tip.amount_minor,
    detail: `paybill payment ${p.transId} (reference "${p.billRefNumber.slice(0, 40)}") ${why}; not parked in suspense. If they are two payments, ${p.transId} is still in M-Pesa clearing, uncredited` });
  return true;
}

type SuspenseRow = (outcome: string, tipId: string | null, reason?: string, suggestions?: string[]) => unknown[];

async function parkInSuspense(
  deps: Deps,
  p: C2bPayment,
  callbackId: string,
  insertRow: string,
  row: SuspenseRow,
  reason: string,
  suggestions: string[],
  /** A reference that names nothing we know: the payment may be a receiptless tip's (tiedToReceiptlessTip). */
  namesNothing = false,
): Promise<{ outcome: C2bOutcome; tipId?: string }> {
  const mayTie = namesNothing && p.amountMinor !== undefined;
  const outcome = await withTransaction(deps.ctx.pool, async (tx): Promise<C2bOutcome> => {
    // Before the receipt's lock: a query's success deciding the tip meanwhile is waited for (receiptless.ts).
    if (mayTie) await lockTiesOfAmount(tx, p.amountMinor!);
    const settled = await receiptSettled(tx, p, insertRow, row);
    if (settled) return settled;
    if (mayTie && (await tiedToReceiptlessTip(tx, p, callbackId, insertRow, row))) return "duplicate";
    await tx.query(insertRow, row("suspense", null, reason, suggestions));
    await recordAlert(tx, unplacedAlert(p, "parked in suspense", reason, "hold"));
    return "suspense";
  });
  if (outcome === "repeat") return (await answerRepeat(deps, p)) ?? { outcome: "repeat" };
  if (outcome === "suspense") {
    deps.ctx.logger.warn({ receipt: p.transId, reason }, "paybill payment parked in suspense");
    await postSuspense(deps, p.transId);
  }
  return { outcome };
}

/** Moves a suspense payment's money from M-Pesa clearing to suspense, once (the wallet dedupes on the key). */
async function postSuspense(deps: Deps, transId: string): Promise<void> {
  const { rows } = await deps.ctx.pool.query<{ amount_minor: bigint }>(
    "SELECT amount_minor FROM payment.c2b_payments WHERE trans_id = $1 AND outcome = 'suspense' AND suspense_entry_id IS NULL",
    [transId],
  );
  if (!rows[0] || neverMoney(rows[0].amount_minor)) return;
  try {
    const entryId = await deps.ledger.toSuspense({ key: `c2b:${transId}`, receipt: transId, amountMinor: rows[0].amount_minor, description: `Paybill payment ${transId} in suspense` });
    await deps.ctx.pool.query("UPDATE payment.c2b_payments SET suspense_entry_id = $2 WHERE trans_id = $1", [transId, entryId || "posted"]);
  } catch (err) {
    deps.ctx.logger.warn({ receipt: transId, err }, "suspense entry not posted yet; reconciliation will retry");
    await deps.ctx.pool.query("UPDATE payment.c2b_payments SET attempts = attempts + 1 WHERE trans_id = $1", [transId]).catch(() => undefined);
  }
}

/** Finishes the money movement a confirmation decided (after a crash or a wallet outage). */
async function finishC2b(deps: Deps, transId: string): Promise<void> {
  const { rows } = await deps.ctx.pool.query<{ outcome: string; tip_id: string | null }>("SELECT outcome, tip_id FROM payment.c2b_payments WHERE trans_id = $1", [transId]);
  const r = rows[0];
  if (!r) return;
  if (r.outcome === "suspense") await postSuspense(deps, transId);
  else if (r.tip_id) await postCredit(deps, r.tip_id);
}

/**
 * One reconciliation pass: suspense entries not posted yet, and raw
 * confirmations that were stored but never applied (the process died, or a
 * lookup failed), older than a minute. Each the least tried first, then the
 * oldest (0036): one failing every time does not starve the rest.
 */
export async function reconcileC2b(deps: Deps, limit: number): Promise<number> {
  const c2b = deps.config().c2b;
  if (!c2b) return 0;
  const { pool } = deps.ctx;
  const { rows: unposted } = await pool.query<{ trans_id: string }>(
    // Not those of no money (below KES 1, an unreadable amount, over M-Pesa's cap: neverMoney): nothing is ever posted
    // for them, so their attempts never count, and they would take a pass's places ahead of every other for good.
    "SELECT trans_id FROM payment.c2b_payments WHERE outcome = 'suspense' AND suspense_entry_id IS NULL AND amount_minor BETWEEN $2 AND $3 ORDER BY attempts, received_at LIMIT $1",
    [limit, MPESA_LIMITS.minMinor, MPESA_LIMITS.perTransactionMinor],
  );
  for (const r of unposted) await postSuspense(deps, r.trans_id);
  await pruneReceiptless(pool, limit);
  const { rows: raw } = await pool.query<{ callback_id: string; raw_body: Buffer }>(
    `SELECT callback_id, raw_body FROM payment.callbacks WHERE source = 'mpesa_c2b' AND outcome = 'received'
      AND received_at < now() - interval '1 minute' ORDER BY attempts, received_at LIMIT $1`,
    [limit],
  );
  let applied = 0;
  for (const r of raw) {
    let p: C2bPayment | undefined;
    try {
      p = parseC2bPayment(JSON.parse(r.raw_body.toString("utf8")));
    } catch {
      p = undefined;
    }
    try {
      if (!p) {
        // Stored, then the process stopped before it was read: support is told now, with the mark.
        await withTransaction(pool, (tx) => markUnreadableConfirmation(deps, tx, r.callback_id, false));
        continue;
      }
      const result = (await applyC2bConfirmation(deps, c2b, r.callback_id, p)).outcome;
      await pool.query("UPDATE payment.callbacks SET outcome = $2, external_reference = $3, matched = true WHERE callback_id = $1", [r.callback_id, result, p.transId]);
      applied++;
    } catch (err) {
      deps.ctx.logger.warn({ callbackId: r.callback_id, err }, "stored C2B confirmation still cannot be applied; will retry");
      await pool.query("UPDATE payment.callbacks SET attempts = attempts + 1 WHERE callback_id = $1", [r.callback_id]).catch(() => undefined);
    }
  }
  return applied;
}

/**
 * Registers our validation and confirmation URLs for every configured short
 * code. Needs the public base URL; answers what Daraja said per short code.
 */
export async function registerC2bUrls(deps: Deps): Promise<string[]> {
  const config = deps.config();
  const c2b = config.c2b;
  if (!c2b || !config.daraja || !config.callbackBaseUrl) throw new Error("C2B registration needs C2B_URL_TOKEN, DARAJA_BASE_URL and PAYMENT_CALLBACK_BASE_URL");
  const base = `${config.callbackBaseUrl.replace(/\/$/, "")}/c2b/${c2b.pathToken}`;
  const said: string[] = [];
  for (const shortCode of c2b.shortCodes) {
    const r = await deps.daraja().registerC2bUrls({
      version: c2b.registerVersion,
      shortCode,
      responseType: c2b.responseType,
      confirmationUrl: `${base}/confirmation`,
      validationUrl: `${base}/validation`,
    });
    said.push(`${shortCode}: ${r.ResponseDescription}`);
  }
  return said;
}

/**
 * Registers the C2B URLs once this service's public address is known, retrying
 * until Daraja accepts them or the service stops: given up, the paybill's
 * payments would never arrive, so a failure that may pass (no answer, Daraja
 * busy or down, a token refused) is logged and retried. One that can never
 * succeed (a learned address holding a word Safaricom refuses, a request
 * Daraja refused as malformed: a wrong short code, a bad URL) is logged as an
 * error saying what to fix, and not retried.
 */
export async function registerInBackground(deps: Deps, stop: AbortSignal, timing: { firstRetryMs: number; maxRetryMs: number } = C2B_RETRY): Promise<void> {
  const log = deps.ctx.logger;
  const startedAt = Date.now();
  let warnedOfAddress = false;
  let retryInMs = timing.firstRetryMs;
  await pause(50, stop);
  while (!stop.aborted) {
    const base = deps.config().callbackBaseUrl;
    if (!base) {
      if (!warnedOfAddress && Date.now() - startedAt > C2B_ADDRESS_WARN_MS) {
        warnedOfAddress = true;
        log.warn("C2B URLs not registered yet: this service's public address (PAYMENT_CALLBACK_BASE_URL) is still unknown");
      }
      await pause(200, stop);
      continue;
    }
    // An address given at start was checked then (config.ts); one learned since is checked here.
    const word = bannedUrlWord(base);
    if (word) {
      log.error({ word }, `C2B URLs not registered, and not retried: this service's public address holds "${word}", a word Safaricom refuses in registered URLs; set PAYMENT_CALLBACK_BASE_URL to an address without it and restart`);
      return;
    }
    try {
      log.info({ said: await registerC2bUrls(deps) }, "C2B URLs registered");
      return;
    } catch (err) {
      if (neverRegisters(err)) {
        log.error({ err: (err as Error).message, httpStatus: (err as DarajaError).details.httpStatus, errorCode: (err as DarajaError).details.errorCode },
          "C2B URLs not registered, and not retried: Daraja refused the request itself (check C2B_SHORT_CODES, the URLs and the credentials' product), then restart");
        return;
      }
      log.warn({ err: (err as Error).message, retryInMs }, "C2B URL registration failed; retrying");
      await pause(retryInMs, stop);
      retryInMs = Math.min(retryInMs * 2, timing.maxRetryMs);
    }
  }
}

/**
 * A refusal the same request would get again: Daraja answered 4xx (not a
 * refused or expired token, a timeout or a rate limit, which pass), or the
 * client refused to send it (no HTTP status: a URL with a refused word).
 */
function neverRegisters(err: unknown): err is DarajaError {
  if (!(err instanceof DarajaError) || err.kind !== "rejected") return false;
  const status = err.details.httpStatus;
  return status === undefined || (status >= 400 && status < 500 && !PASSING_STATUSES.has(status));
}
const PASSING_STATUSES = new Set([401, 408, 429]);

const C2B_RETRY = { firstRetryMs: 5_000, maxRetryMs: 60_000 };
const C2B_ADDRESS_WARN_MS = 30_000;
const pause = (ms: number, signal: AbortSignal) => sleep(ms, undefined, { signal }).catch(() => undefined);

export interface C2bRow {
  trans_id: string;
  callback_id: string;
  business_short_code: string;
  bill_ref_number: string;
  amount_minor: bigint;
  outcome: string;
  tip_id: string | null;
  reason: string;
  suggestions: string[];
  suspense_entry_id: string | null;
  resolution: "none" | "open" | "matched" | "refund";
  resolved_by: string;
  resolved_at: Date | null;
  received_at: Date;
  /** A match's quote, kept from its first attempt (matchQuote); null until a match is tried. */
  match_worker_minor: bigint | null;
  match_fee_schedule_version: number | null;
  /** Which key a match posts under and a refund closes (matchKey); moved on when a rejection reopened the payment (0023). */
  match_round: number;
  /** The round whose match key a refund closed (0026); null unless refunded by a replica that names it. */
  refund_round: number | null;
}

/**
 * What a match of this payment pays the worker, and under which fee schedule: quoted at the first
 * attempt and kept with the payment, so that a match again (its answer lost after wallet posted
 * it) builds the very entry the first posted under the match's key, and is answered as it. Quoted
 * anew, a fee schedule changed meanwhile would build another entry, which wallet refuses under
 * that key: the worker credited, the payment open for good (a refund is refused too).
 */
async function matchQuote(deps: Deps, row: C2bRow): Promise<{ workerReceives: bigint; feeScheduleVersion: number }> {
  const kept = (r: Pick<C2bRow, "match_worker_minor" | "match_fee_schedule_version">) =>
    r.match_worker_minor === null || r.match_fee_schedule_version === null ? undefined : { workerReceives: r.match_worker_minor, feeScheduleVersion: r.match_fee_schedule_version };
  const first = kept(row);
  if (first) return first;
  const quote = await deps.ledger.quoteTip(row.amount_minor, false);
  // Two matches quoting at once: the first to write keeps its quote, and both use it (the second's update sees the first's row).
  const { rows } = await deps.ctx.pool.query<Pick<C2bRow, "match_worker_minor" | "match_fee_schedule_version">>(
    `UPDATE payment.c2b_payments SET match_worker_minor = COALESCE(match_worker_minor, $2), match_fee_schedule_version = COALESCE(match_fee_schedule_version, $3)
      WHERE trans_id = $1 RETURNING match_worker_minor, match_fee_schedule_version`,
    [row.trans_id, quote.workerReceives!.amountMinor, quote.feeScheduleVersion],
  );
  return kept(rows[0])!;
}

/** The key a suspense payment's match posts its wallet entry under (and its refund closes), in its round (C2bRow.match_round). */
const matchKey = (transId: string, round: number) => (round === 0 ? `c2b:${transId}:matched` : `c2b:${transId}:matched:${round}`);

/**
 * The match round of a paybill payment parked in suspense while it funds the held tip `tipId`; undefined once it
 * does not (the tip's rejection reopened it, into the next round once it closed this one's key). Read without a
 * lock, after the tip's decision was taken: the round of a payment reopened meanwhile is no longer this tip's, and
 * closing its key would refuse support's match of the reopened payment as if a code's owner had been credited.
 */
async function fundingRound(db: Queryable, transId: string, tipId: string): Promise<number | undefined> {
  const { rows } = await db.query<{ match_round: number }>(
    "SELECT match_round FROM payment.c2b_payments WHERE trans_id = $1 AND outcome = 'suspense' AND resolution = 'matched' AND tip_id = $2", [transId, tipId]);
  return rows[0]?.match_round;
}

/**
 * Before a held tip's approval moves a suspense payment's money to it (a tip whose STK callback
 * came after its C2B confirmation was parked: heldByC2bSuspense), closes that payment's match
 * key, as a refund does. An admin's match posted under it (its answer lost, or still being
 * recorded when the callback marked the payment) already moved that money to its code's owner:
 * the approval is refused, or the money would be credited twice. A match on its way can no
 * longer post. Any other tip: nothing to close.
 */
export async function closeSuspenseMatch(deps: Deps, tip: Pick<TipRow, "tip_id" | "credit_kind" | "credit_key" | "mpesa_receipt">): Promise<void> {
  const receipt = suspenseFunding(tip);
  if (!receipt) return;
  // The round is the payment's while it funds this tip: only this tip's rejection moves it on, after closing the tip's
  // approval key (the approval is refused there) and this round's match key (closed again here: the same close).
  const round = await fundingRound(deps.ctx.pool, receipt, tip.tip_id);
  if (round === undefined) throw new InvalidStateError("tip_id: the tip was reviewed meanwhile");
  await deps.ledger.closeApproval(matchKey(receipt, round), { cause: { case: "mpesaReceipt", value: receipt } }, "KES",
    `tip_id: an admin's match of its paybill payment ${receipt} was posted (its code's owner was credited): approving would pay it twice; reject this tip, ` +
    "then match the payment again to that code to record its tip");
}

/**
 * What became of a held tip's receipt when it is a paybill payment parked in suspense that support refunded
 * ("refunded"), or that funds another tip ("paid_elsewhere"); undefined otherwise. A tip an STK query reported
 * paid without a receipt is held when such a payment fits it (receiptless.ts: TieDoubt); its callback arriving
 * late with that very receipt says it was that payment, whose money is spent. The receipt is the tip's own, or
 * one its late callback named (spent_receipt_flags): a receipt another tip holds cannot be recorded on it.
 */
export async function spentReceiptOf(db: Queryable, tip: Pick<TipRow, "tip_id" | "mpesa_receipt">): Promise<"refunded" | "paid_elsewhere" | undefined> {
  // Not one M-Pesa cannot have moved (over its cap, below KES 1: neverMoney): no money, so its closing by support refunded none.
  const { rows } = await db.query<{ resolution: string }>(
    `SELECT resolution FROM payment.c2b_payments
      WHERE (trans_id = $1 OR trans_id IN (SELECT receipt FROM payment.spent_receipt_flags WHERE tip_id = $2)) AND outcome = 'suspense' AND amount_minor BETWEEN $4 AND $3
        AND (resolution = 'refund' OR (resolution = 'matched' AND tip_id IS DISTINCT FROM $2)) LIMIT 1`,
    [tip.mpesa_receipt, tip.tip_id, MPESA_LIMITS.perTransactionMinor, MPESA_LIMITS.minMinor],
  );
  return rows[0] ? (rows[0].resolution === "refund" ? "refunded" : "paid_elsewhere") : undefined;
}

/**
 * Before a held tip's approval, under the tip's row lock (a late callback records its receipt under it): refused
 * when its receipt's money is spent (spentReceiptOf): approved, it would be paid twice. Refused too when it is
 * funded by a paybill payment parked in suspense (heldByC2bSuspense) whose move into suspense is not posted: one
 * over M-Pesa's cap or below KES 1 (neverMoney: held so before such payments were told apart) never will be, and
 * one whose parking the wallet did not answer is not yet (postFundingSuspense tries it first). Approved, it would
 * pay out money suspense does not hold, taking suspense below zero.
 */
export async function refuseSpentReceiptApproval(tx: Queryable, tip: Pick<TipRow, "tip_id" | "mpesa_receipt" | "credit_kind" | "credit_key">): Promise<void> {
  const spent = await spentReceiptOf(tx, tip);
  if (spent) throw spentApprovalRefusal(spent);
  const receipt = suspenseFunding(tip);
  const { rows: [funding] } = receipt
    ? await tx.query<{ amount_minor: bigint; suspense_entry_id: string | null }>("SELECT amount_minor, suspense_entry_id FROM payment.c2b_payments WHERE trans_id = $1", [receipt])
    : { rows: [] };
  if (!funding || funding.suspense_entry_id) return;
  const from = `tip_id: its money was to come from paybill payment ${receipt}, whose ${formatMoney(funding.amount_minor, "KES")}`;
  const never = neverMoneyWords(funding.amount_minor);
  if (never) throw new InvalidStateError(`${from} is ${never}: nothing was posted to suspense for it; reject this tip and check the receipt with Safaricom`);
  throw new InvalidStateError(`${from} is not in suspense yet (the wallet did not answer when it was parked): approved now, suspense would pay out money ` +
    "it does not hold; try again shortly");
}

/**
 * Before a held tip's approval, outside any transaction: the move into suspense of the paybill payment funding it
 * (heldByC2bSuspense), posted now when its parking could not (the wallet did not answer) and reconciliation has not
 * yet. Still unposted, the claim refuses the approval (refuseSpentReceiptApproval).
 */
export async function postFundingSuspense(deps: Deps, tip: Pick<TipRow, "credit_kind" | "credit_key" | "mpesa_receipt">): Promise<void> {
  const receipt = suspenseFunding(tip);
  if (receipt) await postSuspense(deps, receipt);
}

/** The refusal of a held tip's approval whose receipt's money is spent (spentReceiptOf). */
export function spentApprovalRefusal(spent: "refunded" | "paid_elsewhere"): InvalidStateError {
  const fate = spent === "refunded" ? "was refunded to the customer by support" : "was credited as another tip";
  return new InvalidStateError(`tip_id: its receipt is a paybill payment that ${fate}: approving would pay it twice; reject this tip`);
}

/**
 * A held tip just rejected whose receipt's money is spent (spentReceiptOf): its customer reads why (refunded, or
 * credited as another tip), not that the payment will be refunded, which support might then do a second time.
 */
export async function rejectedAsSpent(tx: Queryable, tip: TipRow, spent: "refunded" | "paid_elsewhere"): Promise<TipRow> {
  const { rows } = await tx.query<TipRow>("UPDATE payment.tips SET result_code = $2, result_message = $3 WHERE tip_id = $1 RETURNING *", [tip.tip_id, spent, resultMessage(spent)]);
  return rows[0];
}

/**
 * A held tip rejected as spent (rejectedAsSpent) whose hold moved its amount from M-Pesa clearing to suspense (an STK
 * query's success that no parked payment could fund: decideSuccess) was that spent payment: its money reached clearing
 * once, went to suspense under its own receipt and out again by support's refund or match. The hold's entry stood for
 * a second payment that never came, so it is reversed (suspense back to clearing, the same amount), between the
 * rejection's claim and its record (rejections.ts): a rejection that fails after it is finished under the same key,
 * which posts it once. Nothing for a tip funded by a parked payment: its hold posted nothing from clearing.
 */
export async function reverseSpentHold(deps: Deps, tip: Pick<TipRow, "tip_id" | "credit_kind" | "credit_key" | "credit_entry_id" | "mpesa_receipt" | "received_minor" | "charged_minor">): Promise<void> {
  if (tip.credit_kind !== "suspense" || !tip.credit_key || !tip.credit_entry_id || suspenseFunding(tip)) return;
  await deps.ledger.suspenseToClearing({
    key: `${tip.credit_key}:spent`, receipt: tip.credit_key, amountMinor: tip.received_minor ?? tip.charged_minor,
    description: `Tip ${tip.tip_id} rejected: its hold was the payment support had already placed`,
  });
}

/**
 * Before a held tip's rejection, for a tip funded by a paybill payment parked in suspense: closes the payment's
 * match key of its round (as the approval does first), and answers the round when the key holds that close
 * alone, so that the reopened payment matches under the next round's key. A failed approval closed the key
 * already: reopened in the same round, the payment could only be refunded (a match refused as if an earlier
 * match had paid a code's owner). Undefined when an admin's match was posted under it (its answer lost: the
 * payment stays in its round, where a match to that code finishes it) and for any other tip.
 */
export async function closeMatchBeforeReopen(deps: Deps, tip: Pick<TipRow, "tip_id" | "credit_kind" | "credit_key" | "mpesa_receipt">): Promise<number | undefined> {
  const receipt = suspenseFunding(tip);
  if (!receipt) return undefined;
  // Reopened by another rejection of this tip meanwhile: its round is not this tip's to close (this rejection ends nothing).
  const round = await fundingRound(deps.ctx.pool, receipt, tip.tip_id);
  if (round === undefined) return undefined;
  try {
    await deps.ledger.closeApproval(matchKey(receipt, round), { cause: { case: "mpesaReceipt", value: receipt } });
    return round;
  } catch (err) {
    if (asConnectError(err).code === Code.FailedPrecondition) return undefined;
    throw err;
  }
}

/** The paybill payment parked in suspense whose money a held tip waits for (heldByC2bSuspense); undefined for any other tip. */
function suspenseFunding(tip: Pick<TipRow, "credit_kind" | "credit_key" | "mpesa_receipt">): string | undefined {
  const receipt = tip.mpesa_receipt;
  return tip.credit_kind === "suspense" && receipt && tip.credit_key === `c2b:${receipt}` ? receipt : undefined;
}

/**
 * Before a held tip's rejection ends it, in its transaction: the receipt's lock of the paybill payment
 * funding it, if any, taken before the tip's row as every decision about a receipt takes them.
 */
export async function lockFundingReceipt(tx: Queryable, tip: Pick<TipRow, "credit_kind" | "credit_key" | "mpesa_receipt">): Promise<void> {
  const receipt = suspenseFunding(tip);
  if (receipt) await lockReceipt(tx, receipt);
}

/**
 * A tip decided before this payment came, whose money is not this payment: paid by another receipt, or rejected after
 * review (credited once, then failed: its funding payment reopened for support, its receipt cleared). Not a tip
 * decided by a query's success without a receipt, which this payment is.
 */
function paidByAnother(tip: TipRow, receipt: string): boolean {
  return tip.mpesa_receipt ? tip.mpesa_receipt !== receipt : tip.status === "failed";
}

/**
 * A held tip funded by a paybill payment parked in suspense, just rejected (its approval's key closed,
 * lockFundingReceipt held): the payment goes back to support's open list, to refund or match, and the
 * tip gives its receipt back, which a match's paybill tip takes. Reopened rather than refunded here: a
 * refund closes the match's key, refused when an admin's match already paid a code's owner (its answer
 * lost), so the rejection could not finish, and marked refunded the payment would read as owed back to
 * the customer though its money went to that worker. Open, support's decision goes through the key that
 * makes it once: after such a match a refund is refused and a match to that code finishes it, recording
 * its tip; otherwise a refund or a match, as for any payment in suspense. The rejected tip can no longer
 * move it (its approval's key is closed). Answers the tip as it is after; undefined for any other tip.
 */
export async function reopenFundingPayment(tx: Queryable, tip: TipRow, closedRound: number | undefined): Promise<TipRow | undefined> {
  const receipt = suspenseFunding(tip);
  if (!receipt) return undefined;
  // The next round only after the close of this one (closeMatchBeforeReopen): nothing can post under it any more.
  const { rowCount } = await tx.query(
    `UPDATE payment.c2b_payments SET resolution = 'open', tip_id = NULL, resolved_by = '', resolved_at = NULL,
       match_round = CASE WHEN match_round = $3 THEN match_round + 1 ELSE match_round END,
       reason = reason || ' | reopened: tip ' || $2 || ' it was held for was rejected after review'
      WHERE trans_id = $1 AND outcome = 'suspense' AND resolution = 'matched' AND tip_id = $2`,
    [receipt, tip.tip_id, closedRound ?? null],
  );
  if (!rowCount) return undefined;
  // The customer's words say what now happens to the payment: support refunds it or matches it to a code.
  const { rows } = await tx.query<TipRow>("UPDATE payment.tips SET mpesa_receipt = NULL, result_code = $2, result_message = $3 WHERE tip_id = $1 RETURNING *",
    [tip.tip_id, "review_rejected_reopened", resultMessage("review_rejected_reopened")]);
  return rows[0];
}

/** The code an admin's match names (qr keeps the references), whatever its status. */
async function matchOf(deps: Deps, ref: string) {
  try {
    return await qrInternalClient(deps.ctx).matchAccountReference({ accountReference: ref }, { timeoutMs: 5_000 });
  } catch (err) {
    const e = asConnectError(err);
    if (e.code === Code.NotFound) throw new NotFoundError(`match_account_reference: no code has the reference ${ref}`);
    if (e.code === Code.InvalidArgument) throw fieldError("match_account_reference", `qr refuses the reference ${JSON.stringify(ref)}: ${e.rawMessage}`);
    throw new DependencyUnavailableError(`match_account_reference: cannot be checked now (${e.rawMessage})`);
  }
}

/**
 * The payment's suspense entry posted, if not yet (postSuspense): a match or a reversal takes the money out of
 * suspense, so it must be in first. UNAVAILABLE, to retry, while the wallet has not posted it.
 */
async function ensureInSuspense(deps: Deps, row: C2bRow): Promise<void> {
  if (row.suspense_entry_id) return;
  await postSuspense(deps, row.trans_id);
  const { rowCount } = await deps.ctx.pool.query("SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1 AND suspense_entry_id IS NOT NULL", [row.trans_id]);
  if (!rowCount) throw new DependencyUnavailableError("receipt: the suspense entry is not recorded yet; try again shortly");
}

/**
 * A refund asked again: a reversal M-Pesa refused (its money back in suspense) is tried again, once however many
 * ask at once; one on its way is followed. A refund recorded before reversals were sent (reversed by hand on
 * M-Pesa's portal, its money left in suspense) is reversed now: M-Pesa answers one made by hand "reversed already",
 * and either way the money leaves suspense.
 */
async function refundAgain(deps: Deps, row: C2bRow, input: { admin: string; note: string; record: (tx: Queryable, refunded: boolean) => Promise<void> }): Promise<void> {
  if (!reversesOnRefund(deps, row)) return;
  const last = await suspenseReversalOf(deps.ctx.pool, row.trans_id);
  if (!last || last.status === "failed") {
    await ensureInSuspense(deps, row);
    // Audited as the refund it carries out, once per reversal made (a retry finding it made records nothing).
    await withTransaction(deps.ctx.pool, async (tx) => {
      if (await claimSuspenseReversal(tx, row, { requestedBy: input.admin, reason: input.note })) await input.record(tx, true);
    });
  }
  await reverseRefundedPayment(deps, row.trans_id);
}

/** The tip a query credited from clearing whose callback then named this receipt (its money is the worker's already). */
async function receiptHolder(db: Queryable, receipt: string): Promise<string | undefined> {
  const { rows } = await db.query<{ tip_id: string }>("SELECT tip_id FROM payment.tips WHERE mpesa_receipt = $1 AND credit_key LIKE 'stk-%'", [receipt]);
  return rows[0]?.tip_id;
}

const paidAsTip = (receipt: string, tipId: string) =>
  new InvalidStateError(`receipt: ${receipt} is tip ${tipId}'s payment (its callback named it after a query had credited the tip): `
    + "its money here was posted twice, and the worker has it; nothing to refund or match; nothing changed");

/**
 * An admin's decision on a payment in suspense: credit the worker of a code
 * (from suspense, less the fee, as a paybill tip) or leave it for a refund.
 * Repeating the same decision answers the same; another one is refused.
 */
export async function resolveSuspense(
  deps: Deps,
  input: {
    receipt: string; matchAccountReference?: string; refund?: boolean; note: string; admin: string;
    /** Records the admin's decision in the transaction that applies it (once: a repeat records nothing). */
    record: (tx: Queryable, refunded: boolean) => Promise<void>;
  },
): Promise<{ row: C2bRow; tip?: TipRow }> {
  const { pool } = deps.ctx;
  const load = async (db: Queryable, lock = false) =>
    (await db.query<C2bRow>(`SELECT * FROM payment.c2b_payments WHERE trans_id = $1 AND outcome = 'suspense'${lock ? " FOR UPDATE" : ""}`, [input.receipt])).rows[0];
  const row = await load(pool);
  if (!row) throw new NotFoundError("receipt: no paybill payment in suspense has this receipt");
  const tipOf = async (r: C2bRow) => (r.tip_id ? (await pool.query<TipRow>("SELECT * FROM payment.tips WHERE tip_id = $1", [r.tip_id])).rows[0] : undefined);
  /**
   * The decision recorded, when it is the one asked (a repeat): a refund, or a match to the code
   * `matchedCode` (qr's id of the reference asked). A match to another code is another decision.
   */
  const settled = async (r: C2bRow, matchedCode?: string) => {
    const tip = await tipOf(r);
    const same = input.refund ? r.resolution === "refund" : r.resolution === "matched" && tip?.channel === "paybill" && tip.qr_code_id === matchedCode;
    if (!same) throw new InvalidStateError(`receipt: already resolved (${r.resolution}${r.resolved_by ? ` by ${r.resolved_by}` : ""})`);
    if (input.refund) await refundAgain(deps, r, input);
    return { row: r, tip };
  };
  const ref = normaliseReference(input.matchAccountReference ?? "");
  // " - " passes the contract's length and is nothing once read as a reference: the admin's mistake, not an outage.
  if (!input.refund && !ref) throw fieldError("match_account_reference", "names no code once spaces and punctuation are taken out; type the code or reference from the card");
  if (row.resolution !== "open") {
    // A match again is answered with the one recorded only if it names the same code (qr says which).
    const asked = !input.refund && row.resolution === "matched" ? (await matchOf(deps, ref)).qrCodeId : undefined;
    return settled(row, asked);
  }
  // A tip credited from clearing (a query's success) whose callback then named this payment: the worker has its money.
  // Refunded, the customer would have it too; matched, the worker twice (and the tip's receipt refused the paybill tip).
  const holder = await receiptHolder(pool, row.trans_id);
  if (holder) throw paidAsTip(row.trans_id, holder);

  if (input.refund) {
    // Its money is taken out of suspense by the reversal: in suspense first, as a match needs it.
    const reverses = reversesOnRefund(deps, row);
    if (reverses) await ensureInSuspense(deps, row);
    // A match posts under this key before it records itself: one posted (its answer lost, or another
    // admin's match still recording) refuses the refund; one on its way can no longer post.
    await deps.ledger.closeApproval(matchKey(row.trans_id, row.match_round), { cause: { case: "mpesaReceipt", value: row.trans_id } }, "KES",
      "receipt: a match of this payment was posted (its answer was lost, or another admin's is being recorded); match it again to finish it");
    const refunded = await withTransaction(pool, async (tx) => {
      // The receipt's lock, as every decision about it takes: an STK callback deciding the payment's tip read it
      // open at its start and holds its tip from suspense; a refund committed under it would be missed, and the
      // tip credited from clearing as well.
      await lockReceipt(tx, input.receipt);
      // A late callback may have named it for a query's tip since the check above (the customer would have it back too).
      const taken = await receiptHolder(tx, input.receipt);
      if (taken) throw paidAsTip(input.receipt, taken);
      // In the round whose key it closed: a payment reopened meanwhile is matched under the next round's key. Naming
      // the round (refund_round) lets the database refuse an older replica's refund, which closes round 0's key only (0026).
      const { rows } = await tx.query<C2bRow>(
        `UPDATE payment.c2b_payments SET resolution = 'refund', resolved_by = $2, resolved_at = now(), reason = reason || ' | refund: ' || $3, refund_round = $4
          WHERE trans_id = $1 AND resolution = 'open' AND match_round = $4 RETURNING *`,
        [input.receipt, input.admin, input.note, row.match_round],
      );
      if (rows[0]) await input.record(tx, true);
      if (rows[0] && reverses) await claimSuspenseReversal(tx, rows[0], { requestedBy: input.admin, reason: input.note });
      return rows[0];
    });
    if (refunded) {
      await reverseRefundedPayment(deps, input.receipt);
      return { row: refunded };
    }
    const now = (await load(pool))!;
    if (now.resolution === "open") throw new ConcurrentChangeError("receipt: the payment was reopened while this refund was being decided; decide again");
    return settled(now);
  }

  // Its suspense entry is never posted (postSuspense): "try again" below would never pass.
  if (row.amount_minor < MPESA_LIMITS.minMinor) {
    throw new InvalidStateError(`receipt: the payment carries no money (${formatMoney(row.amount_minor, "KES")}, below the KES 1 M-Pesa moves at least): nothing to match; refund (close) it instead`);
  }
  if (overCap(row.amount_minor)) {
    throw new InvalidStateError(`receipt: its amount (${formatMoney(row.amount_minor, "KES")}) is over M-Pesa's ${formatMoney(MPESA_LIMITS.perTransactionMinor, "KES")} per transaction: ` +
      "no customer can have paid it, so it is not matched; check the receipt with Safaricom, then refund (close) it");
  }
  const match = await matchOf(deps, ref);
  refuseOwnAccount(input.admin, match.workerId, "match_account_reference");
  // Whatever the code's status: the admin decided, and the money has already moved. A venue's code credits its pool.
  const recipient = match.workerId ? { workerId: match.workerId } : { venueId: match.venueId };
  await ensureInSuspense(deps, row);

  const { workerReceives, feeScheduleVersion } = await matchQuote(deps, row);
  const creditKey = matchKey(row.trans_id, row.match_round);
  // The receipt's lock held across the wallet call: a late STK callback naming this payment for a tip a query credited
  // would otherwise give that tip the receipt between the check above and the record below, after this match credited
  // the code's worker (the payment paid twice, the paybill tip refused its receipt). It waits, and is flagged as paid twice.
  const result = await withTransaction(pool, async (tx) => {
    await lockReceipt(tx, row.trans_id);
    const current = await load(tx, true);
    if (!current || current.resolution !== "open") return undefined;
    const taken = await receiptHolder(tx, row.trans_id);
    if (taken) throw paidAsTip(row.trans_id, taken);
    // The wallet first (idempotent on its key), then the tip that records it.
    let entryId: string;
    try {
      entryId = await deps.ledger.releaseFromSuspense({ key: creditKey, receipt: row.trans_id, recipient, chargedMinor: row.amount_minor, workerMinor: workerReceives });
    } catch (err) {
      if (asConnectError(err).code !== Code.AlreadyExists) throw err;
      // The key holds another entry: a refund that closed it (and waits for this lock to record itself), or an earlier match.
      return "taken" as const;
    }
    const tip = await insertPaybillTip(tx, { tipId: timeOrderedUuid(), transId: row.trans_id, workerId: match.workerId, qrCodeId: match.qrCodeId, venueId: match.venueId,
      paid: row.amount_minor, workerReceives, feeScheduleVersion, creditKey, creditEntryId: entryId || "posted" });
    const { rows } = await tx.query<C2bRow>(
      "UPDATE payment.c2b_payments SET resolution = 'matched', tip_id = $2, resolved_by = $3, resolved_at = now(), reason = reason || ' | matched to ' || $4 || ': ' || $5 WHERE trans_id = $1 RETURNING *",
      [row.trans_id, tip.tip_id, input.admin, ref, input.note],
    );
    await input.record(tx, false);
    await emitTipSucceeded(tx, tip);
    return { row: rows[0], tip };
  });
  if (result === "taken") return settled(await decidedElsewhere(async () => (await load(pool))!), match.qrCodeId);
  if (!result) return settled((await load(pool))!, match.qrCodeId);
  runAfterCredit(deps, result.tip);
  return result;
}

/**
 * After a match found its key taken: the payment as the other decision left it. A refund closed the key and records
 * itself once the match let the receipt go; its record is waited for a moment, and its outcome is the answer.
 */
async function decidedElsewhere(read: () => Promise<C2bRow>): Promise<C2bRow> {
  for (let tries = 0; tries < 10; tries++) {
    const now = await read();
    if (now.resolution !== "open") return now;
    await sleep(100);
  }
  // Not "nothing was credited": after an earlier match whose answer was lost, that code's worker has the money, and only a
  // match to it finishes the payment (a refund is refused): told otherwise, support might refund the customer by hand.
  throw new InvalidStateError("receipt: another decision on this payment reached the wallet first: a refund being recorded, or an earlier match whose answer was lost (its code's owner was credited: match that code again to finish it); this match credited nothing");
}
