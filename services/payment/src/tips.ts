// Tip attempts by STK push: creation, applying Daraja's outcome exactly once
// (callback or query, in any order, any number of times), and crediting the
// wallet once per payment.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { asConnectError, buildEvent, clockOf, currentTraceparent, emitEvent, fieldError, formatMoney, IdempotencyConflictError, InvalidStateError, lockForTransaction, maskPhone, MPESA_LIMITS, NotConfiguredError, type Queryable, type ServiceContext, timeOrderedUuid, withTransaction, writeOutbox } from "@ttip/runtime";
import { EventMetaSchema, PaymentMethod, TipFailedSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { MoneySchema } from "@ttip/proto/ttip/common/v1/money_pb.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { FeeQuote } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { callbackUrl } from "./callback-paths.js";
import { storeCheckoutIds } from "./checkout-ids.js";
import { storeStkFailure, storeStkSuccess } from "./stk-callbacks.js";
import { placeTip, placement, type TipTerms } from "./tip-placements.js";
import type { ChangeFeed } from "./changes.js";
import { mpesaCallbackBase, type PaymentConfig } from "./config.js";
import { DarajaError, type DarajaClient } from "./daraja/client.js";
import { judgeTip, recordAlert, refusal, TIP_FACTS_SQL, tipFactsColumns, tipFactsParams, type TipFacts, type TipPrecheck } from "./fraud.js";
import { closeSuspenseAlerts } from "./stores/fraud-alerts.js";
import { requeryFailure, waitBrieflyForLocks } from "./requery-lock.js";
import type { Ledger } from "./ledger.js";
import { resultMessage } from "./messages.js";
import { kes } from "./money.js";
import { lockReceipt, neverMoneyWords, reconcileC2b } from "./c2b.js";
import { lockTiesOfTip, type ParkedFit, parkedPaymentFor, rememberReceiptless, type TieDoubt, tieDoubtWords, tiedToAnotherTip } from "./receiptless.js";
import { paymentMetrics } from "./metrics.js";
import { oweReceipt, sendOwedReceipts, sendReceipts } from "./receipts.js";
import type { PayoutSettings } from "./stores/payout-settings.js";
import { postCredit } from "./credits.js";
import type { CardHub } from "./cards/hub.js";

export type TipStatusCode = "pending" | "succeeded" | "failed" | "expired" | "held_for_review";

export interface TipRow {
  tip_id: string;
  idempotency_key: string;
  request_fingerprint: string;
  /** Null for a tip to a venue's pool (venue_id is then set). */
  worker_id: string | null;
  /** Who created it: a user's or a partner key's id; "" when anonymous. */
  customer_subject: string;
  venue_id: string;
  qr_code_id: string;
  currency: string;
  amount_minor: bigint;
  fee_minor: bigint;
  charged_minor: bigint;
  worker_receives_minor: bigint;
  /** What M-Pesa reported taking when it differed from charged_minor (the amount held in suspense). */
  received_minor: bigint | null;
  phone: string;
  phone_masked: string;
  rating: number;
  message: string;
  rated_at: Date | null;
  status: TipStatusCode;
  fraud_action: string;
  result_code: string;
  result_message: string;
  callback_token: string;
  checkout_request_id: string | null;
  mpesa_receipt: string | null;
  method: "mpesa" | "card";
  credit_key: string | null;
  credit_kind: "worker" | "venue" | "suspense" | null;
  credit_entry_id: string | null;
  account_reference: string | null;
  channel: "web" | "ussd" | "paybill";
  customer_email: string | null;
  /** The language the customer tipped in on the web, for the receipt ("" when none was given). */
  locale?: string;
  deadline_at: Date;
  checks: number;
  created_at: Date;
  completed_at: Date | null;
  /** Set while a held tip is being approved: the receipt its approval's wallet entry names (0028). */
  approval_receipt: string | null;
  /** A tip announced failed whose money came after all: when that failure was decided, and its code (0059). */
  replaced_failure_at: Date | null;
  replaced_failure_code: string | null;
  /** An M-Pesa tip's reversal as Tip.mpesa_reversal shows it (mpesa-reversals.ts; 0060). */
  mpesa_reversal: "none" | "pending" | "reversed" | "failed";
}

/**
 * SET items a success writes into its UPDATE of a tip (read from the row before it): a tip that had failed or
 * expired keeps when and why, for its tip_succeeded (tipSucceededEvent) to take that failure back.
 */
export const KEEP_REPLACED_FAILURE =
  "replaced_failure_at = CASE WHEN status IN ('failed', 'expired') THEN completed_at END, " +
  "replaced_failure_code = CASE WHEN status IN ('failed', 'expired') THEN result_code END";

export interface Deps {
  ctx: ServiceContext;
  config: () => PaymentConfig;
  daraja: () => DarajaClient;
  ledger: Ledger;
  /** Wakes WatchTip/WatchPayout streams: this replica's at once, the others' through the bus. */
  changes: ChangeFeed;
  /**
   * Called after a tip's money reached the worker's wallet (automatic payout); runs in the background.
   * `settings`: the worker's payout settings when the credit read them (null: the worker has none);
   * `checkAt`: the reconciliation's look at the automatic payout its recording marked, for the start to settle.
   */
  afterCredit?: (tip: TipRow, settings?: PayoutSettings | null, checkAt?: Date) => Promise<void>;
  /** Background work the module waits for when it stops. */
  background: Set<Promise<unknown>>;
  /** Card providers and the card side of the ledger (cards/). */
  cards?: CardHub;
}

export interface NewTip {
  idempotencyKey: string;
  /** Empty for a tip to a venue's pool. */
  workerId: string;
  /** Set when the tip came from a scanned code; alone (no worker), the tip goes to the venue's pool. */
  venueId?: string;
  qrCodeId?: string;
  amountMinor: bigint;
  phone: string;
  customerCoversFee: boolean;
  rating: number;
  message: string;
  customerEmail: string;
  callerSubject?: string;
  /** "web" (default) or "ussd". */
  channel?: "web" | "ussd";
  /** The customer's language for the receipt ("" for English; a USSD tip's is its session's). */
  locale?: string;
}

/**
 * Every column of payment.tips by name, for the statements each tip makes: a
 * statement whose result says `*` goes unprepared (see the runtime's db.ts), so
 * PostgreSQL would parse and plan it on every call.
 */
export const TIP_COLUMNS =
  "tip_id, idempotency_key, request_fingerprint, worker_id, venue_id, qr_code_id, customer_subject, method, currency, amount_minor, fee_minor, charged_minor, " +
  "worker_receives_minor, fee_schedule_version, customer_covers_fee, phone, phone_masked, rating, message, customer_email, status, fraud_action, result_code, " +
  "result_message, callback_token, merchant_request_id, checkout_request_id, mpesa_receipt, credit_key, credit_kind, credit_entry_id, credited_at, deadline_at, " +
  "next_check_at, checks, lease_until, auto_payout_done, created_at, completed_at, account_reference, channel, card_provider, provider_payment_id, " +
  "provider_charge_id, platform_fee_minor, processing_fee_minor, worker_share_minor, wallet_currency, fx_rate, fx_rate_source, fx_rate_time, customer_country, " +
  "card_fingerprint, card_country, next_action_url, card_state, refunded_minor, reversed_wallet_minor, rated_at, received_minor, approval_receipt, locale, " +
  "replaced_failure_at, replaced_failure_code, mpesa_reversal";
/** TIP_COLUMNS of the row aliased `t`. */
export const TIP_COLUMNS_OF_T = TIP_COLUMNS.split(", ").map((c) => `t.${c}`).join(", ");

export async function loadTip(db: Queryable, tipId: string): Promise<TipRow | undefined> {
  const { rows } = await db.query<TipRow>(`SELECT ${TIP_COLUMNS} FROM payment.tips WHERE tip_id = $1`, [tipId]);
  return rows[0];
}

function fingerprint(t: NewTip): string {
  return createHash("sha256")
    .update(JSON.stringify([t.workerId || `venue:${t.venueId ?? ""}`, t.qrCodeId ?? "", String(t.amountMinor), t.phone, t.customerCoversFee, t.rating, t.message]))
    .digest("hex");
}

/**
 * Idempotent per key: the same key returns the same tip; another tip under it is ALREADY_EXISTS.
 * The usual tip (a new key, no rule firing) costs the wallet's quote and one
 * statement: the fraud rules, the key and the insert with its event.
 */
export async function createTip(deps: Deps, t: NewTip): Promise<TipRow> {
  const { pool } = deps.ctx;
  if (!t.workerId && !t.venueId) throw fieldError("recipient", "name a worker or scan a code");
  const fp = fingerprint(t);
  const config = deps.config();
  const phoneMasked = maskPhone(t.phone);
  // Without M-Pesa or a quote nothing can be pushed: the answer is still a replay's tip, or a refusal, before the reason.
  const unplaced = async (reason: Error): Promise<TipRow> => {
    const facts = tipFactsParams(config.fraud, t, { idempotencyKey: t.idempotencyKey, ruleLimitSeconds: RULE_LIMIT_WINDOW_SECONDS });
    const { rows } = await pool.query<TipFacts & TipRow>(`WITH ${TIP_FACTS_SQL} SELECT ${tipFactsColumns("j")}, ${TIP_COLUMNS_OF_T}
       FROM judged j LEFT JOIN payment.tips t ON t.idempotency_key = $4`, facts);
    return settle(deps, t, fp, phoneMasked, judgeTip(config.fraud, t, rows[0]), rows[0].tip_id ? rows[0] : undefined, () => {
      throw reason;
    });
  };
  const callbackBase = mpesaCallbackBase(config);
  if (!callbackBase) {
    return unplaced(new NotConfiguredError("M-Pesa is not configured on this deployment (DARAJA_BASE_URL, PAYMENT_CALLBACK_BASE_URL)"));
  }
  let quote: FeeQuote;
  try {
    // A venue tip is quoted like a worker's (the fee schedule is the same), into the pool's KES.
    quote = await deps.ledger.quoteTip(t.amountMinor, t.customerCoversFee);
  } catch (err) {
    return unplaced(asConnectError(err, Code.Unavailable));
  }
  // M-Pesa charges whole shillings: a fractional fee is rounded up, the cents go to the fee.
  const charged = ((quote.customerPays!.amountMinor + 99n) / 100n) * 100n;
  // A tip within M-Pesa's limit whose covered fee takes the charge past it: M-Pesa would refuse the push.
  if (charged > MPESA_LIMITS.perTransactionMinor) {
    return unplaced(fieldError("amount", `with the fee covered M-Pesa would be asked for ${formatMoney(charged, "KES")}, over its ${formatMoney(MPESA_LIMITS.perTransactionMinor, "KES")} per transaction`));
  }
  // In time order, so payment.tips_pkey grows at its end: a random id lands on a leaf that, on a
  // grown table, is written whole to the WAL after each checkpoint.
  const terms: TipTerms = { tipId: timeOrderedUuid(), fp, charged, quote, phoneMasked, config, clock: clockOf(deps.ctx) };
  const tip = placement(t, terms);
  // With the other tips placed meanwhile: one statement and one commit for the group.
  let placed = await placeTip(pool, tip, false);
  if (!placed.row && placed.check.hits.length && !refusal(placed.check.hits)) {
    // Rules that hold (none refusing) fired: the tip goes in held, with its alerts, in one transaction.
    placed = await withTransaction(pool, async (tx) => {
      // Each held tip comes here in a transaction of its own, beside the others: without the number's lock, twenty
      // at once each counted the others as not there yet, and all passed a limit of five prompts to one phone.
      await lockForTransaction(tx, `tip-phone:${t.phone}`);
      const again = await placeTip(tx, tip, true);
      if (again.row?.tip_id === terms.tipId) {
        for (const h of again.check.hits) await recordAlert(tx, { ...h, tipId: terms.tipId, workerId: t.workerId || undefined, phoneMasked, tipAmountMinor: t.amountMinor });
      }
      return again;
    });
  }
  const { check, row } = placed;
  if (row?.tip_id === terms.tipId) {
    paymentMetrics(deps.ctx.metrics).tips.inc({ status: "created", method: "mpesa" });
    return pushStk(deps, row, charged, callbackBase);
  }
  return settle(deps, t, fp, phoneMasked, check, row, () => refuseRuleLimitedRepeat(check.ruleLimited, charged));
}

/**
 * A CreateTip that inserted nothing, in the order it is answered: a replay's
 * tip, a refusal (its alerts stored), `otherwise` (a reason to refuse), else the
 * tip a concurrent call with the same key inserted.
 */
async function settle(deps: Deps, t: NewTip, fp: string, phoneMasked: string, check: TipPrecheck, existing: TipRow | undefined, otherwise: () => void): Promise<TipRow> {
  const { pool } = deps.ctx;
  if (existing) return sameRequest(existing, fp, t.callerSubject);
  const refused = refusal(check.hits);
  if (refused) {
    await withTransaction(pool, async (tx) => {
      for (const h of check.hits) await recordAlert(tx, { ...h, workerId: t.workerId || undefined, phoneMasked });
    });
    throw refused;
  }
  otherwise();
  // A concurrent call with the same key won.
  const { rows } = await pool.query<TipRow>(`SELECT ${TIP_COLUMNS} FROM payment.tips WHERE idempotency_key = $1`, [t.idempotencyKey]);
  assert.ok(rows[0], "a tip that lost its key's race finds the winner's");
  return sameRequest(rows[0], fp, t.callerSubject);
}

/** Sends the STK push of a tip just inserted; answers the row as it is after (a callback may already have settled it). */
async function pushStk(deps: Deps, inserted: TipRow, charged: bigint, callbackBaseUrl: string): Promise<TipRow> {
  const tipId = inserted.tip_id;
  // The push happens outside any transaction: its callback may arrive before it returns.
  try {
    const r = await deps.daraja().stkPush({
      phone: inserted.phone,
      amount: Number(charged / 100n),
      callbackUrl: callbackUrl(callbackBaseUrl, "stk", inserted.callback_token),
      // Unique per tip: a C2B confirmation of this payment names the tip by it.
      accountReference: inserted.account_reference ?? "TTIP",
      description: "Tip",
    });
    const row = await recordCheckout(deps, tipId, r.CheckoutRequestID, r.MerchantRequestID);
    // The row as it is now (a callback may already have settled it): no second read needed,
    // here nor by the customer's WatchTip that follows.
    if (row) {
      deps.changes.offer(tipId, row);
      return row;
    }
    deps.ctx.logger.error({ tipId }, "STK push answered with a CheckoutRequestID other than its callback's");
  } catch (err) {
    if (!(err instanceof DarajaError)) throw err;
    if (err.kind === "unknown") {
      // It may have gone out: the callback (found by its token) or the deadline settles it.
      deps.ctx.logger.warn({ tipId, err }, "STK push unanswered; left pending for its callback or expiry");
    } else {
      deps.ctx.logger.warn({ tipId, err }, "STK push refused");
      await failTip(deps, tipId, err.details.errorCode ?? "unavailable", pushRefusalMessage(err));
    }
  }
  return (await loadTip(deps.ctx.pool, tipId))!;
}

/**
 * Stores the push's CheckoutRequestID, the only handle an STK query accepts: if
 * the callback is lost, it is how reconciliation finds out the customer paid.
 * The push has gone out, so a database that is down (a restart, a failover) is
 * waited for rather than given up on at once.
 */
async function recordCheckout(deps: Deps, tipId: string, checkoutRequestId: string, merchantRequestId: string): Promise<TipRow | undefined> {
  const deadline = Date.now() + CHECKOUT_RECORD_PATIENCE_MS;
  for (let wait = 100; ; wait = Math.min(wait * 2, 2_000)) {
    try {
      // With the other pushes answered meanwhile: one statement and one commit for the group.
      return await storeCheckoutIds(deps.ctx.pool, { tipId, checkoutRequestId, merchantRequestId });
    } catch (err) {
      if (Date.now() + wait > deadline) {
        deps.ctx.logger.error({ tipId, err }, "STK push sent but its CheckoutRequestID could not be stored");
        throw err;
      }
      deps.ctx.logger.warn({ tipId, err: (err as Error).message }, "storing the CheckoutRequestID failed; retrying");
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

const CHECKOUT_RECORD_PATIENCE_MS = 60_000;

/**
 * The tip under a request's key, if it is that request's: the same terms, by the same caller. Another caller's key
 * is never answered with its tip (a partner's old tip under a guessable invoice number held a card's client secret).
 */
export function sameRequest<T extends TipRow>(row: T, fp: string, callerSubject: string | undefined): T {
  if (row.request_fingerprint !== fp || row.customer_subject !== (callerSubject ?? "")) throw new IdempotencyConflictError(row.idempotency_key, "tip");
  return row;
}

/** Ends a pending tip that never reached the customer (Daraja refused the push). */
/**
 * The customer's words for a push Daraja refused at once (its synchronous answer; 17, the two-minute rule, comes only
 * in a callback): a transaction already in process on the customer's phone (500.001.1001), or the prompt not sent.
 */
function pushRefusalMessage(err: DarajaError): string {
  if (err.kind !== "rejected") return "unavailable";
  return err.details.errorCode === "500.001.1001" ? "1001" : "9999";
}

async function failTip(deps: Deps, tipId: string, resultCode: string, messageKey: string): Promise<void> {
  await withTransaction(deps.ctx.pool, async (tx) => {
    const { rows } = await tx.query<TipRow>(
      `UPDATE payment.tips SET status = 'failed', result_code = $2, result_message = $3, completed_at = now()
        WHERE tip_id = $1 AND status = 'pending' RETURNING *`,
      [tipId, resultCode, resultMessage(messageKey)],
    );
    if (rows[0]) await emitTipFailed(tx, rows[0], true);
    return rows.length > 0;
  }).then((failed) => failed && paymentMetrics(deps.ctx.metrics).tips.inc({ status: "failed", method: "mpesa" }));
  deps.changes.announce(tipId);
}

async function emitTipFailed(tx: Queryable, tip: TipRow, pushRefused = false) {
  await emitEvent(tx, "payment", TipFailedSchema, {
    tipId: tip.tip_id,
    workerId: tip.worker_id ?? "",
    qrCodeId: tip.qr_code_id,
    amount: kes(tip.amount_minor),
    method: PaymentMethod.MPESA,
    resultCode: tip.result_code,
    reason: tip.result_message,
    venueId: tip.venue_id,
    pushRefused,
    createdBy: tip.customer_subject,
  }, tip.tip_id);
}

/** What Daraja said about a push, from a callback or an STK query. */
export interface StkOutcome {
  /** "c2b": the same payment reported by a C2B confirmation naming the tip's reference (no CheckoutRequestID, no phone). */
  source: "callback" | "query" | "c2b";
  checkoutRequestId?: string;
  merchantRequestId?: string;
  /** Digits or not ("SFC_IC0003"); success iff "0" (a number 0 from our own C2B path). */
  resultCode: string | number;
  resultDesc: string;
  /** Success callbacks only (queries carry none). */
  receipt?: string;
  /** What M-Pesa reports taking, in minor units. */
  amountMinor?: bigint;
  phone?: string;
}

export type ApplyResult = "credited" | "failed" | "duplicate" | "unknown" | "held";

/** The tip an outcome is for: by id, or by the per-attempt token of its callback URL. */
export type TipRef = string | { callbackToken: string };

/**
 * The stored callback that brought an outcome: its row is marked with what was
 * decided in the deciding transaction (on a decided success, by the same statement).
 */
export interface CallbackMark {
  callbackId: string;
  /** What the row is filed under: the receipt, else the CheckoutRequestID. */
  reference: string;
}

/** What a decision did: the result, the tip it was about, and the row as the decision wrote it. */
interface Decision {
  result: ApplyResult;
  tip?: TipRow;
  decided?: TipRow;
  /** The callback's row was marked by the deciding statement. */
  marked?: boolean;
  /** Nothing decided: the parked payment a query's success was tied to went to another tip meanwhile; decide again. */
  retie?: boolean;
}

/** What support decided about a paybill payment parked in suspense (c2b_payments.resolution); null: none is parked. */
type SuspenseResolution = "open" | "matched" | "refund" | null;

/**
 * The tip locked for a decision, with what the decision needs to know about
 * the receipt in the same round trip: which tip (if any) already has it, and
 * what became of a paybill payment with it parked in suspense. Both are written
 * only under the receipt's lock (lockReceipt), which the caller holds, so
 * reading them with this statement's snapshot is as good as after the row lock.
 * A payment parked with an amount M-Pesa cannot move (over its cap, below KES 1:
 * c2b.ts posts nothing for it) is no money: not read as parked, its amount told
 * apart (neverMoneyMinor).
 */
async function lockTipForOutcome(tx: Queryable, ref: TipRef, receipt: string | undefined) {
  const { rows } = await tx.query<TipRow & { receipt_owner: string | null; receipt_suspense: SuspenseResolution; receipt_never_money: bigint | null }>(
    `SELECT ${TIP_COLUMNS_OF_T}, (SELECT o.tip_id FROM payment.tips o WHERE o.mpesa_receipt = $2) AS receipt_owner,
            (SELECT c.resolution FROM payment.c2b_payments c WHERE c.trans_id = $2 AND c.outcome = 'suspense' AND c.amount_minor BETWEEN $4 AND $3) AS receipt_suspense,
            (SELECT c.amount_minor FROM payment.c2b_payments c WHERE c.trans_id = $2 AND c.outcome = 'suspense' AND c.amount_minor NOT BETWEEN $4 AND $3) AS receipt_never_money
       FROM payment.tips t WHERE ${typeof ref === "string" ? "t.tip_id = $1" : "t.callback_token = $1"} FOR UPDATE OF t`,
    [typeof ref === "string" ? ref : ref.callbackToken, receipt ?? null, MPESA_LIMITS.perTransactionMinor, MPESA_LIMITS.minMinor],
  );
  const row = rows[0];
  if (!row) return undefined;
  const { receipt_owner: owner, receipt_suspense: suspense, receipt_never_money: neverMoneyMinor, ...tip } = row;
  return { tip: tip as TipRow, owner, suspense, neverMoneyMinor };
}

/**
 * Applies an outcome to the tip it belongs to, exactly once: a success
 * decides one wallet entry (keyed by the receipt) whatever else arrives, a
 * failure ends a pending tip, anything later is a duplicate. `mark`: the
 * callback that brought it, marked in the deciding transaction.
 */
export async function applyStkOutcome(deps: Deps, ref: TipRef, o: StkOutcome, mark?: CallbackMark, record?: DecisionRecord): Promise<ApplyResult> {
  return (await applyStkOutcomeTo(deps, ref, o, mark, record)).result;
}

/** Run in the deciding transaction, after a decision about a tip (not "unknown"): what the caller records with it. */
export type DecisionRecord = (tx: Queryable, result: Exclude<ApplyResult, "unknown">, tip: TipRow) => Promise<void>;

/** applyStkOutcome, also answering which tip it was (undefined when none matched the reference). */
export async function applyStkOutcomeTo(deps: Deps, ref: TipRef, o: StkOutcome, mark?: CallbackMark, record?: DecisionRecord): Promise<{ result: ApplyResult; tip?: TipRow }> {
  const decide = (lastTry = false) => withTransaction(deps.ctx.pool, async (tx) => {
    const d = await decideOutcome(tx, ref, o, mark, lastTry);
    if (mark && d.tip && d.result !== "unknown" && !d.marked) await markCallback(tx, mark.callbackId, d.result, { ref: mark.reference, tipId: d.tip.tip_id, matched: true });
    if (record && d.tip && d.result !== "unknown") await record(tx, d.result, d.decided ?? d.tip);
    return d;
  });
  let d = await decide();
  // A tie lost to another tip of the same number and amount: looked for again, a few times; the last time, lost
  // again, the tip is held for review. Left pending, the pass that queried it would expire it, though M-Pesa said paid.
  for (let tries = 1; d.retie && tries < RETIES; tries++) d = await decide(tries === RETIES - 1);
  const { result, tip, decided } = d;
  if (!tip) return { result };
  await afterDecision(deps, tip.tip_id, result, decided);
  return { result, tip };
}

/** What follows a committed decision: watchers told, a success credited. */
async function afterDecision(deps: Deps, tipId: string, result: ApplyResult, decided: TipRow | undefined): Promise<void> {
  // Watchers get the row as committed when this decided it; otherwise they read it.
  deps.changes.announce(tipId, result === "credited" || result === "held" || result === "failed" ? decided : undefined);
  if (result === "failed") paymentMetrics(deps.ctx.metrics).tips.inc({ status: "failed", method: "mpesa" });
  if (result === "credited" || result === "held") await postCredit(deps, tipId, decided);
}

/** A provider callback as it arrived; `path` with its token redacted. */
export interface RawCallback {
  callbackId: string;
  source: string;
  path: string;
  remoteAddress: string;
  body: Buffer;
}

/** A success callback as parseStkCallback reads it: with its receipt, amount and number. */
export type StkSuccess = StkOutcome & Required<Pick<StkOutcome, "checkoutRequestId" | "receipt" | "amountMinor" | "phone">>;

/**
 * Stores an STK success callback and, in the same statement, decides it when
 * it is the usual one: its tip (by the token) pending with no hold, the push's
 * CheckoutRequestID or none recorded yet, the amount and number as charged,
 * and a receipt nothing has claimed (receipt_unclaimed takes the receipt's
 * lock, as decideOutcome does, before the tip's row lock). One round trip and
 * one commit instead of an insert and a six-statement transaction; the
 * callback is never lost, as it commits with the decision or not at all.
 * "stored" when it decided nothing: the callback is stored unmarked for
 * applyStkOutcome, whose checks say what it is (a duplicate, a mismatch, held).
 * Undefined when the statement failed: nothing is stored, the caller stores it.
 */
export async function storeAndCreditStk(deps: Deps, raw: RawCallback, token: string, o: StkSuccess): Promise<"credited" | "stored" | undefined> {
  // With the other successes called back meanwhile: one statement and one commit for the group.
  return storeAndDecide(deps, raw, "credited", async () => (await storeStkSuccess(deps.ctx.pool, { raw, token, success: o })) ?? undefined);
}

/**
 * Runs `decide`, a statement that stores a callback (storedCallbackCte) and
 * decides its tip, answering the decided row; then what follows the decision:
 * `result` when it decided, "stored" when not (the callback stored unmarked
 * for applyStkOutcome), undefined when the statement failed (nothing stored:
 * the caller stores it).
 */
async function storeAndDecide<R extends "credited" | "failed">(deps: Deps, raw: RawCallback, result: R, decide: () => Promise<TipRow | undefined>): Promise<R | "stored" | undefined> {
  const stored = await decide()
    .then((decided) => ({ decided }), (err: unknown) => {
      deps.ctx.logger.warn({ err, callbackId: raw.callbackId, result }, "storing and deciding an STK callback at once failed; to be stored and decided step by step");
      return undefined;
    });
  if (!stored) return undefined;
  if (!stored.decided) return "stored";
  await afterDecision(deps, stored.decided.tip_id, result, stored.decided);
  return result;
}

/**
 * The CTE `stored` of storeAndDecide's statement: the raw callback ($1-$5),
 * marked `outcome` with the reference `ref` (an SQL expression) and its tip
 * when `decided` has a row, else unmarked ('received') with the tip its path's
 * token names (`token`, an SQL expression), for the replay of a callback whose
 * decision was lost. It commits with the decision or not at all.
 */
export function storedCallbackCte(outcome: "credited" | "failed", ref: string, token: string): string {
  return `stored AS (
       INSERT INTO payment.callbacks (callback_id, source, path, remote_address, raw_body, outcome, external_reference, tip_id, matched, token_checked)
       SELECT $1, $2, $3, $4, $5, CASE WHEN d.tip_id IS NULL THEN 'received' ELSE '${outcome}' END, CASE WHEN d.tip_id IS NULL THEN '' ELSE ${ref} END,
              COALESCE(d.tip_id, (SELECT t.tip_id FROM payment.tips t WHERE t.callback_token = ${token})), d.tip_id IS NOT NULL, true
         FROM (SELECT 1) one LEFT JOIN decided d ON true)`;
}

/** A failure callback as parseStkCallback reads it (a result code other than 0). */
export type StkFailure = StkOutcome & Required<Pick<StkOutcome, "checkoutRequestId">>;

/**
 * The tip_failed fields only the row knows (its id, also the event's
 * correlation, its worker, code, amount, venue and creator), encoded by SQL
 * from the tip aliased `alias` and appended to the event the service encoded
 * (0013_event_fields.sql). Field numbers from the descriptors.
 */
function tipFailedTailSql(alias: string): string {
  const f = TipFailedSchema.field;
  const str = (field: { number: number }, value: string) => `payment.pb_string_field(${field.number}, ${value})`;
  const amount = `payment.pb_int_field(${MoneySchema.field.amountMinor.number}, ${alias}.amount_minor) || ${str(MoneySchema.field.currency, "'KES'")}`;
  return [
    `payment.pb_bytes_field(${f.meta.number}, ${str(EventMetaSchema.field.correlationId, `${alias}.tip_id::text`)})`,
    str(f.tipId, `${alias}.tip_id::text`),
    str(f.workerId, `${alias}.worker_id::text`),
    str(f.qrCodeId, `${alias}.qr_code_id`),
    `payment.pb_bytes_field(${f.amount.number}, ${amount})`,
    str(f.venueId, `${alias}.venue_id`),
    str(f.createdBy, `${alias}.customer_subject`),
  ].join(" || ");
}
export const TIP_FAILED_TAIL_OF_D = tipFailedTailSql("d");

/**
 * storeAndCreditStk's counterpart for a failure (cancelled, timed out,
 * insufficient funds...): stores the callback and, in the same statement,
 * fails its tip (by the token) when it is pending and the push's
 * CheckoutRequestID is this one or none is recorded yet, marks the callback,
 * and announces tip_failed. One round trip and one commit instead of an
 * insert and a five-statement transaction. A duplicate failing at once waits
 * on the row lock and then finds the tip no longer pending: it is stored
 * unmarked ("stored") for applyStkOutcome, which calls it a duplicate, as it
 * does a failure after a success; a late success after a failure is decided
 * there as before. Undefined when the statement failed: nothing is stored.
 */
export async function storeAndFailStk(deps: Deps, raw: RawCallback, token: string, o: StkFailure): Promise<"failed" | "stored" | undefined> {
  const code = String(o.resultCode).trim().slice(0, 32);
  const message = resultMessage(code);
  // What the service knows before the row: the SQL appends the rest (tipFailedTailSql).
  const event = buildEvent("payment", TipFailedSchema, { method: PaymentMethod.MPESA, resultCode: code, reason: message });
  const failure = { resultCode: code, resultMessage: message, checkoutRequestId: o.checkoutRequestId, merchantRequestId: o.merchantRequestId, event, traceparent: currentTraceparent() ?? null };
  // With the other failures called back meanwhile: one statement and one commit for the group.
  return storeAndDecide(deps, raw, "failed", async () => (await storeStkFailure(deps.ctx.pool, { raw, token, failure })) ?? undefined);
}

/**
 * Ends a pending tip whose push `checkoutRequestId` answered, as `status`
 * ("failed": an STK query's failure; "expired": nobody answered in time), and
 * announces tip_failed, in one statement (atomic without BEGIN/COMMIT) instead
 * of a locking read, an update and an insert in a transaction. Nothing happens
 * unless the tip is still pending under that push (a success that came first
 * wins; the caller then decides from the row as it is). Answers the row as it
 * is after, undefined when nothing changed.
 */
export async function endPushedTip(db: Queryable, tipId: string, checkoutRequestId: string, status: "failed" | "expired", code: string, message: string): Promise<TipRow | undefined> {
  // What the service knows before the row: the SQL appends the rest (tipFailedTailSql).
  const event = buildEvent("payment", TipFailedSchema, { method: PaymentMethod.MPESA, resultCode: code, reason: message });
  const { rows } = await db.query<TipRow>(
    `WITH decided AS (
       UPDATE payment.tips SET status = $2, result_code = $3, result_message = $4, completed_at = now()
        WHERE tip_id = $1 AND status = 'pending' AND checkout_request_id = $5 RETURNING ${TIP_COLUMNS}),
     announced AS (
       INSERT INTO payment.outbox (event_id, subject, payload, traceparent) SELECT $6, $7, $8 || ${TIP_FAILED_TAIL_OF_D}, $9::text FROM decided d)
     SELECT ${TIP_COLUMNS} FROM decided`,
    [tipId, status, code, message, checkoutRequestId, event.id, event.subject, Buffer.from(event.data), currentTraceparent() ?? null],
  );
  return rows[0];
}

/**
 * The statement that marks a stored callback with what it came to, its values
 * given as SQL expressions (parameters of the statement it is written into).
 */
function markCallbackSql(v: { callbackId: string; outcome: string; ref: string; tipId: string; payoutId: string; matched: string }): string {
  return `UPDATE payment.callbacks SET outcome = ${v.outcome}, external_reference = COALESCE(${v.ref}, external_reference), tip_id = ${v.tipId},
      payout_id = ${v.payoutId}, matched = ${v.matched} WHERE callback_id = ${v.callbackId}`;
}

const MARK_CALLBACK = markCallbackSql({ callbackId: "$1", outcome: "$2", ref: "$3", tipId: "$4", payoutId: "$5", matched: "$6" });

/** What a stored callback came to; `db` is the deciding transaction when there was a decision. */
export async function markCallback(db: Queryable, callbackId: string, outcome: string, extra: { ref?: string; tipId?: string; payoutId?: string; matched?: boolean } = {}): Promise<void> {
  await db.query(MARK_CALLBACK, [callbackId, outcome, extra.ref ?? null, extra.tipId ?? null, extra.payoutId ?? null, extra.matched ?? false]);
}

/** A parked payment a query's success is tied to, looked for under the tie lock: a confirmation parking it meanwhile is waited for. */
async function parkedPaymentOf(tx: Queryable, tipId: string): Promise<ParkedFit | undefined> {
  await lockTiesOfTip(tx, tipId);
  return parkedPaymentFor(tx, tipId);
}

/**
 * The decision, under the receipt's lock (when there is a receipt) and the tip's row lock. `lastTry`: a tie
 * lost to another tip (retie) is not tried again but leaves the tip to review (TieDoubt), never pending.
 */
async function decideOutcome(tx: Queryable, ref: TipRef, o: StkOutcome, mark: CallbackMark | undefined, lastTry = false): Promise<Decision> {
  // A query's success names no receipt: its payment may be one parked in suspense (receiptless.ts), decided as if it had its receipt.
  const fit = !o.receipt && o.source === "query" && typeof ref === "string" && String(o.resultCode).trim() === "0" ? await parkedPaymentOf(tx, ref) : undefined;
  let tied = fit?.resolution === "open" ? fit.receipt : undefined;
  let doubt: TieDoubt | undefined = fit && !tied ? { receipt: fit.receipt, fate: fit.resolution === "refund" ? "refunded" : "paid_elsewhere" } : undefined;
  // The receipt before the tip, as the C2B path does: a payment reported both ways at once is decided once.
  if (o.receipt ?? tied) await lockReceipt(tx, (o.receipt ?? tied)!);
  const takenBy = tied && (await tiedToAnotherTip(tx, tied, ref as string));
  if (takenBy && !lastTry) return { result: "unknown", retie: true };
  if (takenBy) [doubt, tied] = [{ receipt: tied!, fate: { takenBy } }, undefined];
  const receipt = o.receipt ?? tied;
  const locked = await lockTipForOutcome(tx, ref, receipt);
  if (!locked) return { result: "unknown" };
  const { tip } = locked;
  if (o.source !== "c2b" && tip.checkout_request_id && tip.checkout_request_id !== o.checkoutRequestId) return { result: "unknown", tip };
  if (o.source !== "c2b" && !tip.checkout_request_id) {
    // The callback overtook the push's own answer.
    await tx.query("UPDATE payment.tips SET checkout_request_id = $2, merchant_request_id = $3 WHERE tip_id = $1", [tip.tip_id, o.checkoutRequestId, o.merchantRequestId ?? null]);
  }
  if (String(o.resultCode).trim() === "0") return { tip, ...(await decideSuccess(tx, locked, o, mark, { tied, doubt })) };
  if (tip.status !== "pending" || !o.checkoutRequestId) return { result: "duplicate", tip };
  const code = String(o.resultCode).trim().slice(0, 32);
  const { rows: failed } = await tx.query<TipRow>(
    `UPDATE payment.tips SET status = 'failed', result_code = $2, result_message = $3, completed_at = now()
      WHERE tip_id = $1 RETURNING ${TIP_COLUMNS}`,
    [tip.tip_id, code, resultMessage(code)],
  );
  await emitTipFailed(tx, failed[0]);
  return { result: "failed", tip, decided: failed[0] };
}

/** markCallback written into decideSuccess's statement (its $1 is the tip, $8-$10 the mark). */
const MARK_DECIDED_CALLBACK = markCallbackSql({ callbackId: "$10", outcome: "$8", ref: "$9", tipId: "$1", payoutId: "NULL", matched: "true" });

type LockedForOutcome = Omit<NonNullable<Awaited<ReturnType<typeof lockTipForOutcome>>>, "neverMoneyMinor"> & { neverMoneyMinor?: bigint | null };

/** How a success's callback differs from its tip (amount paid, paying number); none for a query's success, which says neither. */
function callbackMismatches(tip: TipRow, o: StkOutcome): string[] {
  const problems: string[] = [];
  if (o.amountMinor !== undefined && o.amountMinor !== tip.charged_minor) problems.push(`amount ${shillings(o.amountMinor)} instead of ${tip.charged_minor / 100n}`);
  if (o.phone !== undefined && o.phone !== tip.phone) problems.push(`paid from ${maskPhone(o.phone)} instead of ${tip.phone_masked}`);
  return problems;
}

/**
 * A paybill confirmation naming a tip's reference, recorded as its payment (outcome 'duplicate') after a query's success
 * without a receipt, when the push's own callback then names another receipt: two payments, and the paybill one was
 * left in M-Pesa clearing, credited to no one and in no suspense list, so support could neither refund nor place it.
 * Parked now (reconcileC2b posts it from clearing to suspense), and the tip takes its push's receipt. Whether it moved.
 */
async function parkSecondPaybillPayment(tx: Queryable, tip: TipRow, paybill: string, pushReceipt: string): Promise<boolean> {
  // Only after a query's success: a tip its callback credited has the push's own receipt, whose C2B confirmation is
  // recorded as its duplicate too; a second callback naming another receipt is no second payment.
  if (!tip.credit_key?.startsWith("stk-")) return false;
  const { rowCount } = await tx.query(
    `WITH parked AS (
       UPDATE payment.c2b_payments SET outcome = 'suspense', resolution = 'open', tip_id = NULL, reason = $4
        WHERE trans_id = $2 AND tip_id = $1 AND outcome = 'duplicate' AND suspense_entry_id IS NULL
          -- Only for a push receipt nothing else knows: one a tip holds is that tip's; one a paybill confirmation brought
          -- too is in suspense already (parked as a second payment for this tip), or refunded or placed by support since.
          AND NOT EXISTS (SELECT 1 FROM payment.tips WHERE mpesa_receipt = $3)
          AND NOT EXISTS (SELECT 1 FROM payment.c2b_payments WHERE trans_id = $3)
          -- A refund of the tip reversing the paybill payment (not one that failed): it is not money left in clearing.
          AND NOT EXISTS (SELECT 1 FROM payment.mpesa_reversals WHERE tip_id = $1 AND receipt = $2 AND (status <> 'failed' OR reversal_receipt IS NOT NULL))
        RETURNING trans_id
     )
     UPDATE payment.tips SET mpesa_receipt = $3 WHERE tip_id = $1 AND mpesa_receipt = $2 AND EXISTS (SELECT 1 FROM parked)`,
    [tip.tip_id, paybill, pushReceipt, `a second payment for tip reference ${tip.account_reference}, whose push was paid by ${pushReceipt}`],
  );
  return rowCount === 1;
}

/**
 * A push's payment whose tip a paybill payment paid first (the tip's reference, paid while the prompt was slow; or one
 * a refund reversed since): the second payment M-Pesa took, known by no C2B confirmation, stays in clearing, credited
 * to no one. Parked as a paybill payment is (reconcileC2b posts it from clearing to suspense) for support to refund or
 * place; the receipt's lock is held (decideOutcome). Not when a tip holds the receipt, or a confirmation brought it
 * already: its money is accounted for. Whether it was parked.
 */
async function parkSecondPushPayment(tx: Queryable, tip: TipRow, o: StkOutcome, callbackId: string): Promise<boolean> {
  // The push asked for the tip's charge: a callback telling another amount is no payment of this push to park.
  if (o.amountMinor !== undefined && o.amountMinor !== tip.charged_minor) return false;
  const { rowCount } = await tx.query(
    `INSERT INTO payment.c2b_payments (trans_id, callback_id, transaction_type, business_short_code, bill_ref_number, amount_minor, trans_time,
       outcome, reason, resolution)
     SELECT $1, $2, 'CustomerPayBillOnline', '', $3, $4, to_char(now() AT TIME ZONE 'Africa/Nairobi', 'YYYYMMDDHH24MISS'), 'suspense', $5, 'open'
      WHERE NOT EXISTS (SELECT 1 FROM payment.tips WHERE mpesa_receipt = $1 OR credit_key = $1)
        -- The tip's payment was a paybill one: its confirmation decided the tip, or came after a query's success. Not
        -- the push's own payment, credited by its callback and confirmed by C2B after it ('duplicate'): a callback
        -- naming a second receipt after its own is no payment to park (one push, one payment), only flagged.
        AND EXISTS (SELECT 1 FROM payment.c2b_payments WHERE trans_id = $6 AND (outcome = 'tip' OR $7 LIKE 'stk-%'))
     ON CONFLICT (trans_id) DO NOTHING`,
    [o.receipt, callbackId, tip.account_reference ?? "", tip.charged_minor,
      `a second payment for tip reference ${tip.account_reference}, paid by its push after ${tip.mpesa_receipt} had paid the tip`, tip.mpesa_receipt, tip.credit_key],
  );
  return rowCount === 1;
}

/** A success for a locked tip: credited (or held in suspense) once, a duplicate after that. */
async function decideSuccess(
  tx: Queryable, { tip, owner, suspense, neverMoneyMinor }: LockedForOutcome, o: StkOutcome, mark: CallbackMark | undefined,
  guess: {
    /** The receipt of the parked payment a query's success was tied to (parkedPaymentFor), its lock held. */
    tied?: string;
    /** A parked payment that fits a query's success but cannot fund it: the tip is held for review. */
    doubt?: TieDoubt;
  } = {},
): Promise<Omit<Decision, "tip">> {
  const tipId = tip.tip_id;
  const { tied, doubt } = guess;
  const receipt = o.receipt ?? tied;
  const flag = (detail: string) => recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "flag", tipId, workerId: tip.worker_id ?? undefined, phoneMasked: tip.phone_masked, detail });
  if (tip.credit_key) {
    // A held tip's late callback naming a payment whose money is spent: it was that payment. Marked for its review
    // (spentReceiptOf refuses the approval), also when another tip holds the receipt and it cannot be recorded below.
    // Succeeded (approved before it came): that payment was paid twice, flagged for support to recover.
    // Being approved (approval_receipt): the approval decided before this callback came, and goes through.
    const spentLate = o.receipt && !tip.mpesa_receipt && tip.status !== "failed" ? receiptSpent(owner, suspense) : undefined;
    if (spentLate && (await firstSpentReceiptFlag(tx, tipId, o.receipt!))) {
      await flag(spentReceiptWords(o.receipt!, spentLate, owner,
        tip.status !== "held_for_review" ? "this tip's callback names it, after the tip was credited: the payment was paid twice"
          : tip.approval_receipt ? "this tip's callback names it while its approval was being paid: if the approval goes through, the payment was paid twice"
            : "this held tip's callback names it: approving the tip would pay it twice"));
    }
    // Already decided. A receipt learned only now (success came first by query) is recorded; never by a tip that
    // failed after review, whose receipt went back to its paybill payment for support to place (reopenFundingPayment).
    if (o.receipt && !tip.mpesa_receipt && tip.status !== "failed") {
      const { rowCount: recorded } = await tx.query(
        "UPDATE payment.tips SET mpesa_receipt = $2 WHERE tip_id = $1 AND NOT EXISTS (SELECT 1 FROM payment.tips WHERE mpesa_receipt = $2)", [tipId, o.receipt]);
      // Its payment's confirmation, tied to no tip, waits in suspense: posted there from clearing, as this tip's credit
      // was (by a query's success). Resolving it is refused from now on (resolveSuspense); support is told, once (the
      // receipt is recorded once).
      if (recorded && suspense === "open" && tip.credit_key.startsWith("stk-")) {
        await flag(`receipt ${o.receipt} is this tip's payment, named by its callback after a query had credited the tip; its paybill confirmation, `
          + "tied to no tip, is open in suspense: one payment posted twice from clearing. Refunding or matching it is refused; take the suspense entry back by hand");
      }
      // A query's success says nothing of amount or number: credited in full on it, the tip is checked here, once (the
      // receipt is recorded once). Before, a callback saying another amount came after the query and was let pass.
      // A paybill confirmation in another amount is c2b.ts's doubt (perhaps not from M-Pesa), not this.
      const problems = recorded && o.source === "callback" && tip.credit_key.startsWith("stk-") ? callbackMismatches(tip, o) : [];
      if (problems.length) await flag(`callback does not match the tip a query had credited in full: ${problems.join("; ")}; recover the difference from the worker`);
    } else if (o.receipt && tip.mpesa_receipt !== o.receipt) {
      const paybill = tip.mpesa_receipt;
      if (o.source === "callback" && paybill && (await parkSecondPaybillPayment(tx, tip, paybill, o.receipt))) {
        await flag(`paybill payment ${paybill}, recorded as this tip's payment after a query's success, was a second payment: `
          + `the push's callback names ${o.receipt}. The tip takes ${o.receipt}; ${paybill} is parked in suspense for support to refund or place`);
      } else if (o.source === "callback" && paybill && mark && (await parkSecondPushPayment(tx, tip, o, mark.callbackId))) {
        await flag(`the push's callback names ${o.receipt}, a second payment for this tip, paid by ${paybill} first: `
          + `${o.receipt} is parked in suspense for support to refund or place`);
      } else await flag(`a second success with another receipt (${o.receipt}) for an already paid push; not credited`);
    }
    return { result: "duplicate" };
  }
  const refuseSpent = async (spent: "paid_elsewhere" | "refunded") => {
    // Flagged once per tip and receipt: M-Pesa delivers a callback again and again, and each would add an alert.
    if (await firstSpentReceiptFlag(tx, tipId, receipt!)) await flag(spentReceiptWords(receipt!, spent, owner, "not credited again"));
    return failSpentReceipt(tx, tip, spent);
  };
  // A tie is a guess: its payment spent since it was read (support's decision, or an older replica's refund, which
  // skips the receipt's lock) cannot fund the tip, nor say whether it was this tip's: decided untied, for review.
  const untied = (fate: "paid_elsewhere" | "refunded") => decideSuccess(tx, { tip, owner: null, suspense: null }, o, mark, { doubt: { receipt: tied!, fate } });
  const spent = receipt ? receiptSpent(owner, suspense) : undefined;
  if (spent) return tied ? untied(spent) : refuseSpent(spent);
  const heldInSuspense = receipt && suspense === "open" ? await heldByC2bSuspense(tx, tip, receipt, tied ? "stk-query" : "stk-callback") : undefined;
  if (typeof heldInSuspense === "string") return tied ? untied(receiptSpent(null, heldInSuspense)!) : refuseSpent(receiptSpent(null, heldInSuspense)!);
  if (heldInSuspense) return { result: "held", decided: heldInSuspense };
  const problems = callbackMismatches(tip, o);
  const receivedMinor = o.amountMinor;
  // Its receipt also reported by a paybill confirmation no customer can pay: this callback alone says what was paid.
  const neverMoneyTwin = receipt && typeof neverMoneyMinor === "bigint" ? neverMoneyMinor : undefined;
  const toSuspense = problems.length > 0 || tip.fraud_action === "hold" || doubt !== undefined || neverMoneyTwin !== undefined;
  if (neverMoneyTwin !== undefined) await holdBesideNeverMoney(tx, tip, receipt!, neverMoneyTwin, receivedMinor ?? tip.charged_minor);
  if (doubt) {
    await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "hold", tipId, workerId: tip.worker_id ?? undefined, phoneMasked: tip.phone_masked, tipAmountMinor: tip.amount_minor,
      detail: `${tieDoubtWords(doubt)}; money parked in suspense` });
  }
  if (problems.length) {
    await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "hold", tipId, workerId: tip.worker_id ?? undefined, phoneMasked: tip.phone_masked, tipAmountMinor: tip.amount_minor,
      detail: `callback does not match the tip: ${problems.join("; ")}; money parked in suspense` });
  }
  const result = toSuspense ? "held" : "credited";
  // The callback's row is marked in the same statement (no callback: no row matches the null id).
  const { rows } = await tx.query<TipRow>(
    `WITH decided AS (
       UPDATE payment.tips SET status = $2, result_code = '0', result_message = $3, mpesa_receipt = $4, credit_key = $5,
         credit_kind = $6, received_minor = NULLIF($7::bigint, charged_minor), ${KEEP_REPLACED_FAILURE}, completed_at = now()
        WHERE tip_id = $1 RETURNING ${TIP_COLUMNS}),
     marked AS (${MARK_DECIDED_CALLBACK})
     SELECT ${TIP_COLUMNS} FROM decided`,
    [tipId, toSuspense ? "held_for_review" : "succeeded", resultMessage(toSuspense ? "review" : "0"), o.receipt ?? null, o.receipt ?? `stk-${o.checkoutRequestId}`,
      creditKindOf(tip, toSuspense), receivedMinor ?? null, result, mark?.reference ?? null, mark?.callbackId ?? null],
  );
  // Decided without a receipt (a query's success): its payment's C2B confirmation, naming nothing we know, finds it (receiptless.ts).
  if (!o.receipt) await rememberReceiptless(tx, tip);
  return { result, decided: rows[0], marked: true };
}

