import { type ServiceImpl } from "@connectrpc/connect";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { fieldError } from "@ttip/runtime";
import { Dim } from "../facts.js";
import * as q from "../queries.js";
import type { AnalyticsAreaHandlers, AnalyticsHandlerContext } from "./context.js";
import { earningsMessage, funnelSteps, memberPerformance, venueView } from "./messages.js";
import { currencyOf, periodOf, rangeOf } from "./values.js";

/** A worker's and a venue's figures, and the scan-to-tip funnel. */
export function performanceHandlers(h: AnalyticsHandlerContext): AnalyticsAreaHandlers {
  return {
    public: {
      getWorkerPerformance: getWorkerPerformanceHandler(h),
      getWorkerEarnings: getWorkerEarningsHandler(h),
      getVenueAnalytics: getVenueAnalyticsHandler(h),
      getFunnel: getFunnelHandler(h),
    },
  };
}

function getWorkerPerformanceHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["getWorkerPerformance"] {
  const { ctx, access } = h;
  return async function (req, hc) {
    const { workerId } = await access.worker(hc, req.workerId);
    const range = rangeOf(req.range);
    const currency = currencyOf(req);
    const t = await q.totals(ctx.pool, { dim: Dim.Worker, id: workerId }, range, currency);
    return {
      performance: memberPerformance({ id: workerId, scans: t.scans, tips: t.succeeded, volume: t.amount, ratingSum: t.ratingSum, ratingCount: t.ratingCount }, currency),
    };
  };
}

function getWorkerEarningsHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["getWorkerEarnings"] {
  const { ctx, access } = h;
  return async function (req, hc) {
    const { workerId } = await access.worker(hc, req.workerId);
    const currency = currencyOf(req);
    return { earnings: earningsMessage(workerId, await q.workerEarnings(ctx.pool, workerId, rangeOf(req.range), currency), currency) };
  };
}

function getVenueAnalyticsHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["getVenueAnalytics"] {
  const { ctx, access } = h;
  return async function (req, hc) {
    await access.venue(hc, req.venueId);
    const range = rangeOf(req.range);
    const [view, currencies] = await Promise.all([
      venueView(ctx, req.venueId, range, periodOf(req.granularity, range), currencyOf(req)),
      q.currenciesOf(ctx.pool, { dim: Dim.Venue, id: req.venueId }, range),
    ]);
    return { ...view, currencies };
  };
}

function getFunnelHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["getFunnel"] {
  const { ctx, access } = h;
  return async function (req, hc) {
    const range = rangeOf(req.range);
    const currency = currencyOf(req);
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
    const [steps, fails] = await Promise.all([q.funnel(ctx.pool, scope, range, currency), q.failures(ctx.pool, scope, range)]);
    return { steps: funnelSteps(steps), failures: fails };
  };
}
