// After a card tip is paid: refunds (asked by an admin) and chargebacks
// (reported by the provider). The worker's share is taken back from the
// wallet (a venue tip's from the pool) before money leaves; only a lost
// chargeback may leave the balance below zero, and later tips pay it back first.
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { asConnectError, auditAdminActionOf, ConcurrentChangeError, DependencyUnavailableError, fieldError, formatMoney, IdempotencyConflictError, InvalidStateError, NotFoundError, withTransaction, type Queryable } from "@ttip/runtime";
import { recordAlert } from "../fraud.js";
import type { Deps } from "../tips.js";
import type { CardTipRow } from "./convert.js";
import type { Portion } from "./ledger.js";
import { CardProviderError, type CardEvent, type CardProvider } from "./provider.js";
import { emitTipReversed, TipReversalKind } from "./reversals.js";
import { loadCardTip, providerFor, splitOf } from "./tips.js";

/** The tip an event is about, by the provider's payment id or, for PayPal's refunds and disputes, its capture id. */
async function tipOfEvent(deps: Deps, ev: { paymentId: string; chargeId?: string }): Promise<CardTipRow | undefined> {
  const { rows } = await deps.ctx.pool.query<CardTipRow>(
    "SELECT * FROM payment.tips WHERE provider_payment_id = $1 OR provider_charge_id = $2 LIMIT 1",
    [ev.paymentId || null, ev.chargeId || null],
  );
  return rows[0];
}

interface RefundRow {
  refund_id: string;
  tip_id: string;
  amount_minor: bigint;
  wallet_minor: bigint;
  status: "new" | "debited" | "sent" | "failed";
  /** The admin's words when the refund was asked for: sent with it on every try (the provider's key holds its parameters). */
  reason: string;
  provider_refund_id: string | null;
  failure: string;
  /** Until when a request holds the refund to send it (claimRefund). */
  sending_until: Date | null;
  /** The admin who asked for it. */
  requested_by: string;
}

/** `amount` of the charge as a portion of the tip: the worker's part in proportion, rounded down (the last one takes the rest). */
function portionOf(tip: CardTipRow, amountMinor: bigint, walletLeft: bigint, last: boolean): Portion {
  const wallet = last ? walletLeft : (tip.worker_receives_minor * amountMinor) / tip.charged_minor;
  return {
    chargedMinor: amountMinor,
    shareMinor: (tip.worker_share_minor * amountMinor) / tip.charged_minor,
    walletMinor: wallet > walletLeft ? walletLeft : wallet,
  };
}

interface RefundInput {
  tipId: string; idempotencyKey: string; amount?: { currency: string; amountMinor: bigint }; reason: string; requestedBy: string;
  /** Records the admin's action in the transaction that takes the money back, once per refund. */
  record?: (tx: Queryable, amount: string) => Promise<void>;
}

/**
 * Refunds a paid card tip, whole or in part, once per idempotency key. A refund
 * moves new → debited (the worker's share taken back) → sent (the provider
 * refunded the card); a retry resumes from the step it reached.
 */
export async function refundCardTip(deps: Deps, input: RefundInput): Promise<{ tip: CardTipRow; refundId: string }> {
  const { pool } = deps.ctx;
  const tip = await loadCardTip(pool, input.tipId);
  if (!tip) throw new NotFoundError("tip_id: no such tip");
  if (tip.method !== "card") throw new InvalidStateError("tip_id: only card tips are refunded here (an M-Pesa tip is reversed: mpesa-reversals.ts)");
  const provider = providerFor(deps, tip.card_provider!);
  const refund = await refundUnderKey(deps, tip, input);
  const portion = refundPortion(tip, refund);
  if (refund.status === "new") await takeBackWorkerShare(deps, tip, refund, portion, input.record);
  // The words it was first sent with, not a retry's: under the same key other parameters are refused by the provider
  // (Stripe's idempotency_error), read as a refusal of a refund it made.
  if (refund.status === "debited") await sendRefund(deps, provider, tip, refund, portion, refund.reason);
  if (refund.status === "failed") throw new InvalidStateError(`tip_id: this refund failed earlier (${refund.failure})`);
  deps.changes.announce(tip.tip_id);
  return { tip: (await loadCardTip(pool, tip.tip_id))!, refundId: refund.provider_refund_id ?? refund.refund_id };
}

/** What `refund` takes back of `tip`. */
function refundPortion(tip: CardTipRow, refund: RefundRow): Portion {
  return { chargedMinor: refund.amount_minor, shareMinor: (tip.worker_share_minor * refund.amount_minor) / tip.charged_minor, walletMinor: refund.wallet_minor };
}

/** Whether the tip ($1) has a dispute open or lost: read under its row lock, by card_disputes_tip. */
export const TIP_DISPUTED_SQL = "SELECT 1 FROM payment.card_disputes WHERE tip_id = $1 AND status IN ('open', 'lost') LIMIT 1";

