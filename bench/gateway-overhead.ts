// What the gateway adds to a call: qr's ResolveQrCode (anonymous, warm Redis
// cache, as a customer's phone makes it before a tip) made with Connect over
// HTTP/2 directly to the qr service, and the same call through the gateway
// (token check, rate limit in Redis, policy, forwarding): once with the
// gateway reaching qr over HTTP/2 on loopback (a cluster) and once with both in
// one process (`make run`), with this process's CPU per call. Over HTTP/2 the gateway forwards the
// binary message as bytes; "same, decoding" is that gateway decoding and encoding every message
// again (forwardBytes: false, as before it forwarded bytes), the yardstick for that change. Rounds
// alternate the paths so that a noisy machine hits them alike; the goal is a gateway adding at most 30% latency.
//   node --import tsx bench/gateway-overhead.ts [seconds per path and round=3] [rounds=3] [concurrency=1,16]
//   BENCH_ONLY="gateway -> qr in process" measures that path (and the direct one) only.
import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { startGateway } from "@ttip/gateway";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createQrModule } from "@ttip/qr";
import { localTransport, Metrics } from "@ttip/runtime";
import { startNats, startPostgres, startRedis, startTestService } from "@ttip/runtime/testing";
import { closedLoop, type LoadResult } from "./load.js";

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 3);
const concurrencies = (process.argv[4] ?? "1,16").split(",").map(Number);
const only = process.env.BENCH_ONLY;

const servers = await Promise.all([startPostgres(), startRedis(), startNats()]);
const [pg, redis, nats] = servers;
Object.assign(process.env, { TEST_DATABASE_URL: pg.url, TEST_REDIS_URL: redis.url, TEST_NATS_URL: nats.url });
const t = await startTestService(createQrModule({ env: { QR_SIGNING_KEY: "bench-signing-key-0123456789abcdef" } }));
const remote = { service: QrService, url: t.service.server.url };
const gateways = await Promise.all(
  [
    { backend: remote },
    { backend: remote, forwardBytes: false },
    { backend: { ...remote, local: localTransport(t.service.server.local) } },
  ].map(({ backend, forwardBytes }) =>
    startGateway({
      logger: t.ctx.logger,
      metrics: new Metrics(),
      cache: t.ctx.cache,
      backends: [backend],
      rateLimit: { points: 1_000_000_000, durationSeconds: 60 },
      corsOrigins: ["*"],
      forwardBytes,
    }),
  ),
);
try {
  const worker = { subject: randomUUID(), roles: ["worker" as const] };
  const qr = t.client(QrService, worker);
  await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "Bench Worker" });
  const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: randomUUID() });
  const payload = new URL(qrCode!.url).searchParams.get("p")!;
  const resolver = (baseUrl: string) => {
    const client = createClient(QrService, createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }));
    return () => client.resolveQrCode({ code: { case: "payload", value: payload } });
  };
  const paths = new Map<string, () => Promise<unknown>>(([
    ["direct to qr", resolver(t.service.server.url)],
    ["gateway -> qr over HTTP/2", resolver(gateways[0].url)],
    ["  same, decoding (before)", resolver(gateways[1].url)],
    ["gateway -> qr in process", resolver(gateways[2].url)],
  ] as const).filter(([name]) => !only || name === "direct to qr" || name === only));
  // Let the service's invalidation after the setup writes pass, then warm caches, connections and the JIT.
  await new Promise((r) => setTimeout(r, 2_500));
  for (const call of paths.values()) for (let i = 0; i < 300; i++) await call();

  console.log(`qr ResolveQrCode, Connect binary over HTTP/2, client in this process; ${rounds} rounds of ${seconds} s per path`);
  for (const concurrency of concurrencies) {
    const results = new Map<string, (LoadResult & { cpuUsPerCall?: number })[]>([...paths.keys()].map((name) => [name, []]));
    for (let round = 0; round < rounds; round++) {
      for (const [name, call] of paths) {
        const cpu0 = process.cpuUsage();
        const result = await closedLoop(concurrency, seconds, call);
        const cpu = process.cpuUsage(cpu0);
        results.get(name)!.push(Object.assign(result, { cpuUsPerCall: (cpu.user + cpu.system) / Math.max(1, result.calls) }));
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
      const cpu = rs.map((r) => r.cpuUsPerCall ?? NaN).sort((a, b) => a - b)[Math.floor(rs.length / 2)];
      console.log(`  ${name.padEnd(26)} calls/s ${range(rs.map((r) => r.perSecond), 0)};  p50 ${range(rs.map((r) => r.percentile(0.5)), 2)} ms  p99 ${range(rs.map((r) => r.percentile(0.99)), 2)} ms;  CPU ${cpu.toFixed(0)} us/call${added}`);
    }
  }
} finally {
  for (const g of gateways) await g.close();
  await t.close();
  await Promise.allSettled(servers.map((s) => s.stop()));
}
