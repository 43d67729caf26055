import type { PaymentConfig } from "@ttip/payment";
import type { DarajaSimulator } from "@ttip/payment/testing";

/** Payment settings for benchmarks: the simulator as M-Pesa, no background passes, no fraud limits. */
export function benchPaymentConfig(sim: DarajaSimulator): PaymentConfig {
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
