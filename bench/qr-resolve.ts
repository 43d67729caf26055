// Resolves per second of the qr service with a warm cache, over gRPC on
// loopback against real PostgreSQL and Redis (throwaway servers started here).
//   node --import tsx bench/qr-resolve.ts [seconds=5] [concurrency=64]
import { randomUUID } from "node:crypto";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createQrModule } from "@ttip/qr";
import { loadQrConfig } from "../services/qr/src/config.js";
import { Resolver } from "../services/qr/src/resolver.js";
import { PayloadSigner } from "../services/qr/src/signing.js";
import { startNats, startPostgres, startRedis, startTestService } from "@ttip/runtime/testing";
import { closedLoop, percentiles } from "./load.js";

const seconds = Number(process.argv[2] ?? 5);
const concurrency = Number(process.argv[3] ?? 64);

const servers = await Promise.all([startPostgres(), startRedis(), startNats()]);
const [pg, redis, nats] = servers;
Object.assign(process.env, { TEST_DATABASE_URL: pg.url, TEST_REDIS_URL: redis.url, TEST_NATS_URL: nats.url });
const KEY = "bench-signing-key-0123456789abcdef";
const t = await startTestService(createQrModule({ env: { QR_SIGNING_KEY: KEY } }));
try {
  const worker = { subject: randomUUID(), roles: ["worker" as const] };
  const qr = t.client(QrService, worker);
  await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "Bench Worker" });
  const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: randomUUID() });
  const payload = new URL(qrCode!.url).searchParams.get("p")!;
  const anon = t.client(QrService);
  const resolve = () => anon.resolveQrCode({ code: { case: "payload", value: payload } });
  // Let the service's second invalidation after the setup writes pass, then warm the cache and the connection.
  await new Promise((r) => setTimeout(r, 2_500));
  for (let i = 0; i < 200; i++) await resolve();

  // Count what the resolves ask of Postgres (the outbox relay uses its own transactions, not pool.query).
  let queries = 0;
  const query = t.db.pool.query.bind(t.db.pool);
  (t.db.pool as { query: unknown }).query = (...args: Parameters<typeof query>) => {
    queries++;
    return query(...args);
  };

  async function measure(label: string, call: () => Promise<unknown>) {
    const before = queries;
    const cpu0 = process.cpuUsage();
    const r = await closedLoop(concurrency, seconds, call);
    const cpu = process.cpuUsage(cpu0);
    console.log(`${label} (warm Redis cache, concurrency ${concurrency}, ${r.seconds.toFixed(1)} s)`);
    console.log(`  resolves:            ${r.calls}`);
    console.log(`  resolves per second: ${Math.round(r.perSecond)}`);
    console.log(`  latency:             ${percentiles(r, 2)}`);
    console.log(`  CPU per resolve:     ${((cpu.user + cpu.system) / Math.max(1, r.calls)).toFixed(1)} us (this process: client, service, cache client)`);
    console.log(`  Postgres queries:    ${queries - before}`);
  }

  await measure("qr ResolveQrCode over gRPC, client in the same process", resolve);
  // The service's own resolve path (signature check, cache reads, checks), without the RPC stack,
  // built from the same parts the service uses.
  const cfg = loadQrConfig({ QR_SIGNING_KEY: KEY });
  const signer = new PayloadSigner(KEY);
  const resolver = new Resolver(t.db.pool, t.ctx.cache, signer, cfg, t.ctx.logger);
  await measure("qr resolve path in process (no RPC)", () => resolver.resolve({ case: "payload", value: payload }));
} finally {
  await t.close();
  await Promise.allSettled(servers.map((s) => s.stop()));
}
