// Card tips: created for a quote in the customer's currency, authorised by the
// provider (3-D Secure when the bank asks), checked by the card rules, then
// captured or cancelled, and credited once in the worker's wallet currency at the quoted rate
// (a tip by a venue's own code: in the venue's pool, in KES).
import { createHash } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { asConnectError, clockOf, DependencyUnavailableError, emitEvent, fieldError, formatMoney, InvalidStateError, type Queryable, refusalOfField, timeOrderedUuid, withTransaction } from "@ttip/runtime";
import { PaymentMethod, TipCreatedSchema, TipFailedSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { type FeeQuote, PaymentRail } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { recordAlert } from "../fraud.js";
import { paymentMetrics } from "../metrics.js";
import { oweReceipt } from "../receipts.js";
import { creditKindOf, KEEP_REPLACED_FAILURE, leaseTips, loadTip, renewTipLease, replacedFailure, runAfterCredit, sameRequest, triedCredits, uncreditedTips, type Deps } from "../tips.js";
import type { CardsConfig } from "./config.js";
import { cardResultMessage, type CardTipRow } from "./convert.js";
import { CARD_CURRENCIES, PAYPAL_CURRENCIES, STRIPE_LEAST_MINOR } from "./currencies.js";
import type { CardSplit } from "./ledger.js";
import { CardProviderError, type CardPayment, type CardProvider, type CardProviderName } from "./provider.js";
import { checkAuthorisation } from "./rules.js";
import { newCallbackToken } from "../callback-paths.js";

/** Far above any tip; keeps amounts well inside what every provider and Number() carry exactly. */
const MAX_CARD_MINOR = 10_000_000_00n;

export interface NewCardTip {
  idempotencyKey: string;
  /** "" for a tip to a venue's pool (venueId). */
  workerId: string;
  venueId?: string;
  qrCodeId?: string;
  amount: { currency: string; amountMinor: bigint };
  provider: CardProviderName;
  customerCountry: string;
  customerCoversFee: boolean;
  rating: number;
  message: string;
  customerEmail: string;
  callerSubject?: string;
  /** The customer's language for the e-mailed receipt ("" for English). */
  locale?: string;
}

export interface CreatedCardTip {
  tip: CardTipRow;
  clientSecret: string;
  publicKey: string;
  approveUrl: string;
}

export function cardsConfig(deps: Deps): CardsConfig {
  const c = deps.config().cards;
  if (!c || !deps.cards) throw new InvalidStateError("card tips are not configured on this deployment (STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET)");
  return c;
}

export function providerFor(deps: Deps, name: CardProviderName): CardProvider {
  cardsConfig(deps);
  const p = deps.cards!.provider(name);
  if (!p) throw new InvalidStateError(`card_provider: ${name} is not configured on this deployment`);
  return p;
}

export function splitOf(t: CardTipRow): CardSplit {
  return {
    tipId: t.tip_id,
    workerId: t.worker_id ?? "",
    venueId: t.venue_id,
    paymentId: t.provider_payment_id!,
    provider: t.card_provider!,
    currency: t.currency,
    chargedMinor: t.charged_minor,
    shareMinor: t.worker_share_minor,
    walletCurrency: t.wallet_currency,
    walletMinor: t.worker_receives_minor,
    fx: t.fx_rate ? { rate: t.fx_rate, source: t.fx_rate_source ?? "", time: t.fx_rate_time ?? t.created_at } : undefined,
  };
}

function requestFingerprint(t: NewCardTip): string {
  return createHash("sha256")
    .update(JSON.stringify(["card", t.provider, t.workerId, t.qrCodeId ?? "", t.amount.currency, String(t.amount.amountMinor), t.customerCoversFee, t.rating, t.message]))
    .digest("hex");
}

async function byKey(db: Queryable, key: string): Promise<CardTipRow | undefined> {
  return (await db.query<CardTipRow>("SELECT * FROM payment.tips WHERE idempotency_key = $1", [key])).rows[0];
}

export async function loadCardTip(db: Queryable, tipId: string): Promise<CardTipRow | undefined> {
  return (await loadTip(db, tipId)) as CardTipRow | undefined;
}

/** Idempotent per key, like M-Pesa tips; a retry returns the same provider payment (and its client secret). */
export async function createCardTip(deps: Deps, t: NewCardTip): Promise<CreatedCardTip> {
  const config = cardsConfig(deps);
  const provider = providerFor(deps, t.provider);
  const { pool } = deps.ctx;
  const fp = requestFingerprint(t);
  const existing = await byKey(pool, t.idempotencyKey);
  if (existing) {
    return startPayment(deps, provider, sameRequest(existing, fp, t.callerSubject));
  }
  if (!CARD_CURRENCIES.includes(t.amount.currency)) {
    throw fieldError("amount", `card tips are taken in ${CARD_CURRENCIES.join(", ")}, not ${t.amount.currency}`);
  }
  // PayPal takes no KES: its order would be refused, the tip started and failed, and asked again, failed again.
  if (t.provider === "paypal" && !PAYPAL_CURRENCIES.includes(t.amount.currency)) {
    throw fieldError("amount", `PayPal tips are taken in ${PAYPAL_CURRENCIES.join(", ")}, not ${t.amount.currency}; pay ${t.amount.currency} by card or M-Pesa`);
  }
  if (t.amount.amountMinor > MAX_CARD_MINOR) throw fieldError("amount", "too large for a tip");

  const { quote, paysKes } = await quoteCard(deps, t);
  const pays = quote.customerPays!.amountMinor;
  // What the card is charged (the fee in it when the customer covers it), refused here before anything is stored:
  // Stripe's refusal came after the tip's start, as "try again", which failed again.
  const least = t.provider === "stripe" ? STRIPE_LEAST_MINOR[t.amount.currency] : undefined;
  if (least !== undefined && pays < least) throw fieldError("amount", `a card tip is at least ${formatMoney(least, t.amount.currency)}`);
  const walletMinor = quote.workerReceives!.amountMinor;
  const share = quote.conversion?.from?.amountMinor ?? walletMinor;
  if (paysKes > config.rules.maxPerTipKesMinor) {
    throw fieldError("amount", `a card tip may be at most KES ${config.rules.maxPerTipKesMinor / 100n} (this one is about KES ${paysKes / 100n})`);
  }
  const tipId = timeOrderedUuid();
  const now = clockOf(deps.ctx).now();
  // The tip and its tip_created (the customer chose an amount and asked to pay, as for M-Pesa) in one commit.
  const inserted = await withTransaction(pool, async (tx) => {
    const row = await insertCardTip(tx, t, { tipId, fp, quote, pays, paysKes, share, walletMinor, now, config });
    if (row) await emitCardTipCreated(tx, row);
    return row;
  });
  if (inserted) paymentMetrics(deps.ctx.metrics).tips.inc({ status: "created", method: "card" });
  return startPayment(deps, provider, sameRequest(inserted ?? (await byKey(pool, t.idempotencyKey))!, fp, t.callerSubject));
}

interface CardTipValues {
  tipId: string;
  fp: string;
  quote: FeeQuote;
  pays: bigint;
  /** What the card is charged, in KES: the amount the per-card daily limit counts. */
  paysKes: bigint;
  share: bigint;
  walletMinor: bigint;
  /** The service's clock, as reconcileCardTips reads the deadline and the first check. */
  now: number;
  config: CardsConfig;
}

/** The card tip's row, unless its key has one already (then undefined). */
async function insertCardTip(db: Queryable, t: NewCardTip, v: CardTipValues): Promise<CardTipRow | undefined> {
  const { tipId, fp, quote, pays, paysKes, share, walletMinor, now, config } = v;
  const fx = quote.conversion;
  const { rows } = await db.query<CardTipRow>(
    `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, customer_subject, method, currency, amount_minor,
       fee_minor, charged_minor, worker_receives_minor, fee_schedule_version, customer_covers_fee, phone, phone_masked, rating, message,
       customer_email, status, callback_token, deadline_at, next_check_at, venue_id, qr_code_id,
       card_provider, platform_fee_minor, processing_fee_minor, worker_share_minor, wallet_currency, fx_rate, fx_rate_source, fx_rate_time, customer_country, locale,
       charged_kes_minor)
     VALUES ($1, $2, $3, $4, $5, 'card', $6, $7, $8, $9, $10, $11, $12, '', '', $13, $14, $15, 'pending', $16,
       $17::timestamptz, $29::timestamptz, $18, $19,
       $20, $21, $22, $23, $24, $25, $26, $27, $28, $30, $31)
     ON CONFLICT (idempotency_key) DO NOTHING RETURNING *`,
    [tipId, t.idempotencyKey, fp, t.workerId || null, t.callerSubject ?? "", t.amount.currency, t.amount.amountMinor,
      pays - share, pays, walletMinor, quote.feeScheduleVersion, t.customerCoversFee, t.rating, t.message, t.customerEmail,
      newCallbackToken(), new Date(now + config.expireAfterMs), t.venueId ?? "", t.qrCodeId ?? "",
      t.provider, quote.platformFee!.amountMinor, quote.processingFee!.amountMinor, share, quote.workerReceives!.currency,
      fx?.rate ?? null, fx?.rateSource ?? null, fx?.rateTime ? timestampDate(fx.rateTime) : null, t.customerCountry, new Date(now + config.checkAfterMs), t.locale ?? "", paysKes],
  );
  return rows[0];
}

async function emitCardTipCreated(tx: Queryable, t: CardTipRow) {
  await emitEvent(tx, "payment", TipCreatedSchema, {
    tipId: t.tip_id, workerId: t.worker_id ?? "", venueId: t.venue_id, qrCodeId: t.qr_code_id, amount: { currency: t.currency, amountMinor: t.amount_minor },
    method: PaymentMethod.CARD, createdBy: t.customer_subject,
  }, t.tip_id);
}

/**
 * The tip's quote (credited in the worker's wallet currency, whichever it is: the credit
 * crosses currencies through the FX position) and what the card pays in KES, for the
 * per-tip limit: as it is when the tip is in KES, at the quote's rate when the wallet is
 * in KES, else at wallet's rate now.
 */
async function quoteCard(deps: Deps, t: NewCardTip): Promise<{ quote: FeeQuote; paysKes: bigint }> {
  try {
    const quote = await deps.ledger.quote(t.amount, PaymentRail.CARD, t.workerId ? { workerId: t.workerId } : { venueId: t.venueId! }, t.customerCoversFee);
    const pays = quote.customerPays!;
    const walletMinor = quote.workerReceives!.amountMinor;
    const share = quote.conversion?.from?.amountMinor ?? walletMinor;
    if (pays.currency === "KES") return { quote, paysKes: pays.amountMinor };
    if (quote.workerReceives!.currency === "KES") return { quote, paysKes: share > 0n ? (pays.amountMinor * walletMinor) / share : pays.amountMinor };
    return { quote, paysKes: await deps.ledger.inKes(pays) };
  } catch (err) {
    const e = asConnectError(err, Code.Unavailable);
    if (e.code === Code.InvalidArgument || e.code === Code.FailedPrecondition) throw refusalOfField(e, "amount")!;
    throw new DependencyUnavailableError(`fees cannot be quoted now (${e.rawMessage})`);
  }
}

/**
 * Asks the provider for the payment under a key fixed by the tip, so a
 * CreateTip retried after a lost answer gets the same PaymentIntent, never a second one.
 */
async function startPayment(deps: Deps, provider: CardProvider, tip: CardTipRow): Promise<CreatedCardTip> {
  // A payment the customer already confirmed (a retry after the confirm's answer was lost) has nothing left to
  // confirm: no client secret, so the page shows the tip instead of a card form whose Pay could only fail.
  const result = (p?: CardPayment, row = tip): CreatedCardTip => {
    const open = p?.status === "awaiting_customer" || p?.status === "requires_action";
    return { tip: row, clientSecret: open ? (p.clientSecret ?? "") : "", publicKey: provider.publicKey, approveUrl: open ? (p.nextActionUrl ?? "") : "" };
  };
  if (tip.status !== "pending") return result(undefined);
  let payment: CardPayment;
  try {
    payment = tip.provider_payment_id
      ? await provider.retrieve(tip.provider_payment_id)
      : await provider.create({
          tipId: tip.tip_id,
          amountMinor: tip.charged_minor,
          currency: tip.currency,
          description: `Tip ${tip.tip_id}`,
          idempotencyKey: `ttip-tip-${tip.tip_id}-create`,
          returnUrl: deps.config().cards?.returnUrl || undefined,
        });
  } catch (err) {
    if (!(err instanceof CardProviderError)) throw err;
    if (err.kind === "rejected" && !tip.provider_payment_id) {
      deps.ctx.logger.warn({ tipId: tip.tip_id, err: err.message }, "card payment refused by the provider");
      await failCardTip(deps, tip.tip_id, "provider_refused");
      return result(undefined, (await loadCardTip(deps.ctx.pool, tip.tip_id))!);
    }
    throw new DependencyUnavailableError(`the card provider did not answer (${err.message}); retry with the same idempotency key`);
  }
  const { rows } = await deps.ctx.pool.query<CardTipRow>(
    `UPDATE payment.tips SET provider_payment_id = $2 WHERE tip_id = $1 AND (provider_payment_id IS NULL OR provider_payment_id = $2) RETURNING *`,
    [tip.tip_id, payment.id],
  );
  if (!rows[0]) throw new Error(`tip ${tip.tip_id} already has another provider payment`);
  return result(payment, rows[0]);
}

/** Ends a pending card tip without money (refused, cancelled, expired). */
export async function failCardTip(deps: Deps, tipId: string, code: string, tx?: Queryable): Promise<boolean> {
  const run = async (db: Queryable) => {
    const { rows } = await db.query<CardTipRow>(
      `UPDATE payment.tips SET status = CASE WHEN $2 = 'expired' THEN 'expired' ELSE 'failed' END, result_code = $2, result_message = $3, completed_at = now()
        WHERE tip_id = $1 AND status = 'pending' AND credit_key IS NULL RETURNING *`,
      [tipId, code, cardResultMessage(code)],
    );
    if (rows[0]) await emitCardTipFailed(db, rows[0]);
    return rows[0]?.status;
  };
  const ended = tx ? await run(tx) : await withTransaction(deps.ctx.pool, run);
  // Inside a caller's transaction this counts before its commit: a rollback there would overcount by one (the caller's commit is not ours to wait on).
  if (ended) paymentMetrics(deps.ctx.metrics).tips.inc({ status: ended === "expired" ? "expired" : "failed", method: "card" });
  const done = Boolean(ended);
  // Inside a caller's transaction the caller announces after its commit: watchers must not read the row before it is there.
  if (!tx) deps.changes.announce(tipId);
  return done;
}

export async function emitCardTipFailed(tx: Queryable, t: CardTipRow) {
  await emitEvent(tx, "payment", TipFailedSchema, {
    tipId: t.tip_id, workerId: t.worker_id ?? "", venueId: t.venue_id, qrCodeId: t.qr_code_id, amount: { currency: t.currency, amountMinor: t.amount_minor },
    method: PaymentMethod.CARD, resultCode: t.result_code, reason: t.result_message, createdBy: t.customer_subject,
  }, t.tip_id);
}

export type CardApplyResult = "credited" | "held" | "captured" | "refused" | "declined" | "action" | "failed" | "pending" | "duplicate" | "unknown";

/**
 * Brings a card tip to where its provider payment stands, whoever reports it
 * (a webhook, a capture's answer, reconciliation), in any order, any number
 * of times: a success decides one credit, keyed by the payment id.
 */
export async function applyCardPayment(deps: Deps, provider: CardProvider, payment: CardPayment): Promise<CardApplyResult> {
  const { pool } = deps.ctx;
  const tip = (await pool.query<CardTipRow>("SELECT * FROM payment.tips WHERE provider_payment_id = $1", [payment.id])).rows[0];
  if (!tip) return "unknown";
  switch (payment.status) {
    case "awaiting_customer":
    case "requires_action": {
      // A decline leaves the payment open: the customer may try another card on the same page.
      const code = payment.status === "requires_action" ? "requires_action" : (payment.failureCode ?? "");
      const { rowCount } = await pool.query(
        `UPDATE payment.tips SET result_code = $2, result_message = $3, next_action_url = $4
          WHERE tip_id = $1 AND status = 'pending' AND (result_code, next_action_url) IS DISTINCT FROM ($2, $4)`,
        [tip.tip_id, code, code ? cardResultMessage(code) : "", payment.status === "requires_action" ? (payment.nextActionUrl ?? "") : ""],
      );
      deps.changes.announce(tip.tip_id);
      return rowCount ? (payment.status === "requires_action" ? "action" : "declined") : "duplicate";
    }
    case "processing":
      return "pending";
    case "canceled":
      return (await failCardTip(deps, tip.tip_id, tip.fraud_action === "refuse" ? tip.result_code || "canceled" : "canceled")) ? "failed" : "duplicate";
    case "authorized":
      return authorise(deps, provider, tip, payment);
    case "succeeded":
      return decideCredit(deps, tip, payment);
  }
}

/**
 * Capture or cancel, decided once under the tip's row lock: a webhook and a reconciliation pass (or two deliveries)
 * authorising one tip at once run the card rules, and record their alerts, once; the later one reads the verdict.
 */
async function decideAuthorisation(deps: Deps, tipId: string, full: CardPayment): Promise<"capture" | "cancel" | "credited"> {
  let refused = false;
  const decision = await withTransaction(deps.ctx.pool, async (tx) => {
    const t = (await tx.query<CardTipRow>("SELECT * FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [tipId])).rows[0];
    if (t.credit_key) return "credited";
    // Refused before, or the tip ended (expired): the authorisation must not be taken.
    if (t.status !== "pending" || t.fraud_action === "refuse") return cancelDue(deps, tx, t);
    // This card checked already (another PayPal payer approving after a decline at capture is checked anew); with
    // no card at all, no rule can hit.
    if (t.fraud_action !== "none" || t.card_fingerprint === (full.card?.fingerprint ?? null)) return "capture";
    const verdict = await checkAuthorisation(tx, deps.config().cards!.rules, t, full.card);
    await tx.query(
      `UPDATE payment.tips SET card_fingerprint = $2, card_country = $3, fraud_action = $4, provider_charge_id = COALESCE(provider_charge_id, $5)
        WHERE tip_id = $1`,
      [t.tip_id, full.card?.fingerprint ?? null, full.card?.country ?? null, verdict.action, full.chargeId ?? null],
    );
    for (const h of verdict.hits) await recordAlert(tx, { ...h, tipId: t.tip_id, workerId: t.worker_id ?? undefined });
    if (verdict.action !== "refuse") return "capture";
    refused = await failCardTip(deps, t.tip_id, verdict.code, tx);
    return cancelDue(deps, tx, t);
  });
  if (refused) deps.changes.announce(tipId);
  return decision;
}

/**
 * Records, with the decision to cancel, that the authorisation is to be cancelled at the provider: reconciliation
 * cancels it if this request does not (a crash or a lost answer after the commit), once the request's own calls
 * had their time. Let go once cancelled (cancelDone).
 */
async function cancelDue(deps: Deps, tx: Queryable, t: CardTipRow): Promise<"cancel"> {
  const graceMs = CANCEL_GRACE_TIMEOUTS * (deps.config().cards![t.card_provider!]?.timeoutMs ?? 0);
  // On the service's clock, as the pass reads it (cancelDueAuthorisations).
  const due = new Date(clockOf(deps.ctx).now() + graceMs);
  await tx.query("INSERT INTO payment.card_cancels_due (tip_id, due_at) VALUES ($1, $2) ON CONFLICT (tip_id) DO NOTHING", [t.tip_id, due]);
  return "cancel";
}

/** How many provider timeouts a cancel is left to its request before reconciliation sends it: Stripe's client tries 3 times. */
const CANCEL_GRACE_TIMEOUTS = 3;

/** The authorisation of `tipId` is cancelled (or there is none left to cancel): nothing more to do for it. */
export async function cancelDone(db: Queryable, tipId: string): Promise<void> {
  await db.query("DELETE FROM payment.card_cancels_due WHERE tip_id = $1", [tipId]);
}

/** The card rules on an authorisation: refused ones are cancelled (nothing charged), the rest captured. */
async function authorise(deps: Deps, provider: CardProvider, tip: CardTipRow, payment: CardPayment): Promise<CardApplyResult> {
  if (tip.credit_key) return "duplicate";
  // Events carry the payment without its charge; the card's fingerprint and country are on the charge.
  const full = payment.card ? payment : await provider.retrieve(payment.id);
  const decision = await decideAuthorisation(deps, tip.tip_id, full);
  if (decision === "credited") return "duplicate";
  try {
    if (decision === "cancel") {
      await provider.cancel(payment.id, `ttip-tip-${tip.tip_id}-cancel`, "refused");
      await cancelDone(deps.ctx.pool, tip.tip_id);
      return "refused";
    }
    const captured = await provider.capture(payment.id, `ttip-tip-${tip.tip_id}-capture`);
    if (captured.status === "succeeded") await decideCredit(deps, (await loadCardTip(deps.ctx.pool, tip.tip_id))!, captured);
    return "captured";
  } catch (err) {
    if (!(err instanceof CardProviderError)) throw err;
    if (decision === "capture" && err.kind === "rejected" && err.code === "INSTRUMENT_DECLINED") {
      // PayPal: the funding source was declined at capture; the customer may approve again with another one.
      await deps.ctx.pool.query("UPDATE payment.tips SET result_code = $2, result_message = $3 WHERE tip_id = $1 AND status = 'pending'",
        [tip.tip_id, err.code, cardResultMessage("card_declined")]);
      deps.changes.announce(tip.tip_id);
      return "declined";
    }
    // A capture or cancel already done answers "unexpected state"; anything else is retried by reconciliation.
    deps.ctx.logger.warn({ tipId: tip.tip_id, err: err.message, decision }, "card capture/cancel did not go through; reconciliation retries");
    return "pending";
  }
}

/** A payment the provider confirmed: decides the credit once, then posts it. */
async function decideCredit(deps: Deps, tip: CardTipRow, payment: CardPayment): Promise<CardApplyResult> {
  const problems: string[] = [];
  if (payment.amountMinor !== tip.charged_minor || payment.currency !== tip.currency) {
    problems.push(`paid ${payment.currency} ${payment.amountMinor} instead of ${tip.currency} ${tip.charged_minor}`);
  }
  const decided = await withTransaction(deps.ctx.pool, async (tx) => {
    const { rows } = await tx.query<CardTipRow>("SELECT * FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [tip.tip_id]);
    const t = rows[0];
    if (t.credit_key) return undefined;
    const toSuspense = problems.length > 0 || t.fraud_action === "hold";
    if (problems.length) {
      await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "hold", tipId: t.tip_id, workerId: t.worker_id ?? undefined, detail: `card payment does not match the tip: ${problems.join("; ")}` });
    }
    if (t.status !== "pending") {
      // We had ended it (expired, refused) but the money was taken anyway: still credited, and flagged.
      await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "flag", tipId: t.tip_id, workerId: t.worker_id ?? undefined, detail: `card payment ${payment.id} succeeded after the tip was ${t.status}; credited` });
    }
    const { rows: updated } = await tx.query<CardTipRow>(
      `UPDATE payment.tips SET status = $2, result_code = '0', result_message = $3, credit_key = $4, credit_kind = $5, ${KEEP_REPLACED_FAILURE}, completed_at = now(),
         next_action_url = '', provider_charge_id = COALESCE(provider_charge_id, $6),
         card_fingerprint = COALESCE(card_fingerprint, $7), card_country = COALESCE(card_country, $8)
        WHERE tip_id = $1 RETURNING *`,
      [t.tip_id, toSuspense ? "held_for_review" : "succeeded", cardResultMessage(toSuspense ? "review" : "0"), `card:${payment.id}`,
        creditKindOf(t, toSuspense), payment.chargeId ?? null, payment.card?.fingerprint ?? null, payment.card?.country ?? null],
    );
    return updated[0];
  });
  deps.changes.announce(tip.tip_id);
  if (!decided) {
    await postCardCredit(deps, tip.tip_id);
    return "duplicate";
  }
  await postCardCredit(deps, tip.tip_id, decided);
  return decided.credit_kind === "suspense" ? "held" : "credited";
}

