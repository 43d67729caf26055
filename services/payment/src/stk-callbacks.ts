// STK callbacks stored and decided in groups: every usual success (or
// failure) that arrives while one group's statement is running goes in the
// next one, so concurrent callbacks share a statement and a commit (one each
// when alone: no waiting is added beyond the current turn of the event loop).
// Each callback still commits with its decision or not at all, and is
// answered for itself.
import { GroupCommit, GroupCommitFull, groupCommitPer, opaqueUnnest, sortedByKey, type Queryable } from "@ttip/runtime";
import { resultMessage } from "./messages.js";
import { storedCallbackCte, TIP_COLUMNS, TIP_COLUMNS_OF_T, TIP_FAILED_TAIL_OF_D, type RawCallback, type StkSuccess, type TipRow } from "./tips.js";

/** A callback as it came, with the per-attempt token of its URL: its tip. */
interface StkCallback {
  raw: RawCallback;
  token: string;
}

export interface StkSuccessCallback extends StkCallback {
  success: StkSuccess;
}

/** A failure callback with what the service says of it before the row (the SQL appends the rest of tip_failed). */
export interface StkFailureCallback extends StkCallback {
  failure: {
    resultCode: string;
    resultMessage: string;
    checkoutRequestId: string;
    merchantRequestId?: string;
    /** tip_failed as the service encoded it. */
    event: { id: string; subject: string; data: Uint8Array };
    traceparent: string | null;
  };
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

/** How one kind of callback is stored and decided: alone, or many in one statement (answered by callback id). */
interface Decisions<C extends StkCallback> {
  one: (db: Queryable, c: C) => Promise<TipRow | null>;
  many: (db: Queryable, group: C[]) => Promise<Map<string, TipRow>>;
  /** What two callbacks of one statement must not share besides their token. */
  key?: (c: C) => string;
}

/**
 * The store of one kind: it answers a callback's tip row as decided, null when
 * it decided nothing (the callback is stored unmarked for applyStkOutcome),
 * and rejects when the statement failed for this callback: nothing of it is
 * stored (a group that fails is retried one by one, so one callback's failure
 * never fails another's).
 */
function groupedDecisions<C extends StkCallback>(d: Decisions<C>): (db: Queryable, c: C) => Promise<TipRow | null> {
  const groups = groupCommitPer((db: Queryable) => new GroupCommit<C, Outcome>(MAX_GROUP, (items) => decideGroup(db, d, items), MAX_WAITING));
  return async (db, c) => {
    const out = await groups(db).add(c).catch((err: unknown): Outcome => {
      if (err instanceof GroupCommitFull) return { err };
      throw err;
    });
    if ("err" in out) throw out.err;
    return out.row;
  };
}

/**
 * A group: those with a token (or a key) another of the group has (a callback
 * delivered twice at once) go after it, alone, and find their tip decided as
 * they would after a concurrent statement. The rest go in one statement, or
 * one by one when it fails.
 */
async function decideGroup<C extends StkCallback>(db: Queryable, d: Decisions<C>, items: C[]): Promise<Outcome[]> {
  const outs: Outcome[] = new Array(items.length);
  const first: number[] = [];
  const later: number[] = [];
  const seen = new Set<string>();
  for (const [i, c] of items.entries()) {
    const keys = [`token:${c.token}`, ...(d.key ? [`key:${d.key(c)}`] : [])];
    if (keys.some((k) => seen.has(k))) {
      later.push(i);
      continue;
    }
    for (const k of keys) seen.add(k);
    first.push(i);
  }
  const alone = (i: number) => d.one(db, items[i]).then((row) => (outs[i] = { row }), (err: unknown) => (outs[i] = { err }));
  if (first.length === 1) {
    await alone(first[0]);
  } else {
    try {
      const rows = await d.many(db, first.map((i) => items[i]));
      for (const i of first) outs[i] = { row: rows.get(items[i].raw.callbackId) ?? null };
    } catch {
      await Promise.all(first.map(alone));
    }
  }
  for (const i of later) await alone(i);
  return outs;
}

/** The raw callbacks' columns of a group statement, before the kind's own. */
const RAW_COLUMNS = [["callback_id", "uuid"], ["source", "text"], ["path", "text"], ["remote_address", "text"], ["raw_body", "bytea"]] as const;

/** The callbacks of a group as the unnest of its statement's parameters (RAW_COLUMNS then `columns`, aliased c), and `also`. */
function groupRows(columns: readonly (readonly [string, string])[], also = ""): string {
  const all = [...RAW_COLUMNS, ...columns];
  return `SELECT ${all.map(([name]) => `c.${name}`).join(", ")}${also} FROM ${opaqueUnnest(all.map(([, type]) => type))} AS c(${all.map(([name]) => name).join(", ")})`;
}

/** The parameters of groupRows: the callbacks' raw columns, then `values` per callback, as arrays. */
function groupValues<C extends StkCallback>(group: C[], values: (c: C) => unknown[]): unknown[][] {
  const rows = group.map((c) => [c.raw.callbackId, c.raw.source, c.raw.path, c.raw.remoteAddress, c.raw.body, ...values(c)]);
  return rows[0].map((_, i) => rows.map((r) => r[i]));
}

/**
 * The group statement's CTEs after `m` (its callbacks): the tips' row locks,
 * taken in the tips' order as a group of CheckoutRequestIDs takes them (a
 * push's answer and its callback come together: in another order two groups
 * holding each other's tips waited for the deadlock check, a second, then one
 * failed), then `decided` (an UPDATE of payment.tips t FROM locked l JOIN m
 * setting `set` where `where`), and every callback stored, marked `outcome`
 * with the reference `ref` when its tip was decided, else with the tip its token
 * names (storedCallbackCte).
 */
function lockDecideStore(set: string, where: string, outcome: "credited" | "failed", ref: string): string {
  return `locked AS MATERIALIZED (
       SELECT t.tip_id, m.callback_id FROM payment.tips t JOIN m ON t.callback_token = m.token ORDER BY t.tip_id FOR UPDATE OF t),
     decided AS (
       UPDATE payment.tips t SET ${set}
         FROM locked l JOIN m USING (callback_id)
        WHERE t.tip_id = l.tip_id AND t.callback_token = m.token AND ${where}
        RETURNING ${TIP_COLUMNS_OF_T}, m.callback_id AS decided_by),
     stored AS (
       INSERT INTO payment.callbacks (callback_id, source, path, remote_address, raw_body, outcome, external_reference, tip_id, matched, token_checked)
       SELECT m.callback_id, m.source, m.path, m.remote_address, m.raw_body, CASE WHEN d.tip_id IS NULL THEN 'received' ELSE '${outcome}' END,
              CASE WHEN d.tip_id IS NULL THEN '' ELSE ${ref} END, COALESCE(d.tip_id, l.tip_id), d.tip_id IS NOT NULL, true
         FROM m LEFT JOIN decided d ON d.decided_by = m.callback_id LEFT JOIN locked l ON l.callback_id = m.callback_id)`;
}

/**
 * A group statement's rows by the callback that decided them: each row as the driver made it, its
 * `decided_by` column left on (a copy without it, ~60 columns, cost ~3 us and ~5 KiB per tip: bench/payment-tip-steps.ts).
 */
async function decidedRows(db: Queryable, sql: string, values: unknown[]): Promise<Map<string, TipRow>> {
  const { rows } = await db.query<TipRow & { decided_by: string }>(sql, values);
  return new Map(rows.map((row) => [row.decided_by, row]));
}

const SUCCESS_COLUMNS = [
  ["receipt", "text"], ["checkout_request_id", "text"], ["merchant_request_id", "text"], ["token", "text"], ["received_minor", "bigint"], ["phone", "text"],
] as const;

let successOneSql: string | undefined;
let successManySql: string | undefined;

/**
 * Stores a success callback and, in the same statement, decides it when it is
 * the usual one: the receipt's lock taken (receipt_unclaimed, as decideOutcome
 * does) before the tip's row lock, the tip decided when it is pending with no
 * hold, the push's CheckoutRequestID or none recorded yet, the amount and
 * number as charged and the receipt unclaimed. In a group, the receipts'
 * locks first, in the receipts' order (sorted: two replicas' groups take
 * them in the same order); two callbacks with one receipt never share one.
 */
export const storeStkSuccess = groupedDecisions<StkSuccessCallback>({
  key: (c) => `receipt:${c.success.receipt}`,
  one: async (db, c) => {
    successOneSql ??= `WITH unclaimed AS (SELECT payment.receipt_unclaimed($6) AS free),
     decided AS (
       UPDATE payment.tips SET status = 'succeeded', result_code = '0', result_message = $7, mpesa_receipt = $6, credit_key = $6,
         credit_kind = CASE WHEN worker_id IS NULL THEN 'venue' ELSE 'worker' END, received_minor = NULL, completed_at = now(),
         checkout_request_id = $8, merchant_request_id = CASE WHEN checkout_request_id IS NULL THEN $9 ELSE merchant_request_id END
        WHERE callback_token = $10 AND status = 'pending' AND credit_key IS NULL AND fraud_action <> 'hold'
          AND (checkout_request_id IS NULL OR checkout_request_id = $8) AND charged_minor = $11 AND phone = $12 AND (SELECT free FROM unclaimed)
        RETURNING ${TIP_COLUMNS}),
     ${storedCallbackCte("credited", "$6", "$10")}
     SELECT ${TIP_COLUMNS} FROM decided`;
    const { raw, success: o } = c;
    const { rows } = await db.query<TipRow>(successOneSql, [raw.callbackId, raw.source, raw.path, raw.remoteAddress, raw.body,
      o.receipt, resultMessage("0"), o.checkoutRequestId, o.merchantRequestId ?? null, c.token, o.amountMinor, o.phone]);
    return rows[0] ?? null;
  },
  many: async (db, group) => {
    const message = `$${RAW_COLUMNS.length + SUCCESS_COLUMNS.length + 1}`;
    successManySql ??= `WITH m AS MATERIALIZED (${groupRows(SUCCESS_COLUMNS, ", payment.receipt_unclaimed(c.receipt) AS free")}),
     ${lockDecideStore(
       `status = 'succeeded', result_code = '0', result_message = ${message}, mpesa_receipt = m.receipt, credit_key = m.receipt,
         credit_kind = CASE WHEN t.worker_id IS NULL THEN 'venue' ELSE 'worker' END, received_minor = NULL, completed_at = now(),
         checkout_request_id = m.checkout_request_id,
         merchant_request_id = CASE WHEN t.checkout_request_id IS NULL THEN m.merchant_request_id ELSE t.merchant_request_id END`,
       `m.free AND t.status = 'pending' AND t.credit_key IS NULL AND t.fraud_action <> 'hold'
          AND (t.checkout_request_id IS NULL OR t.checkout_request_id = m.checkout_request_id) AND t.charged_minor = m.received_minor AND t.phone = m.phone`,
       "credited", "m.receipt")}
     SELECT ${TIP_COLUMNS}, decided_by FROM decided`;
    const sorted = sortedByKey(group, (c) => c.success.receipt);
    return decidedRows(db, successManySql, [
      ...groupValues(sorted, (c) => [c.success.receipt, c.success.checkoutRequestId, c.success.merchantRequestId ?? null, c.token, c.success.amountMinor, c.success.phone]),
      resultMessage("0"),
    ]);
  },
});

const FAILURE_COLUMNS = [
  ["result_code", "text"], ["result_message", "text"], ["checkout_request_id", "text"], ["merchant_request_id", "text"], ["token", "text"],
  ["event_id", "uuid"], ["event_subject", "text"], ["event_payload", "bytea"], ["traceparent", "text"],
] as const;

let failureOneSql: string | undefined;
let failureManySql: string | undefined;

/**
 * Stores a failure callback (cancelled, timed out, insufficient funds...) and,
 * in the same statement, fails its tip when it is pending and the push's
 * CheckoutRequestID is this one or none is recorded yet, and announces
 * tip_failed (the fields only the row knows appended by SQL, tipFailedTailSql).
 */
export const storeStkFailure = groupedDecisions<StkFailureCallback>({
  one: async (db, c) => {
    failureOneSql ??= `WITH decided AS (
       UPDATE payment.tips SET status = 'failed', result_code = $6, result_message = $7, completed_at = now(),
         checkout_request_id = $8, merchant_request_id = CASE WHEN checkout_request_id IS NULL THEN $9 ELSE merchant_request_id END
        WHERE callback_token = $10 AND status = 'pending' AND (checkout_request_id IS NULL OR checkout_request_id = $8)
        RETURNING ${TIP_COLUMNS}),
     ${storedCallbackCte("failed", "$8", "$10")},
     announced AS (
       INSERT INTO payment.outbox (event_id, subject, payload, traceparent) SELECT $11, $12, $13 || ${TIP_FAILED_TAIL_OF_D}, $14::text FROM decided d)
     SELECT ${TIP_COLUMNS} FROM decided`;
    const { raw } = c;
    const { rows } = await db.query<TipRow>(failureOneSql, [raw.callbackId, raw.source, raw.path, raw.remoteAddress, raw.body, ...failureValues(c)]);
    return rows[0] ?? null;
  },
  many: async (db, group) => {
    failureManySql ??= `WITH m AS (${groupRows(FAILURE_COLUMNS)}),
     ${lockDecideStore(
       `status = 'failed', result_code = m.result_code, result_message = m.result_message, completed_at = now(), checkout_request_id = m.checkout_request_id,
         merchant_request_id = CASE WHEN t.checkout_request_id IS NULL THEN m.merchant_request_id ELSE t.merchant_request_id END`,
       "t.status = 'pending' AND (t.checkout_request_id IS NULL OR t.checkout_request_id = m.checkout_request_id)",
       "failed", "m.checkout_request_id")},
     announced AS (
       INSERT INTO payment.outbox (event_id, subject, payload, traceparent)
       SELECT m.event_id, m.event_subject, m.event_payload || ${TIP_FAILED_TAIL_OF_D}, m.traceparent FROM decided d JOIN m ON m.callback_id = d.decided_by)
     SELECT ${TIP_COLUMNS}, decided_by FROM decided`;
    return decidedRows(db, failureManySql, groupValues(group, failureValues));
  },
});

/** A failure's values after the raw callback's, in FAILURE_COLUMNS' order. */
function failureValues(c: StkFailureCallback): unknown[] {
  const f = c.failure;
  return [f.resultCode, f.resultMessage, f.checkoutRequestId, f.merchantRequestId ?? null, c.token, f.event.id, f.event.subject, Buffer.from(f.event.data), f.traceparent];
}