/** The refund made under the key before, else a new one for the amount asked (all that is left by default), checked against the tip. */
async function refundUnderKey(deps: Deps, tip: CardTipRow, input: RefundInput): Promise<RefundRow> {
  const { pool } = deps.ctx;
  const refund = (await pool.query<RefundRow>("SELECT * FROM payment.card_refunds WHERE tip_id = $1 AND idempotency_key = $2", [tip.tip_id, input.idempotencyKey])).rows[0];
  if (refund) {
    // Another amount under the key is another request (its words may differ: the reason is not compared).
    const asked = input.amount?.amountMinor ? input.amount : undefined;
    if (asked && (asked.currency !== tip.currency || asked.amountMinor !== refund.amount_minor)) throw new IdempotencyConflictError(input.idempotencyKey, "RefundTip");
    return refund;
  }
  if (!(tip.status === "succeeded" || rejectedInSuspense(tip)) || !tip.credit_entry_id) {
    throw new InvalidStateError("tip_id: the tip is not a paid card tip (credited, or rejected after review with its money in suspense)");
  }
  // Under the tip's row lock (which a refund's move to debited and a dispute's opening take too): its
  // refunded amounts as they are now, no dispute of it (the chargeback decides; opened first, it did not
  // count this refund), and no refund of it unfinished, whose share the wallet may have taken already
  // (its answer lost, its deadline passed) without the tip counting it.
  await withTransaction(pool, async (tx) => {
    const { rows: [now] } = await tx.query<Pick<CardTipRow, "refunded_minor" | "reversed_wallet_minor">>(
      "SELECT refunded_minor, reversed_wallet_minor FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [tip.tip_id]);
    const { rowCount: disputed } = await tx.query(TIP_DISPUTED_SQL, [tip.tip_id]);
    if (disputed) throw new InvalidStateError("tip_id: the payment is disputed; the chargeback decides");
    const { rows: [unfinished] } = await tx.query<{ idempotency_key: string }>(
      "SELECT idempotency_key FROM payment.card_refunds WHERE tip_id = $1 AND status = 'new' LIMIT 1", [tip.tip_id]);
    if (unfinished) throw new InvalidStateError(`tip_id: a refund of this tip has not finished; retry it with its idempotency key "${unfinished.idempotency_key}" first, or wait: the reconciliation pass finishes it within minutes`);
    const portion = newRefund({ ...tip, ...now }, input);
    await tx.query(
      `INSERT INTO payment.card_refunds (refund_id, tip_id, idempotency_key, amount_minor, wallet_minor, status, reason, requested_by)
       VALUES ($1, $2, $3, $4, $5, 'new', $6, $7) ON CONFLICT (tip_id, idempotency_key) DO NOTHING`,
      [randomUUID(), tip.tip_id, input.idempotencyKey, portion.chargedMinor, portion.walletMinor, input.reason, input.requestedBy],
    );
  });
  return (await pool.query<RefundRow>("SELECT * FROM payment.card_refunds WHERE tip_id = $1 AND idempotency_key = $2", [tip.tip_id, input.idempotencyKey])).rows[0];
}

/** The portion a new refund of `tip` takes: the amount asked (all that is left by default), checked against what is left. */
function newRefund(tip: CardTipRow, input: RefundInput): Portion {
  const left = tip.charged_minor - tip.refunded_minor;
  const amount = input.amount?.amountMinor ? input.amount : { currency: tip.currency, amountMinor: left };
  if (amount.currency !== tip.currency) throw fieldError("amount", `the tip was paid in ${tip.currency}`);
  if (amount.amountMinor <= 0n || amount.amountMinor > left) throw fieldError("amount", `between 1 and ${left} minor units are left to refund`);
  const walletLeft = tip.worker_receives_minor - tip.reversed_wallet_minor;
  return portionOf(tip, amount.amountMinor, walletLeft, amount.amountMinor === left);
}

/**
 * A held card tip an admin rejected: the card was charged, and the worker's part waits in suspense (the rejection
 * closed its approval, so it cannot be paid out) until it is refunded to the card, as the customer was told.
 */
const rejectedInSuspense = (tip: CardTipRow) => tip.status === "failed" && tip.result_code === "review_rejected" && tip.credit_kind === "suspense";

/** new → debited: the worker's share first, so a refund is never paid out of money already withdrawn. */
async function takeBackWorkerShare(deps: Deps, tip: CardTipRow, refund: RefundRow, portion: Portion, record: RefundInput["record"]): Promise<void> {
  const { pool } = deps.ctx;
  // A rejected tip's worker part comes out of suspense, where it waits: the worker never had it.
  const fromHeld = rejectedInSuspense(tip) ? portion.walletMinor : undefined;
  try {
    await deps.cards!.ledger.reverse(`card-refund:${refund.refund_id}`, splitOf(tip), portion, { fromHeld, description: `Refund of card tip ${tip.tip_id}` });
  } catch (err) {
    const e = asConnectError(err);
    if (e.code === Code.AlreadyExists) {
      // The key holds another entry: a retry would be refused alike. The refund stays 'new' (no other refund of the tip starts) for someone to look at.
      deps.ctx.logger.error({ tipId: tip.tip_id, refundId: refund.refund_id, err: e.rawMessage }, "card refund's reversal key holds another wallet entry");
      throw new InvalidStateError(`tip_id: the wallet holds another entry under this refund's key (card-refund:${refund.refund_id}); the refund cannot finish and nothing was sent to the card: support must look at it`);
    }
    if (e.code !== Code.FailedPrecondition) throw new DependencyUnavailableError(`the wallet cannot take the refund now (${e.rawMessage}); retry with the same idempotency key`);
    await withTransaction(pool, async (tx) => {
      await tx.query("SELECT 1 FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [tip.tip_id]);
      const { rowCount } = await tx.query("UPDATE payment.card_refunds SET status = 'failed', failure = $2 WHERE refund_id = $1 AND status = 'new'", [refund.refund_id, "worker balance too low"]);
      if (rowCount) await shareBackToDispute(tx, tip, refund.wallet_minor);
    });
    throw new InvalidStateError(tip.worker_id
      ? "tip_id: the worker's balance no longer covers this refund (already withdrawn)"
      : "tip_id: the venue's pool no longer covers this refund (already distributed)");
  }
  await withTransaction(pool, async (tx) => {
    const { rowCount } = await tx.query("UPDATE payment.card_refunds SET status = 'debited' WHERE refund_id = $1 AND status = 'new'", [refund.refund_id]);
    if (rowCount) {
      const { rows: [now] } = await tx.query<CardTipRow>(
        // A dispute opened since this refund began shows still: it is what decides now.
        `UPDATE payment.tips SET refunded_minor = refunded_minor + $2, reversed_wallet_minor = reversed_wallet_minor + $3,
           card_state = CASE WHEN card_state IN ('disputed', 'dispute_lost') THEN card_state ELSE 'refunded' END WHERE tip_id = $1 RETURNING *`,
        [tip.tip_id, refund.amount_minor, refund.wallet_minor],
      );
      await emitTipReversed(tx, now, { kind: TipReversalKind.REFUND, reversalId: refund.refund_id, chargedMinor: refund.amount_minor, walletMinor: refund.wallet_minor });
      await record?.(tx, formatMoney(refund.amount_minor, tip.currency));
    }
  });
  refund.status = "debited";
}

/** The admin's refund, finished by the pass: audited under the admin who asked for it, in the move to debited. */
function recordOfRefundLeftNew(tip: CardTipRow, refund: RefundRow): RefundInput["record"] {
  return (tx, amount) => auditAdminActionOf(tx, "payment", { userId: refund.requested_by, ip: "" }, {
    action: AuditAction.TIP_REFUNDED, target: `tip:${tip.tip_id}`, detail: `${amount}: ${refund.reason} (finished by the reconciliation pass)`,
  });
}

/** How many provider timeouts a send's claim lasts: Stripe's client tries 3 times; PayPal asks a token, the order and the refund. */
const REFUND_CLAIM_TIMEOUTS = 6;

/**
 * debited → sent: the provider refunds the card, sent by one request at a time. Refused: the worker's share goes back
 * and the refund fails.
 */
async function sendRefund(deps: Deps, provider: CardProvider, tip: CardTipRow, refund: RefundRow, portion: Portion, reason: string): Promise<void> {
  const { pool } = deps.ctx;
  const claim = await claimRefund(deps, tip, refund);
  if (!claim) return;
  let made: { refundId: string; status: string };
  try {
    made = await provider.refund({
      paymentId: tip.provider_payment_id!, chargeId: tip.provider_charge_id ?? undefined, amountMinor: refund.amount_minor, currency: tip.currency,
      idempotencyKey: `ttip-refund-${refund.refund_id}`, reason,
    });
  } catch (err) {
    if (!(err instanceof CardProviderError) || err.kind === "unknown") {
      // Not known to be refused: this request's claim is let go (not a later one's), so a retry sends it again at once.
      await pool.query("UPDATE payment.card_refunds SET sending_until = NULL WHERE refund_id = $1 AND sending_until = $2::timestamptz", [refund.refund_id, claim]);
      if (err instanceof CardProviderError) throw new DependencyUnavailableError(`the card provider did not answer (${err.message}); retry with the same idempotency key`);
      throw err;
    }
    await undoRefusedRefund(deps, tip, refund, portion, err.message);
    throw new InvalidStateError(`the card provider refused the refund: ${err.message}`);
  }
  if (REFUND_FAILED.test(made.status)) {
    // Made and failed at once (PayPal's FAILED, Stripe's failed): nothing reached the card, as with a refusal.
    await undoRefusedRefund(deps, tip, refund, portion, `the refund ${made.refundId} ${made.status.toLowerCase()}`, { providerRefundId: made.refundId });
    throw new InvalidStateError(`the card provider could not refund the card: its refund ${made.refundId} ${made.status.toLowerCase()}`);
  }
  await markRefundSent(deps, tip, refund, made.refundId);
}

/** A refund's status, as Stripe (failed, canceled) or PayPal (FAILED, CANCELLED) answers one that did not reach the card. */
const REFUND_FAILED = /^(failed|canceled|cancelled)$/i;

/** How long a refund's claim lasts: past it, a sender that died no longer holds the refund. */
function refundClaimMs(deps: Deps, provider: CardTipRow["card_provider"]): number {
  return REFUND_CLAIM_TIMEOUTS * (deps.config().cards![provider!]?.timeoutMs ?? 0);
}

/**
 * Refunds left unfinished, and no admin retried the key, are finished by the reconciliation pass under the same keys:
 * - left new within the day (the wallet's answer lost: it may have taken the worker's share after the request's
 *   deadline), the share is taken under the refund's wallet key, so the wallet answers the entry it made rather than
 *   making a second; before, such a refund stayed new for good and refused every other refund of the tip. Older ones
 *   are left to an admin's retry: support may have refunded the card another way since;
 * - left debited (the worker's share taken, the card not refunded: a crash or a lost answer before the provider's
 *   word), it is sent again under its idempotency key, so the provider answers the refund it made.
 * Only once unclaimed (or the claim lapsed) and a claim's time past their start: the request that began one is left to
 * finish it itself.
 */
export async function resumeUnfinishedRefunds(deps: Deps, limit: number): Promise<number> {
  if (!deps.config().cards || !deps.cards) return 0;
  const { pool, logger } = deps.ctx;
  // The longer provider's claim: on the database's time, as claims are.
  const claimMs = Math.max(refundClaimMs(deps, "stripe"), refundClaimMs(deps, "paypal"));
  // Ids only: each refund is read whole when the pass reaches it.
  const { rows } = await pool.query<Pick<RefundRow, "refund_id">>(
    `(SELECT refund_id FROM payment.card_refunds WHERE status = 'new' AND created_at < now() - make_interval(secs => $2::double precision / 1000)
        AND created_at > now() - interval '1 day' ORDER BY created_at LIMIT $1)
     UNION ALL
     (SELECT refund_id FROM payment.card_refunds WHERE status = 'debited' AND (sending_until IS NULL OR sending_until < now())
        AND created_at < now() - make_interval(secs => $2::double precision / 1000)
      ORDER BY created_at LIMIT $1)`,
    [limit, claimMs],
  );
  let sent = 0;
  for (const listed of rows) {
    // As it is now: an admin's retry may have finished or failed it since the list was read (a pass's provider
    // calls take minutes), and a share taken for a refund failed meanwhile would be recorded nowhere.
    const refund = (await pool.query<RefundRow>("SELECT * FROM payment.card_refunds WHERE refund_id = $1", [listed.refund_id])).rows[0]!;
    if (!["new", "debited"].includes(refund.status)) continue;
    const tip = (await loadCardTip(pool, refund.tip_id))!;
    const provider = deps.cards.provider(tip.card_provider!);
    if (!provider) continue;
    const portion = refundPortion(tip, refund);
    const left = refund.status;
    try {
      if (refund.status === "new") await takeBackWorkerShare(deps, tip, refund, portion, recordOfRefundLeftNew(tip, refund));
      await sendRefund(deps, provider, tip, refund, portion, refund.reason);
      if (refund.status === "sent") sent++;
      logger.info({ tipId: tip.tip_id, refundId: refund.refund_id, left, status: refund.status }, "card refund left unfinished resumed");
    } catch (err) {
      logger.warn({ tipId: tip.tip_id, refundId: refund.refund_id, left, err: (err as Error).message }, "card refund left unfinished not finished; next pass retries");
    }
    deps.changes.announce(tip.tip_id);
  }
  return sent;
}

/**
 * debited → sent, once the provider refunded the card. Only from debited: a send that outlived its claim may answer
 * after another sender, refused, failed the refund and gave the worker's share back; the card refunded all the same,
 * support is alerted to take the share back, and the request is told so.
 */
async function markRefundSent(deps: Deps, tip: CardTipRow, refund: RefundRow, providerRefundId: string): Promise<void> {
  const failed = await withTransaction(deps.ctx.pool, async (tx) => {
    const { rows: [sent] } = await tx.query<RefundRow>(
      "UPDATE payment.card_refunds SET status = 'sent', provider_refund_id = $2, sending_until = NULL WHERE refund_id = $1 AND status = 'debited' RETURNING *",
      [refund.refund_id, providerRefundId],
    );
    const now = sent ?? (await tx.query<RefundRow>("SELECT * FROM payment.card_refunds WHERE refund_id = $1 FOR UPDATE", [refund.refund_id])).rows[0];
    Object.assign(refund, now);
    if (now.status !== "failed") return false;
    // Recorded on the refund, so that balance reconciliation matches the provider's refund to it.
    await tx.query("UPDATE payment.card_refunds SET provider_refund_id = $2 WHERE refund_id = $1 AND provider_refund_id IS NULL", [refund.refund_id, providerRefundId]);
    await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "flag", tipId: tip.tip_id, workerId: tip.worker_id ?? undefined,
      detail: `${tip.card_provider} refunded ${formatMoney(refund.amount_minor, tip.currency)} (${providerRefundId}) after the refund was marked failed (${refund.failure}) and the worker's share given back: take the share back by hand` });
    return true;
  });
  if (failed) throw new InvalidStateError(`tip_id: the card provider refunded the card (${providerRefundId}) after this refund had failed and the worker's share was given back; support is alerted to take it back`);
}

