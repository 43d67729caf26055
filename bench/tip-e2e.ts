// Tips end to end through the gateway, as customers' phones make them (in a
// process of their own, bench/tip-customers.ts): Connect
// (HTTP/2) CreateTip for a scanned QR code -> payment resolves it with qr,
// quotes with wallet, sends the STK push to the Daraja simulator -> the
// simulator's callback (delay 0) -> SUCCEEDED and the wallet entry posted ->
// tip_succeeded through the outbox and JetStream to notification (an SMS to the
// worker), qr and analytics. All services and the gateway run in this
// process on a durable PostgreSQL (fsync on), NATS JetStream and Redis.
// The simulators (Daraja, the OTP SMS, notification's providers) run in a process
// of their own (bench/edge-simulators.ts), as Safaricom and the providers are not
// on our machines: their CPU per tip is printed apart and is not the platform's.
// Then pgbench's TPC-B on the same PostgreSQL, as a yardstick for the machine.
//   node --max-semi-space-size=32 --import tsx bench/tip-e2e.ts [seconds=10] [concurrency=16,64] [workers=50] [process|cluster|replicas[:N]|split[:a+b]]
//   (the platform's node flag, as `npm start` and the image run it: deploy/Dockerfile says why; the
//   platform's processes in cluster and replicas modes get this process's flags. The image's Node is 24:
//   "$(bash deploy/node24/install.sh)" instead of node; Node 20 took 1.4-1.7x its CPU per tip here.)
//   "cluster" runs each service and the gateway in its own OS process (platform/src/main.ts),
//   as a deployment does; "process" (default) runs them all in this one, as `make run` does;
//   "replicas:N" runs N copies of the whole platform behind one port (main.ts replicas; N: one per core);
//   "split:a+b" is process mode with services a and b (default notification+analytics) each in an OS
//   process of its own, reached by URL (their statements are not in this process's counts).
//   Customers use one HTTP/2 connection, or one each in replicas mode (BENCH_CONNECTIONS=n: up to n).
//   BENCH_PLATFORM=image: the platform compiled and started as the image does (process mode: this bench
//   bundled with the image's build options; cluster and split: the production bundle, ttip.mjs), with the
//   Dockerfile's node flags and NODE_ENV (bench/image-form.ts); unset or "source": under this process's loader.
//   BENCH_CHILD_PROFILE=dir: CPU profiles of the platform's own processes (cluster, split), one per process.
//   BENCH_WARMUP=seconds (default 10, 0: none): tips at each run's concurrency before it, not counted.
//   BENCH_WARMUP_TIPS=n: the warm-up goes on, BENCH_WARMUP seconds at a time (10 times at most), until its
//   customers made n CreateTip calls: under load a 10 s warm-up is a few dozen to a few hundred tips, and V8
//   compiles the hot paths well into the measured window, CPU a long-running process does not pay.
//   BENCH_GROWN_TIPS=n: production-sized tables (n tips' worth, copied from the first warm-up's; bench/pg-grow.ts).
//   The CPU line splits the platform's node process(es) by thread (event loop, V8's background
//   threads, libuv's pool: bench/process-cpu.ts); the customers' process's CPU is printed on its own line.
//   BENCH_PROFILE=file.cpuprofile also profiles this process during the first run
//   and prints where its CPU time went (open the file in Chrome DevTools for more); the customers' and
//   the simulators' processes are profiled over the same run into file.customers.cpuprofile and
//   file.edge.cpuprofile (the simulators' until the drain's end; read them with bench/cpuprofile-summary.ts).
//   BENCH_HEAP_PROFILE=file.heapprofile samples this process's allocations during the first run
//   (collected ones too) and prints the bytes allocated per tip by package and function;
//   BENCH_HEAP_SURVIVORS=1 samples only what outlived a scavenge (what young-generation GC copies).
//   BENCH_PG_EXPLAIN=file[:share] writes the plans PostgreSQL ran for a share (default 0.05) of this process's
//   statements during the first run (auto_explain, analyze and buffers) and sums them up by statement,
//   with the time spent waiting for row locks (bench/pg-explain.ts); its timing makes that run slower.
import { fork } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Session } from "node:inspector/promises";
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";
import { getHeapSpaceStatistics } from "node:v8";
import os from "node:os";
import type { DescService } from "@bufbuild/protobuf";
import pgClient from "pg";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { analytics } from "@ttip/analytics";
import { createAuth } from "@ttip/auth";
import { createNotificationModule, DEFAULT_RETRY } from "@ttip/notification";
import { createPaymentModule } from "@ttip/payment";
import { startPlatform } from "@ttip/platform/src/platform.js";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createQrModule } from "@ttip/qr";
import { createLogger, createPool, JetStreamBus, Metrics, RedisCache } from "@ttip/runtime";
import { countWrites, freePort, PlatformProcess, startNats, startPostgres, startRedis } from "@ttip/runtime/testing";
import { PLATFORM_MAIN } from "@ttip/platform/src/entry.js";
import { REPLICAS_SERVING } from "@ttip/platform/src/replicas.js";
import { wallet } from "@ttip/wallet";
import { EDGE_SMS_API_KEY, providerEnv, startEdgeSimulators } from "./edge-simulators.js";
import { profileBeside } from "./process-profile.js";
import { childrenCpuMs, CLOCK_TICK_MS, cpuMs, libuvPoolThreads, processCpuMs, processWrites, threadCpuMs, THREAD_KINDS } from "./process-cpu.js";
import type { CustomersAnswer, CustomersInput, CustomersMessage, CustomersResult, CustomersRun } from "./tip-customers.js";
import { BENCH_WORKER_TIPS_PER_WINDOW, benchPaymentConfig } from "./payment-config.js";
import { pgbenchBinary, pgbenchInit, pgbenchRun, setPostgresSettings, WAL_FLUSHES_SQL } from "./pgbench.js";
import { explainSampler } from "./pg-explain.js";
import { countRedisWrites, redisCommandCalls, redisCommandsPerTip } from "./redis-stats.js";
import { countNatsWrites, natsPerTip } from "./nats-stats.js";
import { pgBackground, pgBackgroundBetween } from "./pg-background.js";
import { walBetween, walFlushed, walPerTip } from "./pg-wal.js";
import { BENCH_OWN, indexCounts, indexLines, pgPerfLines, pgPerfShares, resetStatements, startPgPerf, statementFigures, statementLines } from "./pg-statements.js";
import { imageEntry, rerunInImageForm } from "./image-form.js";
import { growTables } from "./pg-grow.js";

const loopDelay = monitorEventLoopDelay({ resolution: 1 });
// This process's garbage collections (its main heap: the platform's in process mode), kept by start time.
const gcEntries: PerformanceEntry[] = [];
new PerformanceObserver((list) => gcEntries.push(...list.getEntries())).observe({ entryTypes: ["gc"] });
const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: "scavenges",
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: "mark-compacts",
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental marking steps",
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: "weak callbacks",
};
/** The collections that started between from and to (performance.now()), by kind: how many and their pauses per tip. */
function gcPerTip(from: number, to: number, tips: number): string {
  const kinds = new Map<string, { n: number; ms: number }>();
  for (const e of gcEntries) {
    if (e.startTime < from || e.startTime > to) continue;
    const kind = GC_KINDS[(e as unknown as { detail: { kind: number } }).detail.kind] ?? "other";
    const k = kinds.get(kind) ?? { n: 0, ms: 0 };
    kinds.set(kind, { n: k.n + 1, ms: k.ms + e.duration });
  }
  gcEntries.length = 0; // each run reads its own
  return [...kinds].map(([kind, k]) => `${(k.n / Math.max(1, tips)).toFixed(2)} ${kind} ${(k.ms / Math.max(1, tips)).toFixed(2)} ms`).join(", ");
}
const seconds = Number(process.argv[2] ?? 10);
const warmupSeconds = Number(process.env.BENCH_WARMUP ?? 10);
const warmupTips = Number(process.env.BENCH_WARMUP_TIPS ?? 0);
/** BENCH_WARMUP_TIPS' bound: rounds of BENCH_WARMUP seconds. */
const MAX_WARMUP_ROUNDS = 10;
// This process's node flags (e.g. the semi-space size): the platform's own processes (cluster and
// replicas modes) get them too, by NODE_OPTIONS; the loader (--import tsx) they are given anyway.
const nodeFlags = process.execArgv.filter((a) => a.startsWith("--") && !/^--(import|require|loader|experimental-loader)\b/.test(a));
// BENCH_CHILD_PROFILE=dir: the platform's own processes (cluster, split and replicas modes) each write a CPU profile
// of their whole life there when they stop (node --cpu-prof: CPU.<date>.<time>.<pid>...; the pids are printed).
const childProfileDir = process.env.BENCH_CHILD_PROFILE;
const childFlags = [...nodeFlags, ...(childProfileDir ? ["--cpu-prof", `--cpu-prof-dir=${childProfileDir}`] : [])];
const nodeOptions: Record<string, string> = childFlags.length ? { NODE_OPTIONS: [process.env.NODE_OPTIONS, ...childFlags].filter(Boolean).join(" ") } : {};
// BENCH_PLATFORM=image: the platform as the image runs it (bench/image-form.ts: this bench re-run bundled as
// platform/build.ts bundles, the cluster's processes from the production bundle, the Dockerfile's node flags
// and NODE_ENV); source: this process's loader (tsx: its hooks and keepNames' wrappers), as `npm start` runs.
const platformForm = process.env.BENCH_PLATFORM === "image" ? "image" : "source";
if (platformForm === "image" && !imageEntry()) process.exit(await rerunInImageForm(fileURLToPath(import.meta.url), nodeFlags));
const platformMain = imageEntry() ?? PLATFORM_MAIN;
const concurrencies = (process.argv[3] ?? "16,64").split(",").map(Number);
const workerCount = Number(process.argv[4] ?? 50);
const [modeArg, replicasArg] = (process.argv[5] ?? "process").split(":");
const mode = modeArg === "cluster" || modeArg === "replicas" ? modeArg : "process";
// "split[:a+b]": process mode with these services each in an OS process of its own (a cluster role),
// so their work (notification's and analytics' consumers by default) leaves the platform's event loop.
const apart = modeArg === "split" ? (replicasArg ?? "notification+analytics").split("+") : [];
/** The services this process's counts (its CPU, its pool's statements) cover in process and split modes. */
const servicesHere = apart.length ? `all services but ${apart.join(" and ")}, which run in processes of their own` : "all services";
const replicaCount = Number(replicasArg ?? os.availableParallelism());
const connectionsFor = (concurrency: number) =>
  process.env.BENCH_CONNECTIONS ? Math.min(concurrency, Number(process.env.BENCH_CONNECTIONS)) : mode === "replicas" ? concurrency : 1;

