// A long poll asked again until its value changes. A poll that answers at once with nothing changed (its
// server restarting: the watch failed and said so as "no change") is asked again only after a pause, so a
// short outage does not spend every attempt in a few seconds and leave the page waiting for good.

export interface PollOptions {
  /** Asks at most this many times. */
  attempts: number;
  /** Each ask starts at least this long after the one before. */
  minIntervalMs: number;
  /** True once the page has moved on: no further ask. */
  stopped: () => boolean;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  /**
   * False while the device has no network (the browser's navigator.onLine): an ask that fails then is not counted,
   * and the next one waits for `backOnline`. Before, a customer in a lift spent every attempt in 80 s, and the page
   * read "waiting" for good after the network came back.
   */
  online?: () => boolean;
  /** Resolves once the network is back (the window's "online" event). */
  backOnline?: () => Promise<void>;
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The first value `wait` answers that differs from `known` (a failed ask counts as no change, offline not at all); undefined when none came. */
export async function pollForChange<T>(known: T, wait: () => Promise<T>, o: PollOptions): Promise<T | undefined> {
  const { sleep = pause, now = Date.now } = o;
  for (let attempt = 0; attempt < o.attempts && !o.stopped(); attempt++) {
    const started = now();
    let failed = false;
    const value = await wait().catch(() => ((failed = true), known));
    if (o.stopped()) return undefined;
    if (value !== known) return value;
    if (failed && o.online && o.backOnline && !o.online()) {
      attempt--;
      await o.backOnline();
      continue;
    }
    const early = o.minIntervalMs - (now() - started);
    if (early > 0 && attempt + 1 < o.attempts) await sleep(early);
  }
  return undefined;
}
