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
      await markSent(pool, r.tip_id);
      sent++;
    } catch (err) {
      logger.warn({ tipId: r.tip_id, err: (err as Error).message }, "receipt not sent yet; will retry");
      await pool.query("UPDATE payment.receipts SET attempts = attempts + 1, last_error = $2 WHERE tip_id = $1", [r.tip_id, String((err as Error).message).slice(0, 500)]);
    }
  }
  return sent;
}

/** Receipts marked sent in one statement at most; a bound on the statement's size. */
const MARK_SENT_BATCH = 500;

/** Receipts sent and waiting to be marked so, per pool, with whoever waits for each. */
interface SentMarks {
  waiting: { tipId: string; done: (err?: unknown) => void }[];
  flushing: boolean;
}
const sentMarks = new WeakMap<Queryable, SentMarks>();

/**
 * Marks a receipt sent. Receipts sent while an earlier mark is being written
 * are marked together in the next statement (one commit for many tips, not one
 * each), with no timer: a lone receipt is written at once. Safe to lose in a
 * crash: the receipt stays owed, and its resend is deduped by notification on the key.
 */
function markSent(pool: Queryable, tipId: string): Promise<void> {
  const marks = sentMarks.get(pool) ?? { waiting: [], flushing: false };
  sentMarks.set(pool, marks);
  const queued = new Promise<void>((resolve, reject) => marks.waiting.push({ tipId, done: (err) => (err === undefined ? resolve() : reject(err)) }));
  if (!marks.flushing) void flushSentMarks(pool, marks);
  return queued;
}

async function flushSentMarks(pool: Queryable, marks: SentMarks): Promise<void> {
  marks.flushing = true;
  try {
    while (marks.waiting.length) {
      const batch = marks.waiting.splice(0, MARK_SENT_BATCH);
      // Sorted, so two replicas marking overlapping receipts lock them in the same order.
      const ids = [...new Set(batch.map((w) => w.tipId))].sort();
      let failure: unknown;
      try {
        await pool.query("UPDATE payment.receipts SET sent_at = now(), attempts = attempts + 1 WHERE tip_id = ANY($1::uuid[])", [ids]);
      } catch (err) {
        failure = err ?? new Error("marking receipts sent failed");
      }
      for (const w of batch) w.done(failure);
    }
  } finally {
    marks.flushing = false;
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
