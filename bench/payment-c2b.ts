// Paybill payments (C2B) per second against a real PostgreSQL (durable), next
// to STK tips in the same process as the yardstick: the Daraja simulator pays
// as a customer would (validation, then confirmation) to a worker's code; the
// payment service resolves the code with the real qr service and credits the
// real wallet. Also prints how long validation took to answer (Safaricom waits
// about 8 s) and checks every receipt was credited exactly once.
//   node --import tsx bench/payment-c2b.ts [seconds=5] [concurrency=8,32]
import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createPaymentModule } from "@ttip/payment";
import { startDarajaSimulator } from "@ttip/payment/testing";
import { createQrModule } from "@ttip/qr";
import { callerHeaders, createLogger, createPeers, createPool, InProcessBus, MemoryCache, Metrics, startService } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { closedLoop, percentiles } from "./load.js";
import { benchPaymentConfig } from "./payment-config.js";

const seconds = Number(process.argv[2] ?? 5);
const concurrencies = (process.argv[3] ?? "8,32").split(",").map(Number);

const pg = await startPostgres({ durable: true });
const pool = createPool(pg.url, { max: 80 });
const logger = createLogger({ level: "silent" });
const sim = await startDarajaSimulator({ callbackDelayMs: 0 });
const config = benchPaymentConfig(sim);
config.c2b = { pathToken: "bench-c2b-path-token-000000", shortCodes: [sim.options.shortcode], registerVersion: "v2", responseType: "Completed", registerOnStart: true, validationBudgetMs: 3_000 };
const urls = new Map<string, string>();
const peers = createPeers((name) => urls.get(name));
const ctx = { logger, pool, bus: new InProcessBus(logger), cache: new MemoryCache(), metrics: new Metrics(), peers };
const walletService = await startService(wallet, ctx);
urls.set("wallet", walletService.server.url);
const qrService = await startService(createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } }), ctx);
urls.set("qr", qrService.server.url);
const paymentService = await startService(createPaymentModule({ config: () => config }), ctx);
urls.set("payment", paymentService.server.url);
config.callbackBaseUrl = paymentService.server.url;
const client = createClient(PaymentService, createGrpcTransport({ baseUrl: paymentService.server.url }));
const qr = createClient(QrService, createGrpcTransport({ baseUrl: qrService.server.url }));

try {
  for (let i = 0; i < 100 && !sim.c2b.registrations().length; i++) await new Promise((r) => setTimeout(r, 50));
  if (!sim.c2b.registrations().length) throw new Error("C2B URLs were not registered");
  const workers: { id: string; code: string }[] = [];
  for (let i = 0; i < 50; i++) {
    const id = randomUUID();
    const as = { headers: callerHeaders(id, "worker") };
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: id, displayName: `Worker ${i}` }, as);
    const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: id, idempotencyKey: randomUUID() }, as);
    workers.push({ id, code: qrCode!.shortCode });
  }
  let n = 0;
  const validationMs: number[] = [];
  const onePaybill = async () => {
    const w = workers[n++ % workers.length];
    const r = await sim.c2b.pay({ billRefNumber: w.code, amount: 150 });
    if (!r.completed || r.confirmationsSent !== 1) throw new Error(`paybill payment not completed: ${JSON.stringify(r)}`);
    if ("ms" in r.validation) validationMs.push(r.validation.ms);
  };
  const oneStkTip = async () => {
    const phone = `07${String(n++ % 10_000).padStart(4, "0")}5678`;
    const { tip } = await client.createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: workers[n % workers.length].id },
      amount: { currency: "KES", amountMinor: 15_000n }, payment: { case: "mpesaPhone", value: phone },
    });
    for await (const m of client.watchTip({ tipId: tip!.tipId })) {
      if (m.tip!.status !== TipStatus.PENDING && m.tip!.status !== TipStatus.SUCCEEDED) throw new Error(`tip ended ${TipStatus[m.tip!.status]}`);
    }
  };
  for (const concurrency of concurrencies) {
    const stk = await closedLoop(concurrency, seconds, oneStkTip);
    validationMs.length = 0;
    const c2b = await closedLoop(concurrency, seconds, onePaybill);
    validationMs.sort((a, b) => a - b);
    const q = (p: number) => validationMs[Math.min(validationMs.length - 1, Math.floor(p * validationMs.length))];
    console.log(`concurrency ${String(concurrency).padStart(3)}: STK tips ${stk.perSecond.toFixed(0).padStart(4)}/s (${percentiles(stk)})`);
    console.log(
      `                 paybill ${c2b.perSecond.toFixed(0).padStart(4)}/s (${percentiles(c2b)}), ratio to STK ${(c2b.perSecond / stk.perSecond).toFixed(2)}; ` +
        `validation answered p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${validationMs.at(-1)} ms (Safaricom waits ~8000)`,
    );
  }
  for (let i = 0; i < 50 && (await pool.query("SELECT 1 FROM payment.tips WHERE credit_entry_id IS NULL LIMIT 1")).rowCount; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const { rows } = await pool.query(
    `SELECT (SELECT count(*) FROM payment.c2b_payments) AS receipts,
            (SELECT count(*) FROM payment.tips WHERE channel = 'paybill' AND credit_entry_id IS NOT NULL) AS credited,
            (SELECT count(*) FROM wallet.entries e JOIN payment.c2b_payments c ON c.trans_id = e.cause_ref) AS entries`,
  );
  console.log(`paybill receipts ${rows[0].receipts}, credited tips ${rows[0].credited}, wallet entries for them ${rows[0].entries} (all three equal = each credited once)`);
} finally {
  await paymentService.close();
  await qrService.close();
  await walletService.close();
  peers.close();
  await sim.close();
  await pool.end();
  await pg.stop();
}
