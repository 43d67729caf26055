import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { DashboardSnapshotSchema, type DashboardSnapshot } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsAdminService, AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { clockOf, fieldError } from "@ttip/runtime";
import { Dim } from "../facts.js";
import { rollupChanges } from "../ingest.js";
import * as q from "../queries.js";
import type { AnalyticsAreaHandlers, AnalyticsConfig, AnalyticsHandlerContext } from "./context.js";
import { currencyOf, money } from "./values.js";

/** Live dashboards: today's figures, streamed as they change. */
export function dashboardHandlers(h: AnalyticsHandlerContext): AnalyticsAreaHandlers {
  return {
    public: {
      watchDashboard: watchDashboardHandler(h),
    },
    admin: {
      watchPlatformDashboard: watchPlatformDashboardHandler(h),
    },
  };
}

function watchDashboardHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsService>["watchDashboard"] {
  const { access } = h;
  return async function* (req, hc) {
    if (req.venueId) {
      const allowed = () => access.venue(hc, req.venueId);
      await allowed();
      // Asked again as it streams: a manager removed from the venue would otherwise watch its takings for the stream's hour.
      yield* watch(h, { dim: Dim.Venue, id: req.venueId }, req, hc.signal, allowed);
      return;
    }
    const { workerId } = await access.worker(hc, "");
    yield* watch(h, { dim: Dim.Worker, id: workerId }, req, hc.signal);
  };
}

function watchPlatformDashboardHandler(h: AnalyticsHandlerContext): ServiceImpl<typeof AnalyticsAdminService>["watchPlatformDashboard"] {
  return async function* (req, hc) {
    yield* watch(h, q.platformScope, req, hc.signal);
  };
}

/** A scope's live figures: in the one currency asked for (KES by default), or with all_currencies every currency's in one stream. */
async function* watch(h: AnalyticsHandlerContext, scope: q.Scope, req: { currency: string; allCurrencies: boolean }, signal: AbortSignal, allowed?: () => Promise<unknown>) {
  const { ctx, cfg } = h;
  // The access asked again once its interval has passed (by the service's clock), before a read: refused, the stream ends so.
  let askedAt = clockOf(ctx).now();
  const stillAllowed = async () => {
    if (!allowed || clockOf(ctx).now() - askedAt < cfg.liveAccessRecheckMs) return;
    await allowed();
    askedAt = clockOf(ctx).now();
  };
  if (req.allCurrencies) {
    if (req.currency) throw fieldError("currency", "must be empty when all_currencies is set: the stream carries every currency");
    const read = async () => (await stillAllowed(), (await q.dashboards(ctx.pool, scope)).map((d) => snapshotOf(d, d.currency, new Date())));
    for await (const snapshots of live(cfg, read, signal)) yield { snapshot: snapshots[0], snapshots };
    return;
  }
  const currency = currencyOf(req);
  const read = async () => (await stillAllowed(), [snapshotOf(await q.dashboard(ctx.pool, scope, currency), currency, new Date())]);
  for await (const [snapshot] of live(cfg, read, signal)) yield { snapshot, snapshots: [] };
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
  a.tipsToday === b.tipsToday && a.volumeToday?.amountMinor === b.volumeToday?.amountMinor && a.volumeToday?.currency === b.volumeToday?.currency &&
  a.successRateBps === b.successRateBps && a.scansToday === b.scansToday;
const sameSnapshots = (a: DashboardSnapshot[], b: DashboardSnapshot[]) => a.length === b.length && a.every((s, i) => sameSnapshot(s, b[i]!));

/** Today's figures (`read`: one snapshot a currency) now, then each time they change, until the caller leaves or the stream's time is up (exported for its test). */
export async function* live(cfg: AnalyticsConfig, read: () => Promise<DashboardSnapshot[]>, signal: AbortSignal): AsyncGenerator<DashboardSnapshot[]> {
  const endAt = Date.now() + cfg.liveMaxMs;
  let readAt = Date.now();
  let last = await read();
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
    // Changes while this waits are read with the next read, which comes after them.
    const early = readAt + cfg.liveMinReadGapMs - Date.now();
    if (early > 0) await sleep(early, undefined, { signal }).catch(() => undefined);
    if (signal.aborted) return;
    readAt = Date.now();
    const next = await read();
    if (!sameSnapshots(last, next)) yield (last = next);
  }
}
