// The RPCs: who may see what, then one query per screen and its proto shape.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  DashboardSnapshotSchema,
  Granularity,
  ReportKind,
  type DashboardSnapshot,
  type WorkerEarnings as WorkerEarningsMessage,
  type PlatformSummary as PlatformSummaryMessage,
  WorkerEarningsSchema,
  PlatformSummarySchema,
} from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsAdminService, AnalyticsService, GetVenueAnalyticsResponseSchema, type GetVenueAnalyticsResponse } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { callerHeaders, DependencyUnavailableError, fieldError, PermissionDeniedError, requireCaller, type Principal, type Role, type ServiceContext } from "@ttip/runtime";
import { toCsv, type Cell } from "./csv.js";
import { Dim } from "./facts.js";
import { rollupChanges } from "./ingest.js";
import * as q from "./queries.js";

export interface AnalyticsConfig {
  /** What one SMS costs the platform, in minor units of `smsCurrency` (for SMS spend). */
  smsPriceMinor: bigint;
  smsCurrency: string;
  /** How often a live dashboard re-reads when nothing in this process signalled a change. */
  livePollMs: number;
  /** A live stream ends after this long; clients reconnect (no stream holds a slot forever). */
  liveMaxMs: number;
}

export const DEFAULT_CONFIG: AnalyticsConfig = { smsPriceMinor: 80n, smsCurrency: "KES", livePollMs: 2_000, liveMaxMs: 3_600_000 };

const money = (amountMinor: bigint, currency: string) => ({ amountMinor, currency });

function rangeOf(r: { from?: Timestamp; to?: Timestamp } | undefined): q.Range {
  // protovalidate has checked presence, order and the 366-day limit.
  return { from: timestampDate(r!.from!), to: timestampDate(r!.to!) };
}

const PERIODS: Record<number, q.Period> = {
  [Granularity.HOUR]: "hour",
  [Granularity.DAY]: "day",
  [Granularity.WEEK]: "week",
  [Granularity.MONTH]: "month",
};

function periodOf(g: Granularity, range: q.Range): q.Period {
  const p = PERIODS[g];
  // Hourly series over a long range would be thousands of points per call.
  if (p === "hour" && range.to.getTime() - range.from.getTime() > 31 * 24 * 3_600_000) {
    throw fieldError("granularity", "hourly figures are served for ranges of at most 31 days");
  }
  return p;
}

/** Access rules. The gateway lets only signed-in callers in; each figure's owner is checked here. */
export class Access {
  constructor(private readonly ctx: ServiceContext) {}

  /** Admin may see anything; a worker their own; a venue manager their staff (qr decides who manages whom). */
  async worker(hc: HandlerContext, requested: string): Promise<{ caller: Principal; workerId: string }> {
    const caller = requireCaller(hc);
    const workerId = requested || caller.subject;
    if (workerId !== caller.subject && !caller.roles.includes("admin")) await this.askQr(caller, workerId, "worker_id");
    return { caller, workerId };
  }

  async venue(hc: HandlerContext, venueId: string): Promise<Principal> {
    const caller = requireCaller(hc);
    if (caller.roles.includes("admin")) return caller;
    if (!caller.roles.includes("venue_manager")) throw new PermissionDeniedError("venue_id: only a manager of the venue or an admin may see its figures");
    await this.askQr(caller, venueId, "venue_id");
    return caller;
  }

  async qrCode(hc: HandlerContext, qrCodeId: string): Promise<void> {
    const caller = requireCaller(hc);
    if (caller.roles.includes("admin")) return;
    await this.ask(caller, "qr_code_id", (c, headers) => c.getQrCode({ qrCodeId }, { headers }));
  }

  /** qr owns who manages what: its own statistics call applies the same rule (owner, venue manager, admin). */
  private askQr(caller: Principal, ownerId: string, field: string): Promise<void> {
    const to = new Date();
    return this.ask(caller, field, (c, headers) =>
      c.getScanStats({ ownerId, from: timestampFromDate(new Date(to.getTime() - 1_000)), to: timestampFromDate(to) }, { headers }),
    );
  }

