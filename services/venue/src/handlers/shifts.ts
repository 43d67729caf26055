import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { fieldError, PermissionDeniedError, requireCaller } from "@ttip/runtime";
import { hoursLine } from "../plan.js";
import { clockIn, clockOut, importShifts, recordShift } from "../shifts.js";
import { rosterFor, shiftsIn, shiftsTouching, toShift } from "../store.js";
import type { VenueHandlerContext } from "./context.js";
import { periodOf } from "./values.js";

/** Shifts: clocking in and out, manual and imported shifts, and the hours they add up to. */
export function shiftHandlers(h: VenueHandlerContext): Partial<ServiceImpl<typeof VenueService>> {
  return {
    clockIn: clockInHandler(h),
    clockOut: clockOutHandler(h),
    recordShift: recordShiftHandler(h),
    importShifts: importShiftsHandler(h),
    listShifts: listShiftsHandler(h),
    getHours: getHoursHandler(h),
  };
}

function clockInHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["clockIn"] {
  const { pool, clock } = h;
  return async function (req, ctx) {
    const caller = requireCaller(ctx);
    return { shift: toShift(await clockIn(pool, req.venueId, caller.subject, clock.now())) };
  };
}

function clockOutHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["clockOut"] {
  const { pool } = h;
  return async function (req, ctx) {
    const caller = requireCaller(ctx);
    return { shift: toShift(await clockOut(pool, req.venueId, caller.subject)) };
  };
}

function recordShiftHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["recordShift"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    const s = await recordShift(pool, req.venueId, caller, req.memberId, timestampDate(req.startedAt!), timestampDate(req.endedAt!), req.idempotencyKey);
    return { shift: toShift(s) };
  };
}

function importShiftsHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["importShifts"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(req.csv);
    } catch {
      throw fieldError("csv", "not UTF-8 text");
    }
    const r = await importShifts(pool, req.venueId, caller, text, req.dryRun);
    return { imported: r.imported, rejected: r.rejected };
  };
}

function listShiftsHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listShifts"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    const p = periodOf(req.period);
    const who = await access.requireMemberOrManager(pool, ctx, req.venueId);
    // A worker sees only their own shifts.
    const memberId = who.manager ? req.memberId || null : who.member!.member_id;
    if (!who.manager && req.memberId && req.memberId !== memberId) throw new PermissionDeniedError("member_id: you may only see your own shifts");
    return { shifts: (await shiftsTouching(pool, req.venueId, memberId, p.start, p.end)).map(toShift) };
  };
}

function getHoursHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["getHours"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    const p = periodOf(req.period);
    const who = await access.requireMemberOrManager(pool, ctx, req.venueId);
    const roster = await rosterFor(pool, req.venueId, p.end);
    const shifts = await shiftsIn(pool, req.venueId, p.start, p.end);
    const hours = roster
      .filter((m) => who.manager || m.memberId === who.member?.member_id)
      .map((m) => hoursLine(m, shifts, p))
      .filter((h) => h.minutes > 0n || h.shifts > 0);
    return { hours };
  };
}