// BENCH_PG_STATEMENTS=N: the N statements taking most of PostgreSQL's time per tip (pg_stat_statements),
// and the N tables its sequential scans read most rows of (pg_stat_user_tables).
const pgStatementRows = Number(process.env.BENCH_PG_STATEMENTS ?? 0);
// BENCH_PG_WAL=N: the window's WAL read back (pg_walinspect): records, bytes and full-page images per tip,
// and the N largest parts by resource manager and by relation.
const pgWalRows = Number(process.env.BENCH_PG_WAL ?? 0);
// BENCH_PG_PERF=file.perf.data: PostgreSQL's processes sampled (perf record, call graphs) over the first run;
// its CPU per tip printed by phase (parse, plan, executor start/run/finish, triggers, commit: bench/pg-statements.ts).
const pgPerfFile = process.env.BENCH_PG_PERF;
// BENCH_ANALYZE=1: ANALYZE every table after the warm-up. The bench's tables start empty and grow during
// it, faster than autovacuum (a minute between rounds) analyzes them; plans a connection keeps from when a
// table was a few pages read it whole until then. A production's tables are large and analyzed.
const analyzeAfterWarmup = process.env.BENCH_ANALYZE === "1";
// BENCH_GROWN_TIPS=n (say 100000): after the first warm-up, the tables a tip grows hold about n tips'
// worth, copies of the warm-up's finished rows spread over the last 30 days, analysed (bench/pg-grow.ts):
// per-tip figures on production-sized tables, not on young ones read whole.
const grownTips = Number(process.env.BENCH_GROWN_TIPS ?? 0);
// BENCH_SETTLE=0: no VACUUM ANALYZE and CHECKPOINT between the warm-up and the run (settle()), nor autovacuum's
// round held past the run (holdAutovacuum()), to compare.
const settleAfterWarmup = process.env.BENCH_SETTLE !== "0";
// BENCH_CLIENT_ADDRESSES=N: each tip's calls come from the next of N addresses (through a trusted
// proxy: the gateway's rate limits count each apart, as real customers' phones); unset: all from one.
const clientAddresses = Number(process.env.BENCH_CLIENT_ADDRESSES ?? 0);
// BENCH_POOL_MAX=n: each service's PostgreSQL pool in cluster and split modes (DATABASE_POOL_MAX), to compare
// sizes; unset: the services' own default (5, the chart's).
const servicePoolMax = process.env.BENCH_POOL_MAX;
// BENCH_DIRECT_ROUNDS=n (default 3; 0: none): cluster mode's CreateTip through the gateway against straight to payment,
// n alternated rounds of BENCH_DIRECT_SECONDS (default 3) each way, at the run's concurrency and at 1 (gatewayAgainstDirect).
const directRounds = Number(process.env.BENCH_DIRECT_ROUNDS ?? 3);
const directSeconds = Number(process.env.BENCH_DIRECT_SECONDS ?? 3);

// What the bench started, stopped in the reverse order however it ends: a failure before the runs (a
// service not serving in time, a sign-up refused) left PostgreSQL, NATS and Redis running.
const teardown: (() => Promise<unknown>)[] = [];
async function stopStarted(): Promise<void> {
  for (let stop = teardown.pop(); stop; stop = teardown.pop()) await stop().catch((err: unknown) => console.error("stopping:", err));
}
process.once("uncaughtException", (err) => {
  console.error(err);
  void stopStarted().finally(() => process.exit(1));
});
/** A platform process, its stop kept before it starts (a stop is a no-op once it has exited). */
function kept(p: PlatformProcess): PlatformProcess {
  teardown.push(() => p.stop());
  return p;
}
/** `server` once started, with its stop kept; a server that fails leaves the others to stop. */
async function started<T extends { stop(): Promise<void> }>(server: Promise<T>): Promise<T> {
  const s = await server;
  teardown.push(() => s.stop());
  return s;
}
const servers = await Promise.allSettled([started(startPostgres({ durable: true, statementStats: pgStatementRows > 0 })), started(startNats()), started(startRedis())]);
for (const s of servers) if (s.status === "rejected") throw s.reason;
const [pg, nats, redis] = servers.map((s) => (s as PromiseFulfilledResult<Awaited<ReturnType<typeof startRedis>>>).value);
const pool = createPool(pg.url, { max: 40 });
teardown.push(() => pool.end());
// BENCH_PG_SETTINGS="commit_delay=100,commit_siblings=5": server settings to compare (fsync and synchronous_commit stay on).
const pgSettings = await setPostgresSettings((sql) => pool.query(sql), process.env.BENCH_PG_SETTINGS ?? "");
// Before the services' sessions open: auto_explain is loaded into each session as it opens.
const [pgExplainFile, pgExplainShare] = (process.env.BENCH_PG_EXPLAIN ?? "").split(":");
const pgExplain = pgExplainFile ? await explainSampler(pool, pgExplainFile, Number(pgExplainShare || 0.05)) : undefined;
const pgUrl = pg.url;

// Every statement any service sends, by its first words: where the database time per tip goes.
// A BEGIN that travels with the next statement (withTransaction's) still counts as one.
const statements = new Map<string, number>();
let counting = false;
// The total counts each statement of a multi-statement text ("BEGIN; SELECT ..."), and not the
// "(transaction)" lines, which name transactions whose statements are already counted.
let statementTotal = 0;
// Round trips: the writes to PostgreSQL's sockets (pg corks a statement's messages into one; a
// pipelined BEGIN rides in its statement's).
const roundTripCounters: { writes: () => number }[] = [];
const writesSoFar = () => roundTripCounters.reduce((n, c) => n + c.writes(), 0);
let roundTrips0 = 0;
// A statement's key and its statements (texts without parameters may hold several), worked out once
// per text: the counting runs on the platform's event loop, inside the CPU the bench reports.
const statementChars = Number(process.env.BENCH_STATEMENT_CHARS ?? 90);
const statementKeys = new Map<string, { key: string; parts: number }>();
function statementKey(text: string): { key: string; parts: number } {
  let known = statementKeys.get(text);
  if (!known) {
    known = { key: text.replace(/\s+/g, " ").trim().slice(0, statementChars), parts: text.split(";").filter((part) => part.trim()).length || 1 };
    if (statementKeys.size < 10_000) statementKeys.set(text, known);
  }
  return known;
}
pool.on("connect", (client) => {
  roundTripCounters.push(countWrites(client, () => counting));
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    if (counting) {
      const text = typeof args[0] === "string" ? args[0] : ((args[0] as { text?: string })?.text ?? "?");
      const { key, parts } = statementKey(text);
      statements.set(key, (statements.get(key) ?? 0) + 1);
      statementTotal += Array.isArray(args[1]) && args[1].length ? 1 : parts;
      // A transaction is named by its first statement after BEGIN: which ones each tip pays for.
      const state = client as unknown as { benchAfterBegin?: boolean };
      if (state.benchAfterBegin) statements.set(`(transaction) ${key.slice(0, 70)}`, (statements.get(`(transaction) ${key.slice(0, 70)}`) ?? 0) + 1);
      state.benchAfterBegin = key === "BEGIN";
    }
    return query(...args);
  };
});

