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

/**
 * For a tip an STK query reports paid: the receipt of a paybill payment parked in suspense that is its
 * payment by amount, payer and time (the earliest), undefined when none fits. Read before any lock: the
 * caller takes the receipt's lock, then reads what became of it (open, refunded, matched by support, or
 * tied to another tip meanwhile). Payments tied to another STK tip are not candidates.
 */
export async function parkedPaymentFor(db: Queryable, tipId: string): Promise<string | undefined> {
  const { rows } = await db.query<{ trans_id: string; raw_body: Buffer; phone: string }>(
    `SELECT c.trans_id, cb.raw_body, t.phone FROM payment.tips t
       JOIN payment.c2b_payments c ON c.outcome = 'suspense' AND c.received_at >= t.created_at AND c.amount_minor = t.charged_minor
       JOIN payment.callbacks cb ON cb.callback_id = c.callback_id
      WHERE t.tip_id = $1 AND t.method = 'mpesa' AND cb.received_at >= t.created_at AND cb.received_at < t.created_at + $2::interval
        AND c.resolution <> 'none' AND NOT (c.resolution = 'matched' AND c.resolved_by IN ('stk-callback', 'stk-query'))
      ORDER BY cb.received_at LIMIT $3`,
    [tipId, TIE_WINDOW, TIE_CANDIDATES],
  );
  return rows.find((r) => payerFits(payerOf(r.raw_body), r.phone))?.trans_id;
}

/** Under the receipt's lock: whether the parked payment was tied to another STK tip since parkedPaymentFor read it. */
export async function tiedToAnotherTip(tx: Queryable, receipt: string, tipId: string): Promise<boolean> {
  const { rows } = await tx.query(
    "SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1 AND resolution = 'matched' AND resolved_by IN ('stk-callback', 'stk-query') AND tip_id <> $2",
    [receipt, tipId],
  );
  return rows.length > 0;
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
 * confirmation arrived (`callbackId`); the earliest pushed, locked. Undefined when none fits.
 */
export async function receiptlessTipFor(tx: Queryable, p: { amountMinor: bigint; payer: string; callbackId: string }): Promise<ReceiptlessTip | undefined> {
  if (!p.payer) return undefined;
  const { rows } = await tx.query<ReceiptlessTip & { phone: string }>(
    `SELECT t.tip_id, t.worker_id, t.phone_masked, t.amount_minor, t.phone FROM payment.receiptless_tips r
       JOIN payment.tips t ON t.tip_id = r.tip_id
       JOIN payment.callbacks cb ON cb.callback_id = $2
      WHERE r.charged_minor = $1 AND r.pushed_at <= cb.received_at AND cb.received_at < r.pushed_at + $3::interval AND t.mpesa_receipt IS NULL
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
