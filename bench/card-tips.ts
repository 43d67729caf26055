// Card tips next to M-Pesa tips, in the same process on a durable PostgreSQL.
// A card tip is CreateTip (wallet quote with FX, PaymentIntent) -> the
// browser's confirm on the Stripe simulator -> the signed authorisation
// webhook -> card rules and capture -> SUCCEEDED -> the KES wallet entry with
// its conversion; the yardstick is an M-Pesa tip (push -> callback -> credit).
// Printed: tips/s and CreateTip->SUCCEEDED latency, and card / M-Pesa ratios.
//   node --import tsx bench/card-tips.ts [seconds=5] [concurrency=16]
import { randomUUID } from "node:crypto";
import { cpus, loadavg } from "node:os";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { createPaymentModule } from "@ttip/payment";
import { startDarajaSimulator, startStripeSimulator } from "@ttip/payment/testing";
import { createLogger, createPeers, createPool, InProcessBus, MemoryCache, Metrics, signingInterceptor, startService } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { closedLoop, percentiles } from "./load.js";
import { benchPaymentConfig } from "./payment-config.js";

const seconds = Number(process.argv[2] ?? 5);
const concurrency = Number(process.argv[3] ?? 16);

const pg = await startPostgres({ durable: true });
const pool = createPool(pg.url, { max: 80 });
const logger = createLogger({ level: "silent" });
const sim = await startDarajaSimulator({ callbackDelayMs: 0 });
const stripe = await startStripeSimulator({ webhookDelayMs: 0 });
const config = benchPaymentConfig(sim);
config.cards = {
  stripe: { secretKey: stripe.secretKey, publishableKey: stripe.publishableKey, webhookSecret: stripe.webhookSecret, apiBase: stripe.url, webhookToleranceS: 300, timeoutMs: 10_000 },
  returnUrl: "",
  expireAfterMs: 3_600_000,
  checkAfterMs: 3_600_000,
  // Benchmark traffic is not fraud.
  rules: { maxPerTipKesMinor: 10n ** 12n, perCardPerHour: 1_000_000, perCardDailyKesMinor: 10n ** 15n, countryMismatch: "off" },
};
const urls = new Map<string, string>();
const peers = createPeers((name) => urls.get(name));
const ctx = { logger, pool, bus: new InProcessBus(logger), cache: new MemoryCache(), metrics: new Metrics(), peers };
const services = [];
for (const m of [wallet, createPaymentModule({ config: () => config })]) {
  const s = await startService(m, ctx);
  urls.set(m.name, s.server.url);
  services.push(s);
}
config.callbackBaseUrl = urls.get("payment")!;
stripe.setWebhookUrl(`${urls.get("payment")}/stripe/webhook`);
const pay = createClient(PaymentService, createGrpcTransport({ baseUrl: urls.get("payment")!, interceptors: [signingInterceptor()] }));
const workers = Array.from({ length: 200 }, () => randomUUID());

async function untilDone(tipId: string) {
  for await (const m of pay.watchTip({ tipId })) {
    if (m.tip!.status !== TipStatus.PENDING && m.tip!.status !== TipStatus.SUCCEEDED) throw new Error(`tip ended ${TipStatus[m.tip!.status]}`);
  }
}

let n = 0;
const mpesa = () => async () => {
  const i = n++;
  const { tip } = await pay.createTip({
    idempotencyKey: randomUUID(), recipient: { case: "workerId", value: workers[i % workers.length] },
    amount: { currency: "KES", amountMinor: 15_000n }, payment: { case: "mpesaPhone", value: `07${String(i % 10_000).padStart(4, "0")}5678` },
  });
  await untilDone(tip!.tipId);
};
const card = () => async () => {
  const i = n++;
  const r = await pay.createTip({
    idempotencyKey: randomUUID(), recipient: { case: "workerId", value: workers[i % workers.length] },
    amount: { currency: "USD", amountMinor: 1_000n }, payment: { case: "card", value: true },
  });
  // As Stripe.js does from the browser: publishable key and client secret.
  const pi = r.stripeClientSecret.split("_secret_")[0];
  const res = await fetch(`${stripe.url}/v1/payment_intents/${pi}/confirm`, {
    method: "POST", headers: { authorization: `Bearer ${r.stripePublishableKey}` },
    body: new URLSearchParams({ payment_method: `pm_card_visa_${i}`, client_secret: r.stripeClientSecret }),
  });
  if (res.status !== 200) throw new Error(`confirm answered ${res.status}`);
  await untilDone(r.tip!.tipId);
};

try {
  console.log(`${concurrency} customers at once, ${seconds} s per run, durable PostgreSQL, simulators answering at once`);
  console.log(`machine: ${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  await closedLoop(4, 1, mpesa());
  await closedLoop(4, 1, card());
  const m = await closedLoop(concurrency, seconds, mpesa());
  console.log(`M-Pesa KES 150 (yardstick)   ${m.perSecond.toFixed(0).padStart(4)} tips/s  CreateTip->SUCCEEDED ${percentiles(m)}  (${m.calls} tips)`);
  const c = await closedLoop(concurrency, seconds, card());
  console.log(`card USD 10 (FX to KES)      ${c.perSecond.toFixed(0).padStart(4)} tips/s  CreateTip->SUCCEEDED ${percentiles(c)}  (${c.calls} tips)`);
  console.log(`card / M-Pesa: throughput x${(c.perSecond / m.perSecond).toFixed(2)}`);
  for (let i = 0; i < 100 && (await pool.query("SELECT 1 FROM payment.tips WHERE credit_key IS NOT NULL AND credit_entry_id IS NULL LIMIT 1")).rowCount; i++) await new Promise((res) => setTimeout(res, 100));
  const { rows } = await pool.query(
    `SELECT count(*) FILTER (WHERE t.method = 'card') AS card_tips,
            count(*) FILTER (WHERE t.method = 'card' AND EXISTS (SELECT 1 FROM wallet.entry_conversions c WHERE c.entry_id::text = t.credit_entry_id)) AS with_rate
       FROM payment.tips t WHERE t.status = 'succeeded'`,
  );
  console.log(`card tips succeeded ${rows[0].card_tips}, of which credited with their rate on the entry ${rows[0].with_rate} (must be equal)`);
} finally {
  // The simulators first: no webhook or callback may arrive at a closing service.
  await stripe.close();
  await sim.close();
  for (const s of services.reverse()) await s.close();
  peers.close();
  await pool.end();
  await pg.stop();
}