/** Minor units as M-Pesa writes shillings: 99, 100.5, 100.05 (no grouping, no trailing zero). */
function shillings(minor: bigint): string {
  const cents = minor % 100n;
  return cents === 0n ? `${minor / 100n}` : `${minor / 100n}.${String(cents).padStart(2, "0").replace(/0$/, "")}`;
}

/**
 * Why a success's receipt can pay nothing more: its money was credited to another tip ("paid_elsewhere":
 * a paybill tip, an admin's match of the payment parked in suspense) or given back to the customer
 * from suspense ("refunded"). Undefined: the receipt is free, or parked and still open.
 */
function receiptSpent(owner: string | null, suspense: SuspenseResolution): "paid_elsewhere" | "refunded" | undefined {
  if (owner || suspense === "matched") return "paid_elsewhere";
  return suspense === "refund" ? "refunded" : undefined;
}

/**
 * How the alert of a spent receipt's success begins. A replica older than spent_receipt_flags (0027), in a
 * rollout, still finds its flag by these words; this one by firstSpentReceiptFlag.
 */
const spentReceiptFlag = (receipt: string) => `receipt ${receipt} `;

/** The alert of a spent receipt's success: what became of its payment, then `consequence` for this tip. */
function spentReceiptWords(receipt: string, spent: "paid_elsewhere" | "refunded", owner: string | null, consequence: string): string {
  const fate = spent === "refunded" ? "was refunded to the customer from suspense by support" : `already belongs to ${owner ? `tip ${owner}` : "an admin's match"}`;
  return `${spentReceiptFlag(receipt)}${fate}; ${consequence}`;
}

