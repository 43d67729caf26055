// B2C payouts. The wallet holds the money first; the B2C request is sent at
// most once per payout (the row leaves 'new' before the request goes out);
// its result settles or releases the hold. A payout whose outcome is unknown
// is resolved by Transaction Status queries, never by sending again.
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { paymentMetrics } from "./metrics.js";
import { asConnectError, clockOf, ConcurrentChangeError, decimalMinor, DependencyUnavailableError, emitEvent, formatMoney, IdempotencyConflictError, InvalidStateError, lockForTransaction, maskPhone, NotConfiguredError, type Queryable, withTransaction } from "@ttip/runtime";
import { PayoutFailedSchema, PayoutSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { callbackUrl, newCallbackToken } from "./callback-paths.js";
import type { ParsedResult } from "./callbacks.js";
import { mpesaCallbackBase } from "./config.js";
import { B2C_MIN_MINOR, DarajaError, TRANSACTION_NOT_FOUND } from "./daraja/client.js";
import { type AlertInput, recordAlert } from "./fraud.js";
import { requeryFailure, waitBrieflyForLocks } from "./requery-lock.js";
import { loadPayout, payoutByIdempotencyKey, payoutOf, type B2cState, type Payout, type PayoutRow } from "./stores/payouts.js";
import { clearAutoPayoutDue, deferAutoPayoutDue, dueAutoPayouts, markAutoPayoutDue, payoutSettingsOf, settleAutoPayoutCheck, type PayoutSettings } from "./stores/payout-settings.js";
import { automaticPayoutsFrom, PAYOUT_NUMBER_COOLING_OFF_MS } from "./payout-number-cooling.js";
import type { Deps, TipRow } from "./tips.js";

export type PayoutDeps = Deps;

/** The key a payout's changes are announced under on Deps.changes (tips use their bare ids), for WatchPayout. */
export const payoutChangeKey = (payoutId: string) => `payout:${payoutId}`;

export interface NewPayout {
  workerId: string;
  amountMinor: bigint;
  phone: string;
  idempotencyKey: string;
  automatic: boolean;
  /** Told to the worker with the payout (e.g. what a limit left for later). */
  note?: string;
}

/**
 * A worker's payout still able to move their balance: open, or failed with its hold not given back yet (the release
 * follows the failure's commit, and a slow wallet leaves it to a later pass). An automatic payout waits for it:
 * its amount read before the release would leave the money released with nothing due to pay it out.
 */
const MOVING_PAYOUT = "(status IN ('pending', 'resolving') OR (status = 'failed' AND hold_state = 'held'))";

/**
 * Inserts a payout unless one under its key exists (then nothing: undefined). With `onlyIfUntouchedSince`
 * (an automatic payout's), also unless the worker has a payout open, or one finished at or after that
 * time: the balance its amount was read from may have moved since.
 */
async function insertPayout(db: Queryable, p: NewPayout, feeMinor: bigint, firstCheckAt: Date, onlyIfUntouchedSince?: Date): Promise<Payout | undefined> {
  const { rows } = await db.query<PayoutRow>(
    `INSERT INTO payment.payouts (payout_id, worker_id, idempotency_key, currency, amount_minor, phone, phone_masked, automatic, status, callback_token, next_check_at, transfer_fee_minor, note)
     SELECT $1::uuid, $2::uuid, $3::text, 'KES', $4::bigint, $5::text, $6::text, $7::boolean, 'pending', $8::text, $9::timestamptz, $10::bigint, $11::text
      WHERE $12::timestamptz IS NULL OR NOT EXISTS (
        SELECT 1 FROM payment.payouts WHERE worker_id = $2::uuid AND (${MOVING_PAYOUT} OR completed_at >= $12::timestamptz))
     ON CONFLICT (worker_id, idempotency_key) DO NOTHING RETURNING *`,
    [randomUUID(), p.workerId, p.idempotencyKey, p.amountMinor, p.phone, maskPhone(p.phone), p.automatic, newCallbackToken(), firstCheckAt, feeMinor, p.note ?? "",
      onlyIfUntouchedSince ?? null],
  );
  return rows[0] && payoutOf(rows[0]);
}

/**
 * When a payout's result is overdue (its next check): the result wait on the service's clock, the one the passes
 * read it on (leaseDuePayouts); set from the database's now(), a clock apart from it made the payout due early or late.
 */
const resultDueAt = (deps: PayoutDeps) => new Date(clockOf(deps.ctx).now() + deps.config().payoutResultWaitMs);

/** The lock a worker's payouts are inserted under (held to the commit): automatic ones, and withdrawals that check for them. */
const payoutLockKey = (workerId: string) => `payment.auto-payout:${workerId}`;

/**
 * How long a withdrawal waits for an automatic payout of the worker to place its hold: past that
 * hold call's own deadline (PAYOUT_CALL_TIMEOUT_MS, 5 s), by when it was placed, refused, or left
 * to reconciliation (the wallet not answering).
 */
const AUTO_HOLD_WAIT_MS = 6_000;

/** How often the withdrawal looks meanwhile: a hold is normally placed within milliseconds. */
const AUTO_HOLD_POLL_MS = 50;

/**
 * A withdrawal's insert, under the worker's payout lock, once no automatic payout of the worker
 * is still placing its hold in the wallet (open, hold_state 'none'): the two holds would race for
 * one balance and the loser fail to hold money that was there (a failed payout told to the
 * worker). So the withdrawal waits for that hold (AUTO_HOLD_WAIT_MS at most; then ABORTED naming
 * the payout, nothing stored), and the wallet's answer to it is exact. The automatic payout,
 * inserted under the same lock, sees a withdrawal inserted before it and starts none.
 * Undefined when the key has a payout already.
 */
async function insertWithdrawal(deps: PayoutDeps, p: NewPayout, feeMinor: bigint): Promise<Payout | undefined> {
  const until = Date.now() + AUTO_HOLD_WAIT_MS;
  for (;;) {
    const attempt: { payout?: Payout; holding?: { payout_id: string; amount_minor: bigint } } = await withTransaction(deps.ctx.pool, async (tx) => {
      await lockForTransaction(tx, payoutLockKey(p.workerId));
      const { rows: [holding] } = await tx.query<{ payout_id: string; amount_minor: bigint }>(
        `SELECT payout_id, amount_minor FROM payment.payouts
          WHERE worker_id = $1 AND automatic AND status IN ('pending', 'resolving') AND hold_state = 'none' LIMIT 1`, [p.workerId]);
      if (!holding) return { payout: await insertPayout(tx, p, feeMinor, resultDueAt(deps)) };
      return (await payoutByIdempotencyKey(tx, p.workerId, p.idempotencyKey)) ? { payout: undefined } : { holding };
    });
    if (!attempt.holding) return attempt.payout;
    if (Date.now() >= until) {
      throw new ConcurrentChangeError(`an automatic payout of ${formatMoney(attempt.holding.amount_minor, "KES")} (payout ${attempt.holding.payout_id}) is still placing its hold on your balance (the wallet is slow to answer); ask again shortly`);
    }
    await sleep(AUTO_HOLD_POLL_MS);
  }
}

/**
 * Refused before a payout is stored: one stored on a deployment without M-Pesa stayed pending for good (told to the
 * worker as refused), kept their automatic payouts waiting on it, and went out when M-Pesa was set up, days later.
 */
export function requirePayoutsConfigured(deps: PayoutDeps): void {
  if (!payoutsConfigured(deps)) throw new NotConfiguredError("M-Pesa payouts are not configured on this deployment (DARAJA_BASE_URL, PAYMENT_CALLBACK_BASE_URL)");
}

function payoutsConfigured(deps: PayoutDeps): boolean {
  return mpesaCallbackBase(deps.config()) !== undefined;
}

/** A worker's withdrawal (RequestPayout): creates (or finds, by key) its payout and drives it as far as it can go now. */
export async function startPayout(deps: PayoutDeps, p: NewPayout): Promise<Payout> {
  const { pool } = deps.ctx;
  const fee = await deps.ledger.payoutFee(p.amountMinor);
  let payout = await insertWithdrawal(deps, p, fee);
  if (payout) paymentMetrics(deps.ctx.metrics).payouts.inc({ status: "requested" });
  if (!payout) {
    payout = (await payoutByIdempotencyKey(pool, p.workerId, p.idempotencyKey))!;
    if (payout.amount.amountMinor !== p.amountMinor || payout.phone !== p.phone) {
      throw new IdempotencyConflictError(p.idempotencyKey, "payout");
    }
  }
  if (payout.b2cState === "new" && payout.status === "pending") await sendPayout(deps, payout);
  return (await loadPayout(pool, payout.payoutId))!;
}

/**
 * An automatic payout of an amount read from the balance at `balanceReadAt` (the database's clock), created
 * only if no payout of the worker is open and none finished since: checked and inserted under a lock per
 * worker, so two replicas paying out one worker's balance at once create one payout, not one that pays and
 * one that fails to hold what the first holds (a failed payout told to the worker). A payout created before
 * holds its amount before it finishes, so a balance read before its end is read again after it (autoPayout).
 * Undefined when another payout had the balance.
 */
async function startAutomaticPayout(deps: PayoutDeps, p: NewPayout, balanceReadAt: Date): Promise<Payout | undefined> {
  const { pool } = deps.ctx;
  const fee = await deps.ledger.payoutFee(p.amountMinor);
  const payout = await withTransaction(pool, async (tx) => {
    // Held to the commit (one statement after it); the check after it sees every payout inserted before.
    await lockForTransaction(tx, payoutLockKey(p.workerId));
    return insertPayout(tx, p, fee, resultDueAt(deps), balanceReadAt);
  });
  if (!payout) return undefined;
  paymentMetrics(deps.ctx.metrics).payouts.inc({ status: "requested" });
  await sendPayout(deps, payout);
  return payout;
}

/** How long a payout Daraja could not be sent (nothing left) is tried again before it fails and its hold goes back. */
const UNSENT_RETRY_MS = 60 * 60_000;

/** Holds the money, then sends B2C exactly once. */
async function sendPayout(deps: PayoutDeps, payout: Payout): Promise<void> {
  const { pool, logger } = deps.ctx;
  const base = mpesaCallbackBase(deps.config());
  if (!base) throw new InvalidStateError("M-Pesa payouts are not configured on this deployment");
  if (payout.holdState === "none") {
    try {
      // Idempotent per payout: a repeat after a lost answer finds the same hold.
      const hold = await deps.ledger.placeHold(payout.workerId, payout.amount.amountMinor, payout.payoutId);
      await pool.query("UPDATE payment.payouts SET hold_id = $2, account_id = $3, hold_state = 'held' WHERE payout_id = $1 AND hold_state = 'none'", [
        payout.payoutId, hold.holdId, hold.accountId,
      ]);
    } catch (err) {
      const e = asConnectError(err);
      if (e.code === Code.FailedPrecondition || e.code === Code.ResourceExhausted) {
        const failed = await finishPayout(deps, payout.payoutId, { success: false, code: e.code === Code.FailedPrecondition ? "insufficient_balance" : "limit", message: e.rawMessage, unheld: true });
        // Not failed here: another request of this payout (a double tap) held the money since and is sending it.
        if (failed === "duplicate" && (await loadPayout(pool, payout.payoutId))?.status !== "failed") return;
        throw e;
      }
      throw new DependencyUnavailableError(`the wallet could not hold the amount: ${e.rawMessage}`);
    }
  }
  // The point of no return: once 'sending' is committed, this payout is never sent again. An admin's hold on the
  // worker's payouts, placed since the payout was made (its first send failed, reconciliation sends it now), stops it.
  const { rows: [claimed] } = await pool.query<{ b2c_state: B2cState }>(
    `UPDATE payment.payouts p SET b2c_state = CASE WHEN s.payouts_on_hold THEN 'refused' ELSE 'sending' END
       FROM (SELECT bool_or(payouts_on_hold) IS TRUE AS payouts_on_hold FROM payment.payout_settings WHERE worker_id = $2) s
      WHERE p.payout_id = $1 AND p.b2c_state = 'new' AND p.status IN ('pending', 'resolving') RETURNING p.b2c_state`,
    [payout.payoutId, payout.workerId],
  );
  if (!claimed) return;
  if (claimed.b2c_state === "refused") {
    await finishPayout(deps, payout.payoutId, { success: false, code: "on_hold", message: "payouts are on hold for this account; nothing was sent; contact support" });
    return;
  }
  try {
    const r = await deps.daraja().b2c({
      originatorConversationId: payout.payoutId,
      phone: payout.phone,
      amount: Number(payout.amount.amountMinor / 100n),
      remarks: "TTIP tips withdrawal",
      occasion: payout.automatic ? "auto payout" : "withdrawal",
      resultUrl: callbackUrl(base, "b2c/result", payout.callbackToken),
      queueTimeoutUrl: callbackUrl(base, "b2c/timeout", payout.callbackToken),
    });
    await pool.query(
      "UPDATE payment.payouts SET b2c_state = 'sent', conversation_id = $2, next_check_at = $3 WHERE payout_id = $1",
      [payout.payoutId, r.ConversationID, resultDueAt(deps)],
    );
  } catch (err) {
    if (err instanceof DarajaError && err.kind === "unavailable") {
      // It never left (Daraja asked us to slow down, no token, no connection): back to 'new', which reconciliation
      // sends at the payout's next check, for an hour (its age on the database's clock, which made it). Failing it
      // at once would tell the worker M-Pesa refused it, for an outage. Status queries asked while it was in flight
      // (an admin's re-query) asked about nothing M-Pesa had: they count for nothing towards "no record".
      const retried = await pool.query(
        `WITH reset AS (
           UPDATE payment.payouts SET b2c_state = 'new', status = 'pending', status_queries = 0, status_query_sent_at = NULL, status_queried_at = NULL
            WHERE payout_id = $1 AND b2c_state = 'sending' AND status IN ('pending', 'resolving')
            AND created_at > now() - make_interval(secs => $2::double precision / 1000)
            RETURNING payout_id),
         forgotten AS (DELETE FROM payment.payout_status_queries q USING reset WHERE q.payout_id = reset.payout_id)
         SELECT 1 FROM reset`,
        [payout.payoutId, UNSENT_RETRY_MS],
      );
      if (retried.rowCount) return void logger.warn({ payoutId: payout.payoutId, err: err.message }, "B2C not sent; sent again later");
    }
    if (err instanceof DarajaError && (err.kind === "rejected" || err.kind === "unavailable")) {
      // Daraja refused it (or it never left): nothing was paid, the hold goes back.
      await pool.query("UPDATE payment.payouts SET b2c_state = 'refused' WHERE payout_id = $1", [payout.payoutId]);
      await finishPayout(deps, payout.payoutId, { success: false, code: err.details.errorCode ?? "refused", message: "M-Pesa refused the payout; nothing was sent" });
      return;
    }
    // No answer: it may have been paid. Only a status query may decide, unless its result came meanwhile (the
    // result callback can come before the request's answer times out): a payout it ended stays ended.
    logger.warn({ payoutId: payout.payoutId, err }, "B2C unanswered; resolving by transaction status");
    await pool.query(
      `UPDATE payment.payouts SET b2c_state = 'unknown', status = CASE WHEN status = 'pending' THEN 'resolving' ELSE status END, next_check_at = $2
        WHERE payout_id = $1`,
      [payout.payoutId, resultDueAt(deps)],
    );
  }
}

export interface Finish {
  success: boolean;
  code: string;
  message: string;
  receipt?: string;
  /** A failure only while nothing is held or sent: a hold refused to one request of a payout another has held since. */
  unheld?: boolean;
}

/** A finished payout's event (payout_succeeded or payout_failed), in the transaction that records its outcome. */
export async function announceOutcome(tx: Queryable, p: Payout, f: Finish): Promise<void> {
  const payoutId = p.payoutId;
  if (f.success) {
    // What M-Pesa paid: the payout's amount, unless support found it paid another (the difference booked).
    const paid = p.paidMinor !== null ? { currency: p.amount.currency, amountMinor: p.paidMinor } : p.amount;
    await emitEvent(tx, "payment", PayoutSucceededSchema, {
      payoutId, workerId: p.workerId, amount: paid, transferFee: p.transferFee,
      mpesaReceipt: f.receipt ?? "", recipientPhoneMasked: p.phoneMasked,
    }, payoutId);
  } else {
    await emitEvent(tx, "payment", PayoutFailedSchema, {
      payoutId, workerId: p.workerId, amount: p.amount, resultCode: f.code, reason: f.message,
    }, payoutId);
  }
}

/** Records the final outcome once, with its event, then settles or releases the hold. */
async function finishPayout(deps: PayoutDeps, payoutId: string, f: Finish): Promise<"accepted" | "duplicate"> {
  const done = await withTransaction(deps.ctx.pool, async (tx) => {
    const { rows } = await tx.query<PayoutRow>(
      `UPDATE payment.payouts SET status = $2, result_code = $3, result_message = $4, mpesa_receipt = $5, completed_at = now()
        WHERE payout_id = $1 AND status IN ('pending', 'resolving') AND (NOT $6 OR hold_state = 'none' AND b2c_state = 'new') RETURNING *`,
      [payoutId, f.success ? "succeeded" : "failed", f.code, f.message.slice(0, 300), f.receipt ?? null, f.unheld === true],
    );
    if (!rows[0]) return undefined;
    const p = payoutOf(rows[0]);
    await announceOutcome(tx, p, f);
    return p;
  });
  await resolveHold(deps, payoutId);
  if (!done && f.success) {
    const p = await loadPayout(deps.ctx.pool, payoutId);
    if (p?.status === "failed") {
      // M-Pesa paid a payout we had ended as failed (and whose hold went back): an admin must recover it.
      deps.ctx.logger.error({ payoutId }, "B2C reported paid after the payout was ended as failed");
      await withTransaction(deps.ctx.pool, (tx) =>
        alertOncePerPayout(tx, "paid_after_failed", { reason: "CALLBACK_MISMATCH", action: "flag", payoutId, workerId: p.workerId, phoneMasked: p.phoneMasked,
          detail: `M-Pesa reports payout ${payoutId} paid (receipt ${f.receipt ?? "unknown"}) after it was ended as failed and its hold released; told once per payout` }),
      );
    }
  }
  if (done) {
    paymentMetrics(deps.ctx.metrics).payouts.inc({ status: f.success ? "succeeded" : "failed" });
    deps.changes.announce(payoutChangeKey(payoutId));
  }
  return done ? "accepted" : "duplicate";
}

/**
 * Settles (paid) or releases (not paid) the wallet hold of a finished payout; retried by reconciliation. A payout
 * an admin found paid in another amount (paid_minor) has the difference booked first, once by its key.
 */
export async function resolveHold(deps: PayoutDeps, payoutId: string): Promise<void> {
  const p = await loadPayout(deps.ctx.pool, payoutId);
  if (!p || p.holdState !== "held" || !p.holdId || (p.status !== "succeeded" && p.status !== "failed")) return;
  try {
    if (p.status === "succeeded" && p.paidMinor !== null && p.paidMinor !== p.amount.amountMinor) {
      await deps.ledger.payoutPaidDifference({ payoutId, workerId: p.workerId, receipt: p.mpesaReceipt ?? payoutId, differenceMinor: p.paidMinor - p.amount.amountMinor });
    }
    let settleEntryId: string | null = null;
    if (p.status === "succeeded") settleEntryId = await deps.ledger.settleHold(p.holdId, p.mpesaReceipt ?? p.payoutId, p.transferFee.amountMinor);
    else await deps.ledger.releaseHold(p.holdId, p.resultMessage || p.resultCode);
    await deps.ctx.pool.query("UPDATE payment.payouts SET hold_state = $2, settle_entry_id = $3 WHERE payout_id = $1", [payoutId, p.status === "succeeded" ? "settled" : "released", settleEntryId]);
  } catch (err) {
    deps.ctx.logger.warn({ payoutId, err }, "wallet hold not resolved yet; reconciliation will retry");
  }
}

export async function applyB2cResult(deps: PayoutDeps, payoutId: string, r: ParsedResult): Promise<string> {
  if (r.originatorConversationId !== payoutId) return "unknown";
  if (r.resultCode === "0") {
    const receipt = r.transactionId || String(r.parameters.get("TransactionReceipt") ?? "");
    return applyPaid(deps, payoutId, r.parameters.get("TransactionAmount"), receipt || undefined);
  }
  return finishPayout(deps, payoutId, { success: false, code: r.resultCode, message: r.resultDesc || "M-Pesa could not complete the payout" });
}

/**
 * M-Pesa reports the payout paid, in `reported` (its decimal shillings, absent if it said none): settled, unless
 * that is another amount than the payout's, whose debit would then differ from what left the paybill.
 */
async function applyPaid(deps: PayoutDeps, payoutId: string, reported: unknown, receipt: string | undefined): Promise<string> {
  const paid = decimalMinor(reported);
  const p = await loadPayout(deps.ctx.pool, payoutId);
  if (p && paid !== undefined && paid !== p.amount.amountMinor && p.status !== "failed") return holdForAmountMismatch(deps, p, paid, receipt);
  // A payout ended as failed that M-Pesa reports paid is raised there, whatever the amount.
  return finishPayout(deps, payoutId, { success: true, code: "0", message: "Sent to M-Pesa", receipt });
}

/**
 * M-Pesa paid another amount than the payout's. Settling the hold at either amount would be a guess (the
 * payout's own, or one a forged or corrupted result names), and releasing it would free money that left: so an
 * open payout is put on hold for review (status on_hold, its wallet hold kept, neither settled nor released),
 * and support is told once per payout (payout_alerts), as a payout already finished is (flagged: its hold was
 * settled at the payout's amount before this came).
 */
async function holdForAmountMismatch(deps: PayoutDeps, p: Payout, paid: bigint, receipt: string | undefined): Promise<string> {
  const { pool, logger } = deps.ctx;
  logger.error({ payoutId: p.payoutId, paidMinor: paid, amountMinor: p.amount.amountMinor }, "B2C reported paid in another amount than the payout's");
  const said = `M-Pesa reports ${formatMoney(paid, "KES")} sent for this ${formatMoney(p.amount.amountMinor, "KES")} payout`;
  const held = await withTransaction(pool, async (tx) => {
    const { rows: [row] } = await tx.query<PayoutRow>(
      `UPDATE payment.payouts SET status = 'on_hold', result_code = '0', result_message = $2, mpesa_receipt = COALESCE($3, mpesa_receipt)
        WHERE payout_id = $1 AND status IN ('pending', 'resolving') RETURNING *`,
      [p.payoutId, `${said}; held for review by support`, receipt ?? null],
    );
    // Not open any more: as it is now (another result may have ended it since it was read).
    const ended = row ? undefined : await loadPayout(tx, p.payoutId);
    const now = ended ? `already ${ended.status}, its hold ${ended.holdState}` : "held for review, its wallet hold kept (neither settled nor released)";
    await alertOncePerPayout(tx, "amount_mismatch", {
      reason: "CALLBACK_MISMATCH", action: row ? "hold" : "flag", payoutId: p.payoutId, workerId: p.workerId, phoneMasked: p.phoneMasked,
      detail: `${said} (receipt ${receipt ?? "unknown"}): the payout is ${now}; told once per payout`,
    });
    return row !== undefined;
  });
  if (!held) return "duplicate";
  paymentMetrics(deps.ctx.metrics).payouts.inc({ status: "on_hold" });
  deps.changes.announce(payoutChangeKey(p.payoutId));
  return "on_hold";
}

/** What M-Pesa told of a payout that support is alerted to once (payout_alerts), however often M-Pesa repeats it. */
type PayoutAlertKind = "amount_mismatch" | "paid_after_failed" | "unrecognised_status";

/** Records the alert (in `tx`) unless the payout raised one of its kind before. */
async function alertOncePerPayout(tx: Queryable, kind: PayoutAlertKind, a: AlertInput & { payoutId: string }): Promise<void> {
  const first = await tx.query("INSERT INTO payment.payout_alerts (payout_id, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING", [a.payoutId, kind]);
  if (first.rowCount) await recordAlert(tx, a);
}

/**
 * A status query answered a TransactionStatus that decides nothing here: the payout stays held and asked about, and
 * support is told once. Before, it was asked about every pass for ever, its money held, and no one was told.
 */
async function alertUnrecognisedStatus(deps: PayoutDeps, p: { payoutId: string; workerId: string; phoneMasked: string }, status: string): Promise<void> {
  const said = JSON.stringify(status.slice(0, 40));
  deps.ctx.logger.error({ payoutId: p.payoutId, transactionStatus: said }, "transaction status answered a status this service does not decide; payout still unresolved");
  await withTransaction(deps.ctx.pool, (tx) =>
    alertOncePerPayout(tx, "unrecognised_status", { reason: "CALLBACK_MISMATCH", action: "flag", payoutId: p.payoutId, workerId: p.workerId, phoneMasked: p.phoneMasked,
      detail: `M-Pesa's status query says ${said} of payout ${p.payoutId}, which decides nothing here: it stays held and asked about until the statement is checked; told once per payout` }),
  );
}

/** The request waited too long in Daraja's queue: its fate is asked, not assumed. */
export async function markQueueTimeout(deps: PayoutDeps, payoutId: string, r: ParsedResult): Promise<string> {
  if (r.originatorConversationId !== payoutId) return "unknown";
  const { rowCount } = await deps.ctx.pool.query(
    "UPDATE payment.payouts SET status = 'resolving', next_check_at = $2 WHERE payout_id = $1 AND status IN ('pending', 'resolving')",
    [payoutId, new Date(clockOf(deps.ctx).now())],
  );
  if (rowCount) deps.changes.announce(payoutChangeKey(payoutId));
  return rowCount ? "resolving" : "duplicate";
}

/**
 * A Transaction Status answer about a payout. "Not found" decides only as the answer to a query sent a result wait
 * after the payout's first (noRecordDecides); a failed query never does.
 */
export async function applyStatusResult(deps: PayoutDeps, payoutId: string, r: ParsedResult): Promise<string> {
  const p = await loadPayout(deps.ctx.pool, payoutId);
  if (!p) return "unknown";
  const about = r.parameters.get("OriginatorConversationID");
  if (about !== undefined && about !== payoutId) return "unknown";
  // Counted here, whatever it says: it can come before the pass that sent its query has counted it (its 30 ms
  // on a loaded machine), and a paid or failed answer ends the payout, after which the pass's count finds nothing.
  const asked = await countStatusQuery(deps, payoutId);
  if (r.resultCode === "0") {
    const status = String(r.parameters.get("TransactionStatus") ?? "");
    const receipt = String(r.parameters.get("ReceiptNo") ?? r.transactionId ?? "");
    if (status === "Completed") return applyPaid(deps, payoutId, r.parameters.get("Amount"), receipt || undefined);
    if (status === "Failed" || status === "Cancelled") {
      return finishPayout(deps, payoutId, { success: false, code: String(r.parameters.get("ResultCode") ?? "failed"), message: "M-Pesa did not complete the payout" });
    }
    if (p.status === "pending" || p.status === "resolving") await alertUnrecognisedStatus(deps, p, status);
    return "pending";
  }
  if (p.status !== "resolving" && p.status !== "pending") return "duplicate";
  if (r.resultCode !== TRANSACTION_NOT_FOUND) {
    // The query failed, not the payout: releasing the hold on it could pay out again money B2C sent.
    // It stays resolving (held, shown so to support) and is asked again on the next pass.
    deps.ctx.logger.error({ payoutId, resultCode: r.resultCode, resultDesc: r.resultDesc }, "transaction status query failed; payout still unresolved");
    return "query_failed";
  }
  if (asked !== undefined && (await noRecordDecides(deps, payoutId, r.conversationId, { notFoundAt: new Date(clockOf(deps.ctx).now()) }))) return failNoRecord(deps, payoutId);
  return "not_found_yet";
}

const failNoRecord = (deps: PayoutDeps, payoutId: string) =>
  finishPayout(deps, payoutId, { success: false, code: TRANSACTION_NOT_FOUND, message: "M-Pesa has no record of the payout; nothing was sent" });

/**
 * Records one half of a status query, by the ConversationID M-Pesa gave it: when the pass sent it (its answer to the
 * pass), or M-Pesa's "no record" (its result), in either order. Answers whether that query's "no record" decides the
 * payout: both halves known, and the query sent at least a result wait after the payout's first, so that a B2C M-Pesa
 * had not recorded yet at the first query has had time to appear. Tied to its own query, a late or repeated answer
 * to an earlier one decides nothing, however many queries were sent since.
 */
async function noRecordDecides(deps: PayoutDeps, payoutId: string, conversationId: string, half: { sentAt: Date } | { notFoundAt: Date }): Promise<boolean> {
  if (!conversationId) return false;
  // The first query's time is read as it was before this statement (a statement sees its snapshot): a query's own
  // sent_at, set here, is never its own "first", and a first query never decides.
  const { rows } = await deps.ctx.pool.query<{ decides: boolean | null }>(
    `WITH q AS (
       INSERT INTO payment.payout_status_queries (conversation_id, payout_id, sent_at, not_found_at)
       SELECT $1, $2, $3, $4
        -- A send's half only while no B2C was sent again since (that resets status_query_sent_at): an older query's
        -- time, recorded after the reset, would count a query about the new B2C as a result wait after the first.
        WHERE $3::timestamptz IS NULL OR EXISTS (SELECT 1 FROM payment.payouts WHERE payout_id = $2 AND status_query_sent_at >= $3::timestamptz)
       ON CONFLICT (conversation_id) DO UPDATE SET sent_at = COALESCE(payout_status_queries.sent_at, EXCLUDED.sent_at),
              not_found_at = COALESCE(payout_status_queries.not_found_at, EXCLUDED.not_found_at)
        WHERE payout_status_queries.payout_id = EXCLUDED.payout_id
       RETURNING sent_at, not_found_at)
     SELECT q.not_found_at IS NOT NULL AND q.sent_at >= (SELECT min(sent_at) FROM payment.payout_status_queries WHERE payout_id = $2)
              + make_interval(secs => $5::double precision / 1000) AS decides
       FROM q`,
    [conversationId, payoutId, "sentAt" in half ? half.sentAt : null, "notFoundAt" in half ? half.notFoundAt : null, deps.config().payoutResultWaitMs],
  );
  return rows[0]?.decides === true;
}

/**
 * One pass over open payouts: those whose result is overdue get a status
 * query; finished ones whose hold is still open get it settled or released;
 * ones that never left (a crash before sending) are sent.
 */
export async function reconcilePayouts(deps: PayoutDeps, limit: number): Promise<number> {
  const { payouts, lease } = await leaseDuePayouts(deps, limit);
  for (const p of payouts) {
    // The steps before (a slow Daraja call) may have outlived the pass's lease, and another replica leased this
    // payout meanwhile: it is worked on only while still this pass's, as it is now (its lease renewed for the step).
    const renewed = await renewPayoutLease(deps, p.payoutId, lease);
    if (renewed) await reconcilePayout(deps, renewed.payout, renewed.lease);
  }
  return payouts.length;
}

/**
 * An admin's re-query of one open payout (made due first): that payout alone, leased and driven as a pass
 * would (never two at once, never sent twice); none of the pass's other payouts, whose failures are not the
 * admin's answer. False when it was not due or a pass holds it now.
 */
export async function requeryPayout(deps: PayoutDeps, payoutId: string): Promise<boolean> {
  const { payouts: [p], lease } = await leaseDuePayouts(deps, 1, payoutId);
  if (!p) return false;
  const failure = await reconcilePayout(deps, p, lease);
  // The pass only logs a failed step and retries it; an admin who asked is told that M-Pesa was not asked.
  if (failure) throw requeryFailure("payout_id", "payout status query", failure);
  return true;
}

/**
 * Payouts leased by one statement, and their lease: lease_until as PostgreSQL's text, to the microsecond. It names
 * this lease: a later one is taken only once it lapsed, at now() + the lease time, so it is always later.
 */
interface LeasedPayouts {
  payouts: Payout[];
  lease: string;
}

/** Payouts due for a step (or `payoutId` alone, if due), leased so that no other replica works on them meanwhile. */
async function leaseDuePayouts(deps: PayoutDeps, limit: number, payoutId?: string): Promise<LeasedPayouts> {
  // When a result is overdue is a rule read on the service's clock (a test moves it); leases stay on the database's time.
  const dueBy = new Date(clockOf(deps.ctx).now());
  return withTransaction(deps.ctx.pool, async (tx) => {
    // A pass skips a row another transaction holds; a re-query of one payout waits for it (requery-lock.ts).
    if (payoutId) await waitBrieflyForLocks(tx);
    const { rows } = await tx.query<PayoutRow>(
      `SELECT * FROM payment.payouts
        WHERE (status IN ('pending', 'resolving') AND next_check_at <= $2 OR (status IN ('succeeded', 'failed') AND hold_state = 'held'))
          AND (lease_until IS NULL OR lease_until < now())${payoutId ? " AND payout_id = $3" : ""}
        ORDER BY next_check_at LIMIT $1 FOR UPDATE${payoutId ? "" : " SKIP LOCKED"}`,
      payoutId ? [limit, dueBy, payoutId] : [limit, dueBy],
    );
    if (!rows.length) return { payouts: [], lease: "" };
    const { rows: [leased] } = await tx.query<{ lease: string }>(
      `UPDATE payment.payouts SET lease_until = now() + make_interval(secs => $2::double precision / 1000) WHERE payout_id = ANY($1::uuid[])
        RETURNING lease_until::text AS lease`,
      [rows.map((r) => r.payout_id), deps.config().reconcileLeaseMs],
    );
    return { payouts: rows.map(payoutOf), lease: leased.lease };
  });
}

/**
 * The payout as it is now, its lease renewed for one step, if `lease` (the pass's) is still the payout's; undefined
 * when another pass leased it since. Checked and renewed in one statement: a replica leasing it at the same moment
 * waits for this one, then finds it leased.
 */
async function renewPayoutLease(deps: PayoutDeps, payoutId: string, lease: string): Promise<{ payout: Payout; lease: string } | undefined> {
  const { rows: [row] } = await deps.ctx.pool.query<PayoutRow & { lease: string }>(
    `UPDATE payment.payouts SET lease_until = now() + make_interval(secs => $3::double precision / 1000)
      WHERE payout_id = $1 AND lease_until = $2::timestamptz RETURNING *, lease_until::text AS lease`,
    [payoutId, lease, deps.config().reconcileLeaseMs],
  );
  return row && { payout: payoutOf(row), lease: row.lease };
}

/**
 * One leased payout's step (settle its hold, send it if it never left, or ask its status), then its lease let go with
 * its next check. A step that failed is logged and retried at that check; its error is returned for a caller who
 * must say so (an admin's re-query).
 */
async function reconcilePayout(deps: PayoutDeps, p: Payout, lease: string): Promise<unknown> {
  const { pool, logger } = deps.ctx;
  const config = deps.config();
  const base = mpesaCallbackBase(config);
  try {
    if (p.status === "succeeded" || p.status === "failed") await resolveHold(deps, p.payoutId);
    else if (p.b2cState === "new") await sendPayout(deps, p);
    else if (base) {
      // 'sending' after a crash is as unknown as a timeout.
      // Before sending: its answer may come before the call returns, and counts it only if it was sent since the last count.
      const sentAt = new Date(clockOf(deps.ctx).now());
      await pool.query("UPDATE payment.payouts SET status_query_sent_at = $2 WHERE payout_id = $1", [p.payoutId, sentAt]);
      const query = await deps.daraja().transactionStatus({
        originalConversationId: p.payoutId,
        transactionId: p.mpesaReceipt ?? undefined,
        resultUrl: callbackUrl(base, "status/result", p.callbackToken),
        queueTimeoutUrl: callbackUrl(base, "status/timeout", p.callbackToken),
        remarks: "payout status",
      });
      const asked = await countStatusQuery(deps, p.payoutId);
      // M-Pesa's "no record" may have come before this answer named its query.
      if (asked !== undefined && (await noRecordDecides(deps, p.payoutId, query.ConversationID, { sentAt }))) await failNoRecord(deps, p.payoutId);
    }
  } catch (err) {
    logger.warn({ payoutId: p.payoutId, err }, "payout reconciliation step failed; will retry");
    return err;
  } finally {
    // Only this pass's own lease: a step that outlived it (a slow Daraja call) finds the payout leased by
    // another replica since, whose lease let go here would let a third work on it beside that one.
    const backoffMs = Math.min(10 * 60_000, config.payoutResultWaitMs * 2 ** Math.min(p.statusQueries, 5));
    await pool.query(
      `UPDATE payment.payouts SET lease_until = NULL, next_check_at = $3::timestamptz + make_interval(secs => $2::double precision / 1000)
        WHERE payout_id = $1 AND lease_until = $4::timestamptz`,
      [p.payoutId, backoffMs, new Date(clockOf(deps.ctx).now()), lease],
    );
  }
}

/**
 * Counts a status query, sent or answered, if one was sent since the last count and the last count is at least the
 * result wait old; answers the count (undefined once the payout is decided). The count decides "no record after
 * repeated asking" (which releases the hold): the asking must be spaced, so that a B2C M-Pesa had not recorded yet
 * has time to appear, but not by whose lease it was sent under: two replicas asking at once count once, and a payout
 * each of whose passes outlives its lease (a slow Daraja) is still decided rather than asked about forever. A query's
 * answer and its pass's count after sending are the same query: whichever comes first counts it, the other finds it
 * counted, also an answer coming (or repeated) a result wait after its pass counted it.
 */
async function countStatusQuery(deps: PayoutDeps, payoutId: string): Promise<number | undefined> {
  // Both CASEs read the row as it is once locked: of two replicas counting at once, the second sees the first's time.
  const counts = `(status_query_sent_at IS NOT NULL AND (status_queried_at IS NULL OR status_queried_at < status_query_sent_at
    AND status_queried_at <= $2::timestamptz - make_interval(secs => $3::double precision / 1000)))`;
  const { rows } = await deps.ctx.pool.query<{ status_queries: number }>(
    `UPDATE payment.payouts SET status = 'resolving', status_queries = status_queries + CASE WHEN ${counts} THEN 1 ELSE 0 END,
         status_queried_at = CASE WHEN ${counts} THEN $2::timestamptz ELSE status_queried_at END
       WHERE payout_id = $1 AND status IN ('pending', 'resolving') RETURNING status_queries`,
    [payoutId, new Date(clockOf(deps.ctx).now()), deps.config().payoutResultWaitMs],
  );
  return rows[0]?.status_queries;
}

/**
 * The automatic payout being started for each worker in this replica (this payment module's Deps;
 * at most one entry per worker with one in flight: removed when it ends). Tips credited together
 * start theirs at the same moment: each waits for the one before, then finds its payout open and
 * leaves the balance to it, with no wallet call. Two replicas crediting one worker's tips at the
 * same moment meet in startAutomaticPayout's lock instead.
 */
const autoPayoutsStarting = new WeakMap<PayoutDeps, Map<string, Promise<void>>>();

/**
 * What an automatic payout's start came to: started (or found started under its key), nothing to pay (none asked,
 * held, under the minimum, or held back by a cooling-off, marked due then), or deferred: another payout of the
 * worker was open, or ended after the balance was read, and this one is left for after it.
 */
type AutoPayoutStart = "started" | "nothing" | "deferred";

/**
 * After a tip reached the worker: pays out the available balance if the worker asked for it, one at a time per
 * worker. Deferred behind an open payout, it is marked due a result wait on (unless one is due already): the open
 * payout may end without another tip coming (a withdrawal that failed and gave its hold back, one that took part of
 * the balance), and reconciliation's pass then pays out what it left.
 */
export async function autoPayout(deps: PayoutDeps, tip: TipRow, known?: PayoutSettings | null, checkAt?: Date): Promise<void> {
  // A shared tip waits in the venue's pool for its distribution.
  if (!tip.worker_id) return;
  // The credit's recording marked a look at this payout (for a process that died before starting it) only for a
  // worker with automatic payouts (settings read with it say whether): the start, once it has run, settles that mark.
  const marked = known === undefined || known?.auto_payout ? checkAt : undefined;
  let started: AutoPayoutStart;
  try {
    started = await queueAutoPayout(deps, tip.worker_id, `auto-${tip.tip_id}`, known);
  } catch (err) {
    // A wallet call that timed out, an insert that failed: due now, so reconciliation's pass starts it. Else the
    // balance stayed in the wallet, unseen, until the worker's next tip (which may never come).
    await settleAutoPayoutCheck(deps.ctx.pool, tip.worker_id, marked, new Date(clockOf(deps.ctx).now()));
    throw err;
  }
  if (started === "deferred") await settleAutoPayoutCheck(deps.ctx.pool, tip.worker_id, marked, afterOpenPayout(deps));
  else if (marked) await clearAutoPayoutDue(deps.ctx.pool, tip.worker_id, marked);
}

/** When an automatic payout deferred behind an open payout is tried again: that payout's result wait on. */
const afterOpenPayout = (deps: PayoutDeps) => new Date(clockOf(deps.ctx).now() + deps.config().payoutResultWaitMs);

/** Starts the worker's automatic payout under `idempotencyKey` after the one before in this replica. */
function queueAutoPayout(deps: PayoutDeps, workerId: string, idempotencyKey: string, known?: PayoutSettings | null): Promise<AutoPayoutStart> {
  let starting = autoPayoutsStarting.get(deps);
  if (!starting) autoPayoutsStarting.set(deps, (starting = new Map()));
  const before = starting.get(workerId);
  // Settings read with the credit are fresh only at once: after the wait for the one before (a B2C
  // call), read again, so that a hold or a new payout number set meanwhile counts.
  const mine = before ? before.then(() => startAutoPayout(deps, workerId, idempotencyKey)) : startAutoPayout(deps, workerId, idempotencyKey, known);
  const settled = mine.then(() => undefined, () => undefined);
  const inReplica = starting;
  inReplica.set(workerId, settled);
  void settled.then(() => {
    if (inReplica.get(workerId) === settled) inReplica.delete(workerId);
  });
  return mine;
}

/**
 * The automatic payouts due now (held back by a payout number's cooling-off, or deferred behind an open payout):
 * each started under a key of its due time, so replicas running the pass at once, or a pass retried after a crash,
 * start it once. Each is marked done only after its start, so one that failed is tried again by the next pass; one
 * deferred again (a payout still open) is moved a result wait on, not dropped, and not left at the head of the
 * queue before workers it would keep waiting. Returns how many were due.
 */
export async function startDueAutoPayouts(deps: PayoutDeps, limit: number): Promise<number> {
  const due = await dueAutoPayouts(deps.ctx.pool, new Date(clockOf(deps.ctx).now()), limit);
  for (const { worker_id: workerId, auto_payout_due_at: dueAt } of due) {
    try {
      const started = await queueAutoPayout(deps, workerId, `auto-due-${dueAt.toISOString()}`);
      if (started === "deferred") await deferAutoPayoutDue(deps.ctx.pool, workerId, dueAt, afterOpenPayout(deps));
      else await clearAutoPayoutDue(deps.ctx.pool, workerId, dueAt);
    } catch (err) {
      deps.ctx.logger.warn({ workerId, err }, "due automatic payout not started; the next pass tries again");
    }
  }
  return due.length;
}

async function startAutoPayout(deps: PayoutDeps, workerId: string, idempotencyKey: string, known?: PayoutSettings | null): Promise<AutoPayoutStart> {
  // Nothing to pay out with: the balance waits in the wallet (startAutomaticPayout's refusal, every pass, read the
  // wallet twice and warned for each such worker, for good).
  if (!payoutsConfigured(deps)) return "nothing";
  // Read with the credit when it was recorded (one round trip less per tip), else now.
  const s = known !== undefined ? known : await payoutSettingsOf(deps.ctx.pool, workerId);
  if (!s?.auto_payout || !s.payout_phone || s.payouts_on_hold) return "nothing";
  // A number that replaced another waits out its cooling-off: held back (due then, for reconciliation), not failed.
  const from = automaticPayoutsFrom(s, deps.config().payoutNumberCoolingOffMs ?? PAYOUT_NUMBER_COOLING_OFF_MS, clockOf(deps.ctx).now());
  if (from) return (await markAutoPayoutDue(deps.ctx.pool, workerId, from), "nothing");
  // One at a time: a payout in flight already holds the balance; what it leaves is paid out after it (deferred).
  // The time is taken before the balance is read: startAutomaticPayout refuses if a payout ended since.
  const { rows: [open] } = await deps.ctx.pool.query<{ read_at: Date; open: boolean }>(
    `SELECT clock_timestamp() AS read_at, EXISTS (SELECT 1 FROM payment.payouts WHERE worker_id = $1 AND ${MOVING_PAYOUT}) AS open`, [workerId]);
  if (open.open) return (await startedUnder(deps, workerId, idempotencyKey)) ? "started" : "deferred";
  const available = await deps.ledger.available(workerId);
  // Up to the withdrawal limits (per withdrawal, per day, ...): the rest waits for a later payout.
  const { room, perWithdrawal } = await deps.ledger.withdrawalRoom(workerId);
  const capped = room !== undefined && room < available;
  const amount = ((capped ? room : available) / 100n) * 100n;
  // Below the worker's minimum, or B2C's least (whatever minimum was set before it was enforced), it waits for more
  // tips. A minimum over what one withdrawal may be is read as that limit: else it would never be reached.
  const minimum = perWithdrawal !== undefined && perWithdrawal < s.auto_payout_minimum_minor ? perWithdrawal : s.auto_payout_minimum_minor;
  if (amount < minimum || amount < B2C_MIN_MINOR) return "nothing";
  const left = available - amount;
  const note = capped && left > 0n ? `${formatMoney(left, "KES")} left in your wallet: your withdrawal limit allows ${formatMoney(amount, "KES")} now; the rest is paid out with a later tip or when you withdraw.` : "";
  const started = await startAutomaticPayout(deps, { workerId, amountMinor: amount, phone: s.payout_phone, idempotencyKey, automatic: true, note }, open.read_at);
  return started || (await startedUnder(deps, workerId, idempotencyKey)) ? "started" : "deferred";
}

/**
 * Whether a payout under this key exists: another replica's pass started this very one (three passes take the same
 * due payout at once). It is this start's, not a payout to wait behind: read as deferred, the due was moved on
 * beside that replica's clearing of it, and stayed due after the payout had paid the balance out.
 */
async function startedUnder(deps: PayoutDeps, workerId: string, idempotencyKey: string): Promise<boolean> {
  const { rowCount } = await deps.ctx.pool.query("SELECT 1 FROM payment.payouts WHERE worker_id = $1 AND idempotency_key = $2", [workerId, idempotencyKey]);
  return rowCount === 1;
}