/**
 * Takes the refund for this request to send, in one statement; answers the claim's time. Two retries of one refund at
 * once (a double click, an admin and a pass) would both send it, and PayPal may refuse the second while it processes the
 * first: read as a refusal, the worker's share would go back while the card is refunded. The claim lapses after the
 * provider calls' timeouts, so a retry after a crash still finishes the refund. Not taken: `refund` is brought to where
 * another sender left it (sent, failed), or, still being sent, the request is refused to be retried.
 */
async function claimRefund(deps: Deps, tip: CardTipRow, refund: RefundRow): Promise<string | undefined> {
  const { pool } = deps.ctx;
  const claimMs = refundClaimMs(deps, tip.card_provider);
  const { rows: [claimed] } = await pool.query<{ until: string }>(
    `UPDATE payment.card_refunds SET sending_until = now() + make_interval(secs => $2::double precision / 1000)
      WHERE refund_id = $1 AND status = 'debited' AND (sending_until IS NULL OR sending_until < now())
      RETURNING sending_until::text AS until`,
    [refund.refund_id, claimMs],
  );
  if (claimed) return claimed.until;
  const now = (await pool.query<RefundRow>("SELECT * FROM payment.card_refunds WHERE refund_id = $1", [refund.refund_id])).rows[0];
  if (now.status === "debited") throw new ConcurrentChangeError("tip_id: another request is sending this refund to the card provider now; retry with the same idempotency key in a moment");
  Object.assign(refund, now);
  return undefined;
}

