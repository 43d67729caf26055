// The shared runtime's own cost per call, without a database: payment's
// CreateTip contract (protovalidate rules, a nested Money) answered by a
// handler that does nothing, behind every interceptor a service runs (tracing
// hook, metrics, request id, errors, input checks, signed identity, access,
// step-up, validation). Called the two ways a tip's calls arrive: in process
// (peers' local transport, as `make run` and the e2e bench make every hop) and
// with the Connect protocol over HTTP/2 (the gateway's inbound leg, a cluster's
// hops). Yardsticks in the same process: the in-process unary call through
// connect's runUnaryCall (as peers called it before LocalCall), and a one-message
// WatchTip stream in process, directly and through the server's gRPC universal
// handler (as in-process streams went before), and the Connect call over
// HTTP/2 received through node's compatibility layer (Http2ServerRequest and
// Http2ServerResponse, as before the server answered it on HTTP/2's stream
// API), in binary and in JSON (JSON went that way until it too was answered
// on the stream API), and a one-message WatchTip in Connect JSON over HTTP/2
// (the gateway's callers watching a tip), on the stream API and through the
// compatibility layer and connect-node's handler (before); both also called with the peers' own Connect client (internalTransport,
// a cluster's hops), whose small cost leaves the server's share of the call
// larger. Prints this process's CPU
// microseconds per call (user+system), the figure that stays put on a loaded
// machine, alternating the paths each round.
//   node --import tsx bench/runtime-call.ts [seconds per path and round=3] [rounds=3] [concurrency=16]
//   BENCH_PROFILE=file.cpuprofile profiles one path in the last round (BENCH_PROFILE_PATH, default "in process").
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { create } from "@bufbuild/protobuf";
import { createClient, createContextValues, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { runUnaryCall } from "@connectrpc/connect/protocol";
import { CreateTipResponseSchema, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import {
  createLogger,
  createPeers,
  internalTransport,
  Metrics,
  requestIdPropagation,
  serviceInterceptors,
  signingInterceptor,
  startServer,
  tracingInterceptor,
  universalHandlerTransport,
  upstreamSessions,
  type RunningServer,
} from "@ttip/runtime";
import { closedLoop } from "./load.js";

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 3);
const concurrency = Number(process.argv[4] ?? 16);

const logger = createLogger({ level: "silent" });
const startPayment = (streamApi: boolean) =>
  startServer({
    name: "payment",
    logger,
    metrics: new Metrics(),
    services: [PaymentService],
    routes: (router) =>
      router.service(PaymentService, {
        createTip: async () => create(CreateTipResponseSchema, {}),
        watchTip: async function* (req) {
          yield { tip: { tipId: req.tipId } };
        },
      }),
    interceptors: serviceInterceptors(),
    streamApi,
  });
const server = await startPayment(true);
const compatServer = await startPayment(false);
const peers = createPeers(() => undefined, () => server.local);
const inProcess = createClient(PaymentService, peers("payment"));
// The interceptors createPeers puts on every call.
const peerInterceptors = [tracingInterceptor("client"), requestIdPropagation(), signingInterceptor()];
const viaRunUnaryCall = createClient(PaymentService, runUnaryCallTransport(server.local, peerInterceptors));
const viaUniversalHandler = createClient(PaymentService, universalHandlerTransport(server.local, peerInterceptors));
const overHttp2 = createClient(PaymentService, createConnectTransport({ baseUrl: server.url, httpVersion: "2", useBinaryFormat: true }));
const overCompat = createClient(PaymentService, createConnectTransport({ baseUrl: compatServer.url, httpVersion: "2", useBinaryFormat: true }));
// Connect JSON, as the gateway's callers send it (apps, web pages, the e2e bench's customers).
const jsonOverHttp2 = createClient(PaymentService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
const jsonOverCompat = createClient(PaymentService, createConnectTransport({ baseUrl: compatServer.url, httpVersion: "2" }));
const sessions = upstreamSessions();
const peerOverHttp2 = createClient(PaymentService, internalTransport(server.url, sessions.get(server.url), peerInterceptors));
const peerOverCompat = createClient(PaymentService, internalTransport(compatServer.url, sessions.get(compatServer.url), peerInterceptors));
const request = () => ({
  idempotencyKey: randomUUID(),
  recipient: { case: "qrCode" as const, value: "QR-7KD2-PX9A" },
  amount: { currency: "KES", amountMinor: 15_000n },
  payment: { case: "mpesaPhone" as const, value: "+254712345678" },
  rating: 5,
  message: "asante sana",
});
const watch = async (client: typeof inProcess) => {
  for await (const _ of client.watchTip({ tipId: randomUUID() }, { timeoutMs: 5_000 }));
};
const paths = new Map<string, () => Promise<unknown>>([
  ["in process", () => inProcess.createTip(request(), { timeoutMs: 5_000 })],
  ["runUnaryCall (before)", () => viaRunUnaryCall.createTip(request(), { timeoutMs: 5_000 })],
  ["stream in process", () => watch(inProcess)],
  ["stream via gRPC (before)", () => watch(viaUniversalHandler)],
  ["Connect over HTTP/2", () => overHttp2.createTip(request(), { timeoutMs: 5_000 })],
  ["  compat. layer (before)", () => overCompat.createTip(request(), { timeoutMs: 5_000 })],
  ["Connect JSON over HTTP/2", () => jsonOverHttp2.createTip(request(), { timeoutMs: 5_000 })],
  ["  JSON, compat. layer (before)", () => jsonOverCompat.createTip(request(), { timeoutMs: 5_000 })],
  ["JSON stream over HTTP/2", () => watch(jsonOverHttp2)],
  ["  JSON stream, compat. layer (before)", () => watch(jsonOverCompat)],
  ["peers' client over HTTP/2", () => peerOverHttp2.createTip(request(), { timeoutMs: 5_000 })],
  ["  peers' client, compat. layer (before)", () => peerOverCompat.createTip(request(), { timeoutMs: 5_000 })],
]);
try {
  for (const call of paths.values()) for (let i = 0; i < 2_000; i++) await call();
  const cpuUs = new Map<string, number[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const [name, call] of paths) {
      const profiling = process.env.BENCH_PROFILE && round === rounds && name === (process.env.BENCH_PROFILE_PATH ?? "in process") ? new Session() : undefined;
      if (profiling) {
        profiling.connect();
        await profiling.post("Profiler.enable");
        await profiling.post("Profiler.start");
      }
      const before = process.cpuUsage();
      const result = await closedLoop(concurrency, seconds, call);
      const used = process.cpuUsage(before);
      if (profiling) writeFileSync(process.env.BENCH_PROFILE!, JSON.stringify((await profiling.post("Profiler.stop")).profile));
      const perCall = (used.user + used.system) / result.calls;
      cpuUs.set(name, [...(cpuUs.get(name) ?? []), perCall]);
      console.log(`round ${round}  ${name.padEnd(40)} ${result.perSecond.toFixed(0).padStart(6)} calls/s  CPU ${perCall.toFixed(0)} us per call`);
    }
  }
  for (const [name, list] of cpuUs) console.log(`${name}: CPU per call, best of ${list.length} rounds: ${Math.min(...list).toFixed(0)} us (median ${list.sort((a, b) => a - b)[Math.floor(list.length / 2)].toFixed(0)} us)`);
} finally {
  peers.close();
  sessions.close();
  await server.close();
  await compatServer.close();
}

/** The in-process unary call as peers made it before LocalCall. */
function runUnaryCallTransport(local: RunningServer["local"], interceptors: Interceptor[]): Transport {
  const grpc = universalHandlerTransport(local, interceptors);
  return {
    unary: (method, signal, timeoutMs, header, message, contextValues) =>
      runUnaryCall({
        interceptors,
        signal,
        timeoutMs,
        req: {
          stream: false,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: `http://in-process/${method.parent.typeName}/${method.name}`,
          header: new Headers(header),
          contextValues: contextValues ?? createContextValues(),
          message,
        },
        next: (req) => local.unary(req, timeoutMs) as Promise<never>,
      }),
    stream: grpc.stream,
  };
}
