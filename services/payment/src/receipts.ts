import { type Client, Code, createClient } from "@connectrpc/connect";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { asConnectError, formatMoney, type Queryable } from "@ttip/runtime";
import type { Deps } from "./tips.js";

/** Owes the customer a receipt; call it in the transaction that records the credit. */
export async function oweReceipt(tx: Queryable, tipId: string): Promise<void> {
  await tx.query("INSERT INTO payment.receipts (tip_id) VALUES ($1) ON CONFLICT DO NOTHING", [tipId]);
}

/**
 * ALREADY_EXISTS: this receipt's key was used by an earlier send whose answer was lost, with
 * other wording (the worker's name could not be looked up then): the receipt went out.
 */
function sentBefore(err: unknown): void {
  if (asConnectError(err).code !== Code.AlreadyExists) throw err;
}

/**
 * Sends owed receipts by SMS to the number that paid and by e-mail to the address the
 * customer gave (if any), oldest first (or only
 * `tipId`'s). The notification service dedupes on the key, so a send repeated
 * after a crash or by two replicas is one SMS. Failures stay owed and are
 * retried by the next reconciliation pass.
 */
export async function sendReceipts(deps: Deps, limit: number, tipId?: string): Promise<number> {
  const { rows } = await deps.ctx.pool.query<OwedReceipt>(
    `SELECT t.tip_id, t.phone, t.charged_minor, t.credit_key, t.mpesa_receipt, t.worker_id, t.venue_id, t.customer_email
       FROM payment.receipts r JOIN payment.tips t USING (tip_id)
      WHERE r.sent_at IS NULL AND ($2::uuid IS NULL OR r.tip_id = $2)
      ORDER BY r.created_at LIMIT $1`,
    [limit, tipId ?? null],
  );
  return sendOwedReceipts(deps, rows);
}

/** What a receipt says, from the tip's row. */
export interface OwedReceipt {
  tip_id: string;
  phone: string;
  charged_minor: bigint;
  credit_key: string | null;
  mpesa_receipt: string | null;
  worker_id: string | null;
  venue_id: string;
  customer_email: string | null;
}

/**
 * Sends the receipts of these tips (owed, not yet marked sent). A receipt sent
 * meanwhile by another pass is not sent twice: notification dedupes on the key.
 */
export async function sendOwedReceipts(deps: Deps, rows: OwedReceipt[]): Promise<number> {
  const { pool, peers, logger } = deps.ctx;
  const notification = createClient(NotificationInternalService, peers("notification"));
  const qr = createClient(QrService, peers("qr"));
  let sent = 0;
  const sentIds: string[] = [];
  const stillOwed = async (tipId: string, err: unknown) => {
    logger.warn({ tipId, err: (err as Error).message }, "receipt not sent yet; will retry");
    await pool.query("UPDATE payment.receipts SET attempts = attempts + 1, last_error = $2 WHERE tip_id = $1", [tipId, String((err as Error).message).slice(0, 500)]);
  };
  for (const r of rows) {
    try {
      // The worker's (or, for a shared tip, the venue's) display name belongs to qr; a receipt without it still says what was paid.
      const owner = r.worker_id ? { ownerKind: OwnerKind.WORKER, ownerId: r.worker_id } : { ownerKind: OwnerKind.VENUE, ownerId: r.venue_id };
      const fallback = r.worker_id ? "your server" : "the team";
      const name = await displayName(qr, owner);
      const worker = name ? (r.worker_id ? name : `the team at ${name}`) : fallback;
      const variables = { amount: formatMoney(r.charged_minor, "KES"), worker, reference: r.mpesa_receipt ?? r.credit_key ?? "" };
      // By SMS to the number that paid (a card tip has none), and by e-mail when the customer gave an address for it.
      if (r.phone) {
        await notification.sendNotification({
          idempotencyKey: `receipt:${r.tip_id}`,
          recipient: { case: "phone", value: r.phone },
          templateKey: TemplateKey.RECEIPT,
          variables,
          channels: [Channel.SMS],
        }, { timeoutMs: 5_000 }).catch(sentBefore);
      }
      if (r.customer_email) {
        await notification.sendNotification({
          idempotencyKey: `receipt-email:${r.tip_id}`,
          recipient: { case: "email", value: r.customer_email },
          templateKey: TemplateKey.RECEIPT,
          variables,
          channels: [Channel.EMAIL],
        }, { timeoutMs: 5_000 }).catch(sentBefore);
      }
    } catch (err) {
      await stillOwed(r.tip_id, err);
      continue;
    }
    sentIds.push(r.tip_id);
  }
  // Marked together once all are sent: one wait and one statement for the pass, not one per receipt (markSent).
  await Promise.all(sentIds.map((tipId) => markSent(pool, tipId).then(() => void sent++, (err) => stillOwed(tipId, err))));
  return sent;
}

