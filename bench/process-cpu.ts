// CPU time of processes, from /proc: the benches' figures per process
// (the platform, PostgreSQL with its backends, NATS, Redis).
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const CLOCK_TICK_MS = 1000 / Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim() || 100);

/** CPU time (user + system, ms) of each process, and of a process with its children (a postmaster's backends). */
export function cpuMs(pids: Map<string, number>, withChildren: Set<string>): Map<string, number> {
  const stats = new Map<number, { ppid: number; ms: number }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      stats.set(Number(entry), processStat(entry));
    } catch {
      // exited meanwhile
    }
  }
  const out = new Map<string, number>();
  for (const [name, pid] of pids) {
    let ms = stats.get(pid)?.ms ?? 0;
    if (withChildren.has(name)) for (const s of stats.values()) if (s.ppid === pid) ms += s.ms;
    out.set(name, ms);
  }
  return out;
}

/** CPU time (user + system, ms) of one process alone. */
export function processCpuMs(pid: number): number {
  return processStat(pid).ms;
}

function processStat(pid: number | string): { ppid: number; ms: number } {
  // Fields after the command's closing parenthesis: state ppid ... utime(14) stime(15).
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return { ppid: Number(f[1]), ms: (Number(f[11]) + Number(f[12])) * CLOCK_TICK_MS };
}
