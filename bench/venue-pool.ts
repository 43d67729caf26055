// A hot venue pool next to individual workers: many customers tipping one
// venue's table code at once (every credit posts to the same pool account,
// whose row lock serialises them) against the same load spread over 200
// workers' own codes, in the same process on a durable PostgreSQL. Each tip
// is CreateTip (code resolved by qr) -> STK push -> the simulator's callback
// -> SUCCEEDED -> the wallet entry. Printed: tips/s and callback-to-credit
// (the callback's arrival to the ledger entry being recorded on the tip), and
// the pool's figures as a ratio to the individual run, and CPU per tip by process: this one (the
// services and the customers' calls), PostgreSQL, and the Daraja simulator in a process of its own
// (bench/edge-simulators.ts: M-Pesa is not on our machines).
//   node --import tsx bench/venue-pool.ts [seconds=5] [concurrency=32]
import { randomBytes, randomUUID } from "node:crypto";
import { cpus, loadavg } from "node:os";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createPaymentModule } from "@ttip/payment";
import { createQrModule } from "@ttip/qr";
import { callerHeaders, createLogger, createPeers, createPool, InProcessBus, MemoryCache, Metrics, signingInterceptor, startService } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { startEdgeSimulators } from "./edge-simulators.js";
import { closedLoop, percentiles, type LoadResult } from "./load.js";
import { benchPaymentConfig } from "./payment-config.js";
import { cpuMs } from "./process-cpu.js";

const seconds = Number(process.argv[2] ?? 5);
const concurrency = Number(process.argv[3] ?? 32);

const pg = await startPostgres({ durable: true });
const pool = createPool(pg.url, { max: 80 });
const logger = createLogger({ level: "silent" });
const edge = await startEdgeSimulators();
const config = benchPaymentConfig(edge.daraja);
// Whose CPU each run's tips took: postgres with its backends.
const processes = new Map([["this process (services, customers)", process.pid], ["postgres", pg.pid], ["simulators", edge.pid]]);
const cpuPerTip = (before: Map<string, number>, after: Map<string, number>, tips: number) =>
  [...after].map(([name, ms]) => `${name} ${((ms - before.get(name)!) / Math.max(1, tips)).toFixed(2)}`).join(", ");
const urls = new Map<string, string>();
const peers = createPeers((name) => urls.get(name));
const ctx = { logger, pool, bus: new InProcessBus(logger), cache: new MemoryCache(), metrics: new Metrics(), peers };
const services = [];
for (const m of [wallet, createQrModule({ env: { QR_SIGNING_KEY: randomBytes(32).toString("base64url") } }), createPaymentModule({ config: () => config })]) {
  const s = await startService(m, ctx);
  urls.set(m.name, s.server.url);
  services.push(s);
}
config.callbackBaseUrl = urls.get("payment")!;
const pay = createClient(PaymentService, createGrpcTransport({ baseUrl: urls.get("payment")!, interceptors: [signingInterceptor()] }));
const qr = createClient(QrService, createGrpcTransport({ baseUrl: urls.get("qr")!, interceptors: [signingInterceptor()] }));

/** Callback arrival to the credit being recorded, per tip of the run, in ms. */
async function callbackToCredit(tipIds: string[]): Promise<{ p50: number; p99: number; credited: number }> {
  const { rows } = await pool.query<{ p50: number; p99: number; credited: string }>(
    `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, count(*) AS credited
       FROM (SELECT extract(epoch FROM t.credited_at - c.received_at) * 1000 AS ms
               FROM payment.tips t JOIN LATERAL (SELECT min(received_at) AS received_at FROM payment.callbacks WHERE tip_id = t.tip_id) c ON true
              WHERE t.tip_id = ANY($1::uuid[]) AND t.credited_at IS NOT NULL) x`,
    [tipIds],
  );
  return { p50: Number(rows[0].p50), p99: Number(rows[0].p99), credited: Number(rows[0].credited) };
}

