import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationInternalService, type SendNotificationRequest, SendNotificationRequestSchema } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { asConnectError, formatMoney, GroupCommit, perContext, type Queryable } from "@ttip/runtime";
import { qrClient } from "./peer-clients.js";
import type { Deps } from "./tips.js";

/** Owes the customer a receipt; call it in the transaction that records the credit. */
export async function oweReceipt(tx: Queryable, tipId: string): Promise<void> {
  await tx.query("INSERT INTO payment.receipts (tip_id) VALUES ($1) ON CONFLICT DO NOTHING", [tipId]);
}

/**
 * ALREADY_EXISTS: this receipt's key was used by an earlier send whose answer was lost, with
 * other wording (the worker's name could not be looked up then): the receipt went out.
 * Undefined then; otherwise the failure.
 */
function sentBefore(err: unknown): unknown {
  return asConnectError(err).code === Code.AlreadyExists ? undefined : err;
}

/**
 * Sends owed receipts (payment.receipts' rows: one sent is deleted, markSent) by SMS to the
 * number that paid and by e-mail to the address the customer gave (if any), the least tried
 * first, then the oldest (or only `tipId`'s). The notification service dedupes on the key, so a
 * send repeated after a crash or by two replicas is one SMS. Failures stay owed and are retried
 * by the next reconciliation pass, behind every receipt tried fewer times: one that fails every
 * time (a number notification refuses) cannot hold the pass's places from the others.
 */
export async function sendReceipts(deps: Deps, limit: number, tipId?: string): Promise<number> {
  const { rows } = await deps.ctx.pool.query<OwedReceipt>(
    `SELECT t.tip_id, t.phone, t.currency, t.charged_minor, t.credit_key, t.mpesa_receipt, t.provider_payment_id, t.worker_id, t.venue_id, t.customer_email, t.channel, t.idempotency_key, t.locale
       FROM payment.receipts r JOIN payment.tips t USING (tip_id)
      WHERE $2::uuid IS NULL OR r.tip_id = $2
      ORDER BY r.attempts, r.created_at LIMIT $1`,
    [limit, tipId ?? null],
  );
  return sendOwedReceipts(deps, rows);
}

/** What a receipt says, from the tip's row. */
export interface OwedReceipt {
  tip_id: string;
  phone: string;
  /** What the customer paid in: KES by M-Pesa, the card's currency by card. */
  currency: string;
  charged_minor: bigint;
  credit_key: string | null;
  mpesa_receipt: string | null;
  /** A card tip's payment at Stripe or PayPal: its receipt's reference. */
  provider_payment_id?: string | null;
  worker_id: string | null;
  venue_id: string;
  customer_email: string | null;
  /** "ussd": the customer chose a language in the menu, and the receipt is in it. */
  channel?: string;
  /** A USSD tip's is ussd:<session id> (ussd.ts). */
  idempotency_key?: string;
  /** The language the customer tipped in on the web (CreateTipRequest.locale); "" when none was given. */
  locale?: string;
}

/**
 * Sends the receipts of these tips (owed, not yet marked sent): their messages go to
 * notification in batches (receiptBatchesFor), with those of receipts being sent at the
 * same time, and each is answered on its own. A receipt sent meanwhile by another pass
 * is not sent twice: notification dedupes on the key. One that fails stays owed, alone.
 */
export async function sendOwedReceipts(deps: Deps, rows: OwedReceipt[]): Promise<number> {
  const { pool, logger } = deps.ctx;
  const stillOwed = async (tipId: string, err: unknown) => {
    logger.warn({ tipId, err: (err as Error).message }, "receipt not sent yet; will retry");
    await pool.query("UPDATE payment.receipts SET attempts = attempts + 1, last_error = $2 WHERE tip_id = $1", [tipId, String((err as Error).message).slice(0, 500)]);
  };
  const [named, locales] = await Promise.all([displayNames(qrClient(deps.ctx), rows.map(ownerOf)), ussdLocales(pool, rows)]);
  const batches = receiptBatches(deps.ctx);
  // A message refused by a full queue is a failure like any other: its receipt stays owed.
  const outcomes = await Promise.all(rows.map((r) => Promise.all(receiptMessages(r, named.get(ownerKey(ownerOf(r))) ?? "", locales.get(r.tip_id) ?? r.locale ?? "").map((m) => batches.add(m).catch((err: unknown) => err)))));
  const sentIds: string[] = [];
  const failures: Promise<void>[] = [];
  rows.forEach((r, i) => {
    const failed = outcomes[i].find((o) => o !== undefined);
    if (failed) failures.push(stillOwed(r.tip_id, failed));
    else sentIds.push(r.tip_id);
  });
  let sent = 0;
  // Marked together once all are sent: one wait and one statement for the pass, not one per receipt (markSent).
  await Promise.all([...failures, ...sentIds.map((tipId) => markSent(pool, tipId).then(() => void sent++, (err) => stillOwed(tipId, err)))]);
  return sent;
}

