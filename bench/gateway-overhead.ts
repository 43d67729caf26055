// What the gateway adds to a call: qr's ResolveQrCode (anonymous, warm Redis
// cache, as a customer's phone makes it before a tip) made with Connect over
// HTTP/2 directly to the qr service, and the same call through the gateway
// (token check, rate limit in Redis, policy, forwarding): once with the
// gateway reaching qr over HTTP/2 on loopback (a cluster) and once with both in
// one process (`make run`), with this process's CPU per call. Over HTTP/2 the gateway forwards the
// binary message as bytes; "same, decoding" is that gateway decoding and encoding every message
// again (forwardBytes: false, as before it forwarded bytes), the yardstick for that change. Rounds
// alternate the paths so that a noisy machine hits them alike; the goal is a gateway adding at most 30% latency.
// "gateway process -> qr" is the same gateway in a process of its own (bench/gateway-process.ts), as in a
// cluster: its latency is not shared with the client's and qr's event loop, and its CPU per call is its own.
// "forwarding alone" is that process forwarding as bytes with no check and none of the server's interceptors
// (GATEWAY_CHECKS=0): the floor under the checks, node's HTTP/2 in and out; kept with BENCH_ONLY="gateway process -> qr".
// The gateway answers these calls on HTTP/2's stream API; each "compatibility layer (before)" path is the same
// gateway receiving every call through node's Http2ServerRequest/Response instead (streamApi: false), its yardstick.
// Then the apps' calls as a browser makes them (Connect over HTTP/1.1), in JSON (the mobile app's and the admin
// console's format, the web app's before it moved to binary) and in binary: ResolveQrCode (the tip page) and a
// worker's ListQrCodes (a list answer, like the apps' polled tip history), through both gateways, their client
// on a worker thread (bench/gateway-apps-client.ts) so that the platform's CPU per call (this process less that
// thread) is told apart from the phone's; and the bytes each format puts on the wire.
//   node --import tsx bench/gateway-overhead.ts [seconds per path and round=3] [rounds=3] [concurrency=1,16] [apps' concurrency=16]
//   BENCH_ONLY="gateway -> qr in process" measures that path (and the direct one) only; BENCH_ONLY=apps the apps' calls only.
//   BENCH_OTHER_GATEWAY=<another checkout's bench/gateway-process.ts> adds that tree's gateway process as a path of its own,
//   measured in the same rounds as this tree's (an A/B on a noisy machine: both meet the same load; kept with BENCH_ONLY).
//   BENCH_PROFILE=prefix writes a CPU profile of each path's last round at the first concurrency (prefix.<n>.cpuprofile,
//   n: the path's place in the list), so the gateway's share is the difference from the direct call's, per call;
//   and the gateway's own process is profiled for its whole run (prefix.gateway-process.cpuprofile).
import { fork } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { basename, dirname, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import { create, toBinary, toJsonString, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { startGateway } from "@ttip/gateway";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import {
  ListQrCodesRequestSchema,
  ListQrCodesResponseSchema,
  QrService,
  ResolveQrCodeRequestSchema,
  ResolveQrCodeResponseSchema,
} from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createQrModule } from "@ttip/qr";
import { localTransport, Metrics } from "@ttip/runtime";
import { PLATFORM_NODE_FLAGS, startNats, startPostgres, startRedis, startTestService } from "@ttip/runtime/testing";
import { Redis } from "ioredis";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { appsPath, type AppsInput, type AppsResult, type AppsRun } from "./gateway-apps-client.js";
import { closedLoop, type LoadResult } from "./load.js";
import { processCpuMs, threadCpuMs, THREAD_KINDS } from "./process-cpu.js";
import { redisCommandCalls } from "./redis-stats.js";

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 3);
const concurrencies = (process.argv[4] ?? "1,16").split(",").map(Number);
const appsConcurrency = Number(process.argv[5] ?? 16);
const only = process.env.BENCH_ONLY;
/** BENCH_OTHER_GATEWAY's path. */
const OTHER = "other tree's gateway process";
/** The gateway process's yardstick: its forwarding without the checks. */
const ALONE = "  its process, forwarding alone (no checks)";
/** A worker's codes, all on one ListQrCodes page. */
const CODES = 30;

