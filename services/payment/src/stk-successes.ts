// STK success callbacks stored and decided in groups: every usual success that
// arrives while one group's statement is running goes in the next one, so
// concurrent callbacks share a statement and a commit (one each when alone: no
// waiting is added beyond the current turn of the event loop). Each callback
// still commits with its decision or not at all, and is answered for itself.
import { GroupCommit, GroupCommitFull, opaqueUnnest, type Queryable } from "@ttip/runtime";
import { resultMessage } from "./messages.js";
import { storedCallbackCte, TIP_COLUMNS, type RawCallback, type StkSuccess, type TipRow } from "./tips.js";

export interface StkSuccessCallback {
  raw: RawCallback;
  /** The per-attempt token of the callback's URL: its tip. */
  token: string;
  success: StkSuccess;
}

/**
 * At most this many callbacks per statement: a bound on its parameters (a
 * callback's body is usually under 1 KB, at most 64 KB) and on the receipt
 * locks one statement holds at once.
 */
const MAX_GROUP = 64;
/**
 * At most this many wait for a group while one is out (the database slow or
 * stuck): each holds its body and an open request from Daraja. More are
 * stored and decided step by step by the caller (as when the statement fails),
 * which waits on the pool like anything else.
 */
const MAX_WAITING = 1_024;

type Outcome = { row: TipRow | null } | { err: unknown };

const groupsByDb = new WeakMap<Queryable, GroupCommit<StkSuccessCallback, Outcome>>();

/**
 * Stores the callback and, in the same statement, decides it when it is the
 * usual one (storeAndCreditStk says which): answers the tip's row as decided,
 * null when it decided nothing (the callback is stored unmarked for
 * applyStkOutcome). Rejects when the statement failed for this callback:
 * nothing of it is stored (a group that fails is retried one by one, so one
 * callback's failure never fails another's).
 */
export async function storeStkSuccess(db: Queryable, c: StkSuccessCallback): Promise<TipRow | null> {
  let groups = groupsByDb.get(db);
  if (!groups) groupsByDb.set(db, (groups = new GroupCommit(MAX_GROUP, (items) => storeGroup(db, items), MAX_WAITING)));
  const out = await groups.add(c).catch((err: unknown): Outcome => {
    if (err instanceof GroupCommitFull) return { err };
    throw err;
  });
  if ("err" in out) throw out.err;
  return out.row;
}

/**
 * A group: those with a token or a receipt another of the group has (a
 * callback delivered twice at once) go after it, alone, and find their tip
 * decided as they would after a concurrent statement. The rest go in one
 * statement, or one by one when it fails.
 */
async function storeGroup(db: Queryable, items: StkSuccessCallback[]): Promise<Outcome[]> {
  const outs: Outcome[] = new Array(items.length);
  const first: number[] = [];
  const later: number[] = [];
  const tokens = new Set<string>();
  const receipts = new Set<string>();
  for (const [i, c] of items.entries()) {
    if (tokens.has(c.token) || receipts.has(c.success.receipt)) {
      later.push(i);
      continue;
    }
    tokens.add(c.token);
    receipts.add(c.success.receipt);
    first.push(i);
  }
  const alone = (i: number) => storeOne(db, items[i]).then((row) => (outs[i] = { row }), (err: unknown) => (outs[i] = { err }));
  if (first.length === 1) {
    await alone(first[0]);
  } else {
    try {
      const rows = await storeMany(db, first.map((i) => items[i]));
      for (const i of first) outs[i] = { row: rows.get(items[i].raw.callbackId) ?? null };
    } catch {
      await Promise.all(first.map(alone));
    }
  }
  for (const i of later) await alone(i);
  return outs;
}

/**
 * One callback: the receipt's lock taken (receipt_unclaimed, as decideOutcome
 * does) before the tip's row lock, the tip decided when it is pending with no
 * hold, the push's CheckoutRequestID or none recorded yet, the amount and
 * number as charged, and the callback stored, marked when it decided.
 */
let oneSql: string | undefined;
async function storeOne(db: Queryable, c: StkSuccessCallback): Promise<TipRow | null> {
  oneSql ??= `WITH unclaimed AS (SELECT payment.receipt_unclaimed($6) AS free),
     decided AS (
       UPDATE payment.tips SET status = 'succeeded', result_code = '0', result_message = $7, mpesa_receipt = $6, credit_key = $6,
         credit_kind = CASE WHEN worker_id IS NULL THEN 'venue' ELSE 'worker' END, received_minor = NULL, completed_at = now(),
         checkout_request_id = $8, merchant_request_id = CASE WHEN checkout_request_id IS NULL THEN $9 ELSE merchant_request_id END
        WHERE callback_token = $10 AND status = 'pending' AND credit_key IS NULL AND fraud_action <> 'hold'
          AND (checkout_request_id IS NULL OR checkout_request_id = $8) AND charged_minor = $11 AND phone = $12 AND (SELECT free FROM unclaimed)
        RETURNING ${TIP_COLUMNS}),
     ${storedCallbackCte("credited", "$6")}
     SELECT ${TIP_COLUMNS} FROM decided`;
  const { raw, success: o } = c;
  const { rows } = await db.query<TipRow>(oneSql, [raw.callbackId, raw.source, raw.path, raw.remoteAddress, raw.body,
    o.receipt, resultMessage("0"), o.checkoutRequestId, o.merchantRequestId ?? null, c.token, receivedMinor(o), o.phone]);
  return rows[0] ?? null;
}

