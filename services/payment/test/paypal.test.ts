import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { CardProvider, CardTipState, TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { httpRequest } from "@ttip/runtime";
import { PayPalCardProvider, type PayPalConfig } from "../src/cards/paypal.js";
import { CardProviderError } from "../src/cards/provider.js";
import { startCardHarness, type CardHarness } from "./cards-setup.js";
import { eventually } from "./setup.js";

const admin = { subject: randomUUID(), roles: ["admin" as const], stepUp: true };

describe("card tips by PayPal (Orders v2) behind the same card-provider interface, against the PayPal simulator", () => {
  let h: CardHarness;
  let pay: Client<typeof PaymentService>;
  let adminClient: Client<typeof PaymentAdminService>;

  before(async () => {
    h = await startCardHarness();
    pay = h.t.client(PaymentService);
    adminClient = h.t.client(PaymentAdminService, admin);
  });
  after(async () => {
    await h.close();
  });

  const tipTo = (workerId: string, cents = 1000) => ({
    recipient: { case: "workerId" as const, value: workerId }, amount: { currency: "USD", amountMinor: BigInt(cents) },
    payment: { case: "card" as const, value: true }, cardProvider: CardProvider.PAYPAL,
  });
  const create = (workerId: string, cents = 1000) => pay.createTip({ idempotencyKey: randomUUID(), ...tipTo(workerId, cents) });
  const until = (tipId: string, what: string, ok: (t: Tip) => boolean) => eventually(async () => {
    const t = (await pay.getTip({ tipId })).tip!;
    return ok(t) && t;
  }, what);
  const credited = (tipId: string) => eventually(async () => (await h.t.db.pool.query("SELECT credit_entry_id FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0].credit_entry_id, "credit posted");
  const approve = async (approveUrl: string, query = "") => {
    const res = await fetch(`${approveUrl}&approve=1${query}`, { redirect: "manual" });
    assert.ok(res.status === 302 || res.status === 200, `approval answered ${res.status}`);
  };

  /** A USD 10.00 tip to `workerId`, approved (the approval page's `query` scripting the payer), captured and credited. */
  const paidTip = async (workerId: string, query = "") => {
    const r = await create(workerId);
    await approve(r.paypalApproveUrl, query);
    const paid = await until(r.tip!.tipId, "succeeded", (t) => t.status === TipStatus.SUCCEEDED);
    await credited(paid.tipId);
    return paid;
  };

  test("an order is created, approved by the customer, captured after the rules and credited once in KES", async () => {
    const worker = randomUUID();
    const r = await create(worker);
    assert.match(r.paypalApproveUrl, /\/checkoutnow\?token=[A-Z0-9]+$/);
    assert.equal(r.stripeClientSecret, "");
    const tip = r.tip!;
    assert.equal(tip.cardProvider, CardProvider.PAYPAL);
    assert.equal(h.paypal.order(tip.providerPaymentId)!.status, "PAYER_ACTION_REQUIRED");
    await approve(r.paypalApproveUrl);
    const done = await until(tip.tipId, "succeeded", (t) => t.status === TipStatus.SUCCEEDED);
    await credited(tip.tipId);
    assert.equal(h.paypal.order(tip.providerPaymentId)!.status, "COMPLETED");
    assert.equal(await h.balance(worker), done.workerReceives!.amountMinor);
    assert.ok(done.workerReceives!.amountMinor > 100_000n);
    // Both webhooks (approved, capture completed) arrived; one entry.
    await eventually(async () => h.paypal.events().filter((e) => e.delivered).length >= 2, "webhooks delivered");
    const { rows } = await h.t.db.pool.query("SELECT count(*) FROM wallet.entries WHERE idempotency_key = $1", [`card:${tip.providerPaymentId}`]);
    assert.equal(rows[0].count, 1n);
    // Every write carried PayPal-Request-Id.
    const writes = h.paypal.requests().filter((q) => q.method === "POST" && q.path !== "/v1/notifications/verify-webhook-signature");
    assert.ok(writes.length >= 2);
    assert.deepEqual(writes.filter((q) => !q.requestId), []);
  });

  test("a PayPal tip in KES is refused naming the amount, before anything is stored or asked of PayPal (PayPal holds no KES)", async () => {
    const asked = h.paypal.requests().length;
    const key = randomUUID();
    await assert.rejects(pay.createTip({ idempotencyKey: key, ...tipTo(randomUUID()), amount: { currency: "KES", amountMinor: 10_000n } }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /^amount: PayPal tips are taken in USD, EUR, GBP, not KES/.test(e.rawMessage));
    assert.equal((await h.t.db.pool.query("SELECT 1 FROM payment.tips WHERE idempotency_key LIKE $1", [`%${key}`])).rowCount, 0);
    assert.equal(h.paypal.requests().length, asked);
  });

  test("a PayPal answer of 2xx without its JSON (cut short, a page, null, empty) is in doubt, never an internal error: the order or capture ran", async () => {
    const config = { clientId: h.paypal.clientId, clientSecret: h.paypal.clientSecret, webhookId: h.paypal.webhookId, apiBase: h.paypal.url, timeoutMs: 5_000 };
    // The request reaches the simulator and runs; only the answer the provider reads is spoiled on its way back.
    const spoiling = (pathEnd: string, spoil: (text: string) => string, status?: number): PayPalConfig["request"] => async (url, call) => {
      const reply = await httpRequest(url, call);
      if (!url.pathname.endsWith(pathEnd)) return reply;
      const text = spoil(await reply.text());
      const code = status ?? reply.status;
      return { status: code, ok: code >= 200 && code < 300, statusText: reply.statusText, headers: reply.headers, text: async () => text };
    };
    const spoils: Record<string, (text: string) => string> = {
      cut: (t) => t.slice(0, -5), page: () => "<html><body>OK</body></html>", null: () => "null", empty: () => "",
    };
    const clean = new PayPalCardProvider(config);
    const order = (key: string) => ({ tipId: randomUUID(), amountMinor: 1000n, currency: "USD", description: "Tip", idempotencyKey: key });
    const inDoubt = (e: unknown) => e instanceof CardProviderError && e.kind === "unknown";
    for (const [name, spoil] of Object.entries(spoils)) {
      // Before, JSON.parse's SyntaxError (or a TypeError reading null) surfaced as INTERNAL.
      const key = `create-${name}-${randomUUID()}`;
      const created = order(key);
      await assert.rejects(new PayPalCardProvider({ ...config, request: spoiling("/v2/checkout/orders", spoil) }).create(created), inDoubt, `create, ${name}`);
      const made = h.paypal.requests().filter((q) => q.path === "/v2/checkout/orders" && q.requestId === key);
      assert.equal(made.length, 1, `create, ${name}: sent once, and it ran`);
      const again = await clean.create(created);
      assert.equal(h.paypal.order(again.id)!.status, "PAYER_ACTION_REQUIRED", "asked again under its key, the order it made");

      await h.paypal.approve(again.id);
      await assert.rejects(new PayPalCardProvider({ ...config, request: spoiling("/capture", spoil) }).capture(again.id, `capture-${key}`), inDoubt, `capture, ${name}`);
      assert.equal(h.paypal.order(again.id)!.status, "COMPLETED", `capture, ${name}: it ran`);
      assert.equal((await clean.retrieve(again.id)).status, "succeeded");
    }
    // A page instead of PayPal's error: a refusal by its status (a 4xx), in doubt for a 5xx; never INTERNAL.
    const refusedBy = async (status: number) => new PayPalCardProvider({ ...config, request: spoiling("/v2/checkout/orders", () => "<html>no</html>", status) })
      .create(order(randomUUID())).then(() => undefined, (e: unknown) => e);
    const forbidden = await refusedBy(403);
    assert.ok(forbidden instanceof CardProviderError && forbidden.kind === "rejected", String(forbidden));
    assert.ok(inDoubt(await refusedBy(502)));
  });

  test("a webhook PayPal did not sign is stored and refused", async () => {
    const body = JSON.stringify({ id: "WH-FORGED", event_type: "PAYMENT.CAPTURE.COMPLETED", resource: { id: "X", amount: { currency_code: "USD", value: "10.00" } } });
    const res = await fetch(`${h.t.service.server.url}/paypal/webhook`, {
      method: "POST", body,
      headers: { "content-type": "application/json", "paypal-transmission-id": "1", "paypal-transmission-time": new Date().toISOString(), "paypal-transmission-sig": "Zm9yZ2Vk", "paypal-cert-url": "https://example.invalid/cert", "paypal-auth-algo": "SHA256withRSA" },
    });
    assert.equal(res.status, 400);
    const { rows } = await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE source = 'paypal' AND position('WH-FORGED' in encode(raw_body, 'escape')) > 0");
    assert.deepEqual(rows.map((r) => r.outcome), ["bad_signature"]);
  });

  test("a declined funding source at capture leaves the tip open with the decline; nothing credited", async () => {
    const worker = randomUUID();
    const r = await create(worker);
    await approve(r.paypalApproveUrl, "&decline=1");
    const t = await until(r.tip!.tipId, "decline seen", (x) => x.resultCode === "INSTRUMENT_DECLINED");
    assert.equal(t.status, TipStatus.PENDING);
    assert.match(t.resultMessage, /declined/i);
    assert.equal(await h.balance(worker), 0n);
    // Past its deadline, a pass ends it declined, once: before, it stayed pending and each pass captured it again.
    h.clock.advance(h.config.cards!.expireAfterMs + 60_000);
    const captures = () => h.paypal.requests().filter((q) => q.path.endsWith("/capture")).length;
    const before = captures();
    for (let pass = 0; pass < 2; pass++) {
      await h.t.client(PaymentInternalService).reconcilePending({ limit: 100 });
      h.clock.advance(15 * 60_000);
    }
    const ended = (await pay.getTip({ tipId: t.tipId })).tip!;
    assert.deepEqual([TipStatus[ended.status], ended.resultCode], [TipStatus[TipStatus.FAILED], "card_declined"]);
    assert.ok(captures() - before <= 1, `captured again ${captures() - before} times`);
    assert.equal(await h.balance(worker), 0n);
  });

  test("two CreateTips under one key at once (a double click on Pay): PayPal refusing the second while it makes the order is in doubt, not a refusal; the tip stays open and is paid", async () => {
    const worker = randomUUID();
    const ask = { ...tipTo(worker), idempotencyKey: randomUUID() };
    // PayPal makes the first's order and has not answered when the second comes, under the same PayPal-Request-Id.
    const hold = h.paypal.holdWrites((path) => path === "/v2/checkout/orders");
    let first: ReturnType<typeof pay.createTip> | undefined;
    try {
      first = pay.createTip(ask);
      await eventually(async () => hold.held() === 1, "the first order in flight at PayPal");
      // Before, PREVIOUS_REQUEST_IN_PROGRESS read as PayPal refusing the payment: the tip failed while its order was made.
      await assert.rejects(pay.createTip(ask), (e: ConnectError) => e.code === Code.Unavailable && /retry with the same idempotency key/.test(e.rawMessage));
    } finally {
      hold.release();
    }
    const r = await first!;
    assert.equal(r.tip!.status, TipStatus.PENDING);
    assert.equal((await pay.createTip(ask)).tip!.providerPaymentId, r.tip!.providerPaymentId, "asked again, the same order");
    await approve(r.paypalApproveUrl);
    const done = await until(r.tip!.tipId, "succeeded", (t) => t.status === TipStatus.SUCCEEDED);
    await credited(done.tipId);
    assert.equal(await h.balance(worker), done.workerReceives!.amountMinor);
  });

  test("two tries of one refund at once (a double click): one sends it, the other is refused to retry; PayPal's refusal of a simultaneous second send never gives the worker's share back", async () => {
    const worker = randomUUID();
    const paid = await paidTip(worker);
    const ask = { tipId: paid.tipId, idempotencyKey: `refund-${randomUUID()}`, amount: { currency: "USD", amountMinor: 500n }, reason: "customer asked" };
    const refunds = () => h.paypal.requests().filter((q) => q.path.endsWith("/refund"));
    // PayPal processes the first send and has not answered when the second try comes.
    const hold = h.paypal.holdWrites((path) => path.endsWith("/refund"));
    let first: Promise<unknown> | undefined;
    try {
      first = adminClient.refundTip(ask);
      await eventually(async () => hold.held() === 1, "the first send in flight at PayPal");
      // Before, it was sent too: PayPal refused it (PREVIOUS_REQUEST_IN_PROGRESS), read as a refusal of the refund, and the
      // worker's share went back while the first refunded the card.
      await assert.rejects(adminClient.refundTip(ask), (e: ConnectError) => e.code === Code.Aborted && /retry with the same idempotency key/.test(e.rawMessage));
      assert.equal(refunds().length, 1, "sent once");
    } finally {
      hold.release();
    }
    const done = (await first) as { refundId: string };
    // The payer reads PayPal's note, not the admin's reason.
    assert.deepEqual(refunds().map((q) => (q.body as { note_to_payer?: string }).note_to_payer), ["A refund of your tip through TTIP."]);
    const again = await adminClient.refundTip(ask);
    assert.equal(again.refundId, done.refundId, "retried, the refund made");
    assert.equal(again.tip!.refunded!.amountMinor, 500n);
    assert.equal(h.paypal.order(paid.providerPaymentId)!.purchase_units[0].payments.captures[0].status, "PARTIALLY_REFUNDED");
    assert.equal(await h.balance(worker), paid.workerReceives!.amountMinor - paid.workerReceives!.amountMinor / 2n, "the worker's share taken back once, not given back");
    assert.ok(await h.trialBalanced());
  });

  /** Statements of this database waiting on a lock whose text is like `like`. */
  const lockWaits = async (like: string) => (await h.t.db.pool.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1", [like])).rows[0].n as number;

  /**
   * Runs `first` until it waits on `table` (held by the test), then `second` until it finished or waits there too, then
   * lets both go; answers their outcomes (the error, if one was refused).
   */
  const heldAtTable = async (table: string, firstWaits: string, first: () => Promise<unknown>, second: () => Promise<unknown>, secondDone: () => Promise<boolean>) => {
    const holder = await h.t.db.pool.connect();
    const settle = (p: Promise<unknown>) => p.then((v) => v, (e: unknown) => e);
    let outcomes: Promise<unknown>[] = [];
    try {
      await holder.query("BEGIN");
      await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      const one = settle(first());
      await eventually(async () => (await lockWaits(firstWaits)) === 1, "the first waiting at the table");
      const two = settle(second());
      await eventually(async () => (await secondDone()) || (await lockWaits(`%${table}%`)) === 2, "the second done, or waiting at the table too");
      outcomes = [one, two];
    } finally {
      await holder.query("COMMIT");
      holder.release();
    }
    return Promise.all(outcomes);
  };

  test("a dispute opening while a refund takes the worker's share counts that refund: the share is taken back once in all, never twice", async () => {
    const worker = randomUUID();
    const paid = await paidTip(worker);
    let refunded = false;
    // The dispute's delivery has read the tip (nothing refunded) and waits; the refund comes meanwhile.
    const [disputeId, refund] = await heldAtTable("payment.card_disputes", "SELECT * FROM payment.card_disputes WHERE dispute_id%",
      () => h.paypal.openDispute(paid.providerPaymentId),
      () => adminClient.refundTip({ tipId: paid.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "customer asked" }).finally(() => (refunded = true)),
      async () => refunded);
    assert.ok(!(refund instanceof Error), String(refund));
    assert.equal(await h.balance(worker), 0n, "the refund took the worker's share");
    await until(paid.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    await h.paypal.resolveDispute(disputeId as string, "RESOLVED_BUYER_FAVOUR");
    await until(paid.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    // Before, the dispute counted the share the tip had when it read it (all of it) and took it again: the worker owed it.
    assert.equal(await h.ledgerBalance(worker), 0n, "the share taken back once");
    assert.ok(await h.trialBalanced());
  });

  test("a refund asked while a dispute opens is refused once the dispute is in, though it read the tip before: the share is not taken twice", async () => {
    const worker = randomUUID();
    const other = await paidTip(worker);
    const paid = await paidTip(worker);
    const share = paid.workerReceives!.amountMinor;
    const disputed = async () => (await pay.getTip({ tipId: paid.tipId })).tip!.cardState === CardTipState.DISPUTED;
    // The refund has read the tip (not disputed) and waits; the dispute comes meanwhile.
    const [refund, disputeId] = await heldAtTable("payment.card_refunds", "SELECT * FROM payment.card_refunds WHERE tip_id%",
      () => adminClient.refundTip({ tipId: paid.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "customer asked" }),
      () => h.paypal.openDispute(paid.providerPaymentId), disputed);
    // Before, it went on: the worker's other money paid the refund while the dispute had set this tip's share aside.
    assert.ok(refund instanceof ConnectError && refund.code === Code.FailedPrecondition && /disputed/.test(refund.rawMessage), String(refund));
    assert.equal(h.paypal.order(paid.providerPaymentId)!.purchase_units[0].payments.captures[0].status, "COMPLETED", "nothing refunded at PayPal");
    await until(paid.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    await h.paypal.resolveDispute(disputeId as string, "RESOLVED_BUYER_FAVOUR");
    await until(paid.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    assert.equal(await h.ledgerBalance(worker), other.workerReceives!.amountMinor, "only the disputed tip's share taken back");
    assert.equal(share, other.workerReceives!.amountMinor);
    assert.ok(await h.trialBalanced());
  });

  test("a PayPal dispute closed as ACCEPTED (the merchant accepted the claim: the customer refunded) is lost; one DENIED is won", async () => {
    const worker = randomUUID();
    const [accepted, denied] = [await paidTip(worker), await paidTip(worker)];
    const share = denied.workerReceives!.amountMinor;
    for (const [paid, outcome] of [[accepted, "ACCEPTED"], [denied, "DENIED"]] as const) {
      const du = await h.paypal.openDispute(paid.providerPaymentId);
      await until(paid.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
      await h.paypal.resolveDispute(du, outcome);
    }
    // Before, ACCEPTED read as won: the worker kept the share the customer had back.
    await until(accepted.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    await until(denied.tipId, "dispute won", (t) => t.cardState === CardTipState.DISPUTE_WON);
    assert.equal(await h.ledgerBalance(worker), share, "only the denied dispute's tip left with the worker");
    assert.ok(await h.trialBalanced());
  });

  test("an admin refund goes to PayPal's capture; a lost PayPal dispute reverses the credit", async () => {
    const worker = randomUUID();
    const paid = await paidTip(worker);
    const refund = await adminClient.refundTip({ tipId: paid.tipId, idempotencyKey: `refund-${randomUUID()}`, amount: { currency: "USD", amountMinor: 500n }, reason: "customer asked" });
    assert.equal(refund.tip!.refunded!.amountMinor, 500n);
    const capture = h.paypal.order(paid.providerPaymentId)!.purchase_units[0].payments.captures[0];
    assert.equal(capture.status, "PARTIALLY_REFUNDED");
    const left = await h.balance(worker);
    assert.equal(left, paid.workerReceives!.amountMinor - paid.workerReceives!.amountMinor / 2n);

    const du = await h.paypal.openDispute(paid.providerPaymentId);
    await until(paid.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    await h.paypal.resolveDispute(du, "RESOLVED_BUYER_FAVOUR");
    await until(paid.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    assert.equal(await h.ledgerBalance(worker), 0n, "refund and lost dispute took back the whole share");
    assert.ok(await h.trialBalanced());
  });

  test("a refund PayPal answers FAILED reached no one: the worker's share given back at once, the refund failed, the admin told", async () => {
    const worker = randomUUID();
    const paid = await paidTip(worker, "&refund_fails=1");
    const share = await h.balance(worker);
    const refusal = await adminClient.refundTip({ tipId: paid.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "customer asked" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    // Before, a 201 was a refund made whatever its status: the share kept from the worker, the customer refunded nothing.
    assert.equal(refusal?.code, Code.FailedPrecondition, String(refusal));
    assert.match(refusal.rawMessage, /could not refund the card: its refund \w+ failed/);
    assert.equal(await h.balance(worker), share, "the share given back");
    const { rows: [r] } = await h.t.db.pool.query("SELECT status, provider_refund_id FROM payment.card_refunds WHERE tip_id = $1", [paid.tipId]);
    assert.equal(r.status, "failed");
    assert.ok(r.provider_refund_id, "PayPal's refund kept, for its balance's reconciliation");
    assert.equal(h.paypal.order(paid.providerPaymentId)!.purchase_units[0].payments.captures[0].status, "COMPLETED", "nothing refunded");
    assert.ok(await h.trialBalanced());
  });
});
