// New M-Pesa tips placed in groups: the fraud rules read and the tip inserted
// with its tip_created event, for every CreateTip that arrives while one
// group's statement is running, in the next one. Concurrent tips share a
// statement and a commit (one each when alone: no waiting is added beyond the
// current turn of the event loop); each is judged and answered for itself.
import { buildEvent, type Clock, currentTraceparent, GroupCommit, GroupCommitFull, groupCommitPer, opaqueUnnest, sortedByKey, type Queryable } from "@ttip/runtime";
import { PaymentMethod, TipCreatedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import type { FeeQuote } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import type { PaymentConfig } from "./config.js";
import { judgedRulesFire, judgeTip, requestRulesFire, tipFactsColumns, tipJudgedSubquery, type TipFacts, type TipPrecheck } from "./fraud.js";
import { kes } from "./money.js";
import { RULE_LIMIT_WINDOW_SECONDS, TIP_COLUMNS, TIP_COLUMNS_OF_T, type NewTip, type TipRow } from "./tips.js";
import { newCallbackToken } from "./callback-paths.js";

/** What CreateTip settled before placing a tip: its id, the request's fingerprint, the quote and what M-Pesa will charge. */
export interface TipTerms {
  tipId: string;
  fp: string;
  charged: bigint;
  quote: FeeQuote;
  phoneMasked: string;
  config: PaymentConfig;
  /** The service's clock: the tip's deadline is read on it (reconciliation's passes), so it is set on it too. */
  clock: Clock;
}

/** A tip to place, with the values of its row and its event, made where the call is handled (its trace context). */
export interface Placement {
  t: NewTip;
  terms: TipTerms;
  /** The statement's row for this tip, in PLACEMENT_COLUMNS' order. */
  values: unknown[];
}

/** What placing a tip answers: the rules' verdict and the row, the one inserted or the one its key already had. */
export interface Placed {
  check: TipPrecheck;
  row?: TipRow;
}

/**
 * At most this many tips per statement: a bound on its parameters (a tip is
 * under 1 KB of them) and on the rows its rules read at once.
 */
const MAX_GROUP = 64;
/**
 * At most this many wait for a group while one is out (the database slow or
 * stuck); more are placed alone at once, waiting on the pool like anything
 * else. Each holds a customer's open CreateTip, which the gateway bounds too.
 */
const MAX_WAITING = 1_024;

/** A placement's row: its fraud facts' inputs, the tip's columns and its event, and how the rules' holds are taken. */
const PLACEMENT_COLUMNS = [
  ["phone", "text"], ["worker_id", "uuid"], ["idempotency_key", "text"], ["amount_minor", "bigint"], ["tip_id", "uuid"], ["request_fingerprint", "text"],
  ["customer_subject", "text"], ["fee_minor", "bigint"], ["charged_minor", "bigint"], ["worker_receives_minor", "bigint"], ["fee_schedule_version", "int"],
  ["customer_covers_fee", "bool"], ["phone_masked", "text"], ["rating", "int"], ["message", "text"], ["customer_email", "text"], ["callback_token", "text"],
  ["venue_id", "text"], ["qr_code_id", "text"], ["channel", "text"], ["event_id", "uuid"], ["event_subject", "text"], ["event_payload", "bytea"],
  ["traceparent", "text"], ["locale", "text"], ["accept_holds", "bool"], ["request_holds", "bool"], ["request_refuses", "bool"],
] as const;
const ACCEPT_HOLDS = PLACEMENT_COLUMNS.findIndex(([name]) => name === "accept_holds");

/** The row and the tip_created event of a tip about to be placed, built in the caller's context (its trace). */
export function placement(t: NewTip, terms: TipTerms): Placement {
  const { tipId, fp, charged, quote, phoneMasked, config } = terms;
  const workerReceives = quote.workerReceives!.amountMinor;
  // Announced in the statement that inserts the tip (nothing when it inserts none).
  const created = buildEvent("payment", TipCreatedSchema, {
    tipId,
    workerId: t.workerId,
    venueId: t.venueId ?? "",
    qrCodeId: t.qrCodeId ?? "",
    amount: kes(t.amountMinor),
    method: PaymentMethod.MPESA,
    createdBy: t.callerSubject ?? "",
  }, tipId);
  const values = [t.phone, t.workerId || null, t.idempotencyKey, t.amountMinor, tipId, fp, t.callerSubject ?? "", charged - workerReceives, charged, workerReceives,
    quote.feeScheduleVersion, t.customerCoversFee, phoneMasked, t.rating, t.message, t.customerEmail, newCallbackToken(), t.venueId ?? "",
    t.qrCodeId ?? "", t.channel ?? "web", created.id, created.subject, Buffer.from(created.data), currentTraceparent() ?? null, t.locale ?? "", false,
    requestRulesFire(config.fraud, t, "hold"), requestRulesFire(config.fraud, t, "refuse")];
  return { t, terms, values };
}

type PlacedOrFailed = Placed | { err: unknown };
const placements = groupCommitPer((db: Queryable) => new GroupCommit<Placement, PlacedOrFailed>(MAX_GROUP, (items) => placeGroup(db, items), MAX_WAITING));

/**
 * One statement: the fraud rules read, and the tip inserted with its
 * tip_created event when its key is new, no rule refuses, M-Pesa has not just
 * refused the same amount from the number (17), and either no rule holds or
 * `acceptHolds` (the caller then stores the alerts in the same transaction:
 * `db` is that transaction, and the tip goes alone). Otherwise with the tips
 * of other calls placed meanwhile, in one statement. Answers the rules'
 * verdict and the row: the one inserted, or the one the key already had (a
 * concurrent call's that inserted first, too, unless `acceptHolds`); none when
 * nothing went in (a refusal, a hold not accepted, or with `acceptHolds` a
 * concurrent call with the same key inserted first).
 */
export async function placeTip(db: Queryable, p: Placement, acceptHolds: boolean): Promise<Placed> {
  if (acceptHolds) {
    const values = [...p.values];
    values[ACCEPT_HOLDS] = true;
    return (await placeTips(db, [{ ...p, values }], "on-conflict"))[0];
  }
  const out = await placements(db).add(p).catch(async (err: unknown): Promise<PlacedOrFailed> => {
    if (err instanceof GroupCommitFull) return (await placeTipsAlone(db, [p]))[0];
    throw err;
  });
  if ("err" in out) throw out.err;
  return out;
}

/**
 * A group, in statements of tips that cannot see each other's effect on the
 * rules: two tips from one number, to one worker or under one key are never in
 * the same statement (the later waits for the next), so each is judged with the
 * earlier ones counted, as when they come one after the other. A statement that
 * fails is retried tip by tip: one tip's failure never fails another's.
 */
async function placeGroup(db: Queryable, items: Placement[]): Promise<PlacedOrFailed[]> {
  const outs: PlacedOrFailed[] = new Array(items.length);
  let left = items.map((p, i) => ({ p, i }));
  while (left.length) {
    const now: typeof left = [];
    const later: typeof left = [];
    const seen = new Set<string>();
    for (const x of left) {
      const { t, terms } = x.p;
      const keys = [`phone:${t.phone}`, `key:${t.idempotencyKey}`, ...(t.workerId ? [`worker:${t.workerId}`] : [])];
      // The rules' limits and the deadline are the statement's: one configuration per statement.
      if (keys.some((k) => seen.has(k)) || (now.length && now[0].p.terms.config !== terms.config)) {
        later.push(x);
        continue;
      }
      for (const k of keys) seen.add(k);
      now.push(x);
    }
    try {
      const placed = await placeTipsAlone(db, now.map((x) => x.p));
      now.forEach((x, j) => (outs[x.i] = placed[j]));
    } catch (err) {
      if (now.length === 1) outs[now[0].i] = { err };
      else await Promise.all(now.map((x) => placeTipsAlone(db, [x.p]).then(([placed]) => (outs[x.i] = placed), (e: unknown) => (outs[x.i] = { err: e }))));
    }
    left = later;
  }
  return outs;
}

/**
 * How a placement's insert claims its tips' keys. "plain": where no tip has the key in the statement's
 * snapshot, a plain INSERT; a key that another transaction is inserting meanwhile waits for it, and if
 * that one commits the statement fails (23505) having written nothing. "on-conflict": ON CONFLICT DO
 * NOTHING, which never fails on a key, but whose speculative insertion writes a confirmation record per
 * tip (WAL) and checks the key's index once more; for a caller's transaction, which a failure would abort.
 */
type KeyClaim = "plain" | "on-conflict";

/** The error of a plain placement that lost a key to a tip committed while it waited on it: it wrote nothing. */
function lostKeyRace(err: unknown): boolean {
  const e = err as { code?: string; constraint?: string };
  return e.code === "23505" && e.constraint === "tips_idempotency_key_key";
}

/**
 * placeTips for a statement that is its own transaction: plainly, and when a key was lost to a
 * concurrent placement (a CreateTip retried on another replica), again the ON CONFLICT way, whose fresh
 * snapshot answers that placement's tip, as it would have answered the first time.
 */
async function placeTipsAlone(db: Queryable, group: Placement[]): Promise<Placed[]> {
  try {
    return await placeTips(db, group, "plain");
  } catch (err) {
    if (!lostKeyRace(err)) throw err;
    return placeTips(db, group, "on-conflict");
  }
}

const placeSql = new Map<KeyClaim, string>();

/** The statement of placeTip for tips of one configuration, answered in their order. */
async function placeTips(db: Queryable, group: Placement[], claim: KeyClaim): Promise<Placed[]> {
  const n = PLACEMENT_COLUMNS.length;
  // The rules' limits and the deadline, the statement's own parameters after the rows' columns.
  const [windowMs, ruleLimitSeconds, pinLimit, phoneLimit, workerLimit, deadlineAt] = [1, 2, 3, 4, 5, 6].map((i) => `$${n + i}`);
  const holds = `(${judgedRulesFire("hold", "j")} OR j.request_holds)`;
  const sql = placeSql.get(claim) ?? `WITH q AS (
       SELECT * FROM ${opaqueUnnest(PLACEMENT_COLUMNS.map(([, type]) => type))} AS q(${PLACEMENT_COLUMNS.map(([name]) => name).join(", ")})),
     j AS MATERIALIZED (
       SELECT ${PLACEMENT_COLUMNS.map(([name]) => `q.${name}`).join(", ")}, ${tipFactsColumns("f")}, f.existing_tip_id FROM q CROSS JOIN LATERAL ${tipJudgedSubquery({ phone: "q.phone", worker: "q.worker_id", windowMs, idempotencyKey: "q.idempotency_key",
         ruleLimitSeconds, pinLimit, phoneLimit, workerLimit, amount: "q.amount_minor" })} f),
     tip AS (INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, customer_subject, currency, amount_minor,
         fee_minor, charged_minor, worker_receives_minor, fee_schedule_version, customer_covers_fee, phone, phone_masked, rating, message,
         customer_email, status, fraud_action, callback_token, deadline_at, next_check_at, venue_id, qr_code_id, channel, account_reference, locale)
       SELECT j.tip_id, j.idempotency_key, j.request_fingerprint, j.worker_id, j.customer_subject, 'KES', j.amount_minor, j.fee_minor, j.charged_minor,
         j.worker_receives_minor, j.fee_schedule_version, j.customer_covers_fee, j.phone, j.phone_masked, j.rating, j.message, j.customer_email, 'pending',
         CASE WHEN ${holds} THEN 'hold' ELSE 'none' END, j.callback_token,
         ${deadlineAt}::timestamptz, ${deadlineAt}::timestamptz,
         j.venue_id, j.qr_code_id, j.channel, payment.tip_reference(nextval('payment.tip_reference_seq')), j.locale
         FROM j
        WHERE j.existing_tip_id IS NULL AND NOT ${judgedRulesFire("refuse", "j")} AND NOT j.request_refuses AND (j.accept_holds OR NOT ${holds})
          AND NOT COALESCE(j.charged_minor::text = ANY (j.limited_charged), false)
       ${claim === "on-conflict" ? "ON CONFLICT (idempotency_key) DO NOTHING " : ""}RETURNING ${TIP_COLUMNS}),
     announced AS (
       INSERT INTO payment.outbox (event_id, subject, payload, traceparent) SELECT j.event_id, j.event_subject, j.event_payload, j.traceparent FROM j JOIN tip USING (tip_id))
     SELECT j.tip_id AS placement, ${tipFactsColumns("j")}, ${TIP_COLUMNS_OF_T}
       FROM j LEFT JOIN LATERAL (SELECT ${TIP_COLUMNS} FROM tip WHERE tip.tip_id = j.tip_id
                                 UNION ALL SELECT ${TIP_COLUMNS} FROM payment.tips e WHERE e.idempotency_key = j.idempotency_key) t ON true`;
  placeSql.set(claim, sql);
  // Sorted by key: two replicas' groups meet each other's keys in the same order.
  const sorted = sortedByKey(group, (p) => p.t.idempotencyKey);
  const { config, clock } = group[0].terms;
  const { rows } = await db.query<TipFacts & TipRow & { placement: string }>(sql, [
    ...PLACEMENT_COLUMNS.map((_, c) => sorted.map((p) => p.values[c])),
    config.fraud.windowMs, RULE_LIMIT_WINDOW_SECONDS, config.fraud.pinFailures, config.fraud.phonePerWindow, config.fraud.workerPerWindow,
    new Date(clock.now() + config.stkDeadlineMs),
  ]);
  // Each row as the driver made it, its `placement` column left on: a copy without it (~70 columns) cost a few us and ~7 KiB per tip (bench/payment-tip-steps.ts).
  const byPlacement = new Map(rows.map((row) => [row.placement, row]));
  return group.map((p) => {
    const row = byPlacement.get(p.terms.tipId);
    if (!row) throw new Error(`placing tip ${p.terms.tipId} answered no row for it`);
    return { check: judgeTip(p.terms.config.fraud, p.t, row), row: row.tip_id ? (row as TipRow) : undefined };
  });
}
