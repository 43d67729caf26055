// Fraud rules run before an STK push. Each hit is stored (visible to admins)
// and published as ttip.payment.fraud_alert; its rule decides whether the tip
// is only flagged, held for review before crediting, or refused.
import { randomUUID } from "node:crypto";
import { DomainError, emitEvent, formatMoney, PermissionDeniedError, type Queryable, RateLimitedError } from "@ttip/runtime";
import { FraudAlertSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import type { FraudLimits } from "./config.js";
import { DEFAULT_CARD_RULES, type CardRules } from "./cards/config.js";
import { kes } from "./money.js";

export type FraudReasonCode =
  | "VELOCITY_PHONE"
  | "VELOCITY_WORKER"
  | "AMOUNT_OUTLIER"
  | "SELF_TIP"
  | "BLOCKED_NUMBER"
  | "PIN_FAILURES"
  | "CALLBACK_MISMATCH"
  | "UNKNOWN_CALLBACK"
  | "CARD_VELOCITY"
  | "CARD_COUNTRY_MISMATCH"
  | "CARD_LIMIT"
  | "CARD_DISPUTE";
export type FraudActionCode = "flag" | "hold" | "refuse";

/** What each rule does when it fires. */
export const RULE_ACTIONS: Record<FraudReasonCode, FraudActionCode> = {
  BLOCKED_NUMBER: "refuse",
  PIN_FAILURES: "refuse",
  VELOCITY_PHONE: "refuse",
  SELF_TIP: "hold",
  VELOCITY_WORKER: "hold",
  AMOUNT_OUTLIER: "hold",
  CALLBACK_MISMATCH: "hold",
  UNKNOWN_CALLBACK: "flag",
  // Card rules run on the authorisation (cards/rules.ts): refused ones are cancelled, never captured.
  CARD_VELOCITY: "refuse",
  CARD_LIMIT: "refuse",
  CARD_COUNTRY_MISMATCH: "hold",
  CARD_DISPUTE: "flag",
};

/** A tip this many times the worker's median (over at least 5 tips) is an outlier too. */
export const OUTLIER_TIMES_MEDIAN = 20n;
/**
 * The worker's rules read at most the worker's newest this many tips of 90 days: the median is of
 * their succeeded ones. All of them made each tip to a busy worker read its whole history (980
 * blocks at 10,000 tips, bench/payment-worker-facts.ts; about one per tip read where a vacuum has
 * not seen the page yet, as for recent tips). 200 tips make as good a yardstick for an outlier.
 */
export const WORKER_TIPS_READ = 200;

export interface FraudHit {
  reason: FraudReasonCode;
  action: FraudActionCode;
  detail: string;
}

export interface TipCandidate {
  phone: string;
  workerId: string;
  amountMinor: bigint;
  /** The signed-in customer, if any. */
  callerSubject?: string;
}

/** What CreateTip also needs to know before a push, read in the fraud rules' round trip. */
export interface TipPrecheck {
  hits: FraudHit[];
  /** This number's pushes M-Pesa answered 17 ("rule limited") within the window: amount charged, seconds left. */
  ruleLimited: { chargedMinor: bigint; waitSeconds: number }[];
}

/**
 * What the rules read about a tip (the columns of TIP_FACTS_SQL that tipFactsColumns
 * selects; its existing_tip_id only conditions an insert): counts for the alerts'
 * words, a boolean per rule the database judges.
 */
export interface TipFacts {
  blocked: boolean;
  pin_failures: bigint;
  phone_recent: bigint;
  worker_recent: bigint;
  median_minor: bigint | null;
  limited_charged: string[] | null;
  limited_wait: number[] | null;
  pin_limited: boolean;
  phone_limited: boolean;
  worker_limited: boolean;
  median_outlier: boolean;
  payout_phone_match: boolean;
}

/** What the rules read a tip's facts by: SQL expressions (a statement's parameters, or a row's columns). */
export interface TipFactsInputs {
  phone: string;
  /** Null for a venue tip: the per-worker rules find nothing. */
  worker: string;
  windowMs: string;
  idempotencyKey: string;
  ruleLimitSeconds: string;
  pinLimit: string;
  phoneLimit: string;
  workerLimit: string;
  amount: string;
}

/** The rules' facts of one tip (one row), without the judgement. */
function factsSelect(v: TipFactsInputs): string {
  const window = `make_interval(secs => ${v.windowMs}::double precision / 1000)`;
  return `SELECT EXISTS (SELECT 1 FROM payment.blocked_phones WHERE phone = ${v.phone}) AS blocked,
           (SELECT count(*) FROM payment.tips WHERE phone = ${v.phone} AND result_code = '2001' AND created_at > now() - interval '1 hour') AS pin_failures,
           (SELECT count(*) FROM payment.tips WHERE phone = ${v.phone} AND created_at > now() - ${window}) AS phone_recent,
           w.recent AS worker_recent,
           (SELECT payout_phone FROM payment.payout_settings WHERE worker_id = ${v.worker}) AS payout_phone,
           w.median AS median_minor,
           (SELECT tip_id FROM payment.tips WHERE idempotency_key = ${v.idempotencyKey}) AS existing_tip_id,
           l.charged AS limited_charged, l.wait AS limited_wait
      FROM (SELECT array_agg(charged_minor::text ORDER BY completed_at DESC) AS charged,
                   array_agg(ceil(extract(epoch FROM completed_at - now()) + ${v.ruleLimitSeconds})::int ORDER BY completed_at DESC) AS wait
              FROM payment.tips WHERE ${v.ruleLimitSeconds}::int > 0 AND phone = ${v.phone} AND result_code = '17' AND completed_at > now() - make_interval(secs => ${v.ruleLimitSeconds})) l,
           -- The worker's rules from one pass over the worker's newest tips (index-only where the pages are all-visible,
           -- tips_worker_facts), at most WORKER_TIPS_READ of them or the velocity limit if larger (a count that stops there
           -- still reaches the limit): what a tip costs does not grow with the worker's history.
           (SELECT count(*) FILTER (WHERE created_at > now() - ${window}) AS recent,
                   CASE WHEN count(*) FILTER (WHERE status = 'succeeded' AND created_at > now() - interval '90 days') >= 5
                     THEN percentile_disc(0.5) WITHIN GROUP (ORDER BY amount_minor) FILTER (WHERE status = 'succeeded' AND created_at > now() - interval '90 days') END AS median
              FROM (SELECT created_at, status, amount_minor FROM payment.tips
                     WHERE worker_id = ${v.worker} AND created_at > now() - GREATEST(interval '90 days', ${window})
                     ORDER BY created_at DESC LIMIT GREATEST(${WORKER_TIPS_READ}, ${v.workerLimit}::int)) newest) w`;
}

/** The facts of `from` (aliased f) and the judgement of each rule the database decides. */
function judgedSelect(v: TipFactsInputs, from: string): string {
  return `SELECT f.blocked, f.pin_failures, f.phone_recent, f.worker_recent, f.median_minor, f.existing_tip_id, f.limited_charged, f.limited_wait,
           f.pin_failures >= ${v.pinLimit} AS pin_limited, f.phone_recent >= ${v.phoneLimit} AS phone_limited, f.worker_recent >= ${v.workerLimit} AS worker_limited,
           COALESCE(${v.amount}::bigint > f.median_minor * ${OUTLIER_TIMES_MEDIAN}, false) AS median_outlier, COALESCE(f.payout_phone = ${v.phone}, false) AS payout_phone_match
      FROM ${from} f`;
}

/**
 * The rules' facts as two CTEs, `facts` and `judged` (one row), for a statement
 * to read alone or to make its insert depend on. Parameters, as tipFactsParams
 * orders them: $1 phone, $2 worker (null for a venue tip: the per-worker rules
 * find nothing), $3 the velocity window in ms, $4 the idempotency key, $5 the
 * rule-limited window in seconds, $6-$8 the PIN, phone and worker limits, $9 the amount.
 */
const BY_PARAMETERS: TipFactsInputs = {
  phone: "$1", worker: "$2", windowMs: "$3", idempotencyKey: "$4", ruleLimitSeconds: "$5", pinLimit: "$6", phoneLimit: "$7", workerLimit: "$8", amount: "$9",
};
export const TIP_FACTS_SQL = `facts AS MATERIALIZED (
    ${factsSelect(BY_PARAMETERS)}),
  judged AS (
    ${judgedSelect(BY_PARAMETERS, "facts")})`;

/**
 * The judged facts (TIP_FACTS_SQL's `judged` row) of a tip whose inputs are `v`, as a subquery: one per row of a
 * statement about many tips (LATERAL). OFFSET 0 keeps the facts a subquery of their own, read once, as
 * MATERIALIZED does for the CTE: inlined, each use of a count in the judgement ran its subquery again.
 */
export function tipJudgedSubquery(v: TipFactsInputs): string {
  return `(${judgedSelect(v, `(${factsSelect(v)} OFFSET 0)`)})`;
}

/** The columns of `judged` (TIP_FACTS_SQL), aliased `alias`. */
export function tipFactsColumns(alias: string): string {
  return TIP_FACT_COLUMNS.map((c) => `${alias}.${c}`).join(", ");
}
const TIP_FACT_COLUMNS = ["blocked", "pin_failures", "phone_recent", "worker_recent", "median_minor", "limited_charged", "limited_wait",
  "pin_limited", "phone_limited", "worker_limited", "median_outlier", "payout_phone_match"] as const satisfies readonly (keyof TipFacts)[];

/** TIP_FACTS_SQL's parameters $1-$9. */
export function tipFactsParams(limits: FraudLimits, t: TipCandidate, also: { idempotencyKey: string; ruleLimitSeconds: number }): unknown[] {
  return [t.phone, t.workerId || null, limits.windowMs, also.idempotencyKey, also.ruleLimitSeconds, limits.pinFailures, limits.phonePerWindow, limits.workerPerWindow, t.amountMinor];
}

/** The rule each of `judged`'s booleans is (AMOUNT_OUTLIER and SELF_TIP also have parts judged here, jsRules). */
const JUDGED_RULES: [keyof TipFacts, FraudReasonCode][] = [
  ["blocked", "BLOCKED_NUMBER"], ["pin_limited", "PIN_FAILURES"], ["phone_limited", "VELOCITY_PHONE"],
  ["worker_limited", "VELOCITY_WORKER"], ["median_outlier", "AMOUNT_OUTLIER"], ["payout_phone_match", "SELF_TIP"],
];

/** SQL: whether any rule `judged` (aliased `alias`) decides fires with this action. */
export function judgedRulesFire(action: FraudActionCode, alias: string): string {
  return `(${JUDGED_RULES.filter(([, r]) => RULE_ACTIONS[r] === action).map(([c]) => `${alias}.${c}`).join(" OR ") || "false"})`;
}

/** The rules judged from the request alone: above the review threshold, or a signed-in worker tipping themself. */
function jsRules(limits: FraudLimits, t: TipCandidate) {
  return { aboveThreshold: t.amountMinor > limits.outlierMinor, callerIsWorker: Boolean(t.callerSubject) && t.callerSubject === t.workerId };
}

/** Whether a rule judged from the request alone fires with this action (a statement's parameter beside judgedRulesFire). */
export function requestRulesFire(limits: FraudLimits, t: TipCandidate, action: FraudActionCode): boolean {
  const js = jsRules(limits, t);
  return (js.aboveThreshold && RULE_ACTIONS.AMOUNT_OUTLIER === action) || (js.callerIsWorker && RULE_ACTIONS.SELF_TIP === action);
}

/** The rules' hits, in the order refusal() weighs them, from the facts read and the request. */
export function judgeTip(limits: FraudLimits, t: TipCandidate, r: TipFacts): TipPrecheck {
  const hit = (reason: FraudReasonCode, detail: string): FraudHit => ({ reason, action: RULE_ACTIONS[reason], detail });
  const hits: FraudHit[] = [];
  const js = jsRules(limits, t);
  if (r.blocked) hits.push(hit("BLOCKED_NUMBER", "the paying number is blocked"));
  if (r.pin_limited) hits.push(hit("PIN_FAILURES", `${r.pin_failures} wrong-PIN failures from this number within an hour`));
  if (r.phone_limited) {
    hits.push(hit("VELOCITY_PHONE", `${r.phone_recent} tips from this number within ${limits.windowMs / 60_000} minutes (limit ${limits.phonePerWindow})`));
  }
  if (r.worker_limited) {
    hits.push(hit("VELOCITY_WORKER", `${r.worker_recent} tips to this worker within ${limits.windowMs / 60_000} minutes (limit ${limits.workerPerWindow})`));
  }
  if (js.aboveThreshold) {
    hits.push(hit("AMOUNT_OUTLIER", `${formatMoney(t.amountMinor, "KES")} is above the review threshold of ${formatMoney(limits.outlierMinor, "KES")}`));
  } else if (r.median_outlier) {
    hits.push(hit("AMOUNT_OUTLIER", `${formatMoney(t.amountMinor, "KES")} is over ${OUTLIER_TIMES_MEDIAN}x this worker's median tip of ${formatMoney(r.median_minor!, "KES")}`));
  }
  if (js.callerIsWorker || r.payout_phone_match) hits.push(hit("SELF_TIP", "the worker appears to be tipping themself"));
  const ruleLimited = (r.limited_charged ?? []).map((c, i) => ({ chargedMinor: BigInt(c), waitSeconds: r.limited_wait![i] }));
  return { hits, ruleLimited };
}

/**
 * The error a refused tip gets, by its first refusing rule. The rule is named in the details (fraud_rule), so a
 * channel that speaks to the customer in their own words (USSD) can say which refusal it was without the English text.
 */
export function refusal(hits: FraudHit[]): DomainError | undefined {
  const first = hits.find((h) => h.action === "refuse");
  if (!first) return undefined;
  const rule = { fraud_rule: first.reason };
  switch (first.reason) {
    case "BLOCKED_NUMBER":
      return new PermissionDeniedError("mpesa_phone: this number cannot be used for tips; contact support", rule);
    case "PIN_FAILURES":
      return new RateLimitedError("mpesa_phone: too many wrong M-Pesa PIN attempts; try again in an hour", undefined, rule);
    default:
      return new RateLimitedError(`mpesa_phone: too many tips from this number (${first.detail}); try again later`, undefined, rule);
  }
}

export interface AlertInput {
  reason: FraudReasonCode;
  action: FraudActionCode;
  detail: string;
  tipId?: string;
  payoutId?: string;
  workerId?: string;
  phoneMasked?: string;
  /** The tip's amount (KES minor units), so those alerted can weigh it. */
  tipAmountMinor?: bigint;
}

/** Stores an alert and publishes it, in the caller's transaction. */
export async function recordAlert(tx: Queryable, a: AlertInput): Promise<string> {
  const alertId = randomUUID();
  await tx.query(
    `INSERT INTO payment.fraud_alerts (alert_id, reason, action, tip_id, payout_id, worker_id, phone_masked, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [alertId, a.reason, a.action, a.tipId ?? null, a.payoutId ?? null, a.workerId ?? null, a.phoneMasked ?? "", a.detail.slice(0, 1000)],
  );
  await emitEvent(tx, "payment", FraudAlertSchema, {
    alertId,
    reasonCode: a.reason,
    tipId: a.tipId ?? "",
    payoutId: a.payoutId ?? "",
    workerId: a.workerId ?? "",
    action: a.action === "hold" ? "held" : a.action === "refuse" ? "refused" : "flagged",
    detail: a.detail.slice(0, 1000),
    tipAmount: a.tipAmountMinor === undefined ? undefined : kes(a.tipAmountMinor),
  });
  return alertId;
}

/** One rule in force, as the console shows it (GetFraudRules). */
export interface RuleInForce {
  reason: FraudReasonCode;
  action: FraudActionCode;
  description: string;
  limit?: number;
  windowSeconds?: number;
  /** KES minor units. */
  amountMinor?: bigint;
  enabled: boolean;
  setting?: string;
}

/**
 * The rules with the thresholds this process applies: built from the same
 * limits judgeTip and the card rules read, so the screen cannot drift
 * from what runs. `cards`: the card rules, when a card provider is configured.
 */
export function rulesInForce(limits: FraudLimits, cards: CardRules | undefined): RuleInForce[] {
  const minutes = limits.windowMs / 60_000;
  const kesText = (minor: bigint) => formatMoney(minor, "KES");
  const rule = (reason: FraudReasonCode, r: Omit<RuleInForce, "reason" | "action" | "enabled"> & { enabled?: boolean }): RuleInForce =>
    ({ reason, action: RULE_ACTIONS[reason], enabled: true, ...r });
  const card = cards ?? DEFAULT_CARD_RULES;
  return [
    rule("BLOCKED_NUMBER", { description: "the paying number is on the blocked list (Fraud: block a payer)" }),
    rule("PIN_FAILURES", { description: `${limits.pinFailures} or more wrong-PIN failures from the number within an hour`, limit: limits.pinFailures, windowSeconds: 3600, setting: "FRAUD_PIN_FAILURES_PER_HOUR" }),
    rule("VELOCITY_PHONE", { description: `${limits.phonePerWindow} or more tips from one number within ${minutes} minutes`, limit: limits.phonePerWindow, windowSeconds: limits.windowMs / 1000, setting: "FRAUD_PHONE_PER_10MIN" }),
    rule("VELOCITY_WORKER", { description: `${limits.workerPerWindow} or more tips to one worker within ${minutes} minutes`, limit: limits.workerPerWindow, windowSeconds: limits.windowMs / 1000, setting: "FRAUD_WORKER_PER_10MIN" }),
    rule("AMOUNT_OUTLIER", {
      description: `a tip above ${kesText(limits.outlierMinor)}, or over ${OUTLIER_TIMES_MEDIAN}x the worker's median tip (of their last ${WORKER_TIPS_READ} tips within 90 days, at least 5 succeeded)`,
      amountMinor: limits.outlierMinor, setting: "FRAUD_OUTLIER_KES",
    }),
    rule("SELF_TIP", { description: "the payer is the worker (signed in as them, or paying from their payout number)" }),
    rule("CALLBACK_MISMATCH", { description: "M-Pesa's callback disagrees with the payment (amount, receipt, number): held when money arrived that differs, flagged otherwise" }),
    rule("UNKNOWN_CALLBACK", { description: "a callback or paybill payment matches no tip or code: recorded, paybill money parked in suspense" }),
    rule("CARD_VELOCITY", { description: `${card.perCardPerHour} or more card tips from one card within an hour; the authorisation is cancelled`, limit: card.perCardPerHour, windowSeconds: 3600, setting: "CARD_PER_HOUR", enabled: !!cards }),
    rule("CARD_LIMIT", { description: `one card tipping more than ${kesText(card.perCardDailyKesMinor)} within 24 hours; the authorisation is cancelled`, amountMinor: card.perCardDailyKesMinor, windowSeconds: 86_400, setting: "CARD_DAILY_KES", enabled: !!cards }),
    {
      ...rule("CARD_COUNTRY_MISMATCH", { description: "the card was issued in another country than the customer's", setting: "CARD_COUNTRY_MISMATCH", enabled: !!cards && card.countryMismatch !== "off" }),
      action: card.countryMismatch === "refuse" ? "refuse" : "hold",
    },
    rule("CARD_DISPUTE", { description: "a chargeback is opened on a card tip", enabled: !!cards }),
  ];
}