const logger = createLogger({ level: "silent" });
// BENCH_NATS_WRITE_PER_TASK=1: the bus writes to NATS once per task, as nats.js does, not once per turn of the event loop (to compare).
const bus = await JetStreamBus.connect({ servers: nats.url, stream: "TTIP", subjectPrefix: "ttip", logger, writeOncePerTurn: process.env.BENCH_NATS_WRITE_PER_TASK !== "1" });
teardown.push(() => bus.close());
const cache = new RedisCache(redis.url, "ttip:");
teardown.push(() => cache.close());
// The edge of the world: Daraja, the OTP SMS and notification's providers, in their own process.
const edge = await startEdgeSimulators();
teardown.push(() => edge.close());
const daraja = edge.daraja;
const paymentConfig = benchPaymentConfig(daraja);
/** The platform under test: one process (as `make run`), or one OS process per service and the gateway (as a cluster). */
async function deploy(): Promise<{ gatewayUrl: string; pids: Map<string, number>; withChildren?: string; servers?: Map<string, string>; close(): Promise<void> }> {
  const names = ["auth", "payment", "qr", "wallet", "notification", "analytics", "venue"];
  const common = {
    INTERNAL_SIGNING_KEY: randomBytes(32).toString("base64url"), DRAIN_DELAY_MS: "0", DATABASE_URL: pg.url, NATS_URL: nats.url, REDIS_URL: redis.url, LOG_LEVEL: "warn",
    ...(servicePoolMax ? { DATABASE_POOL_MAX: servicePoolMax } : {}),
    ...nodeOptions,
  };
  const own: Record<string, Record<string, string>> = {
    // Required where NODE_ENV=production (the image's form).
    auth: { AUTH_KEY_ENCRYPTION_SECRET: randomBytes(32).toString("base64url"), AUTH_SMS_URL: edge.smsUrl, AUTH_SMS_API_KEY: EDGE_SMS_API_KEY, AUTH_OTP_PER_IP_PER_HOUR: "1000000" },
    payment: {
      DARAJA_BASE_URL: daraja.url, DARAJA_CONSUMER_KEY: daraja.options.consumerKey, DARAJA_CONSUMER_SECRET: daraja.options.consumerSecret,
      DARAJA_SHORTCODE: daraja.options.shortcode, DARAJA_PASSKEY: daraja.options.passkey, DARAJA_INITIATOR_NAME: daraja.options.initiatorName,
      DARAJA_INITIATOR_PASSWORD: daraja.options.initiatorPassword, DARAJA_CERTIFICATE_FILE: daraja.certificateFile,
      MPESA_CALLBACK_ALLOWED_IPS: "127.0.0.1,::1", RECONCILE_INTERVAL_MS: "0",
      FRAUD_PHONE_PER_10MIN: "1000000", FRAUD_WORKER_PER_10MIN: String(BENCH_WORKER_TIPS_PER_WINDOW), FRAUD_OUTLIER_KES: "1000000000", FRAUD_PIN_FAILURES_PER_HOUR: "1000000",
    },
    qr: { QR_SIGNING_KEY: randomBytes(32).toString("base64url") },
    // The providers' simulator is the edge's, as real providers (NOTIFICATION_PROVIDERS=simulator would start one inside notification's process).
    notification: providerEnv(edge.providers),
  };
  if (mode === "process") return deployProcess(common, own);
  if (mode === "replicas") return deployReplicas(names, { ...common, ...Object.assign({}, ...Object.values(own)) });
  // A process's port is chosen by create(); it keeps the env object it was given, so the peers' URLs go in after.
  const envs = new Map(names.map((n) => [n, { ...common, ...own[n] } as Record<string, string>]));
  const processes = new Map<string, PlatformProcess>();
  for (const name of names) processes.set(name, kept(await PlatformProcess.create(platformMain, name, envs.get(name)!)));
  const urls = Object.fromEntries(names.map((n) => [`${n.toUpperCase()}_URL`, processes.get(n)!.url]));
  for (const name of names) Object.assign(envs.get(name)!, urls, name === "payment" ? { PAYMENT_CALLBACK_BASE_URL: processes.get(name)!.url } : {});
  const gateway = kept(await PlatformProcess.create(platformMain, "gateway", {
    ...urls, INTERNAL_SIGNING_KEY: common.INTERNAL_SIGNING_KEY, REDIS_URL: redis.url, JWKS_URL: `${processes.get("auth")!.url}/.well-known/jwks.json`, RATE_LIMIT_POINTS: "1000000000", LOG_LEVEL: "warn", ...nodeOptions,
    ...(clientAddresses ? { TRUSTED_PROXIES: "127.0.0.1/32" } : {}),
  }));
  // One at a time: each runs its migrations under the same advisory lock.
  for (const p of processes.values()) await p.start();
  await gateway.start();
  return {
    gatewayUrl: gateway.url,
    pids: new Map([...[...processes, ["gateway", gateway] as const].map(([name, p]) => [name, p.pid!] as const), ["bench", process.pid] as const]),
    // Each process's server: its calls served (grpc_server_handled_total on /metrics) count the hops per tip.
    servers: new Map([...processes, ["gateway", gateway] as const].map(([name, p]) => [name, p.url])),
    close: async () => {
      await gateway.stop();
      for (const p of processes.values()) await p.stop();
    },
  };
}
/** Process mode's one registry (every server in this process counts its calls there). */
let processMetrics: Metrics | undefined;
/** The platform in this process (as `make run`); split mode: the services named apart each in a process of its own. */
async function deployProcess(common: Record<string, string>, own: Record<string, Record<string, string>>) {
  // The services apart and this process's sign and verify their calls with one key (read at the first call).
  if (apart.length) process.env.INTERNAL_SIGNING_KEY = common.INTERNAL_SIGNING_KEY;
  const envs = new Map(apart.map((n) => [n, { ...common, ...own[n] } as Record<string, string>]));
  const others = new Map<string, PlatformProcess>();
  for (const name of apart) others.set(name, kept(await PlatformProcess.create(platformMain, name, envs.get(name)!)));
  const urls = new Map([...others].map(([name, p]) => [name, p.url]));
  const platform = await startPlatform({
    ctx: { logger, pool, bus, cache, metrics: (processMetrics = new Metrics()) },
    modules: [
      createAuth({ env: { AUTH_SMS_URL: edge.smsUrl, AUTH_SMS_API_KEY: EDGE_SMS_API_KEY, AUTH_OTP_PER_IP_PER_HOUR: "1000000" } }),
      createPaymentModule({ config: () => paymentConfig }),
      createQrModule({ env: { QR_SIGNING_KEY: randomBytes(32).toString("base64url") } }),
      wallet,
      createNotificationModule({ config: { providers: edge.providers, retry: DEFAULT_RETRY, publicUrl: () => "" } }),
      analytics,
    ].filter((m) => !apart.includes(m.name)),
    urls,
    gateway: { rateLimit: { points: 1_000_000_000, durationSeconds: 60 }, corsOrigins: ["*"], host: "127.0.0.1", port: 0, trustedProxies: clientAddresses ? ["127.0.0.1/32"] : [] },
  });
  paymentConfig.callbackBaseUrl = platform.urls.get("payment")!;
  // The processes apart reach every service by its URL (this process's too, known once they listen).
  const peerUrls = Object.fromEntries([...platform.urls].map(([name, url]) => [`${name.toUpperCase()}_URL`, url]));
  for (const env of envs.values()) Object.assign(env, peerUrls);
  // A child's start (the loader, every service's import, migrations) took over 60 s at load 40.
  for (const p of others.values()) await p.start(180_000);
  return {
    gatewayUrl: platform.gatewayUrl,
    pids: new Map([["platform", process.pid], ...[...others].map(([name, p]) => [name, p.pid!] as const)]),
    close: async () => {
      await platform.close();
      for (const p of others.values()) await p.stop();
    },
  };
}
/** N copies of the whole platform (main.ts replicas), every port shared by all of them; the primary's children are the replicas. */
async function deployReplicas(names: string[], env: Record<string, string>) {
  const ports = new Map<string, number>();
  for (const name of names) ports.set(name, await freePort());
  if (platformForm === "image") throw new Error("replicas mode is not an image role: run it with BENCH_PLATFORM=source");
  const primary = kept(await PlatformProcess.create(PLATFORM_MAIN, "replicas", {
    ...env,
    ...Object.fromEntries([...ports].map(([name, port]) => [`${name.toUpperCase()}_PORT`, String(port)])),
    PAYMENT_CALLBACK_BASE_URL: `http://127.0.0.1:${ports.get("payment")}`,
    REPLICAS: String(replicaCount),
    DATABASE_POOL_MAX: String(Math.ceil(40 / replicaCount)),
    RATE_LIMIT_POINTS: "1000000000",
    ...(clientAddresses ? { TRUSTED_PROXIES: "127.0.0.1/32" } : {}),
  }));
  await primary.start();
  for (let i = 0; !primary.logs.includes(REPLICAS_SERVING); i++) {
    if (i > 600) throw new Error(`the replicas did not all start:\n${primary.logs}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // Each replica apart (its threads too: its event loop's CPU per tip), then the primary (it hands connections over).
  const replicas = childrenCpuMs(primary.pid!);
  const forked = [...replicas.keys()].filter((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes("replicas"));
  return {
    gatewayUrl: primary.url,
    pids: new Map([...forked.map((pid, i) => [`replica ${i + 1}`, pid] as const), ["primary", primary.pid!], ["bench", process.pid]]),
    close: () => primary.stop(),
  };
}
const platform = await deploy();
teardown.push(() => platform.close());
if (childProfileDir) console.log(`the platform's processes write their CPU profiles to ${childProfileDir}: ${[...platform.pids].map(([name, pid]) => `${name} ${pid}`).join(", ")}`);
// In process mode the platform's Redis client is this process's cache: its socket writes are counted.
const redisWrites = mode === "process" ? countRedisWrites(cache.redis, () => counting) : undefined;
// And its bus: the writes to the NATS socket (publishes, acknowledgements, pull requests).
const natsWrites = mode === "process" ? countNatsWrites(bus, () => counting) : undefined;

function api<S extends DescService>(service: S, token?: string): Client<S> {
  const auth: Interceptor = (next) => (req) => {
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(service, createConnectTransport({ baseUrl: platform.gatewayUrl, httpVersion: "2", interceptors: [auth] }));
}

const percentile = (sorted: number[], q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN);
const ms = (v: number) => `${v.toFixed(1)} ms`;

/**
 * Busy, stolen (a virtual machine's cores given to other guests) and total jiffies of the whole
 * machine (every process: node, postgres, nats, redis, and whatever else runs on it).
 */
function cpuTimes(): { busy: number; steal: number; total: number } {
  const [, ...f] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/);
  const n = f.map(Number).slice(0, 8); // user .. steal; guest time is already in user
  const idle = n[3] + (n[4] ?? 0);
  const total = n.reduce((a, b) => a + b, 0);
  return { busy: total - idle - (n[7] ?? 0), steal: n[7] ?? 0, total };
}

/**
 * Waits until every outbox is relayed, every consumer has caught up, and the
 * run's notification deliveries have left the queue (at most 60 s). Checked on
 * a connection of its own, outside the counted pool; `checks` is how many
 * transactions the checks themselves committed.
 */
async function drained(since: Date): Promise<{ ms: number; checks: number }> {
  const t0 = performance.now();
  const client = new pgClient.Client({ connectionString: pgUrl });
  await client.connect();
  let checks = 0;
  try {
    const { rows: schemas } = await client.query<{ schema: string }>("SELECT table_schema AS schema FROM information_schema.tables WHERE table_name = 'outbox'");
    checks++;
    // Named, so planned once rather than at every check; BENCH_OWN keeps it out of the statements' figures.
    const pending = { name: BENCH_OWN, values: [since], text: `SELECT ${schemas.map((r) => `(SELECT count(*) FROM "${r.schema}".outbox WHERE published_at IS NULL)`).join(" + ")}
      + (SELECT count(*) FROM notification.deliveries WHERE created_at >= $1 AND status IN ('queued', 'retrying') AND NOT parked) AS ${BENCH_OWN}` };
    let quiet = 0;
    while (performance.now() - t0 < 60_000 && quiet < 3) {
      const n = Number((await client.query<Record<string, string>>(pending)).rows[0][BENCH_OWN]);
      checks++;
      // The last events may still be on their way to consumers: quiet three checks in a row.
      quiet = n === 0 ? quiet + 1 : 0;
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await client.end();
  }
  return { ms: performance.now() - t0, checks };
}

/**
 * PostgreSQL's cumulative counters, with every count kept for `since`'s work in. Since PostgreSQL 15 a
 * backend keeps its counts until it flushes them: at a transaction's end at most once a second, and,
 * gone idle with counts kept, when a timer fires 10 s later (PGSTAT_MIN_INTERVAL, PGSTAT_IDLE_INTERVAL;
 * measured on 15: a connection's last 49 commits arrived 10.0 s after it went idle). Kept counts cannot
 * be seen, so no reading can show they are all in (a stable count may be waiting on an idle backend's
 * timer), and pg_stat_force_next_flush() flushes only its caller's. The bound can be relied on: every
 * count kept at `since` is in 10 s later (the margin: the timer's own lateness on a loaded machine).
 */
const PG_STATS_FLUSHED_WITHIN_MS = 10_000 + 1_000;
async function pgCounters(since = -Infinity) {
  const wait = since + PG_STATS_FLUSHED_WITHIN_MS - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const { rows: [r] } = await pool.query<{ commits: string; rollbacks: string; deadlocks: string; wal_syncs: string }>(
    `SELECT sum(xact_commit) AS commits, sum(xact_rollback) AS rollbacks, sum(deadlocks) AS deadlocks,
            ${WAL_FLUSHES_SQL} AS wal_syncs FROM pg_stat_database`);
  return { at: performance.now(), commits: Number(r.commits), rollbacks: Number(r.rollbacks), deadlocks: Number(r.deadlocks), walSyncs: Number(r.wal_syncs) };
}

/** The tables grown to BENCH_GROWN_TIPS tips' worth on a connection of their own (its settings and temporary table). */
async function growAfterWarmup(): Promise<void> {
  await drained(new Date(Date.now() - 3_600_000)); // the warm-up's tips finished: theirs are the rows copied
  const client = new pgClient.Client({ connectionString: pgUrl });
  await client.connect();
  try {
    const t0 = performance.now();
    const made = Number((await client.query("SELECT count(*) AS n FROM payment.tips WHERE status = 'succeeded'")).rows[0].n);
    const added = await growTables((sql, values) => client.query(sql, values), grownTips, made);
    console.log(`tables grown to ~${grownTips} tips' worth from the warm-up's ${made} in ${((performance.now() - t0) / 1000).toFixed(0)} s (BENCH_GROWN_TIPS), rows added: ` +
      [...added].map(([t, n]) => `${t} ${n}`).join(", "));
  } finally {
    await client.end();
  }
}

/**
 * The run starts from the same database state each time: the warm-up's tables vacuumed and analyzed
 * (otherwise autovacuum, a minute between rounds, analyzes them before, during or after the run as
 * the setup's length falls, and plans a connection kept from a young table change with it), and
 * their dirty pages written by a checkpoint (the next timed one is then checkpoint_timeout away, past
 * the run; each page's first change after it writes a full page image to the WAL, in every run alike).
 * Those images are a small part of the run's WAL (BENCH_PG_WAL, c16 20 s: ~0.45 a tip, 1.8 KB of
 * 19.7 KB without compression, 0.9-1.1 KB with lz4): the run is the costliest stretch between two
 * checkpoints for these young tables (later ones change the same few hundred pages again, imageless),
 * and cheaper than one on large tables, where a tip's random-key index entries land on pages not yet
 * changed since the checkpoint more often (bench/pg-wal-compression.ts: 3-4 images a tip in its first
 * seconds on 200k tips). Kept: the same in every run, so runs compare.
 */
async function settle(): Promise<void> {
  const t0 = performance.now();
  const postgresCpu = () => cpuMs(new Map([["postgres", pg.pid]]), new Set(["postgres"])).get("postgres")!;
  const cpu0 = postgresCpu();
  await pool.query("VACUUM ANALYZE");
  await pool.query("CHECKPOINT");
  console.log(`settled after the warm-up: VACUUM ANALYZE and CHECKPOINT in ${((performance.now() - t0) / 1000).toFixed(1)} s,` +
    ` PostgreSQL's CPU ${(postgresCpu() - cpu0).toFixed(0)} ms; autovacuum's next round held past the run (BENCH_SETTLE=0: none of these)`);
}

/**
 * Autovacuum's next round held past the measured window, then its naptime given back: the launcher
 * visits each database every naptime (60 s) counted from its own start, so a round fell inside or
 * outside the window as the setup's length fell (inside both cluster windows, ~14.5 s in, where the
 * setup is longer). On a reload of the configuration the launcher schedules its databases again from
 * that moment, one every naptime / their number (two here: a throwaway server's first reload put the
 * next round half a naptime away), so a naptime of twice the window with the drain's limit (60 s) puts
 * it past the window whatever the setup. Nothing is turned off: the warm-up's tables were just
 * vacuumed (settle()), and what the run leaves is vacuumed after it, once the naptime is back.
 */
async function holdAutovacuum(windowSeconds: number | undefined): Promise<void> {
  await pool.query(windowSeconds === undefined ? "ALTER SYSTEM RESET autovacuum_naptime" : `ALTER SYSTEM SET autovacuum_naptime = '${Math.ceil(2 * (windowSeconds + 60))}s'`);
  await pool.query("SELECT pg_reload_conf()");
  await new Promise((r) => setTimeout(r, 200)); // the launcher reads it on its next turn
}

/**
 * WAL flushes so far and the ms they took (pg_stat_wal), then WAL I/O timing turned on or off for the
 * whole server (a clock read per write and flush: measured around pgbench only, not in the platform's run).
 */
async function timingWalFlushes(on: boolean): Promise<{ syncs: number; ms: number }> {
  const { rows: [r] } = await pool.query<{ syncs: string; ms: number }>("SELECT wal_sync AS syncs, wal_sync_time AS ms FROM pg_stat_wal");
  await pool.query(on ? "ALTER SYSTEM SET track_wal_io_timing = on" : "ALTER SYSTEM RESET track_wal_io_timing");
  await pool.query("SELECT pg_reload_conf()");
  await new Promise((r) => setTimeout(r, 200)); // the postmaster reads it on its next turn; pgbench's connections then start with it
  return { syncs: Number(r.syncs), ms: r.ms };
}

/** The most tips one worker had in the fraud rules' window (10 minutes) so far. */
async function busiestWorker(): Promise<string> {
  const { rows } = await pool.query<{ n: string }>(
    "SELECT count(*) AS n FROM payment.tips WHERE worker_id IS NOT NULL AND created_at > now() - interval '10 minutes' GROUP BY worker_id ORDER BY 1 DESC LIMIT 1",
  );
  return `the busiest worker's tips in the last 10 minutes: ${rows[0]?.n ?? 0}`;
}

/** The PostgreSQL connections open now, by application name (each service's pool is ttip-<role>). */
async function connectionsByService(): Promise<string> {
  const { rows } = await pool.query<{ name: string; n: string }>(
    "SELECT coalesce(nullif(application_name, ''), '?') AS name, count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 1",
  );
  return rows.map((r) => `${r.name} ${r.n}`).join(", ");
}

/**
 * What the gateway adds to CreateTip's latency (#20 asks at most 30%): the customers' same tips through
 * the gateway and straight to payment's own address (anonymous, as the gateway forwards them; WatchTip
 * too), in alternated rounds so that the machine's load meets both alike. Each path's p50 and p99, and the
 * gateway's added share of the direct p50.
 */
async function gatewayAgainstDirect(customers: { run(r: CustomersRun): Promise<CustomersResult> }, paymentUrl: string, concurrency: number): Promise<void> {
  const latencies = { gateway: [] as number[], direct: [] as number[] };
  const failed = { gateway: "", direct: "" };
  for (let round = 0; round < directRounds; round++) {
    for (const path of round % 2 ? (["direct", "gateway"] as const) : (["gateway", "direct"] as const)) {
      const r = await customers.run({ concurrency, seconds: directSeconds, url: path === "direct" ? paymentUrl : undefined });
      failed[path] += failedTips(r) && ` round ${round + 1}${failedTips(r)}`;
      latencies[path].push(...r.createLatencies);
    }
  }
  for (const path of ["gateway", "direct"] as const) if (failed[path]) console.log(`  CreateTip ${path === "gateway" ? "through the gateway" : "straight to payment"}:${failed[path]}`);
  const [g, d] = [latencies.gateway.sort((a, b) => a - b), latencies.direct.sort((a, b) => a - b)];
  const added = (q: number) => `${((percentile(g, q) / percentile(d, q) - 1) * 100).toFixed(0)}%`;
  console.log(`  CreateTip at concurrency ${concurrency}, ${directRounds} alternated rounds of ${directSeconds} s each way: through the gateway p50 ${ms(percentile(g, 0.5))} p99 ${ms(percentile(g, 0.99))} (${g.length} calls, failed ones too);` +
    ` straight to payment p50 ${ms(percentile(d, 0.5))} p99 ${ms(percentile(d, 0.99))} (${d.length}); the gateway adds ${added(0.5)} at p50, ${added(0.99)} at p99 (#20: at most 30%)`);
}

/**
 * Calls each platform process has served so far, by "process method" (cluster mode): read from its
 * /metrics (grpc_server_handled_total, every code), so a run's difference is its calls between
 * processes: the gateway's from customers, every service's from the gateway or a peer (a hop).
 */
async function callsServed(servers: Map<string, string> | undefined): Promise<Map<string, number>> {
  const calls = new Map<string, number>();
  for (const [name, url] of servers ?? []) countServed(calls, name, await (await fetch(`${url}/metrics`)).text(), false);
  // Process mode: every server's calls are in the one registry (the gateway's from customers and the service's from
  // the gateway under the same method's name, so those count twice); a peer's calls in this process count too.
  if (!servers && processMetrics) countServed(calls, "platform", await processMetrics.registry.metrics(), true);
  return calls;
}

function countServed(calls: Map<string, number>, name: string, text: string, withService: boolean): void {
  for (const m of text.matchAll(/^grpc_server_handled_total\{([^}]*)\} (\d+)/gm)) {
    const service = /grpc_service="(?:[^"]*\.)?([^".]*)"/.exec(m[1])?.[1] ?? "?";
    const method = /grpc_method="([^"]*)"/.exec(m[1])?.[1] ?? "?";
    const key = `${name} ${withService ? `${service}.` : ""}${method}`;
    calls.set(key, (calls.get(key) ?? 0) + Number(m[2]));
  }
}

/** Calls served per tip between two readings: all services' (the hops), then the largest by process and method. */
function callsPerTip(before: Map<string, number>, after: Map<string, number>, tips: number): string {
  const all = [...after].map(([k, v]) => [k, (v - (before.get(k) ?? 0)) / Math.max(1, tips)] as const).sort((a, b) => b[1] - a[1]);
  const sum = (gateway: boolean) => all.filter(([k]) => k.startsWith("gateway ") === gateway).reduce((n, [, v]) => n + v, 0);
  const shown = all.filter(([, v]) => v >= 0.05); // the rest: sign-ups, health checks, rare paths
  return `calls served per tip: by the services (hops between processes) ${sum(false).toFixed(2)}, by the gateway ${sum(true).toFixed(2)}; ${shown.map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ")}`;
}

/** Each table's scans and updates so far (pg_stat_user_tables), by schema.table. */
async function tableCounts(): Promise<Map<string, number[]>> {
  const { rows } = await pool.query<{ name: string; seq_scan: string; seq_tup_read: string; idx_scan: string | null; n_tup_upd: string; n_tup_hot_upd: string }>(
    "SELECT schemaname || '.' || relname AS name, seq_scan, seq_tup_read, idx_scan, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables",
  );
  return new Map(rows.map((r) => [r.name, [r.seq_scan, r.seq_tup_read, r.idx_scan ?? 0, r.n_tup_upd, r.n_tup_hot_upd].map(Number)]));
}

/**
 * Rows read by sequential scans per tip, all tables and the three reading most: a plan a connection
 * kept from when a table was young reads it whole until the table is analyzed (settle()).
 */
function seqScanRowsPerTip(from: Map<string, number[]>, to: Map<string, number[]>, tips: number): string {
  const read = [...to].map(([name, now]) => [name, (now[1] - (from.get(name)?.[1] ?? 0)) / Math.max(1, tips)] as const).sort((a, b) => b[1] - a[1]);
  const all = read.reduce((n, [, v]) => n + v, 0);
  return `rows read by sequential scans per tip (pg_stat_user_tables, the pollers' in the 11 s wait after the run included): ${all.toFixed(1)}` +
    `; most: ${read.slice(0, 3).map(([name, v]) => `${name} ${v.toFixed(1)}`).join(", ")}`;
}

/**
 * The tables scanned whole most (rows read by sequential scans) between two tableCounts, per tip:
 * a table read whole per tip costs in proportion to its size, which a bench's young tables hide.
 */
function tableScansPerTip(from: Map<string, number[]>, to: Map<string, number[]>, tips: number, limit: number): string[] {
  const per = (v: number) => (v / Math.max(1, tips)).toFixed(2);
  return [...to].map(([name, now]) => ({ name, d: now.map((v, i) => v - (from.get(name)?.[i] ?? 0)) }))
    .filter(({ d }) => d.some((v) => v > 0))
    .sort((a, b) => b.d[1] - a.d[1] || b.d[0] - a.d[0])
    .slice(0, limit)
    .map(({ name, d: [seq, seqRows, idx, upd, hot] }) =>
      `${per(seq).padStart(9)}  ${per(seqRows).padStart(13)}  ${per(idx).padStart(11)}  ${per(upd).padStart(11)}  ${(upd ? `${((hot / upd) * 100).toFixed(0)}%` : "-").padStart(4)}  ${name}`);
}

/** Self time by package (or our own folder) and by function, from a V8 CPU profile. */
function summarise(profile: { nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[]; samples: number[]; timeDeltas: number[] }) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const byPackage = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const t = profile.timeDeltas[i] ?? 0;
    total += t;
    const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
    const { pkg, file } = packageOf(url, "(native, GC, idle)");
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + t);
    const fn = `${functionName || "(anonymous)"} ${file || "(native)"}:${lineNumber + 1}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + t);
  });
  const top = (m: Map<string, number>, k: number) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, t]) => `    ${((t / total) * 100).toFixed(1).padStart(5)}%  ${name}`).join("\n");
  console.log(`  CPU profile of this process (${(total / 1e6).toFixed(1)} s sampled), self time by package:\n${top(byPackage, 15)}`);
  console.log(`  by function:\n${top(byFunction, 20)}`);
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

/**
 * A profile's url as a package: its npm package, node's module (node:internal's by its folder), or
 * our file's first three parts; `native` when it names no file.
 */
function packageOf(url: string, native = "(native)"): { pkg: string; file: string } {
  const file = url.replace(/^file:\/\//, "").replace(process.cwd() + "/", "").replace(/^.*node_modules\//, "");
  const parts = file.split("/");
  const node = () => (parts[0] === "node:internal" ? parts.slice(0, 2).join("/") : parts[0]);
  const pkg = !file ? native : url.includes("node_modules") ? parts.slice(0, parts[0].startsWith("@") ? 2 : 1).join("/") : file.startsWith("node:") ? node() : parts.slice(0, 3).join("/");
  return { pkg, file };
}

/** The sampled allocations (bytes, by the function that allocated them) per tip, by package and function. */
function summariseAllocations(root: { head: HeapNode } | HeapNode, tips: number) {
  const byPackage = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapNode) => {
    if (n.selfSize) {
      const { functionName, url, lineNumber } = n.callFrame;
      const { pkg, file } = packageOf(url);
      byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + n.selfSize);
      const fn = `${functionName || "(anonymous)"} ${file || "(native)"}:${lineNumber + 1}`;
      byFunction.set(fn, (byFunction.get(fn) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c);
  };
  walk("head" in root ? root.head : root);
  const kb = (b: number) => (b / Math.max(1, tips) / 1024).toFixed(1).padStart(7);
  const top = (m: Map<string, number>, k: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, b]) => `    ${kb(b)} KiB  ${name}`).join("\n");
  console.log(`  allocations sampled in this process (collected ones too): ${kb(total).trim()} KiB per tip; by package:\n${top(byPackage, 15)}`);
  console.log(`  by function:\n${top(byFunction, 30)}`);
}

// A start that takes longer is stuck (tsx compiling the Connect client takes a few seconds).
const CUSTOMERS_START_TIMEOUT_MS = 60_000;

/** The customers' process (bench/tip-customers.ts), kept for every run: its CPU is read apart from the platform's. */
async function startCustomers(input: CustomersInput): Promise<{ pid: number; run(r: CustomersRun): Promise<CustomersResult>; close(): Promise<void> }> {
  const child = fork(fileURLToPath(new URL("./tip-customers.ts", import.meta.url)), [], {
    // The customers' flags in either form (the image's --enable-source-maps is the platform's).
    execArgv: ["--import", "tsx", ...nodeFlags.filter((f) => f !== "--enable-source-maps")],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let exited: string | undefined;
  const gone = new Promise<void>((r) => child.once("exit", (code, signal) => ((exited = `the customers' process exited (${signal ?? code})`), r())));
  // One question at a time (the bench awaits each run): the next message answers it, or the process's exit.
  const ask = (m: CustomersMessage, timeoutMs?: number) =>
    new Promise<CustomersAnswer>((resolve, reject) => {
      if (exited) return reject(new Error(exited));
      const done = (err: Error | undefined, a?: CustomersAnswer) => {
        clearTimeout(timer);
        child.off("message", onMessage).off("exit", onExit);
        if (err) reject(err);
        else resolve(a!);
      };
      const onMessage = (a: CustomersAnswer) => done("error" in a ? new Error(a.error) : undefined, a);
      const onExit = () => done(new Error(exited));
      const timer = timeoutMs ? setTimeout(() => done(new Error("the customers' process did not start")), timeoutMs) : undefined;
      child.once("message", onMessage).once("exit", onExit);
      child.send(m);
    });
  await ask({ input }, CUSTOMERS_START_TIMEOUT_MS);
  return {
    pid: child.pid!,
    run: async (r) => (await ask({ run: r })) as CustomersResult,
    close: async () => {
      if (!exited) child.disconnect(); // it exits when its channel closes
      await gone;
    },
  };
}