const USSD_KEY_PREFIX = "ussd:";

/**
 * The language each USSD customer chose in the menu (their session's, found by the tip's key),
 * by tip: their receipt is written in it. Other tips are not asked for (notification's default).
 */
async function ussdLocales(db: Queryable, rows: OwedReceipt[]): Promise<Map<string, string>> {
  const ussd = rows.filter((r) => r.channel === "ussd" && r.idempotency_key?.startsWith(USSD_KEY_PREFIX));
  if (!ussd.length) return new Map();
  const sessionOf = (r: OwedReceipt) => r.idempotency_key!.slice(USSD_KEY_PREFIX.length);
  const { rows: sessions } = await db.query<{ session_id: string; locale: string }>(
    "SELECT session_id, locale FROM payment.ussd_sessions WHERE session_id = ANY($1::text[])",
    [ussd.map(sessionOf)],
  );
  const chosen = new Map(sessions.map((s) => [s.session_id, s.locale]));
  return new Map(ussd.map((r) => [r.tip_id, chosen.get(sessionOf(r)) === "sw" ? "sw" : "en"]));
}

/** Whose name a receipt gives: the worker's, or for a shared tip the venue's. */
function ownerOf(r: OwedReceipt): Owner {
  return r.worker_id ? { ownerKind: OwnerKind.WORKER, ownerId: r.worker_id } : { ownerKind: OwnerKind.VENUE, ownerId: r.venue_id };
}

/** The words a receipt puts in its template's {{worker}}, in the receipt's language. */
const RECEIPT_WORDS = {
  en: { yourServer: "your server", theTeam: "the team", teamAt: (venue: string) => `the team at ${venue}` },
  sw: { yourServer: "mhudumu wako", theTeam: "timu", teamAt: (venue: string) => `timu ya ${venue}` },
};

/**
 * A receipt's messages: by SMS to the number that paid (a card tip has none), and by
 * e-mail when the customer gave an address for it. Each under a key of its own, the
 * same whichever pass sends it; `name` is the owner's display name ("" when unknown:
 * the receipt still says what was paid).
 */
function receiptMessages(r: OwedReceipt, name: string, locale: string): SendNotificationRequest[] {
  const words = locale === "sw" ? RECEIPT_WORDS.sw : RECEIPT_WORDS.en;
  const fallback = r.worker_id ? words.yourServer : words.theTeam;
  const worker = name ? (r.worker_id ? name : words.teamAt(name)) : fallback;
  const variables = { amount: formatMoney(r.charged_minor, r.currency), worker, reference: r.mpesa_receipt ?? r.provider_payment_id ?? r.credit_key ?? "" };
  const messages: SendNotificationRequest[] = [];
  const message = (key: string, recipient: SendNotificationRequest["recipient"], channel: Channel) =>
    create(SendNotificationRequestSchema, { idempotencyKey: key, recipient, templateKey: TemplateKey.RECEIPT, locale, variables, channels: [channel] });
  if (r.phone) messages.push(message(`receipt:${r.tip_id}`, { case: "phone", value: r.phone }, Channel.SMS));
  if (r.customer_email) messages.push(message(`receipt-email:${r.tip_id}`, { case: "email", value: r.customer_email }, Channel.EMAIL));
  return messages;
}

/**
 * Messages per SendNotifications call at most: the contract's limit (notification writes
 * them with their keys' claims in one statement of at most this many rows).
 */
