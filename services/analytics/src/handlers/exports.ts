import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { ReportKind, type WorkerEarnings as WorkerEarningsMessage } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsAdminService, AnalyticsService, GetVenueAnalyticsResponseSchema, type GetVenueAnalyticsResponse } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { fieldError } from "@ttip/runtime";
import { toCsv, type Cell } from "../csv.js";
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

/** A range in an export's file name, e.g. 2026-01-01_2026-02-01. */
const stamp = (r: q.Range) => `${r.from.toISOString().slice(0, 10)}_${r.to.toISOString().slice(0, 10)}`;