  private async ask(
    caller: Principal,
    field: string,
    call: (c: ReturnType<typeof createClient<typeof QrService>>, headers: Record<string, string>) => Promise<unknown>,
  ): Promise<void> {
    const client = createClient(QrService, this.ctx.peers("qr"));
    try {
      await call(client, callerHeaders(caller.subject, ...(caller.roles as Role[])));
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.PermissionDenied || e.code === Code.NotFound) {
        throw new PermissionDeniedError(`${field}: you may only see your own figures or those of venues you manage`);
      }
      throw new DependencyUnavailableError(`checking access with the qr service failed: ${e.rawMessage}`);
    }
  }
}

function snapshotOf(d: q.Dashboard, currency: string, at: Date): DashboardSnapshot {
  return create(DashboardSnapshotSchema, {
    tipsToday: d.tips,
    volumeToday: money(d.volume, currency),
    successRateBps: d.successRateBps,
    scansToday: d.scans,
    averageTip: money(d.averageTip, currency),
    asOf: timestampFromDate(at),
  });
}

const sameSnapshot = (a: DashboardSnapshot, b: DashboardSnapshot) =>
  a.tipsToday === b.tipsToday && a.volumeToday?.amountMinor === b.volumeToday?.amountMinor && a.successRateBps === b.successRateBps && a.scansToday === b.scansToday;

/** Today's figures now, then each time they change, until the caller leaves or the stream's time is up. */
async function* live(ctx: ServiceContext, cfg: AnalyticsConfig, scope: q.Scope, signal: AbortSignal): AsyncGenerator<DashboardSnapshot> {
  const currency = "KES";
  const endAt = Date.now() + cfg.liveMaxMs;
  let last = snapshotOf(await q.dashboard(ctx.pool, scope, currency), currency, new Date());
  yield last;
  while (!signal.aborted && Date.now() < endAt) {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        rollupChanges.off("change", done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, cfg.livePollMs);
      rollupChanges.on("change", done);
      signal.addEventListener("abort", done);
    });
    if (signal.aborted) return;
    const next = snapshotOf(await q.dashboard(ctx.pool, scope, currency), currency, new Date());
    if (!sameSnapshot(last, next)) yield (last = next);
  }
}

type EarningsInit = MessageInitShape<typeof WorkerEarningsSchema>;

export function earningsMessage(workerId: string, e: q.WorkerEarnings, currency: string): WorkerEarningsMessage {
  const period = (p: q.EarningsPeriod) => ({ tips: p.tips, volume: money(p.volume, currency), net: money(p.net, currency), poolShare: money(p.pool, currency) });
  const init: EarningsInit = {
    workerId,
    today: period(e.today),
    thisWeek: period(e.week),
    thisMonth: period(e.month),
    inRange: period(e.inRange),
    byHourOfDay: e.byHour.map((p, hour) => ({ hour, tips: p.tips, volume: money(p.volume, currency) })),
    byWeekday: e.byWeekday.map((p, i) => ({ weekday: i + 1, tips: p.tips, volume: money(p.volume, currency) })),
    averageTip: money(e.averageTip, currency),
    averageRatingX100: e.averageRatingX100,
    ratings: e.ratings.map((count, i) => ({ stars: i + 1, count })),
  };
  return create(WorkerEarningsSchema, init);
}