export const RECEIPT_BATCH_MAX = 100;
/** How long notification has to answer a batch: one statement's work, with room for a busy database. */
const BATCH_TIMEOUT_MS = 5_000;
/**
 * Receipt messages waiting for a call at most: ten calls' worth. Past it (a notification that
 * does not answer), a receipt stays owed at once and the reconciliation pass sends it later,
 * rather than each replica holding an unbounded queue in memory.
 */
const RECEIPTS_WAITING_MAX = 10 * RECEIPT_BATCH_MAX;

/**
 * Receipt messages on their way to notification, per service context, in a group commit:
 * a busy replica makes one call and notification one statement for many receipts, and a
 * quiet one adds no wait. Each message's outcome is its own: undefined when queued (now or
 * by an earlier send under its key), else the error.
 */
type ReceiptBatches = GroupCommit<SendNotificationRequest, unknown>;

function receiptBatchesFor(notification: Client<typeof NotificationInternalService>): ReceiptBatches {
  return new GroupCommit(RECEIPT_BATCH_MAX, async (messages) => {
    try {
      const { results } = await notification.sendNotifications({ requests: messages }, { timeoutMs: BATCH_TIMEOUT_MS });
      assert(results.length === messages.length, "one result per message");
      return results.map((r) => (r.code === 0 || r.code === Code.AlreadyExists ? undefined : new ConnectError(r.message, r.code)));
    } catch (err) {
      // A notification without the batch call (a rolling upgrade), or a batch it refused as a
      // whole (a message it found malformed): each alone, so that one fails by itself.
      const code = asConnectError(err).code;
      if (code !== Code.Unimplemented && code !== Code.InvalidArgument) return messages.map(() => err);
      return Promise.all(messages.map((m) => notification.sendNotification(m, { timeoutMs: BATCH_TIMEOUT_MS }).then(() => undefined, sentBefore)));
    }
  }, RECEIPTS_WAITING_MAX);
}

const receiptBatches = perContext((ctx) => receiptBatchesFor(createClient(NotificationInternalService, ctx.peers("notification"))));

/** Receipts marked sent in one statement at most; a bound on the statement's size. */
const MARK_SENT_BATCH = 500;

/**
 * How long a sent receipt's mark waits for a statement that is written anyway
 * (the next tip's credit, recordCredits, or push's CheckoutRequestID) to carry it, before it is written
 * alone: busy, the marks cost no statement and no commit of their own; quiet,
 * one for all those of the window. Invisible to customers: the receipt went out.
 */
const MARK_SENT_WAIT_MS = 50;

/** Receipts sent and waiting to be marked so, per pool, with whoever waits for each. */
interface SentMarks {
  waiting: { tipId: string; done: (err?: unknown) => void }[];
  flushing: boolean;
  timer?: NodeJS.Timeout;
}
const sentMarks = new WeakMap<Queryable, SentMarks>();

/**
 * Marks a receipt sent (its row deleted: migration 0032), with others in one statement: one carrying them
 * (carryingSentMarks), else their own after MARK_SENT_WAIT_MS. Safe to lose in a
 * crash: the receipt stays owed, and its resend is deduped by notification on the key.
 */
export function markSent(pool: Queryable, tipId: string): Promise<void> {
  const marks = sentMarks.get(pool) ?? { waiting: [], flushing: false };
  sentMarks.set(pool, marks);
  const queued = new Promise<void>((resolve, reject) => marks.waiting.push({ tipId, done: (err) => (err === undefined ? resolve() : reject(err)) }));
  scheduleFlush(pool, marks);
  return queued;
}

function scheduleFlush(pool: Queryable, marks: SentMarks): void {
  if (marks.timer || marks.flushing || !marks.waiting.length) return;
  marks.timer = setTimeout(() => {
    marks.timer = undefined;
    void flushSentMarks(pool, marks);
  }, MARK_SENT_WAIT_MS);
}

/**
 * The sent receipts a statement about to run on `pool` is to mark (its
 * `tipIds` parameter, for sentMarksCondition), and what to call with its outcome:
 * on an error they wait for the next statement, or their own.
 */
function takeSentMarks(pool: Queryable): { tipIds: string[]; done: (err?: unknown) => void } {
  const marks = sentMarks.get(pool);
  const batch = marks?.waiting.splice(0, MARK_SENT_BATCH) ?? [];
  return {
    tipIds: sortedIds(batch),
    done: (err) => {
      if (err === undefined) for (const w of batch) w.done();
      else if (batch.length) {
        marks!.waiting.unshift(...batch);
        scheduleFlush(pool, marks!);
      }
    },
  };
}

