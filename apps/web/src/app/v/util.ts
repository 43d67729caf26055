// Small pieces the venue screens share: periods typed as dates and times,
// shown back as dates, and errors as sentences. Times typed and shown are
// Nairobi's wall clock, whatever zone the manager's browser is set to: a venue's
// shifts and days are Kenyan, and a laptop left on UTC would move them by 3 h.
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import type { Locale } from "../../lib/i18n";
import { fromNairobiWallTime, nairobiShown, nairobiWallTime } from "../../lib/nairobi-time";
import type { VenueKey } from "../../lib/venue-i18n";
import { refusedField } from "../../lib/focus";

export { plainError } from "../../lib/errors";

/**
 * After a refusal said in words, the focus goes to the input to correct (by its id): the button that
 * sent it kept the focus, and the manager (or a screen reader) had to find the field again.
 */
export function focusField(id: string | undefined): void {
  if (id) document.getElementById(id)?.focus();
}

/** The input id a server refusal's field is typed in, from `inputs` (API field → id); undefined when it names none of them. */
export function refusedInput(err: unknown, inputs: Readonly<Record<string, string>>): string | undefined {
  const field = refusedField(err);
  return field === undefined ? undefined : inputs[field];
}

/** "2026-11-29T14:00" or "…T14:00:30" (a datetime-local input, Nairobi time) as a Timestamp, or undefined when empty or malformed. */
export function localTime(value: string): Timestamp | undefined {
  const d = fromNairobiWallTime(value);
  return d ? timestampFromDate(d) : undefined;
}

/** A Date as a datetime-local input's value, in Nairobi time. */
export function inputTime(d: Date): string {
  return nairobiWallTime(d);
}

/** A moment as the manager reads it: Nairobi's clock, in the screen's language (month names differ). */
export function shown(ts: Timestamp | undefined, locale: Locale): string {
  return ts ? nairobiShown(timestampDate(ts), locale) : "";
}

/** A funnel step's figure: its count and its share of the scans, or the count alone when no scan was counted (a tip paid without one is not "0%"). */
export function funnelFigure(count: bigint, ofFirstBps: number, scans: bigint): string {
  return scans > 0n ? `${count} (${(ofFirstBps / 100).toFixed(0)}%)` : String(count);
}

export const METHODS: [SplitMethod, VenueKey][] = [
  [SplitMethod.EQUAL_ON_SHIFT, "v_mEqual"],
  [SplitMethod.BY_HOURS, "v_mHours"],
  [SplitMethod.BY_ROLE_POINTS, "v_mPoints"],
  [SplitMethod.FIXED_PERCENTAGES, "v_mFixed"],
];

/** The method's words' key (translate with the screen's t). */
export const methodName = (m: SplitMethod): VenueKey => METHODS.find(([k]) => k === m)?.[1] ?? "v_mUnknown";

/**
 * Minutes worked as a length of time: "7 h 30 min"; in Swahili "masaa 7 dakika 30". Swahili's
 * "saa 7" is also a time of day (Swahili time: 1 pm), and "saa 7 na dakika 30" reads as half past
 * one: these durations sit on the same rows as shift start and end times. Kenyan Swahili says
 * "masaa" (one: "lisaa") only for a length of time ("huduma ya masaa 24"), so the figure cannot be
 * taken for a clock; under an hour it is minutes only ("dakika 45").
 */
export function hours(minutes: bigint, locale: Locale): string {
  const h = minutes / 60n;
  const m = minutes % 60n;
  if (locale === "sw") {
    const hourPart = h === 0n ? "" : `${h === 1n ? "lisaa" : "masaa"} ${h}`;
    return [hourPart, m || !h ? `dakika ${m}` : ""].filter(Boolean).join(" ");
  }
  return m ? `${h} h ${m} min` : `${h} h`;
}

/** Percentages typed as "12.5" in basis points (1/100 of a percent), or undefined. */
export function basisPoints(text: string): number | undefined {
  const m = /^(\d{1,3})(?:\.(\d{1,2}))?$/.exec(text.trim());
  if (!m) return undefined;
  const bp = Number(m[1]) * 100 + Number((m[2] ?? "").padEnd(2, "0") || 0);
  return bp <= 10_000 ? bp : undefined;
}

/**
 * "=" when a share is exactly its weight's part of the pool, "≈" when rounding moved it
 * (2 of 3 x KES 500 is 333.33, paid as 333): the line must not claim a sum that is not one.
 */
export function shareSign(weight: bigint, totalWeight: bigint, poolMinor: bigint, shareMinor: bigint): "=" | "≈" {
  return totalWeight > 0n && weight * poolMinor === shareMinor * totalWeight ? "=" : "≈";
}