export function summaryMessage(s: q.PlatformSummary, currency: string, smsCurrency: string): PlatformSummaryMessage {
  return create(PlatformSummarySchema, {
    tips: s.totals.succeeded,
    attempts: s.attempts,
    volume: money(s.totals.amount, currency),
    fees: money(s.totals.fee, currency),
    takeRateBps: s.takeRateBps,
    successRateBps: s.successRateBps,
    failures: s.failures,
    payoutsSucceeded: s.totals.payoutsSucceeded,
    payoutsFailed: s.totals.payoutsFailed,
    payouts: money(s.totals.payout, currency),
    payoutLatencyP50Ms: s.payoutLatencyP50Ms,
    payoutLatencyP95Ms: s.payoutLatencyP95Ms,
    newWorkers: s.newWorkers,
    activeVenues: s.activeVenues,
    activeWorkers: s.activeWorkers,
    scans: s.totals.scans,
    smsSent: s.smsSent,
    smsSpend: money(s.smsSpend, smsCurrency),
    poolsDistributed: money(s.totals.pooled, currency),
  });
}

const memberPerformance = (m: q.MemberFigures, currency: string) => ({
  workerId: m.id,
  tips: m.tips,
  volume: money(m.volume, currency),
  averageTip: money(q.average(m.volume, m.tips), currency),
  averageRatingX100: m.ratingCount > 0n ? Number((m.ratingSum * 100n) / m.ratingCount) : 0,
});

const funnelSteps = (steps: q.FunnelStep[]) =>
  steps.map((s) => ({ step: s.step, count: s.count, ofFirstBps: q.bps(s.count, steps[0].count) }));

/** Everything a venue manager's screen shows. */
export async function venueView(ctx: ServiceContext, venueId: string, range: q.Range, period: q.Period, currency: string): Promise<MessageInitShape<typeof GetVenueAnalyticsResponseSchema>> {
  const scope = { dim: Dim.Venue, id: venueId };
  const [points, staff, codes, steps, fails] = await Promise.all([
    q.series(ctx.pool, scope, range, period, currency),
    q.venueMembers(ctx.pool, venueId, Dim.VenueStaff, range, currency),
    q.venueMembers(ctx.pool, venueId, Dim.VenueCode, range, currency),
    q.funnel(ctx.pool, scope, range, currency),
    q.failures(ctx.pool, scope, range),
  ]);
  return {
    series: points.map((p) => ({ periodStart: timestampFromDate(p.start), tipVolume: money(p.volume, currency), platformFees: money(p.fees, currency), payouts: money(p.payouts, currency), tips: p.tips })),
    workers: staff.filter((m) => m.tips > 0n).map((m) => memberPerformance(m, currency)),
    codes: codes.map((c) => ({ qrCodeId: c.id, scans: c.scans, tips: c.tips, volume: money(c.volume, currency) })),
    funnel: funnelSteps(steps),
    failures: fails,
  };
}

const amount = (minor: bigint) => minor;

export function earningsCsv(e: WorkerEarningsMessage): Uint8Array {
  const rows: Cell[][] = [];
  const cur = e.today?.volume?.currency ?? "KES";
  for (const [k, p] of [["today", e.today], ["this_week", e.thisWeek], ["this_month", e.thisMonth], ["in_range", e.inRange]] as const) {
    rows.push(["period", k, p?.tips, amount(p?.volume?.amountMinor ?? 0n), amount(p?.net?.amountMinor ?? 0n), cur, amount(p?.poolShare?.amountMinor ?? 0n)]);
  }
  for (const h of e.byHourOfDay) rows.push(["hour_of_day", h.hour, h.tips, h.volume?.amountMinor, "", cur]);
  for (const w of e.byWeekday) rows.push(["weekday", w.weekday, w.tips, w.volume?.amountMinor, "", cur]);
  for (const r of e.ratings) rows.push(["rating", r.stars, r.count, "", "", ""]);
  rows.push(["average_tip", "", "", e.averageTip?.amountMinor, "", cur]);
  rows.push(["average_rating_x100", "", e.averageRatingX100, "", "", ""]);
  return toCsv(["section", "key", "tips", "volume_minor", "net_minor", "currency", "pool_share_minor"], rows);
}