/**
 * Marks the receipts of the tip ids in `param` (a uuid[] parameter) sent, as a condition that always holds: for the
 * WHERE of a statement carrying them (carryingSentMarks). A sub-select there that names none of the statement's rows
 * is run once, before them (PostgreSQL's one-time filter), whether the statement then finds rows or not, and its cost
 * is the same to the planner whatever the ids: the carrying statement is planned once per connection
 * (tip-statements.test.ts). The function (migration 0018) reads payment.receipts by its key only and locks the rows
 * in the ids' order, however young the table: an UPDATE in the statement itself was joined by a plan that read the
 * table whole (receipt-plans.test.ts).
 */
export const sentMarksCondition = (param: string) =>
  // An empty list (most statements when quiet) stops at the first test: the sub-select is run only where its value is read.
  `(cardinality(${param}::uuid[]) = 0 OR (SELECT payment.mark_receipts_sent(${param}::uuid[])) >= 0)`;

/**
 * Runs `statement` (one carrying sentMarksCondition of the ids it is given) with the receipts
 * marks waiting on `pool`; they are done when it succeeds, and wait again when it fails.
 */
export async function carryingSentMarks<T>(pool: Queryable, statement: (tipIds: string[]) => Promise<T>): Promise<T> {
  const marks = takeSentMarks(pool);
  try {
    const out = await statement(marks.tipIds);
    marks.done();
    return out;
  } catch (err) {
    marks.done(err ?? new Error("the statement carrying receipts marked sent failed"));
    throw err;
  }
}

// Each once, sorted: the function locks them in this order (its key's), whatever the order they were sent in.
const sortedIds = (batch: { tipId: string }[]) => [...new Set(batch.map((w) => w.tipId))].sort();

const MARK_SENT_SQL = "SELECT payment.mark_receipts_sent($1::uuid[])";

async function flushSentMarks(pool: Queryable, marks: SentMarks): Promise<void> {
  marks.flushing = true;
  try {
    const batch = marks.waiting.splice(0, MARK_SENT_BATCH);
    let failure: unknown;
    try {
      if (batch.length) await pool.query(MARK_SENT_SQL, [sortedIds(batch)]);
    } catch (err) {
      failure = err ?? new Error("marking receipts sent failed");
    }
    for (const w of batch) w.done(failure);
  } finally {
    marks.flushing = false;
    scheduleFlush(pool, marks);
  }
}

/**
 * Display names for receipts, by owner, for a minute: a busy worker's receipts do not each
 * ask qr again, and receipts sent at the same time share one question (kept while it is out).
 */
const names = new Map<string, { name: Promise<string>; until: number }>();
const NAME_TTL_MS = 60_000;
const NAMES_MAX = 10_000;

type Owner = { ownerKind: OwnerKind; ownerId: string };
const ownerKey = (owner: Owner) => `${owner.ownerKind}:${owner.ownerId}`;

/** The owners' display names, each asked of qr once (and not again within a minute), all at the same time. */
async function displayNames(qr: Client<typeof QrService>, owners: Owner[]): Promise<Map<string, string>> {
  const distinct = new Map(owners.map((o) => [ownerKey(o), o]));
  const found = await Promise.all([...distinct].map(async ([key, owner]) => [key, await displayName(qr, owner)] as const));
  return new Map(found);
}

/** The owner's display name ("" when it has none, or qr could not say: the receipt then names no one; qr is asked again next time). */
function displayName(qr: Client<typeof QrService>, owner: Owner): Promise<string> {
  const key = ownerKey(owner);
  const now = Date.now();
  const known = names.get(key);
  if (known && known.until > now) return known.name;
  if (names.size >= NAMES_MAX) names.clear();
  const name = qr.getProfile(owner, { timeoutMs: 2_000 }).then(
    (r) => r.profile?.displayName ?? "",
    (err: unknown) => {
      // No profile is an answer (kept like a name); qr out of reach is not.
      if (asConnectError(err).code !== Code.NotFound) names.delete(key);
      return "";
    },
  );
  names.set(key, { name, until: now + NAME_TTL_MS });
  return name;
}