/** The provider refused: the worker's share is restored and the tip's refunded amounts taken back down. */
async function undoRefusedRefund(
  deps: Deps, tip: CardTipRow, refund: RefundRow, portion: Portion, refusal: string,
  opts: { providerRefundId?: string; record?: (tx: Queryable) => Promise<unknown> } = {},
): Promise<boolean> {
  // Back where the refund took it from: a rejected tip's worker part to suspense (the worker never had it).
  const to = rejectedInSuspense(tip) ? "suspense" : "recipient";
  await deps.cards!.ledger.restore(`card-refund-undo:${refund.refund_id}`, splitOf(tip), portion, to, `Refund of card tip ${tip.tip_id} refused by the provider`);
  const lost = await lostDisputeShort(deps.ctx.pool, tip, refund.wallet_minor);
  if (lost) {
    // A dispute lost already left this refund's share to it: taken now, as that dispute would have (below zero if need be).
    await deps.cards!.ledger.reverse(`card-dispute-lost-share:${refund.refund_id}`, splitOf(tip), { chargedMinor: 0n, shareMinor: (portion.shareMinor * lost.minor) / portion.walletMinor, walletMinor: lost.minor },
      { fromHeld: to === "suspense" ? lost.minor : undefined, allowOwnerDebt: true, description: `Chargeback ${lost.disputeId} lost on card tip ${tip.tip_id}: the share a refused refund left to it` });
  }
  return withTransaction(deps.ctx.pool, async (tx) => {
    await tx.query("SELECT 1 FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [tip.tip_id]);
    // Debited, or sent: a refund the provider made and failed later (the card closed) is undone alike.
    const { rowCount } = await tx.query(
      `UPDATE payment.card_refunds SET status = 'failed', failure = $2, sending_until = NULL, provider_refund_id = COALESCE(provider_refund_id, $3)
        WHERE refund_id = $1 AND status IN ('debited', 'sent')`,
      [refund.refund_id, refusal.slice(0, 500), opts.providerRefundId ?? null]);
    if (!rowCount) return false;
    // A dispute lost between the read above and here: the refund stays debited and its next try takes the share.
    const short = await lostDisputeShort(tx, tip, refund.wallet_minor);
    if (short && short.disputeId !== lost?.disputeId) throw new ConcurrentChangeError("tip_id: a chargeback of this tip was decided meanwhile; retry with the same idempotency key");
    const { rows: [now] } = await tx.query<CardTipRow>(
      `UPDATE payment.tips SET refunded_minor = refunded_minor - $2, reversed_wallet_minor = reversed_wallet_minor - $3 + $4,
         card_state = CASE WHEN refunded_minor - $2 = 0 AND card_state = 'refunded' THEN 'none' ELSE card_state END WHERE tip_id = $1 RETURNING *`,
      [tip.tip_id, refund.amount_minor, refund.wallet_minor, lost?.minor ?? 0n],
    );
    // The refund's share back, less what a lost dispute took of it: the wallet's change.
    await emitTipReversed(tx, now, { kind: TipReversalKind.REFUND_REFUSED, reversalId: refund.refund_id, chargedMinor: -refund.amount_minor, walletMinor: (lost?.minor ?? 0n) - refund.wallet_minor });
    if (lost) await tx.query("UPDATE payment.card_disputes SET wallet_minor = wallet_minor + $2 WHERE dispute_id = $1", [lost.disputeId, lost.minor]);
    else await shareBackToDispute(tx, tip, refund.wallet_minor);
    await opts.record?.(tx);
    return true;
  });
}

/**
 * A lost dispute of `tip` that took less than its proportion of the worker's part because a refund of `walletMinor`
 * was under way (it leaves a refund's share to the refund): what of that share it is short, up to its proportion.
 * Under the tip's row lock when `db` is the transaction's.
 */
async function lostDisputeShort(db: Queryable, tip: CardTipRow, walletMinor: bigint): Promise<{ disputeId: string; minor: bigint } | undefined> {
  const { rows: [d] } = await db.query<{ dispute_id: string; short: bigint }>(
    `SELECT dispute_id, LEAST($2::bigint, div($3::numeric * amount_minor, $4)::bigint - wallet_minor) AS short
       FROM payment.card_disputes WHERE tip_id = $1 AND status = 'lost' ORDER BY closed_at, dispute_id LIMIT 1`,
    [tip.tip_id, walletMinor, tip.worker_receives_minor, tip.charged_minor],
  );
  return d && BigInt(d.short) > 0n ? { disputeId: d.dispute_id, minor: BigInt(d.short) } : undefined;
}

/**
 * A refund's share not taken after all (the wallet or the provider refused it: Stripe refuses a disputed charge's
 * refunds) while a dispute is open: that dispute counted it as taken (no refund starts once a dispute is in), so it
 * takes it if lost, up to its proportion of the tip. Under the tip's row lock, which the caller holds.
 */
async function shareBackToDispute(tx: Queryable, tip: CardTipRow, walletMinor: bigint): Promise<void> {
  await tx.query(
    `UPDATE payment.card_disputes SET wallet_minor = LEAST(wallet_minor + $2, div($3::numeric * amount_minor, $4)::bigint)
      WHERE dispute_id = (SELECT dispute_id FROM payment.card_disputes WHERE tip_id = $1 AND status = 'open' ORDER BY created_at, dispute_id LIMIT 1)`,
    [tip.tip_id, walletMinor, tip.worker_receives_minor, tip.charged_minor],
  );
}

/**
 * The provider says the charge was refunded (its total): ours are already taken back; one made elsewhere (its
 * dashboard) is flagged, once per amount: the events of later refunds report it again in their total.
 */
export async function applyRefunded(deps: Deps, ev: Extract<CardEvent, { kind: "refunded" }>): Promise<string> {
  const tip = await tipOfEvent(deps, ev);
  if (!tip) return "unknown";
  return withTransaction(deps.ctx.pool, async (tx) => {
    // Under the tip's row lock, which a refund's debit takes too: TTIP's refunded amount as it is now.
    const { rows: [now] } = await tx.query<{ refunded_minor: bigint }>("SELECT refunded_minor FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [tip.tip_id]);
    const outside = ev.refundedMinor - now.refunded_minor;
    if (outside <= 0n) return "refunded";
    const { rowCount: more } = await tx.query(
      `INSERT INTO payment.card_outside_refunds (tip_id, flagged_minor) VALUES ($1, $2)
       ON CONFLICT (tip_id) DO UPDATE SET flagged_minor = EXCLUDED.flagged_minor WHERE card_outside_refunds.flagged_minor < EXCLUDED.flagged_minor`,
      [tip.tip_id, outside],
    );
    if (!more) return "refund_outside_flagged_before";
    await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "flag", tipId: tip.tip_id, workerId: tip.worker_id ?? undefined,
      detail: `${tip.card_provider} reports ${formatMoney(ev.refundedMinor, ev.currency)} refunded, TTIP refunded ${formatMoney(now.refunded_minor, tip.currency)}: `
        + `${formatMoney(outside, ev.currency)} refunded outside TTIP; the worker's share was not taken back` });
    return "refund_outside";
  });
}