/**
 * Records that a success with this spent receipt is flagged for the tip: true the first time, false when it
 * was already (a structured mark, not the alert's words, which another alert about the tip could share).
 */
async function firstSpentReceiptFlag(tx: Queryable, tipId: string, receipt: string): Promise<boolean> {
  const { rowCount } = await tx.query("INSERT INTO payment.spent_receipt_flags (tip_id, receipt) VALUES ($1, $2) ON CONFLICT DO NOTHING", [tipId, receipt]);
  return rowCount === 1;
}

/**
 * A success for a tip whose payment already went elsewhere (receiptSpent): one payment must not pay
 * twice, so nothing is credited. A pending tip fails saying why (tip_failed through the outbox):
 * left pending, reconciliation's STK query, which carries no receipt to check, would credit it.
 * A tip already ended stays as it is.
 */
async function failSpentReceipt(tx: Queryable, tip: TipRow, why: "paid_elsewhere" | "refunded"): Promise<Omit<Decision, "tip">> {
  if (tip.status !== "pending") return { result: "duplicate" };
  const { rows } = await tx.query<TipRow>(
    `UPDATE payment.tips SET status = 'failed', result_code = $2, result_message = $3, completed_at = now() WHERE tip_id = $1 RETURNING ${TIP_COLUMNS}`,
    [tip.tip_id, why, resultMessage(why)],
  );
  await emitTipFailed(tx, rows[0]);
  return { result: "failed", decided: rows[0] };
}

