// One in-process unary call through the runtime's local path (peers' local
// transport to a server in the same process, as every hop of `make run` and
// the e2e bench's process mode goes), against yardsticks in the same process:
// the same handler called as a plain function with a handler context, and
// connect's own router transport with the same interceptors on both sides
// (it encodes the messages: what the local path exists to avoid). payment's
// CreateTip contract, a handler that does nothing, every interceptor a
// service runs. Prints CPU microseconds (user+system) and bytes allocated
// (V8's allocation sampling, collected objects counted) per call, and each as
// a ratio to the plain call, alternating the paths each round.
//   node --import tsx bench/local-call.ts [seconds per path and round=2] [rounds=3] [concurrency=16]
//   BENCH_PROFILE=file.cpuprofile profiles the local path in the last round;
//   BENCH_ALLOCATIONS=1 prints its allocations by function (last round).
//   BENCH_PATHS=plain,runtime measures only the paths whose names start with these words
//   (connect's router path is ten times the others' CPU: on a loaded machine it takes most of the run).
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createContextValues, createHandlerContext, createRouterTransport } from "@connectrpc/connect";
import { CreateTipRequestSchema, CreateTipResponseSchema, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { createLogger, createPeers, Metrics, requestIdPropagation, serverInterceptors, serviceInterceptors, signingInterceptor, startServer, tracingInterceptor, type ServerOptions } from "@ttip/runtime";
import { closedLoop } from "./load.js";

const seconds = Number(process.argv[2] ?? 2);
const rounds = Number(process.argv[3] ?? 3);
const concurrency = Number(process.argv[4] ?? 16);

const createTip = async (_req: unknown, _ctx: unknown) => create(CreateTipResponseSchema, {});
const routes: ServerOptions["routes"] = (router) => router.service(PaymentService, { createTip });
const options: ServerOptions = { name: "payment", logger: createLogger({ level: "silent" }), metrics: new Metrics(), services: [PaymentService], routes, interceptors: serviceInterceptors() };
const server = await startServer(options);
const peers = createPeers(() => undefined, () => server.local);
const local = createClient(PaymentService, peers("payment"));
// The interceptors createPeers puts on every call.
const clientInterceptors = [tracingInterceptor("client"), requestIdPropagation(), signingInterceptor()];
const router = createClient(
  PaymentService,
  createRouterTransport(routes, { transport: { interceptors: clientInterceptors }, router: { interceptors: serverInterceptors({ ...options, metrics: new Metrics() }) } }),
);
const request = () => ({
  idempotencyKey: randomUUID(),
  recipient: { case: "qrCode" as const, value: "QR-7KD2-PX9A" },
  amount: { currency: "KES", amountMinor: 15_000n },
  payment: { case: "mpesaPhone" as const, value: "+254712345678" },
  rating: 5,
  message: "asante sana",
});
const method = PaymentService.method.createTip;
/** Why a plain call's context ends: one shared reason, as a LocalCall's. */
const CALL_OVER = new ConnectError("the call is over", Code.Canceled);
const plain = async () => {
  const context = createHandlerContext({ service: PaymentService, method, protocolName: "grpc", requestMethod: "POST", url: "http://in-process/", timeoutMs: 5_000, contextValues: createContextValues() });
  try {
    return await createTip(create(CreateTipRequestSchema, request()), context);
  } finally {
    // Its deadline timer is cleared once the call is over, as every other path's is: left to fire,
    // the plain calls' timers went off 5 s later, in the middle of another path's measured round.
    context.abort(CALL_OVER);
  }
};
const allPaths: Array<[string, () => Promise<unknown>]> = [
  ["plain call (yardstick)", plain],
  ["runtime local path", () => local.createTip(request(), { timeoutMs: 5_000 })],
  ["connect router transport", () => router.createTip(request(), { timeoutMs: 5_000 })],
];
const chosen = process.env.BENCH_PATHS?.split(",");
const paths = new Map(allPaths.filter(([name]) => !chosen || chosen.some((word) => name.startsWith(word))));

type HeapNode = { selfSize: number; callFrame: { functionName: string; url: string; lineNumber: number }; children: HeapNode[] };

/** Bytes allocated per call over `calls` calls, 16 at a time; `byFunction` prints the top allocators. */
async function bytesPerCall(session: Session, call: () => Promise<unknown>, calls: number, byFunction = false): Promise<number> {
  await session.post("HeapProfiler.startSampling", { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  for (let i = 0; i < calls; i += 16) await Promise.all(Array.from({ length: 16 }, call));
  const { profile } = await session.post("HeapProfiler.stopSampling");
  const sum = (node: HeapNode): number => node.children.reduce((total, child) => total + sum(child), node.selfSize);
  if (byFunction) printAllocators(profile.head as HeapNode, calls);
  return sum(profile.head as HeapNode) / calls;
}

function printAllocators(head: HeapNode, calls: number): void {
  const bytes = new Map<string, number>();
  const walk = (n: HeapNode) => {
    const { functionName, url, lineNumber } = n.callFrame;
    const name = `${functionName || "(anonymous)"} ${url.replace(/^.*\/(node_modules|services)\//, "")}:${lineNumber + 1}`;
    if (n.selfSize) bytes.set(name, (bytes.get(name) ?? 0) + n.selfSize);
    n.children.forEach(walk);
  };
  walk(head);
  for (const [name, b] of [...bytes].sort((x, y) => y[1] - x[1]).slice(0, 30)) console.log(`    ${(b / calls).toFixed(0).padStart(6)} B/call  ${name}`);
}

const session = new Session();
session.connect();
try {
  for (const call of paths.values()) for (let i = 0; i < 3_000; i++) await call();
  const figures = new Map<string, { us: number[]; bytes: number[] }>();
  for (let round = 1; round <= rounds; round++) {
    for (const [name, call] of paths) {
      const profiling = process.env.BENCH_PROFILE && round === rounds && name === "runtime local path";
      if (profiling) {
        await session.post("Profiler.enable");
        await session.post("Profiler.start");
      }
      const before = process.cpuUsage();
      const result = await closedLoop(concurrency, seconds, call);
      const used = process.cpuUsage(before);
      if (profiling) writeFileSync(process.env.BENCH_PROFILE!, JSON.stringify((await session.post("Profiler.stop")).profile));
      const us = (used.user + used.system) / result.calls;
      const bytes = await bytesPerCall(session, call, 20_000, !!process.env.BENCH_ALLOCATIONS && round === rounds && name === "runtime local path");
      const f = figures.get(name) ?? { us: [], bytes: [] };
      figures.set(name, { us: [...f.us, us], bytes: [...f.bytes, bytes] });
      console.log(`round ${round}  ${name.padEnd(26)} ${result.perSecond.toFixed(0).padStart(7)} calls/s  CPU ${us.toFixed(1).padStart(6)} us/call  ${(bytes / 1024).toFixed(2).padStart(6)} KiB/call`);
    }
  }
  // Of an even count, the mean of the middle two (rounds=2: the mean, not the larger).
  const median = (list: number[]) => {
    const sorted = [...list].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  };
  const yard = figures.get("plain call (yardstick)")!;
  for (const [name, f] of figures) {
    const [us, kib] = [median(f.us), median(f.bytes) / 1024];
    console.log(`${name.padEnd(26)} median CPU ${us.toFixed(1).padStart(6)} us/call (${(us / median(yard.us)).toFixed(1)}x plain)  ${kib.toFixed(2).padStart(6)} KiB/call (${(kib / (median(yard.bytes) / 1024)).toFixed(1)}x plain)`);
  }
} finally {
  session.disconnect();
  peers.close();
  await server.close();
}
