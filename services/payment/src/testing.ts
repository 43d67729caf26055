// The edge of the world, simulated: Daraja (STK push, C2B, B2C, queries), the USSD gateway,
// Stripe and PayPal, speaking their real HTTP shapes. For tests, benches and `make run`;
// a deployment talks to the real providers.
export { type C2bPayRequest, type C2bPayResult, type C2bRegistration } from "./daraja/c2b-simulator.js";
export { startDarajaSimulator, SIMULATOR_CERTIFICATE_PEM, type DarajaSimulator, type Script as SimScript, type SimTransaction, type SimulatorOptions } from "./daraja/simulator.js";
export { playDialogue, UssdSession, UssdSessionEnded, type UssdScreen, type UssdSessionOptions } from "./ussd-simulator.js";
export { startStripeSimulator, type StripeSimulator } from "./cards/stripe-simulator.js";
export { startPayPalSimulator, type PayPalSimulator } from "./cards/paypal-simulator.js";

import type { PaymentConfig } from "./config.js";
import type { DarajaSimulator } from "./daraja/simulator.js";

/**
 * Payment settings for tests against the simulator: callbacks from loopback only,
 * no background passes (tests reconcile when they choose), modest fraud limits.
 * `callbackBaseUrl` is left empty: set it once the payment service has its port.
 */
export function simulatedPaymentConfig(sim: DarajaSimulator, overrides: Partial<PaymentConfig> = {}): PaymentConfig {
  return {
    daraja: { ...sim.clientConfig(), timeoutMs: 2_000 },
    callbackBaseUrl: "",
    callbackAllowList: ["127.0.0.1", "::1"],
    stkDeadlineMs: 30_000,
    stkExpireAfterMs: 60_000,
    payoutResultWaitMs: 30_000,
    reconcileIntervalMs: 0,
    reconcileLeaseMs: 120_000,
    fraud: { phonePerWindow: 5, workerPerWindow: 30, windowMs: 600_000, outlierMinor: 20_000_00n, pinFailures: 3 },
    ...overrides,
  };
}

/**
 * Registers payment's C2B confirmation and validation URLs with the simulator as production
 * does once: Daraja's OAuth, then its register URL call. `base` is payment's C2B path.
 */
export async function registerC2bUrls(sim: DarajaSimulator, base: string): Promise<void> {
  const { consumerKey, consumerSecret, shortcode } = sim.options;
  const auth = await fetch(`${sim.url}/oauth/v1/generate?grant_type=client_credentials`, {
    headers: { authorization: `Basic ${Buffer.from(`${consumerKey}:${consumerSecret}`).toString("base64")}` },
  });
  const { access_token: token } = (await auth.json()) as { access_token: string };
  const registered = await fetch(`${sim.url}/mpesa/c2b/v2/registerurl`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ ShortCode: shortcode, ResponseType: "Completed", ConfirmationURL: `${base}/confirmation`, ValidationURL: `${base}/validation` }),
  });
  if (registered.status !== 200) throw new Error(`C2B URLs not registered: ${registered.status} ${await registered.text()}`);
}
