// One build of a tree at a time across processes: test files run in parallel, `make run` beside
// `make test`. Two builders swapping the same directory in would each remove the other's, and a
// reader between the two would find files gone.
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";

export interface BuildLockOptions {
  /** A lock not touched for this long was left by a killed build and is taken over. */
  staleMs: number;
  /** How often a waiting process looks again. */
  pollMs?: number;
}

/**
 * Runs `work` holding the lock directory `lock` (mkdir is atomic), waiting while another process
 * holds it. `work` should look again whether its build is current: the holder before may have made it.
 * The holder touches the lock while it works, so a slow build is never taken for a killed one, and
 * removes it only while it is still its own.
 */
export async function withBuildLock<T>(lock: string, work: () => Promise<T>, { staleMs, pollMs = 250 }: BuildLockOptions): Promise<T> {
  const owner = randomUUID();
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(path.join(lock, "owner"), owner);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const held = statSync(lock, { throwIfNoEntry: false });
      if (held && Date.now() - held.mtimeMs > staleMs) rmSync(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }
  const touch = setInterval(() => {
    const now = new Date();
    try {
      if (ownerOf(lock) === owner) utimesSync(lock, now, now);
    } catch {
      // Taken over and removed meanwhile (this process stalled past staleMs): nothing of ours to touch.
    }
  }, Math.max(10, Math.floor(staleMs / 4)));
  touch.unref();
  try {
    return await work();
  } finally {
    clearInterval(touch);
    if (ownerOf(lock) === owner) rmSync(lock, { recursive: true, force: true });
  }
}

function ownerOf(lock: string): string | undefined {
  try {
    return readFileSync(path.join(lock, "owner"), "utf8");
  } catch {
    return undefined;
  }
}