/**
 * CPU ms per tip of the platform's node processes by thread; "exited threads" is what threads gone
 * since took (the process's total counts it), shown above 0.1 ms per tip (each thread's figure is
 * rounded down to clock ticks, so small differences either way are rounding).
 */
function byThread(processes: [string, number][], before: Map<string, number>[], after: Map<string, number>[], procBefore: Map<string, number>, procAfter: Map<string, number>, tips: number): string {
  const sum = new Map<string, number>();
  let exited = 0;
  processes.forEach(([name], i) => {
    let threads = 0;
    for (const [kind, v] of after[i]) {
      const d = v - (before[i].get(kind) ?? 0);
      sum.set(kind, (sum.get(kind) ?? 0) + d);
      threads += d;
    }
    exited += (procAfter.get(name) ?? 0) - (procBefore.get(name) ?? 0) - threads;
  });
  const order: string[] = [THREAD_KINDS.main, THREAD_KINDS.v8, THREAD_KINDS.pool, THREAD_KINDS.worker];
  const rank = (kind: string) => (order.includes(kind) ? order.indexOf(kind) : order.length);
  const kinds = [...sum.keys()].sort((a, b) => rank(a) - rank(b));
  const per = (v: number) => (v / Math.max(1, tips)).toFixed(1);
  return [...kinds.map((k) => `${k} ${per(sum.get(k)!)}`), ...(exited > tips * 0.1 ? [`exited threads ${per(exited)}`] : [])].join(", ");
}