async function run(label: string, codeFor: (n: number) => string): Promise<{ r: LoadResult; c: Awaited<ReturnType<typeof callbackToCredit>> }> {
  const ids: string[] = [];
  let n = 0;
  const cpu0 = cpuMs(processes, new Set(["postgres"]));
  const r = await closedLoop(concurrency, seconds, async () => {
    const i = n++;
    // Ends in 5678: the simulator's plain success.
    const { tip } = await pay.createTip({
      idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: codeFor(i) },
      amount: { currency: "KES", amountMinor: 15_000n }, payment: { case: "mpesaPhone", value: `07${String(i % 10_000).padStart(4, "0")}5678` },
    });
    ids.push(tip!.tipId);
    for await (const m of pay.watchTip({ tipId: tip!.tipId })) {
      if (m.tip!.status !== TipStatus.PENDING && m.tip!.status !== TipStatus.SUCCEEDED) throw new Error(`tip ended ${TipStatus[m.tip!.status]}`);
    }
  });
  for (let i = 0; i < 100 && (await pool.query("SELECT 1 FROM payment.tips WHERE credit_entry_id IS NULL LIMIT 1")).rowCount; i++) await new Promise((res) => setTimeout(res, 100));
  const cpu1 = cpuMs(processes, new Set(["postgres"]));
  const c = await callbackToCredit(ids);
  console.log(
    `${label.padEnd(34)} ${r.perSecond.toFixed(0).padStart(4)} tips/s  CreateTip->SUCCEEDED ${percentiles(r)}  ` +
      `callback->credit p50 ${c.p50.toFixed(1)} ms p99 ${c.p99.toFixed(1)} ms  (${r.calls} tips, ${c.credited} credited)`,
  );
  console.log(`${"".padEnd(34)} CPU ms per tip (the run and its last credits): ${cpuPerTip(cpu0, cpu1, r.calls)}`);
  return { r, c };
}

try {
  const manager = { headers: callerHeaders(randomUUID(), "venue_manager") };
  const venueId = randomUUID();
  await qr.putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Busy Venue" }, manager);
  const table = (await qr.createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: venueId, idempotencyKey: randomUUID(), parameters: { table: "T1" } }, manager)).qrCode!.shortCode;
  const workerCodes: string[] = [];
  for (let i = 0; i < 200; i++) {
    const worker = randomUUID();
    const as = { headers: callerHeaders(worker, "worker") };
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker, displayName: `Worker ${i}` }, as);
    workerCodes.push((await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker, idempotencyKey: randomUUID() }, as)).qrCode!.shortCode);
  }
  console.log(`${concurrency} customers at once, ${seconds} s per run, KES 150 tips, durable PostgreSQL, simulator answering at once`);
  // Figures from a shared machine mean little without its load: the ratio below is the comparable one.
  console.log(`machine: ${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  // Warm-up (connections, caches, JIT), not printed.
  await closedLoop(8, 1, () => pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: workerCodes[0] }, amount: { currency: "KES", amountMinor: 15_000n }, payment: { case: "mpesaPhone", value: "0700005678" } }));
  const spread = await run("individual workers (200 codes)", (i) => workerCodes[i % workerCodes.length]);
  const hot = await run("hot pool (one venue's table code)", () => table);
  console.log(
    `hot pool / individual: throughput x${(hot.r.perSecond / spread.r.perSecond).toFixed(2)}, ` +
      `callback->credit p99 x${(hot.c.p99 / spread.c.p99).toFixed(2)}`,
  );
  const { rows } = await pool.query(
    `SELECT (SELECT balance_minor FROM wallet.accounts WHERE kind = 2 AND owner_id = $1) AS pool_minor,
            (SELECT coalesce(sum(worker_receives_minor), 0) FROM payment.tips WHERE venue_id = $1 AND worker_id IS NULL AND credit_entry_id IS NOT NULL) AS expected_minor`,
    [venueId],
  );
  console.log(`pool balance ${rows[0].pool_minor} minor units; tips credited to it ${rows[0].expected_minor} (must be equal)`);
} finally {
  for (const s of services.reverse()) await s.close();
  peers.close();
  await edge.close();
  await pool.end();
  await pg.stop();
}