export function venueCsv(v: GetVenueAnalyticsResponse): Uint8Array {
  const rows: Cell[][] = [];
  for (const p of v.series) rows.push(["series", timestampDate(p.periodStart!).toISOString(), p.tips, p.tipVolume?.amountMinor, p.platformFees?.amountMinor, ""]);
  for (const w of v.workers) rows.push(["staff", w.workerId, w.tips, w.volume?.amountMinor, w.averageTip?.amountMinor, w.averageRatingX100]);
  for (const c of v.codes) rows.push(["qr_code", c.qrCodeId, c.tips, c.volume?.amountMinor, "", c.scans]);
  for (const f of v.funnel) rows.push(["funnel", f.step, f.count, "", "", f.ofFirstBps]);
  for (const f of v.failures) rows.push(["failure", f.resultCode, f.count, "", "", f.reason]);
  return toCsv(["section", "key", "tips_or_count", "volume_minor", "fees_or_average_minor", "extra"], rows);
}

const stamp = (r: q.Range) => `${r.from.toISOString().slice(0, 10)}_${r.to.toISOString().slice(0, 10)}`;

/** What every analytics handler shares: the service, its configuration and the access checks. */
interface AnalyticsHandlerContext {
  ctx: ServiceContext;
  cfg: AnalyticsConfig;
  access: Access;
}

/** Every RPC of the analytics services, one factory per RPC below. */
export function routes(router: ConnectRouter, ctx: ServiceContext, cfg: AnalyticsConfig): void {
  const h: AnalyticsHandlerContext = { ctx, cfg, access: new Access(ctx) };

  router.service(AnalyticsService, {
    watchDashboard: watchDashboardHandler(h),
    getWorkerPerformance: getWorkerPerformanceHandler(h),
    getVenueAnalytics: getVenueAnalyticsHandler(h),
    getFunnel: getFunnelHandler(h),
    getWorkerEarnings: getWorkerEarningsHandler(h),
    exportEarnings: exportEarningsHandler(h),
  });

  router.service(AnalyticsAdminService, {
    watchPlatformDashboard: watchPlatformDashboardHandler(h),
    getRevenueMetrics: getRevenueMetricsHandler(h),
    getPaymentSuccessRates: getPaymentSuccessRatesHandler(h),
    getPlatformSummary: getPlatformSummaryHandler(h),
    exportReport: exportReportHandler(h),
  });
}

function watchDashboardHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["watchDashboard"] {
  const { ctx, cfg, access } = h;
  return async function* (req, hc) {
    let scope: q.Scope;
    if (req.venueId) {
      await access.venue(hc, req.venueId);
      scope = { dim: Dim.Venue, id: req.venueId };
    } else {
      const { workerId } = await access.worker(hc, "");
      scope = { dim: Dim.Worker, id: workerId };
    }
    for await (const snapshot of live(ctx, cfg, scope, hc.signal)) yield { snapshot };
  };
}

function getWorkerPerformanceHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["getWorkerPerformance"] {
  const { ctx, access } = h;
  return async function (req, hc) {
    const { workerId } = await access.worker(hc, req.workerId);
    const range = rangeOf(req.range);
    const t = await q.totals(ctx.pool, { dim: Dim.Worker, id: workerId }, range, "KES");
    return {
      performance: memberPerformance({ id: workerId, scans: t.scans, tips: t.succeeded, volume: t.amount, ratingSum: t.ratingSum, ratingCount: t.ratingCount }, "KES"),
    };
  };
}

function getVenueAnalyticsHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["getVenueAnalytics"] {
  const { ctx, access } = h;
  return async function (req, hc) {
    await access.venue(hc, req.venueId);
    const range = rangeOf(req.range);
    return venueView(ctx, req.venueId, range, periodOf(req.granularity, range), "KES");
  };
}

function getFunnelHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["getFunnel"] {
  const { ctx, access } = h;
  return async function (req, hc) {
    const range = rangeOf(req.range);
    let scope: q.Scope;
    switch (req.scope.case) {
      case "workerId":
        scope = { dim: Dim.Worker, id: (await access.worker(hc, req.scope.value)).workerId };
        break;
      case "venueId":
        await access.venue(hc, req.scope.value);
        scope = { dim: Dim.Venue, id: req.scope.value };
        break;
      case "qrCodeId":
        await access.qrCode(hc, req.scope.value);
        scope = { dim: Dim.QrCode, id: req.scope.value };
        break;
      default:
        throw fieldError("scope", "name a qr_code_id, worker_id or venue_id");
    }
    const [steps, fails] = await Promise.all([q.funnel(ctx.pool, scope, range, "KES"), q.failures(ctx.pool, scope, range)]);
    return { steps: funnelSteps(steps), failures: fails };
  };
}

function getWorkerEarningsHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["getWorkerEarnings"] {
  const { ctx, access } = h;
  return async function (req, hc) {
    const { workerId } = await access.worker(hc, req.workerId);
    const currency = req.currency || "KES";
    return { earnings: earningsMessage(workerId, await q.workerEarnings(ctx.pool, workerId, rangeOf(req.range), currency), currency) };
  };
}

function exportEarningsHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["exportEarnings"] {
  const { ctx, access } = h;
  return async function (req, hc) {
    const range = rangeOf(req.range);
    if (req.scope.case === "workerId") {
      const { workerId } = await access.worker(hc, req.scope.value);
      const e = earningsMessage(workerId, await q.workerEarnings(ctx.pool, workerId, range, "KES"), "KES");
      return { csv: earningsCsv(e), fileName: `ttip-earnings-${workerId.slice(0, 8)}-${stamp(range)}.csv` };
    }
    if (req.scope.case === "venueId") {
      await access.venue(hc, req.scope.value);
      const v = create(GetVenueAnalyticsResponseSchema, await venueView(ctx, req.scope.value, range, "day", "KES"));
      return { csv: venueCsv(v), fileName: `ttip-venue-${req.scope.value.slice(0, 8)}-${stamp(range)}.csv` };
    }
    throw fieldError("scope", "name a worker_id or venue_id");
  };
}

function watchPlatformDashboardHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsAdminService>["watchPlatformDashboard"] {
  const { ctx, cfg } = h;
  return async function* (_req, hc) {
    for await (const snapshot of live(ctx, cfg, q.platformScope, hc.signal)) yield { snapshot };
  };
}

function getRevenueMetricsHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsAdminService>["getRevenueMetrics"] {
  const { ctx } = h;
  return async function (req) {
    const range = rangeOf(req.range);
    const points = await q.series(ctx.pool, q.platformScope, range, periodOf(req.granularity, range), req.currency);
    return {
      series: points.map((p) => ({
        periodStart: timestampFromDate(p.start),
        tipVolume: money(p.volume, req.currency),
        platformFees: money(p.fees, req.currency),
        payouts: money(p.payouts, req.currency),
        tips: p.tips,
      })),
    };
  };
}

function getPaymentSuccessRatesHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsAdminService>["getPaymentSuccessRates"] {
  const { ctx } = h;
  return async function (req) {
    const range = rangeOf(req.range);
    const points = await q.successRates(ctx.pool, q.platformScope, range, periodOf(req.granularity, range));
    return {
      series: points.map((p) => ({
        periodStart: timestampFromDate(p.start),
        method: p.method,
        attempted: p.attempted,
        succeeded: p.succeeded,
        successRateBps: q.bps(p.succeeded, p.attempted),
        failuresByCode: Object.fromEntries(p.failuresByCode),
      })),
    };
  };
}

function getPlatformSummaryHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsAdminService>["getPlatformSummary"] {
  const { ctx, cfg } = h;
  return async function (req) {
    const currency = req.currency || "KES";
    const s = await q.platformSummary(ctx.pool, rangeOf(req.range), currency, cfg.smsPriceMinor);
    return { summary: summaryMessage(s, currency, cfg.smsCurrency) };
  };
}

function exportReportHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsAdminService>["exportReport"] {
  const { ctx, cfg } = h;
  return async function (req) {
    const range = rangeOf(req.range);
    const name = (kind: string) => `ttip-${kind}-${stamp(range)}.csv`;
    switch (req.kind) {
      case ReportKind.REVENUE: {
        const points = await q.series(ctx.pool, q.platformScope, range, "day", "KES");
        return {
          csv: toCsv(["period_start", "tips", "tip_volume_minor", "platform_fees_minor", "payouts_minor", "currency"], points.map((p) => [p.start, p.tips, p.volume, p.fees, p.payouts, "KES"])),
          fileName: name("revenue"),
        };
      }
      case ReportKind.TIPS: {
        const points = await q.successRates(ctx.pool, q.platformScope, range, "day");
        return {
          csv: toCsv(
            ["period_start", "method", "attempted", "succeeded", "success_rate_bps", "failures_by_code"],
            points.map((p) => [p.start, p.method, p.attempted, p.succeeded, q.bps(p.succeeded, p.attempted), [...p.failuresByCode].map(([c, n]) => `${c}:${n}`).join(" ")]),
          ),
          fileName: name("tips"),
        };
      }
      case ReportKind.PAYOUTS: {
        const lines = await q.payouts(ctx.pool, range);
        return {
          csv: toCsv(
            ["payout_id", "worker_id", "status", "result_code", "amount_minor", "currency", "requested_at", "completed_at", "latency_ms"],
            lines.map((l) => [l.payout_id, l.worker_id, l.succeeded ? "succeeded" : "failed", l.result_code, l.amount_minor, l.currency, l.requested_at, l.completed_at,
              l.requested_at ? l.completed_at.getTime() - l.requested_at.getTime() : ""]),
          ),
          fileName: name("payouts"),
        };
      }
      case ReportKind.WORKERS: {
        const workers = await q.topWorkers(ctx.pool, range, "KES", 10_000);
        return {
          csv: toCsv(
            ["worker_id", "tips", "volume_minor", "average_tip_minor", "average_rating_x100", "currency"],
            workers.map((w) => {
              const p = memberPerformance(w, "KES");
              return [w.id, w.tips, w.volume, p.averageTip.amountMinor, p.averageRatingX100, "KES"];
            }),
          ),
          fileName: name("workers"),
        };
      }
      case ReportKind.PLATFORM: {
        const s = summaryMessage(await q.platformSummary(ctx.pool, range, "KES", cfg.smsPriceMinor), "KES", cfg.smsCurrency);
        const rows: Cell[][] = [
          ["tips", s.tips], ["attempts", s.attempts], ["volume_minor", s.volume?.amountMinor], ["fees_minor", s.fees?.amountMinor],
          ["take_rate_bps", s.takeRateBps], ["success_rate_bps", s.successRateBps], ["payouts_succeeded", s.payoutsSucceeded],
          ["payouts_failed", s.payoutsFailed], ["payouts_minor", s.payouts?.amountMinor], ["payout_latency_p50_ms", s.payoutLatencyP50Ms],
          ["payout_latency_p95_ms", s.payoutLatencyP95Ms], ["new_workers", s.newWorkers], ["active_venues", s.activeVenues],
          ["active_workers", s.activeWorkers], ["scans", s.scans], ["sms_sent", s.smsSent], ["sms_spend_minor", s.smsSpend?.amountMinor],
          ["pools_distributed_minor", s.poolsDistributed?.amountMinor],
          ...s.failures.map((f) => [`failures:${f.resultCode}`, f.count, f.reason]),
        ];
        return { csv: toCsv(["figure", "value", "detail"], rows), fileName: name("platform") };
      }
      default:
        throw fieldError("kind", "choose a report");
    }
  };
}
