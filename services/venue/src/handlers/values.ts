import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { fieldError, positionParts } from "@ttip/runtime";
import { type Period } from "../plan.js";

/** Longest period a read or split covers. */
const MAX_PERIOD_MS = 32 * 24 * 3600_000;

/** A request's period, checked: both ends, in order, at most MAX_PERIOD_MS long. */
export function periodOf(p: { start?: Timestamp; end?: Timestamp } | undefined, field = "period"): Period {
  if (!p?.start) throw fieldError(`${field}.start`, "required");
  if (!p.end) throw fieldError(`${field}.end`, "required");
  const start = timestampDate(p.start);
  const end = timestampDate(p.end);
  if (end.getTime() <= start.getTime()) throw fieldError(`${field}.end`, `must be after ${field}.start`);
  if (end.getTime() - start.getTime() > MAX_PERIOD_MS) throw fieldError(`${field}.end`, "a period covers at most 32 days");
  return { start, end };
}

const NIL_UUID = "00000000-0000-0000-0000-000000000000";

/**
 * A worker's share's page position: (time, distribution, member). A worker who left a venue and came
 * back has two memberships, and both may have a share of one distribution. A position of two parts
 * (issued before the member was in it) reads as before every share of its distribution.
 */
export function atIdAndMember([at, id, member, ...rest]: string[]): { at: string; id: string; member: string } | undefined {
  const position = rest.length ? undefined : atAndId([at, id]);
  const m = member === undefined ? NIL_UUID : positionParts.uuid(member);
  return position && m ? { ...position, member: m } : undefined;
}

/** A (time, id) page position. */
export function atAndId([at, id]: string[]): { at: string; id: string } | undefined {
  const t = positionParts.timestamp(at);
  const u = positionParts.uuid(id);
  return t && u ? { at: t, id: u } : undefined;
}