/** Posts the decided credit once (the wallet dedupes on card:<payment id>); a failure is retried by reconciliation. */
export async function postCardCredit(deps: Deps, tipId: string, committed?: CardTipRow): Promise<boolean> {
  const tip = committed ?? (await loadCardTip(deps.ctx.pool, tipId));
  if (!tip?.credit_key || tip.credit_entry_id || !deps.cards) return false;
  let entryId: string;
  try {
    entryId = await deps.cards.ledger.credit(splitOf(tip), tip.credit_kind === "suspense" ? "suspense" : "recipient");
  } catch (err) {
    deps.ctx.logger.warn({ tipId, err }, "card credit failed; reconciliation will retry");
    return false;
  }
  const recorded = await withTransaction(deps.ctx.pool, async (tx) => {
    const { rows } = await tx.query<CardTipRow>(
      "UPDATE payment.tips SET credit_entry_id = $2, credited_at = now() WHERE tip_id = $1 AND credit_entry_id IS NULL RETURNING *",
      [tipId, entryId || "posted"],
    );
    const t = rows[0];
    if (t && t.credit_kind !== "suspense") await emitCardTipSucceeded(tx, t);
    return t;
  });
  if (recorded) observeCardCredit(deps, recorded);
  if (recorded && recorded.credit_kind !== "suspense") runAfterCredit(deps, recorded);
  return Boolean(recorded);
}

