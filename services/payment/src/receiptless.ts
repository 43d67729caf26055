// An STK query's success carries no receipt. When a push's callback is lost and M-Pesa's C2B
// confirmation of the same payment names nothing we know (an old-style or unknown reference),
// the one payment arrives twice without a shared key: parked in suspense by C2B, and reported
// paid by the query. Credited from clearing as well, a later match or refund of the parked
// payment would pay it twice. Here the two are tied by what both know: the amount, the payer's
// number (masked or hashed by C2B) and the time, each tie recorded under the receipt's lock.
import { createHash } from "node:crypto";
import type { Queryable } from "@ttip/runtime";

/**
 * How long after a push its payment's C2B confirmation may arrive and still be taken for it: an STK
 * prompt lives about a minute and M-Pesa confirms within seconds; a quarter of an hour leaves room
 * for a slow delivery while keeping a coincidence (the same number paying the same amount again
 * with a reference we do not know) unlikely.
 */
export const TIE_WINDOW = "15 minutes";

/** How many payments or tips one tie looks at: the same number and amount in one window is rare. */
const TIE_CANDIDATES = 8;

/** How long a receiptless tip stays findable: past the window, with room for a confirmation applied late. */
const RECEIPTLESS_KEPT = "1 day";

/**
 * Whether C2B's MSISDN can be the tip's number (digits, 2547XXXXXXXX): masked in v2 ("2547 ***** 126":
 * its visible digits), SHA-256 hex in v1 (equal), in clear before those (equal). Anything else fits
 * nothing: no tie is made.
 */
export function payerFits(msisdn: string, phone: string): boolean {
  const m = msisdn.trim();
  if (/^[0-9a-f]{64}$/i.test(m)) return createHash("sha256").update(phone).digest("hex") === m.toLowerCase();
  if (/^\d{9,15}$/.test(m)) return m === phone;
  const masked = /^(\d{3,})\s*\*+\s*(\d{2,})$/.exec(m);
  return masked !== null && phone.length > masked[1].length + masked[2].length && phone.startsWith(masked[1]) && phone.endsWith(masked[2]);
}

/** The MSISDN of a stored C2B confirmation's raw body ("" when unreadable). */
function payerOf(rawBody: Buffer): string {
  try {
    const v = (JSON.parse(rawBody.toString("utf8")) as Record<string, unknown>).MSISDN;
    return typeof v === "string" ? v : typeof v === "number" ? String(v) : "";
  } catch {
    return "";
  }
}

/** A parked payment that fits a tip an STK query reports paid: its receipt, and whether support has left it open. */
export interface ParkedFit {
  receipt: string;
  /** "refund" or "matched" (by support): its money is spent. */
  resolution: "open" | "matched" | "refund";
}

/**
 * For a tip an STK query reports paid: a paybill payment parked in suspense that may be its payment by
 * amount, payer and time, an open one first (the earliest), undefined when none fits. A fit is a guess: the
 * same number may pay the same amount again with a reference we do not know. Only an open one is tied
 * (its money moves once, to the tip or by support); one support already refunded or matched cannot fund the
 * tip, and cannot be told from a second payment, so the caller holds the tip for review rather than fail it
 * (a coincidence would leave its own payment in clearing) or credit it (the same payment would pay twice).
 * Read before any lock: the caller takes the receipt's lock, then reads what became of it. Payments tied to
 * another STK tip are not candidates.
 */
export async function parkedPaymentFor(db: Queryable, tipId: string): Promise<ParkedFit | undefined> {
  const { rows } = await db.query<{ trans_id: string; raw_body: Buffer; phone: string; resolution: ParkedFit["resolution"] }>(
    `SELECT c.trans_id, cb.raw_body, t.phone, c.resolution FROM payment.tips t
       JOIN payment.c2b_payments c ON c.outcome = 'suspense' AND c.received_at >= t.created_at AND c.amount_minor = t.charged_minor
       JOIN payment.callbacks cb ON cb.callback_id = c.callback_id
      WHERE t.tip_id = $1 AND t.method = 'mpesa' AND cb.received_at >= t.created_at AND cb.received_at < t.created_at + $2::interval
        AND c.resolution <> 'none' AND NOT (c.resolution = 'matched' AND c.resolved_by IN ('stk-callback', 'stk-query'))
      ORDER BY c.resolution <> 'open', cb.received_at LIMIT $3`,
    [tipId, TIE_WINDOW, TIE_CANDIDATES],
  );
  const fit = rows.find((r) => payerFits(payerOf(r.raw_body), r.phone));
  return fit && { receipt: fit.trans_id, resolution: fit.resolution };
}

/** Under the receipt's lock: the other STK tip the parked payment was tied to since parkedPaymentFor read it, if any. */
export async function tiedToAnotherTip(tx: Queryable, receipt: string, tipId: string): Promise<string | undefined> {
  const { rows } = await tx.query<{ tip_id: string }>(
    "SELECT tip_id FROM payment.c2b_payments WHERE trans_id = $1 AND resolution = 'matched' AND resolved_by IN ('stk-callback', 'stk-query') AND tip_id <> $2",
    [receipt, tipId],
  );
  return rows[0]?.tip_id;
}

