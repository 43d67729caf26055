import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type WorkerEarnings as WorkerEarningsMessage, type PlatformSummary as PlatformSummaryMessage, WorkerEarningsSchema, PlatformSummarySchema } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { GetVenueAnalyticsResponseSchema } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { type ServiceContext } from "@ttip/runtime";
import { Dim } from "../facts.js";
import * as q from "../queries.js";
import { money } from "./values.js";

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
    refunded: money(s.refunded, currency),
    chargedBack: money(s.chargedBack, currency),
  });
}

export const memberPerformance = (m: q.MemberFigures, currency: string) => ({
  workerId: m.id,
  tips: m.tips,
  volume: money(m.volume, currency),
  averageTip: money(q.average(m.volume, m.tips), currency),
  averageRatingX100: m.ratingCount > 0n ? Number((m.ratingSum * 100n) / m.ratingCount) : 0,
});

export const funnelSteps = (steps: q.FunnelStep[]) =>
  steps.map((s) => ({ step: s.step, count: s.count, ofFirstBps: q.bps(s.count, steps[0].count) }));

/** Everything a venue manager's screen shows. `members`: how many staff and codes at most (the screen's list, or one more than an export holds). */
export async function venueView(ctx: ServiceContext, venueId: string, range: q.Range, period: q.Period, currency: string, members?: number): Promise<MessageInitShape<typeof GetVenueAnalyticsResponseSchema>> {
  const scope = { dim: Dim.Venue, id: venueId };
  const [points, staff, codes, steps, fails] = await Promise.all([
    q.series(ctx.pool, scope, range, period, currency),
    q.venueMembers(ctx.pool, venueId, Dim.VenueStaff, range, currency, members),
    q.venueMembers(ctx.pool, venueId, Dim.VenueCode, range, currency, members),
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
