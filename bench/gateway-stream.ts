// A customer's WatchTip (Connect server stream: PENDING, then SUCCEEDED a turn later) through the
// gateway to a payment service in a process of its own, as cluster mode runs it, against the
// customer's unary CreateTip on the same path (the yardstick a stream is compared with). The payment
// service is a stand-in with no database (bench/gateway-tip-calls.ts's), forked from this file; the
// customers run on a worker thread (bench/customer-client.ts). Two gateways in this process, reached
// alike: "bytes (now)" forwards a Connect binary stream's messages as the service encoded them
// (raw-stream.ts); "decoding (before)" decodes each and encodes it again (forwardStreamBytes: false,
// forward.ts), the yardstick. Rounds alternate the paths and call kinds so a noisy machine hits them
// alike. Per call: the gateway's event-loop CPU (this process's main thread), the service's CPU (its
// whole process), and the gateway's heap bytes allocated (V8's sampling heap profiler).
//   node --max-semi-space-size=32 --import tsx bench/gateway-stream.ts [seconds per path and round=3] [rounds=5] [concurrency=16]
import { fork, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { loadavg } from "node:os";
import { Session } from "node:inspector/promises";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker } from "node:worker_threads";
import { create } from "@bufbuild/protobuf";
import { startGateway } from "@ttip/gateway";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { CreateTipResponseSchema, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { createLogger, MemoryCache, Metrics, serviceInterceptors, startServer, type RunningServer } from "@ttip/runtime";
import { CustomerClient } from "./customer-client.js";
import { closedLoop } from "./load.js";
import { processCpuMs, threadCpuMs, THREAD_KINDS } from "./process-cpu.js";
import { sampledBytes, sampleHeap } from "./heap-sampling.js";

type Kind = "CreateTip" | "WatchTip";
interface ClientRun {
  url: string;
  kind: Kind;
  concurrency: number;
  seconds: number;
  /** With it: this many calls (the heap's rounds), not `seconds`. */
  calls?: number;
}
interface ClientResult {
  calls: number;
  perSecond: number;
  failures: number;
  /** The first failure's message. */
  failure?: string;
}

const TIP_ID = "6f0c1a8e-1a2b-4c3d-8e9f-0a1b2c3d4e5f";

if (!isMainThread) customers();
else if (process.argv[2] === "--backend") await backend();
else await main();

/** The worker: one HTTP/2 connection per gateway, calls of one kind in a closed loop. */
function customers(): void {
  const clients = new Map<string, CustomerClient>();
  const call = async (client: CustomerClient, kind: Kind, result: { failures: number }) => {
    if (kind === "CreateTip") {
      const { tip } = await client.createTip({
        idempotencyKey: randomUUID(),
        recipient: { case: "qrCode", value: "QR-7KD2-PX9A" },
        amount: { currency: "KES", amountMinor: 15_000n },
        payment: { case: "mpesaPhone", value: "+254712345678" },
      });
      if (!tip) result.failures++;
      return;
    }
    const messages = await client.watchTip({ tipId: TIP_ID });
    if (messages.length !== 2 || messages[1].tip?.status !== TipStatus.SUCCEEDED) result.failures++;
  };
  parentPort!.on("message", async (r: ClientRun) => {
    let client = clients.get(r.url);
    if (!client) clients.set(r.url, (client = new CustomerClient(r.url)));
    const result: { failures: number; failure?: string } = { failures: 0 };
    const once = () =>
      call(client, r.kind, result).catch((err: unknown) => {
        result.failures++;
        result.failure ??= String(err);
      });
    if (r.calls !== undefined) {
      let left = r.calls;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: r.concurrency }, async () => {
        while (left-- > 0) await once();
      }));
      parentPort!.postMessage({ calls: r.calls, perSecond: r.calls / ((performance.now() - t0) / 1000), failures: result.failures, failure: result.failure } satisfies ClientResult);
      return;
    }
    const load = await closedLoop(r.concurrency, r.seconds, once);
    parentPort!.postMessage({ calls: load.calls, perSecond: load.perSecond, failures: result.failures, failure: result.failure } satisfies ClientResult);
  });
}

/** The payment service's stand-in in its own process: CreateTip answers a tip, WatchTip sends it PENDING, then SUCCEEDED on a later turn. */
async function backend(): Promise<void> {
  const server: RunningServer = await startServer({
    name: "payment",
    logger: createLogger({ level: "silent" }),
    metrics: new Metrics(),
    services: [PaymentService],
    routes: (router) =>
      router.service(PaymentService, {
        createTip: async (req) => create(CreateTipResponseSchema, { tip: { tipId: randomUUID(), status: TipStatus.PENDING, amount: req.amount } }),
        watchTip: async function* (req) {
          const amount = { currency: "KES", amountMinor: 15_000n };
          yield { tip: { tipId: req.tipId, status: TipStatus.PENDING, amount } };
          await new Promise((resolve) => setImmediate(resolve));
          yield { tip: { tipId: req.tipId, status: TipStatus.SUCCEEDED, amount } };
        },
      }),
    interceptors: serviceInterceptors(),
    host: "127.0.0.1",
    port: 0,
  });
  process.send!(server.url);
  process.once("SIGTERM", async () => {
    await server.close();
    process.exit(0);
  });
}

