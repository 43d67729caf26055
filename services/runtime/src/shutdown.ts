import type { Logger } from "./log.js";

/**
 * Runs the given steps once, in order, on SIGTERM or SIGINT, then exits 0
 * (1 if a step failed or the hard deadline passed). Kubernetes sends SIGTERM
 * and waits terminationGracePeriodSeconds before SIGKILL.
 */
export function onShutdown(logger: Logger, steps: Array<() => Promise<unknown>>, hardDeadlineMs = 25_000): void {
  let started = false;
  const run = async (signal: string) => {
    if (started) return;
    started = true;
    logger.info({ signal }, "shutting down");
    const deadline = setTimeout(() => {
      logger.error("shutdown deadline passed; exiting");
      process.exit(1);
    }, hardDeadlineMs);
    deadline.unref();
    let failed = false;
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        failed = true;
        logger.error({ err }, "shutdown step failed");
      }
    }
    logger.info("shutdown complete");
    logger.flush?.();
    process.exit(failed ? 1 : 0);
  };
  process.once("SIGTERM", () => void run("SIGTERM"));
  process.once("SIGINT", () => void run("SIGINT"));
}
