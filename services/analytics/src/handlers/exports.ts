import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { ReportKind, type PlatformSummary as PlatformSummaryMessage, type WorkerEarnings as WorkerEarningsMessage } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsAdminService, AnalyticsService, GetVenueAnalyticsResponseSchema, type GetVenueAnalyticsResponse } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { fieldError, nairobiDay } from "@ttip/runtime";
import { toCsv, type Cell } from "../csv.js";
import { Dim } from "../facts.js";
import * as q from "../queries.js";
import type { AnalyticsAreaHandlers, AnalyticsHandlerContext } from "./context.js";
import { earningsMessage, memberPerformance, summaryMessage, venueView } from "./messages.js";
import { rangeOf } from "./values.js";

/** CSV exports: a worker's earnings, a venue's figures, and the admins' reports. */
export function exportHandlers(h: AnalyticsHandlerContext): AnalyticsAreaHandlers {
  return {
    public: {
      exportEarnings: exportEarningsHandler(h),
    },
    admin: {
      exportReport: exportReportHandler(h),
    },
  };
}

function exportEarningsHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["exportEarnings"] {
  const { ctx, access } = h;
  return async function (req, hc) {
    const range = rangeOf(req.range);
    if (req.scope.case === "workerId") {
      const { workerId } = await access.worker(hc, req.scope.value);
      const currencies = await q.currenciesOf(ctx.pool, { dim: Dim.Worker, id: workerId }, earningsWindow(range, new Date()));
      const all = await Promise.all(currencies.map(async (c) => earningsMessage(workerId, await q.workerEarnings(ctx.pool, workerId, range, c), c)));
      return { csv: earningsCsv(all), fileName: `ttip-earnings-${workerId.slice(0, 8)}-${stamp(range)}.csv` };
    }
    if (req.scope.case === "venueId") {
      const venueId = req.scope.value;
      await access.venue(hc, venueId);
      const currencies = await q.currenciesOf(ctx.pool, { dim: Dim.Venue, id: venueId }, range);
      const views = await Promise.all(currencies.map(async (currency) => {
        const view = create(GetVenueAnalyticsResponseSchema, await venueView(ctx, venueId, range, "day", currency, VENUE_REPORT_MEMBERS + 1));
        // Before, the screen's 500 with the most volume: a venue with a code per table lost the rest without a word.
        whole("venue's codes", view.codes, VENUE_REPORT_MEMBERS);
        whole("venue's staff", view.workers, VENUE_REPORT_MEMBERS);
        return { currency, view };
      }));
      return { csv: venueCsv(views), fileName: `ttip-venue-${venueId.slice(0, 8)}-${stamp(range)}.csv` };
    }
    throw fieldError("scope", "name a worker_id or venue_id");
  };
}

function exportReportHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsAdminService>["exportReport"] {
  const { ctx, cfg } = h;
  return async function (req) {
    const range = rangeOf(req.range);
    const name = (kind: string) => `ttip-${kind}-${stamp(range)}.csv`;
    switch (req.kind) {
      case ReportKind.REVENUE: {
        // Every currency in one file, a row per day and currency: a books' export must not drop card tips.
        const points = await q.seriesByCurrency(ctx.pool, q.platformScope, range, "day");
        return {
          csv: toCsv(["period_start", "tips", "tip_volume_minor", "platform_fees_minor", "payouts_minor", "currency"], points.map((p) => [p.start, p.tips, p.volume, p.fees, p.payouts, p.currency])),
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
        const lines = whole("PAYOUTS", await q.payouts(ctx.pool, range, PAYOUTS_REPORT_ROWS + 1), PAYOUTS_REPORT_ROWS);
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
        // A row per worker and currency: a worker tipped in KES and USD has two, never one summed.
        const workers = whole("WORKERS", await q.topWorkersByCurrency(ctx.pool, range, WORKERS_REPORT_ROWS + 1), WORKERS_REPORT_ROWS);
        return {
          csv: toCsv(
            ["worker_id", "tips", "volume_minor", "average_tip_minor", "average_rating_x100", "currency"],
            workers.map((w) => {
              const p = memberPerformance(w, w.currency);
              return [w.id, w.tips, w.volume, p.averageTip.amountMinor, p.averageRatingX100, w.currency];
            }),
          ),
          fileName: name("workers"),
        };
      }
      case ReportKind.PLATFORM: {
        const currencies = await q.currenciesOf(ctx.pool, q.platformScope, range);
        const summaries = await Promise.all(currencies.map(async (c) => summaryMessage(await q.platformSummary(ctx.pool, range, c, cfg.smsPriceMinor), c, cfg.smsCurrency)));
        return { csv: platformCsv(summaries), fileName: name("platform") };
      }
      default:
        throw fieldError("kind", "choose a report");
    }
  };
}

/** Rows a report holds at most (a file one answer carries); a range with more is refused, never cut short. */
const WORKERS_REPORT_ROWS = 10_000;
const PAYOUTS_REPORT_ROWS = 100_000;
/** A venue's staff, and its codes, in one export at most. */
const VENUE_REPORT_MEMBERS = 10_000;

/** The rows, read with one more than `max`: all of them, or a refusal naming the range. */
function whole<T>(kind: string, rows: T[], max: number): T[] {
  if (rows.length > max) throw fieldError("range", `the ${kind} report holds at most ${max.toLocaleString("en")} rows and this range has more: narrow it`);
  return rows;
}

const amount = (minor: bigint) => minor;

/**
 * The platform's figures, each currency's money figures in rows of their own (KES first), the
 * currency column saying which; figures of no currency (payout latency, growth, scans, SMS, failure
 * counts) once, after them.
 */
export function platformCsv(all: PlatformSummaryMessage[]): Uint8Array {
  const rows: Cell[][] = [];
  for (const s of all) {
    const cur = s.volume?.currency ?? "";
    rows.push(
      ["tips", s.tips, "", cur], ["attempts", s.attempts, "", cur], ["volume_minor", s.volume?.amountMinor, "", cur], ["fees_minor", s.fees?.amountMinor, "", cur],
      ["take_rate_bps", s.takeRateBps, "", cur], ["success_rate_bps", s.successRateBps, "", cur], ["payouts_succeeded", s.payoutsSucceeded, "", cur],
      ["payouts_failed", s.payoutsFailed, "", cur], ["payouts_minor", s.payouts?.amountMinor, "", cur], ["pools_distributed_minor", s.poolsDistributed?.amountMinor, "", cur],
      ["refunded_minor", s.refunded?.amountMinor, "", cur], ["charged_back_minor", s.chargedBack?.amountMinor, "", cur],
    );
  }
  const s = all[0]!;
  rows.push(
    ["payout_latency_p50_ms", s.payoutLatencyP50Ms], ["payout_latency_p95_ms", s.payoutLatencyP95Ms], ["new_workers", s.newWorkers],
    ["active_venues", s.activeVenues], ["active_workers", s.activeWorkers], ["scans", s.scans], ["sms_sent", s.smsSent],
    ["sms_spend_minor", s.smsSpend?.amountMinor, "", s.smsSpend?.currency ?? ""],
    ...s.failures.map((f) => [`failures:${f.resultCode}`, f.count, f.reason]),
  );
  return toCsv(["figure", "value", "detail", "currency"], rows);
}

/**
 * A worker's earnings, each currency's in rows of their own (KES first), the currency column saying
 * which. Each row's volume is what customers tipped in its currency and its net what was credited in
 * it: a USD card tip credited to a KES wallet is in the USD row's volume and the KES row's net.
 */
export function earningsCsv(all: WorkerEarningsMessage[]): Uint8Array {
  const rows: Cell[][] = [];
  for (const e of all) {
    const cur = e.today?.volume?.currency ?? q.HOME_CURRENCY;
    for (const [k, p] of [["today", e.today], ["this_week", e.thisWeek], ["this_month", e.thisMonth], ["in_range", e.inRange]] as const) {
      rows.push(["period", k, p?.tips, amount(p?.volume?.amountMinor ?? 0n), amount(p?.net?.amountMinor ?? 0n), cur, amount(p?.poolShare?.amountMinor ?? 0n)]);
    }
    for (const h of e.byHourOfDay) rows.push(["hour_of_day", h.hour, h.tips, h.volume?.amountMinor, "", cur]);
    for (const w of e.byWeekday) rows.push(["weekday", w.weekday, w.tips, w.volume?.amountMinor, "", cur]);
    for (const r of e.ratings) rows.push(["rating", r.stars, r.count, "", "", cur]);
    rows.push(["average_tip", "", "", e.averageTip?.amountMinor, "", cur]);
    rows.push(["average_rating_x100", "", e.averageRatingX100, "", "", cur]);
  }
  return toCsv(["section", "key", "tips", "volume_minor", "net_minor", "currency", "pool_share_minor"], rows);
}

/**
 * A venue's figures: each currency's series, staff and codes in rows of their own (KES first; for
 * another currency only what had tips in it), the currency column saying which; the funnel and the
 * failures (counts, as the dashboard shows them) once.
 */
export function venueCsv(all: { currency: string; view: GetVenueAnalyticsResponse }[]): Uint8Array {
  const rows: Cell[][] = [];
  all.forEach(({ currency: cur, view: v }, i) => {
    const tipped = (tips: bigint) => i === 0 || tips > 0n;
    for (const p of v.series) if (tipped(p.tips)) rows.push(["series", timestampDate(p.periodStart!).toISOString(), p.tips, p.tipVolume?.amountMinor, p.platformFees?.amountMinor, "", cur]);
    for (const w of v.workers) rows.push(["staff", w.workerId, w.tips, w.volume?.amountMinor, w.averageTip?.amountMinor, w.averageRatingX100, cur]);
    for (const c of v.codes) if (tipped(c.tips)) rows.push(["qr_code", c.qrCodeId, c.tips, c.volume?.amountMinor, "", c.scans, cur]);
  });
  const first = all[0]!.view;
  for (const f of first.funnel) rows.push(["funnel", f.step, f.count, "", "", f.ofFirstBps, ""]);
  for (const f of first.failures) rows.push(["failure", f.resultCode, f.count, "", "", f.reason, ""]);
  return toCsv(["section", "key", "tips_or_count", "volume_minor", "fees_or_average_minor", "extra", "currency"], rows);
}

/** The window a worker's earnings read: the range, and today, this week and this month (periodStarts). */
function earningsWindow(range: q.Range, now: Date): q.Range {
  const starts = q.periodStarts(now);
  const from = [range.from, starts.week, starts.month].reduce((a, b) => (a < b ? a : b));
  const to = new Date(Math.max(range.to.getTime(), now.getTime() + 3_600_000));
  return { from, to };
}

/** A range in an export's file name by its Nairobi days, e.g. 2026-11-01_2026-12-01 for November (the end exclusive). */
const stamp = (r: q.Range) => `${nairobiDay(r.from)}_${nairobiDay(r.to)}`;