/** The columns of a group's callbacks, as storeMany's statement unnests them. */
const GROUP_COLUMNS = [
  ["callback_id", "uuid"], ["source", "text"], ["path", "text"], ["remote_address", "text"], ["raw_body", "bytea"], ["receipt", "text"],
  ["checkout_request_id", "text"], ["merchant_request_id", "text"], ["token", "text"], ["received_minor", "bigint"], ["phone", "text"],
] as const;

/**
 * storeOne for many callbacks (distinct tokens and receipts) in one statement:
 * the receipts' locks first, in the receipts' order (sorted: two replicas'
 * groups take them in the same order), then the tips' row locks in the tips'
 * order, as a group of CheckoutRequestIDs takes them (a push's answer and its
 * callback come together: taken in the receipts' order, two groups holding
 * each other's tips waited for the deadlock check, a second, then one
 * failed), then each tip decided under storeOne's conditions, and every
 * callback stored, marked when its tip was decided.
 * Answers the decided rows by callback id.
 */
let manySql: string | undefined;
async function storeMany(db: Queryable, group: StkSuccessCallback[]): Promise<Map<string, TipRow>> {
  const cols = TIP_COLUMNS.split(", ");
  manySql ??= `WITH m AS MATERIALIZED (
       SELECT ${GROUP_COLUMNS.map(([name]) => `c.${name}`).join(", ")}, payment.receipt_unclaimed(c.receipt) AS free
         FROM ${opaqueUnnest(GROUP_COLUMNS.map(([, type]) => type))} AS c(${GROUP_COLUMNS.map(([name]) => name).join(", ")})),
     locked AS MATERIALIZED (
       SELECT t.tip_id, m.callback_id FROM payment.tips t JOIN m ON t.callback_token = m.token ORDER BY t.tip_id FOR UPDATE OF t),
     decided AS (
       UPDATE payment.tips t SET status = 'succeeded', result_code = '0', result_message = $${GROUP_COLUMNS.length + 1}, mpesa_receipt = m.receipt,
         credit_key = m.receipt, credit_kind = CASE WHEN t.worker_id IS NULL THEN 'venue' ELSE 'worker' END, received_minor = NULL, completed_at = now(),
         checkout_request_id = m.checkout_request_id,
         merchant_request_id = CASE WHEN t.checkout_request_id IS NULL THEN m.merchant_request_id ELSE t.merchant_request_id END
         FROM locked l JOIN m USING (callback_id)
        WHERE t.tip_id = l.tip_id AND t.callback_token = m.token AND m.free AND t.status = 'pending' AND t.credit_key IS NULL AND t.fraud_action <> 'hold'
          AND (t.checkout_request_id IS NULL OR t.checkout_request_id = m.checkout_request_id) AND t.charged_minor = m.received_minor AND t.phone = m.phone
        RETURNING ${cols.map((col) => `t.${col}`).join(", ")}, m.callback_id AS decided_by),
     stored AS (
       INSERT INTO payment.callbacks (callback_id, source, path, remote_address, raw_body, outcome, external_reference, tip_id, matched)
       SELECT m.callback_id, m.source, m.path, m.remote_address, m.raw_body, CASE WHEN d.tip_id IS NULL THEN 'received' ELSE 'credited' END,
              CASE WHEN d.tip_id IS NULL THEN '' ELSE m.receipt END, d.tip_id, d.tip_id IS NOT NULL
         FROM m LEFT JOIN decided d ON d.decided_by = m.callback_id)
     SELECT ${cols.join(", ")}, decided_by FROM decided`;
  const sorted = [...group].sort((a, b) => (a.success.receipt < b.success.receipt ? -1 : a.success.receipt > b.success.receipt ? 1 : 0));
  const column = (f: (c: StkSuccessCallback) => unknown) => sorted.map(f);
  const { rows } = await db.query<TipRow & { decided_by: string }>(manySql, [
    column((c) => c.raw.callbackId), column((c) => c.raw.source), column((c) => c.raw.path), column((c) => c.raw.remoteAddress), column((c) => c.raw.body),
    column((c) => c.success.receipt), column((c) => c.success.checkoutRequestId), column((c) => c.success.merchantRequestId ?? null), column((c) => c.token),
    column((c) => receivedMinor(c.success)), column((c) => c.success.phone), resultMessage("0"),
  ]);
  return new Map(rows.map(({ decided_by, ...row }) => [decided_by, row as TipRow]));
}

/** What M-Pesa reports taking, in minor units (it reports shillings, sometimes with cents). */
function receivedMinor(o: StkSuccess): bigint {
  return BigInt(Math.round(o.amount * 100));
}