/** The same figures the M-Pesa path records on credit, labelled card. */
function observeCardCredit(deps: Deps, t: CardTipRow): void {
  const m = paymentMetrics(deps.ctx.metrics);
  m.tips.inc({ status: t.credit_kind === "suspense" ? "held" : "succeeded", method: "card" });
  const kes = tipInKesMinor(t);
  if (t.credit_kind !== "suspense" && kes !== undefined) m.amounts.observe({ method: "card" }, Number(kes) / 100);
  // completed_at is set when the webhook (or reconciliation's retrieve) decided the credit.
  if (t.completed_at) m.creditLatency.observe({ method: "card" }, Math.max(0, Date.now() - t.completed_at.getTime()) / 1000);
}

/** The tip's amount in KES minor units: as charged when taken in KES, else at the tip's quoted rate (a decimal string, read exactly). */
export function tipInKesMinor(t: Pick<CardTipRow, "currency" | "amount_minor" | "wallet_currency" | "fx_rate">): bigint | undefined {
  if (t.currency === "KES") return t.amount_minor;
  const m = t.wallet_currency === "KES" ? /^(\d{1,12})(?:\.(\d{1,12}))?$/.exec(t.fx_rate ?? "") : null;
  if (!m) return undefined;
  const frac = m[2] ?? "";
  // Card currencies and KES both have two minor digits, so minor units convert at the major-unit rate.
  return (t.amount_minor * BigInt(m[1] + frac)) / 10n ** BigInt(frac.length);
}

