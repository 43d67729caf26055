// `make test`: starts throwaway PostgreSQL, Redis and NATS JetStream, runs
// every *.test.ts with node's test runner against them, and stops them.
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { finished } from "node:stream/promises";
import { run } from "node:test";
import { spec, tap } from "node:test/reporters";
import { fileURLToPath } from "node:url";
import { failureLine } from "./failure-line.js";
import { PORT_CLAIMS_DIR_ENV } from "../free-port.js";
import { TEST_PHONES_DIR_ENV } from "./phones.js";
import { startNats, startPostgres, startRedis, type TestServer } from "./servers.js";
import { cpuAccountLine, machineCpu, readFileCpu, selfCpu, ServerCpuShares } from "./suite-cpu.js";
import { runTogether, splitBeside } from "./test-lanes.js";

const root = fileURLToPath(new URL("../../../../", import.meta.url));
const SEARCHED = ["proto", "services", "gateway", "platform", "charts", "apps", "sdk"];

function testFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...testFiles(full));
    else if (name.endsWith(".test.ts")) out.push(full);
  }
  return out;
}

const only = process.argv.slice(2);
const files = only.length
  ? only.map((f) => path.resolve(f))
  : SEARCHED.flatMap((d) => testFiles(path.join(root, d))).sort();

// `make test` names the Node it means to test on (24, the image's): a run on another one is refused, not passed.
const wantedMajor = process.env.TTIP_NODE_MAJOR;
if (wantedMajor && process.versions.node.split(".")[0] !== wantedMajor) {
  console.error(`TTIP_NODE_MAJOR=${wantedMajor} but this is node ${process.version}`);
  process.exit(1);
}
console.log(`node ${process.version}: ${files.length} test files`);
// The test files' processes start where the repository is, wherever this was started from.
process.chdir(root);

const servers: TestServer[] = [];
const reportDir = mkdtempSync(path.join(os.tmpdir(), "ttip-test-report-"));
// Each test file's process writes its CPU here at exit (file-cpu.ts, loaded into it below).
const cpuDir = path.join(reportDir, "cpu");
mkdirSync(cpuDir);
process.env.TTIP_TEST_CPU_DIR = cpuDir;
// Each file's process claims its test phone numbers here (phones.ts): never one number in two files.
const phonesDir = path.join(reportDir, "phones");
mkdirSync(phonesDir);
process.env[TEST_PHONES_DIR_ENV] = phonesDir;
const portsDir = path.join(reportDir, "ports");
mkdirSync(portsDir);
process.env[PORT_CLAIMS_DIR_ENV] = portsDir;
const FILE_CPU = fileURLToPath(new URL("./file-cpu.ts", import.meta.url));
const serverCpu = new ServerCpuShares();
const machineAtStart = machineCpu();
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

interface LaneResult {
  /** One line per failed test or hook: where, which, and the error's first lines (none: the lane passed). */
  failures: string[];
  tapFile: string;
  /** Wall time per file (absolute path), ms. */
  fileMs: Map<string, number>;
}

/**
 * Runs `list` with `concurrency` files at a time, each in its own process with this one's
 * flags (make test's SOURCE_HOOKS, or --import tsx), in the order given (node --test would sort them). The
 * timeout is per test (each file's process gets it as --test-timeout), not per file: the chart's cluster
 * test (a Kubernetes control plane, install, upgrade, rollback) takes about 3 minutes on two busy cores;
 * a hung test still fails within 6. `usesServers`: its files are charged a share of the test servers' CPU
 * (the beside lane's chart test talks to none of them).
 */
