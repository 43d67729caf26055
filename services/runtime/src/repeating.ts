// Background passes (sweeps, retention, reconciliation) and the bounded batches they delete or mend in.
import assert from "node:assert/strict";
import type { Logger } from "./log.js";

export interface RepeatingOptions {
  /** From the end of one pass to the start of the next: one pass at a time, so a slow one never has another beside it. */
  everyMs: number;
  /** Before the first pass (default everyMs; 0: at once). */
  firstAfterMs?: number;
  /** Each wait is everyMs × (1 ± jitter), so replicas started together do not sweep together (default 0). */
  jitter?: number;
  logger: Logger;
  /** Logged with the error when a pass fails: what was left undone. The next pass tries again. */
  failed: string;
}

/**
 * Runs `pass` every `everyMs` until stopped; a failed pass is logged and the schedule goes on. Answers the stop,
 * which cancels the next pass and settles when the one running (if any) has ended. The timer does not hold the
 * process open.
 */
export function repeating(pass: () => Promise<unknown>, o: RepeatingOptions): () => Promise<void> {
  assert(o.everyMs > 0, "repeating: everyMs must be positive");
  const jitter = o.jitter ?? 0;
  assert(jitter >= 0 && jitter < 1, "repeating: jitter must be in [0, 1)");
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = pass()
        .then(() => undefined, (err: unknown) => o.logger.warn({ err }, o.failed))
        .finally(() => schedule(o.everyMs));
    }, ms * (1 - jitter + Math.random() * 2 * jitter));
    timer.unref();
  };
  schedule(o.firstAfterMs ?? o.everyMs);
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}

/** A pass's bounds: rows per statement (each a short transaction), and statements per pass (the rest waits). */
export interface BatchLimits {
  size: number;
  maxBatches: number;
}

/**
 * Runs `batch` (one statement over at most `size` rows, answering how many it saw) until one comes back short,
 * `maxBatches` have run, or `stopped()` says so. Answers the rows seen in all.
 */
export async function inBatches(limits: BatchLimits, batch: (size: number) => Promise<number>, stopped = () => false): Promise<number> {
  assert(limits.size > 0 && limits.maxBatches > 0, "inBatches: size and maxBatches must be positive");
  let seen = 0;
  for (let i = 0; i < limits.maxBatches && !stopped(); i++) {
    const n = await batch(limits.size);
    seen += n;
    if (n < limits.size) break;
  }
  return seen;
}
