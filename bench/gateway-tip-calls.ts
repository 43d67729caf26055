// A tip's two calls from a customer's phone as process mode serves them (`make run`, tip-e2e's
// default): CreateTip (Connect unary) then WatchTip (Connect server stream: PENDING, then
// SUCCEEDED a moment later) over HTTP/2 to the gateway, which forwards both to the payment
// service in the same process (its local transport) behind every check and interceptor. The
// payment service here is a stand-in with no database (its handlers answer at once), so what is
// measured is the RPC layer's own cost per tip: HTTP/2 in, the gateway's checks, the in-process
// hop, the service's interceptors, encoding. The customers run on a worker thread (the tip
// bench's client, bench/customer-client.ts); the figures are the event loop's CPU per tip
// (the main thread's, /proc) and heap bytes allocated per tip (V8's sampling heap profiler), for each path,
// alternated in rounds so a noisy machine hits them alike. A path is the gateway and service
// built one way: "now" is the code as it is; the others are the older ways kept as yardsticks:
// "forward via client (before)": the gateway's forwarding through connect-es's client (forward.ts).
//   node --max-semi-space-size=32 --import tsx bench/gateway-tip-calls.ts [seconds per path and round=3] [rounds=5] [concurrency=16]
//   BENCH_PROFILE=prefix writes a CPU and a heap profile of each path's last round (prefix.<n>.cpuprofile, .heapprofile; n: the path's place).
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { isMainThread, parentPort, Worker } from "node:worker_threads";
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { startGateway } from "@ttip/gateway";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { CreateTipResponseSchema, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { createLogger, localTransport, MemoryCache, Metrics, serviceInterceptors, startServer, type RunningServer } from "@ttip/runtime";
import { CustomerClient } from "./customer-client.js";
import { closedLoop } from "./load.js";
import { threadCpuMs, THREAD_KINDS } from "./process-cpu.js";
import { sampledBytes, sampleHeap } from "./heap-sampling.js";
import { imageEntry, rerunInImageForm } from "./image-form.js";

interface ClientRun {
  url: string;
  concurrency: number;
  /** Run for this long; or, with `tips`, make this many tips (the heap's rounds). */
  seconds: number;
  tips?: number;
}
interface ClientResult {
  tips: number;
  perSecond: number;
  failures: number;
}

if (!isMainThread) customers();
// BENCH_PLATFORM=image: the gateway and the service compiled as the image's (bench/image-form.ts); the customers' worker stays source.
else if (process.env.BENCH_PLATFORM === "image" && !imageEntry()) process.exit(await rerunInImageForm(fileURLToPath(import.meta.url), process.execArgv.filter((a) => /^--(?!import|require|loader)/.test(a))));
else await main();

/** The worker: one HTTP/2 connection per gateway, tips in a closed loop as the bench asks. */
function customers(): void {
  const clients = new Map<string, CustomerClient>();
  const tip = async (client: CustomerClient, result: { failures: number }) => {
    const { tip } = await client.createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "qrCode", value: "QR-7KD2-PX9A" },
      amount: { currency: "KES", amountMinor: 15_000n },
      payment: { case: "mpesaPhone", value: "+254712345678" },
    });
    const messages = await client.watchTip({ tipId: tip!.tipId });
    if (messages.length !== 2 || messages[1].tip?.status !== TipStatus.SUCCEEDED) result.failures++;
  };
  parentPort!.on("message", async (r: ClientRun) => {
    let client = clients.get(r.url);
    if (!client) clients.set(r.url, (client = new CustomerClient(r.url)));
    const result = { failures: 0 };
    if (r.tips !== undefined) {
      let left = r.tips;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: r.concurrency }, async () => {
        while (left-- > 0) await tip(client, result);
      }));
      parentPort!.postMessage({ tips: r.tips, perSecond: r.tips / ((performance.now() - t0) / 1000), failures: result.failures } satisfies ClientResult);
      return;
    }
    const load = await closedLoop(r.concurrency, r.seconds, () => tip(client, result));
    parentPort!.postMessage({ tips: load.calls, perSecond: load.perSecond, failures: result.failures } satisfies ClientResult);
  });
}

/** The payment service's stand-in: CreateTip answers a tip, WatchTip sends it PENDING, then SUCCEEDED on a later turn. */
function startPayment(): Promise<RunningServer> {
  return startServer({
    name: "payment",
    logger: createLogger({ level: "silent" }),
    metrics: new Metrics(),
    services: [PaymentService],
    routes: (router) =>
      router.service(PaymentService, {
        createTip: async (req) => create(CreateTipResponseSchema, { tip: { tipId: randomUUID(), status: TipStatus.PENDING, amount: req.amount } }),
        watchTip: async function* (req) {
          yield { tip: { tipId: req.tipId, status: TipStatus.PENDING } };
          await new Promise((resolve) => setImmediate(resolve));
          yield { tip: { tipId: req.tipId, status: TipStatus.SUCCEEDED } };
        },
      }),
    interceptors: serviceInterceptors(),
  });
}

