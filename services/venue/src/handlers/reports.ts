import { type ServiceImpl } from "@connectrpc/connect";
import { ReportFormat, VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { decodePageToken, keysetPage, pageSize, positionParts } from "@ttip/runtime";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { csvLine } from "../csv.js";
import { hoursLine } from "../plan.js";
import { auditRecords, money, paidInPeriod, rosterFor, shiftsIn } from "../store.js";
import type { VenueHandlerContext } from "./context.js";
import { periodOf } from "./values.js";

/** A period's report for the manager and the venue's audit trail. */
export function reportHandlers(h: VenueHandlerContext): Partial<ServiceImpl<typeof VenueService>> {
  return {
    getPeriodReport: getPeriodReportHandler(h),
    listAuditRecords: listAuditRecordsHandler(h),
  };
}

function getPeriodReportHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["getPeriodReport"] {
  const { pool, distributions, manager } = h;
  return async function (req, ctx) {
    const p = periodOf(req.period);
    const { venue } = await manager(ctx, req.venueId);
    const roster = await rosterFor(pool, req.venueId, p.end);
    const shifts = await shiftsIn(pool, req.venueId, p.start, p.end);
    const paid = await paidInPeriod(pool, req.venueId, p.start, p.end);
    const byMember = new Map(paid.map((r) => [r.member_id, r]));
    const lines = roster
      .map((m) => ({
        ...hoursLine(m, shifts, p),
        shares: money(byMember.get(m.memberId)?.total ?? 0n, venue.currency),
        distributions: byMember.get(m.memberId)?.n ?? 0,
      }))
      .filter((l) => l.minutes > 0n || l.distributions > 0 || l.shifts > 0);
    const distributed = paid.reduce((s, r) => s + r.total, 0n);
    const takings = await distributions.takingsFor(venue, p);
    let csv = new Uint8Array();
    if (req.format === ReportFormat.CSV) {
      let text = csvLine(["member_id", "name", "role", "minutes", "shifts", `shares_${venue.currency.toLowerCase()}_minor`, "distributions"]);
      for (const l of lines) text += csvLine([l.memberId, l.displayName, l.roleId, l.minutes, l.shifts, l.shares.amountMinor, l.distributions]);
      text += csvLine(["total", "", "", lines.reduce((s, l) => s + l.minutes, 0n), lines.reduce((s, l) => s + l.shifts, 0), distributed, ""]);
      csv = new TextEncoder().encode(text);
    }
    return { lines: req.format === ReportFormat.ROWS ? lines : [], collected: money(takings, venue.currency), distributed: money(distributed, venue.currency), csv };
  };
}

function listAuditRecordsHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listAuditRecords"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    await manager(ctx, req.venueId);
    const size = pageSize(req.page);
    const cursor = decodePageToken(req.page?.pageToken, ([n]) => positionParts.integer(n));
    const rows = await auditRecords(pool, req.venueId, cursor, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.sequence]);
    return {
      records: items.map((r) => ({ sequence: BigInt(r.sequence), venueId: r.venue_id, at: timestampFromDate(r.at), actor: r.actor, action: r.action, detail: JSON.stringify(r.detail) })),
      page: { nextPageToken },
    };
  };
}
