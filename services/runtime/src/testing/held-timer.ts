/** A timer a module set, held by the test instead of the clock: fire() runs its callback now. */
export interface HeldTimer {
  /** Runs the timer's callback now (once: a timer fires once). */
  fire(): void;
}

/**
 * Runs `start` (a module starting) with the setTimeout calls whose delay is exactly `delayMs`
 * held: their callbacks run when the test calls fire(), never by the clock. A module's timer that
 * decides when its next step runs (a look again later) is then ordered by the test's own steps,
 * not raced by them on a slow machine. Every other timer runs as usual, so `delayMs` must be a
 * value only the held timer uses (an odd one, e.g. 987_654); setTimeout is restored before this returns.
 */
export async function holdingTimer<T>(delayMs: number, start: () => Promise<T>): Promise<{ started: T; timer: HeldTimer }> {
  const real = globalThis.setTimeout;
  let held: (() => void) | undefined;
  let fired = false;
  const holding = ((callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    if (ms !== delayMs) return real(callback, ms, ...args);
    held = () => callback(...args);
    // What the module keeps to clear it: a real timer that never fires in a test's time and keeps nothing alive.
    return real(() => undefined, 2 ** 31 - 1).unref();
  }) as typeof setTimeout;
  globalThis.setTimeout = holding;
  try {
    const started = await start();
    const timer: HeldTimer = {
      fire() {
        if (!held) throw new Error(`no timer of ${delayMs} ms was set while it was held`);
        if (fired) throw new Error(`the held timer of ${delayMs} ms has fired already`);
        fired = true;
        held();
      },
    };
    return { started, timer };
  } finally {
    globalThis.setTimeout = real;
  }
}
