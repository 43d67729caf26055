// The payment service with card tips on, against the Stripe simulator (state,
// 3-D Secure, webhooks, disputes) and the real wallet.
import { createClient } from "@connectrpc/connect";
import { callerHeaders, type ServiceModule } from "@ttip/runtime";
import { AccountKind, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { startStripeSimulator, type StripeSimulator } from "../src/testing.js";
import { startPayPalSimulator, type PayPalSimulator } from "../src/cards/paypal-simulator.js";
import type { CardRules } from "../src/cards/config.js";
import type { PaymentConfig } from "../src/config.js";
import { startHarness, type Harness } from "./setup.js";

export interface CardHarness extends Harness {
  stripe: StripeSimulator;
  paypal: PayPalSimulator;
  /** Confirms a PaymentIntent as Stripe.js does in the browser: publishable key and client secret. */
  confirm(clientSecret: string, paymentMethod: string): Promise<{ status: number; body: Record<string, unknown> }>;
  /** The worker's KES ledger balance (may be negative after a lost chargeback). */
  ledgerBalance(workerId: string): Promise<bigint>;
  /** Takes money out of the worker's wallet as a settled payout would. */
  withdraw(workerId: string, amountMinor: bigint): Promise<void>;
}

/** `extra`: other services in the same process (qr, for tips by a venue's code). */
export async function startCardHarness(rules: Partial<CardRules> = {}, overrides: Partial<PaymentConfig> = {}, extra: ServiceModule[] = []): Promise<CardHarness> {
  const stripe = await startStripeSimulator({ webhookDelayMs: 10, disputeDelayMs: 50 });
  const paypal = await startPayPalSimulator({ webhookDelayMs: 10 });
  const h = await startHarness({
    ...overrides,
    cards: {
      stripe: {
        secretKey: stripe.secretKey, publishableKey: stripe.publishableKey, webhookSecret: stripe.webhookSecret,
        apiBase: stripe.url, webhookToleranceS: 300, timeoutMs: 5000,
      },
      paypal: { clientId: paypal.clientId, clientSecret: paypal.clientSecret, webhookId: paypal.webhookId, apiBase: paypal.url, timeoutMs: 5000 },
      returnUrl: "http://127.0.0.1/tip/done",
      expireAfterMs: 60_000,
      checkAfterMs: 0,
      unmatchedGraceMs: 0,
      rules: { maxPerTipKesMinor: 100_000_00n, perCardPerHour: 3, perCardDailyKesMinor: 150_000_00n, countryMismatch: "hold", ...rules },
    },
  }, extra);
  stripe.setWebhookUrl(`${h.t.service.server.url}/stripe/webhook`);
  paypal.setWebhookUrl(`${h.t.service.server.url}/paypal/webhook`);
  const walletUser = createClient(WalletService, h.t.ctx.peers("wallet"));
  const walletInternal = createClient(WalletInternalService, h.t.ctx.peers("wallet"));
  return {
    ...h,
    stripe,
    paypal,
    confirm: async (clientSecret, paymentMethod) => {
      const pi = clientSecret.split("_secret_")[0];
      const res = await fetch(`${stripe.url}/v1/payment_intents/${pi}/confirm`, {
        method: "POST",
        headers: { authorization: `Bearer ${stripe.publishableKey}`, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ payment_method: paymentMethod, client_secret: clientSecret, return_url: "http://127.0.0.1/tip/done" }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
    ledgerBalance: async (workerId) => {
      const { balances } = await walletUser.getBalance({ currency: "KES" }, { headers: callerHeaders(workerId, "worker") });
      return balances[0]?.ledger?.amountMinor ?? 0n;
    },
    withdraw: async (workerId, amountMinor) => {
      const { account } = await walletInternal.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: workerId, currency: "KES" });
      const payoutId = crypto.randomUUID();
      const { hold } = await walletInternal.placeHold({ accountId: account!.accountId, amount: { currency: "KES", amountMinor }, payoutId, idempotencyKey: `test-hold-${payoutId}` });
      await walletInternal.settleHold({ holdId: hold!.holdId, externalReference: `TEST${payoutId.slice(0, 8)}`, transferFee: { currency: "KES", amountMinor: 0n } });
    },
    close: async () => {
      await stripe.close();
      await paypal.close();
      await h.close();
    },
  };
}
