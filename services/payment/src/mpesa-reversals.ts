// A payment given back to the number that paid it by Daraja's TransactionReversal: whole, as M-Pesa
// reverses a payment. Two kinds: an M-Pesa tip (RefundTip), whose worker's share (a venue tip's pool's)
// is taken back first, so a reversal is never paid out of money already withdrawn (a held tip declined
// after review never reached them: its money comes out of suspense, where it waits); and a paybill
// payment in suspense that support refunds (ResolveSuspensePayment), out of suspense. M-Pesa's result
// comes later to the ResultURL, and a refusal puts the money back. A reversal moves
// new → debited → sending → sent → reversed | failed, and its one request is never sent twice:
// M-Pesa refuses a second reversal of a payment, and that refusal, read as the first's, would give the
// money back while the payer has it. A request whose answer was lost stays in doubt for support.
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { asConnectError, ConcurrentChangeError, DependencyUnavailableError, fieldError, formatMoney, IdempotencyConflictError, InvalidStateError, NotConfiguredError, NotFoundError, withTransaction, type Queryable } from "@ttip/runtime";
import { neverMoney, spentReceiptOf, type C2bRow } from "./c2b.js";
import { callbackUrl, newCallbackToken } from "./callback-paths.js";
import type { ParsedResult } from "./callbacks.js";
import type { CardColumns } from "./cards/convert.js";
import { emitTipReversed, TipReversalKind } from "./cards/reversals.js";
import { mpesaCallbackBase } from "./config.js";
import { DarajaError } from "./daraja/client.js";
import { recordAlert } from "./fraud.js";
import { closeReversalAlerts } from "./stores/fraud-alerts.js";
import { loadTip, TIP_COLUMNS, type Deps, type TipRow } from "./tips.js";

/** A tip row with the amounts its reversals change. */
type ReversibleTip = TipRow & Pick<CardColumns, "refunded_minor" | "reversed_wallet_minor" | "wallet_currency">;

export interface ReversalRow {
  reversal_id: string;
  /** The tip whose payment it gives back; null for a refunded suspense payment's (suspense_receipt). */
  tip_id: string | null;
  /** The refunded suspense payment it gives back (0062); null for a tip's. */
  suspense_receipt: string | null;
  idempotency_key: string;
  receipt: string;
  amount_minor: bigint;
  wallet_minor: bigint;
  status: "new" | "debited" | "sending" | "sent" | "reversed" | "failed";
  reason: string;
  requested_by: string;
  callback_token: string;
  result_desc: string;
  /** M-Pesa's receipt of the reversal itself, once it reported it made. */
  reversal_receipt: string | null;
  /** When support was told it is in doubt (0061). */
  alerted_at: Date | null;
}

export interface ReverseInput {
  idempotencyKey: string;
  amount?: { currency: string; amountMinor: bigint };
  reason: string;
  requestedBy: string;
  /** Records the admin's action in the transaction that takes the share back, once per reversal. */
  record?: (tx: Queryable, amount: string) => Promise<void>;
}

/**
 * What one reversal gives back and what its moves change beside its own row: a tip's payment (its worker's share,
 * the tip's figures and events) or a refunded suspense payment (suspense alone: its state is read from its reversals).
 */
interface Reversed {
  /** Names it in ledger descriptions, alerts and M-Pesa's remarks. */
  label: string;
  /** Where support's alerts about it point. */
  alert: { tipId?: string; workerId?: string };
  /** The money back to M-Pesa clearing (new → debited); the wallet's FAILED_PRECONDITION when the balance no longer holds it. */
  takeBack(reversal: ReversalRow, key: string): Promise<void>;
  /** The money back where it was: the reversal not made. */
  giveBack(reversal: ReversalRow, key: string): Promise<void>;
  /** In the transaction of each move (its row locked first by `lock`). */
  lock(tx: Queryable): Promise<void>;
  debited(tx: Queryable, reversal: ReversalRow): Promise<void>;
  failed(tx: Queryable, reversal: ReversalRow): Promise<void>;
  reversed(tx: Queryable, reversal: ReversalRow): Promise<void>;
  /** What the FAILED_PRECONDITION of a refusal says happened to the money. */
  moneyBack: string;
  /** Tells clients following it of a move. */
  announce(): void;
}

/** Daraja's result code for a payment reversed already (by support on M-Pesa's portal, say): the payer has the money. */
const ALREADY_REVERSED = "R000001";

const pool = (deps: Deps) => deps.ctx.pool;

const loadReversible = async (db: Queryable, tipId: string) => (await loadTip(db, tipId)) as ReversibleTip | undefined;

async function reversalByKey(db: Queryable, tipId: string, key: string): Promise<ReversalRow | undefined> {
  return (await db.query<ReversalRow>("SELECT * FROM payment.mpesa_reversals WHERE tip_id = $1 AND idempotency_key = $2", [tipId, key])).rows[0];
}

const reversalById = async (db: Queryable, reversalId: string) =>
  (await db.query<ReversalRow>("SELECT * FROM payment.mpesa_reversals WHERE reversal_id = $1", [reversalId])).rows[0]!;

