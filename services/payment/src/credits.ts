// The wallet entries that M-Pesa successes decided, posted and recorded on their
// tips in groups: the credits decided while wallet is answering one call go
// together in the next (one call, one posting statement in wallet), and the
// entries wallet answered while one recording statement runs are recorded
// together by the next (one statement, one commit). Alone, a credit waits for
// nothing. Every guarantee is per tip: wallet posts each entry once per its key,
// a tip is recorded once (credit_entry_id), with its tip_succeeded event and
// its receipt owed in the recording statement; a tip whose entry was refused or
// whose recording failed stays decided and uncredited, for reconciliation.
import assert from "node:assert/strict";
import { clockOf, currentTraceparent, GroupCommit, GroupCommitFull, groupCommitPer, opaqueUnnest, type Pool, type Queryable, refusedStatement, sortedByKey, withTransaction } from "@ttip/runtime";
import { AUTO_PAYOUT_CHECK_AFTER_CREDIT_MS } from "./config.js";
import { type EntryToPost, POST_ENTRIES_MAX } from "./ledger.js";
import { paymentMetrics } from "./metrics.js";
import { carryingSentMarks, sentMarksCondition } from "./receipts.js";
import { PAYOUT_SETTINGS_COLUMNS, type PayoutSettings } from "./stores/payout-settings.js";
import { emitTipSucceeded, loadTip, runAfterCredit, TIP_COLUMNS, TIP_COLUMNS_OF_T, tipSucceededEvent, type Deps, type TipRow } from "./tips.js";

/**
 * Credits waiting for wallet, and entries waiting to be recorded, at most: ten
 * calls' (statements') worth. Past it (a wallet or a database that does not
 * answer) a credit is left at once to reconciliation, which posts it again
 * under the same key, rather than each replica holding an unbounded queue (and
 * the Daraja callbacks waiting on it) in memory.
 */
const CREDITS_WAITING_MAX = 10 * POST_ENTRIES_MAX;

/** A wallet entry recorded on its tip: the row as recorded, and the worker's payout settings (null: none). */
export interface RecordedCredit {
  row: TipRow;
  /** Undefined when not read with the row: the automatic payout reads them. */
  settings?: PayoutSettings | null;
  /** The time of the look at the worker's automatic payout the recording marked, if it marked one: the start settles it. */
  autoPayoutCheckAt?: Date;
}

/** An entry wallet answered for a tip, to record on it. */
export interface CreditToRecord {
  /** The tip as the decision (or a read since) left it: its event is built from it. */
  tip: TipRow;
  entryId: string;
  /** The trace of the call that decided the credit, for its tip_succeeded event. */
  traceparent: string | null;
  /**
   * When reconciliation's pass looks at the worker's automatic payout (the service's clock), set with the credit:
   * the payout starts in this process only after the commit, and a process that died in between left the balance
   * in the wallet, unseen, until the worker's next tip. The start, once it has run, settles the look.
   */
  autoPayoutCheckAt: Date;
}

/** Tips to post, each answered with its entry's id or the error that refused it. */
const postings = groupCommitPer((deps: Deps) => new GroupCommit<TipRow, string | Error>(POST_ENTRIES_MAX, (tips) => postGroup(deps, tips), CREDITS_WAITING_MAX));

/**
 * Entries to record, each answered with the tip as recorded (undefined: recorded already, by another),
 * or the error that left that tip alone unrecorded. A recording statement holds at most as many
 * tips as a wallet call: the same bound on its size.
 */
const recordings = groupCommitPer((pool: Pool) =>
  new GroupCommit<CreditToRecord, RecordedCredit | undefined | Error>(POST_ENTRIES_MAX, (credits) => recordGroup(pool, credits), CREDITS_WAITING_MAX));

/**
 * Posts the wallet entry a success decided, once (the wallet dedupes on the
 * key; only the first to record it publishes tip_succeeded), with the other
 * credits of the moment. False when nothing was recorded here: refused or out
 * of reach (reconciliation retries), or recorded already. Rejects when the
 * recording statement failed (the entry is posted: reconciliation records it).
 */