/**
 * What an approval of a held tip moves out of suspense: what M-Pesa actually took,
 * the platform keeping the fee it quoted and the worker the rest (nothing when a
 * short payment does not even cover the fee). Never what was asked for: a callback
 * one shilling short must not credit the shilling that never arrived.
 */
export function approvedSplit(tip: Pick<TipRow, "charged_minor" | "worker_receives_minor" | "received_minor">): { chargedMinor: bigint; workerMinor: bigint } {
  const received = tip.received_minor ?? tip.charged_minor;
  const feeMinor = tip.charged_minor - tip.worker_receives_minor;
  assert.ok(received >= 0n && feeMinor >= 0n, "a held tip's amounts are never negative");
  return { chargedMinor: received, workerMinor: received > feeMinor ? received - feeMinor : 0n };
}

/** How many times a query's success is decided after its tie was taken by another tip, at most (a rare race: see decideOutcome). */
const RETIES = 3;

/** How long M-Pesa refuses a repeat of the same amount from the same number (result 17, "rule limited"). */
export const RULE_LIMIT_WINDOW_SECONDS = 120;

/**
 * A push M-Pesa just answered with 17 would be answered 17 again: refuse the
 * repeat here, saying when it can go, instead of sending the customer another
 * prompt that cannot succeed.
 */