const mpesaConfigured = (deps: Deps) => mpesaCallbackBase(deps.config()) !== undefined;

/** Reverses a paid M-Pesa tip, once per idempotency key; a retry resumes from the step its reversal reached. */
export async function reverseMpesaTip(deps: Deps, tip: ReversibleTip, input: ReverseInput): Promise<{ tip: TipRow; reversalId: string }> {
  if (!mpesaConfigured(deps)) throw new NotConfiguredError("M-Pesa is not configured on this deployment");
  const reversal = await reversalUnderKey(deps, tip, input);
  const subject = tipReversed(deps, tip);
  if (reversal.status === "new") await takeBack(deps, subject, reversal, (tx) => input.record?.(tx, formatMoney(reversal.amount_minor, "KES")));
  if (reversal.status === "debited") await sendReversal(deps, subject, reversal);
  if (reversal.status === "failed") throw new InvalidStateError(`tip_id: this reversal failed (${reversal.result_desc}); nothing is taken from the worker`);
  subject.announce();
  return { tip: (await loadTip(deps.ctx.pool, tip.tip_id))!, reversalId: reversal.reversal_id };
}

/** The reversal made under the key before, else a new one of the whole payment, checked against the tip. */
async function reversalUnderKey(deps: Deps, tip: ReversibleTip, input: ReverseInput): Promise<ReversalRow> {
  const { pool } = deps.ctx;
  const asked = input.amount?.amountMinor ? input.amount : undefined;
  const made = await reversalByKey(pool, tip.tip_id, input.idempotencyKey);
  if (made) {
    if (asked && (asked.currency !== "KES" || asked.amountMinor !== made.amount_minor)) throw new IdempotencyConflictError(input.idempotencyKey, "RefundTip");
    return made;
  }
  const paid = reversibleAmount(tip);
  if (asked?.currency !== undefined && asked.currency !== "KES") throw fieldError("amount", "the tip was paid in KES");
  if (asked && asked.amountMinor !== paid) throw fieldError("amount", `M-Pesa gives a payment back whole: ${formatMoney(paid, "KES")}, or leave it unset`);
  const key = await withTransaction(pool, async (tx) => {
    const { rows: [locked] } = await tx.query<{ rejection_claim: string | null; mpesa_receipt: string | null }>(
      "SELECT rejection_claim, mpesa_receipt FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [tip.tip_id]);
    // The payment reversed is the tip's as it is now: a late callback may have given it its push's receipt since it was
    // read, its paybill payment parked in suspense (parkSecondPaybillPayment), which must not be reversed as well.
    if (locked.mpesa_receipt !== tip.mpesa_receipt) throw new InvalidStateError("tip_id: the tip's payment receipt changed meanwhile; retry");
    // A declined tip's money spent otherwise meanwhile (support refunded its paybill payment, or credited it as another tip).
    if (declinedInSuspense(tip) && (locked.rejection_claim !== "plain" || (await spentReceiptOf(tx, tip)))) {
      throw new InvalidStateError("tip_id: the declined tip's payment was refunded by support or credited as another tip already");
    }
    // M-Pesa reversed it after all, once its reversal was marked failed (and the share given back): support is asked
    // to take the share back by hand; a second reversal would take it again (M-Pesa answers "reversed already").
    const { rows: [late] } = await tx.query<{ reversal_receipt: string }>(
      "SELECT reversal_receipt FROM payment.mpesa_reversals WHERE tip_id = $1 AND status = 'failed' AND reversal_receipt IS NOT NULL LIMIT 1", [tip.tip_id]);
    if (late) {
      throw new InvalidStateError(`tip_id: M-Pesa reported this payment reversed (receipt ${late.reversal_receipt}) after its reversal was marked failed: `
        + "the customer has their money; take the worker's share back by hand, as the open alert says; nothing more is reversed");
    }
    const { rows: [live] } = await tx.query<{ idempotency_key: string; status: string }>(
      "SELECT idempotency_key, status FROM payment.mpesa_reversals WHERE tip_id = $1 AND status <> 'failed' AND idempotency_key <> $2 LIMIT 1", [tip.tip_id, input.idempotencyKey]);
    if (live?.status === "reversed") throw new InvalidStateError("tip_id: this tip's payment was reversed already");
    // Another request for the tip's reversal under a new key follows the one under way, as its retry would: its key
    // lived only in the screen that asked, and one left new (the wallet did not answer) could be finished by nothing else.
    if (live) return live.idempotency_key;
    await tx.query(
      `INSERT INTO payment.mpesa_reversals (reversal_id, tip_id, idempotency_key, receipt, amount_minor, wallet_minor, status, reason, requested_by, callback_token)
       VALUES ($1, $2, $3, $4, $5, $6, 'new', $7, $8, $9) ON CONFLICT (tip_id, idempotency_key) DO NOTHING`,
      [randomUUID(), tip.tip_id, input.idempotencyKey, tip.mpesa_receipt, paid, declinedInSuspense(tip) ? 0n : tip.worker_receives_minor, input.reason, input.requestedBy, newCallbackToken()],
    );
    return input.idempotencyKey;
  });
  return (await reversalByKey(pool, tip.tip_id, key))!;
}

/**
 * A held tip declined after review whose money waits in suspense, its customer told it will be refunded: what
 * rejections.ts records as "review_rejected" (not a paybill payment back on support's list, not money spent elsewhere).
 */
const declinedInSuspense = (tip: TipRow) => tip.status === "failed" && tip.result_code === "review_rejected" && tip.credit_kind === "suspense";

/**
 * What M-Pesa took of the tip's payment, to give back; FAILED_PRECONDITION unless it is a paid tip M-Pesa took as
 * charged and the tip credited, or a declined one whose money waits in suspense.
 */
function reversibleAmount(tip: ReversibleTip): bigint {
  const credited = tip.status === "succeeded" && (tip.credit_kind === "worker" || tip.credit_kind === "venue");
  if (!tip.mpesa_receipt || !(credited || declinedInSuspense(tip))) {
    throw new InvalidStateError("tip_id: only a paid M-Pesa tip, or one declined after review, is reversed (a held tip is decided with ReviewTip first)");
  }
  if (!tip.credit_entry_id) throw new ConcurrentChangeError("tip_id: the tip's credit is still being posted; retry in a moment");
  const paid = declinedInSuspense(tip) ? (tip.received_minor ?? tip.charged_minor) : tip.charged_minor;
  if (credited && tip.received_minor !== null && tip.received_minor !== tip.charged_minor) {
    throw new InvalidStateError("tip_id: M-Pesa took another amount than was charged; support reverses this payment by hand");
  }
  // M-Pesa moves whole shillings: a payment it took is one.
  if (paid % 100n !== 0n) throw new InvalidStateError("tip_id: the payment is not in whole shillings");
  return paid;
}

const recipientOf = (tip: TipRow) => (tip.worker_id ? { workerId: tip.worker_id } : { venueId: tip.venue_id });

/** A tip's reversal: the worker's share (or the pool's) and the platform's fee (a declined tip's money: suspense) moved, the tip's figures kept. */
function tipReversed(deps: Deps, tip: ReversibleTip): Reversed {
  const label = `M-Pesa tip ${tip.tip_id}`;
  const declined = declinedInSuspense(tip);
  return {
    label,
    alert: { tipId: tip.tip_id, workerId: tip.worker_id ?? undefined },
    takeBack: async (reversal, key) => {
      const description = `Reversal of ${label} (${reversal.receipt})`;
      if (declined) return void (await deps.ledger.suspenseToClearing({ key, receipt: reversal.receipt, amountMinor: reversal.amount_minor, description, memo: "declined tip reversed to its payer" }));
      await deps.ledger.postEntry(await deps.ledger.tipReversalEntry({
        key, creditEntryId: tip.credit_entry_id!, receipt: reversal.receipt, recipient: recipientOf(tip), chargedMinor: reversal.amount_minor, workerMinor: reversal.wallet_minor, description,
      }));
    },
    giveBack: async (reversal, key) => {
      const back = { key, receipt: reversal.receipt, description: `Reversal of ${label} not made` };
      if (declined) return void (await deps.ledger.toSuspense({ ...back, amountMinor: reversal.amount_minor, memo: "declined tip: its reversal not made" }));
      await deps.ledger.postEntry(await deps.ledger.tipCreditEntry({ ...back, recipient: recipientOf(tip), chargedMinor: reversal.amount_minor, workerMinor: reversal.wallet_minor }));
    },
    lock: async (tx) => void (await tx.query("SELECT 1 FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [tip.tip_id])),
    debited: async (tx, reversal) => {
      const now = await moveTip(tx, tip.tip_id, reversal, "pending");
      await emitTipReversed(tx, now, { kind: TipReversalKind.REFUND, reversalId: reversal.reversal_id, chargedMinor: reversal.amount_minor, walletMinor: reversal.wallet_minor });
    },
    failed: async (tx, reversal) => {
      const now = await moveTip(tx, tip.tip_id, reversal, "failed");
      await emitTipReversed(tx, now, { kind: TipReversalKind.REFUND_REFUSED, reversalId: reversal.reversal_id, chargedMinor: -reversal.amount_minor, walletMinor: -reversal.wallet_minor });
    },
    reversed: async (tx) => void (await tx.query("UPDATE payment.tips SET mpesa_reversal = 'reversed' WHERE tip_id = $1", [tip.tip_id])),
    moneyBack: declined ? "its money waits in suspense again" : "the worker's share was given back",
    announce: () => deps.changes.announce(tip.tip_id),
  };
}

/** A refunded suspense payment's reversal: its money out of suspense and back; nothing else keeps its state. */
function suspenseReversed(deps: Deps, receipt: string): Reversed {
  const label = `paybill payment ${receipt}`;
  const nothing = async () => undefined;
  return {
    label,
    alert: {},
    takeBack: async (reversal, key) =>
      void (await deps.ledger.suspenseToClearing({ key, receipt, amountMinor: reversal.amount_minor, description: `Refund of ${label} from suspense`, memo: "refunded to its payer" })),
    giveBack: async (reversal, key) =>
      void (await deps.ledger.toSuspense({ key, receipt, amountMinor: reversal.amount_minor, description: `Refund of ${label} not made`, memo: "its refund's reversal not made" })),
    lock: async (tx) => void (await tx.query("SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1 FOR UPDATE", [receipt])),
    debited: nothing,
    failed: nothing,
    reversed: nothing,
    moneyBack: "its money waits in suspense again: refund it again to retry",
    announce: () => undefined,
  };
}

/** What a reversal row gives back. */
async function subjectOf(deps: Deps, reversal: ReversalRow): Promise<Reversed> {
  if (reversal.suspense_receipt) return suspenseReversed(deps, reversal.suspense_receipt);
  return tipReversed(deps, (await loadReversible(pool(deps), reversal.tip_id!))!);
}

/** new → debited: the money back to clearing, then the reversal and its subject say so (`record` in that transaction). */
async function takeBack(deps: Deps, subject: Reversed, reversal: ReversalRow, record?: (tx: Queryable) => Promise<void> | undefined): Promise<void> {
  try {
    await subject.takeBack(reversal, `mpesa-reversal:${reversal.reversal_id}`);
  } catch (err) {
    const e = asConnectError(err);
    if (e.code !== Code.FailedPrecondition) throw new DependencyUnavailableError(`the wallet cannot take the money back now (${e.rawMessage}); retry with the same idempotency key`);
    await pool(deps).query("UPDATE payment.mpesa_reversals SET status = 'failed', result_desc = $2, decided_at = now() WHERE reversal_id = $1 AND status = 'new'",
      [reversal.reversal_id, "the balance no longer held the money"]);
    reversal.status = "failed";
    throw new InvalidStateError(subject.alert.workerId
      ? "tip_id: the worker's balance no longer covers this reversal (already withdrawn); nothing was sent to M-Pesa"
      : subject.alert.tipId
        ? "tip_id: the venue's pool no longer covers this reversal (already distributed); nothing was sent to M-Pesa"
        : "receipt: suspense no longer holds its money; nothing was sent to M-Pesa");
  }
  await withTransaction(pool(deps), async (tx) => {
    const { rowCount } = await tx.query("UPDATE payment.mpesa_reversals SET status = 'debited' WHERE reversal_id = $1 AND status = 'new'", [reversal.reversal_id]);
    if (!rowCount) return;
    await subject.debited(tx, reversal);
    await record?.(tx);
  });
  reversal.status = "debited";
}

/** The tip's reversal state, and its refunded amounts by the reversal's (taken off again when `state` is failed). */
async function moveTip(tx: Queryable, tipId: string, reversal: ReversalRow, state: "pending" | "failed"): Promise<ReversibleTip> {
  const sign = state === "failed" ? -1n : 1n;
  const { rows: [now] } = await tx.query<ReversibleTip>(
    `UPDATE payment.tips SET refunded_minor = refunded_minor + $2, reversed_wallet_minor = reversed_wallet_minor + $3, mpesa_reversal = $4
      WHERE tip_id = $1 RETURNING ${TIP_COLUMNS}`,
    [tipId, sign * reversal.amount_minor, sign * reversal.wallet_minor, state],
  );
  return now;
}

/**
 * debited → sending → sent: the one request to M-Pesa, claimed first so that no two requests send it. Refused:
 * the money goes back. Never left (no connection): debited again, to retry. Its answer lost: in doubt, left sending.
 */
async function sendReversal(deps: Deps, subject: Reversed, reversal: ReversalRow): Promise<void> {
  const { rows: [claimed] } = await pool(deps).query("UPDATE payment.mpesa_reversals SET status = 'sending', sent_at = now() WHERE reversal_id = $1 AND status = 'debited' RETURNING 1", [reversal.reversal_id]);
  if (!claimed) return void Object.assign(reversal, await reversalById(pool(deps), reversal.reversal_id));
  const base = deps.config().callbackBaseUrl!;
  try {
    const answer = await deps.daraja().reversal({
      transactionId: reversal.receipt, amount: Number(reversal.amount_minor / 100n),
      resultUrl: callbackUrl(base, "reversal/result", reversal.callback_token), queueTimeoutUrl: callbackUrl(base, "reversal/timeout", reversal.callback_token),
      remarks: reversal.tip_id ? `TTIP tip ${reversal.tip_id.slice(0, 8)} reversed` : `TTIP payment ${reversal.receipt} refunded`,
    });
    await pool(deps).query("UPDATE payment.mpesa_reversals SET status = 'sent', conversation_id = $2 WHERE reversal_id = $1 AND status = 'sending'", [reversal.reversal_id, answer.ConversationID]);
    reversal.status = "sent";
  } catch (err) {
    if (!(err instanceof DarajaError) || err.kind === "unknown") {
      await alertInDoubt(deps, subject, reversal, `its request's answer was lost (${(err as Error).message})`);
      throw new DependencyUnavailableError("M-Pesa's answer to the reversal was lost: it may be under way, and its result will show; it is not sent again (support is alerted)");
    }
    if (err.kind !== "rejected") {
      await pool(deps).query("UPDATE payment.mpesa_reversals SET status = 'debited' WHERE reversal_id = $1 AND status = 'sending'", [reversal.reversal_id]);
      throw new DependencyUnavailableError(`M-Pesa could not be reached (${err.message}); nothing was sent: retry with the same idempotency key`);
    }
    await giveBack(deps, subject, reversal, `M-Pesa refused the request: ${err.message}`);
    throw new InvalidStateError(`${reversal.tip_id ? "tip_id" : "receipt"}: M-Pesa refused the reversal (${err.message}); ${subject.moneyBack}`);
  }
}

/** Tells support, once per reversal, that M-Pesa's word on it is missing: the money stays taken back meanwhile. */
async function alertInDoubt(deps: Deps, subject: Reversed, reversal: ReversalRow, why: string): Promise<void> {
  await alertOnce(deps, subject, reversal,
    `M-Pesa reversal ${reversal.reversal_id} of ${subject.label}, receipt ${reversal.receipt} (${formatMoney(reversal.amount_minor, "KES")}) is in doubt: ${why}. ` +
      "The money stays taken back; check M-Pesa's statement");
}

/** Tells support of a reversal once (alerted_at); `onlyIf`: while it is still in that state. */
async function alertOnce(deps: Deps, subject: Reversed, reversal: ReversalRow, detail: string, onlyIf?: ReversalRow["status"]): Promise<void> {
  await withTransaction(pool(deps), async (tx) => {
    const { rowCount } = await tx.query(
      "UPDATE payment.mpesa_reversals SET alerted_at = now() WHERE reversal_id = $1 AND alerted_at IS NULL AND ($2::text IS NULL OR status = $2)",
      [reversal.reversal_id, onlyIf ?? null]);
    if (rowCount) await recordAlert(tx, { reason: "CALLBACK_MISMATCH", action: "flag", ...subject.alert, detail });
  });
}

/**
 * Tells support that M-Pesa reversed a tip's payment whose share went back all the same: theirs to take back. (A
 * suspense payment's money is taken out again by itself: giveBack, reversedAfterFailing.)
 */
async function alertTakeBackByHand(tx: Queryable, subject: Reversed, reversal: ReversalRow, why: string): Promise<void> {
  await recordAlert(tx, {
    reason: "CALLBACK_MISMATCH", action: "flag", ...subject.alert,
    detail: `M-Pesa reversal ${reversal.reversal_id} of ${subject.label}, receipt ${reversal.receipt}: ${why}; take ${formatMoney(reversal.wallet_minor, "KES")} back by hand`,
  });
}

/** How long after its request a reversal may wait for M-Pesa's result before support is told (M-Pesa answers in seconds as a rule). */
const RESULT_WAIT_MINUTES = 60;
/** How old a reversal left new (a refund's) or debited is before the pass moves it: the request that made it moves it first as a rule. */
const RESUME_AFTER_SECONDS = 30;

/**
 * The reconciliation pass's: reversals left debited (the money taken, the request never sent: a crash, M-Pesa not
 * reached) are sent, and refunds' reversals left new (decided, the money never taken) taken and sent; reversals with
 * no result RESULT_WAIT_MINUTES after their request went are told to support, once. Answers how many it sent.
 */
export async function followUpReversals(deps: Deps, limit: number): Promise<number> {
  if (!mpesaConfigured(deps)) return 0;
  // A tip's reversal left new is its admin's to retry (its wallet step may have been refused for good); a refund's is decided.
  const { rows: unsent } = await pool(deps).query<ReversalRow>(
    `SELECT * FROM payment.mpesa_reversals WHERE (status = 'debited' OR (status = 'new' AND suspense_receipt IS NOT NULL))
        AND created_at < now() - make_interval(secs => $2) ORDER BY created_at LIMIT $1`,
    [limit, RESUME_AFTER_SECONDS]);
  let sent = 0;
  for (const reversal of unsent) {
    const subject = await subjectOf(deps, reversal);
    try {
      if (reversal.status === "new") await takeBack(deps, subject, reversal);
      await sendReversal(deps, subject, reversal);
      if (reversal.status !== "debited") sent++;
    } catch (err) {
      deps.ctx.logger.warn({ tipId: reversal.tip_id, reversalId: reversal.reversal_id, err: (err as Error).message }, "M-Pesa reversal left unsent not sent; next pass tries again");
    }
    subject.announce();
  }
  const { rows: silent } = await pool(deps).query<ReversalRow>(
    `SELECT * FROM payment.mpesa_reversals WHERE status IN ('sending', 'sent') AND alerted_at IS NULL
        AND COALESCE(sent_at, created_at) < now() - make_interval(mins => $2) ORDER BY created_at LIMIT $1`,
    [limit, RESULT_WAIT_MINUTES]);
  for (const reversal of silent) await alertInDoubt(deps, await subjectOf(deps, reversal), reversal, `M-Pesa has sent no result for ${RESULT_WAIT_MINUTES} minutes`);
  await alertUnfinishedRefunds(deps, limit);
  return sent;
}

/**
 * A tip's reversal left new for long: its admin's RefundTip met a wallet that did not answer and was not retried. The
 * wallet may hold its entry (the worker's balance shows it) while nothing went to M-Pesa: support is told, once, to
 * reverse the tip again, which finishes it. Not resumed here: its wallet step may have been refused for good.
 */
async function alertUnfinishedRefunds(deps: Deps, limit: number): Promise<void> {
  const { rows } = await pool(deps).query<ReversalRow>(
    `SELECT * FROM payment.mpesa_reversals WHERE status = 'new' AND suspense_receipt IS NULL AND alerted_at IS NULL
        AND created_at < now() - make_interval(mins => $2) ORDER BY created_at LIMIT $1`,
    [limit, RESULT_WAIT_MINUTES]);
  for (const reversal of rows) {
    const subject = await subjectOf(deps, reversal);
    await alertOnce(deps, subject, reversal,
      `the refund of ${subject.label} (${formatMoney(reversal.amount_minor, "KES")}) was asked by ${reversal.requested_by} and never finished: ` +
        `the wallet did not answer, nothing went to M-Pesa. Reverse the tip again (RefundTip, under any key) to finish it`, "new");
  }
}

/**
 * Refused (or not made, by M-Pesa's statement): the money back (once, by its key), the reversal failed and its
 * subject told (a tip's figures back with an event). Decided reversed meanwhile (a result racing support's word):
 * the money went back all the same, and support is told to take it back by hand.
 */
async function giveBack(deps: Deps, subject: Reversed, reversal: ReversalRow, why: string, record?: (tx: Queryable) => Promise<void>): Promise<void> {
  await subject.giveBack(reversal, `mpesa-reversal-undo:${reversal.reversal_id}`);
  const raced = await withTransaction(pool(deps), async (tx) => {
    await subject.lock(tx);
    const { rowCount } = await tx.query(
      "UPDATE payment.mpesa_reversals SET status = 'failed', result_desc = $2, decided_at = now() WHERE reversal_id = $1 AND status IN ('sending', 'sent')",
      [reversal.reversal_id, why.slice(0, 300)]);
    if (!rowCount) {
      const { rows: [now] } = await tx.query<{ status: string }>("SELECT status FROM payment.mpesa_reversals WHERE reversal_id = $1", [reversal.reversal_id]);
      if (now.status !== "reversed") return false;
      // A suspense payment's money is taken out again below; a share that went back to a balance is support's to take.
      if (!reversal.suspense_receipt) await alertTakeBackByHand(tx, subject, reversal, `it was found reversed as its money went back (${why})`);
      return true;
    }
    await subject.failed(tx, reversal);
    await record?.(tx);
    return false;
  });
  if (raced && reversal.suspense_receipt) {
    await subject.takeBack(reversal, `mpesa-reversal-again:${reversal.reversal_id}`);
    throw new InvalidStateError("suspense_receipt: M-Pesa's result said reversed meanwhile; its money is out of suspense as that says");
  }
  if (raced) throw new InvalidStateError("tip_id: M-Pesa's result said reversed meanwhile; the money went back all the same and support is alerted to take it back");
  Object.assign(reversal, { status: "failed", result_desc: why });
}

/** sending | sent → reversed, its subject saying so, with M-Pesa's receipt of the reversal; false when it was decided already. */
async function markReversed(deps: Deps, subject: Reversed, reversal: ReversalRow, receipt: string, by: { code: string; desc: string }, record?: (tx: Queryable) => Promise<void>): Promise<boolean> {
  return withTransaction(pool(deps), async (tx) => {
    const { rowCount } = await tx.query(
      `UPDATE payment.mpesa_reversals SET status = 'reversed', result_code = $2, result_desc = $3, reversal_receipt = NULLIF($4, ''), decided_at = now()
        WHERE reversal_id = $1 AND status IN ('sending', 'sent')`,
      [reversal.reversal_id, by.code, by.desc.slice(0, 300), receipt]);
    if (!rowCount) return false;
    await subject.reversed(tx, reversal);
    await record?.(tx);
    return true;
  });
}

/**
 * M-Pesa's result for the reversal the token names: reversed (or reversed already), refused (the money goes back),
 * or timed out in its queue (in doubt: support is alerted). What the callback is marked, and the tip it is filed under
 * (the tip's payment detail lists it); "unknown" when no reversal has the token.
 */
export async function applyReversalResult(deps: Deps, token: string, result: ParsedResult, queueTimeout: boolean): Promise<{ outcome: string; tipId?: string }> {
  const { rows: [reversal] } = await pool(deps).query<ReversalRow>("SELECT * FROM payment.mpesa_reversals WHERE callback_token = $1", [token]);
  if (!reversal) return { outcome: "unknown" };
  const subject = await subjectOf(deps, reversal);
  return { outcome: await applyToReversal(deps, subject, reversal, result, queueTimeout), tipId: reversal.tip_id ?? undefined };
}

async function applyToReversal(deps: Deps, subject: Reversed, reversal: ReversalRow, result: ParsedResult, queueTimeout: boolean): Promise<string> {
  if (queueTimeout) {
    await alertInDoubt(deps, subject, reversal, "it timed out in M-Pesa's queue");
    return "reversal_in_doubt";
  }
  const code = result.resultCode.trim();
  if (code === "0" || code === ALREADY_REVERSED) {
    const decided = await markReversed(deps, subject, reversal, result.transactionId, { code, desc: result.resultDesc });
    if (!decided) await reversedAfterFailing(deps, subject, reversal, result.transactionId);
    subject.announce();
    return "reversed";
  }
  if (reversal.status === "sending" || reversal.status === "sent") await giveBack(deps, subject, reversal, `M-Pesa refused: ${code} ${result.resultDesc}`);
  subject.announce();
  return "reversal_refused";
}

/**
 * M-Pesa reported reversed a reversal already failed, its money given back (a refusal or support's word came first):
 * its receipt kept on the row and support told once, however often M-Pesa repeats it. Not the once-per-reversal
 * in-doubt alert: one may have gone before, and this one asks for money back.
 */
async function reversedAfterFailing(deps: Deps, subject: Reversed, reversal: ReversalRow, receipt: string): Promise<void> {
  await withTransaction(pool(deps), async (tx) => {
    const { rowCount } = await tx.query(
      "UPDATE payment.mpesa_reversals SET reversal_receipt = $2 WHERE reversal_id = $1 AND status = 'failed' AND reversal_receipt IS NULL",
      [reversal.reversal_id, receipt || "unknown"]);
    if (!rowCount) return;
    if (!reversal.suspense_receipt) {
      await alertTakeBackByHand(tx, subject, reversal, `M-Pesa reported it reversed after it was marked failed (${reversal.result_desc}) and the money given back`);
      return;
    }
    // Its money back in suspense, M-Pesa's word now says reversed: a reversal again, which M-Pesa answers "reversed
    // already", takes it out and leaves the payment REVERSED. None is made while a later one is live or reversed: that
    // one takes it out (or did).
    await claimSuspenseReversal(tx, { trans_id: reversal.suspense_receipt, amount_minor: reversal.amount_minor }, { requestedBy: "mpesa", reason: "M-Pesa reported reversed a reversal marked failed" });
  });
  if (reversal.suspense_receipt) await reverseRefundedPayment(deps, reversal.suspense_receipt);
}

export interface ResolveInput {
  /** The reversal's payment: a tip's, or a refunded suspense payment's. */
  of: { tipId: string } | { suspenseReceipt: string };
  /** What M-Pesa's statement shows: the reversal's receipt, or that nothing went back. */
  outcome: { reversed: true; receipt: string } | { reversed: false };
  note: string;
  /** Who said it: the reversal's alerts close in their name. */
  admin: string;
  /** Records the admin's action in the transaction that decides the reversal. */
  record: (tx: Queryable) => Promise<void>;
}

/**
 * Ends a reversal in doubt (support alerted) by M-Pesa's statement, never asking M-Pesa: reversed, as a result
 * would have ended it, or not (the money given back, failed). The same outcome again answers as it is.
 */
export async function resolveReversalInDoubt(deps: Deps, input: ResolveInput): Promise<void> {
  const [column, id, field] = "tipId" in input.of ? ["tip_id" as const, input.of.tipId, "tip_id"] : ["suspense_receipt" as const, input.of.suspenseReceipt, "suspense_receipt"];
  const reversal = await latestReversal(pool(deps), column, id);
  if (!reversal) {
    const table = column === "tip_id" ? "tips WHERE tip_id = $1" : "c2b_payments WHERE trans_id = $1 AND outcome = 'suspense'";
    const known = (await pool(deps).query(`SELECT 1 FROM payment.${table}`, [id])).rowCount;
    if (!known) throw new NotFoundError(column === "tip_id" ? "tip_id: no such tip" : "suspense_receipt: no paybill payment in suspense has this receipt");
    throw new InvalidStateError(`${field}: it has no M-Pesa reversal`);
  }
  const same = input.outcome.reversed ? reversal.status === "reversed" && reversal.reversal_receipt === input.outcome.receipt : reversal.status === "failed";
  if (same) return;
  if (!(reversal.status === "sending" || reversal.status === "sent")) throw new InvalidStateError(`${field}: its reversal is not in doubt: it is ${reversal.status}`);
  if (!reversal.alerted_at) throw new InvalidStateError(`${field}: its reversal waits for M-Pesa's result; support is alerted if none comes within the hour`);
  const subject = await subjectOf(deps, reversal);
  const said = input.outcome.reversed ? `reversed (${input.outcome.receipt}), by M-Pesa's statement` : "not reversed, by M-Pesa's statement";
  // Its in-doubt alert ends with it: left open, the Fraud queue would ask for what is done.
  const record = async (tx: Queryable) => {
    await input.record(tx);
    await closeReversalAlerts(tx, reversal.reversal_id, input.admin, `${said}: ${input.note}`);
  };
  if (!input.outcome.reversed) await giveBack(deps, subject, reversal, `${said} (support: ${input.note})`, record);
  else if (!(await markReversed(deps, subject, reversal, input.outcome.receipt, { code: "support", desc: `${said} (support: ${input.note})` }, record))) {
    await saidReversedWhenDecided(deps, subject, reversal, input.outcome.receipt, field);
  }
  subject.announce();
}

/**
 * Support's "reversed" found the reversal decided since it was read (another admin's "not reversed", or M-Pesa's
 * refusal): as M-Pesa's word "reversed" after a failure, its receipt is kept and the money taken back (support told,
 * or out of suspense again); the request is refused, saying so. Before, it was answered OK with nothing done: the
 * customer had the money back and the worker the share as well.
 */
async function saidReversedWhenDecided(deps: Deps, subject: Reversed, reversal: ReversalRow, receipt: string, field: string): Promise<void> {
  const { rows: [now] } = await pool(deps).query<ReversalRow>("SELECT * FROM payment.mpesa_reversals WHERE reversal_id = $1", [reversal.reversal_id]);
  if (now.status === "reversed" && now.reversal_receipt === receipt) return;
  if (now.status !== "failed") throw new InvalidStateError(`${field}: its reversal was decided meanwhile: ${now.status}`);
  await reversedAfterFailing(deps, subject, reversal, receipt);
  subject.announce();
  throw new InvalidStateError(reversal.suspense_receipt
    ? `${field}: its reversal was decided not reversed meanwhile; as the statement shows it reversed, its money is taken out of suspense again`
    : `${field}: its reversal was decided not reversed meanwhile and the share given back; as the statement shows it reversed, support is alerted to take it back`);
}

/** Whether a refund of this suspense payment is reversed on M-Pesa: money M-Pesa can have moved, with M-Pesa configured. */
export function reversesOnRefund(deps: Deps, row: Pick<C2bRow, "amount_minor">): boolean {
  return mpesaConfigured(deps) && !neverMoney(row.amount_minor) && row.amount_minor % 100n === 0n;
}

/**
 * A refunded suspense payment's reversal, made in the refund's transaction (or a refund again after one failed), so that
 * a refund decided is a reversal on its way whatever crashes next. One attempt per key (`refund:<n>`, the n-th): two
 * retries at once make one; none while another is live.
 */
export async function claimSuspenseReversal(db: Queryable, row: Pick<C2bRow, "trans_id" | "amount_minor">, input: { requestedBy: string; reason: string }): Promise<boolean> {
  const { rows: [made] } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM payment.mpesa_reversals WHERE suspense_receipt = $1", [row.trans_id]);
  const { rowCount } = await db.query(
    `INSERT INTO payment.mpesa_reversals (reversal_id, suspense_receipt, idempotency_key, receipt, amount_minor, wallet_minor, status, reason, requested_by, callback_token)
     VALUES ($1, $2, $3, $2, $4, 0, 'new', $5, $6, $7) ON CONFLICT DO NOTHING`,
    [randomUUID(), row.trans_id, `refund:${made.n}`, row.amount_minor, input.reason, input.requestedBy, newCallbackToken()]);
  return rowCount === 1;
}

/** The latest reversal of a tip's payment or a refunded suspense payment, if any. */
async function latestReversal(db: Queryable, column: "tip_id" | "suspense_receipt", id: string): Promise<ReversalRow | undefined> {
  return (await db.query<ReversalRow>(`SELECT * FROM payment.mpesa_reversals WHERE ${column} = $1 ORDER BY created_at DESC LIMIT 1`, [id])).rows[0];
}

/** The latest reversal of a refunded suspense payment, if any. */
export const suspenseReversalOf = (db: Queryable, receipt: string) => latestReversal(db, "suspense_receipt", receipt);

/**
 * Moves a refunded suspense payment's live reversal as far as it goes now: its money out of suspense, its request sent.
 * The refund is decided already, so what stops it is logged, not thrown: the reconciliation pass sends one left behind,
 * a refusal shows on the payment (FAILED, M-Pesa's words), and one in doubt is alerted.
 */
export async function reverseRefundedPayment(deps: Deps, receipt: string): Promise<void> {
  const reversal = await suspenseReversalOf(pool(deps), receipt);
  if (!reversal || !(reversal.status === "new" || reversal.status === "debited")) return;
  const subject = suspenseReversed(deps, receipt);
  try {
    if (reversal.status === "new") await takeBack(deps, subject, reversal);
    await sendReversal(deps, subject, reversal);
  } catch (err) {
    deps.ctx.logger.warn({ receipt, reversalId: reversal.reversal_id, err: (err as Error).message }, "a refund's M-Pesa reversal stopped; its state shows on the payment");
  }
}