export async function postCredit(deps: Deps, tipId: string, committed?: TipRow): Promise<boolean> {
  // `committed`: the row the deciding transaction just wrote (saves a read); the
  // wallet's idempotency key and the credit_entry_id guard make a stale copy harmless.
  const tip = committed ?? (await loadTip(deps.ctx.pool, tipId));
  if (!tip?.credit_key || tip.credit_entry_id) return false;
  const traceparent = currentTraceparent() ?? null;
  const posted = await postings(deps).add(tip).catch(asError);
  if (typeof posted !== "string") {
    deps.ctx.logger.warn({ tipId, err: posted }, "wallet credit failed; reconciliation will retry");
    return false;
  }
  const autoPayoutCheckAt = new Date(clockOf(deps.ctx).now() + (deps.config().autoPayoutCheckAfterMs ?? AUTO_PAYOUT_CHECK_AFTER_CREDIT_MS));
  const credit = await recordings(deps.ctx.pool).add({ tip, entryId: posted || "posted", traceparent, autoPayoutCheckAt }).catch((err: unknown) => {
    if (!(err instanceof GroupCommitFull)) throw err;
    deps.ctx.logger.warn({ tipId, err }, "wallet credit posted but not recorded yet; reconciliation will record it");
    return undefined;
  });
  if (credit instanceof Error) throw credit;
  if (!credit) return false;
  const { row } = credit;
  const m = paymentMetrics(deps.ctx.metrics);
  m.tips.inc({ status: row.credit_kind !== "suspense" ? "succeeded" : "held", method: "mpesa" });
  if (row.credit_kind !== "suspense") m.amounts.observe({ method: "mpesa" }, Number(row.amount_minor) / 100);
  if (row.completed_at) m.creditLatency.observe({ method: "mpesa" }, Math.max(0, Date.now() - row.completed_at.getTime()) / 1000);
  if (row.credit_kind !== "suspense") runAfterCredit(deps, row, credit.settings, credit.autoPayoutCheckAt);
  return true;
}

/**
 * The tips' entries in one PostEntries call, each answered alone. Built only
 * from what the decision fixed (the key is the receipt, or the
 * CheckoutRequestID when the success came by query), so a retry after a crash
 * asks the wallet for the very same entry, even if a receipt was learned in between.
 */
async function postGroup(deps: Deps, tips: TipRow[]): Promise<(string | Error)[]> {
  // A tip asked for twice at once (a callback and a reconciliation pass) is one entry.
  const distinct = [...new Map(tips.map((t) => [t.tip_id, t])).values()];
  // An entry that cannot be built (an account wallet did not give) fails its tip alone.
  const built = await Promise.all(distinct.map((t) => creditEntry(deps, t).catch((err: unknown) => asError(err))));
  const entries = built.filter((b): b is EntryToPost => !(b instanceof Error));
  const posted = entries.length ? await deps.ledger.postEntries(entries) : [];
  assert.equal(posted.length, entries.length, "one outcome per entry");
  const outcomes = new Map<string, string | Error>();
  let next = 0;
  distinct.forEach((t, i) => {
    const b = built[i];
    outcomes.set(t.tip_id, b instanceof Error ? b : posted[next++]);
  });
  return tips.map((t) => outcomes.get(t.tip_id)!);
}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/** The entry a decided success posts: to the worker (or venue's pool), or to suspense when held. */
function creditEntry(deps: Deps, tip: TipRow): Promise<EntryToPost> {
  const reference = tip.credit_key!;
  if (tip.credit_kind === "suspense") {
    return deps.ledger.suspenseEntry({ key: reference, receipt: reference, amountMinor: tip.received_minor ?? tip.charged_minor, description: `Tip ${tip.tip_id} held for review` });
  }
  return deps.ledger.tipCreditEntry({
    key: reference,
    receipt: reference,
    recipient: tip.worker_id ? { workerId: tip.worker_id } : { venueId: tip.venue_id },
    chargedMinor: tip.charged_minor,
    workerMinor: tip.worker_receives_minor,
    description: tip.worker_id ? `Tip by M-Pesa ${reference}` : `Shared tip by M-Pesa ${reference}`,
  });
}

