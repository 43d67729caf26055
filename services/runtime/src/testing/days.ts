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