/** A card tip paid to its recipient: announced, and its receipt owed to the address the customer gave for it. */
export async function emitCardTipSucceeded(tx: Queryable, t: CardTipRow) {
  if (t.customer_email) await oweReceipt(tx, t.tip_id);
  await emitEvent(tx, "payment", TipSucceededSchema, {
    tipId: t.tip_id,
    workerId: t.worker_id ?? "",
    venueId: t.venue_id,
    qrCodeId: t.qr_code_id,
    amount: { currency: t.currency, amountMinor: t.amount_minor },
    fee: { currency: t.currency, amountMinor: t.fee_minor },
    net: { currency: t.wallet_currency, amountMinor: t.worker_receives_minor },
    method: PaymentMethod.CARD,
    stripePaymentId: t.card_provider === "stripe" ? (t.provider_payment_id ?? "") : "",
    rating: t.rating,
    message: t.message,
    createdBy: t.customer_subject,
    ...replacedFailure(t),
  }, t.tip_id);
}

/** The card pass's read of due tips ($1 the limit, $2 the service's time); rows another transaction holds are skipped. */
export const DUE_CARD_TIPS_SQL = `SELECT * FROM payment.tips WHERE status = 'pending' AND method = 'card' AND next_check_at <= $2
    AND (lease_until IS NULL OR lease_until < now())
  ORDER BY next_check_at LIMIT $1 FOR UPDATE SKIP LOCKED`;

