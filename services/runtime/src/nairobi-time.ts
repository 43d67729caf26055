// Kenya keeps UTC+3 all year (no daylight saving). The product's days and months
// (statements, limits, a worker's "this month") start at midnight in Nairobi,
// whatever time zone the server or the test machine runs in.

export const NAIROBI_OFFSET_MS = 3 * 3_600_000;

/** The Nairobi calendar month an instant falls in (month 1–12). */
export function nairobiMonthOf(instant: Date): { year: number; month: number } {
  const local = new Date(instant.getTime() + NAIROBI_OFFSET_MS);
  return { year: local.getUTCFullYear(), month: local.getUTCMonth() + 1 };
}

/** A Nairobi month as instants: from its first midnight (inclusive) to the next month's (exclusive). */
export function nairobiMonthBounds(year: number, month: number): { start: Date; end: Date } {
  return { start: new Date(Date.UTC(year, month - 1, 1) - NAIROBI_OFFSET_MS), end: new Date(Date.UTC(year, month, 1) - NAIROBI_OFFSET_MS) };
}

/** The Nairobi calendar day an instant falls in, YYYY-MM-DD: it starts at 21:00 UTC the evening before. */
export function nairobiDay(instant: Date | number): string {
  const ms = typeof instant === "number" ? instant : instant.getTime();
  return new Date(ms + NAIROBI_OFFSET_MS).toISOString().slice(0, 10);
}

/**
 * The first instant of a Nairobi day written YYYY-MM-DD; undefined for anything else, a day no calendar has
 * ("2026-02-31", which Date rolls over into March) among them.
 */
export function nairobiDayStart(day: string): Date | undefined {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return undefined;
  const start = new Date(`${day}T00:00:00+03:00`);
  return !Number.isNaN(start.getTime()) && nairobiDay(start) === day ? start : undefined;
}
