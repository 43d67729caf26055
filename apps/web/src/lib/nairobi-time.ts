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
