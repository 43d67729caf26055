// Read side: every figure is a sum over rollup rows (or, for payout latency,
// over the payout tables). One function per screen; the RPCs and the CSV
// exports both call these, so an export always equals its screen.
import { reversalCode, type Queryable } from "@ttip/runtime";
import { DAY_MS, Dim, EAT_OFFSET_MS, NIL, dayOf, hasDayRows } from "./facts.js";
import { TipReversalKind } from "@ttip/proto/ttip/events/v1/events_pb.js";

export interface Range {
  from: Date;
  to: Date;
}

export type Period = "hour" | "day" | "week" | "month";

/** Limits: a range is at most 366 days (the contract says so too); lists are capped. */
export const MAX_RANGE_MS = 366 * DAY_MS;
const MAX_LIST = 500;

const isDayAligned = (d: Date) => (d.getTime() + EAT_OFFSET_MS) % DAY_MS === 0;

/**
 * Day rows when the dimension has them (hasDayRows: the platform's) and the range starts and
 * ends at midnight EAT (far fewer rows), else hour rows: the figures are those of the buckets
 * that start in the range, the same either way (a day's row sums its 24 hours').
 */
export function grainFor(range: Range, dim: Dim): "h" | "d" {
  return hasDayRows(dim) && isDayAligned(range.from) && isDayAligned(range.to) ? "d" : "h";
}

export interface Totals {
  scans: bigint;
  created: bigint;
  pushRefused: bigint;
  succeeded: bigint;
  failed: bigint;
  amount: bigint;
  fee: bigint;
  net: bigint;
  ratingSum: bigint;
  ratingCount: bigint;
  rated: bigint[];
  payoutsSucceeded: bigint;
  payoutsFailed: bigint;
  payout: bigint;
  registrations: bigint;
  pooled: bigint;
}

const SUMS = `COALESCE(sum(scans), 0)::int8 AS scans, COALESCE(sum(created), 0)::int8 AS created,
  COALESCE(sum(push_refused), 0)::int8 AS push_refused, COALESCE(sum(succeeded), 0)::int8 AS succeeded,
  COALESCE(sum(failed), 0)::int8 AS failed, COALESCE(sum(amount_minor), 0)::int8 AS amount,
  COALESCE(sum(fee_minor), 0)::int8 AS fee, COALESCE(sum(net_minor), 0)::int8 AS net,
  COALESCE(sum(rating_sum), 0)::int8 AS rating_sum, COALESCE(sum(rating_count), 0)::int8 AS rating_count,
  COALESCE(sum(rated_1), 0)::int8 AS r1, COALESCE(sum(rated_2), 0)::int8 AS r2, COALESCE(sum(rated_3), 0)::int8 AS r3,
  COALESCE(sum(rated_4), 0)::int8 AS r4, COALESCE(sum(rated_5), 0)::int8 AS r5,
  COALESCE(sum(payouts_succeeded), 0)::int8 AS payouts_succeeded, COALESCE(sum(payouts_failed), 0)::int8 AS payouts_failed,
  COALESCE(sum(payout_minor), 0)::int8 AS payout, COALESCE(sum(registrations), 0)::int8 AS registrations,
  COALESCE(sum(pooled_minor), 0)::int8 AS pooled`;

type SumRow = Record<string, bigint>;

function totalsOf(r: SumRow | undefined): Totals {
  const z = 0n;
  return {
    scans: r?.scans ?? z,
    created: r?.created ?? z,
    pushRefused: r?.push_refused ?? z,
    succeeded: r?.succeeded ?? z,
    failed: r?.failed ?? z,
    amount: r?.amount ?? z,
    fee: r?.fee ?? z,
    net: r?.net ?? z,
    ratingSum: r?.rating_sum ?? z,
    ratingCount: r?.rating_count ?? z,
    rated: [r?.r1 ?? z, r?.r2 ?? z, r?.r3 ?? z, r?.r4 ?? z, r?.r5 ?? z],
    payoutsSucceeded: r?.payouts_succeeded ?? z,
    payoutsFailed: r?.payouts_failed ?? z,
    payout: r?.payout ?? z,
    registrations: r?.registrations ?? z,
    pooled: r?.pooled ?? z,
  };
}