// Shared with the gateway's own process: qr believes only the calls signed with it.
process.env.INTERNAL_SIGNING_KEY ??= randomBytes(32).toString("base64url");
const servers = await Promise.all([startPostgres(), startRedis(), startNats()]);
const [pg, redis, nats] = servers;
Object.assign(process.env, { TEST_DATABASE_URL: pg.url, TEST_REDIS_URL: redis.url, TEST_NATS_URL: nats.url });
const t = await startTestService(createQrModule({ env: { QR_SIGNING_KEY: "bench-signing-key-0123456789abcdef" } }));
const remote = { service: QrService, url: t.service.server.url };
// Tokens as auth signs them, for the signed-in app calls.
const keys = await generateKeyPair("EdDSA", { crv: "Ed25519" });
const jwt = { jwks: { keys: [{ ...(await exportJWK(keys.publicKey)), kid: "bench", alg: "EdDSA", use: "sig" }] }, issuer: "ttip-auth", audience: "ttip" };
const gateways = await Promise.all(
  [
    { backend: remote },
    { backend: remote, forwardBytes: false },
    { backend: { ...remote, local: localTransport(t.service.server.local) } },
    { backend: remote, streamApi: false },
  ].map(({ backend, forwardBytes, streamApi }) =>
    startGateway({
      logger: t.ctx.logger,
      metrics: new Metrics(),
      cache: t.ctx.cache,
      backends: [backend],
      rateLimit: { points: 1_000_000_000, durationSeconds: 60 },
      corsOrigins: ["*"],
      jwt,
      forwardBytes,
      streamApi,
    }),
  ),
);
// Reads Redis's command counts: the rate limiter's round trips per call (its EVALSHA; qr's cache reads are GETs).
const redisStats = new Redis(redis.url);
const scripts = async () => (await redisCommandCalls(redisStats)).get("evalsha") ?? 0;
const gatewayEnv = { REDIS_URL: redis.url, QR_URL: remote.url, GATEWAY_JWT: JSON.stringify(jwt) };
const gatewayProcess = await startGatewayProcess(gatewayEnv);
const compatGatewayProcess = await startGatewayProcess({ ...gatewayEnv, GATEWAY_STREAM_API: "0" }, "compat");
const aloneGatewayProcess = await startGatewayProcess({ ...gatewayEnv, GATEWAY_CHECKS: "0" }, "alone");
const otherTree = process.env.BENCH_OTHER_GATEWAY;
const otherGatewayProcess = otherTree ? await startGatewayProcess(gatewayEnv, "other", otherTree) : undefined;
try {
  const worker = { subject: randomUUID(), roles: ["worker" as const] };
  const qr = t.client(QrService, worker);
  await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "Bench Worker" });
  const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: randomUUID() });
  const payload = new URL(qrCode!.url).searchParams.get("p")!;
  for (let i = 1; i < CODES; i++) await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: randomUUID() });
  const token = await new SignJWT({ roles: worker.roles }).setProtectedHeader({ alg: "EdDSA", kid: "bench" }).setIssuer("ttip-auth").setAudience("ttip").setSubject(worker.subject).setExpirationTime("2h").sign(keys.privateKey);
  const resolver = (baseUrl: string) => {
    const client = createClient(QrService, createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }));
    return () => client.resolveQrCode({ code: { case: "payload", value: payload } });
  };
  const paths = new Map<string, () => Promise<unknown>>(([
    ["direct to qr", resolver(t.service.server.url)],
    ["gateway -> qr over HTTP/2", resolver(gateways[0].url)],
    ["  same, compatibility layer (before)", resolver(gateways[3].url)],
    ["  same, decoding (before)", resolver(gateways[1].url)],
    ["gateway -> qr in process", resolver(gateways[2].url)],
    ["gateway process -> qr", resolver(gatewayProcess.url)],
    ["  its process, compatibility layer (before)", resolver(compatGatewayProcess.url)],
    [ALONE, resolver(aloneGatewayProcess.url)],
    ...(otherGatewayProcess ? [[OTHER, resolver(otherGatewayProcess.url)] as const] : []),
  ] as const).filter(([name]) => only !== "apps" && (!only || name === "direct to qr" || name === OTHER || name === only || (name === ALONE && only === "gateway process -> qr"))));
  // The gateways in a process of their own, whose CPU per call is read from /proc.
  const ownProcess = new Map([
    ["gateway process -> qr", gatewayProcess],
    ["  its process, compatibility layer (before)", compatGatewayProcess],
    [ALONE, aloneGatewayProcess],
    ...(otherGatewayProcess ? [[OTHER, otherGatewayProcess] as const] : []),
  ]);
  // Let the service's invalidation after the setup writes pass, then warm caches, connections and the JIT.
  await new Promise((r) => setTimeout(r, 2_500));
  for (const call of paths.values()) for (let i = 0; i < 300; i++) await call();

  if (paths.size) console.log(`qr ResolveQrCode, Connect binary over HTTP/2, client in this process; ${rounds} rounds of ${seconds} s per path`);
  for (const concurrency of paths.size ? concurrencies : []) {
    const results = new Map<string, (LoadResult & { cpuUsPerCall?: number; gatewayUsPerCall?: number; loopUsPerCall?: number; scriptsPerCall?: number })[]>([...paths.keys()].map((name) => [name, []]));
    for (let round = 0; round < rounds; round++) {
      for (const [name, call] of paths) {
        const profiling = process.env.BENCH_PROFILE && round === rounds - 1 && concurrency === concurrencies[0] ? await startProfile() : undefined;
        const cpu0 = process.cpuUsage();
        const own = ownProcess.get(name);
        const gateway0 = own ? processCpuMs(own.pid) : 0;
        const loop0 = own ? loopCpuMs(own.pid) : 0;
        const scripts0 = await scripts();
        const result = await closedLoop(concurrency, seconds, call);
        const scriptsRun = (await scripts()) - scripts0;
        const cpu = process.cpuUsage(cpu0);
        const gatewayMs = own ? processCpuMs(own.pid) - gateway0 : 0;
        const loopMs = own ? loopCpuMs(own.pid) - loop0 : 0;
        if (profiling) await stopProfile(profiling, `${process.env.BENCH_PROFILE}.${[...paths.keys()].indexOf(name)}.cpuprofile`, name, result.calls);
        const calls = Math.max(1, result.calls);
        results.get(name)!.push(Object.assign(result, { cpuUsPerCall: (cpu.user + cpu.system) / calls, gatewayUsPerCall: (gatewayMs * 1000) / calls, loopUsPerCall: (loopMs * 1000) / calls, scriptsPerCall: scriptsRun / calls }));
      }
    }
    const range = (values: number[], digits: number) => `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`;
    const median = (rs: LoadResult[], q: number) => rs.map((r) => r.percentile(q)).sort((a, b) => a - b)[Math.floor(rs.length / 2)];
    const direct = results.get("direct to qr")!;
    console.log(`\nconcurrency ${concurrency}:`);
    for (const [name, rs] of results) {
      const added = name === "direct to qr" ? "" : `;  added p50 ${(((median(rs, 0.5) - median(direct, 0.5)) / median(direct, 0.5)) * 100).toFixed(0)}%` +
        ` p99 ${(((median(rs, 0.99) - median(direct, 0.99)) / median(direct, 0.99)) * 100).toFixed(0)}% (median of rounds)`;
      // CPU of this process (client, gateway, qr; not Redis or PostgreSQL) per call: steadier than latency on a shared machine.
      const medianOf = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
      const cpu = medianOf(rs.map((r) => r.cpuUsPerCall ?? NaN));
      // The gateway's own process: its CPU per call (the tick of /proc's clock: 10 ms over a round's calls).
      // Of it, its event loop's (the main thread: what lies on a call's path; the rest is V8's GC and compiler threads).
      const own = ownProcess.has(name)
        ? `, the gateway's process ${medianOf(rs.map((r) => r.gatewayUsPerCall ?? NaN)).toFixed(0)} us/call (event loop ${medianOf(rs.map((r) => r.loopUsPerCall ?? NaN)).toFixed(0)})`
        : "";
      const limiter = name === "direct to qr" ? "" : `, rate-limit scripts ${medianOf(rs.map((r) => r.scriptsPerCall ?? NaN)).toFixed(2)}/call`;
      console.log(`  ${name.padEnd(44)} calls/s ${range(rs.map((r) => r.perSecond), 0)};  p50 ${range(rs.map((r) => r.percentile(0.5)), 2)} ms  p99 ${range(rs.map((r) => r.percentile(0.99)), 2)} ms;  CPU ${cpu.toFixed(0)} us/call${own}${limiter}${added}`);
    }
  }
  if (!only || only === "apps") await appsCalls({ gateways: { "over HTTP/2": gateways[0].url, "in process": gateways[2].url }, payload, owner: worker.subject, token, pageSize: CODES });
} finally {
  await gatewayProcess.close();
  await compatGatewayProcess.close();
  await aloneGatewayProcess.close();
  await otherGatewayProcess?.close();
  for (const g of gateways) await g.close();
  redisStats.disconnect();
  await t.close();
  await Promise.allSettled(servers.map((s) => s.stop()));
}

