// A closed-loop load: `concurrency` callers each call again as soon as the
// last call returned, for `seconds`; latencies are kept for percentiles.

export interface LoadResult {
  calls: number;
  seconds: number;
  perSecond: number;
  /** Latency at quantile q (0..1), in milliseconds. */
  percentile(q: number): number;
}

export async function closedLoop(concurrency: number, seconds: number, call: () => Promise<unknown>): Promise<LoadResult> {
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await call();
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    calls: latencies.length,
    seconds: elapsed,
    perSecond: latencies.length / elapsed,
    percentile: (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN,
  };
}

/** "p50 1.2 ms  p95 3.4 ms  p99 5.6 ms" */
export function percentiles(r: LoadResult, digits = 1): string {
  return [0.5, 0.95, 0.99].map((q) => `p${Math.round(q * 100)} ${r.percentile(q).toFixed(digits)} ms`).join("  ");
}