/**
 * Why a parked payment that fits a query's success cannot be tied to it: support refunded it
 * ("refunded"), matched it to a code ("paid_elsewhere"), or another tip took it meanwhile (its id).
 * Either it was this tip's payment, whose money is spent, or a second payment, and the tip's own
 * is still in M-Pesa clearing: nothing tells which, so the tip is held for review.
 */
export interface TieDoubt {
  receipt: string;
  fate: "refunded" | "paid_elsewhere" | { takenBy: string };
}

/** The words of a TieDoubt's alert, for the admin who reviews the tip. */
export function tieDoubtWords(d: TieDoubt): string {
  const fate = d.fate === "refunded" ? "was refunded to the customer by support" : d.fate === "paid_elsewhere" ? "was matched to a code by support" : `was taken by tip ${d.fate.takenBy} meanwhile`;
  return `an STK query reported this tip paid but gave no receipt; paybill payment ${d.receipt}, parked in suspense, came from the same number for the same amount soon after the push and ${fate}. ` +
    `If it was this tip's payment, reject this tip (its money is spent); if they are two payments, approve it (this tip's money came from M-Pesa clearing into suspense)`;
}

/**
 * Both sides of a tie take this lock first, keyed by the amount: a query's success and a confirmation
 * naming nothing, decided at once, would each miss the other's uncommitted row (the tip listed, the
 * payment parked), and the one payment be credited from clearing and parked in suspense as well. Taken
 * before the receipt's lock on both sides (one order: no deadlock); held to the end of the transaction.
 */
const TIE_LOCK = "pg_advisory_xact_lock(hashtext('receiptless-tie:' || ";

/** The tie lock of a paybill confirmation naming nothing, by its amount. */
export async function lockTiesOfAmount(tx: Queryable, amountMinor: bigint): Promise<void> {
  await tx.query(`SELECT ${TIE_LOCK}$1::bigint::text))`, [amountMinor]);
}

/** The tie lock of a tip an STK query reports paid, by the amount charged (one statement). */
export async function lockTiesOfTip(tx: Queryable, tipId: string): Promise<void> {
  await tx.query(`SELECT ${TIE_LOCK}charged_minor::text)) FROM payment.tips WHERE tip_id = $1`, [tipId]);
}

/** A tip just decided by a query's success, without a receipt: findable by its payment's C2B confirmation (receiptlessTipFor). */
export async function rememberReceiptless(tx: Queryable, tip: { tip_id: string; charged_minor: bigint; created_at: Date }): Promise<void> {
  await tx.query("INSERT INTO payment.receiptless_tips (tip_id, charged_minor, pushed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", [tip.tip_id, tip.charged_minor, tip.created_at]);
}

export interface ReceiptlessTip {
  tip_id: string;
  worker_id: string | null;
  phone_masked: string;
  amount_minor: bigint;
}

/**
 * For a paybill confirmation about to be parked in suspense (its receipt's lock held): the tip an STK
 * query reported paid without a receipt that this payment is, by amount, payer and the time its raw
 * confirmation arrived (`callbackId`); the earliest pushed, locked. Undefined when none fits. Never a failed
 * tip (a held one rejected without a receipt): recorded as its payment, the money would be credited to no one.
 */
export async function receiptlessTipFor(tx: Queryable, p: { amountMinor: bigint; payer: string; callbackId: string }): Promise<ReceiptlessTip | undefined> {
  if (!p.payer) return undefined;
  const { rows } = await tx.query<ReceiptlessTip & { phone: string }>(
    `SELECT t.tip_id, t.worker_id, t.phone_masked, t.amount_minor, t.phone FROM payment.receiptless_tips r
       JOIN payment.tips t ON t.tip_id = r.tip_id
       JOIN payment.callbacks cb ON cb.callback_id = $2
      WHERE r.charged_minor = $1 AND r.pushed_at <= cb.received_at AND cb.received_at < r.pushed_at + $3::interval AND t.mpesa_receipt IS NULL
        AND t.status <> 'failed'
      ORDER BY r.pushed_at LIMIT $4 FOR UPDATE OF t`,
    [p.amountMinor, p.callbackId, TIE_WINDOW, TIE_CANDIDATES],
  );
  const tip = rows.find((r) => payerFits(p.payer, r.phone));
  if (!tip) return undefined;
  const { phone: _phone, ...found } = tip;
  return found;
}

/** Ties a receiptless tip to the paybill payment it is: the tip takes the receipt and leaves the list. */
export async function giveReceipt(tx: Queryable, tipId: string, receipt: string): Promise<void> {
  await tx.query("UPDATE payment.tips SET mpesa_receipt = $2 WHERE tip_id = $1 AND mpesa_receipt IS NULL", [tipId, receipt]);
  await tx.query("DELETE FROM payment.receiptless_tips WHERE tip_id = $1", [tipId]);
}

/** Forgets receiptless tips past any confirmation's reach (RECEIPTLESS_KEPT), `limit` at a time. */
export async function pruneReceiptless(db: Queryable, limit: number): Promise<void> {
  await db.query(
    `DELETE FROM payment.receiptless_tips WHERE tip_id IN (
       SELECT tip_id FROM payment.receiptless_tips WHERE pushed_at < now() - $1::interval LIMIT $2)`,
    [RECEIPTLESS_KEPT, limit],
  );
}