/**
 * A refund the provider made and could not complete later (Stripe's refund.failed: the card was closed or expired):
 * the customer has nothing back, so the worker's share goes back as for a refusal, and support is told to refund the
 * customer another way. The failure of a refund whose answer is not recorded yet is refused, for the provider to
 * send it again once it is.
 */
export async function applyRefundFailed(deps: Deps, ev: Extract<CardEvent, { kind: "refund_failed" }>): Promise<string> {
  const { pool } = deps.ctx;
  const tip = await tipOfEvent(deps, ev);
  if (!tip) return "unknown";
  const refund = (await pool.query<RefundRow>("SELECT * FROM payment.card_refunds WHERE tip_id = $1 AND provider_refund_id = $2", [tip.tip_id, ev.refundId])).rows[0];
  if (!refund) {
    const unrecorded = (await pool.query("SELECT 1 FROM payment.card_refunds WHERE tip_id = $1 AND status = 'debited'", [tip.tip_id])).rowCount;
    if (unrecorded) throw new DependencyUnavailableError(`refund ${ev.refundId} of tip ${tip.tip_id} is not recorded as sent yet; send its failure again`);
    return "refund_outside_failed";
  }
  if (refund.status === "failed") return "refund_failed_before";
  const amount = formatMoney(refund.amount_minor, tip.currency);
  const undone = await undoRefusedRefund(deps, tip, refund, refundPortion(tip, refund), `the card refund ${ev.refundId} failed after it was made (${ev.reason})`, {
    record: (tx) => recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "flag", tipId: tip.tip_id, workerId: tip.worker_id ?? undefined,
      detail: `${tip.card_provider} could not complete refund ${ev.refundId} of ${amount} (${ev.reason}): the customer has nothing back and the worker's share was given back; refund the customer another way` }),
  });
  deps.changes.announce(tip.tip_id);
  return undone ? "refund_failed" : "refund_failed_before";
}

