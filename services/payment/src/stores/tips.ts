// Tips as workers and the admin console read them, their feedback, and an admin's moves; the payment flow's own statements live in tips.ts.
// A row becomes the domain's Tip here, through tipOf only; the flow in tips.ts (and cards/) keeps its rows.
import type { MoneyAmount, Queryable } from "@ttip/runtime";
import type { CardColumns } from "../cards/convert.js";
import { loadTip, type TipRow, type TipStatusCode } from "../tips.js";
import type { Cursor, PageRow } from "./page.js";
import { commonFilters, searchPage, workerPage, type CommonSearch } from "./search.js";

export type TipMethod = TipRow["method"];
export type TipChannel = TipRow["channel"];
export type CardTipState = CardColumns["card_state"];

/** What a card tip adds: its provider's payment, the exchange into the wallet, and what happened after. */
export interface CardTipPart {
  provider: "stripe" | "paypal";
  providerPaymentId: string | null;
  fxRate: string | null;
  fxRateSource: string | null;
  fxRateTime: Date | null;
  /** Where the customer confirms with their bank while the tip is pending; empty otherwise. */
  nextActionUrl: string;
  state: CardTipState;
  refunded: MoneyAmount;
}

/**
 * A tip as the handlers read it. The paying phone number stays behind in the row:
 * nothing read from here shows more than its masked form.
 */
export interface Tip {
  tipId: string;
  /** Null for a tip to a venue's pool (venueId is then set). */
  workerId: string | null;
  venueId: string;
  qrCodeId: string;
  /** Who created it: a user's or a partner key's id; "" when anonymous. */
  customerSubject: string;
  method: TipMethod;
  channel: TipChannel;
  amount: MoneyAmount;
  fee: MoneyAmount;
  charged: MoneyAmount;
  /** In the wallet's currency (a card tip may be paid in another). */
  workerReceives: MoneyAmount;
  /** What M-Pesa reported taking when it differed from `charged` (held in suspense); null otherwise. */
  received: MoneyAmount | null;
  phoneMasked: string;
  customerEmail: string | null;
  rating: number;
  message: string;
  ratedAt: Date | null;
  status: TipStatusCode;
  resultCode: string;
  resultMessage: string;
  checkoutRequestId: string | null;
  mpesaReceipt: string | null;
  /** The paybill account a customer pays to from the M-Pesa menu; null when C2B is not offered for it. */
  accountReference: string | null;
  creditKind: TipRow["credit_kind"];
  creditEntryId: string | null;
  /** Null for an M-Pesa tip. */
  card: CardTipPart | null;
  /** An M-Pesa tip's reversal and what it gives back; null for a card tip. */
  mpesaReversal: { state: TipRow["mpesa_reversal"]; refunded: MoneyAmount } | null;
  createdAt: Date;
  completedAt: Date | null;
}

/** A tip with its keyset position in a page. */
export type PagedTip = Tip & { pageAt: string };

/** The one mapping from a row to the domain's Tip. */
export function tipOf(r: TipRow): Tip {
  const money = (amountMinor: bigint | string) => ({ currency: r.currency, amountMinor: BigInt(amountMinor) });
  const c = r as TipRow & Partial<CardColumns>;
  const card = r.method === "card";
  return {
    tipId: r.tip_id,
    workerId: r.worker_id,
    venueId: r.venue_id,
    qrCodeId: r.qr_code_id,
    customerSubject: r.customer_subject,
    method: r.method,
    channel: r.channel ?? "web",
    amount: money(r.amount_minor),
    fee: money(r.fee_minor),
    charged: money(r.charged_minor),
    workerReceives: { currency: (card && c.wallet_currency) || r.currency, amountMinor: BigInt(r.worker_receives_minor) },
    received: r.received_minor === null || r.received_minor === undefined ? null : money(r.received_minor),
    phoneMasked: r.phone_masked,
    customerEmail: r.customer_email ?? null,
    rating: r.rating,
    message: r.message,
    ratedAt: r.rated_at ?? null,
    status: r.status,
    resultCode: r.result_code,
    resultMessage: r.result_message,
    checkoutRequestId: r.checkout_request_id ?? null,
    mpesaReceipt: r.mpesa_receipt ?? null,
    accountReference: r.account_reference ?? null,
    creditKind: r.credit_kind ?? null,
    creditEntryId: r.credit_entry_id ?? null,
    card: card
      ? {
          provider: c.card_provider === "paypal" ? "paypal" : "stripe",
          providerPaymentId: c.provider_payment_id ?? null,
          fxRate: c.fx_rate ?? null,
          fxRateSource: c.fx_rate_source ?? null,
          fxRateTime: c.fx_rate_time ?? null,
          nextActionUrl: c.next_action_url ?? "",
          state: c.card_state ?? "none",
          refunded: money(c.refunded_minor ?? 0n),
        }
      : null,
    mpesaReversal: card ? null : { state: r.mpesa_reversal ?? "none", refunded: money(c.refunded_minor ?? 0n) },
    createdAt: r.created_at,
    completedAt: r.completed_at,
  };
}

function pagedTipOf(r: PageRow<TipRow>): PagedTip {
  return { ...tipOf(r), pageAt: r.page_at };
}

