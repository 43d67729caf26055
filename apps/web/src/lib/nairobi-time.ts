// The wallet's statements and the home's "this month" are Nairobi months (Kenya
// keeps UTC+3 all year), whatever time zone the phone or browser is set to. The
// services' twin is the runtime's nairobi-time.ts; this one runs in browsers and
// the mobile app, which do not load the runtime.

const NAIROBI_OFFSET_MS = 3 * 3_600_000;

/** The Nairobi calendar month an instant falls in (month 1–12). */
export function nairobiMonthOf(instant: Date): { year: number; month: number } {
  const local = new Date(instant.getTime() + NAIROBI_OFFSET_MS);
  return { year: local.getUTCFullYear(), month: local.getUTCMonth() + 1 };
}

/** The instant the Nairobi month of `instant` began. */
export function nairobiMonthStart(instant: Date): Date {
  const { year, month } = nairobiMonthOf(instant);
  return new Date(Date.UTC(year, month - 1, 1) - NAIROBI_OFFSET_MS);
}

const DAY_MS = 86_400_000;

/** The instant the Nairobi day of `instant` began: midnight in Nairobi, 21:00 UTC the evening before. */
export function nairobiDayStart(instant: Date): Date {
  const local = instant.getTime() + NAIROBI_OFFSET_MS;
  return new Date(local - (local % DAY_MS) - NAIROBI_OFFSET_MS);
}

/** The Nairobi calendar day an instant falls in, YYYY-MM-DD. */
export function nairobiDay(instant: Date): string {
  return new Date(instant.getTime() + NAIROBI_OFFSET_MS).toISOString().slice(0, 10);
}