/** Which rows: a dimension and its id (and sub-id for a venue's staff or codes). */
export interface Scope {
  dim: Dim;
  id: string;
}

export const platformScope: Scope = { dim: Dim.Platform, id: NIL };

/**
 * Tip and scan rows carry a currency ("" for scans): a currency's figures are its own tips' rows
 * (their counts and money alike, as the contracts' per-currency figures say) and the rows of no
 * currency (scans), never another currency's. Tips in every currency are the sum of each
 * currency's counts; money is never summed across currencies.
 */
const CURRENCY = `(currency = $5 OR currency = '')`;

/** The home currency, first in every per-currency list and present even with no figures. */
export const HOME_CURRENCY = "KES";

/**
 * The currencies a scope has figures in over a range: KES first (always, so an export without tips
 * keeps its KES rows), then the others by code. A currency counts where a tip was paid in it, or
 * money in it that the scope's screen shows: a pool share or a payout, and for a worker the net
 * credited to their wallet. A card tip's net in another currency (USD tipped into a EUR wallet) is
 * the worker's money in EUR, but on a venue's or the platform's screen, which show tips and their
 * volume, EUR would have nothing. At most a handful.
 */
export async function currenciesOf(db: Queryable, scope: Scope, range: Range): Promise<string[]> {
  const { rows } = await db.query<{ currency: string }>(
    `SELECT DISTINCT currency FROM analytics.rollups
      WHERE dim = $1 AND id = $2 AND grain = $3 AND bucket >= $4 AND bucket < $5 AND currency NOT IN ('', $6)
        AND (succeeded > 0 OR amount_minor <> 0 OR pooled_minor <> 0 OR payout_minor <> 0 OR ($1 = ${Dim.Worker} AND net_minor <> 0))
      ORDER BY currency LIMIT 50`,
    [scope.dim, scope.id, grainFor(range, scope.dim), range.from, range.to, HOME_CURRENCY],
  );
  return [HOME_CURRENCY, ...rows.map((r) => r.currency)];
}

/** Sums over a scope and range. */
export async function totals(db: Queryable, scope: Scope, range: Range, currency: string, grain = grainFor(range, scope.dim)): Promise<Totals> {
  const { rows } = await db.query<SumRow>(
    `SELECT ${SUMS} FROM analytics.rollups
      WHERE dim = $1 AND id = $2 AND grain = $3 AND bucket >= $4 AND bucket < $6 AND ${CURRENCY}`,
    [scope.dim, scope.id, grain, range.from, currency, range.to],
  );
  return totalsOf(rows[0]);
}

export const bps = (part: bigint, whole: bigint) => (whole > 0n ? Number((part * 10_000n) / whole) : 0);
export const average = (sum: bigint, count: bigint) => (count > 0n ? sum / count : 0n);

/** Midnight EAT today, Monday of this week and the 1st of this month. */
export function periodStarts(now: Date): { today: Date; week: Date; month: Date } {
  const today = dayOf(now);
  const local = new Date(today.getTime() + EAT_OFFSET_MS);
  const weekday = (local.getUTCDay() + 6) % 7; // Monday 0
  const week = new Date(today.getTime() - weekday * DAY_MS);
  const month = new Date(Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), 1) - EAT_OFFSET_MS);
  return { today, week, month };
}

export interface EarningsPeriod {
  tips: bigint;
  volume: bigint;
  net: bigint;
  pool: bigint;
}

export interface WorkerEarnings {
  today: EarningsPeriod;
  week: EarningsPeriod;
  month: EarningsPeriod;
  inRange: EarningsPeriod;
  byHour: EarningsPeriod[];
  byWeekday: EarningsPeriod[];
  averageTip: bigint;
  averageRatingX100: number;
  ratings: bigint[];
}

const zero = (): EarningsPeriod => ({ tips: 0n, volume: 0n, net: 0n, pool: 0n });