/**
 * Lost webhooks: pending card tips are asked about when due and brought to
 * where their payment stands; those still waiting past their deadline are
 * cancelled and expire. Credits that failed to post are retried.
 */
export async function reconcileCardTips(deps: Deps, limit: number): Promise<{ checked: number; settled: number }> {
  if (!deps.config().cards || !deps.cards) return { checked: 0, settled: 0 };
  const { pool } = deps.ctx;
  // Deadlines and checks are rules read on the service's clock (a test moves it), as the M-Pesa pass reads them;
  // leases stay on the database's time.
  const clock = clockOf(deps.ctx);
  const { leased, lease } = await withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<CardTipRow>(DUE_CARD_TIPS_SQL, [limit, new Date(clock.now())]);
    return { leased: rows, lease: await leaseTips(tx, rows, deps.config().reconcileLeaseMs) };
  });
  let settled = 0;
  for (const before of leased) {
    // The calls before (a slow provider) may have outlived the pass's lease, and another replica leased this tip
    // meanwhile: it is worked on only while still this pass's, as it is now (its lease renewed for the call).
    const renewed = await renewTipLease<CardTipRow>(pool, before.tip_id, lease, deps.config().reconcileLeaseMs);
    if (!renewed) continue;
    const tip = renewed.row;
    const provider = deps.cards.provider(tip.card_provider!);
    try {
      if (!provider) continue;
      const past = clock.now() >= tip.deadline_at.getTime();
      if (!tip.provider_payment_id) {
        if (past && (await failCardTip(deps, tip.tip_id, "expired"))) settled++;
        continue;
      }
      const payment = await provider.retrieve(tip.provider_payment_id);
      const r = await applyCardPayment(deps, provider, payment);
      if (r === "credited" || r === "held" || r === "captured" || r === "refused" || r === "failed") settled++;
      // Declined at capture (PayPal's funding source) to its deadline: ended, as nothing moved. Left pending, its
      // order stayed approved, every pass captured it again, and the tip waited for good. (A decline while the
      // customer was still asked is cancelled and expired below.)
      else if (past && r === "declined" && payment.status === "authorized") {
        if (await failCardTip(deps, tip.tip_id, "card_declined")) settled++;
      } else if (past && (payment.status === "awaiting_customer" || payment.status === "requires_action")) {
        await provider.cancel(payment.id, `ttip-tip-${tip.tip_id}-expire`, "abandoned");
        if (await failCardTip(deps, tip.tip_id, "expired")) settled++;
      }
    } catch (err) {
      deps.ctx.logger.warn({ tipId: tip.tip_id, err: (err as Error).message }, "card tip reconciliation failed; next pass retries");
    } finally {
      // Only this pass's own lease: a provider call that outlived it finds the tip leased by another replica
      // since, whose lease let go here would let a third ask beside it; and that replica counts its own check.
      await pool.query(
        `UPDATE payment.tips SET lease_until = NULL, checks = checks + 1,
           next_check_at = LEAST($3::timestamptz + make_interval(secs => LEAST(600, 30 * 2 ^ LEAST(checks, 5))), GREATEST($3::timestamptz, deadline_at))
         WHERE tip_id = $1 AND lease_until = $2::timestamptz`,
        [tip.tip_id, renewed.lease, new Date(clock.now())],
      );
    }
  }
  const uncredited = await uncreditedTips(pool, "card", limit);
  for (const tipId of uncredited) await postCardCredit(deps, tipId);
  await triedCredits(pool, uncredited);
  return { checked: leased.length, settled };
}
