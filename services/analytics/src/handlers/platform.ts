import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { AnalyticsAdminService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import * as q from "../queries.js";
import type { AnalyticsAreaHandlers, AnalyticsHandlerContext } from "./context.js";
import { summaryMessage } from "./messages.js";
import { currencyOf, money, periodOf, rangeOf } from "./values.js";

/** The platform's figures for admins: revenue, payment success and the summary. */
export function platformHandlers(h: AnalyticsHandlerContext): AnalyticsAreaHandlers {
  return {
    admin: {
      getRevenueMetrics: getRevenueMetricsHandler(h),
      getPaymentSuccessRates: getPaymentSuccessRatesHandler(h),
      getPlatformSummary: getPlatformSummaryHandler(h),
    },
  };
}

function getRevenueMetricsHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsAdminService>["getRevenueMetrics"] {
  const { ctx } = h;
  return async function (req) {
    const range = rangeOf(req.range);
    const currency = currencyOf(req);
    const points = await q.series(ctx.pool, q.platformScope, range, periodOf(req.granularity, range), currency);
    return {
      series: points.map((p) => ({
        periodStart: timestampFromDate(p.start),
        tipVolume: money(p.volume, currency),
        platformFees: money(p.fees, currency),
        payouts: money(p.payouts, currency),
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
    const currency = currencyOf(req);
    const s = await q.platformSummary(ctx.pool, rangeOf(req.range), currency, cfg.smsPriceMinor);
    return { summary: summaryMessage(s, currency, cfg.smsCurrency) };
  };
}