/** A worker's dashboard: two reads of hour rows, since the earlier of Monday and the 1st (today, week, month), and of the range. */
export async function workerEarnings(db: Queryable, workerId: string, range: Range, currency: string, now = new Date()): Promise<WorkerEarnings> {
  const starts = periodStarts(now);
  const since = starts.week < starts.month ? starts.week : starts.month;
  // Named: prepared once per connection, so the planner's work over the partitions is not redone per call.
  // A worker has hour rows only (hasDayRows): an hour counts in the periods its start is in.
  const days = await db.query<{ bucket: Date; tips: bigint; volume: bigint; net: bigint; pool: bigint }>({
    name: "analytics.worker_period_hours",
    text: `SELECT bucket, sum(succeeded)::int8 AS tips, sum(amount_minor)::int8 AS volume, sum(net_minor)::int8 AS net,
            sum(pooled_minor)::int8 AS pool
       FROM analytics.rollups
      WHERE dim = ${Dim.Worker} AND id = $1 AND grain = 'h' AND bucket >= $2 AND currency = $3 AND (succeeded > 0 OR amount_minor <> 0 OR net_minor <> 0 OR pooled_minor <> 0)
      GROUP BY bucket`,
    values: [workerId, since, currency],
  });
  const e: WorkerEarnings = {
    today: zero(),
    week: zero(),
    month: zero(),
    inRange: zero(),
    byHour: Array.from({ length: 24 }, zero),
    byWeekday: Array.from({ length: 7 }, zero),
    averageTip: 0n,
    averageRatingX100: 0,
    ratings: [0n, 0n, 0n, 0n, 0n],
  };
  const add = (p: EarningsPeriod, r: { tips: bigint; volume: bigint; net: bigint; pool: bigint }) => {
    p.tips += r.tips;
    p.volume += r.volume;
    p.net += r.net;
    p.pool += r.pool;
  };
  for (const r of days.rows) {
    if (r.bucket >= starts.today) add(e.today, r);
    if (r.bucket >= starts.week) add(e.week, r);
    if (r.bucket >= starts.month) add(e.month, r);
  }
  const slots = await db.query<{ hour: number; weekday: number; tips: bigint; volume: bigint; net: bigint; pool: bigint; rating_sum: bigint; rating_count: bigint; r1: bigint; r2: bigint; r3: bigint; r4: bigint; r5: bigint }>({
    name: "analytics.worker_hours",
    text: `SELECT EXTRACT(HOUR FROM bucket AT TIME ZONE 'UTC' + interval '3 hours')::int AS hour,
            EXTRACT(ISODOW FROM bucket AT TIME ZONE 'UTC' + interval '3 hours')::int AS weekday,
            sum(succeeded)::int8 AS tips, sum(amount_minor)::int8 AS volume, sum(net_minor)::int8 AS net, sum(pooled_minor)::int8 AS pool,
            sum(rating_sum)::int8 AS rating_sum, sum(rating_count)::int8 AS rating_count,
            sum(rated_1)::int8 AS r1, sum(rated_2)::int8 AS r2, sum(rated_3)::int8 AS r3, sum(rated_4)::int8 AS r4, sum(rated_5)::int8 AS r5
       FROM analytics.rollups
      WHERE dim = ${Dim.Worker} AND id = $1 AND grain = 'h' AND bucket >= $2 AND bucket < $3 AND currency = $4 AND (succeeded > 0 OR amount_minor <> 0 OR net_minor <> 0 OR pooled_minor <> 0)
      GROUP BY 1, 2`,
    // The hours that start in the range, as totals reads them (not widened: an hour begun before
    // `from` counted tips made before it, so earnings and performance disagreed).
    values: [workerId, range.from, range.to, currency],
  });
  let ratingSum = 0n;
  let ratingCount = 0n;
  for (const r of slots.rows) {
    add(e.inRange, r);
    add(e.byHour[r.hour], r);
    add(e.byWeekday[r.weekday - 1], r);
    ratingSum += r.rating_sum;
    ratingCount += r.rating_count;
    [r.r1, r.r2, r.r3, r.r4, r.r5].forEach((n, i) => (e.ratings[i] += n));
  }
  e.averageTip = average(e.inRange.volume, e.inRange.tips);
  e.averageRatingX100 = ratingCount > 0n ? Number((ratingSum * 100n) / ratingCount) : 0;
  return e;
}