interface DisputeRow {
  dispute_id: string;
  tip_id: string;
  amount_minor: bigint;
  wallet_minor: bigint;
  held_wallet_minor: bigint;
  status: "open" | "won" | "lost";
}

/** Opens (once) the dispute's row and sets aside what the worker still has of the disputed amount. */
async function ensureDispute(deps: Deps, tip: CardTipRow, ev: { disputeId: string; amountMinor: bigint; currency: string; reason?: string }): Promise<DisputeRow> {
  const { pool } = deps.ctx;
  let row = (await pool.query<DisputeRow>("SELECT * FROM payment.card_disputes WHERE dispute_id = $1", [ev.disputeId])).rows[0];
  if (!row) {
    // Only what is there can be set aside; the rest is taken if the dispute is lost. A tip that reached the worker:
    // credited to them, or held for review and approved (its credit went to suspense, its approval paid them).
    const available = tip.status === "succeeded" && tip.credit_entry_id ? await recipientHas(deps, tip, tip.worker_receives_minor) : 0n;
    await withTransaction(pool, async (tx) => {
      const wallet = await disputedWalletShare(tx, tip, ev.amountMinor);
      const held = available <= 0n ? 0n : available < wallet ? available : wallet;
      const { rowCount } = await tx.query(
        `INSERT INTO payment.card_disputes (dispute_id, provider, tip_id, amount_minor, currency, wallet_minor, held_wallet_minor, reason, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open') ON CONFLICT (dispute_id) DO NOTHING`,
        [ev.disputeId, tip.card_provider, tip.tip_id, ev.amountMinor, ev.currency, wallet, held, ev.reason ?? ""],
      );
      if (rowCount) {
        await recordAlert(tx, { reason: "CARD_DISPUTE", action: "flag", tipId: tip.tip_id, workerId: tip.worker_id ?? undefined,
          detail: `chargeback ${ev.disputeId} (${ev.reason ?? "no reason"}) for ${ev.currency} ${ev.amountMinor}; ${held} of the ${tip.worker_id ? "worker's" : "pool's"} ${wallet} set aside` });
      }
    });
    row = (await pool.query<DisputeRow>("SELECT * FROM payment.card_disputes WHERE dispute_id = $1", [ev.disputeId])).rows[0];
  }
  // Idempotent on its key: a crash between the row and the entry is mended by the redelivery.
  row = await setAside(deps, tip, row);
  // Shown once the amount is set aside.
  if (row.status === "open") await pool.query("UPDATE payment.tips SET card_state = 'disputed' WHERE tip_id = $1 AND card_state IN ('none', 'refunded')", [tip.tip_id]);
  return row;
}

