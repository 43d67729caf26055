// Which sockets a tip's writes go to: bench/tip-e2e.ts run under strace, its
// socket writes (write, writev, sendto, sendmsg: each a system call that wakes
// the peer) counted per tip by connection, the client's and the server's side
// apart: PostgreSQL, NATS, Redis, the HTTP/2 calls (customers to the gateway,
// between services in cluster mode) and the simulators' HTTP/1.1 legs.
//   node --max-semi-space-size=32 --import tsx bench/socket-writes.ts [seconds=10] [concurrency=16] [process|cluster]
// Needs strace (Debian's package). Tips are the STK pushes sent in tip-e2e's counted run. Under strace
// each write is slower: the counts are the figure, not the rates (a slower run coalesces a little more).
// The trace goes to a temporary file, removed afterwards (BENCH_KEEP_TRACE=1 keeps it and says where).
import { spawn, spawnSync } from "node:child_process";
import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const seconds = Number(process.argv[2] ?? 10);
const concurrency = Number(process.argv[3] ?? 16);
const mode = process.argv[4] === "cluster" ? "cluster" : "process";

if (spawnSync("strace", ["-V"]).status !== 0) {
  console.error("strace is not installed (apt-get install strace)");
  process.exit(1);
}

const dir = mkdtempSync(path.join(os.tmpdir(), "ttip-socket-writes-"));
const traceFile = path.join(dir, "trace");
// Removed however the run ends (a trace is large), unless asked to keep it.
process.once("exit", () => {
  if (process.env.BENCH_KEEP_TRACE !== "1") rmSync(dir, { recursive: true, force: true });
});
const tipE2e = fileURLToPath(new URL("./tip-e2e.ts", import.meta.url));
// -f: the platform's processes in cluster mode, and PostgreSQL's, NATS's and Redis's; --seccomp-bpf stops
// only on the traced calls; -yy names each socket by its addresses; -ttt stamps the calls (the run's window).
// bind, execve and clone name the processes and their listening ports.
const strace = spawn(
  "strace",
  ["-f", "--seccomp-bpf", "-ttt", "-yy", "-s", "64", "-e", "trace=write,writev,sendto,sendmsg,bind,execve,clone,clone3,fork,vfork", "-o", traceFile,
    process.execPath, ...process.execArgv, tipE2e, String(seconds), String(concurrency), "50", mode],
  { stdio: ["ignore", "pipe", "inherit"] },
);
/** The warm-up's end (tip-e2e says so), seconds since the epoch: the counted run's STK pushes come after it. */
let warmedUp = Number.NaN;
createInterface({ input: strace.stdout! }).on("line", (line) => {
  if (Number.isNaN(warmedUp) && line.startsWith("warmed up")) warmedUp = Date.now() / 1000;
  console.log(line);
});
await new Promise((resolve) => strace.once("close", resolve));
if (Number.isNaN(warmedUp)) throw new Error("tip-e2e did not say it had warmed up (BENCH_WARMUP must not be 0)");

interface Call {
  tid: number;
  time: number;
  name: string;
  rest: string;
}
const CALL = /^(\d+)\s+([\d.]+)\s+(?:<\.\.\. )?(\w+)(?: resumed>)?(.*)$/;

async function* calls(file: string): AsyncGenerator<Call> {
  for await (const line of createInterface({ input: createReadStream(file) })) {
    const m = CALL.exec(line);
    if (m) yield { tid: Number(m[1]), time: Number(m[2]), name: m[3], rest: m[4] };
  }
}

/** Processes: a thread's process, a process's parent and what it runs (its last execve). */
const processOf = new Map<number, number>();
const parentOf = new Map<number, number>();
const programOf = new Map<number, string>();
/** Listening ports by the process that bound them (a port 0 bound names none: its server is found by what it sends). */
const portOwner = new Map<number, number>();
const pendingClone = new Map<number, boolean>();

/**
 * What a process runs, in a word: a service's name (main.ts <name>), the bench's own processes by their
 * script (tip-customers, edge-simulators-process), postgres, nats, redis, pgbench; from an execve's
 * arguments (`rest`: the program's path, then its argv, whose strings strace cuts at 64 characters).
 */
function program(rest: string): string {
  const exe = /^\("((?:[^"\\]|\\.)*)"/.exec(rest)?.[1] ?? "?";
  const argv = rest.slice(rest.indexOf("["), rest.indexOf("]") + 1);
  const args = [...argv.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
  const main = args.findIndex((a) => a.endsWith("main.ts"));
  if (main >= 0) return args[main + 1] ?? "main";
  if (args.some((a) => a.endsWith("tip-e2e.ts"))) return mode === "process" ? "platform" : "bench";
  const script = args.find((a) => a.endsWith(".ts"));
  if (script) return path.basename(script, ".ts");
  const name = path.basename(exe);
  return name === "nats-server" ? "nats" : name === "redis-server" ? "redis" : name;
}