/** How a path's gateway and service are built: the older ways, each kept as a yardstick. */
interface Way {
  /** The gateway forwards through connect-es's client (createClient), as before it called the transport itself. */
  forwardViaClient?: boolean;
}

/** A path: the gateway (and the service behind it) built one way. */
async function startPath(way: Way = {}): Promise<{ url: string; close(): Promise<void> }> {
  const payment = await startPayment();
  const gateway = await startGateway({
    logger: createLogger({ level: "silent" }),
    metrics: new Metrics(),
    cache: new MemoryCache(),
    backends: [{ service: PaymentService, url: payment.url, local: localTransport(payment.local) }],
    rateLimit: { points: 1_000_000_000, durationSeconds: 60 },
    corsOrigins: [],
    host: "127.0.0.1",
    port: 0,
    forwardViaClient: way.forwardViaClient,
  });
  return { url: gateway.url, close: async () => (await gateway.close(), await payment.close()) };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 3);
  const rounds = Number(process.argv[3] ?? 5);
  const concurrency = Number(process.argv[4] ?? 16);
  const worker = new Worker(`import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(import.meta.url)}); })`, { eval: true });
  const run = async (r: ClientRun): Promise<ClientResult> => {
    worker.postMessage(r);
    const [result] = (await once(worker, "message")) as [ClientResult];
    return result;
  };
  const paths = new Map<string, Awaited<ReturnType<typeof startPath>>>([
    ["now", await startPath()],
    ["forward via client (before)", await startPath({ forwardViaClient: true })],
  ]);
  const loopMs = () => threadCpuMs(process.pid).get(THREAD_KINDS.main) ?? 0;
  const figures = new Map<string, { us: number[]; bytes: number[] }>();
  try {
    for (const path of paths.values()) await run({ url: path.url, concurrency, seconds: 2 }); // warm
    for (let round = 1; round <= rounds; round++) {
      let n = 0;
      for (const [name, path] of paths) {
        n++;
        const profiling = process.env.BENCH_PROFILE && round === rounds ? new Session() : undefined;
        if (profiling) {
          profiling.connect();
          await profiling.post("Profiler.enable");
          await profiling.post("Profiler.setSamplingInterval", { interval: 100 });
          await profiling.post("Profiler.start");
        }
        const cpu0 = loopMs();
        const result = await run({ url: path.url, concurrency, seconds });
        const us = ((loopMs() - cpu0) * 1000) / result.tips;
        if (profiling) writeFileSync(`${process.env.BENCH_PROFILE}.${n}.cpuprofile`, JSON.stringify((await profiling.post("Profiler.stop")).profile));
        // Heap bytes per tip: a round of tips under V8's sampling heap profiler, collected objects counted too.
        const heap = new Session();
        heap.connect();
        let counted = { tips: 0 };
        const profile = await sampleHeap(heap, 1024, async () => (counted = await run({ url: path.url, concurrency, seconds: 0, tips: 400 })));
        heap.disconnect();
        const bytes = sampledBytes(profile.head) / counted.tips;
        if (process.env.BENCH_PROFILE && round === rounds) writeFileSync(`${process.env.BENCH_PROFILE}.${n}.heapprofile`, JSON.stringify(profile));
        const f = figures.get(name) ?? { us: [], bytes: [] };
        f.us.push(us);
        f.bytes.push(bytes);
        figures.set(name, f);
        console.log(`round ${round}  ${name.padEnd(28)} ${result.perSecond.toFixed(0).padStart(6)} tips/s  event loop ${us.toFixed(0)} us per tip  heap ${(bytes / 1024).toFixed(1)} KiB per tip${result.failures ? `  FAILED ${result.failures}` : ""}`);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const base = figures.get("now")!;
    for (const [name, f] of figures) {
      const ratio = name === "now" ? "" : `  now / this: CPU ${(median(base.us) / median(f.us)).toFixed(2)}, heap ${(median(base.bytes) / median(f.bytes)).toFixed(2)}`;
      console.log(`${name}: medians of ${f.us.length} rounds: event loop ${median(f.us).toFixed(0)} us, heap ${(median(f.bytes) / 1024).toFixed(1)} KiB per tip${ratio}`);
    }
  } finally {
    await worker.terminate();
    for (const path of paths.values()) await path.close();
  }
}

