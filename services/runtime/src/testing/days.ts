/** Nairobi is UTC+3 all year (no daylight saving): the days and months a Kenyan user counts in. */
const NAIROBI_OFFSET_MS = 3 * 3_600_000;

/** The UTC day of `ms`, YYYY-MM-DD. */
export const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

/** The Nairobi day of `ms`, YYYY-MM-DD. */
export const nairobiDay = (ms: number): string => new Date(ms + NAIROBI_OFFSET_MS).toISOString().slice(0, 10);

/**
 * Runs `body`, steps that compare what they did with "today" as a service counts days (`dayOf`);
 * if it fails and a day boundary passed while it ran, runs it once more: what it did then fell
 * on two days, and the second run cannot span another boundary. A failure within one day stands.
 */
export async function withinOneDay<T>(dayOf: (ms: number) => string, body: () => Promise<T>): Promise<T> {
  const day = dayOf(Date.now());
  try {
    return await body();
  } catch (err) {
    if (dayOf(Date.now()) === day) throw err;
    return body();
  }
}
