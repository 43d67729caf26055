// The server's call metrics (Metrics.interceptor: started, handled by code, duration) per call,
// against its yardstick in the same process: the same three figures kept the way they were
// before, prom-client's inc and startTimer with the call's label set (a hash of it each time).
// A unary call that answers at once, over a service's methods and a few codes, alternated
// by round. Prints CPU nanoseconds per call and the ratio to the yardstick.
//   node --import tsx bench/call-metrics.ts [calls per round=200000] [rounds=5]
import { performance } from "node:perf_hooks";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { Metrics, codeName } from "@ttip/runtime";
import { nextThen } from "../services/runtime/src/interceptors.js";

const callsPerRound = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 5);

type Req = Parameters<ReturnType<Interceptor>>[0];

/** The interceptor as it was: prom-client's counters and histogram with the call's labels. */
function promClientPerCall(metrics: Metrics): Interceptor {
  const handling = metrics.histogram("bench_handling_seconds", "yardstick", ["grpc_type", "grpc_service", "grpc_method"], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
  const started = metrics.counter("bench_started_total", "yardstick", ["grpc_type", "grpc_service", "grpc_method"]);
  const handled = metrics.counter("bench_handled_total", "yardstick", ["grpc_type", "grpc_service", "grpc_method", "grpc_code"]);
  return (next) => async (req) => {
    const labels = { grpc_type: "unary", grpc_service: req.service.typeName, grpc_method: req.method.name };
    started.inc(labels);
    const stop = handling.startTimer(labels);
    const finish = (_call: undefined, err?: unknown) => {
      stop();
      handled.inc({ ...labels, grpc_code: codeName(err === undefined ? undefined : ConnectError.from(err).code) });
    };
    return nextThen(next, req, finish, undefined);
  };
}

const methods = PaymentService.methods.filter((m) => m.methodKind === "unary");
const requests = methods.map((method) => ({ method, service: PaymentService, stream: false }) as unknown as Req);
const answer = { stream: false } as never;
const refusal = new ConnectError("refused", Code.NotFound);
/** One call in eight refused: a second code per method, as services see. */
const call = (intercepted: ReturnType<Interceptor>, i: number) => intercepted(requests[i % requests.length]).catch(() => undefined);
const nextFor = (i: () => number) => async () => {
  if (i() % 8 === 7) throw refusal;
  return answer;
};

async function round(interceptor: Interceptor): Promise<number> {
  let i = 0;
  const intercepted = interceptor(nextFor(() => i));
  const before = process.cpuUsage();
  for (; i < callsPerRound; i++) await call(intercepted, i);
  const used = process.cpuUsage(before);
  return ((used.user + used.system) * 1000) / callsPerRound;
}

const metrics = new Metrics();
const paths: Array<[string, Interceptor]> = [
  ["Metrics.interceptor (cells)", metrics.interceptor()],
  ["prom-client per call (before)", promClientPerCall(metrics)],
];
for (const [, interceptor] of paths) await round(interceptor); // warm up
const ns = new Map<string, number[]>();
const started = performance.now();
for (let r = 1; r <= rounds; r++) {
  for (const [name, interceptor] of r % 2 ? paths : [...paths].reverse()) {
    const perCall = await round(interceptor);
    ns.set(name, [...(ns.get(name) ?? []), perCall]);
    console.log(`round ${r}  ${name.padEnd(32)} CPU ${perCall.toFixed(0)} ns per call`);
  }
}
await metrics.registry.metrics(); // a scrape still reads what was counted
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
for (const [name, list] of ns) console.log(`${name}: median ${median(list).toFixed(0)} ns per call, best ${Math.min(...list).toFixed(0)}`);
const [ours, yardstick] = paths.map(([name]) => median(ns.get(name)!));
console.log(`ratio to the yardstick (median): ${(ours / yardstick).toFixed(2)}  (${((performance.now() - started) / 1000).toFixed(0)} s)`);