async function startBackend(): Promise<{ child: ChildProcess; url: string }> {
  // The gateway and the service sign and verify with one key, as a cluster's processes share theirs.
  process.env.INTERNAL_SIGNING_KEY ??= randomBytes(32).toString("hex");
  const child = fork(fileURLToPath(import.meta.url), ["--backend"], { execArgv: ["--max-semi-space-size=32", "--import", "tsx"] });
  const [url] = (await once(child, "message")) as [string];
  return { child, url };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 3);
  const rounds = Number(process.argv[3] ?? 5);
  const concurrency = Number(process.argv[4] ?? 16);
  const { child, url: paymentUrl } = await startBackend();
  const worker = new Worker(`import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(import.meta.url)}); })`, { eval: true });
  const run = async (r: ClientRun): Promise<ClientResult> => {
    worker.postMessage(r);
    const [result] = (await once(worker, "message")) as [ClientResult];
    return result;
  };
  const gateway = (forwardStreamBytes: boolean) =>
    startGateway({
      logger: createLogger({ level: "silent" }),
      metrics: new Metrics(),
      cache: new MemoryCache(),
      backends: [{ service: PaymentService, url: paymentUrl }],
      rateLimit: { points: 1_000_000_000, durationSeconds: 60 },
      corsOrigins: [],
      host: "127.0.0.1",
      port: 0,
      forwardStreamBytes,
    });
  const paths = new Map([
    ["bytes (now)", await gateway(true)],
    ["decoding (before)", await gateway(false)],
  ]);
  const kinds: Kind[] = ["WatchTip", "CreateTip"];
  const loopMs = () => threadCpuMs(process.pid).get(THREAD_KINDS.main) ?? 0;
  const figures = new Map<string, { gateway: number[]; service: number[]; bytes: number[] }>();
  console.log(`load average at start ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  try {
    for (const path of paths.values()) for (const kind of kinds) await run({ url: path.url, kind, concurrency, seconds: 2 }); // warm
    for (let round = 1; round <= rounds; round++) {
      for (const kind of kinds) {
        for (const [name, path] of paths) {
          const gw0 = loopMs();
          const svc0 = processCpuMs(child.pid!);
          const result = await run({ url: path.url, kind, concurrency, seconds });
          const gatewayUs = ((loopMs() - gw0) * 1000) / result.calls;
          const serviceUs = ((processCpuMs(child.pid!) - svc0) * 1000) / result.calls;
          const heap = new Session();
          heap.connect();
          let counted = { calls: 0 };
          const profile = await sampleHeap(heap, 1024, async () => (counted = await run({ url: path.url, kind, concurrency, seconds: 0, calls: 1000 })));
          heap.disconnect();
          const bytes = sampledBytes(profile.head) / counted.calls;
          const key = `${kind} ${name}`;
          const f = figures.get(key) ?? { gateway: [], service: [], bytes: [] };
          f.gateway.push(gatewayUs);
          f.service.push(serviceUs);
          f.bytes.push(bytes);
          figures.set(key, f);
          console.log(
            `round ${round}  ${key.padEnd(28)} ${result.perSecond.toFixed(0).padStart(6)} calls/s  gateway ${gatewayUs.toFixed(0).padStart(4)} us  service ${serviceUs.toFixed(0).padStart(4)} us  gateway heap ${(bytes / 1024).toFixed(1)} KiB per call${result.failures ? `  FAILED ${result.failures}: ${result.failure}` : ""}  (load ${loadavg()[0].toFixed(1)})`,
          );
        }
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.log(`medians of ${rounds} rounds (load average at end ${loadavg().map((l) => l.toFixed(1)).join(" ")}):`);
    for (const [key, f] of figures) console.log(`  ${key.padEnd(28)} gateway ${median(f.gateway).toFixed(0).padStart(4)} us  service ${median(f.service).toFixed(0).padStart(4)} us  gateway heap ${(median(f.bytes) / 1024).toFixed(1)} KiB per call`);
    for (const name of paths.keys()) {
      const w = figures.get(`WatchTip ${name}`)!;
      const c = figures.get(`CreateTip ${name}`)!;
      console.log(`  ${name}: WatchTip / CreateTip at the gateway: CPU ${(median(w.gateway) / median(c.gateway)).toFixed(2)}, heap ${(median(w.bytes) / median(c.bytes)).toFixed(2)}; at the service: CPU ${(median(w.service) / median(c.service)).toFixed(2)}`);
    }
    // Per round, the same round's two paths: the ratio the rounds agree on, whatever the load did between rounds.
    const now = figures.get("WatchTip bytes (now)")!;
    const before = figures.get("WatchTip decoding (before)")!;
    const perRound = now.gateway.map((g, i) => g / before.gateway[i]);
    console.log(`  WatchTip at the gateway, now / before by round: CPU ${perRound.map((r) => r.toFixed(2)).join(" ")} (median ${median(perRound).toFixed(2)}), heap ${(median(now.bytes) / median(before.bytes)).toFixed(2)}; at the service: CPU ${(median(now.service) / median(before.service)).toFixed(2)}`);
  } finally {
    await worker.terminate();
    for (const path of paths.values()) await path.close();
    child.kill("SIGTERM");
  }
}
