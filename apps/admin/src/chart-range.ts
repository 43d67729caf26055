// The days the platform charts cover, shared by the screen and its test.
const DAY_MS = 86_400_000;
/** The charts' days: the 30 UTC days ending with today, whole days so two readers on one day see one range. */
export const CHART_DAYS = 30;
export function chartRange(now = new Date()): { from: Date; to: Date } {
  const tomorrow = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) + DAY_MS;
  return { from: new Date(tomorrow - CHART_DAYS * DAY_MS), to: new Date(tomorrow) };
}