/**
 * The entries in one statement (recordCredits); a tip it did not record because
 * its row changed since it was read (a rating, a receipt learned late) is
 * recorded from the row as it is now (recordFromRowNow), unless credited already.
 * That tip's own statement failing fails that tip alone: the group's statement
 * has committed, and the tips it recorded are still answered (their automatic
 * payouts start only here; reconciliation skips a tip once it is credited).
 * When PostgreSQL refuses the group's statement, each credit is recorded by one
 * of its own; when its answer is lost, each tip's row says what it did (recoverCredit).
 */
async function recordGroup(pool: Pool, credits: CreditToRecord[]): Promise<(RecordedCredit | undefined | Error)[]> {
  let recorded: Map<string, RecordedCredit>;
  try {
    recorded = await recordCredits(pool, credits);
  } catch (err) {
    if (!refusedStatement(err)) {
      // A tip twice in the group is recovered once; the rest find it recorded.
      const seen = new Set<string>();
      return Promise.all(credits.map((c) => (seen.has(c.tip.tip_id) ? undefined : (seen.add(c.tip.tip_id), recoverUnlessRefused(pool, c, err)))));
    }
    // Refused, so it recorded nothing: each credit again alone, so that one PostgreSQL refuses fails by itself.
    if (credits.length === 1) throw err;
    return Promise.all(credits.map((c) => recordGroup(pool, [c]).then(([out]) => out, asError)));
  }
  const answered = new Set<string>();
  const outcomes: (RecordedCredit | undefined | Error)[] = [];
  for (const c of credits) {
    const tipId = c.tip.tip_id;
    // A tip twice in the group: the first is answered with the recording, the rest find it recorded.
    const first = !answered.has(tipId);
    answered.add(tipId);
    outcomes.push(first ? (recorded.get(tipId) ?? (await recordFromRowNow(pool, tipId, c.entryId, c.autoPayoutCheckAt).catch((err: unknown) => recoverUnlessRefused(pool, c, err)))) : undefined);
  }
  return outcomes;
}

/** The worker's payout settings (aliased `s`) beside a tip's columns, each prefixed payout_. */
const PAYOUT_SETTINGS_OF_S = PAYOUT_SETTINGS_COLUMNS.map((c) => `s.${c} AS payout_${c}`).join(", ");

/**
 * The CTEs marking the automatic payout of each credited worker (`workers`: a query of worker_id) to be looked at
 * by reconciliation at `checkAt` (a parameter), unless one is due as late already or payouts are held (their release
 * marks one due). The latest credit's mark wins: an earlier credit's start, which read the balance before this
 * credit, settles only its own mark (settleAutoPayoutCheck), so it cannot clear this one. A row another statement
 * holds is skipped, not waited for: the credits of two statements lock tips first and these rows after, and a
 * worker's row locked by another recording is being marked by it.
 */
const AUTO_PAYOUT_CHECK_CTES = (workers: string, checkAt: string) => `checked AS MATERIALIZED (
       SELECT s.worker_id FROM payment.payout_settings s
        WHERE s.worker_id IN (${workers}) AND s.auto_payout AND NOT s.payouts_on_hold AND (s.auto_payout_due_at IS NULL OR s.auto_payout_due_at < ${checkAt})
        ORDER BY s.worker_id FOR UPDATE OF s SKIP LOCKED),
     due AS (
       UPDATE payment.payout_settings s SET auto_payout_due_at = ${checkAt} FROM checked c WHERE s.worker_id = c.worker_id)`;

/** Built on first use: tips.ts and this module import each other, so TIP_COLUMNS is not there yet when this one loads. */
let recordSql: string | undefined;

