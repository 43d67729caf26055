import type pg from "pg";
import { createPaymentModule, type PaymentConfig } from "@ttip/payment";
import type { DarajaSimulator } from "@ttip/payment/testing";
import { createLogger, createPeers, InProcessBus, MemoryCache, Metrics, startService } from "@ttip/runtime";
import { wallet } from "@ttip/wallet";

/** Payment settings for benchmarks: the simulator (in this process or another) as M-Pesa, no background passes, no fraud limits. */
export function benchPaymentConfig(sim: Pick<DarajaSimulator, "clientConfig">): PaymentConfig {
  return {
    daraja: sim.clientConfig(),
    callbackBaseUrl: "",
    callbackAllowList: ["127.0.0.1", "::1"],
    callbackTrustProxy: false,
    stkDeadlineMs: 90_000,
    stkExpireAfterMs: 600_000,
    payoutResultWaitMs: 300_000,
    reconcileIntervalMs: 0,
    // Benchmark traffic is not fraud.
    fraud: { phonePerWindow: 1_000_000, workerPerWindow: 1_000_000, windowMs: 600_000, outlierMinor: 10n ** 12n, pinFailures: 1_000_000 },
  };
}

/**
 * Wallet and payment in this process on `pool`, with the simulator as M-Pesa and its STK callbacks
 * coming back to this payment: the M-Pesa benches' set-up. `close` stops both services and their peers.
 */
export async function startWalletAndPayment(pool: pg.Pool, sim: DarajaSimulator) {
  const logger = createLogger({ level: "silent" });
  const config = benchPaymentConfig(sim);
  const urls = new Map<string, string>();
  const peers = createPeers((name) => urls.get(name));
  const ctx = { logger, pool, bus: new InProcessBus(logger), cache: new MemoryCache(), metrics: new Metrics(), peers };
  const walletService = await startService(wallet, ctx);
  urls.set("wallet", walletService.server.url);
  const paymentService = await startService(createPaymentModule({ config: () => config }), ctx);
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
