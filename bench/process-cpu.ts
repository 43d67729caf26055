// CPU time of processes, from /proc: the benches' figures per process
// (the platform, PostgreSQL with its backends, NATS, Redis), and of a node
// process's threads by what they do.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { readlink } from "node:fs/promises";

/** One clock tick (a jiffy of /proc/stat and /proc/<pid>/stat) in ms. */
export const CLOCK_TICK_MS = 1000 / Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim() || 100);

/**
 * CPU time (user + system, ms) of each process, and of a process with its children (a postmaster's
 * backends): the live ones' and the exited ones' its parent has reaped (its cutime and cstime).
 * Without the exited ones, a backend that ended inside a window (an autovacuum worker, a
 * connection closed) took its whole CPU time off the window's difference.
 */
export function cpuMs(pids: Map<string, number>, withChildren: Set<string>): Map<string, number> {
  const stats = new Map<number, { ppid: number; ms: number; reapedMs: number }>();
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
    if (withChildren.has(name)) {
      ms += stats.get(pid)?.reapedMs ?? 0;
      for (const s of stats.values()) if (s.ppid === pid) ms += s.ms;
    }
    out.set(name, ms);
  }
  return out;
}

/** CPU time (user + system, ms) of each live child of `parent`, by pid. */
export function childrenCpuMs(parent: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const s = processStat(entry);
      if (s.ppid === parent) out.set(Number(entry), s.ms);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** CPU time (user + system, ms) of one process alone. */
export function processCpuMs(pid: number): number {
  return processStat(pid).ms;
}

function processStat(pid: number | string): { ppid: number; ms: number; reapedMs: number } {
  return parseStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
}

/**
 * A /proc stat line: the name in parentheses (it may hold ") "), then state ppid ... utime(14)
 * stime(15) cutime(16) cstime(17) (the last two: its exited children's, once it waited for them).
 */
function parseStat(line: string): { name: string; ppid: number; ms: number; reapedMs: number } {
  const close = line.lastIndexOf(")");
  const f = line.slice(close + 2).split(" ");
  return {
    name: line.slice(line.indexOf("(") + 1, close), ppid: Number(f[1]),
    ms: (Number(f[11]) + Number(f[12])) * CLOCK_TICK_MS, reapedMs: (Number(f[13]) + Number(f[14])) * CLOCK_TICK_MS,
  };
}

/** What a node process's threads do; a thread that exited is left in its process's total only. */
export const THREAD_KINDS = {
  main: "event loop",
  v8: "V8 background (compile, GC)",
  pool: "libuv pool",
  worker: "worker threads",
} as const;

/**
 * CPU time (user + system, ms) of a node process's threads, summed by what they do. Node 22 and
 * later name them (MainThread, V8Worker, libuv-worker, WorkerThread); Node 20 names none, so there
 * `known` says which are the pool's (libuvPoolThreads) or a worker's (threadId), the main thread is
 * the process's id, and the rest are V8's platform threads (compile, GC) with node's idle helpers.
 */
export function threadCpuMs(pid: number, known = new Map<number, string>()): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out; // exited
  }
  for (const tid of tids) {
    let stat;
    try {
      stat = parseStat(readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8"));
    } catch {
      continue; // exited meanwhile
    }
    const kind = known.get(Number(tid)) ?? threadKind(Number(tid) === pid, stat.name);
    out.set(kind, (out.get(kind) ?? 0) + stat.ms);
  }
  return out;
}

function threadKind(isMain: boolean, name: string): string {
  if (isMain || name === "MainThread") return THREAD_KINDS.main;
  if (name === "libuv-worker") return THREAD_KINDS.pool;
  if (name === "WorkerThread") return THREAD_KINDS.worker;
  return THREAD_KINDS.v8; // V8Worker, DelayedTaskSche(duler), SignalInspector; all of them unnamed on Node 20
}

/** The calling thread's id (a worker thread's own, where process.pid is the process's). */
export function threadId(): number {
  return Number(readlinkSync("/proc/thread-self").split("/").pop());
}

/**
 * The ids of this process's libuv pool threads: readlink of /proc/thread-self runs on a pool
 * thread and names it. Rounds of concurrent calls until every one of UV_THREADPOOL_SIZE answered
 * (at most 100 rounds: a pool busy elsewhere may leave some unfound, counted then as V8's).
 */
export async function libuvPoolThreads(): Promise<Set<number>> {
  const size = Number(process.env.UV_THREADPOOL_SIZE || 4);
  const found = new Set<number>();
  for (let round = 0; round < 100 && found.size < size; round++) {
    const links = await Promise.all(Array.from({ length: size * 4 }, () => readlink("/proc/thread-self")));
    for (const link of links) found.add(Number(link.split("/").pop()));
  }
  return found;
}

/**
 * This process's CPU microseconds (user + system) per call of `f`, called in
 * batches of 200 for about `ms` of wall time: a small function's price that a
 * loaded machine's waiting does not inflate.
 */
export function cpuMicrosPerCall(f: () => unknown, ms: number): number {
  let n = 0;
  const t0 = process.cpuUsage();
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    for (let i = 0; i < 200; i++) f();
    n += 200;
  }
  const used = process.cpuUsage(t0);
  return (used.user + used.system) / n;
}

/**
 * A process's write system calls and bytes written so far (/proc/<pid>/io's syscw and wchar): every
 * socket's and file's, so for a platform process its calls' frames, its statements, its bus and its cache.
 */
export function processWrites(pid: number): { writes: number; bytes: number } {
  const io = readFileSync(`/proc/${pid}/io`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, "m").exec(io)?.[1] ?? NaN);
  return { writes: field("syscw"), bytes: field("wchar") };
}
