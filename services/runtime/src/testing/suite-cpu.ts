// Where the suite's CPU goes, for run-tests.ts's closing lines: each test file's own process and
// what it started (file-cpu.ts writes those at the file's exit), and its share of the shared test
// servers' CPU (PostgreSQL's backends, Redis, NATS), split evenly among the files running at the time.
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import type { FileCpu } from "./file-cpu.js";

const TICKS_PER_SECOND = 100;

/** utime, stime, cutime, cstime and ppid of one process, or undefined once it is gone. */
function stat(pid: number): { ppid: number; ownMs: number; waitedMs: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    const ms = (ticks: string) => (Number(ticks) * 1000) / TICKS_PER_SECOND;
    return { ppid: Number(f[1]), ownMs: ms(f[11]) + ms(f[12]), waitedMs: ms(f[13]) + ms(f[14]) };
  } catch {
    return undefined;
  }
}

/** CPU so far of `pids` and their live children (PostgreSQL's backends), ms; ended children count through cutime. */
function treeCpuMs(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    const s = stat(pid);
    if (s) total += s.ownMs + s.waitedMs;
  }
  let procs: string[] = [];
  try {
    procs = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return total;
  }
  for (const name of procs) {
    const s = stat(Number(name));
    if (s && pids.includes(s.ppid)) total += s.ownMs + s.waitedMs;
  }
  return total;
}

/** The shared servers' CPU, charged to the files running while it was spent. */
export class ServerCpuShares {
  private pids: number[] = [];
  private last = 0;
  private readonly running = new Set<string>();
  readonly msByFile = new Map<string, number>();

  watch(pids: number[]): void {
    this.pids = pids;
    this.last = treeCpuMs(pids);
  }

  /** Call as `file` starts (true) or ends (false). */
  mark(file: string, started: boolean): void {
    if (this.pids.length) {
      const now = treeCpuMs(this.pids);
      const spent = now - this.last;
      this.last = now;
      for (const f of this.running) this.msByFile.set(f, (this.msByFile.get(f) ?? 0) + spent / this.running.size);
    }
    if (started) this.running.add(file);
    else this.running.delete(file);
  }
}

/** The figures file-cpu.ts wrote in `dir`, summed per test file. */
export function readFileCpu(dir: string): Map<string, FileCpu> {
  const out = new Map<string, FileCpu>();
  for (const name of readdirSync(dir)) {
    const cpu = JSON.parse(readFileSync(path.join(dir, name), "utf8")) as FileCpu;
    const sum = out.get(cpu.file) ?? { file: cpu.file, ownMs: 0, childrenMs: 0 };
    out.set(cpu.file, { file: cpu.file, ownMs: sum.ownMs + cpu.ownMs, childrenMs: sum.childrenMs + cpu.childrenMs });
  }
  return out;
}