function refuseRuleLimitedRepeat(recent: TipPrecheck["ruleLimited"], chargedMinor: bigint): void {
  // Newest first: the latest refusal of this amount says how long is left.
  const wait = recent.find((r) => r.chargedMinor === chargedMinor)?.waitSeconds;
  if (wait === undefined) return;
  throw new InvalidStateError(
    `M-Pesa refuses the same amount from this number within 2 minutes: try again in ${Math.max(1, wait)} seconds, or change the amount`,
    { wait_seconds: String(Math.max(1, wait)) },
  );
}

/**
 * Starts the automatic payout without holding up the caller (a Daraja
 * callback waits for our answer; a slow B2C must not delay it).
 */
/** Where a confirmed tip's money goes: suspense when a rule holds it, else its worker's wallet or its venue's pool. */
export function creditKindOf(tip: { worker_id: string | null }, held: boolean): NonNullable<TipRow["credit_kind"]> {
  return held ? "suspense" : tip.worker_id ? "worker" : "venue";
}

export function runAfterCredit(deps: Deps, tip: TipRow, settings?: PayoutSettings | null, checkAt?: Date): void {
  // The row in hand says what the receipt needs (one is owed when the tip has a paying number or, by card, an address for it).
  const work: Promise<unknown>[] = [tip.phone || (tip.method === "card" && tip.customer_email) ? sendOwedReceipts(deps, [tip]) : Promise.resolve(0)];
  // A venue tip waits in the pool for the venue's distribution: nobody to pay out yet.
  if (deps.afterCredit && tip.worker_id) work.push(deps.afterCredit(tip, settings, checkAt).catch((err) => deps.ctx.logger.warn({ tipId: tip.tip_id, err }, "automatic payout failed to start")));
  const p = Promise.allSettled(work);
  deps.background.add(p);
  void p.finally(() => deps.background.delete(p));
}