/** Receipts marked sent in one statement at most; a bound on the statement's size. */
const MARK_SENT_BATCH = 500;

/**
 * How long a sent receipt's mark waits for a statement that is written anyway
 * (the next tip's credit, recordCredit) to carry it, before it is written
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
 * Marks a receipt sent, with others in one statement: one carrying them
 * (takeSentMarks), else their own after MARK_SENT_WAIT_MS. Safe to lose in a
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
 * `tipIds` parameter, for SENT_MARKS_SQL), and what to call with its outcome:
 * on an error they wait for the next statement, or their own.
 */
export function takeSentMarks(pool: Queryable): { tipIds: string[]; done: (err?: unknown) => void } {
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
 * Marks the receipts of the tip ids in `param` (a uuid[] parameter) sent: a CTE body for a statement carrying takeSentMarks.
 * The ids are read through a sub-select so that PostgreSQL estimates the statement the same whatever they are: given
 * directly, an empty list made the plan for the values cheaper than the generic one, and the credit carrying them was
 * planned again on every call (tip-statements.test.ts).
 */
export const sentMarksSql = (param: string) => `UPDATE payment.receipts SET sent_at = now(), attempts = attempts + 1 WHERE tip_id = ANY ((SELECT ${param}::uuid[])::uuid[])`;

// Sorted, so two replicas marking overlapping receipts lock them in the same order.
const sortedIds = (batch: { tipId: string }[]) => [...new Set(batch.map((w) => w.tipId))].sort();

async function flushSentMarks(pool: Queryable, marks: SentMarks): Promise<void> {
  marks.flushing = true;
  try {
    const batch = marks.waiting.splice(0, MARK_SENT_BATCH);
    let failure: unknown;
    try {
      if (batch.length) await pool.query(sentMarksSql("$1"), [sortedIds(batch)]);
    } catch (err) {
      failure = err ?? new Error("marking receipts sent failed");
    }
    for (const w of batch) w.done(failure);
  } finally {
    marks.flushing = false;
    scheduleFlush(pool, marks);
  }
}

/** Display names for receipts, by owner, for a minute: a busy worker's receipts do not each ask qr again. */
const names = new Map<string, { name: string; until: number }>();
const NAME_TTL_MS = 60_000;
const NAMES_MAX = 10_000;

/** The owner's display name ("" when it has none, or qr could not say: the receipt then names no one). */
async function displayName(qr: Client<typeof QrService>, owner: { ownerKind: OwnerKind; ownerId: string }): Promise<string> {
  const key = `${owner.ownerKind}:${owner.ownerId}`;
  const now = Date.now();
  const known = names.get(key);
  if (known && known.until > now) return known.name;
  try {
    const name = (await qr.getProfile(owner, { timeoutMs: 2_000 })).profile?.displayName ?? "";
    if (names.size >= NAMES_MAX) names.clear();
    names.set(key, { name, until: now + NAME_TTL_MS });
    return name;
  } catch {
    return "";
  }
}