async function lane(name: string, list: string[], concurrency: number, usesServers: boolean): Promise<LaneResult> {
  const result: LaneResult = { failures: [], tapFile: path.join(reportDir, `${name}.tap`), fileMs: new Map() };
  const execArgv = ["--import", FILE_CPU];
  const stream = run({ files: list, concurrency, timeout: 360_000, signal: stop.signal, execArgv } as Parameters<typeof run>[0]);
  const isFile = (t: { nesting: number; file?: string; name: string }) => t.nesting === 0 && t.file && t.name === t.file;
  stream.on("test:fail", (t) => void (t.todo || result.failures.push(failureLine(t, root))));
  stream.on("test:dequeue", (t) => usesServers && isFile(t) && serverCpu.mark(t.file!, true));
  stream.on("test:complete", (t) => {
    if (!isFile(t)) return;
    result.fileMs.set(t.file!, t.details.duration_ms);
    if (usesServers) serverCpu.mark(t.file!, false);
  });
  const specOut = stream.compose(new spec());
  specOut.pipe(process.stdout);
  const tapOut = stream.compose(tap).pipe(createWriteStream(result.tapFile));
  await Promise.all([finished(specOut), finished(tapOut)]);
  return result;
}

/**
 * CPU seconds per file, the costliest first: its process with what it started and waited for,
 * plus its share of the test servers' (PostgreSQL, Redis, NATS). On two cores the suite's wall is
 * about the sum over 2 plus the waits, so this is where cuts pay. Every file, in a table.
 */
function printCpu(fileMs: Map<string, number>): void {
  const rows = [...readFileCpu(cpuDir).values()]
    .filter((c) => fileMs.has(c.file))
    .map((c) => ({ ...c, serversMs: serverCpu.msByFile.get(c.file) ?? 0, wallMs: fileMs.get(c.file) ?? 0 }))
    .map((c) => ({ ...c, totalMs: c.ownMs + c.childrenMs + c.serversMs }))
    .sort((a, b) => b.totalMs - a.totalMs);
  const s = (ms: number) => (ms / 1000).toFixed(1);
  const sum = (pick: (r: (typeof rows)[number]) => number) => rows.reduce((t, r) => t + pick(r), 0);
  console.log(`costliest files by CPU: ${rows.slice(0, 8).map((r) => `${path.relative(root, r.file)} ${s(r.totalMs)} s`).join(", ")}`);
  console.log("CPU s per file (total = own + started + servers' share; wall s):");
  for (const r of rows) {
    console.log(`  ${s(r.totalMs).padStart(6)} = ${s(r.ownMs)} + ${s(r.childrenMs)} + ${s(r.serversMs)}; wall ${s(r.wallMs)}  ${path.relative(root, r.file)}`);
  }
  console.log(`CPU s, all files: ${s(sum((r) => r.totalMs))} (own ${s(sum((r) => r.ownMs))}, started ${s(sum((r) => r.childrenMs))}, servers ${s(sum((r) => r.serversMs))}); this runner ${s(process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000)}`);
  const machineNow = machineCpu();
  if (!machineAtStart || !machineNow) return;
  const runner = selfCpu();
  const machine = { busyMs: machineNow.busyMs - machineAtStart.busyMs, nicedMs: machineNow.nicedMs - machineAtStart.nicedMs };
  const account = { machine, filesMs: sum((r) => r.totalMs), serversMs: serverCpu.totalMs(), runnerChildrenMs: runner.waitedMs, runnerOwnMs: runner.ownMs };
  console.log(cpuAccountLine(account, sum((r) => r.ownMs + r.childrenMs)));
}

/** Promise.all that waits for every promise to settle before throwing the first failure. */
async function settledOrThrow<T extends readonly unknown[]>(promises: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> };
}