function recordCreditsSql(): string {
  // Each tip's own conditions: not recorded yet, and still carrying what its event says
  // (the fields that can change after the decision: receipt, rating, message). The rows are
  // locked first, in the tips' order whichever way the update is planned (a hash join reads
  // the table's order), as the other groups on payment.tips lock them (stk-callbacks.ts,
  // checkout-ids.ts): two replicas' recordings never hold each other's tips.
  return (recordSql ??= `WITH entries AS (
       SELECT * FROM ${opaqueUnnest(["uuid", "text", "text", "int", "text", "uuid", "text", "bytea", "text"])}
              AS c(tip_id, entry_id, mpesa_receipt, rating, message, event_id, subject, payload, traceparent)),
     locked AS MATERIALIZED (
       SELECT t.tip_id FROM payment.tips t JOIN entries c USING (tip_id) WHERE t.credit_entry_id IS NULL ORDER BY t.tip_id FOR UPDATE OF t),
     credited AS (
       UPDATE payment.tips t SET credit_entry_id = c.entry_id, credited_at = now()
         FROM locked l JOIN entries c USING (tip_id)
        WHERE t.tip_id = l.tip_id AND t.credit_entry_id IS NULL AND t.mpesa_receipt IS NOT DISTINCT FROM c.mpesa_receipt
          AND t.rating = c.rating AND t.message = c.message
        RETURNING ${TIP_COLUMNS_OF_T}, c.event_id, c.subject, c.payload, c.traceparent),
     owed AS (
       INSERT INTO payment.receipts (tip_id) SELECT tip_id FROM credited WHERE credit_kind <> 'suspense' AND phone <> '' ORDER BY tip_id ON CONFLICT DO NOTHING),
     announced AS (
       INSERT INTO payment.outbox (event_id, subject, payload, traceparent) SELECT event_id, subject, payload, traceparent FROM credited WHERE credit_kind <> 'suspense'),
     ${AUTO_PAYOUT_CHECK_CTES("SELECT worker_id FROM credited WHERE credit_kind <> 'suspense'", "$11")}
     SELECT ${TIP_COLUMNS_OF_T}, ${PAYOUT_SETTINGS_OF_S}
       FROM credited t LEFT JOIN payment.payout_settings s ON s.worker_id = t.worker_id
      WHERE ${sentMarksCondition("$10")}`);
}

/**
 * Records wallet entries on their tips, each once, in one statement (one round
 * trip, atomic without BEGIN/COMMIT) that also owes each customer a receipt and
 * announces each tip_succeeded, unless the money went to suspense. An event is
 * built from its `tip`, so the row must still carry what the event says: the
 * fields that can change after the decision (receipt, rating, message) are
 * part of each tip's condition. Answers the tips it recorded, by id, with the
 * worker's payout settings for the automatic payout that may follow; a tip
 * missing was credited already, or its row changed (then see recordFromRowNow).
 */
export async function recordCredits(db: Queryable, credits: CreditToRecord[]): Promise<Map<string, RecordedCredit>> {
  assert.ok(credits.length > 0 && credits.length <= POST_ENTRIES_MAX, "1 to POST_ENTRIES_MAX credits a statement");
  // One row per tip (two for one tip would announce it twice), sorted: two replicas' groups lock rows in the same order.
  const byTip = new Map(credits.map((c) => [c.tip.tip_id, c]));
  const sorted = sortedByKey(byTip.values(), (c) => c.tip.tip_id);
  const events = sorted.map((c) => tipSucceededEvent(c.tip));
  const autoPayoutCheckAt = new Date(Math.max(...sorted.map((c) => c.autoPayoutCheckAt.getTime())));
  // Receipts of earlier tips sent since are marked so by this statement too (written anyway: no commit of their own).
  const { rows } = await carryingSentMarks(db, (sentTipIds) => db.query<TipRow & { [K in keyof PayoutSettings as `payout_${K}`]: PayoutSettings[K] | null }>(recordCreditsSql(), [
    sorted.map((c) => c.tip.tip_id),
    sorted.map((c) => c.entryId),
    sorted.map((c) => c.tip.mpesa_receipt),
    sorted.map((c) => c.tip.rating),
    sorted.map((c) => c.tip.message),
    events.map((e) => e.id),
    events.map((e) => e.subject),
    events.map((e) => Buffer.from(e.data)),
    sorted.map((c) => c.traceparent),
    sentTipIds,
    autoPayoutCheckAt,
  ]));
  const recorded = new Map<string, RecordedCredit>();
  // Each row as the driver made it, its payout_ columns left on: a copy without them (~60 columns) cost ~4 us and ~5 KiB per tip (bench/payment-tip-steps.ts).
  for (const row of rows) {
    const settings = row.payout_auto_payout === null ? null
      : { auto_payout: row.payout_auto_payout, auto_payout_minimum_minor: row.payout_auto_payout_minimum_minor!, payout_phone: row.payout_payout_phone!, payouts_on_hold: row.payout_payouts_on_hold!,
        payout_phone_changed_at: row.payout_payout_phone_changed_at };
    recorded.set(row.tip_id, { row, settings, autoPayoutCheckAt });
  }
  return recorded;
}

