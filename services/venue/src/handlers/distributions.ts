import { type ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { MyShareSchema } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { decodePageToken, fieldError, keysetPage, NotFoundError, optionalTimestamp, pageSize, requireCaller } from "@ttip/runtime";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { distributionsPage, loadDistribution, money, sharesOf, sharesOfWorker, toDistribution, toShareLine } from "../store.js";
import type { VenueHandlerContext } from "./context.js";
import { atAndId, atIdAndMember, periodOf } from "./values.js";

/** Distributions of a period's pool: preview, confirm, reverse, read, and a worker's own shares. */
export function distributionHandlers(h: VenueHandlerContext): Partial<ServiceImpl<typeof VenueService>> {
  return {
    previewDistribution: previewDistributionHandler(h),
    confirmDistribution: confirmDistributionHandler(h),
    reverseDistribution: reverseDistributionHandler(h),
    getDistribution: getDistributionHandler(h),
    listDistributions: listDistributionsHandler(h),
    listMyShares: listMySharesHandler(h),
  };
}

function previewDistributionHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["previewDistribution"] {
  const { distributions, manager } = h;
  return async function (req, ctx) {
    const p = periodOf(req.period);
    const { venue } = await manager(ctx, req.venueId);
    return { distribution: await distributions.preview(venue, p) };
  };
}

function confirmDistributionHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["confirmDistribution"] {
  const { distributions, manager } = h;
  return async function (req, ctx) {
    const p = periodOf(req.period);
    const { caller, venue } = await manager(ctx, req.venueId);
    if (req.expectedCollected && req.expectedCollected.currency && req.expectedCollected.currency !== venue.currency) {
      throw fieldError("expected_collected.currency", `the venue's pool is in ${venue.currency}`);
    }
    return distributions.confirm(venue, p, caller, { collected: req.expectedCollected?.amountMinor, shares: req.expectedShares || undefined });
  };
}

function reverseDistributionHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["reverseDistribution"] {
  const { distributions, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    return { distribution: await distributions.reverse(req.venueId, req.distributionId, req.reason, caller) };
  };
}

function getDistributionHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["getDistribution"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    const who = await access.requireMemberOrManager(pool, ctx, req.venueId);
    const loaded = await loadDistribution(pool, req.distributionId);
    if (!loaded || loaded.d.venue_id !== req.venueId || loaded.d.status === "abandoned") {
      throw new NotFoundError(`distribution_id: no distribution ${req.distributionId} at this venue`);
    }
    // A member sees the whole split's totals and their own line (by worker: one who left and came back was paid
    // under the membership of then); the manager sees every line.
    const shown = who.manager ? loaded.shares : loaded.shares.filter((s) => s.worker_id === who.member?.worker_id);
    return { distribution: toDistribution(loaded.d, loaded.shares, shown) };
  };
}

function listDistributionsHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listDistributions"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    await manager(ctx, req.venueId);
    const size = pageSize(req.page);
    const cursor = decodePageToken(req.page?.pageToken, atAndId);
    const rows = await distributionsPage(pool, req.venueId, cursor, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (d) => [d.page_at, d.distribution_id]);
    const out = [];
    for (const d of items) out.push(toDistribution(d, await sharesOf(pool, d.distribution_id)));
    return { distributions: out, page: { nextPageToken } };
  };
}

function listMySharesHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listMyShares"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    const caller = requireCaller(ctx);
    const size = pageSize(req.page);
    const cursor = decodePageToken(req.page?.pageToken, atIdAndMember);
    const rows = await sharesOfWorker(pool, caller.subject, cursor, size + 1);
    const { items: page, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.distribution_id, r.member_id]);
    const names = new Map<string, string>();
    for (const v of new Set(page.map((r) => r.venue_id))) names.set(v, (await access.venue(v).catch(() => undefined))?.name ?? "");
    const shares = page.map((r) => create(MyShareSchema, {
      venueId: r.venue_id,
      venueName: names.get(r.venue_id),
      distributionId: r.distribution_id,
      period: { start: timestampFromDate(r.period_start), end: timestampFromDate(r.period_end) },
      method: r.method,
      ruleVersion: r.rule_version,
      poolTotal: money(r.pool_total, r.currency),
      membersPaid: r.members_paid,
      line: toShareLine(r, r.currency),
      status: r.status === "confirmed" ? 3 : 4,
      confirmedAt: optionalTimestamp(r.confirmed_at),
    }));
    return { shares, page: { nextPageToken } };
  };
}