export interface Dashboard {
  tips: bigint;
  volume: bigint;
  attempted: bigint;
  successRateBps: number;
  scans: bigint;
  averageTip: bigint;
}

/** Today's figures (since midnight EAT) for a scope. */
export async function dashboard(db: Queryable, scope: Scope, currency: string, now = new Date()): Promise<Dashboard> {
  const today = dayOf(now);
  const t = await totals(db, scope, { from: today, to: new Date(today.getTime() + DAY_MS) }, currency);
  const attempted = t.succeeded + t.failed;
  return { tips: t.succeeded, volume: t.amount, attempted, successRateBps: bps(t.succeeded, attempted), scans: t.scans, averageTip: average(t.amount, t.succeeded) };
}

export interface CurrencyDashboard extends Dashboard {
  currency: string;
}

/**
 * Today's figures for a scope in every currency, in one read: KES first (always), then each other
 * currency with a tip that ended today (succeeded or failed), by code. Scans, of no currency, are in each.
 */
export async function dashboards(db: Queryable, scope: Scope, now = new Date()): Promise<CurrencyDashboard[]> {
  const day = { from: dayOf(now), to: new Date(dayOf(now).getTime() + DAY_MS) };
  const { rows } = await db.query<{ currency: string; succeeded: bigint; failed: bigint; amount: bigint; scans: bigint }>(
    `SELECT currency, sum(succeeded)::int8 AS succeeded, sum(failed)::int8 AS failed, sum(amount_minor)::int8 AS amount, sum(scans)::int8 AS scans
       FROM analytics.rollups
      WHERE dim = $1 AND id = $2 AND grain = $3 AND bucket >= $4 AND bucket < $5
      GROUP BY currency ORDER BY currency <> $6, currency LIMIT 50`,
    [scope.dim, scope.id, grainFor(day, scope.dim), day.from, day.to, HOME_CURRENCY],
  );
  const scans = rows.filter((r) => r.currency === "").reduce((n, r) => n + r.scans, 0n);
  const shown = rows.filter((r) => r.currency === HOME_CURRENCY || (r.currency !== "" && r.succeeded + r.failed > 0n));
  if (shown[0]?.currency !== HOME_CURRENCY) shown.unshift({ currency: HOME_CURRENCY, succeeded: 0n, failed: 0n, amount: 0n, scans: 0n });
  return shown.map((r) => {
    const attempted = r.succeeded + r.failed;
    return { currency: r.currency, tips: r.succeeded, volume: r.amount, attempted, successRateBps: bps(r.succeeded, attempted), scans: scans + r.scans, averageTip: average(r.amount, r.succeeded) };
  });
}

export interface SeriesPoint {
  start: Date;
  tips: bigint;
  volume: bigint;
  fees: bigint;
  payouts: bigint;
}

/**
 * The bucket expression for a period: hours are stored, and the platform's days (hasDayRows);
 * other days, and weeks and months, are the stored rows summed by the period they start in (EAT).
 * Day rows only for a range of whole days (grainFor): one starting at 03:00 would else drop its
 * first day's 21 hours and add 21 after its end.
 */
function periodSql(period: Period, dim: Dim, range: Range): { grain: "h" | "d"; expr: string } {
  const grain = period !== "hour" ? grainFor(range, dim) : "h";
  if (period === "hour" || (period === "day" && grain === "d")) return { grain, expr: "bucket" };
  return { grain, expr: `(date_trunc('${period}', bucket AT TIME ZONE 'UTC' + interval '3 hours') - interval '3 hours') AT TIME ZONE 'UTC'` };
}

/** Volume, fees, payouts and tips per period, oldest first. */
export async function series(db: Queryable, scope: Scope, range: Range, period: Period, currency: string): Promise<SeriesPoint[]> {
  const p = periodSql(period, scope.dim, range);
  const { rows } = await db.query<{ start: Date; tips: bigint; volume: bigint; fees: bigint; payouts: bigint }>(
    `SELECT ${p.expr} AS start, sum(succeeded)::int8 AS tips, sum(amount_minor)::int8 AS volume, sum(fee_minor)::int8 AS fees,
            sum(payout_minor)::int8 AS payouts
       FROM analytics.rollups
      WHERE dim = $1 AND id = $2 AND grain = $3 AND bucket >= $4 AND bucket < $5 AND currency = $6
        AND (succeeded > 0 OR amount_minor <> 0 OR payouts_succeeded > 0)
      GROUP BY 1 ORDER BY 1 LIMIT 9000`,
    [scope.dim, scope.id, p.grain, range.from, range.to, currency],
  );
  return rows;
}

