import { randomUUID } from "node:crypto";
import type pg from "pg";
import type { Client } from "@connectrpc/connect";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import type { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { createPaymentModule, type PaymentConfig } from "@ttip/payment";
import type { DarajaSimulator } from "@ttip/payment/testing";
import { createLogger, createPeers, InProcessBus, MemoryCache, Metrics, startService } from "@ttip/runtime";
import { wallet } from "@ttip/wallet";

/**
 * The benches' limit of tips to one worker in the fraud window (10 minutes): a busy worker's, one tip
 * every 3 s. Not higher: the rules read a worker's newest max(200, limit) tips (fraud.ts WORKER_TIPS_READ),
 * and the 1,000,000 this was made each tip read the worker's whole history, as no production setting
 * does. The benches' workers stay under it: tip-e2e's 50 get ~90 each from a c16 run of 20 s and its
 * warm-up at today's ~150 tips/s (it prints its busiest worker's count); the others spread over 200.
 */
export const BENCH_WORKER_TIPS_PER_WINDOW = 200;

/**
 * Payment settings for benchmarks: the simulator (in this process or another) as M-Pesa, no background
 * passes, fraud limits no bench's customers reach (the worker's a busy worker's, BENCH_WORKER_TIPS_PER_WINDOW).
 */
export function benchPaymentConfig(sim: Pick<DarajaSimulator, "clientConfig">): PaymentConfig {
  return {
    daraja: sim.clientConfig(),
    callbackBaseUrl: "",
    callbackAllowList: ["127.0.0.1", "::1"],
    stkDeadlineMs: 90_000,
    stkExpireAfterMs: 600_000,
    payoutResultWaitMs: 300_000,
    reconcileIntervalMs: 0,
    reconcileLeaseMs: 120_000,
    // Benchmark traffic is not fraud: its customers' phones are 10,000 shared by every run.
    fraud: { phonePerWindow: 1_000_000, workerPerWindow: BENCH_WORKER_TIPS_PER_WINDOW, windowMs: 600_000, outlierMinor: 10n ** 12n, pinFailures: 1_000_000 },
  };
}

/**
 * Wallet and payment in this process on `pool`, with the simulator as M-Pesa and its STK callbacks
 * coming back to this payment: the M-Pesa benches' set-up (`createModule`: another tree's payment, for a
 * yardstick in the same run). `close` stops both services and their peers.
 */
export async function startWalletAndPayment(pool: pg.Pool, sim: DarajaSimulator, createModule: typeof createPaymentModule = createPaymentModule) {
  const logger = createLogger({ level: "silent" });
  const config = benchPaymentConfig(sim);
  const urls = new Map<string, string>();
  const peers = createPeers((name) => urls.get(name));
  const ctx = { logger, pool, bus: new InProcessBus(logger), cache: new MemoryCache(), metrics: new Metrics(), peers };
  const walletService = await startService(wallet, ctx);
  urls.set("wallet", walletService.server.url);
  const paymentService = await startService(createModule({ config: () => config }), ctx);
  urls.set("payment", paymentService.server.url);
  config.callbackBaseUrl = paymentService.server.url;
  return {
    paymentUrl: paymentService.server.url,
    close: async () => {
      await paymentService.close();
      await walletService.close();
      peers.close();
    },
  };
}

/**
 * One M-Pesa tip through `client` to its end (CreateTip, then WatchTip until SUCCEEDED; any other end
 * throws), each call a new tip to one of 200 workers.
 */
export function mpesaTipper(client: Client<typeof PaymentService>): () => Promise<void> {
  const workers = Array.from({ length: 200 }, () => randomUUID());
  let n = 0;
  return async () => {
    // Ends in 5678: the simulator's plain success (other endings script failures).
    const phone = `07${String(n++ % 10_000).padStart(4, "0")}5678`;
    const { tip } = await client.createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: workers[n % workers.length] },
      amount: { currency: "KES", amountMinor: 15_000n }, payment: { case: "mpesaPhone", value: phone },
    });
    for await (const m of client.watchTip({ tipId: tip!.tipId })) {
      if (m.tip!.status !== TipStatus.PENDING && m.tip!.status !== TipStatus.SUCCEEDED) throw new Error(`tip ended ${TipStatus[m.tip!.status]}`);
    }
  };
}