/**
 * The payment arrived first as a paybill confirmation that could not be placed
 * (parked in suspense) and now its STK callback names this tip: the money is
 * already in suspense, so the tip is held for an admin's approval, which moves
 * it from suspense to the worker. Nothing is taken from M-Pesa clearing twice.
 */
async function heldByC2bSuspense(tx: Queryable, tip: TipRow, receipt: string, by: "stk-callback" | "stk-query"): Promise<TipRow | "matched" | "refund" | undefined> {
  const { rows } = await tx.query<{ suspense_entry_id: string | null; bill_ref_number: string; amount_minor: bigint; resolution: SuspenseResolution }>(
    "SELECT suspense_entry_id, bill_ref_number, amount_minor, resolution FROM payment.c2b_payments WHERE trans_id = $1 AND outcome = 'suspense' FOR UPDATE",
    [receipt],
  );
  const c2b = rows[0];
  if (!c2b) return undefined;
  // Resolved since the caller read it open: only a writer that skips the receipt's lock can do that (an older
  // replica's refund during a rollout). Its resolution, for the caller to refuse the credit: the money is not in
  // clearing to credit from.
  if (c2b.resolution === "matched" || c2b.resolution === "refund") return c2b.resolution;
  await tx.query("UPDATE payment.c2b_payments SET resolution = 'matched', tip_id = $2, resolved_by = $3, resolved_at = now() WHERE trans_id = $1", [receipt, tip.tip_id, by]);
  // The parking's alert ends here, the tip's hold below taking its place: left open, it stayed in the queue for good
  // (a hold, so not closable, and no longer in Suspense to resolve).
  await closeSuspenseAlerts(tx, receipt, "closed", by, `taken for tip ${tip.tip_id}, held for review`);
  const reference = c2b.bill_ref_number.slice(0, 40);
  await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "hold", tipId: tip.tip_id, workerId: tip.worker_id ?? undefined, phoneMasked: tip.phone_masked, tipAmountMinor: tip.amount_minor,
    detail: by === "stk-callback"
      ? `receipt ${receipt} came first as a paybill payment with reference "${reference}" and was parked in suspense; approve to credit this tip from suspense`
      : `an STK query reported this tip paid but gave no receipt; paybill payment ${receipt} (reference "${reference}"), parked in suspense, came from the same number for the same amount ` +
        `soon after the push and is taken for it; approve to credit this tip from suspense; if they are two payments, reject it and place the paybill payment` });
  const { rows: updated } = await tx.query<TipRow>(
    `UPDATE payment.tips SET status = 'held_for_review', result_code = '0', result_message = $2, mpesa_receipt = $3, credit_key = $4,
       credit_kind = 'suspense', credit_entry_id = $5, credited_at = now(), ${KEEP_REPLACED_FAILURE}, completed_at = now(),
       received_minor = NULLIF($6::bigint, charged_minor) WHERE tip_id = $1 RETURNING *`,
    [tip.tip_id, resultMessage("review"), receipt, `c2b:${receipt}`, c2b.suspense_entry_id ?? `c2b:${receipt}`, c2b.amount_minor],
  );
  return updated[0];
}