export interface CurrencySeriesPoint extends SeriesPoint {
  currency: string;
}

/**
 * The series of every currency with figures in the range: one point per period and currency, by
 * period then currency. Amounts are never summed across currencies.
 */
export async function seriesByCurrency(db: Queryable, scope: Scope, range: Range, period: Period): Promise<CurrencySeriesPoint[]> {
  const p = periodSql(period, scope.dim, range);
  const { rows } = await db.query<CurrencySeriesPoint>(
    `SELECT ${p.expr} AS start, currency, sum(succeeded)::int8 AS tips, sum(amount_minor)::int8 AS volume, sum(fee_minor)::int8 AS fees,
            sum(payout_minor)::int8 AS payouts
       FROM analytics.rollups
      WHERE dim = $1 AND id = $2 AND grain = $3 AND bucket >= $4 AND bucket < $5 AND currency <> ''
        AND (succeeded > 0 OR amount_minor <> 0 OR payouts_succeeded > 0)
      GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 9000`,
    [scope.dim, scope.id, p.grain, range.from, range.to],
  );
  return rows;
}

export interface SuccessPoint {
  start: Date;
  method: string;
  attempted: bigint;
  succeeded: bigint;
  failuresByCode: Map<string, bigint>;
}

/** Ended tips per period and method, with failures by result code. */
export async function successRates(db: Queryable, scope: Scope, range: Range, period: Period): Promise<SuccessPoint[]> {
  const p = periodSql(period, scope.dim, range);
  const { rows } = await db.query<{ start: Date; method: string; result_code: string; succeeded: bigint; failed: bigint }>(
    `SELECT ${p.expr} AS start, method, result_code, sum(succeeded)::int8 AS succeeded, sum(failed)::int8 AS failed
       FROM analytics.rollups
      WHERE dim = $1 AND id = $2 AND grain = $3 AND bucket >= $4 AND bucket < $5 AND (succeeded > 0 OR failed > 0)
      GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
    [scope.dim, scope.id, p.grain, range.from, range.to],
  );
  const points = new Map<string, SuccessPoint>();
  for (const r of rows) {
    const k = `${r.start.getTime()}|${r.method}`;
    let pt = points.get(k);
    if (!pt) points.set(k, (pt = { start: r.start, method: r.method, attempted: 0n, succeeded: 0n, failuresByCode: new Map() }));
    pt.attempted += r.succeeded + r.failed;
    pt.succeeded += r.succeeded;
    if (r.failed > 0n) pt.failuresByCode.set(r.result_code, (pt.failuresByCode.get(r.result_code) ?? 0n) + r.failed);
  }
  return [...points.values()];
}

export interface Failure {
  resultCode: string;
  reason: string;
  count: bigint;
}

/** Failed tips by result code in a scope and range, most frequent first. */
export async function failures(db: Queryable, scope: Scope, range: Range): Promise<Failure[]> {
  const { rows } = await db.query<{ result_code: string; reason: string | null; count: bigint }>(
    `SELECT r.result_code, rr.reason, sum(r.failed)::int8 AS count
       FROM analytics.rollups r LEFT JOIN analytics.result_reasons rr USING (result_code)
      WHERE r.dim = $1 AND r.id = $2 AND r.grain = $3 AND r.bucket >= $4 AND r.bucket < $5 AND r.failed > 0
      GROUP BY r.result_code, rr.reason ORDER BY count DESC, r.result_code LIMIT ${MAX_LIST}`,
    [scope.dim, scope.id, grainFor(range, scope.dim), range.from, range.to],
  );
  return rows.map((r) => ({ resultCode: r.result_code, reason: r.reason ?? "", count: r.count }));
}

export interface FunnelStep {
  step: "scanned" | "amount_chosen" | "payment_started" | "paid";
  count: bigint;
}

/** scanned -> amount chosen (tip created) -> payment started (push reached the customer) -> paid. */
export async function funnel(db: Queryable, scope: Scope, range: Range, currency: string): Promise<FunnelStep[]> {
  const t = await totals(db, scope, range, currency);
  return [
    { step: "scanned", count: t.scans },
    { step: "amount_chosen", count: t.created },
    { step: "payment_started", count: t.created - t.pushRefused },
    { step: "paid", count: t.succeeded },
  ];
}

export interface MemberFigures {
  id: string;
  scans: bigint;
  tips: bigint;
  volume: bigint;
  ratingSum: bigint;
  ratingCount: bigint;
}

/** A venue's staff (dim VenueStaff) or codes (dim VenueCode), most volume first, at most `limit`. */
export async function venueMembers(db: Queryable, venueId: string, dim: Dim.VenueStaff | Dim.VenueCode, range: Range, currency: string, limit = MAX_LIST): Promise<MemberFigures[]> {
  const { rows } = await db.query<{ sub: string; scans: bigint; tips: bigint; volume: bigint; rating_sum: bigint; rating_count: bigint }>(
    `SELECT sub, sum(scans)::int8 AS scans, sum(succeeded)::int8 AS tips, sum(amount_minor)::int8 AS volume,
            sum(rating_sum)::int8 AS rating_sum, sum(rating_count)::int8 AS rating_count
       FROM analytics.rollups
      WHERE dim = $1 AND id = $2 AND grain = $3 AND bucket >= $4 AND bucket < $5 AND ${CURRENCY.replace("$5", "$6")}
      GROUP BY sub ORDER BY volume DESC, sub LIMIT $7`,
    [dim, venueId, grainFor(range, dim), range.from, range.to, currency, limit],
  );
  return rows.map((r) => ({ id: r.sub, scans: r.scans, tips: r.tips, volume: r.volume, ratingSum: r.rating_sum, ratingCount: r.rating_count }));
}

export interface CurrencyMemberFigures extends MemberFigures {
  currency: string;
}

/**
 * Every worker's figures over a range, a row per worker and currency (the admin's WORKERS report):
 * KES first, then the other currencies by code, most volume first within each; never summed across currencies.
 */
export async function topWorkersByCurrency(db: Queryable, range: Range, limit = MAX_LIST): Promise<CurrencyMemberFigures[]> {
  const { rows } = await db.query<{ id: string; currency: string; tips: bigint; volume: bigint; rating_sum: bigint; rating_count: bigint }>(
    `SELECT id, currency, sum(succeeded)::int8 AS tips, sum(amount_minor)::int8 AS volume, sum(rating_sum)::int8 AS rating_sum, sum(rating_count)::int8 AS rating_count
       FROM analytics.rollups
      WHERE dim = ${Dim.Worker} AND grain = $1 AND bucket >= $2 AND bucket < $3 AND currency <> '' AND (succeeded > 0 OR amount_minor <> 0)
      GROUP BY id, currency ORDER BY currency <> $5, currency, volume DESC, id LIMIT $4`,
    [grainFor(range, Dim.Worker), range.from, range.to, limit, HOME_CURRENCY],
  );
  return rows.map((r) => ({ id: r.id, currency: r.currency, scans: 0n, tips: r.tips, volume: r.volume, ratingSum: r.rating_sum, ratingCount: r.rating_count }));
}

export interface PlatformSummary {
  totals: Totals;
  attempts: bigint;
  takeRateBps: number;
  successRateBps: number;
  failures: Failure[];
  payoutLatencyP50Ms: bigint;
  payoutLatencyP95Ms: bigint;
  newWorkers: bigint;
  activeVenues: bigint;
  activeWorkers: bigint;
  smsSent: bigint;
  smsSpend: bigint;
  refunded: bigint;
  chargedBack: bigint;
}

export async function platformSummary(db: Queryable, range: Range, currency: string, smsPriceMinor: bigint): Promise<PlatformSummary> {
  const grain = grainFor(range, Dim.Platform);
  const t = await totals(db, platformScope, range, currency, grain);
  const extra = await db.query<{ new_workers: bigint; sms_sent: bigint }>(
    `SELECT COALESCE(sum(registrations) FILTER (WHERE method = 'worker'), 0)::int8 AS new_workers,
            COALESCE(sum(notifications) FILTER (WHERE method = 'sms' AND result_code = 'sent'), 0)::int8 AS sms_sent
       FROM analytics.rollups WHERE dim = ${Dim.Platform} AND id = $1 AND grain = $2 AND bucket >= $3 AND bucket < $4`,
    [NIL, grain, range.from, range.to],
  );
  const active = await db.query<{ dim: number; n: bigint }>(
    `SELECT dim, count(DISTINCT id)::int8 AS n FROM analytics.rollups
      WHERE dim IN (${Dim.Worker}, ${Dim.Venue}) AND grain = 'h' AND bucket >= $1 AND bucket < $2 AND succeeded > 0
      GROUP BY dim`,
    [range.from, range.to],
  );
  // What went back to cards (the reversals' rows, their amounts taken off the tips'): refunds less those refused, and chargebacks.
  const reversed = await db.query<{ refunded: bigint; charged_back: bigint }>(
    `SELECT COALESCE(-sum(amount_minor) FILTER (WHERE result_code IN ($5, $6)), 0)::int8 AS refunded,
            COALESCE(-sum(amount_minor) FILTER (WHERE result_code = $7), 0)::int8 AS charged_back
       FROM analytics.rollups WHERE dim = ${Dim.Platform} AND id = $1 AND grain = $2 AND bucket >= $3 AND bucket < $4 AND currency = $8
        AND result_code IN ($5, $6, $7)`,
    [NIL, grain, range.from, range.to, reversalCode(TipReversalKind.REFUND), reversalCode(TipReversalKind.REFUND_REFUSED), reversalCode(TipReversalKind.CHARGEBACK), currency],
  );
  const latency = await db.query<{ p50: number | null; p95: number | null }>(
    `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95
       FROM (SELECT EXTRACT(EPOCH FROM r.completed_at - q.requested_at) * 1000 AS ms
               FROM analytics.payout_results r JOIN analytics.payout_requests q USING (payout_id)
              WHERE r.completed_at >= $1 AND r.completed_at < $2) l`,
    [range.from, range.to],
  );
  const attempts = t.succeeded + t.failed;
  const smsSent = extra.rows[0].sms_sent;
  return {
    totals: t,
    attempts,
    takeRateBps: bps(t.fee, t.amount),
    successRateBps: bps(t.succeeded, attempts),
    failures: await failures(db, platformScope, range),
    payoutLatencyP50Ms: BigInt(Math.round(latency.rows[0].p50 ?? 0)),
    payoutLatencyP95Ms: BigInt(Math.round(latency.rows[0].p95 ?? 0)),
    newWorkers: extra.rows[0].new_workers,
    activeVenues: active.rows.find((r) => r.dim === Dim.Venue)?.n ?? 0n,
    activeWorkers: active.rows.find((r) => r.dim === Dim.Worker)?.n ?? 0n,
    smsSent,
    smsSpend: smsSent * smsPriceMinor,
    refunded: reversed.rows[0].refunded,
    chargedBack: reversed.rows[0].charged_back,
  };
}

export interface PayoutLine {
  payout_id: string;
  worker_id: string | null;
  succeeded: boolean;
  result_code: string;
  currency: string;
  amount_minor: bigint;
  requested_at: Date | null;
  completed_at: Date;
}

/** Payouts that ended in the range, oldest first (the PAYOUTS report). */
export async function payouts(db: Queryable, range: Range, limit: number): Promise<PayoutLine[]> {
  const { rows } = await db.query<PayoutLine>(
    `SELECT r.payout_id, r.worker_id, r.succeeded, r.result_code, r.currency, r.amount_minor, q.requested_at, r.completed_at
       FROM analytics.payout_results r LEFT JOIN analytics.payout_requests q USING (payout_id)
      WHERE r.completed_at >= $1 AND r.completed_at < $2 ORDER BY r.completed_at, r.payout_id LIMIT $3`,
    [range.from, range.to, limit],
  );
  return rows;
}