/** A write that starts an STK push (one per tip), in the trace's first bytes of it. */
const STK_PUSH = /^\(\d+<TCP(?:v6)?:\[.*?\]>, \[?\{?(?:iov_base=)?"POST \/mpesa\/stkpush/;
/** The counted run: its first and last STK push, and how many were sent. */
const run = { first: Number.POSITIVE_INFINITY, last: 0, tips: 0 };

/** A write to a TCP socket: from which port to which, and its first bytes. */
const WRITE = /^\(\d+<TCP(?:v6)?:\[(.+?):(\d+)->(.+?):(\d+)\]>, (?:\[\{iov_base=)?(.*)$/;
/** Each side's first bytes on a connection (its whole life: a protocol is told by how it begins), by "from-to" ports. */
const firstBytes = new Map<string, string>();

function readCall(call: Call): void {
  if (/^(write|writev|sendto|sendmsg)$/.test(call.name)) {
    const m = WRITE.exec(call.rest);
    if (!m) return;
    const side = `${m[2]}-${m[4]}`;
    if (!firstBytes.has(side)) firstBytes.set(side, m[5].slice(0, 80));
    if (call.time > warmedUp && STK_PUSH.test(call.rest)) {
      run.first = Math.min(run.first, call.time);
      run.last = Math.max(run.last, call.time);
      run.tips++;
    }
    return;
  }
  if (call.name === "execve" && !call.rest.includes("ENOENT") && /^\("/.test(call.rest)) {
    programOf.set(call.tid, program(call.rest));
    return;
  }
  if (call.name === "bind") {
    const port = /sin6?_port=htons\((\d+)\)/.exec(call.rest)?.[1];
    // The last to bind a port owns it (a port found free by one process is then bound by another);
    // a bind another thread's call interrupted ("<unfinished ...>") is taken as done.
    if (port && port !== "0" && (/= 0$/.test(call.rest) || call.rest.includes("<unfinished ...>"))) portOwner.set(Number(port), call.tid);
    return;
  }
  if (!/^(clone3?|fork|vfork)$/.test(call.name)) return;
  // A clone's child id comes with its result, on the resumed line when another thread's call came between.
  const thread = call.rest.includes("CLONE_THREAD") || (pendingClone.get(call.tid) ?? false);
  const child = /\) = (\d+)$/.exec(call.rest)?.[1] ?? /^\s*= (\d+)$/.exec(call.rest)?.[1];
  if (call.rest.includes("<unfinished ...>")) return void pendingClone.set(call.tid, thread);
  pendingClone.delete(call.tid);
  if (!child) return;
  if (thread) processOf.set(Number(child), call.tid);
  else parentOf.set(Number(child), call.tid);
}

function processOfTid(tid: number): number {
  let p = tid;
  for (let i = 0; i < 100 && processOf.has(p); i++) p = processOf.get(p)!;
  return p;
}

function nameOf(tid: number): string {
  let p = processOfTid(tid);
  for (let i = 0; i < 100; i++) {
    const name = programOf.get(p);
    if (name) return name;
    const parent = parentOf.get(p);
    if (parent === undefined) return `pid ${p}`;
    p = processOfTid(parent);
  }
  return `pid ${p}`;
}

for await (const call of calls(traceFile)) readCall(call);

/** A connection's writes and writer (a thread) by the port written from. */
interface Connection {
  ports: [number, number];
  writes: Map<number, number>;
  writer: Map<number, number>;
}
const connections = new Map<string, Connection>();
// From the run's first STK push to its last: at a steady rate the earlier tips' work before
// the window (their CreateTip) and the last ones' after it (callbacks, events) even out.
const tips = run.tips;
for await (const call of calls(traceFile)) {
  if (call.time < run.first || call.time > run.last || !/^(write|writev|sendto|sendmsg)$/.test(call.name)) continue;
  const m = WRITE.exec(call.rest);
  if (!m) continue;
  const from = Number(m[2]);
  const to = Number(m[4]);
  const key = from < to ? `${from}-${to}` : `${to}-${from}`;
  let c = connections.get(key);
  if (!c) connections.set(key, (c = { ports: [Math.min(from, to), Math.max(from, to)], writes: new Map(), writer: new Map() }));
  c.writes.set(from, (c.writes.get(from) ?? 0) + 1);
  c.writer.set(from, call.tid);
}

/** The request line's method and first two path segments, as sent (an HTTP/1.1 client's first write). */
const HTTP1_REQUEST = /^"(GET|POST|PUT|PATCH|DELETE|HEAD) (\/[^/ ?]*(?:\/[^/ ?]*)?)/;

/** A connection's server side (its port), its protocol, and a label for both. */
function describe(c: Connection): { server: number; client: number; label: string } | undefined {
  const [a, b] = c.ports;
  const owned = portOwner.has(a) ? a : portOwner.has(b) ? b : undefined;
  const firstOf = (port: number) => firstBytes.get(port === a ? `${a}-${b}` : `${b}-${a}`) ?? "";
  const requester = [a, b].find((p) => HTTP1_REQUEST.test(firstOf(p)) || firstOf(p).startsWith('"PRI * HTTP/2.0'));
  const server = owned ?? (requester === undefined ? undefined : requester === a ? b : a);
  if (server === undefined) return undefined;
  const client = server === a ? b : a;
  const serverName = portOwner.has(server) ? nameOf(portOwner.get(server)!) : c.writer.has(server) ? nameOf(c.writer.get(server)!) : "?";
  const clientName = c.writer.has(client) ? nameOf(c.writer.get(client)!) : "?";
  const request = HTTP1_REQUEST.exec(firstOf(client));
  const protocol = request ? `HTTP/1.1 ${request[1]} ${request[2]}` : firstOf(client).startsWith('"PRI * HTTP/2.0') || /^"\\0\\0/.test(firstOf(client)) ? "HTTP/2" : "";
  const peer = ["postgres", "nats", "redis"].includes(serverName) ? serverName : `${serverName} :${server}${protocol ? ` ${protocol}` : ""}`;
  return { server, client, label: `${clientName} -> ${peer}` };
}

const rows = new Map<string, { client: number; server: number; connections: number; clientName: string; serverName: string }>();
let undescribed = 0;
for (const c of connections.values()) {
  const d = describe(c);
  if (!d) {
    undescribed += [...c.writes.values()].reduce((s, n) => s + n, 0);
    continue;
  }
  const row = rows.get(d.label) ?? { client: 0, server: 0, connections: 0, clientName: "", serverName: "" };
  row.client += c.writes.get(d.client) ?? 0;
  row.server += c.writes.get(d.server) ?? 0;
  row.connections++;
  row.clientName = c.writer.has(d.client) ? nameOf(c.writer.get(d.client)!) : "?";
  row.serverName = c.writer.has(d.server) ? nameOf(c.writer.get(d.server)!) : "?";
  rows.set(d.label, row);
}

const per = (n: number) => (n / Math.max(1, tips)).toFixed(2).padStart(7);
/** Processes that are not the platform's: its servers, pgbench, the customers, the simulators, the bench in cluster mode. */
const SERVERS = new Set(["postgres", "nats", "redis", "pgbench", "tip-customers", "edge-simulators-process", "bench"]);
console.log(`\nsocket writes per tip (write, writev, sendto, sendmsg on TCP sockets, under strace), ${tips} tips (STK pushes) sent over ${(run.last - run.first).toFixed(1)} s of the run:`);
console.log(`  ${"client -> server (its port, protocol)".padEnd(72)} ${"client".padStart(7)} ${"server".padStart(7)}  connections`);
for (const [label, row] of [...rows].sort((x, y) => y[1].client + y[1].server - (x[1].client + x[1].server))) {
  if (row.client + row.server < tips / 100) continue; // under 0.01 per tip
  console.log(`  ${label.padEnd(72)} ${per(row.client)} ${per(row.server)}  ${row.connections}`);
}
// By each connection's writers (a row's names are its last connection's): a process not named (its start
// not seen) is counted apart, never as the platform's.
let platform = 0;
let unnamed = 0;
for (const c of connections.values()) {
  for (const [port, n] of c.writes) {
    const name = nameOf(c.writer.get(port)!);
    if (name.startsWith("pid ")) unnamed += n;
    else if (!SERVERS.has(name)) platform += n;
  }
}
const apart = [undescribed ? `not attributed to a connection: ${per(undescribed).trim()}` : "", unnamed ? `by processes not named: ${per(unnamed).trim()}` : ""].filter(Boolean).join("; ");
console.log(`  the platform's node processes' writes per tip (both sides of its own connections): ${per(platform).trim()}${apart ? `; ${apart}` : ""}`);

if (process.env.BENCH_KEEP_TRACE === "1") console.log(`  trace kept in ${traceFile}`);