/** The CPU time (ms) of a node process's main thread, which runs its event loop. */
function loopCpuMs(pid: number): number {
  return threadCpuMs(pid, new Map([[pid, THREAD_KINDS.main]])).get(THREAD_KINDS.main) ?? 0;
}

async function startProfile(): Promise<Session> {
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 100 });
  await session.post("Profiler.start");
  return session;
}

async function stopProfile(session: Session, file: string, path: string, calls: number): Promise<void> {
  const { profile } = await session.post("Profiler.stop");
  session.disconnect();
  writeFileSync(file, JSON.stringify(profile));
  console.log(`  profile of "${path}" (${calls} calls): ${file}`);
}

/** The apps' calls in JSON and in binary, alternating each round; the platform's CPU per call is this process's less the client thread's. */
async function appsCalls(input: AppsInput): Promise<void> {
  const apps = await startAppsClient(input);
  try {
    const known = new Map([[apps.threadId, "client"]]);
    const clientMs = () => threadCpuMs(process.pid, known).get("client") ?? 0;
    for (const path of apps.paths) await apps.run({ path, concurrency: 4, seconds: 1 });
    const results = new Map<string, Array<AppsResult & { platformUs: number; clientUs: number }>>(apps.paths.map((path) => [path, []]));
    for (let round = 0; round < rounds; round++) {
      for (const path of apps.paths) {
        const client0 = clientMs();
        const cpu0 = process.cpuUsage();
        const r = await apps.run({ path, concurrency: appsConcurrency, seconds });
        const cpu = process.cpuUsage(cpu0);
        const client = clientMs() - client0;
        results.get(path)!.push({ ...r, platformUs: ((cpu.user + cpu.system) / 1000 - client) * 1000 / r.calls, clientUs: (client * 1000) / r.calls });
      }
    }
    const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
    console.log(`\nthe apps' calls, Connect over HTTP/1.1 through the gateway, concurrency ${appsConcurrency}, ${rounds} rounds of ${seconds} s (medians of rounds; CPU: the platform = this process less the client's thread):`);
    for (const [path, rs] of results) {
      console.log(`  ${path.padEnd(36)} calls/s ${median(rs.map((r) => r.perSecond)).toFixed(0).padStart(5)};  p50 ${median(rs.map((r) => r.p50)).toFixed(2)} ms  p99 ${median(rs.map((r) => r.p99)).toFixed(2)} ms;  platform CPU ${median(rs.map((r) => r.platformUs)).toFixed(0)} us/call, client ${median(rs.map((r) => r.clientUs)).toFixed(0)} us/call`);
    }
    console.log("  binary against JSON:");
    for (const gateway of Object.keys(input.gateways)) {
      for (const rpc of ["ResolveQrCode", "ListQrCodes"]) {
        const [json, binary] = [false, true].map((b) => results.get(appsPath(gateway, rpc, b))!);
        const change = (f: (r: AppsResult & { platformUs: number; clientUs: number }) => number) => {
          const [j, b] = [median(json.map(f)), median(binary.map(f))];
          return `${(b - j).toFixed(b - j > -10 && b - j < 10 ? 1 : 0)} (${(((b - j) / j) * 100).toFixed(0)}%)`;
        };
        console.log(`    ${`${gateway}: ${rpc}`.padEnd(28)} platform CPU ${change((r) => r.platformUs)} us/call;  client CPU ${change((r) => r.clientUs)} us/call;  p50 ${change((r) => r.p50)} ms`);
      }
    }
    // What each format puts on the wire (a phone's data), for the same messages.
    const gateway = createClient(QrService, createConnectTransport({ baseUrl: input.gateways["over HTTP/2"], httpVersion: "1.1", useBinaryFormat: true }));
    const resolve = { code: { case: "payload" as const, value: input.payload } };
    const list = { ownerKind: OwnerKind.WORKER, ownerId: input.owner, page: { pageSize: input.pageSize } };
    const headers = { authorization: `Bearer ${input.token}` };
    console.log("  message bytes, binary / JSON:");
    console.log(`    ResolveQrCode request ${sizes(ResolveQrCodeRequestSchema, resolve)}, answer ${sizes(ResolveQrCodeResponseSchema, await gateway.resolveQrCode(resolve))}`);
    console.log(`    ListQrCodes request ${sizes(ListQrCodesRequestSchema, list)}, answer (${input.pageSize} codes) ${sizes(ListQrCodesResponseSchema, await gateway.listQrCodes(list, { headers }))}`);
  } finally {
    await apps.close();
  }
}