/** A tip by id, read with the flow's own statement. */
export async function tipById(db: Queryable, tipId: string): Promise<Tip | undefined> {
  const row = await loadTip(db, tipId);
  return row && tipOf(row);
}

/**
 * The keys of the wallet entries that took a tip's money back or gave it back, by the keys their flows post under
 * (mpesa-reversals.ts, cards/aftercare.ts; a held hold that was a spent payment, c2b.ts' reverseSpentHold): the
 * console reads them from the ledger. At most 50: a tip has a handful.
 */
export async function reversalEntryKeys(db: Queryable, tipId: string): Promise<string[]> {
  const { rows } = await db.query<{ key: string }>(
    `SELECT key FROM (
        SELECT created_at AS at, unnest(ARRAY['mpesa-reversal:' || reversal_id, 'mpesa-reversal-undo:' || reversal_id]) AS key FROM payment.mpesa_reversals WHERE tip_id = $1
        UNION ALL
        SELECT created_at, unnest(ARRAY['card-refund:' || refund_id, 'card-refund-undo:' || refund_id, 'card-dispute-lost-share:' || refund_id]) FROM payment.card_refunds WHERE tip_id = $1
        UNION ALL
        SELECT created_at, unnest(ARRAY['card-dispute-hold:' || dispute_id, 'card-dispute-lost:' || dispute_id, 'card-dispute-won:' || dispute_id]) FROM payment.card_disputes WHERE tip_id = $1
        UNION ALL
        SELECT created_at, credit_key || ':spent' FROM payment.tips WHERE tip_id = $1 AND credit_kind = 'suspense' AND credit_key IS NOT NULL
      ) k ORDER BY at LIMIT 50`,
    [tipId]);
  return rows.map((r) => r.key);
}

export interface TipSearch extends CommonSearch {
  /** "mpesa" or "card"; undefined for any (null matches none). */
  method?: string | null;
}

export async function searchTips(db: Queryable, s: TipSearch, cursor: Cursor, limit: number): Promise<PagedTip[]> {
  const f = commonFilters(s);
  if (s.method !== undefined) f.add("method = ?", s.method);
  return (await searchPage<TipRow>(db, "tips", "tip_id", f, cursor, limit)).map(pagedTipOf);
}

/** A worker's tips, filtered by status code (null = any), newest first. */
export async function workerTips(db: Queryable, workerId: string, status: string | null | undefined, cursor: Cursor, limit: number): Promise<PagedTip[]> {
  return (await workerPage<TipRow>(db, "tips", "tip_id", workerId, status, cursor, limit)).map(pagedTipOf);
}

/**
 * Takes the customer's feedback on a tip that went through, once; undefined when it did not go through or was rated
 * before: by RateTip, or with the tip itself (a partner's CreateTip, a card tip), which sets no rated_at.
 */
export async function rateTip(db: Queryable, tipId: string, rating: number, message: string): Promise<Tip | undefined> {
  const { rows } = await db.query<TipRow>(
    `UPDATE payment.tips SET rating = $2, message = $3, rated_at = now()
      WHERE tip_id = $1 AND status = 'succeeded' AND rated_at IS NULL AND rating = 0 RETURNING *`,
    [tipId, rating, message],
  );
  return rows[0] && tipOf(rows[0]);
}

/** An admin's re-query: due now on the service's clock (`now`: the one the reconciler's pass reads), for it to lease and settle. */
export async function makeTipDue(tx: Queryable, tipId: string, now: Date): Promise<void> {
  await tx.query("UPDATE payment.tips SET next_check_at = $2::timestamptz - interval '1 second' WHERE tip_id = $1 AND status = 'pending'", [tipId, now]);
}

/** When the lease a reconciliation pass holds on the pending tip ends; undefined when no pass holds it. */
export async function pendingTipLeasedUntil(db: Queryable, tipId: string): Promise<Date | undefined> {
  const { rows } = await db.query<{ lease_until: Date }>(
    "SELECT lease_until FROM payment.tips WHERE tip_id = $1 AND status = 'pending' AND lease_until > now()", [tipId]);
  return rows[0]?.lease_until;
}

/** An admin's review of an M-Pesa tip held for review: it succeeds (with what the worker receives) or fails. */
export interface ReviewOutcome {
  approve: boolean;
  /** The customer's words for the outcome. */
  resultMessage: string;
  /** What the worker receives when approved. */
  workerMinor: bigint;
}

/** Ends a held tip; undefined when it is no longer held (reviewed meanwhile). Inside the caller's transaction. */
export async function endHeldTip(tx: Queryable, tipId: string, o: ReviewOutcome): Promise<TipRow | undefined> {
  const { rows } = await tx.query<TipRow>(
    `UPDATE payment.tips SET status = $2, result_code = CASE WHEN $3 THEN result_code ELSE 'review_rejected' END,
       result_message = $4, worker_receives_minor = CASE WHEN $3 THEN $5 ELSE worker_receives_minor END, review_claimed_at = NULL
      WHERE tip_id = $1 AND status = 'held_for_review' RETURNING *`,
    [tipId, o.approve ? "succeeded" : "failed", o.approve, o.resultMessage, o.workerMinor],
  );
  return rows[0];
}