/** The credit's outcome after its recording failed with `err`: refused (the error), or lost (recoverCredit). */
function recoverUnlessRefused(pool: Pool, c: CreditToRecord, err: unknown): Promise<RecordedCredit | undefined | Error> {
  return refusedStatement(err) ? Promise.resolve(asError(err)) : recoverCredit(pool, c).catch(asError);
}

/**
 * A credit whose recording statement's answer was lost: committed or not, the tip's row says.
 * The row is locked first, so a statement still running on the server (the connection broke on
 * this side only) has finished with it. Carrying this credit's entry, the tip was recorded by the
 * lost statement: answered as recorded, so its receipt and automatic payout start now, as they
 * would have. Still uncredited, it is recorded here, from the row as it is now. Credited with
 * another entry (not this key's): undefined. The one case left ambiguous, another caller recording
 * the same entry at the same moment (a callback and a reconciliation pass), then starts that tip's
 * receipt and payout twice: both are keyed per tip (notification's receipt key, the payout's
 * `auto-<tip>` key), so each still happens once.
 */
async function recoverCredit(pool: Pool, c: CreditToRecord): Promise<RecordedCredit | undefined> {
  return withTransaction(pool, async (tx): Promise<RecordedCredit | undefined> => {
    const { rows } = await tx.query<TipRow>(`SELECT ${TIP_COLUMNS} FROM payment.tips WHERE tip_id = $1 FOR UPDATE`, [c.tip.tip_id]);
    const now = rows[0];
    if (!now) return undefined;
    if (now.credit_entry_id !== null) return now.credit_entry_id === c.entryId ? { row: now } : undefined;
    return recordRowNow(tx, c.tip.tip_id, c.entryId, c.autoPayoutCheckAt);
  });
}

/** Records the entry on the tip, with its event, receipt owed and automatic payout's check, unless credited already (undefined). */
async function recordRowNow(tx: Queryable, tipId: string, entryId: string, autoPayoutCheckAt: Date): Promise<RecordedCredit | undefined> {
  const { rows } = await tx.query<TipRow>(
    `WITH credited AS (
       UPDATE payment.tips SET credit_entry_id = $2, credited_at = now() WHERE tip_id = $1 AND credit_entry_id IS NULL RETURNING ${TIP_COLUMNS}),
     ${AUTO_PAYOUT_CHECK_CTES("SELECT worker_id FROM credited WHERE credit_kind <> 'suspense'", "$3")}
     SELECT * FROM credited`,
    [tipId, entryId, autoPayoutCheckAt],
  );
  const t = rows[0];
  if (t && t.credit_kind !== "suspense") await emitTipSucceeded(tx, t);
  return t ? { row: t, autoPayoutCheckAt } : undefined;
}

/**
 * Records the entry on a tip whose row changed since it was read (rare: a
 * rating or a receipt learned after the decision), from the row as it is now,
 * once; undefined when it is credited already. The payout settings are read
 * by the automatic payout itself.
 */
async function recordFromRowNow(pool: Pool, tipId: string, entryId: string, autoPayoutCheckAt: Date): Promise<RecordedCredit | undefined> {
  return withTransaction(pool, (tx) => recordRowNow(tx, tipId, entryId, autoPayoutCheckAt));
}
