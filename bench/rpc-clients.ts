// The client side of a service-to-service call in a cluster: the same tiny
// unary RPC (grpc.health.v1 Check) to one of our servers (connect-node's
// HTTP/2 server, every interceptor) from connect-node's gRPC transport, from
// its Connect transport, from the peers' transport (runtime internalTransport:
// the Connect protocol's unary call straight on the HTTP/2 connection, the
// runtime's UpstreamSession as the peers use it, in frames (runtime frames.ts, as the peers and
// the gateway call now) and on HTTP/2 (before), and connect-node's session
// manager as they did before that), and from a stock @grpc/grpc-js client (the
// yardstick), alternating rounds; and a server stream as the gateway's WatchTip to payment goes
// (two messages, then the stream's end, as a tip pending then settled): the peers' transport
// (runtime connect-stream-call.ts) in frames (now) and on HTTP/2 (before), and connect-node's
// stream client on the same session (before that). The server runs in a child process, so the CPU per call measured in
// this process is the client's own; the server's is read from /proc.
//   node --import tsx bench/rpc-clients.ts [seconds per client and round=3] [rounds=3] [concurrency=16]
import { fork } from "node:child_process";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { closedLoop } from "./load.js";
import { processCpuMs } from "./process-cpu.js";

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 3);
const concurrency = Number(process.argv[4] ?? 16);

if (process.argv[5] === "serve") {
  const { Metrics, startServer } = await import("@ttip/runtime");
  const { captureLogger } = await import("@ttip/runtime/testing");
  // WatchTip as payment answers it, near enough: the tip as it is, then as it ends, then the stream's end.
  const watchTip = async function* (req: { tipId: string }) {
    yield { tip: { tipId: req.tipId, status: TipStatus.PENDING } };
    yield { tip: { tipId: req.tipId, status: TipStatus.SUCCEEDED } };
  };
  const server = await startServer({ name: "bench", logger: captureLogger("silent").logger, metrics: new Metrics(), services: [PaymentService], validate: false, routes: (router) => router.service(PaymentService, { watchTip }) });
  process.send!({ url: server.url, port: server.port });
  process.on("message", () => server.close().then(() => process.exit(0)));
} else {
  const child = fork(new URL(import.meta.url).pathname, [String(seconds), String(rounds), String(concurrency), "serve"], { execArgv: ["--import", "tsx"] });
  const { url, port } = await new Promise<{ url: string; port: number }>((resolve) => child.once("message", resolve as never));
  const serverCpuMs = () => processCpuMs(child.pid!);

  const session = new Http2SessionManager(url);
  const viaGrpc = createClient(Health, createGrpcTransport({ baseUrl: url, sessionManager: session }));
  const viaConnect = createClient(Health, createConnectTransport({ baseUrl: url, httpVersion: "2", useBinaryFormat: true }));
  const { internalTransport, UpstreamSession } = await import("@ttip/runtime");
  const peerSession = new UpstreamSession(url);
  const peersTransport = internalTransport(url, peerSession, []);
  const viaPeers = createClient(Health, peersTransport);
  // As the peers and the gateway call now: unary calls in frames (runtime frames.ts) on a connection of their own.
  const framesSession = new UpstreamSession(url, {}, undefined, true);
  const framesTransport = internalTransport(url, framesSession, []);
  const viaFrames = createClient(Health, framesTransport);
  // The peers' streams before: connect-node's client on the peers' session.
  const connectOnSession = createConnectTransport({ baseUrl: url, httpVersion: "2", sessionManager: framesSession, useBinaryFormat: true });
  const peerManager = new Http2SessionManager(url);
  const viaPeersManager = createClient(Health, internalTransport(url, peerManager, []));
  const stock = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const check = (): Promise<unknown> =>
    new Promise((resolve, reject) =>
      stock.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (m: ReturnType<typeof create<typeof HealthCheckRequestSchema>>) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
        (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
        create(HealthCheckRequestSchema, { service: "" }),
        new grpc.Metadata(),
        { deadline: Date.now() + 5_000 },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
  /** One WatchTip read to its end. */
  const watchTip = (transport: Transport) => {
    const payment = createClient(PaymentService, transport);
    return async () => {
      for await (const _ of payment.watchTip({ tipId: "bench" }, { timeoutMs: 5_000 }));
    };
  };
  const clients = new Map<string, () => Promise<unknown>>([
    ["connect-node gRPC", () => viaGrpc.check({ service: "" }, { timeoutMs: 5_000 })],
    ["connect-node Connect", () => viaConnect.check({ service: "" }, { timeoutMs: 5_000 })],
    ["peers, frames", () => viaFrames.check({ service: "" }, { timeoutMs: 5_000 })],
    ["peers, HTTP/2 (before)", () => viaPeers.check({ service: "" }, { timeoutMs: 5_000 })],
    ["peers, manager (before)", () => viaPeersManager.check({ service: "" }, { timeoutMs: 5_000 })],
    ["@grpc/grpc-js", check],
    ["peers, a stream in frames", watchTip(framesTransport)],
    ["peers, a stream on HTTP/2 (before)", watchTip(peersTransport)],
    ["connect-node, a stream (before)", watchTip(connectOnSession)],
  ]);
  for (const call of clients.values()) for (let i = 0; i < 500; i++) await call();
  const results = new Map<string, { perSecond: number; clientUs: number; serverUs: number; p50: number }[]>([...clients.keys()].map((k) => [k, []]));
  for (let round = 0; round < rounds; round++) {
    for (const [name, call] of clients) {
      const cpu0 = process.cpuUsage();
      const server0 = serverCpuMs();
      const r = await closedLoop(concurrency, seconds, call);
      const cpu = process.cpuUsage(cpu0);
      results.get(name)!.push({ perSecond: r.perSecond, clientUs: (cpu.user + cpu.system) / r.calls, serverUs: ((serverCpuMs() - server0) * 1000) / r.calls, p50: r.percentile(0.5) });
    }
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`grpc.health.v1 Check (and WatchTip's two messages) to a runtime server in another process, concurrency ${concurrency}, ${rounds} rounds of ${seconds} s (medians)`);
  for (const [name, rs] of results) {
    console.log(`  ${name.padEnd(32)} calls/s ${median(rs.map((r) => r.perSecond)).toFixed(0).padStart(6)}  p50 ${median(rs.map((r) => r.p50)).toFixed(2)} ms  client CPU ${median(rs.map((r) => r.clientUs)).toFixed(0)} us/call  server CPU ${median(rs.map((r) => r.serverUs)).toFixed(0)} us/call`);
  }
  stock.close();
  session.abort();
  peerSession.close();
  framesSession.close();
  peerManager.abort();
  child.send("stop");
  await new Promise((r) => child.once("exit", r));
}
