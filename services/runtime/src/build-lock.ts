// One build of a tree at a time across processes: test files run in parallel, `make run` beside
// `make test`. Two builders swapping the same directory in would each remove the other's, and a
// reader between the two would find files gone.
import { mkdirSync, rmSync, statSync } from "node:fs";

export interface BuildLockOptions {
  /** A lock older than this was left by a killed build and is taken over: well above the build's longest run. */
  staleMs: number;
  /** How often a waiting process looks again. */
  pollMs?: number;
}

/**
 * Runs `work` holding the lock directory `lock` (mkdir is atomic), waiting while another process
 * holds it. `work` should look again whether its build is current: the holder before may have made it.
 */
export async function withBuildLock<T>(lock: string, work: () => Promise<T>, { staleMs, pollMs = 250 }: BuildLockOptions): Promise<T> {
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const held = statSync(lock, { throwIfNoEntry: false });
      if (held && Date.now() - held.mtimeMs > staleMs) rmSync(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }
  try {
    return await work();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
