// The Stripe client's requests against stripe-mock, Stripe's official mock:
// it validates every path, parameter and type against Stripe's OpenAPI spec,
// so a request shape Stripe would refuse fails here. (It keeps no state: the
// simulator in src/cards covers what happens next.)
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { startStripeMock, STRIPE_MOCK_VERSION, type TestServer } from "@ttip/runtime/testing";
import { WebhookVerificationError } from "../src/cards/provider.js";
import { StripeCardProvider } from "../src/cards/stripe.js";

describe("Stripe requests are shaped as Stripe's API accepts them (stripe-mock)", () => {
  let mock: TestServer & { version: string };
  let stripe: StripeCardProvider;
  const webhookSecret = "whsec_test_shapes";

  before(async () => {
    mock = await startStripeMock();
    console.log(`stripe-mock ${mock.version} (installed at ${STRIPE_MOCK_VERSION}), pid ${mock.pid}`);
    stripe = new StripeCardProvider({ secretKey: "sk_test_123", publishableKey: "pk_test_123", webhookSecret, apiBase: mock.url, webhookToleranceS: 300, timeoutMs: 5000 });
  });
  after(async () => {
    await mock?.stop();
  });

  test("create (manual capture, cards alone, metadata), retrieve with the charge, capture, cancel and refund", async () => {
    const created = await stripe.create({ tipId: "3f1c1c3e-0000-4000-8000-000000000001", amountMinor: 1000n, currency: "USD", description: "Tip", idempotencyKey: "ttip-shape-1" });
    assert.match(created.id, /^pi_/);
    assert.match(created.clientSecret ?? "", /_secret_/);
    assert.equal(created.currency, "USD");
    const got = await stripe.retrieve(created.id);
    assert.equal(got.id.startsWith("pi_"), true);
    const captured = await stripe.capture(created.id, "ttip-shape-capture");
    assert.match(captured.id, /^pi_/);
    const canceled = await stripe.cancel(created.id, "ttip-shape-cancel", "refused");
    assert.match(canceled.id, /^pi_/);
    const refund = await stripe.refund({ paymentId: created.id, amountMinor: 400n, currency: "USD", idempotencyKey: "ttip-shape-refund", reason: "customer asked" });
    assert.match(refund.refundId, /^re_/);
    const txns = await stripe.balanceTransactions(undefined, 10);
    assert.ok(txns.length >= 1);
    assert.equal(typeof txns[0].feeMinor, "bigint");
  });

  test("webhooks verify Stripe-Signature with the tolerance", async () => {
    const body = JSON.stringify({ id: "evt_1", object: "event", type: "charge.dispute.created", data: { object: { id: "du_1", object: "dispute", amount: 1000, currency: "usd", payment_intent: "pi_1", reason: "fraudulent", status: "needs_response" } } });
    const sig = (t: number) => `t=${t},v1=${createHmac("sha256", webhookSecret).update(`${t}.${body}`).digest("hex")}`;
    const ev = await stripe.parseWebhook(Buffer.from(body), { "stripe-signature": sig(Math.floor(Date.now() / 1000)) });
    assert.deepEqual(ev, { kind: "dispute_opened", eventId: "evt_1", type: "charge.dispute.created", paymentId: "pi_1", disputeId: "du_1", amountMinor: 1000n, currency: "USD", reason: "fraudulent" });
    await assert.rejects(stripe.parseWebhook(Buffer.from(body), { "stripe-signature": sig(Math.floor(Date.now() / 1000) - 301) }), WebhookVerificationError);
    await assert.rejects(stripe.parseWebhook(Buffer.from(body), {}), WebhookVerificationError);
  });
});
