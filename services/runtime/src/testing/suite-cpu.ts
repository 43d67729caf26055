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
  private first = 0;
  private last = 0;
  private readonly running = new Set<string>();
  readonly msByFile = new Map<string, number>();

  watch(pids: number[]): void {
    this.pids = pids;
    this.first = this.last = treeCpuMs(pids);
  }

  /** All the servers' CPU since `watch`, ms (call before they stop). */
  totalMs(): number {
    return this.pids.length ? treeCpuMs(this.pids) - this.first : 0;
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

/** The whole machine's CPU from /proc/stat's first line, ms: busy (every state but idle and iowait) and its niced part. */
export interface MachineCpu {
  busyMs: number;
  nicedMs: number;
}

export function machineCpu(): MachineCpu | undefined {
  try {
    const [user, nice, system, , , irq, softirq, steal] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const ms = (ticks: number) => (ticks * 1000) / TICKS_PER_SECOND;
    return { busyMs: ms(user + nice + system + irq + softirq + steal), nicedMs: ms(nice) };
  } catch {
    return undefined;
  }
}

/** This process's own CPU and that of the children it waited for (the test files' processes, the web build), ms. */
export function selfCpu(): { ownMs: number; waitedMs: number } {
  const s = stat(process.pid);
  return s ? { ownMs: s.ownMs, waitedMs: s.waitedMs } : { ownMs: 0, waitedMs: 0 };
}

export interface CpuAccount {
  /** The machine's busy CPU over the run (everyone's: on a shared machine other users' too), of which niced. */
  machine: MachineCpu;
  /** The per-file figures' sum: the files' processes, what they waited for, and the servers' shares. */
  filesMs: number;
  /** The shared servers' CPU in all (their share in filesMs included). */
  serversMs: number;
  /** The runner's children it waited for (test files' processes, the web build, initdb), and its own. */
  runnerChildrenMs: number;
  runnerOwnMs: number;
}

/**
 * Where the machine's CPU over the run went, as one line. "Elsewhere" is what no figure above holds:
 * processes nobody waited for (a file's orphans, chromium's helpers it did not reap), the niced
 * type-check beside the tests, and, on a shared machine, everyone else's work.
 */
export function cpuAccountLine(a: CpuAccount, filesOwnAndStartedMs: number): string {
  const s = (ms: number) => (ms / 1000).toFixed(0);
  const unreported = Math.max(0, a.runnerChildrenMs - filesOwnAndStartedMs);
  const elsewhere = a.machine.busyMs - a.runnerChildrenMs - a.runnerOwnMs - a.serversMs;
  return (
    `machine CPU over the run: ${s(a.machine.busyMs)} s (niced ${s(a.machine.nicedMs)} s); per-file sum ${s(a.filesMs)} s; ` +
    `servers ${s(a.serversMs)} s in all; waited for by this runner ${s(a.runnerChildrenMs)} s (${s(unreported)} s of it not in a file's figure: ` +
    `the web build, initdb, files that died unreported); this runner ${s(a.runnerOwnMs)} s; ` +
    `unaccounted ${s(elsewhere)} s (orphaned processes, the niced type-check, other users of the machine)`
  );
}