/** Test files the pooled lane runs at once (each its own process). */
const POOLED_FILES_AT_ONCE = 3;
let exitCode = 1;
let besideLane: Promise<LaneResult> | undefined;
try {
  // Files that wait on other processes more than they compute (the chart's cluster test:
  // about 40 s of CPU in its 3 minutes) need neither the web build nor the test servers:
  // they start now, in a lane of their own, beside the build and then the two lanes below.
  const [beside, pooled] = splitBeside(files, root);
  besideLane = beside.length ? lane("beside", beside, 1, false) : undefined;
  besideLane?.catch(() => undefined); // awaited below; a failure before then is not unhandled
  // The platform's tests serve the web app: build it once here (reused until its
  // sources change) rather than in parallel test files. The test servers start beside it
  // (initdb alone is seconds of waiting on a busy machine).
  const { ensureWebBuild } = await import("@ttip/web");
  const since = Date.now();
  const seconds = () => `${((Date.now() - since) / 1000).toFixed(0)} s`;
  const started = <T extends TestServer>(server: T) => (servers.push(server), server);
  // Every start is awaited before a failure is thrown: a server still starting when the build (or
  // another server) failed would otherwise come up after the cleanup below and outlive this run.
  const [pg, redis, nats] = await settledOrThrow([
    settledOrThrow([startPostgres().then(started), startRedis().then(started), startNats().then(started)]).then((up) => (console.log(`test servers up after ${seconds()}`), up)),
    ensureWebBuild((line) => console.log(line)).then(() => console.log(`web build current after ${seconds()}`)),
  ] as const).then(([up]) => up);
  serverCpu.watch(servers.map((s) => s.pid));
  console.log(`test servers: postgres pid ${pg.pid}, redis pid ${redis.pid}, nats pid ${nats.pid}`);
  // Services the tests start in-process may generate a development QR signing key (a pod may not),
  // and send partner webhooks to receivers on loopback (the sandbox's setting; never production's).
  Object.assign(process.env, { TEST_DATABASE_URL: pg.url, TEST_REDIS_URL: redis.url, TEST_NATS_URL: nats.url, QR_ALLOW_DEV_SIGNING_KEY: "true", AUTH_WEBHOOK_ALLOW_LOOPBACK: "true" });
  // Three files at a time: with two, a quiet 2-core machine sat 46% idle through the pooled lane (a file's
  // processes mostly wait on servers, timers and the browser), so the idle time was make test's wall.
  const lanes = await Promise.all([lane("pooled", runTogether(pooled, root), POOLED_FILES_AT_ONCE, true), ...(besideLane ? [besideLane] : [])]);
  exitCode = lanes.some((l) => l.failures.length > 0) || stop.signal.aborted ? 1 : 0;
  // The closing lines CI reads, from the TAP summaries of all files together.
  const count = (name: string) =>
    lanes.reduce((sum, l) => sum + Number(new RegExp(`^# ${name} (\\d+)$`, "m").exec(readFileSync(l.tapFile, "utf8"))?.[1] ?? 0), 0);
  const fileMs = new Map(lanes.flatMap((l) => [...l.fileMs]));
  // Where the time went, for whoever makes the suite quicker next.
  const slowest = [...fileMs].sort((a, b) => b[1] - a[1]).slice(0, 8);
  console.log(`slowest files: ${slowest.map(([f, ms]) => `${path.relative(root, f)} ${(ms / 1000).toFixed(0)} s`).join(", ")}`);
  printCpu(fileMs);
  const failures = lanes.flatMap((l) => l.failures);
  if (failures.length) console.log(`failed (${failures.length}):\n${failures.slice(0, 20).map((f) => `  ${f}`).join("\n")}`);
  const summary = `${count("pass")} passed, ${count("fail") + count("cancelled")} failed`;
  console.log(summary);
  // make test prints the type-check's output after this, then this line again: CI reads the last line.
  if (process.env.TTIP_TEST_SUMMARY_FILE) writeFileSync(process.env.TTIP_TEST_SUMMARY_FILE, `${summary}\n`);
} catch (err) {
  console.error((err as Error).message);
  stop.abort();
} finally {
  await besideLane?.catch(() => undefined);
  await Promise.allSettled(servers.map((s) => s.stop()));
  rmSync(reportDir, { recursive: true, force: true });
}
process.exit(exitCode);