/**
 * The worker's part of a disputed amount, under the tip's row lock (a refund's start and its move to debited take it
 * too): in proportion, at most what neither refunds nor other disputes took back or may yet take, a refund begun and
 * not yet debited included (its share may be with the wallet already). So the share is taken back once in all.
 */
async function disputedWalletShare(tx: Queryable, tip: CardTipRow, amountMinor: bigint): Promise<bigint> {
  const { rows: [now] } = await tx.query<{ reversed_wallet_minor: bigint }>("SELECT reversed_wallet_minor FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [tip.tip_id]);
  const { rows: [pending] } = await tx.query<{ minor: bigint }>(
    `SELECT (SELECT COALESCE(sum(wallet_minor), 0) FROM payment.card_refunds WHERE tip_id = $1 AND status = 'new')::bigint
          + (SELECT COALESCE(sum(wallet_minor), 0) FROM payment.card_disputes WHERE tip_id = $1 AND status = 'open')::bigint AS minor`,
    [tip.tip_id],
  );
  const left = tip.worker_receives_minor - now.reversed_wallet_minor - pending.minor;
  const share = (tip.worker_receives_minor * amountMinor) / tip.charged_minor;
  if (left <= 0n) return 0n;
  return share < left ? share : left;
}

/**
 * What the tip's recipient has to set a disputed amount aside from: the worker's or the venue's pool's available
 * balance. A wallet that does not say what a pool holds (an older one) gets `poolUnknown` tried: the whole share first,
 * nothing once refused. What is not set aside is taken from the recipient if the dispute is lost.
 */
async function recipientHas(deps: Deps, tip: CardTipRow, poolUnknown: bigint): Promise<bigint> {
  if (tip.worker_id) return deps.ledger.available(tip.worker_id, tip.wallet_currency);
  return (await deps.ledger.poolAvailable(tip.venue_id, tip.wallet_currency)) ?? poolUnknown;
}

/** Tries of setAside: each refusal lowers the amount to what the worker has then. */
const SET_ASIDE_TRIES = 3;

/**
 * Moves what the dispute sets aside, once by its key. Refused for want of balance (the worker withdrew after the amount
 * was chosen: a payout in between, or a crash before the move), nothing moved: what the worker has now is set aside
 * instead, and the rest is taken if the dispute is lost. Kept at the first amount, every delivery was refused alike and
 * the chargeback never applied, even lost.
 */
async function setAside(deps: Deps, tip: CardTipRow, row: DisputeRow): Promise<DisputeRow> {
  const { pool } = deps.ctx;
  for (let tries = 1; ; tries++) {
    try {
      if (row.held_wallet_minor > 0n) await deps.cards!.ledger.moveDisputed(`card-dispute-hold:${row.dispute_id}`, splitOf(tip), row.held_wallet_minor, false);
      return row;
    } catch (err) {
      if (tries >= SET_ASIDE_TRIES || asConnectError(err).code !== Code.FailedPrecondition) throw err;
    }
    const available = await recipientHas(deps, tip, 0n);
    const held = available <= 0n ? 0n : available < row.held_wallet_minor ? available : row.held_wallet_minor;
    // Only over the amount this try read: a delivery that lowered it first decided, and its amount is moved.
    await pool.query("UPDATE payment.card_disputes SET held_wallet_minor = $2 WHERE dispute_id = $1 AND held_wallet_minor = $3", [row.dispute_id, held, row.held_wallet_minor]);
    row = (await pool.query<DisputeRow>("SELECT * FROM payment.card_disputes WHERE dispute_id = $1", [row.dispute_id])).rows[0];
  }
}

export async function applyDisputeOpened(deps: Deps, ev: Extract<CardEvent, { kind: "dispute_opened" }>): Promise<string> {
  const tip = await tipOfEvent(deps, ev);
  if (!tip) return "unknown";
  await ensureDispute(deps, tip, ev);
  deps.changes.announce(tip.tip_id);
  return "dispute_opened";
}

/**
 * What of a lost dispute's worker part comes out of suspense: what the dispute set aside; or, for a tip whose credit
 * went to suspense (held for review, or rejected) and that no approval paid out, all of it: the worker never had that
 * money. Its approval's key is closed first, as a rejection closes it, so no approval can pay it out after; refused
 * there (an approval was posted), the worker has it and it is taken from the wallet.
 */
async function lostFromSuspense(deps: Deps, tip: CardTipRow, row: DisputeRow): Promise<bigint> {
  if (tip.credit_kind !== "suspense") return row.held_wallet_minor;
  try {
    await deps.cards!.ledger.closeApproval(splitOf(tip));
  } catch (err) {
    if (err instanceof InvalidStateError) return row.held_wallet_minor;
    throw err;
  }
  return row.wallet_minor;
}

/**
 * Won: the amount set aside goes back to the worker. Lost: the credit is
 * reversed (the card holder has the money back); what was not set aside is
 * taken from the wallet even below zero, and later tips pay it back.
 */
export async function applyDisputeClosed(deps: Deps, ev: Extract<CardEvent, { kind: "dispute_closed" }>): Promise<string> {
  const { pool } = deps.ctx;
  const tip = await tipOfEvent(deps, ev);
  if (!tip) return "unknown";
  const row = await ensureDispute(deps, tip, ev);
  if (row.status !== "open") return "duplicate";
  const split = splitOf(tip);
  if (ev.outcome === "lost") {
    const portion: Portion = { chargedMinor: row.amount_minor, shareMinor: (tip.worker_share_minor * row.amount_minor) / tip.charged_minor, walletMinor: row.wallet_minor };
    await deps.cards!.ledger.reverse(`card-dispute-lost:${row.dispute_id}`, split, portion, {
      fromHeld: await lostFromSuspense(deps, tip, row), allowOwnerDebt: true, description: `Chargeback ${row.dispute_id} lost on card tip ${tip.tip_id}`,
    });
  } else if (row.held_wallet_minor > 0n) {
    await deps.cards!.ledger.moveDisputed(`card-dispute-won:${row.dispute_id}`, split, row.held_wallet_minor, true);
  }
  const status = ev.outcome === "lost" ? "lost" : "won";
  await withTransaction(pool, async (tx) => {
    const { rowCount } = await tx.query("UPDATE payment.card_disputes SET status = $2, closed_at = now() WHERE dispute_id = $1 AND status = 'open'", [row.dispute_id, status]);
    if (rowCount) {
      const { rows: [now] } = await tx.query<CardTipRow>(
        `UPDATE payment.tips SET card_state = $2, reversed_wallet_minor = reversed_wallet_minor + $3 WHERE tip_id = $1 RETURNING *`,
        [tip.tip_id, status === "lost" ? "dispute_lost" : "dispute_won", status === "lost" ? row.wallet_minor : 0n],
      );
      if (status === "lost") {
        await emitTipReversed(tx, now, { kind: TipReversalKind.CHARGEBACK, reversalId: row.dispute_id, chargedMinor: row.amount_minor, walletMinor: row.wallet_minor });
      }
    }
  });
  deps.changes.announce(tip.tip_id);
  return `dispute_${status}`;
}