/**
 * A run's failures, printed beside its figures (empty when none): at high load a service can miss a
 * deadline, and the run's figures then say how degraded it was rather than the bench ending there.
 */
function failedTips({ failures, callErrors }: Pick<CustomersResult, "failures" | "callErrors">): string {
  const calls = Object.entries(callErrors).map(([code, n]) => `${n} ${code}`);
  if (!failures && !calls.length) return "";
  return `; FAILED: ${failures} tips ended other than SUCCEEDED${calls.length ? `, calls failed (CreateTip or WatchTip, by code): ${calls.join(", ")}` : ""}`;
}

let customersProcess: Awaited<ReturnType<typeof startCustomers>> | undefined;
try {
  // Workers sign up through the gateway (phone OTP from the SMS simulator), set up their page and get a code.
  const codes: string[] = [];
  for (let i = 0; i < workerCount; i++) {
    const phone = `2547${String(i).padStart(4, "0")}5678`;
    const { challengeId } = await api(AuthService).startPhoneVerification({ phone });
    const otp = /\b(\d{6})\b/.exec((await edge.lastSmsTo(phone))!)![1];
    const { tokens } = await api(AuthService).verifyPhoneOtp({ challengeId, otp, role: Role.WORKER });
    const token = tokens!.accessToken;
    const workerId = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub as string;
    await api(QrService, token).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: workerId, displayName: `Worker ${i}` });
    const { qrCode } = await api(QrService, token).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: workerId, idempotencyKey: randomUUID() });
    codes.push(qrCode!.shortCode);
  }
  console.log(`node ${process.version}${nodeFlags.length ? ` ${nodeFlags.join(" ")}` : ""}; the platform in ${platformForm === "image" ? "the image's form (bundled, NODE_ENV=" + process.env.NODE_ENV + ")" : "source form (this process's loader)"}; ${os.cpus().length} CPUs; ${workerCount} workers signed up with a QR code each; ${seconds} s per run${clientAddresses ? `; customers from ${clientAddresses} addresses` : ""}${pgSettings.length ? `; PostgreSQL ${pgSettings.join(" ")}` : ""}`);

  // The customers' process, one for every run.
  const customers = (customersProcess = await startCustomers({ gatewayUrl: platform.gatewayUrl, codes, clientAddresses }));
  const knownThreads = new Map<number, string>();
  if (mode === "process") for (const tid of await libuvPoolThreads()) knownThreads.set(tid, THREAD_KINDS.pool);
  const threadsMeasured = [...platform.pids].filter(([name]) => name !== "bench");

  const completedPerSecond = new Map<number, number>();
  for (const concurrency of concurrencies) {
    // Warm-up at the run's concurrency, not counted: V8 is still compiling the hot paths for tens of
    // seconds after the first tips (a quarter of a cold 10 s run's CPU), and a production process is warm.
    if (warmupSeconds > 0) {
      const t0 = performance.now();
      let calls = 0;
      const failed: Pick<CustomersResult, "failures" | "callErrors"> = { failures: 0, callErrors: {} };
      for (let round = 0; round === 0 || (calls < warmupTips && round < MAX_WARMUP_ROUNDS); round++) {
        const warm = await customers.run({ concurrency, seconds: warmupSeconds, connections: connectionsFor(concurrency) });
        calls += warm.createLatencies.length;
        failed.failures += warm.failures;
        for (const [code, n] of Object.entries(warm.callErrors)) failed.callErrors[code] = (failed.callErrors[code] ?? 0) + n;
      }
      console.log(`\nwarmed up: ${((performance.now() - t0) / 1000).toFixed(1)} s at concurrency ${concurrency}, ${calls} CreateTip calls (not counted; BENCH_WARMUP=${warmupSeconds} s, 0: none` +
        `${warmupTips ? `; BENCH_WARMUP_TIPS=${warmupTips}` : ""})${failedTips(failed)}`);
    }
    if (grownTips > 0 && concurrency === concurrencies[0]) await growAfterWarmup();
    // PostgreSQL's own work from here to the window: autovacuum of the warm-up's tables, checkpoints.
    const pgWork0 = await pgBackground((sql) => pool.query(sql));
    if (analyzeAfterWarmup) {
      await pool.query("ANALYZE");
      console.log("every table analyzed after the warm-up (BENCH_ANALYZE=1)");
    }
    const measured = new Map([...platform.pids, ["postgres", pg.pid], ["nats", nats.pid], ["redis", redis.pid]]);
    const withChildren = new Set(["postgres", ...(platform.withChildren ? [platform.withChildren] : [])]);
    // The platform idle first: what its pollers cost per second (statements, commits, CPU) is
    // taken off the run's figures below ("net"), so per-tip costs compare across loads.
    const idleSeconds = Number(process.env.BENCH_IDLE_SECONDS ?? 5);
    await drained(new Date(Date.now() - 3_600_000)); // the warm-up's (or the last run's) work done first
    if (settleAfterWarmup) await settle();
    // Its counts all in PostgreSQL's statistics: left for later, they went into the idle window's commits
    // and so came off the run's net figures.
    const idleCounters0 = await pgCounters(performance.now());
    statements.clear();
    statementTotal = 0;
    roundTrips0 = writesSoFar();
    const idleCpu0 = cpuMs(measured, withChildren);
    const idleT0 = performance.now();
    counting = true;
    await new Promise((r) => setTimeout(r, idleSeconds * 1000));
    counting = false;
    const idleSpan = (performance.now() - idleT0) / 1000;
    // Not waited for: the pollers' counts kept at either end are about as many (they run all the time).
    // The run's counts start here. Minus 1: the reading's own transaction.
    const counters0 = await pgCounters();
    const idle = {
      statements: statementTotal / idleSpan,
      roundTrips: (writesSoFar() - roundTrips0) / idleSpan,
      commits: (counters0.commits - idleCounters0.commits - 1) / ((counters0.at - idleCounters0.at) / 1000),
      cpu: new Map([...cpuMs(measured, withChildren)].map(([name, v]) => [name, (v - (idleCpu0.get(name) ?? 0)) / idleSpan])),
    };
    statements.clear();
    statementTotal = 0;
    roundTrips0 = writesSoFar();
    if (settleAfterWarmup) await holdAutovacuum(seconds);
    const pgWork1 = await pgBackground((sql) => pool.query(sql));
    const walFrom = pgWalRows ? await walFlushed((sql) => pool.query(sql)) : "";
    const tables0 = await tableCounts(); // after the idle window: the warm-up's kept counts are in
    const indexes0 = pgStatementRows ? await indexCounts((sql) => pool.query(sql)) : undefined;
    const startedAt = new Date();
    const redisCalls0 = await redisCommandCalls(cache.redis);
    const redisWrites0 = redisWrites?.() ?? 0;
    const nats0 = natsWrites?.();
    const served0 = await callsServed(platform.servers); // read before the CPU: its /metrics pages are no tip's
    const cpu0 = cpuTimes();
    const edgeSends0 = await edge.providerSends();
    const procCpu0 = cpuMs(measured, withChildren);
    const edgeCpu0 = processCpuMs(edge.pid);
    const customersCpu0 = processCpuMs(customers.pid);
    const backends0 = childrenCpuMs(pg.pid);
    const pgPerf = pgPerfFile && concurrency === concurrencies[0] ? await startPgPerf([pg.pid, ...backends0.keys()], pgPerfFile) : undefined;
    const explaining = pgExplain && concurrency === concurrencies[0] ? pgExplain : undefined;
    await explaining?.start();
    const threadCpu0 = threadsMeasured.map(([, pid]) => threadCpuMs(pid, knownThreads));
    const writes0 = threadsMeasured.map(([, pid]) => processWrites(pid));
    const own0 = process.cpuUsage();
    const t0 = performance.now();
    const profiling = process.env.BENCH_PROFILE && concurrency === concurrencies[0] ? new Session() : undefined;
    if (profiling) {
      profiling.connect();
      await profiling.post("Profiler.enable");
      await profiling.post("Profiler.start");
    }
    // The customers' and the simulators' processes too, beside it (a.cpuprofile: a.customers.cpuprofile, a.edge.cpuprofile).
    const apartProfiles = profiling ? { customers: profileBeside(process.env.BENCH_PROFILE!, "customers"), edge: profileBeside(process.env.BENCH_PROFILE!, "edge") } : undefined;
    if (apartProfiles) await edge.profileStart();
    const heapSampling = process.env.BENCH_HEAP_PROFILE && concurrency === concurrencies[0] ? new Session() : undefined;
    if (heapSampling) {
      heapSampling.connect();
      // One sample per 64 KiB allocated on average: a few thousand per run, at little cost.
      // BENCH_HEAP_SURVIVORS=1: only what outlived a scavenge (what each scavenge copies and promotes).
      const minor = process.env.BENCH_HEAP_SURVIVORS !== "1";
      await heapSampling.post("HeapProfiler.startSampling", { samplingInterval: 65_536, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: minor });
    }
    if (pgStatementRows) await resetStatements((sql) => pool.query(sql));
    counting = true;
    loopDelay.reset();
    loopDelay.enable();
    const elu0 = performance.eventLoopUtilization();
    const result = await customers.run({ concurrency, seconds, connections: connectionsFor(concurrency), profile: apartProfiles?.customers });
    const { createLatencies } = result;
    loopDelay.disable();
    const elu = performance.eventLoopUtilization(elu0);
    const elapsed = (performance.now() - t0) / 1000;
    const endedAt = new Date();
    // What the tips leave behind (events to relay and consume, messages to send) is part of their
    // cost: statements, commits and CPU are counted until it is done (BENCH_DRAIN=0: at the run's end).
    const drain = process.env.BENCH_DRAIN !== "0" ? await drained(startedAt) : { ms: 0, checks: 0 };
    counting = false;
    const profile = profiling ? (await profiling.post("Profiler.stop")).profile : undefined;
    profiling?.disconnect();
    if (apartProfiles) await edge.profileStop(apartProfiles.edge);
    const heapProfile = heapSampling ? (await heapSampling.post("HeapProfiler.stopSampling")).profile : undefined;
    heapSampling?.disconnect();
    const cpu1 = cpuTimes();
    const procCpu1 = cpuMs(measured, withChildren);
    const edgeCpu = processCpuMs(edge.pid) - edgeCpu0;
    const customersCpu = processCpuMs(customers.pid) - customersCpu0;
    const edgeSends = (await edge.providerSends()) - edgeSends0;
    const backends1 = childrenCpuMs(pg.pid);
    await pgPerf?.stop();
    await explaining?.stop();
    const served1 = await callsServed(platform.servers);
    const threadCpu1 = threadsMeasured.map(([, pid]) => threadCpuMs(pid, knownThreads));
    const writes1 = threadsMeasured.map(([, pid]) => processWrites(pid));
    const connections = await connectionsByService();
    const own = process.cpuUsage(own0);
    const span = (performance.now() - t0) / 1000; // the run and its drain
    if (settleAfterWarmup) await holdAutovacuum(undefined);
    const roundTrips = writesSoFar() - roundTrips0;
    const redisCalls1 = await redisCommandCalls(cache.redis);
    const redisWritten = (redisWrites?.() ?? 0) - redisWrites0;
    const nats1 = natsWrites?.();
    const pgWork2 = await pgBackground((sql) => pool.query(sql));
    const walTo = pgWalRows ? await walFlushed((sql) => pool.query(sql)) : "";
    // pg_stat_statements counts a statement as it ends, so it is read now: after the wait below it
    // would hold the pollers' statements of those 11 s too.
    const pgStatements = pgStatementRows ? await statementFigures((sql, values) => pool.query(sql, values), statementChars) : undefined;
    // The run's counts all in. The pollers' commits while waiting came in too: taken off by the idle
    // rate, so this is the run's and its drain's span, as the other figures are.
    const counters1 = await pgCounters(performance.now());
    const waited = (counters1.at - counters0.at) / 1000 - span;
    const committed = counters1.commits - counters0.commits - drain.checks - idle.commits * waited;
    const tables1 = await tableCounts();
    const indexes1 = pgStatementRows ? await indexCounts((sql) => pool.query(sql)) : undefined;
    const walSyncs = counters1.walSyncs - counters0.walSyncs;
    // The credit is posted right after SUCCEEDED; wait for the last ones.
    for (let i = 0; i < 100; i++) {
      const { rowCount } = await pool.query("SELECT 1 FROM payment.tips WHERE created_at >= $1 AND credited_at IS NULL LIMIT 1", [startedAt]);
      if (!rowCount) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    // completed_at and credited_at are now() of the transactions that set them (their start);
    // a posting's posted_at is read inside the wallet's transaction, after the worker's row lock.
    const { rows } = await pool.query<{ checkout_request_id: string; completed_ms: number; posted_ms: number | null; credited_ms: number | null; status: string }>(
      `SELECT t.checkout_request_id, t.status, extract(epoch FROM t.completed_at) * 1000 AS completed_ms,
              extract(epoch FROM p.posted_at) * 1000 AS posted_ms, extract(epoch FROM t.credited_at) * 1000 AS credited_ms
         FROM payment.tips t
         LEFT JOIN wallet.postings p ON p.entry_id::text = t.credit_entry_id AND p.line = 0
        WHERE t.created_at >= $1`,
      [startedAt],
    );
    const sentAt = await edge.stkCallbacksSentAt();
    const credited = rows.filter((r) => r.credited_ms !== null && Number(r.credited_ms) <= endedAt.getTime());
    const toSucceeded = rows.map((r) => Number(r.completed_ms) - sentAt.get(r.checkout_request_id)!).filter(Number.isFinite).sort((a, b) => a - b);
    const stage = (from: (r: (typeof rows)[0]) => number, to: (r: (typeof rows)[0]) => number) =>
      rows.map((r) => to(r) - from(r)).filter(Number.isFinite).sort((a, b) => a - b);
    const decidedToPosted = stage((r) => Number(r.completed_ms), (r) => Number(r.posted_ms ?? NaN));
    const postedToRecorded = stage((r) => Number(r.posted_ms ?? NaN), (r) => Number(r.credited_ms ?? NaN));
    const toCredited = rows.map((r) => Number(r.credited_ms) - sentAt.get(r.checkout_request_id)!).filter(Number.isFinite).sort((a, b) => a - b);
    createLatencies.sort((a, b) => a - b);
    const machineBusy = (cpu1.busy - cpu0.busy) / (cpu1.total - cpu0.total);
    const nodeCores = (own.user + own.system) / 1e6 / span;
    console.log(`\nconcurrency ${concurrency}: ${rows.length} tips created, ${rows.filter((r) => r.status === "succeeded").length} succeeded, ${credited.length} credited within the run` + failedTips(result));
    console.log(`  ${await busiestWorker()} (the bench's limit ${BENCH_WORKER_TIPS_PER_WINDOW}: its tips past it are held for review); held for review in the run: ${rows.filter((r) => r.status === "held_for_review").length}`);
    completedPerSecond.set(concurrency, credited.length / elapsed);
    console.log(`  completed tips/s (created -> SUCCEEDED and credited): ${(credited.length / elapsed).toFixed(0)}`);
    console.log(`  CreateTip through the gateway:        p50 ${ms(percentile(createLatencies, 0.5))}  p95 ${ms(percentile(createLatencies, 0.95))}  p99 ${ms(percentile(createLatencies, 0.99))}  (${createLatencies.length} calls, failed ones too)`);
    console.log(`  callback sent -> tip SUCCEEDED:       p50 ${ms(percentile(toSucceeded, 0.5))}  p95 ${ms(percentile(toSucceeded, 0.95))}  p99 ${ms(percentile(toSucceeded, 0.99))}`);
    console.log(`  callback sent -> wallet entry posted: p50 ${ms(percentile(toCredited, 0.5))}  p95 ${ms(percentile(toCredited, 0.95))}  p99 ${ms(percentile(toCredited, 0.99))}`);
    console.log(`    of which: success decided -> wallet posting written p50 ${ms(percentile(decidedToPosted, 0.5))} p99 ${ms(percentile(decidedToPosted, 0.99))};` +
      ` posting -> payment records the credit p50 ${ms(percentile(postedToRecorded, 0.5))} p99 ${ms(percentile(postedToRecorded, 0.99))}`);
    if (drain.ms) console.log(`  (statements, transactions and CPU below include the ${(drain.ms / 1000).toFixed(1)} s after the run until its events were relayed and consumed and its messages sent)`);
    console.log(
      `  PostgreSQL transactions per tip (pg_stat_database: each autocommit statement is one; all services, background pollers too): ${(committed / Math.max(1, rows.length)).toFixed(1)};` +
        ` WAL flushes per tip (pg_stat_wal: syncs, or an open_* wal_sync_method's writes) ${(walSyncs / Math.max(1, rows.length)).toFixed(1)}, per commit ${(walSyncs / Math.max(1, committed)).toFixed(2)};` +
        ` rolled back ${counters1.rollbacks - counters0.rollbacks}, deadlocks ${counters1.deadlocks - counters0.deadlocks}`,
    );
    console.log(
      `  ${mode === "process" ? "platform's event loop (all services and the gateway; the customers and simulators run apart)" : "this process's event loop (the bench's own; the customers and simulators run apart)"}: busy ${(elu.utilization * 100).toFixed(0)}% of the time;` +
        ` timer delay p50 ${ms(loopDelay.percentile(50) / 1e6)}  p99 ${ms(loopDelay.percentile(99) / 1e6)}  max ${ms(loopDelay.max / 1e6)}`,
    );
    console.log(
      `  CPU: machine ${(machineBusy * 100).toFixed(0)}% of ${os.cpus().length} cores; this node process ${nodeCores.toFixed(2)} cores` +
        (mode === "process" ? " (the platform; the rest: customers, simulators, postgres, nats, redis)" : " (the bench's own; the rest: the platform's processes, customers, simulators, postgres, nats, redis)"),
    );
    const perTipCpu = [...procCpu1].map(([name, v]) => `${name} ${((v - (procCpu0.get(name) ?? 0)) / Math.max(1, rows.length)).toFixed(1)}`);
    const totalCpu = [...procCpu1].reduce((a, [name, v]) => a + v - (procCpu0.get(name) ?? 0), 0);
    const net = (gross: number, idlePerSecond: number) => ((gross - idlePerSecond * span) / Math.max(1, rows.length)).toFixed(1);
    const idleCpu = [...idle.cpu.values()].reduce((a, b) => a + b, 0);
    console.log(
      `  net of the idle platform's pollers (measured ${idleSeconds} s before the run: ${mode === "process" ? `${idle.statements.toFixed(0)} statements/s in ${idle.roundTrips.toFixed(0)} round trips, ` : ""}${idle.commits.toFixed(0)} commits/s, ${idleCpu.toFixed(0)} CPU ms/s):` +
        ` per tip ${mode === "process" ? `${net(statementTotal, idle.statements)} statements in ${net(roundTrips, idle.roundTrips)} round trips, ` : ""}${net(committed, idle.commits)} commits, CPU ms ${net(totalCpu, idleCpu)}` +
        ` (${[...procCpu1].map(([name, v]) => `${name} ${net(v - (procCpu0.get(name) ?? 0), idle.cpu.get(name) ?? 0)}`).join(", ")})`,
    );
    console.log(`  CPU ms per tip (user+system, /proc): total ${(totalCpu / Math.max(1, rows.length)).toFixed(1)}; ${perTipCpu.join(", ")}` +
      (mode === "process" ? ` (platform: ${servicesHere} and the gateway; not the customers nor the simulators, below)` : " (bench: this process, the bench's own counting; not the customers nor the simulators, below)") +
      `; ${threadsMeasured.length > 1 ? `the ${threadsMeasured.length} platform processes` : "platform"} by thread: ${byThread(threadsMeasured, threadCpu0, threadCpu1, procCpu0, procCpu1, rows.length)}`);
    // More than one event loop (split, replicas, cluster): how busy each is, by its main thread's CPU (a loop at ~1 core is the limit).
    if (threadsMeasured.length > 1) {
      const mainCores = (i: number) => ((threadCpu1[i].get(THREAD_KINDS.main) ?? 0) - (threadCpu0[i].get(THREAD_KINDS.main) ?? 0)) / 1000 / span;
      console.log(`  event loops' main threads, cores (the run and its drain): ${threadsMeasured.map(([name], i) => `${name} ${mainCores(i).toFixed(2)}`).join(", ")}`);
    }
    console.log(`  the edge of the world (simulators: Daraja, the OTP SMS, notification's providers; their own process, not in the figures above): CPU ms per tip ${(edgeCpu / Math.max(1, rows.length)).toFixed(2)};` +
      ` messages the providers took per tip ${(edgeSends / Math.max(1, rows.length)).toFixed(2)}`);
    console.log(`  the customers (bench/tip-customers.ts: CreateTip and WatchTip through the gateway; their own process, not in the figures above): CPU ms per tip ${(customersCpu / Math.max(1, rows.length)).toFixed(2)}`);
    // What else ran: a neighbour's work on a shared machine slows the run and inflates CPU per tip (caches, frequency).
    const othersCores = ((cpu1.busy - cpu0.busy) * CLOCK_TICK_MS - totalCpu - edgeCpu - customersCpu) / 1000 / span;
    console.log(`  the rest of the machine (processes not the bench's) ${Math.max(0, othersCores).toFixed(2)} cores, stolen by the hypervisor ${(((cpu1.steal - cpu0.steal) / (cpu1.total - cpu0.total)) * 100).toFixed(1)}%`);
    const pgStarted = new Date(String((await pool.query("SELECT pg_postmaster_start_time() AS t")).rows[0].t)).getTime();
    console.log(`  PostgreSQL's own work in the measured window (the run and its drain, ${span.toFixed(1)} s from ${((startedAt.getTime() - pgStarted) / 1000).toFixed(0)} s after PostgreSQL started; times from the window's start):` +
      ` ${pgBackgroundBetween(pgWork1, pgWork2, startedAt.getTime())}`);
    console.log(`    from the warm-up's end to the window: ${pgBackgroundBetween(pgWork0, pgWork1, startedAt.getTime())}`);
    if (pgWalRows) for (const line of walPerTip(await walBetween((sql, v) => pool.query(sql, v), walFrom, walTo, pgWalRows), rows.length)) console.log(`    ${line}`);
    // A pool closes a connection idle 30 s: those the warm-up opened and the run left unused end inside it.
    const ended = [...backends0].filter(([pid]) => !backends1.has(pid));
    console.log(`    PostgreSQL processes that ended in the window (pool connections closed idle, autovacuum workers): ${ended.length};` +
      ` their CPU from before it, ${(ended.reduce((n, [, ms]) => n + ms, 0) / Math.max(1, rows.length)).toFixed(2)} ms per tip, is not the run's, and a count of live processes alone took it off the postgres figure`);
    console.log(`    ${seqScanRowsPerTip(tables0, tables1, rows.length)}`);
    const opened = [...backends1.keys()].filter((pid) => !backends0.has(pid)).length;
    console.log(`    PostgreSQL connections at the run's end, by application: ${connections}; PostgreSQL processes started in the window (connections opened, autovacuum workers): ${opened}`);
    if (mode === "process") {
      const newSpace = getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
      console.log(`  garbage collections of the platform's heap (perf_hooks, pauses of the event loop), per tip: ${gcPerTip(t0, t0 + span * 1000, rows.length)};` +
        ` new space ${((newSpace?.space_size ?? 0) / 2 ** 20).toFixed(0)} MB, process RSS ${(process.memoryUsage.rss() / 2 ** 20).toFixed(0)} MB (peak ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB)`);
    }
    console.log(`  Redis commands per tip (INFO commandstats, a script's commands counted too): ${redisCommandsPerTip(redisCalls0, redisCalls1, rows.length)}` +
      (redisWrites ? `; the platform's writes to Redis per tip ${(redisWritten / Math.max(1, rows.length)).toFixed(2)}` : ""));
    if (nats0 && nats1) console.log(`  NATS per tip (the platform's socket): ${natsPerTip(nats0, nats1, rows.length)}`);
    console.log(`  ${callsPerTip(served0, served1, rows.length)}`);
    if (threadsMeasured.length > 1) {
      const each = threadsMeasured.map(([name], i) => {
        const w = writes1[i].writes - writes0[i].writes;
        const b = writes1[i].bytes - writes0[i].bytes;
        return `${name} ${(w / Math.max(1, rows.length)).toFixed(1)} (${(b / Math.max(1, rows.length) / 1024).toFixed(1)} KiB)`;
      });
      console.log(`  write system calls per tip by process (and bytes; /proc/<pid>/io, every socket: calls, PostgreSQL, NATS, Redis, logs): ${each.join(", ")}`);
    }
    console.log(`  load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(", ")}`);
    const perTip = (c: number) => (c / Math.max(1, rows.length)).toFixed(2);
    // The statements this process's pool sent: every service's in process mode; in the others, each counts its own.
    if (mode === "process") {
      console.log(`  SQL statements per tip (${apart.length ? `${servicesHere}; their events included` : "all services, incl. events and notifications"}): ${perTip(statementTotal)} in ${perTip(roundTrips)} round trips (writes to PostgreSQL); the most frequent:`);
      for (const [text, count] of [...statements].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.BENCH_STATEMENTS ?? 40))) console.log(`    ${perTip(count).padStart(6)}  ${text}`);
    }
    // PostgreSQL's own counts: every process's statements, whatever the mode.
    if (pgStatements) {
      console.log(`  PostgreSQL's work per tip (pg_stat_statements, wall time inside the server, commits excluded; bench/pg-statements.ts), the statements taking most time:`);
      for (const line of statementLines(pgStatements, rows.length, pgStatementRows)) console.log(`    ${line}`);
    }
    if (explaining) {
      console.log(`  PostgreSQL's plans under load (auto_explain, a share of this process's statements over the run and its drain, ${pgExplainFile}):`);
      for (const line of explaining.lines()) console.log(`    ${line}`);
    }
    if (pgPerf) {
      const pgCpuPerTip = ((procCpu1.get("postgres") ?? 0) - (procCpu0.get("postgres") ?? 0)) / Math.max(1, rows.length);
      console.log(`  PostgreSQL's CPU by phase (perf record of its processes over the run and its drain, ${pgPerfFile}):`);
      for (const line of pgPerfLines(await pgPerfShares(pgPerfFile!, pgStatementRows || 20), pgCpuPerTip)) console.log(`    ${line}`);
    }
    if (indexes0 && indexes1) {
      console.log(`  indexes of the tables written in the window, per tip (pg_stat_user_indexes, pg_statio_user_indexes; read 11 s after the run):`);
      for (const line of indexLines(indexes0, indexes1, rows.length, pgStatementRows)) console.log(`    ${line}`);
    }
    if (pgStatementRows) {
      // Read with the commits' counters, so after the same waits for the counts server processes keep (pgCounters).
      console.log(`  tables by rows their sequential scans read, per tip (pg_stat_user_tables, read 11 s after the run: the pollers' scans of that wait included; HOT: updates that wrote no index entry):`);
      console.log(`    seq scans  rows read seq  index scans  row updates  HOT`);
      for (const line of tableScansPerTip(tables0, tables1, rows.length, pgStatementRows)) console.log(`    ${line}`);
    }
    if (profile) {
      writeFileSync(process.env.BENCH_PROFILE!, JSON.stringify(profile));
      summarise(profile as Parameters<typeof summarise>[0]);
      console.log(`  the customers' and the simulators' profiles: ${apartProfiles!.customers}, ${apartProfiles!.edge} (bench/cpuprofile-summary.ts)`);
    }
    if (heapProfile) {
      writeFileSync(process.env.BENCH_HEAP_PROFILE!, JSON.stringify(heapProfile));
      summariseAllocations(heapProfile as unknown as HeapNode, rows.length);
    }
    const paymentUrl = platform.servers?.get("payment");
    if (paymentUrl && directRounds > 0) for (const c of new Set([concurrency, 1])) await gatewayAgainstDirect(customers, paymentUrl, c);
  }

  // The yardstick: TPC-B on the same server.
  const bin = pgbenchBinary();
  if (!bin) console.log("\npgbench not found (Debian package postgresql)");
  else {
    pgbenchInit(bin, pg.url, "pgbench");
    const pgWork0 = await pgBackground((sql) => pool.query(sql));
    const flushes0 = await timingWalFlushes(true);
    const cpu0 = cpuTimes();
    const startedAt = Date.now();
    const { tps, latency } = pgbenchRun(bin, pg.url, "pgbench", ["-c", "8", "-j", "2", "-T", "10"]);
    const cpu1 = cpuTimes();
    const flushes1 = await timingWalFlushes(false); // its backends have exited: their counts are in
    const pgWork1 = await pgBackground((sql) => pool.query(sql));
    const flushes = flushes1.syncs - flushes0.syncs;
    console.log(`\npgbench TPC-B (-s 1 -c 8 -j 2 -T 10) on the same PostgreSQL: ${tps} tps, latency average ${latency}`);
    console.log(`  WAL flushes per transaction ${(flushes / (Number(tps) * 10)).toFixed(2)}, ${((flushes1.ms - flushes0.ms) / Math.max(1, flushes)).toFixed(2)} ms each on average` +
      ` (track_wal_io_timing, on for pgbench only): at scale 1 every transaction updates the one branch row, so commits wait on its lock one by one and tps follows the disk's flush time`);
    console.log(`  machine busy ${(((cpu1.busy - cpu0.busy) / (cpu1.total - cpu0.total)) * 100).toFixed(0)}%; PostgreSQL's own work meanwhile: ${pgBackgroundBetween(pgWork0, pgWork1, startedAt)}`);
    for (const [concurrency, perSecond] of completedPerSecond) {
      console.log(`  ${mode} mode, concurrency ${concurrency}: completed tips/s / pgbench tps = ${(perSecond / Number(tps)).toFixed(3)}`);
    }
  }
} finally {
  await customersProcess?.close();
  await stopStarted();
}