/**
 * A success whose receipt a paybill confirmation of an amount M-Pesa cannot move also reported (over its cap, below
 * KES 1: parked, nothing posted to suspense: c2b.ts): that confirmation is not M-Pesa's word, so the tip is held on
 * this success's own amount, moved from M-Pesa clearing to suspense as any hold is, never from the parked payment.
 * Support checks the receipt with Safaricom; the parked payment says which tip named its receipt.
 */
async function holdBesideNeverMoney(tx: Queryable, tip: TipRow, receipt: string, parkedMinor: bigint, heldMinor: bigint): Promise<void> {
  await tx.query("UPDATE payment.c2b_payments SET reason = reason || ' | its receipt was named by tip ' || $2 || '''s STK success, held for review on that success' WHERE trans_id = $1",
    [receipt, tip.tip_id]);
  await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "hold", tipId: tip.tip_id, workerId: tip.worker_id ?? undefined, phoneMasked: tip.phone_masked, tipAmountMinor: tip.amount_minor,
    detail: `receipt ${receipt} was also reported by a paybill confirmation of ${formatMoney(parkedMinor, "KES")}, ${neverMoneyWords(parkedMinor)} ` +
      `(parked, nothing posted to suspense): not from M-Pesa as told. Held on this STK success (${formatMoney(heldMinor, "KES")}), moved from M-Pesa clearing to suspense; ` +
      "check the receipt with Safaricom before approving" });
}

/** Announces a tip whose money reached the worker; its customer is owed a receipt from then on (a paybill payer's number is not known). */
export async function emitTipSucceeded(tx: Queryable, t: TipRow) {
  if (t.phone) await oweReceipt(tx, t.tip_id);
  await writeOutbox(tx, "payment", tipSucceededEvent(t));
}

/** A tip's tip_succeeded event, from its row. */
export function tipSucceededEvent(t: TipRow) {
  return buildEvent("payment", TipSucceededSchema, {
    tipId: t.tip_id,
    workerId: t.worker_id ?? "",
    venueId: t.venue_id,
    qrCodeId: t.qr_code_id,
    amount: kes(t.amount_minor),
    fee: kes(t.fee_minor),
    net: kes(t.worker_receives_minor),
    method: PaymentMethod.MPESA,
    mpesaReceipt: t.mpesa_receipt ?? "",
    customerPhoneMasked: t.phone_masked,
    rating: t.rating,
    message: t.message,
    createdBy: t.customer_subject,
    ...replacedFailure(t),
  }, t.tip_id);
}

/** A tip_succeeded's replaced failure (KEEP_REPLACED_FAILURE), when the tip had one. */
export function replacedFailure(t: Pick<TipRow, "replaced_failure_at" | "replaced_failure_code">) {
  if (!t.replaced_failure_at) return {};
  return { replacedFailureAt: timestampFromDate(t.replaced_failure_at), replacedFailureCode: t.replaced_failure_code ?? "" };
}

/**
 * Ends a still-pending tip nobody answered for: in one statement when its push
 * was answered (`checkoutRequestId`, as leased) and M-Pesa said it was not paid
 * yet, else in a transaction that also flags it: no CheckoutRequestID to ask
 * about, or the last STK query failed (`queryFailure`), so the customer may have
 * paid (the usual tip is neither).
 */
async function expireTip(deps: Deps, tipId: string, checkoutRequestId: string | null, queryFailure?: DarajaError): Promise<boolean> {
  const done = checkoutRequestId && !queryFailure
    ? Boolean(await endPushedTip(deps.ctx.pool, tipId, checkoutRequestId, "expired", "expired", resultMessage("expired")))
    : await withTransaction(deps.ctx.pool, async (tx) => {
    const row = checkoutRequestId
      ? await endPushedTip(tx, tipId, checkoutRequestId, "expired", "expired", resultMessage("expired"))
      : await expireUnpushedTip(tx, tipId);
    if (!row) return false;
    const detail = row.checkout_request_id
      // Its callback never came and M-Pesa could not say: a payment only a late callback or the paybill statement shows.
      ? `tip expired while M-Pesa's STK query could not say whether it was paid (${queryFailure!.message.slice(0, 160)}): the customer may have paid; match it against the paybill statement`
      // The push's answer never reached us (the process stopped or the answer timed out) and no
      // callback came: nothing can be asked by STK query, yet the customer may have paid.
      : "tip expired without a CheckoutRequestID: the push may have reached the customer; match it against the paybill statement";
    await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "flag", tipId, workerId: row.worker_id ?? undefined, phoneMasked: row.phone_masked, detail });
    return true;
  });
  if (done) paymentMetrics(deps.ctx.metrics).tips.inc({ status: "expired", method: "mpesa" });
  deps.changes.announce(tipId);
  return done;
}

export interface ReconcileCounts {
  queried: number;
  settled: number;
  stillPending: number;
}

/**
 * One pass: tips pending past their deadline are asked about (STK query) and
 * settled like a callback would. Rows are leased with SKIP LOCKED, so
 * replicas running this together never work on the same tip.
 */
export async function reconcileTips(deps: Deps, limit: number): Promise<ReconcileCounts> {
  const { pool } = deps.ctx;
  const { counts } = await queryDueTips(deps, limit);
  // Successes whose wallet entry has not been recorded yet (wallet was down, or a crash).
  // All at once: they go to wallet in one call and are recorded by one statement (credits.ts).
  const uncredited = await uncreditedTips(pool, "mpesa", limit);
  const credits = await Promise.allSettled(uncredited.map((tipId) => postCredit(deps, tipId)));
  await triedCredits(pool, uncredited);
  await reconcileC2b(deps, limit);
  await sendReceipts(deps, limit);
  // After the pass's other work: a recording that fails on every try must not stop it.
  const failed = credits.find((c) => c.status === "rejected");
  if (failed) throw failed.reason;
  return counts;
}

/**
 * An admin's re-query of one pending tip (made due first): that tip alone is asked about and settled, as a
 * pass would; none of the pass's other work, whose failures (another tip's credit) are not the admin's answer.
 * False when it was not due or a pass holds it now.
 */
export async function requeryTip(deps: Deps, tipId: string): Promise<boolean> {
  const { counts: { settled, stillPending }, failure } = await queryDueTips(deps, 1, tipId);
  // The pass only logs a failed query and asks again later; an admin who asked is told that M-Pesa was not asked.
  if (failure && !settled) throw requeryFailure("tip_id", "STK query", failure);
  return settled + stillPending > 0;
}

