// A server stream's handler behind every interceptor a service runs (the server's: tracing,
// metrics, request id, errors, input checks; the service's: signed identity, access, step-up;
// validation), as a server runs it for each call: WatchTip answered with two messages and read
// to its end. Composed once with native generators (runtime local-server.ts streamInvoker, now)
// and through connect-es's transformInvokeImplementation (before, the yardstick: the chain composed
// per call, every message through generators compiled for older engines), alternated in one
// process. The gateway runs this for each customer's WatchTip, and the payment service behind it
// again (in process, or over HTTP/2 or frames). Prints CPU microseconds per call and heap bytes
// allocated per call (V8's sampling heap profiler, collected objects too), and their ratios.
//   node --max-semi-space-size=32 --import tsx bench/stream-invoker.ts [rounds=5] [calls per round=20000]
import { randomUUID } from "node:crypto";
import { Session } from "node:inspector/promises";
import { createConnectRouter, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { transformInvokeImplementation, createAsyncIterable } from "@connectrpc/connect/protocol";
import { create, type Message } from "@bufbuild/protobuf";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService, WatchTipRequestSchema } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { createLogger, LightHeaders, Metrics, serverInterceptors, serviceInterceptors } from "@ttip/runtime";
import { recordingRouter, streamInvoker, type DirectSpec } from "../services/runtime/src/local-server.js";
import { sampledBytes, sampleHeap } from "./heap-sampling.js";

const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 20_000);
const concurrency = 16;

const recording = recordingRouter(createConnectRouter());
recording.router.service(PaymentService, {
  watchTip: async function* (req) {
    yield { tip: { tipId: req.tipId, status: TipStatus.PENDING } };
    yield { tip: { tipId: req.tipId, status: TipStatus.SUCCEEDED } };
  },
});
const spec = recording.methods.get(`${PaymentService.typeName}/WatchTip`) as Extract<DirectSpec, { kind: "server_streaming" }>;
const interceptors = serverInterceptors({
  name: "payment",
  logger: createLogger({ level: "silent" }),
  metrics: new Metrics(),
  services: [PaymentService],
  routes: () => {},
  interceptors: serviceInterceptors(),
});

/** A call's context as the server makes it (connect-stream.ts). */
function context(): HandlerContext {
  const responseHeader = new LightHeaders();
  responseHeader.set("content-type", "application/connect+proto");
  return {
    service: PaymentService,
    method: spec.method,
    protocolName: "connect",
    requestMethod: "POST",
    url: "http://127.0.0.1/ttip.payment.v1.PaymentService/WatchTip",
    signal: new AbortController().signal,
    timeoutMs: () => undefined,
    requestHeader: LightHeaders.fromRaw(["content-type", "application/connect+proto", "connect-protocol-version", "1", "user-agent", "connect-es/2.2.0"]),
    responseHeader,
    responseTrailer: new LightHeaders(),
    values: createContextValues(),
  };
}

type Way = (ctx: HandlerContext, input: AsyncIterable<Message>) => AsyncIterator<Message>;
const invoke = streamInvoker(spec, interceptors);
const ways: Record<string, Way> = {
  "composed once (now)": (ctx, input) => invoke(ctx, input),
  "transformInvokeImplementation (before)": (ctx, input) => transformInvokeImplementation(spec, ctx, interceptors)(input)[Symbol.asyncIterator](),
};

/** One call read to its end, as the server reads it. */
async function call(way: Way): Promise<void> {
  const output = way(context(), createAsyncIterable([create(WatchTipRequestSchema, { tipId: randomUUID() })]));
  let n = 0;
  for (let r = await output.next(); !r.done; r = await output.next()) n++;
  if (n !== 2) throw new Error(`read ${n} messages`);
}

async function calls(way: Way, count: number): Promise<void> {
  let left = count;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (left-- > 0) await call(way);
  }));
}

async function measure(way: Way): Promise<{ us: number; bytes: number }> {
  const start = process.cpuUsage();
  await calls(way, perRound);
  const used = process.cpuUsage(start);
  const heap = new Session();
  heap.connect();
  const profile = await sampleHeap(heap, 512, () => calls(way, 2_000));
  heap.disconnect();
  return { us: (used.user + used.system) / perRound, bytes: sampledBytes(profile.head) / 2_000 };
}

for (const way of Object.values(ways)) await calls(way, 5_000); // warm
const figures = new Map<string, { us: number[]; bytes: number[] }>();
for (let round = 1; round <= rounds; round++) {
  const line: string[] = [];
  for (const [name, way] of Object.entries(ways)) {
    const m = await measure(way);
    const f = figures.get(name) ?? { us: [], bytes: [] };
    f.us.push(m.us);
    f.bytes.push(m.bytes);
    figures.set(name, f);
    line.push(`${name} ${m.us.toFixed(1)} us ${m.bytes.toFixed(0)} B`);
  }
  console.log(`round ${round}: ${line.join(", ")} per call`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const [now, before] = [...figures.values()];
console.log(`medians: now ${median(now.us).toFixed(1)} us ${median(now.bytes).toFixed(0)} B, before ${median(before.us).toFixed(1)} us ${median(before.bytes).toFixed(0)} B per call; ratio CPU ${(median(now.us) / median(before.us)).toFixed(2)}, bytes ${(median(now.bytes) / median(before.bytes)).toFixed(2)}`);
