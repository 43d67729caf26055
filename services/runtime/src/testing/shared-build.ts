// A build that test files running in parallel share: the first to ask makes it while the others
// wait, and it becomes visible only whole (made aside, then renamed into place), so no reader
// ever sees half of one. Kept until removed: its name should carry a hash of what it is built from.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { withBuildLock } from "../build-lock.js";

/** A build killed halfway leaves its lock: one older than this is taken over (the platform's bundle takes 10-60 s). */
const STALE_LOCK_MS = 5 * 60_000;

export interface SharedBuildOptions {
  /** Older than this, a lock is taken as left by a killed build. */
  staleLockMs?: number;
}

/**
 * The directory `dir`, made by `build(aside)` unless it exists: `build` fills a directory of its
 * own, renamed to `dir` when it resolves. One build at a time per `dir` (a lock beside it).
 */
export async function sharedBuild(dir: string, build: (aside: string) => Promise<void>, options: SharedBuildOptions = {}): Promise<string> {
  if (existsSync(dir)) return dir;
  mkdirSync(path.dirname(dir), { recursive: true });
  return withBuildLock(`${dir}.lock`, async () => {
    if (existsSync(dir)) return dir;
    const aside = `${dir}.${process.pid}.tmp`;
    rmSync(aside, { recursive: true, force: true });
    try {
      await build(aside);
      renameSync(aside, dir);
    } catch (err) {
      // A build slower than the stale bound had its lock taken over, and the other's may have
      // landed first (a rename onto it fails): that one is whole, and taken.
      if (!existsSync(dir)) throw err;
    } finally {
      rmSync(aside, { recursive: true, force: true });
    }
    return dir;
  }, { staleMs: options.staleLockMs ?? STALE_LOCK_MS });
}

/**
 * Removes what is in `parent` besides `keep` and was last changed more than `olderThanMs` ago:
 * earlier sources' builds, and what a killed build left (its lock, its half-made directory).
 */
export function removeOldBuilds(parent: string, keep: string, olderThanMs: number): void {
  for (const name of readdirSync(parent)) {
    const p = path.join(parent, name);
    if (p === keep) continue;
    const stat = statSync(p, { throwIfNoEntry: false });
    if (stat && Date.now() - stat.mtimeMs > olderThanMs) rmSync(p, { recursive: true, force: true });
  }
}
