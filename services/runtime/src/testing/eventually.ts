import assert from "node:assert/strict";

export interface EventuallyOptions {
  /** Give up after this long (default 15 s). */
  timeoutMs?: number;
  /** Poll this often (default 40 ms). */
  everyMs?: number;
  /** Treat a throwing check as "not yet" and quote its last error on timeout (servers restarting). */
  retryErrors?: boolean;
}

type Check<T> = () => Promise<T | undefined | false | null> | T | undefined | false | null;

/**
 * Polls `check` until it returns something truthy and returns that, for what tests observe
 * after the fact (an event consumed, a callback applied). Fails naming `what` on timeout.
 * A number as the third argument is the timeout.
 */
export async function eventually<T>(what: string, check: Check<T>, options: number | EventuallyOptions = {}): Promise<T> {
  const { timeoutMs = 15_000, everyMs = 40, retryErrors = false } = typeof options === "number" ? { timeoutMs: options } : options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      if (!retryErrors) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ""}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