/**
 * The M-Pesa pass's read of due tips ($1 the limit, $2 the service's time): the rows another transaction holds are
 * skipped. With `oneTip` ($3, an admin's re-query), that tip alone, its row waited for.
 */
export const dueMpesaTipsSql = (oneTip: boolean) => `SELECT * FROM payment.tips
  WHERE status = 'pending' AND method = 'mpesa' AND next_check_at <= $2 AND (lease_until IS NULL OR lease_until < now())${oneTip ? " AND tip_id = $3" : ""}
  ORDER BY next_check_at LIMIT $1 FOR UPDATE${oneTip ? "" : " SKIP LOCKED"}`;

/** A pass's queries: what they settled, and the last STK query that failed (logged, asked again at the next check). */
interface TipQueries {
  counts: ReconcileCounts;
  failure?: DarajaError;
}

/** Expires a pending tip whose push was never answered (no CheckoutRequestID), with its event. */
async function expireUnpushedTip(tx: Queryable, tipId: string): Promise<TipRow | undefined> {
  const { rows } = await tx.query<TipRow>(
    `UPDATE payment.tips SET status = 'expired', result_code = 'expired', result_message = $2, completed_at = now()
      WHERE tip_id = $1 AND status = 'pending' RETURNING *`,
    [tipId, resultMessage("expired")],
  );
  if (rows[0]) await emitTipFailed(tx, rows[0]);
  return rows[0];
}

/** Pending tips past their deadline (or `tipId` alone, if due), leased, asked about by STK query and settled or expired. */
async function queryDueTips(deps: Deps, limit: number, tipId?: string): Promise<TipQueries> {
  const { pool } = deps.ctx;
  const config = deps.config();
  // Deadlines and expiry are rules read on the service's clock (a test moves it); leases stay on the database's time.
  const clock = clockOf(deps.ctx);
  const { tips, lease } = await withTransaction(pool, async (tx) => {
    // A pass skips a row another transaction holds; a re-query of one tip waits for it (requery-lock.ts).
    if (tipId) await waitBrieflyForLocks(tx);
    const { rows } = await tx.query<TipRow>(dueMpesaTipsSql(tipId !== undefined), tipId ? [limit, new Date(clock.now()), tipId] : [limit, new Date(clock.now())]);
    return { tips: rows, lease: await leaseTips(tx, rows, config.reconcileLeaseMs) };
  });
  const counts: ReconcileCounts = { queried: 0, settled: 0, stillPending: 0 };
  let failure: DarajaError | undefined;
  for (const leased of tips) {
    // The queries before (a slow Daraja) may have outlived the pass's lease, and another replica leased this tip
    // meanwhile: it is asked about only while still this pass's, as it is now (its lease renewed for the query).
    const renewed = await renewTipLease(pool, leased.tip_id, lease, config.reconcileLeaseMs);
    if (!renewed) continue;
    const tip = renewed.row;
    const expiresAt = tip.deadline_at.getTime() + config.stkExpireAfterMs;
    let settled = false;
    let outcome: string | undefined;
    let queryFailure: DarajaError | undefined;
    // M-Pesa still deciding: no failure of the query, and no answer either. Expired so, the tip is flagged as one
    // whose query failed is: a lost callback would leave its money seen by nobody.
    let undecided: DarajaError | undefined;
    try {
      if (tip.checkout_request_id && config.daraja) {
        counts.queried++;
        try {
          const q = await deps.daraja().stkQuery(tip.checkout_request_id);
          const r = await applyQueryOutcome(deps, tip.tip_id, {
            source: "query",
            checkoutRequestId: tip.checkout_request_id,
            merchantRequestId: q.MerchantRequestID,
            // A string in the query's answer ("0", "1032"); never a number to parse.
            resultCode: String(q.ResultCode ?? "").trim(),
            resultDesc: q.ResultDesc,
          });
          settled = r !== "unknown";
          if (settled) outcome = `query_${r}`;
        } catch (err) {
          if (!(err instanceof DarajaError)) throw err;
          if (err.kind !== "processing") {
            // Not "query_failed" (the query found the tip failed, a callback lost): the query itself did not answer.
            outcome = "query_error";
            failure = queryFailure = err;
            deps.ctx.logger.warn({ tipId: tip.tip_id, err }, "STK query failed");
          } else {
            undecided = err;
          }
        }
      }
      if (!settled && clock.now() >= expiresAt) {
        settled = await expireTip(deps, tip.tip_id, tip.checkout_request_id, queryFailure ?? undecided);
        if (settled) outcome = "expired";
      }
    } finally {
      // Only this pass's own lease: a query that outlived it finds the tip leased by another replica since,
      // whose lease let go here would let a third ask beside it; and that replica counts its own check.
      const backoffMs = Math.min(60_000, 5_000 * 2 ** Math.min(tip.checks, 4));
      await pool.query(
        `UPDATE payment.tips SET lease_until = NULL, checks = checks + 1,
           next_check_at = LEAST($4::timestamptz + make_interval(secs => $2::double precision / 1000), GREATEST($4::timestamptz, to_timestamp($3::double precision / 1000)))
         WHERE tip_id = $1 AND lease_until = $5::timestamptz`,
        [tip.tip_id, backoffMs, expiresAt, new Date(clock.now()), renewed.lease],
      );
    }
    if (settled) counts.settled++;
    else counts.stillPending++;
    paymentMetrics(deps.ctx.metrics).reconciliation.inc({ outcome: outcome ?? (settled ? "settled" : "still_pending") });
  }
  return { counts, failure };
}

/**
 * Leases `rows` (tips of either method) for `leaseMs`, in one statement: its lease_until as PostgreSQL's text, to
 * the microsecond ("" for none). It names this lease: a later one is taken only once it lapsed, at now() + the
 * lease time, so it is always later; a pass lets go of a tip only while it holds this lease.
 */
export async function leaseTips(tx: Queryable, rows: { tip_id: string }[], leaseMs: number): Promise<string> {
  if (!rows.length) return "";
  const { rows: [leased] } = await tx.query<{ lease: string }>(
    `UPDATE payment.tips SET lease_until = now() + make_interval(secs => $2::double precision / 1000) WHERE tip_id = ANY($1::uuid[])
      RETURNING lease_until::text AS lease`,
    [rows.map((r) => r.tip_id), leaseMs],
  );
  return leased.lease;
}

/**
 * The tip as it is now, its lease renewed for `leaseMs`, if `lease` (a pass's, from leaseTips) is still the tip's;
 * undefined when another pass leased it since. Checked and renewed in one statement: a replica leasing it at the
 * same moment waits for this one, then finds it leased.
 */
export async function renewTipLease<Row = TipRow>(db: Queryable, tipId: string, lease: string, leaseMs: number): Promise<{ row: Row; lease: string } | undefined> {
  const { rows: [row] } = await db.query<Row & { lease: string }>(
    `UPDATE payment.tips SET lease_until = now() + make_interval(secs => $3::double precision / 1000)
      WHERE tip_id = $1 AND lease_until = $2::timestamptz RETURNING *, lease_until::text AS lease`,
    [tipId, lease, leaseMs],
  );
  return row && { row, lease: row.lease };
}

/**
 * An STK query's answer: a failure for a tip still pending under the queried
 * push ends it in one statement (endPushedTip); anything else (a success, a
 * tip decided meanwhile) is decided by applyStkOutcome, as a callback would be.
 */
async function applyQueryOutcome(deps: Deps, tipId: string, o: StkOutcome & { checkoutRequestId: string }): Promise<ApplyResult> {
  const code = String(o.resultCode).trim().slice(0, 32);
  if (code !== "0" && code !== "") {
    const failed = await endPushedTip(deps.ctx.pool, tipId, o.checkoutRequestId, "failed", code, resultMessage(code));
    if (failed) {
      await afterDecision(deps, tipId, "failed", failed);
      return "failed";
    }
  }
  return applyStkOutcome(deps, tipId, o);
}

/**
 * Tips of `method` whose wallet entry is decided but not recorded, the least
 * tried first (triedCredits), then the oldest: from payment.uncredited, which
 * triggers keep (0015_uncredited_queue.sql), each checked against its tip.
 */
export async function uncreditedTips(db: Queryable, method: "mpesa" | "card", limit: number): Promise<string[]> {
  const { rows } = await db.query<{ tip_id: string }>(
    `SELECT u.tip_id FROM payment.uncredited u JOIN payment.tips t ON t.tip_id = u.tip_id
      WHERE u.method = $1 AND t.credit_key IS NOT NULL AND t.credit_entry_id IS NULL ORDER BY u.attempts, u.completed_at LIMIT $2`,
    [method, limit],
  );
  return rows.map((r) => r.tip_id);
}

/**
 * After a pass tried these tips' credits: those still uncredited wait behind every tip tried fewer times (0035).
 * A queued row another statement holds is skipped, never waited for: the credit statement takes rows out of the
 * queue (its trigger) in its update's order, so waiting for one while holding others could deadlock with it; a
 * tip it holds is leaving the queue anyway.
 */
export async function triedCredits(db: Queryable, tipIds: string[]): Promise<void> {
  if (!tipIds.length) return;
  await db.query(
    `UPDATE payment.uncredited u SET attempts = u.attempts + 1
       FROM (SELECT tip_id FROM payment.uncredited WHERE tip_id = ANY($1::uuid[]) FOR UPDATE SKIP LOCKED) free
      WHERE u.tip_id = free.tip_id`,
    [tipIds],
  );
}

/** A tip's public status changes; used by WatchTip. */
export function isFinal(status: TipStatusCode): boolean {
  return status !== "pending";
}