function sizes<D extends DescMessage>(schema: D, init: MessageInitShape<D>): string {
  const message = create(schema, init);
  return `${toBinary(schema, message).byteLength} / ${Buffer.byteLength(toJsonString(schema, message))} B`;
}

/** The gateway in a process of its own (bench/gateway-process.ts) with the platform's node flags, stopped by its process id. */
async function startGatewayProcess(env: Record<string, string>, tag = "", entry?: string): Promise<{ pid: number; url: string; close(): Promise<void> }> {
  const prefix = process.env.BENCH_PROFILE;
  const profile = prefix ? ["--cpu-prof", `--cpu-prof-dir=${dirname(resolve(prefix))}`, `--cpu-prof-name=${basename(prefix)}.gateway-process${tag && `.${tag}`}.cpuprofile`, "--cpu-prof-interval=100"] : [];
  const child = fork(entry ?? new URL("./gateway-process.ts", import.meta.url).pathname, [], { env: { ...process.env, ...env }, execArgv: [...process.execArgv, ...PLATFORM_NODE_FLAGS, ...profile] });
  const exited = once(child, "exit");
  const failed = exited.then(() => {
    throw new Error("the gateway's process exited before it listened");
  });
  failed.catch(() => {}); // once it listens, its exit is close()'s
  const [url] = (await Promise.race([once(child, "message"), failed])) as [string];
  return {
    pid: child.pid!,
    url,
    close: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** The apps' client thread (bench/gateway-apps-client.ts), kept for every run. */
async function startAppsClient(input: AppsInput): Promise<{ threadId: number; paths: string[]; run(r: AppsRun): Promise<AppsResult>; close(): Promise<number> }> {
  // A worker's entry is loaded before any --import: tsx is registered there first.
  const entry = new URL("./gateway-apps-client.ts", import.meta.url).href;
  const worker = new Worker(`import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(entry)}); })`, { eval: true, workerData: input });
  // The next message; events.once rejects if the worker fails first.
  const next = async <T>() => {
    const [m] = (await once(worker, "message")) as [T & { error?: string }];
    if (m.error) throw new Error(m.error);
    return m;
  };
  const hello = await next<{ threadId: number; paths: string[] }>();
  // The answer is delivered on a later turn, after next() listens.
  const run = (r: AppsRun) => (worker.postMessage(r), next<AppsResult>());
  return { ...hello, run, close: () => worker.terminate() };
}
