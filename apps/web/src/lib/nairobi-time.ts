// The wallet's statements and the home's "this month" are Nairobi months (Kenya
// keeps UTC+3 all year), whatever time zone the phone or browser is set to; so
// are the days, weeks and wall-clock times the worker and venue screens show. The
// services' twin is the runtime's nairobi-time.ts; this one runs in browsers and
// the mobile app, which do not load the runtime.

const NAIROBI_OFFSET_MS = 3 * 3_600_000;
/** The zone for toLocaleString's timeZone: dates and times shown to workers and managers are Nairobi's. */
export const NAIROBI_ZONE = "Africa/Nairobi";

/** An instant as a worker or manager reads it: Nairobi's clock, in the screen's language (month names differ). */
export function nairobiShown(instant: Date, locale: "en" | "sw"): string {
  return instant.toLocaleString(locale === "sw" ? "sw-KE" : "en-KE", { dateStyle: "medium", timeStyle: "short", timeZone: NAIROBI_ZONE });
}

/** The Nairobi calendar month an instant falls in (month 1–12). */
export function nairobiMonthOf(instant: Date): { year: number; month: number } {
  const local = new Date(instant.getTime() + NAIROBI_OFFSET_MS);
  return { year: local.getUTCFullYear(), month: local.getUTCMonth() + 1 };
}

/** The instant a Nairobi month (1–12; 0 or 13 roll over into the year before or after) begins. */
export function nairobiMonthBegins(year: number, month: number): Date {
  return new Date(Date.UTC(year, month - 1, 1) - NAIROBI_OFFSET_MS);
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

/** The instant the Nairobi week of `instant` began: Monday, midnight in Nairobi. */
export function nairobiWeekStart(instant: Date): Date {
  const day = nairobiDayStart(instant);
  const weekday = new Date(day.getTime() + NAIROBI_OFFSET_MS).getUTCDay(); // 0 is Sunday
  return new Date(day.getTime() - ((weekday + 6) % 7) * DAY_MS);
}

/** An instant as Nairobi's wall clock to the minute, "YYYY-MM-DDTHH:MM" (a datetime-local input's value). */
export function nairobiWallTime(instant: Date): string {
  return new Date(instant.getTime() + NAIROBI_OFFSET_MS).toISOString().slice(0, 16);
}

/** An instant as Nairobi's wall clock to the second, "YYYY-MM-DD HH:MM:SS" (the admin console's tables). */
export function nairobiDateTime(instant: Date): string {
  return new Date(instant.getTime() + NAIROBI_OFFSET_MS).toISOString().replace("T", " ").slice(0, 19);
}

/** "YYYY-MM-DDTHH:MM" or "…:SS" read as Nairobi's wall clock, or undefined when malformed. */
export function fromNairobiWallTime(value: string): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(value);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1).map((n) => Number(n ?? 0));
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  // Date.UTC rolls "02-30" over into March: a day or hour that does not exist is malformed, not moved.
  return new Date(ms).toISOString().slice(0, 19) === `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6] ?? "00"}` ? new Date(ms - NAIROBI_OFFSET_MS) : undefined;
}
