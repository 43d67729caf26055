import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";

/** A reason the process cannot start that a person fixes (no stack trace needed): printed as is. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartupError";
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, owned by someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes `lockFile` for this process (its PID inside), or throws a
 * StartupError naming the process that holds it. A lock whose process is
 * gone (a crash, a kill -9) is stale and taken over. Returns the release.
 */
export function acquireLock(lockFile: string, what: string): () => void {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(lockFile, "wx");
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        process.removeListener("exit", release);
        try {
          if (Number(readFileSync(lockFile, "utf8").trim()) === process.pid) unlinkSync(lockFile);
        } catch {
          // already gone
        }
      };
      process.once("exit", release);
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let owner = NaN;
      try {
        owner = Number(readFileSync(lockFile, "utf8").trim());
      } catch {
        continue; // removed meanwhile: try again
      }
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
        throw new StartupError(
          `${what} is in use by another TTIP (process ${owner}). Stop that one first, or give this one its own folder with DATA_DIR (DATA_DIR=memory keeps nothing).`,
        );
      }
      if (owner === process.pid) {
        throw new StartupError(`${what} is already open in this process.`);
      }
      try {
        unlinkSync(lockFile); // stale: its process is gone
      } catch {
        // someone else took it over first
      }
    }
  }
  throw new StartupError(`could not lock ${what}: another process keeps taking it`);
}
