// The days the platform charts cover, shared by the screen and its test.
// Analytics buckets days at midnight in Nairobi, so the range starts and ends
// there too: a UTC range would cut the first day's bucket short and add a
// sliver of tomorrow's (00:00-03:00 in Nairobi) as a 31st bar.
import { nairobiDay, nairobiDayStart, nairobiMonthBegins, nairobiMonthOf } from "../../web/src/lib/nairobi-time";

const DAY_MS = 86_400_000;
/** The charts' days: the 30 Nairobi days ending with today, whole days so two readers on one day see one range. */
export const CHART_DAYS = 30;
export function chartRange(now = new Date()): { from: Date; to: Date } {
  const tomorrow = nairobiDayStart(now).getTime() + DAY_MS;
  return { from: new Date(tomorrow - CHART_DAYS * DAY_MS), to: new Date(tomorrow) };
}

/** The revenue table's months: twelve Nairobi months, this one the last. */
export const REVENUE_MONTHS = 12;

/**
 * The revenue table's range: from the start of the Nairobi month eleven months back to now, at most
 * 366 days (analytics' limit on a range). From this month a year ago, it was up to 13 months, which
 * analytics refused on every day but a month's first: the month view showed only a refusal.
 */
export function monthsRange(now = new Date()): { from: Date; to: Date } {
  const { year, month } = nairobiMonthOf(now);
  return { from: nairobiMonthBegins(year, month - (REVENUE_MONTHS - 1)), to: now };
}

/** A period's label from its start: its Nairobi date, YYYY-MM-DD, or YYYY-MM for a month. */
export function periodLabel(start: Date, month: boolean): string {
  return nairobiDay(start).slice(0, month ? 7 : 10);
}

/** A day's bar label, MM-DD of the Nairobi day the bucket starting at `start` is. */
export function chartDayLabel(start: Date): string {
  return nairobiDay(start).slice(5);
}
