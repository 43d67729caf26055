// The time a service's rules read (cool-downs, lockouts, deadlines), passed in
// with its context, so a test moves it forward instead of sleeping through it.

export interface Clock {
  /** Milliseconds since the epoch, as Date.now(). */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/**
 * The system's clock plus an offset that only grows: time still flows (the
 * database's now(), Redis expiry and timers are untouched), and a test skips a
 * wait with advance() instead of sleeping through it.
 */
export class AdjustableClock implements Clock {
  private offsetMs = 0;

  now(): number {
    return Date.now() + this.offsetMs;
  }

  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`a clock only moves forward (asked ${ms} ms)`);
    this.offsetMs += ms;
  }
}
