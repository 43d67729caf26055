// Card tips through the real payment service (the Stripe simulator) into analytics' funnel: payment
// announces a card tip's tip_created with its row, as an M-Pesa tip's, and analytics still counts
// each card tip once in every step (its amount chosen counted when it ends).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { createPaymentModule, type PaymentConfig } from "@ttip/payment";
import { simulatedPaymentConfig, startDarajaSimulator, startStripeSimulator, type DarajaSimulator, type StripeSimulator } from "@ttip/payment/testing";
import { AdjustableClock, signingInterceptor } from "@ttip/runtime";
import { eventually, startTestService, type TestService } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { createAnalyticsModule } from "../src/index.js";

const USD = (cents: number) => ({ currency: "USD", amountMinor: BigInt(cents) });

describe("card tips in the funnel (payment with the Stripe simulator, wallet, analytics; real PostgreSQL and JetStream)", () => {
  let t: TestService;
  let daraja: DarajaSimulator;
  let stripe: StripeSimulator;
  const clock = new AdjustableClock();
  const worker = randomUUID();
  const tipIds: string[] = [];
  /** payment's own port (the harness's clients talk to analytics). */
  const payment = <S extends typeof PaymentService | typeof PaymentInternalService>(service: S) =>
    createClient(service, createGrpcTransport({ baseUrl: t.urls.get("payment")!, interceptors: [signingInterceptor()] }));

  before(async () => {
    daraja = await startDarajaSimulator({ callbackDelayMs: 20 });
    stripe = await startStripeSimulator({ webhookDelayMs: 10 });
    const config: PaymentConfig = simulatedPaymentConfig(daraja, {
      cards: {
        stripe: { secretKey: stripe.secretKey, publishableKey: stripe.publishableKey, webhookSecret: stripe.webhookSecret, apiBase: stripe.url, webhookToleranceS: 300, timeoutMs: 5000 },
        returnUrl: "http://127.0.0.1/tip/done",
        expireAfterMs: 60_000,
        checkAfterMs: 0,
        rules: { maxPerTipKesMinor: 100_000_00n, perCardPerHour: 3, perCardDailyKesMinor: 150_000_00n, countryMismatch: "hold" },
      },
    });
    t = await startTestService(createAnalyticsModule({ weekly: false }), { with: [wallet, createPaymentModule({ config: () => config })], clock });
    config.callbackBaseUrl = t.urls.get("payment")!;
    stripe.setWebhookUrl(`${t.urls.get("payment")}/stripe/webhook`);

    const pay = payment(PaymentService);
    const cardTip = async () => {
      const { tip, stripeClientSecret } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: USD(1000), payment: { case: "card", value: true } });
      tipIds.push(tip!.tipId);
      return stripeClientSecret;
    };
    // One paid as Stripe.js confirms it in the browser; one never paid, expired by payment's pass past its deadline.
    const secret = await cardTip();
    const confirmed = await fetch(`${stripe.url}/v1/payment_intents/${secret.split("_secret_")[0]}/confirm`, {
      method: "POST",
      headers: { authorization: `Bearer ${stripe.publishableKey}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ payment_method: "pm_card_visa", client_secret: secret, return_url: "http://127.0.0.1/tip/done" }),
    });
    assert.equal(confirmed.status, 200);
    await cardTip();
    await eventually("the paid tip succeeded", async () => (await pay.getTip({ tipId: tipIds[0] })).tip!.status === TipStatus.SUCCEEDED);
    clock.advance(config.cards!.expireAfterMs + 1);
    await payment(PaymentInternalService).reconcilePending({ limit: 100 });
    await eventually("the unpaid tip expired", async () => (await pay.getTip({ tipId: tipIds[1] })).tip!.status === TipStatus.EXPIRED);
  });

  after(async () => {
    await t?.close();
    await stripe?.close();
    await daraja?.close();
  });

  test("each card tip is announced created with its row, and counted once in every step: chosen, started, paid", async () => {
    // Before, payment announced no tip_created for a card tip: partners' TIP_CREATED and the contract's "chosen" never told.
    const { rows } = await t.db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM payment.outbox WHERE subject = 'ttip.payment.tip_created' AND (position($1 in encode(payload, 'escape')) > 0 OR position($2 in encode(payload, 'escape')) > 0)",
      tipIds,
    );
    assert.equal(rows[0].n, 2, "one tip_created per card tip");
    const range = { from: timestampFromDate(new Date(clock.now() - 3 * 3_600_000)), to: timestampFromDate(new Date(clock.now() + 3_600_000)) };
    const funnel = t.client(AnalyticsService, { subject: worker, roles: ["worker"] });
    // Both ends counted (their tip_created before them, in the stream's order): each step as it then stands.
    const steps = await eventually("analytics counted both ends", async () => {
      const f = await funnel.getFunnel({ range, scope: { case: "workerId", value: worker }, currency: "USD" });
      const paid = f.steps.find((s) => s.step === "paid")?.count;
      return paid === 1n && f.failures.reduce((n, x) => n + x.count, 0n) === 1n && f.steps;
    }, 30_000);
    assert.deepEqual(Object.fromEntries(steps.map((s) => [s.step, s.count])), { scanned: 0n, amount_chosen: 2n, payment_started: 2n, paid: 1n });
  });
});
