import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import { callerHeaders, InvalidStateError } from "@ttip/runtime";
import { TipFailedSchema, TipReversalKind, TipReversedSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { CardTipState, FraudReason, TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { AccountKind, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import type { CardTipRow } from "../src/cards/convert.js";
import { CardLedger, type CardSplit } from "../src/cards/ledger.js";
import { StripeCardProvider } from "../src/cards/stripe.js";
import { createQrModule } from "@ttip/qr";
import { OwnerKind as QrOwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { splitOf } from "../src/cards/tips.js";
import { reviewCardTip } from "../src/cards/review.js";
import type { Deps } from "../src/tips.js";
import { Ledger, POST_ENTRY_TIMEOUT_MS } from "../src/ledger.js";
import { startCardHarness, type CardHarness } from "./cards-setup.js";
import { startHoldingProxy, twoPassesHeld } from "./held-requests.js";
import { eventually, KES } from "./setup.js";

const admin = { subject: randomUUID(), roles: ["admin" as const], stepUp: true };
const USD = (cents: number) => ({ currency: "USD", amountMinor: BigInt(cents) });

describe("card tips by Stripe, against the Stripe simulator and the real wallet", () => {
  let h: CardHarness;
  let pay: Client<typeof PaymentService>;
  let adminClient: Client<typeof PaymentAdminService>;
  let internal: Client<typeof PaymentInternalService>;

  before(async () => {
    h = await startCardHarness({ perCardPerHour: 3 }, {}, [createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } })]);
    pay = h.t.client(PaymentService);
    adminClient = h.t.client(PaymentAdminService, admin);
    internal = h.t.client(PaymentInternalService);
  });
  after(async () => {
    await h.close();
  });

  const cardTip = (workerId: string, amount = USD(1000), extra: { key?: string; country?: string; email?: string } = {}) =>
    pay.createTip({
      idempotencyKey: extra.key ?? randomUUID(), recipient: { case: "workerId", value: workerId }, amount,
      payment: { case: "card", value: true }, customerCountry: extra.country ?? "", customerEmail: extra.email ?? "",
    });
  const status = async (tipId: string) => (await pay.getTip({ tipId })).tip!;
  const until = (tipId: string, what: string, ok: (t: Tip) => boolean) => eventually(async () => {
    const t = await status(tipId);
    return ok(t) && t;
  }, what);
  const row = async (tipId: string) => (await h.t.db.pool.query("SELECT * FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0];
  /** What payment's outbox announced of `tipId`'s money: its success (amount, fee, net), and its reversals' kinds and sums. */
  const announced = async (tipId: string) => {
    const { rows } = await h.t.db.pool.query<{ subject: string; payload: Uint8Array }>(
      `SELECT subject, payload FROM payment.outbox WHERE subject IN ('ttip.payment.tip_succeeded', 'ttip.payment.tip_reversed')
          AND position($1 in encode(payload, 'escape')) > 0 ORDER BY seq`, [tipId]);
    const paid = rows.filter((r) => r.subject === "ttip.payment.tip_succeeded").map((r) => fromBinary(TipSucceededSchema, r.payload));
    const reversals = rows.filter((r) => r.subject === "ttip.payment.tip_reversed").map((r) => fromBinary(TipReversedSchema, r.payload));
    const sum = (of: (e: (typeof reversals)[number]) => { amountMinor: bigint } | undefined) => reversals.reduce((n, e) => n + (of(e)?.amountMinor ?? 0n), 0n);
    return {
      paid: paid.map((e) => [e.amount?.amountMinor, e.fee?.amountMinor, e.net?.amountMinor]),
      kinds: reversals.map((e) => e.kind),
      reversed: [sum((e) => e.amount), sum((e) => e.fee), sum((e) => e.net)],
    };
  };
  const entryConversions = async (entryId: string) =>
    (await h.t.db.pool.query("SELECT * FROM wallet.entry_conversions WHERE entry_id = $1", [entryId])).rows;
  const entriesFor = async (paymentId: string) =>
    Number((await h.t.db.pool.query("SELECT count(*) FROM wallet.entries WHERE cause_kind = 'stripePaymentId' AND cause_ref = $1", [paymentId])).rows[0].count);
  // One sample's value, labels in any order; 0 when the series does not exist yet.
  const scrape = async () => {
    const text = await (await fetch(`${h.t.service.server.url}/metrics`)).text();
    return (name: string, labels: Record<string, string>) => {
      const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      for (const line of text.split("\n")) {
        const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
        if (!m || m[1] !== name) continue;
        const have = m[2] ? m[2].split(",") : [];
        if (have.length === want.length && want.every((w) => have.includes(w))) return Number(m[3]);
      }
      return 0;
    };
  };
  // A different card each time unless asked: the per-card velocity rule would stop a fourth tip from one card.
  let cards = 0;
  const paid = async (workerId: string, pm = `pm_card_visa_${++cards}`, amount = USD(1000), country = "") => {
    const r = await cardTip(workerId, amount, { country });
    const c = await h.confirm(r.stripeClientSecret, pm);
    assert.equal(c.status, 200);
    const t = await until(r.tip!.tipId, "card tip settled", (t) => t.status !== TipStatus.PENDING);
    if (t.status !== TipStatus.FAILED) await eventually(async () => (await row(t.tipId)).credit_entry_id, "credit posted");
    return { created: r, tip: t };
  };
  /**
   * The tip's payment_intent.succeeded, once Stripe's own delivery of it was answered: paid() returns once the
   * tip is credited, and that delivery marks the event applied only after. A mark landing after a test removed
   * the event's row lands on the row the test's own delivery claims next (the event "applied" beside it).
   */
  const succeededEvent = (tip: Tip) => eventually(async () => {
    const ev = h.stripe.events().find((e) => e.type === "payment_intent.succeeded" && e.body.includes(tip.providerPaymentId));
    return ev?.delivered && ev;
  }, "Stripe's own delivery of the success event answered");

  test("a card tip's deadline and first check are set on the service's clock, the one its reconciliation reads them on", async () => {
    // The service's clock 10 minutes ahead of the database's (a test's clock moved on; a replica's clock apart from PostgreSQL's).
    h.clock.advance(10 * 60_000);
    const before = h.clock.now();
    const { tip } = await cardTip(randomUUID());
    const r = await row(tip!.tipId);
    const cards = h.config.cards!;
    // Before, set from the database's now(): 10 minutes early on this clock.
    assert.ok(r.deadline_at.getTime() >= before + cards.expireAfterMs, `deadline ${r.deadline_at.toISOString()} on the service's clock`);
    assert.ok(r.next_check_at.getTime() >= before + cards.checkAfterMs, `first check ${r.next_check_at.toISOString()} on the service's clock`);
  });

  test("a wallet stuck on PostEntry: card and suspense entries give up past the configured deadline (to be retried), and a retry posts each once", async () => {
    // A short deadline while wallet is stuck; the default for the retries, which a loaded machine may need.
    const deadline = { ms: 200 };
    const ledger = new Ledger(h.t.ctx, undefined, () => deadline.ms);
    const cards = new CardLedger(ledger);
    const worker = randomUUID();
    const paymentId = `pi_${randomUUID().replaceAll("-", "")}`;
    const split: CardSplit = { tipId: randomUUID(), workerId: worker, venueId: "", paymentId, provider: "stripe", currency: "KES", chargedMinor: 10_000n, shareMinor: 9_000n, walletCurrency: "KES", walletMinor: 9_000n };
    const receipt = `R${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    const parked = { key: `c2b:${receipt}`, receipt, amountMinor: 5_000n, description: "parked by the test" };
    // Their accounts made first: the entries are the only calls left to wait.
    for (const kind of [AccountKind.STRIPE_CLEARING, AccountKind.PLATFORM_FEES, AccountKind.MPESA_CLEARING, AccountKind.SUSPENSE]) await ledger.account(kind);
    await ledger.account(AccountKind.WORKER_WALLET, worker);
    const holder = await h.t.db.pool.connect();
    let outcomes: unknown[];
    try {
      await holder.query("BEGIN");
      // Wallet's statements posting an entry wait for this lock, with no lock timeout of their own: wallet answers nothing.
      await holder.query("LOCK TABLE wallet.entries IN ACCESS EXCLUSIVE MODE");
      outcomes = await Promise.all([cards.credit(split, "recipient"), ledger.toSuspense(parked)].map((p) => p.then(() => "posted", (err: unknown) => err)));
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    for (const outcome of outcomes) {
      assert.ok(outcome instanceof ConnectError, "refused, not posted");
      assert.equal(Code[outcome.code], Code[Code.DeadlineExceeded]);
    }
    deadline.ms = POST_ENTRY_TIMEOUT_MS;
    // Retried (twice: a repeat after a lost answer), each is posted once.
    const credited = [await cards.credit(split, "recipient"), await cards.credit(split, "recipient")];
    assert.ok(credited[0] && credited[0] === credited[1], "one card entry");
    const suspended = [await ledger.toSuspense(parked), await ledger.toSuspense(parked)];
    assert.ok(suspended[0] && suspended[0] === suspended[1], "one suspense entry");
    assert.equal(await entriesFor(paymentId), 1);
  });

  test("a USD tip is authorised, captured and credited once in KES at the quoted rate, recorded on the entry", async () => {
    const worker = randomUUID();
    const r = await cardTip(worker);
    const tip = r.tip!;
    assert.equal(tip.status, TipStatus.PENDING);
    assert.match(r.stripeClientSecret, /^pi_\w+_secret_\w+$/);
    assert.equal(r.stripePublishableKey, h.stripe.publishableKey);
    assert.equal(tip.charged!.currency, "USD");
    assert.equal(tip.charged!.amountMinor, 1000n);
    // USD 10.00 less 5% platform fee and 2.9% + 30c card fee = 8.91 USD, at 129.20 KES = KES 1,151.17.
    assert.equal(tip.fee!.amountMinor, 109n);
    assert.equal(tip.workerReceives!.currency, "KES");
    assert.equal(tip.workerReceives!.amountMinor, 115117n);
    assert.equal(tip.fxRate, "129.20000000");
    assert.equal(tip.fxRateSource, "configured");
    assert.ok(tip.fxRateTime);

    const seen: { status: TipStatus; result: string }[] = [];
    const watching = (async () => {
      for await (const m of pay.watchTip({ tipId: tip.tipId })) seen.push({ status: m.tip!.status, result: m.tip!.resultCode });
    })();
    const c = await h.confirm(r.stripeClientSecret, "pm_card_visa");
    assert.equal(c.status, 200);
    assert.equal(c.body.status, "requires_capture");
    await watching;
    assert.equal(seen.at(-1)!.status, TipStatus.SUCCEEDED);
    const done = await status(tip.tipId);
    assert.equal(done.providerPaymentId, tip.providerPaymentId);
    assert.equal(h.stripe.paymentIntent(tip.providerPaymentId)!.status, "succeeded", "captured at Stripe");
    await eventually(async () => (await h.balance(worker)) === 115117n, "worker credited KES 1,151.17");
    const stored = await eventually(async () => { const r = await row(tip.tipId); return r.credit_entry_id && r; }, "credit recorded");
    const conv = await entryConversions(stored.credit_entry_id);
    assert.equal(conv.length, 1);
    assert.equal(conv[0].rate, "129.20000000");
    assert.equal(conv[0].rate_source, "configured");
    assert.equal(conv[0].from_currency, "USD");
    assert.equal(BigInt(conv[0].from_minor), 891n);
    assert.equal(BigInt(conv[0].to_minor), 115117n);
    assert.equal(stored.card_fingerprint.length > 0, true);
    assert.equal(await entriesFor(tip.providerPaymentId), 1);
    assert.ok(await h.trialBalanced());
    // Every write to Stripe carried an idempotency key.
    const writes = h.stripe.requests().filter((q) => q.method === "POST" && !q.path.endsWith("/confirm"));
    assert.ok(writes.length >= 2);
    assert.deepEqual(writes.filter((q) => !q.idempotencyKey), []);
  });

  test("a KES card tip to a worker whose only wallet is in dollars is credited in dollars through the FX position; the KES limit holds in any pair", async () => {
    const worker = randomUUID();
    const walletInternal = createClient(WalletInternalService, h.t.ctx.peers("wallet"));
    await walletInternal.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: worker, currency: "USD" });
    const { tip } = await paid(worker, `pm_card_visa_${++cards}`, { currency: "KES", amountMinor: 100_000n });
    assert.equal(tip.status, TipStatus.SUCCEEDED);
    assert.equal(tip.charged!.currency, "KES");
    assert.equal(tip.workerReceives!.currency, "USD");
    const usd = async () => (await createClient(WalletService, h.t.ctx.peers("wallet")).getBalance({ currency: "USD" }, { headers: callerHeaders(worker, "worker") })).balances[0]?.ledger?.amountMinor;
    assert.ok(tip.workerReceives!.amountMinor > 0n);
    assert.equal(await usd(), tip.workerReceives!.amountMinor, "the dollar wallet credited what the tip says");
    const conv = await entryConversions((await row(tip.tipId)).credit_entry_id);
    assert.deepEqual([conv[0].from_currency.trim(), conv[0].to_currency.trim(), BigInt(conv[0].to_minor)], ["KES", "USD", tip.workerReceives!.amountMinor]);
    assert.ok(await h.trialBalanced());
    // USD 1,000 is about KES 129,200: over the KES 100,000 limit though neither side of the tip is in KES.
    await assert.rejects(cardTip(worker, USD(100_000)), (e: ConnectError) => e.code === Code.InvalidArgument && /amount: a card tip may be at most KES 100000 \(this one is about KES 129\d{3}\)/.test(e.message));
  });

  test("/metrics: card tips move the card series (created, succeeded, held; KES amount; webhook to credit latency), not M-Pesa's", async () => {
    const before = await scrape();
    const ok = await paid(randomUUID(), `pm_card_visa_${++cards}`, USD(1000));
    assert.equal(ok.tip.status, TipStatus.SUCCEEDED);
    const held = await paid(randomUUID(), `pm_card_gb_${++cards}`, USD(500), "KE");
    assert.equal(held.tip.status, TipStatus.HELD_FOR_REVIEW);
    const now = await scrape();
    const moved = (name: string, labels: Record<string, string>) => now(name, labels) - before(name, labels);

    assert.equal(moved("ttip_payment_tips_total", { status: "created", method: "card" }), 2);
    assert.equal(moved("ttip_payment_tips_total", { status: "succeeded", method: "card" }), 1);
    assert.equal(moved("ttip_payment_tips_total", { status: "held", method: "card" }), 1);
    assert.equal(moved("ttip_payment_tips_total", { status: "created", method: "mpesa" }), 0);
    // Only the credited tip is an amount: USD 10.00 at the quoted 129.20 is KES 1,292.00, in the le=2000 bucket and not le=1000.
    assert.equal(moved("ttip_payment_tip_amount_kes_count", { method: "card" }), 1);
    assert.equal(moved("ttip_payment_tip_amount_kes_sum", { method: "card" }), 1292);
    assert.equal(moved("ttip_payment_tip_amount_kes_bucket", { le: "2000", method: "card" }), 1);
    assert.equal(moved("ttip_payment_tip_amount_kes_bucket", { le: "1000", method: "card" }), 0);
    // Both credits (to the worker, to suspense) were timed from the webhook's decision.
    assert.equal(moved("ttip_payment_callback_to_credit_seconds_count", { method: "card" }), 2);
    assert.ok(moved("ttip_payment_callback_to_credit_seconds_sum", { method: "card" }) >= 0);
  });

  test("CreateTip retried with its key returns the same PaymentIntent; another tip under the key is ALREADY_EXISTS", async () => {
    const worker = randomUUID();
    const key = `card-${randomUUID()}`;
    const before = h.stripe.requests().filter((q) => q.path === "/v1/payment_intents").length;
    const [a, b] = await Promise.all([cardTip(worker, USD(500), { key }), cardTip(worker, USD(500), { key })]);
    assert.equal(a.tip!.tipId, b.tip!.tipId);
    assert.equal(a.stripeClientSecret, b.stripeClientSecret);
    const c = await cardTip(worker, USD(500), { key });
    assert.equal(c.tip!.providerPaymentId, a.tip!.providerPaymentId);
    const creates = h.stripe.requests().filter((q) => q.path === "/v1/payment_intents").slice(before);
    assert.equal(new Set(creates.map((q) => q.idempotencyKey)).size, 1, "one idempotency key for every create of this tip");
    await assert.rejects(cardTip(worker, USD(600), { key }), (e: ConnectError) => e.code === Code.AlreadyExists && /idempotency_key/.test(e.message));
  });

  test("a card tip whose payment was never started is not started by its retry once the worker is blocked: the refusal stands", async () => {
    const worker = randomUUID();
    const key = `card-${randomUUID()}`;
    const cardConfig = h.config.cards!;
    const stripe = cardConfig.stripe!;
    // Stripe out of reach: the tip is stored, its payment not made, and the customer told to retry under the key.
    cardConfig.stripe = { ...stripe, apiBase: "http://127.0.0.1:1" };
    let unanswered: ConnectError;
    try {
      unanswered = await cardTip(worker, USD(500), { key }).then(() => assert.fail("started"), (e: unknown) => ConnectError.from(e));
    } finally {
      cardConfig.stripe = stripe;
    }
    assert.equal(unanswered.code, Code.Unavailable, unanswered.message);
    // Meanwhile auth blocked the worker (payment's copy of the block, as its consumer writes it).
    await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, payouts_on_hold, account_blocked, block_changed_at) VALUES ($1, true, true, now())", [worker]);
    const creates = () => h.stripe.requests().filter((q) => q.path === "/v1/payment_intents").length;
    const before = creates();
    const refused = await cardTip(worker, USD(500), { key }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    // Before, the retry was answered as the placed tip, whose replay made the payment: the blocked account was paid.
    assert.deepEqual([refused?.code, refused?.rawMessage], [Code.FailedPrecondition, "worker_id: this worker is not taking tips"]);
    assert.equal(creates(), before, "no payment made");
  });

  test("CreateTip retried after the card was confirmed answers no client secret: nothing is left to confirm, the tip is there", async () => {
    const worker = randomUUID();
    const key = `card-${randomUUID()}`;
    const first = await cardTip(worker, USD(500), { key });
    assert.notEqual(first.stripeClientSecret, "");
    assert.equal((await h.confirm(first.stripeClientSecret, `pm_card_visa_${++cards}`)).body.status, "requires_capture");
    // The confirm's answer was lost; the page opened again asks under the same key, before or after the webhook.
    const again = await cardTip(worker, USD(500), { key });
    assert.equal(again.tip!.tipId, first.tip!.tipId);
    assert.equal(again.stripeClientSecret, "");
    await until(first.tip!.tipId, "credited", (t) => t.status === TipStatus.SUCCEEDED);
    assert.equal((await cardTip(worker, USD(500), { key })).stripeClientSecret, "");
  });

  test("3-D Secure: the tip shows the bank's page; completed, it is credited; failed, it stays open for another card", async () => {
    const worker = randomUUID();
    const r = await cardTip(worker);
    const c = await h.confirm(r.stripeClientSecret, "pm_card_threeDSecure2Required");
    assert.equal(c.body.status, "requires_action");
    const waiting = await until(r.tip!.tipId, "requires_action seen", (t) => t.resultCode === "requires_action");
    assert.equal(waiting.status, TipStatus.PENDING);
    assert.match(waiting.nextActionUrl, /\/__sim\/3ds\/pi_/);
    assert.match(waiting.resultMessage, /confirm/i);
    // The customer fails the challenge: nothing charged, the payment stays open.
    await h.stripe.completeThreeDS(r.tip!.providerPaymentId, false);
    const failed = await until(r.tip!.tipId, "authentication failure seen", (t) => t.resultCode === "payment_intent_authentication_failure");
    assert.equal(failed.status, TipStatus.PENDING);
    assert.equal(await h.balance(worker), 0n);
    // Again, and this time the bank's page is completed (as the browser would follow the link).
    await h.confirm(r.stripeClientSecret, "pm_card_threeDSecure2Required");
    const page = await until(r.tip!.tipId, "requires_action again", (t) => t.nextActionUrl !== "");
    const res = await fetch(`${page.nextActionUrl.split("?")[0]}?result=pass`, { redirect: "manual" });
    assert.ok(res.status === 200 || res.status === 302);
    await until(r.tip!.tipId, "credited after 3DS", (t) => t.status === TipStatus.SUCCEEDED);
    await eventually(async () => (await h.balance(worker)) === 115117n, "worker credited");
  });

  test("a declined card leaves the tip open with the decline in words; another card then pays", async () => {
    const worker = randomUUID();
    const r = await cardTip(worker);
    const c = await h.confirm(r.stripeClientSecret, "pm_card_chargeDeclinedInsufficientFunds");
    assert.equal(c.status, 402);
    const declined = await until(r.tip!.tipId, "decline seen", (t) => t.resultCode !== "");
    assert.equal(declined.resultCode, "card_declined/insufficient_funds");
    assert.match(declined.resultMessage, /insufficient funds/i);
    assert.equal(declined.status, TipStatus.PENDING);
    await h.confirm(r.stripeClientSecret, "pm_card_mastercard");
    await until(r.tip!.tipId, "credited", (t) => t.status === TipStatus.SUCCEEDED);
  });

  test("webhooks: a bad or stale Stripe-Signature is stored and refused; a redelivered event credits nothing more", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    const url = `${h.t.service.server.url}/stripe/webhook`;
    const body = JSON.stringify({ id: "evt_forged", object: "event", type: "payment_intent.succeeded", data: { object: { id: tip.providerPaymentId } } });
    const sign = (t: number, secret = h.stripe.webhookSecret) => `t=${t},v1=${createHmac("sha256", secret).update(`${t}.${body}`).digest("hex")}`;
    const now = Math.floor(Date.now() / 1000);
    for (const header of [sign(now, "whsec_wrong"), sign(now - 3600), "t=1,v1=00"]) {
      const res = await fetch(url, { method: "POST", headers: { "stripe-signature": header, "content-type": "application/json" }, body });
      assert.equal(res.status, 400);
    }
    const { rows } = await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE source = 'stripe' AND position('evt_forged' in encode(raw_body, 'escape')) > 0");
    assert.deepEqual(rows.map((r) => r.outcome), ["bad_signature", "bad_signature", "bad_signature"]);
    // Stripe's retry of the real success event (after its first delivery was answered: one still applying it refuses a retry).
    const ev = await succeededEvent(tip);
    assert.equal(await h.stripe.redeliver(ev.id), 200);
    assert.equal(await h.stripe.redeliver(ev.id), 200);
    assert.equal(await entriesFor(tip.providerPaymentId), 1);
    assert.equal(await h.balance(worker), 115117n);
  });

  test("two deliveries of one event at once: one applies it, the other is refused for Stripe to send again (409), never applied beside it", async () => {
    const { tip } = await paid(randomUUID());
    const ev = await succeededEvent(tip);
    // As if it had never arrived (applied again, it credits nothing more: its tip is credited).
    await h.t.db.pool.query("DELETE FROM payment.card_events WHERE provider = 'stripe' AND event_id = $1", [ev.id]);
    const applying = async () => (await h.t.db.pool.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'SELECT * FROM payment.tips WHERE provider_payment_id%'")).rows[0].n as number;
    // The tips held still: a delivery applying the event waits there.
    const holder = await h.t.db.pool.connect();
    let statuses: number[];
    try {
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE payment.tips IN ACCESS EXCLUSIVE MODE");
      const first = h.stripe.redeliver(ev.id);
      await eventually(async () => (await applying()) === 1, "the first delivery applying the event");
      let answered = false;
      const second = h.stripe.redeliver(ev.id).finally(() => (answered = true));
      await eventually(async () => answered || (await applying()) === 2, "the second delivery answered, or applying it too");
      await holder.query("COMMIT");
      statuses = await Promise.all([first, second]);
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      holder.release();
    }
    assert.deepEqual(statuses, [200, 409]);
    // Sent again, it is a duplicate.
    assert.equal(await h.stripe.redeliver(ev.id), 200);
    const { rows } = await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE source = 'stripe' AND external_reference = $1 ORDER BY received_at", [ev.id]);
    assert.deepEqual(rows.slice(-2).map((r) => r.outcome), ["being_applied", "duplicate"]);
  });

  test("a delivery whose apply fails after its claim lapsed lets go of no other delivery's claim: the event stays held by the one that claimed it since", async () => {
    const { tip } = await paid(randomUUID());
    const ev = await succeededEvent(tip);
    // As if it had never arrived (applied again, it credits nothing more: its tip is credited).
    await h.t.db.pool.query("DELETE FROM payment.card_events WHERE provider = 'stripe' AND event_id = $1", [ev.id]);
    const applyingQuery = "FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'SELECT * FROM payment.tips WHERE provider_payment_id%'";
    const claimedUntil = async () =>
      (await h.t.db.pool.query("SELECT claimed_until::text AS until FROM payment.card_events WHERE provider = 'stripe' AND event_id = $1", [ev.id])).rows[0]?.until as string | null;
    const holder = await h.t.db.pool.connect();
    let failed: number;
    let other: string;
    try {
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE payment.tips IN ACCESS EXCLUSIVE MODE");
      const first = h.stripe.redeliver(ev.id);
      await eventually(async () => (await h.t.db.pool.query(`SELECT count(*)::int AS n ${applyingQuery}`)).rows[0].n === 1, "the first delivery applying the event");
      // Its lease past, another delivery claims the event (the claim statement's own effect) and is applying it.
      other = (await h.t.db.pool.query(
        `UPDATE payment.card_events SET claimed_until = now() + interval '120 seconds' WHERE provider = 'stripe' AND event_id = $1
          RETURNING claimed_until::text AS until`, [ev.id])).rows[0].until;
      // The first delivery's apply fails.
      await h.t.db.pool.query(`SELECT pg_cancel_backend(pid) ${applyingQuery}`);
      failed = await first;
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    assert.equal(failed, 500, "the failed apply asks Stripe to send it again");
    assert.equal(await claimedUntil(), other, "the other delivery's claim stands");
    // So a delivery arriving meanwhile is refused, not applied beside the one holding it.
    assert.equal(await h.stripe.redeliver(ev.id), 409);
    // Once that claim is let go, a delivery applies it.
    await h.t.db.pool.query("UPDATE payment.card_events SET claimed_until = NULL WHERE provider = 'stripe' AND event_id = $1", [ev.id]);
    assert.equal(await h.stripe.redeliver(ev.id), 200);
    assert.equal(await h.stripe.redeliver(ev.id), 200, "then a duplicate");
    const { rows } = await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE source = 'stripe' AND external_reference = $1 ORDER BY received_at", [ev.id]);
    assert.equal(rows.at(-1)!.outcome, "duplicate");
  });

  test("a delivery whose apply finishes after its claim lapsed keeps the outcome a later delivery recorded: the event is marked applied once", async () => {
    const { tip } = await paid(randomUUID());
    const ev = await succeededEvent(tip);
    // As if it had never arrived (applied again, it credits nothing more: its tip is credited).
    await h.t.db.pool.query("DELETE FROM payment.card_events WHERE provider = 'stripe' AND event_id = $1", [ev.id]);
    const applyingQuery = "FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'SELECT * FROM payment.tips WHERE provider_payment_id%'";
    const mark = async () => (await h.t.db.pool.query(
      "SELECT applied_at::text AS applied, outcome, claimed_until::text AS until FROM payment.card_events WHERE provider = 'stripe' AND event_id = $1", [ev.id])).rows[0];
    const holder = await h.t.db.pool.connect();
    let first: Promise<number>;
    let other: { applied: string; outcome: string; until: string };
    try {
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE payment.tips IN ACCESS EXCLUSIVE MODE");
      first = h.stripe.redeliver(ev.id);
      await eventually(async () => (await h.t.db.pool.query(`SELECT count(*)::int AS n ${applyingQuery}`)).rows[0].n === 1, "the first delivery applying the event");
      // Its claim past, another delivery claimed the event, applied it and marked it (the statements' own effects).
      await h.t.db.pool.query(
        `UPDATE payment.card_events SET claimed_until = now() + interval '120 seconds', applied_at = now() - interval '1 second', outcome = 'applied_by_other'
          WHERE provider = 'stripe' AND event_id = $1`, [ev.id]);
      other = await mark();
    } finally {
      await holder.query("COMMIT");
      holder.release();
    }
    assert.equal(await first, 200, "the first delivery's apply finishes (it posted nothing twice: the tip was credited)");
    assert.deepEqual(await mark(), other, "the first mark stands: neither its time nor its outcome is written over");
    assert.equal(await h.stripe.redeliver(ev.id), 200);
    const { rows } = await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE source = 'stripe' AND external_reference = $1 ORDER BY received_at", [ev.id]);
    assert.equal(rows.at(-1)!.outcome, "duplicate");
  });

  test("a lost webhook: reconciliation asks Stripe, captures and credits", async () => {
    const worker = randomUUID();
    const r = await cardTip(worker);
    h.stripe.pauseWebhooks(true);
    try {
      await h.confirm(r.stripeClientSecret, "pm_card_visa");
      await new Promise((res) => setTimeout(res, 100));
      assert.equal((await status(r.tip!.tipId)).status, TipStatus.PENDING);
      await internal.reconcilePending({ limit: 100 });
    } finally {
      h.stripe.pauseWebhooks(false);
    }
    assert.equal((await status(r.tip!.tipId)).status, TipStatus.SUCCEEDED);
    assert.equal(await h.balance(worker), 115117n);
  });

  test("a pass whose provider call outlived its lease lets go of no later pass's lease, and the tip's check is counted once, by the pass holding it", async () => {
    const worker = randomUUID();
    const r = await cardTip(worker);
    const tipId = r.tip!.tipId;
    const paymentId = (await row(tipId)).provider_payment_id as string;
    const leaseOf = async () => (await h.t.db.pool.query("SELECT lease_until::text AS lease, checks FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0];
    // This tip's retrieves wait in the proxy until let go; the client waits longer than any hold here.
    const proxy = await startHoldingProxy(h.stripe.url, (q) => q.method === "GET" && q.path.startsWith(`/v1/payment_intents/${paymentId}`));
    const cardConfig = h.config.cards!;
    const [stripe, leaseMs] = [cardConfig.stripe!, h.config.reconcileLeaseMs];
    cardConfig.stripe = { ...stripe, apiBase: proxy.url, timeoutMs: 60_000 };
    // Shortened so that the held call outlives it (as a slow provider outlives 2 minutes).
    h.config.reconcileLeaseMs = 1;
    h.stripe.pauseWebhooks(true);
    try {
      await h.confirm(r.stripeClientSecret, "pm_card_visa");
      // Its lease past, another replica's pass leases the tip and asks about it too.
      const passes = await twoPassesHeld(proxy, () => internal.reconcilePending({ limit: 100 }), "retrieve");
      const later = (await leaseOf()).lease as string;
      await passes.finishFirst();
      assert.deepEqual(await leaseOf(), { lease: later, checks: 0 }, "the second pass's lease stands, and the first counted no check");
      await passes.finishSecond();
      assert.deepEqual(await leaseOf(), { lease: null, checks: 1 }, "let go by the pass holding it, its check counted once");
    } finally {
      h.stripe.pauseWebhooks(false);
      cardConfig.stripe = stripe;
      h.config.reconcileLeaseMs = leaseMs;
      await proxy.close();
    }
    assert.equal((await status(tipId)).status, TipStatus.SUCCEEDED);
    assert.equal(await h.balance(worker), 115117n);
    assert.equal(await entriesFor(paymentId), 1, "credited once");
  });

  test("a webhook and a reconciliation pass authorising one tip at once run the card rules once: one fraud alert, one credit into suspense", async () => {
    const worker = randomUUID();
    const r = await cardTip(worker, USD(1000), { country: "KE" });
    const tipId = r.tip!.tipId;
    const paymentId = (await row(tipId)).provider_payment_id as string;
    // The pass asks Stripe about the tip and waits there; the webhook reads the tip, then waits at Stripe for the card
    // (its event carries no charge). The pass decides first; the webhook goes on with the tip as it read it before.
    const proxy = await startHoldingProxy(h.stripe.url, (q) => q.method === "GET" && q.path.startsWith(`/v1/payment_intents/${paymentId}`));
    const cardConfig = h.config.cards!;
    const stripe = cardConfig.stripe!;
    cardConfig.stripe = { ...stripe, apiBase: proxy.url, timeoutMs: 60_000 };
    h.stripe.pauseWebhooks(true);
    try {
      assert.equal((await h.confirm(r.stripeClientSecret, `pm_card_gb_${Date.now()}_race`)).status, 200);
      const pass = internal.reconcilePending({ limit: 100 });
      await eventually(async () => proxy.held() === 1, "the pass's retrieve held");
      h.stripe.pauseWebhooks(false);
      const authorised = h.stripe.events().find((e) => e.type === "payment_intent.amount_capturable_updated" && e.body.includes(paymentId))!;
      const webhook = h.stripe.redeliver(authorised.id);
      await eventually(async () => proxy.held() === 2, "the webhook's retrieve held");
      proxy.releaseOldest();
      await pass;
      await until(tipId, "held for review", (t) => t.status === TipStatus.HELD_FOR_REVIEW);
      proxy.releaseOldest();
      assert.equal(await webhook, 200);
    } finally {
      h.stripe.pauseWebhooks(false);
      cardConfig.stripe = stripe;
      await proxy.close();
    }
    await eventually(async () => (await row(tipId)).credit_entry_id, "credit posted");
    // Before, the later one ran the rules on the row it read before the first decided: the alert was recorded twice.
    const { rows } = await h.t.db.pool.query("SELECT reason FROM payment.fraud_alerts WHERE tip_id = $1", [tipId]);
    assert.deepEqual(rows.map((a) => a.reason), ["CARD_COUNTRY_MISMATCH"]);
    assert.equal(await entriesFor(paymentId), 1, "credited once, into suspense");
    assert.equal(await h.balance(worker), 0n);
  });

  test("a USD card tip by a venue's table code lands in the venue's pool in KES, once; a refund and a lost chargeback take their shares back from the pool; a held one reaches it when approved; a chargeback after a split sets aside what the pool holds", async () => {
    const venue = randomUUID();
    const manager = { headers: callerHeaders(randomUUID(), "venue_manager") };
    const qr = createClient(QrService, h.t.ctx.peers("qr"));
    await qr.putProfile({ ownerKind: QrOwnerKind.VENUE, ownerId: venue, displayName: "Tamarind" }, manager);
    const { qrCode } = await qr.createQrCode({ ownerKind: QrOwnerKind.VENUE, ownerId: venue, idempotencyKey: randomUUID(), parameters: { table: "T4" } }, manager);
    const asAdmin = { headers: callerHeaders("admin-1", "admin") };
    const walletAdmin = createClient(WalletAdminService, h.t.ctx.peers("wallet"));
    const pool = async () => {
      const { accounts } = await walletAdmin.listAccounts({ kind: AccountKind.VENUE_POOL, ownerId: venue }, asAdmin);
      return accounts[0] ? (await walletAdmin.getAccount({ accountId: accounts[0].accountId }, asAdmin)).balance!.ledger!.amountMinor : 0n;
    };
    const byCode = async (pm = `pm_card_visa_${++cards}`, customerCountry = "") => {
      const r = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: qrCode!.shortCode }, amount: USD(1000), payment: { case: "card", value: true }, customerCountry });
      assert.equal((await h.confirm(r.stripeClientSecret, pm)).status, 200);
      const t = await until(r.tip!.tipId, "card tip settled", (t) => t.status !== TipStatus.PENDING);
      await eventually(async () => (await row(t.tipId)).credit_entry_id, "credit posted");
      return t;
    };

    // Before, a card tip by a venue's code was UNIMPLEMENTED.
    const tip = await byCode();
    assert.equal(tip.status, TipStatus.SUCCEEDED);
    assert.equal(tip.shared, true);
    assert.equal(tip.workerId, "");
    assert.equal(tip.venueId, venue);
    assert.deepEqual([tip.workerReceives!.currency, tip.workerReceives!.amountMinor], ["KES", 115117n], "as a worker's: USD 8.91 at 129.20");
    assert.equal(await pool(), 115117n);
    const stored = await row(tip.tipId);
    assert.deepEqual([stored.worker_id, stored.credit_kind], [null, "venue"]);
    assert.equal((await entryConversions(stored.credit_entry_id)).length, 1);
    const succeeded = await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.outbox WHERE subject = 'ttip.payment.tip_succeeded' AND position($1 in encode(payload, 'escape')) > 0", [tip.tipId]);
    assert.equal(succeeded.rows[0].n, 1);

    // A refund of USD 4 takes its share of the pool first.
    await adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, amount: USD(400), reason: "customer asked" });
    const refunded = (115117n * 400n) / 1000n;
    assert.equal(await pool(), 115117n - refunded);

    // A chargeback on another: its share set aside from the pool, then, lost, taken.
    const disputed = await byCode();
    assert.equal(await pool(), 2n * 115117n - refunded);
    const du = await h.stripe.openDispute(disputed.providerPaymentId);
    await until(disputed.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    await eventually(async () => (await pool()) === 115117n - refunded, "the disputed share set aside");
    await h.stripe.closeDispute(du, "lost");
    await until(disputed.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    assert.equal(await pool(), 115117n - refunded);

    // Held by a rule (a British card, a Kenyan customer): in suspense, not the pool, until an admin approves it.
    const held = await byCode(`pm_card_gb_${++cards}`, "KE");
    assert.equal(held.status, TipStatus.HELD_FOR_REVIEW);
    assert.equal(await pool(), 115117n - refunded);
    await adminClient.reviewTip({ tipId: held.tipId, approve: true, note: "tourist, fine" });
    assert.equal(await pool(), 2n * 115117n - refunded);

    // A chargeback on a tip whose share the venue has split, all but KES 1.17: that much is set aside, the rest taken once lost.
    const split = await byCode();
    const walletInternal = createClient(WalletInternalService, h.t.ctx.peers("wallet"));
    const accountOf = async (kind: AccountKind, ownerKind: OwnerKind, ownerId: string) =>
      (await walletInternal.ensureAccount({ kind, ownerKind, ownerId, currency: "KES" })).account!.accountId;
    const paidOut = (await pool()) - 117n;
    await walletInternal.postEntry({
      idempotencyKey: `split-${randomUUID()}`, cause: { cause: { case: "poolDistributionId", value: randomUUID() } }, description: "Tip pool share",
      postings: [
        { accountId: await accountOf(AccountKind.VENUE_POOL, OwnerKind.VENUE, venue), amount: { amountMinor: -paidOut, currency: "KES" } },
        { accountId: await accountOf(AccountKind.WORKER_WALLET, OwnerKind.WORKER, randomUUID()), amount: { amountMinor: paidOut, currency: "KES" } },
      ],
    });
    const du2 = await h.stripe.openDispute(split.providerPaymentId);
    await until(split.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    // Before, the pool's whole share was tried, refused, and nothing set aside: its KES 1.17 was left to split.
    const { rows: [dispute] } = await h.t.db.pool.query("SELECT wallet_minor, held_wallet_minor FROM payment.card_disputes WHERE dispute_id = $1", [du2]);
    assert.deepEqual([dispute.wallet_minor, dispute.held_wallet_minor], [115117n, 117n]);
    assert.equal(await pool(), 0n);
    await h.stripe.closeDispute(du2, "lost");
    await until(split.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    assert.equal(await pool(), -115000n, "the pool owes the rest of the share");
    assert.ok(await h.trialBalanced());
  });

  test("an admin refund takes the worker's share back first, then refunds at Stripe, once per key", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    const key = `refund-${randomUUID()}`;
    // An amount of nothing is a mistake, not "all of it" (leaving it unset is): refused, naming the field.
    await assert.rejects(adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: key, amount: USD(0), reason: "customer asked" }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /amount/.test(e.message));
    assert.equal(await h.balance(worker), 115117n);
    const partial = await adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: key, amount: USD(400), reason: "customer asked" });
    assert.match(partial.refundId, /^re_/);
    assert.equal(partial.tip!.cardState, CardTipState.REFUNDED);
    assert.equal(partial.tip!.refunded!.amountMinor, 400n);
    assert.equal(await h.balance(worker), 115117n - (115117n * 400n) / 1000n);
    const again = await adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: key, amount: USD(400), reason: "customer asked" });
    assert.equal(again.refundId, partial.refundId);
    // Announced once, with the refund's share of the tip's figures (analytics takes it off earnings, volume and revenue).
    const { charged_minor: charged } = (await row(tip.tipId)) as CardTipRow;
    const [[amount, fee, net]] = (await announced(tip.tipId)).paid as bigint[][];
    assert.deepEqual(await announced(tip.tipId), {
      paid: [[amount, fee, net]], kinds: [TipReversalKind.REFUND], reversed: [(amount * 400n) / charged, (fee * 400n) / charged, (115117n * 400n) / 1000n],
    });
    const rest = await adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "the rest" });
    assert.equal(rest.tip!.refunded!.amountMinor, 1000n);
    assert.equal(await h.balance(worker), 0n);
    // All of it refunded: the reversals add up to the tip's figures, no minor unit lost to rounding.
    assert.deepEqual(await announced(tip.tipId), { paid: [[amount, fee, net]], kinds: [TipReversalKind.REFUND, TipReversalKind.REFUND], reversed: [amount, fee, net] });
    const ch = h.stripe.paymentIntent(tip.providerPaymentId)!;
    assert.equal(ch.status, "succeeded");
    await assert.rejects(adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "too much" }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /amount/.test(e.message));
    assert.ok(await h.trialBalanced());
  });

  test("a refund Stripe makes and later fails (the card closed): the worker's share given back, support told once, the failure delivered again changes nothing", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker, `pm_card_refundFail_${++cards}`);
    const share = await h.balance(worker);
    const ask = { tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "customer asked" };
    const made = await adminClient.refundTip(ask);
    assert.match(made.refundId, /^re_/);
    assert.equal(await h.balance(worker), 0n, "the share taken back first");
    const refundRow = async () => (await h.t.db.pool.query("SELECT status, failure FROM payment.card_refunds WHERE tip_id = $1", [tip.tipId])).rows[0] as { status: string; failure: string };
    // Before, refund.failed was ignored: the refund stayed sent, the worker's share taken, the card never refunded.
    await eventually(async () => (await refundRow()).status === "failed", "Stripe's refund.failed applied");
    assert.match((await refundRow()).failure, new RegExp(`${made.refundId} failed after it was made \\(expired_or_canceled_card\\)`));
    assert.equal(await h.balance(worker), share, "the share given back");
    const now = (await row(tip.tipId)) as CardTipRow;
    assert.deepEqual([now.refunded_minor, now.card_state], [0n, "none"]);
    assert.deepEqual((await announced(tip.tipId)).kinds, [TipReversalKind.REFUND, TipReversalKind.REFUND_REFUSED]);
    const told = async () => (await h.t.db.pool.query(
      "SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1 AND reason = 'CALLBACK_MISMATCH' AND detail LIKE '%could not complete refund%'", [tip.tipId])).rows;
    assert.equal((await told()).length, 1);
    assert.match((await told())[0].detail, /the customer has nothing back.*refund the customer another way/);
    const failure = h.stripe.events().find((e) => e.type === "refund.failed" && e.body.includes(made.refundId))!;
    assert.equal(await h.stripe.redeliver(failure.id), 200);
    assert.equal((await told()).length, 1, "told once");
    assert.equal(await h.balance(worker), share, "given back once");
    await assert.rejects(adminClient.refundTip(ask), (e: ConnectError) => e.code === Code.FailedPrecondition && /this refund failed earlier/.test(e.rawMessage));
    assert.ok(await h.trialBalanced());
  });

  test("a card tip whose customer gave an address for the receipt owes them one once credited, once; one without an address owes none", async () => {
    const owed = async (tipId: string) => Number((await h.t.db.pool.query("SELECT count(*) FROM payment.receipts WHERE tip_id = $1", [tipId])).rows[0].count);
    const r = await cardTip(randomUUID(), USD(1000), { email: "customer@example.com" });
    assert.equal((await h.confirm(r.stripeClientSecret, `pm_card_visa_${++cards}`)).status, 200);
    const t = await until(r.tip!.tipId, "card tip settled", (x) => x.status !== TipStatus.PENDING);
    await eventually(async () => (await row(t.tipId)).credit_entry_id, "credit posted");
    // Before, none: a card tip's receipt was owed only to a paying number, which it has not.
    assert.equal(await owed(t.tipId), 1);
    const { tip: plain } = await paid(randomUUID());
    assert.equal(await owed(plain.tipId), 0);
  });

  test("another amount under a refund's key is another request: ALREADY_EXISTS, nothing more refunded", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    const key = `refund-${randomUUID()}`;
    await adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: key, amount: USD(400), reason: "customer asked" });
    const sent = h.stripe.requests().filter((q) => q.path === "/v1/refunds").length;
    for (const amount of [USD(300), { currency: "EUR", amountMinor: 400n }]) {
      await assert.rejects(adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: key, amount, reason: "customer asked" }),
        (e: ConnectError) => e.code === Code.AlreadyExists && /idempotency_key/.test(e.rawMessage), `${amount.currency} ${amount.amountMinor}`);
    }
    const { tip: now } = await pay.getTip({ tipId: tip.tipId });
    assert.equal(now!.refunded!.amountMinor, 400n);
    assert.equal(h.stripe.requests().filter((q) => q.path === "/v1/refunds").length, sent, "nothing more sent to Stripe");
  });

  /** A USD 4.00 refund of the USD 10.00 tip `tipId` ("customer asked") that stopped once the wallet took the worker's share back: its row in `status`. */
  const refundStopped = async (tipId: string, key: string, status: "new" | "debited") => {
    const refundId = randomUUID();
    const share = (115117n * 400n) / 1000n;
    await h.t.db.pool.query(
      `INSERT INTO payment.card_refunds (refund_id, tip_id, idempotency_key, amount_minor, wallet_minor, status, reason, requested_by)
       VALUES ($1, $2, $3, 400, $4, $5, 'customer asked', 'admin')`, [refundId, tipId, key, share, status]);
    const tipRow = (await row(tipId)) as CardTipRow;
    const portion = { chargedMinor: 400n, shareMinor: (tipRow.worker_share_minor * 400n) / 1000n, walletMinor: share };
    await new CardLedger(new Ledger(h.t.ctx)).reverse(`card-refund:${refundId}`, splitOf(tipRow), portion, { description: `Refund of card tip ${tipId}` });
    // Debited: the tip counts it, as the move to debited records.
    if (status === "debited") {
      await h.t.db.pool.query("UPDATE payment.tips SET refunded_minor = 400, reversed_wallet_minor = $2, card_state = 'refunded' WHERE tip_id = $1", [tipId, share]);
    }
    return { refundId, share };
  };

  test("a refund left new, retried after its tip's chargeback was lost, which Stripe refuses: the share the dispute left to it is taken, not given back", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    const key = `refund-${randomUUID()}`;
    // The wallet took the share; the answer was lost, so the refund stays 'new' and the dispute leaves its share to it.
    await refundStopped(tip.tipId, key, "new");
    const du = await h.stripe.openDispute(tip.providerPaymentId);
    await until(tip.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    await h.stripe.closeDispute(du, "lost");
    await until(tip.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    await assert.rejects(adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: key, amount: USD(400), reason: "customer asked" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /refused the refund/.test(e.rawMessage));
    // Before, the refused refund gave its share back to a worker whose whole charge was charged back: 46046 kept.
    assert.equal(await h.ledgerBalance(worker), 0n);
    // Announced as the wallet moved: the chargeback (less the refund's share), the refund, the refusal giving back all but what the dispute took.
    const figures = await announced(tip.tipId);
    assert.deepEqual(figures.kinds, [TipReversalKind.CHARGEBACK, TipReversalKind.REFUND, TipReversalKind.REFUND_REFUSED]);
    assert.deepEqual(figures.reversed, figures.paid[0]);
    assert.ok(await h.trialBalanced());
  });

  test("a refund whose worker's share the wallet took but whose answer was lost: another refund waits for it to be retried by its key, not counting that share twice", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    // What takeBackWorkerShare leaves when the wallet posts the reversal after the call's deadline: the row still 'new'.
    const lostKey = `refund-${randomUUID()}`;
    const { share } = await refundStopped(tip.tipId, lostKey, "new");
    const refunds = h.stripe.requests().filter((q) => q.path === "/v1/refunds").length;
    await assert.rejects(adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, amount: USD(400), reason: "asked again" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && e.message.includes(lostKey));
    assert.equal(await h.balance(worker), 115117n - share, "the worker's share taken once");
    assert.equal(h.stripe.requests().filter((q) => q.path === "/v1/refunds").length, refunds, "Stripe was not asked");
    // Retried by its key, it finishes (the wallet answers the reversal it has); then another refund may start.
    const retried = await adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: lostKey, amount: USD(400), reason: "customer asked" });
    assert.equal(retried.tip!.refunded!.amountMinor, 400n);
    assert.equal(await h.balance(worker), 115117n - share);
    const rest = await adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "the rest" });
    assert.equal(rest.tip!.refunded!.amountMinor, 1000n);
    assert.equal(await h.balance(worker), 0n);
    assert.ok(await h.trialBalanced());
  });

  test("a refund sent to Stripe whose answer was lost, retried by its key in other words: the same request goes again and Stripe answers the refund it made, never read as refused", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    const key = `refund-${randomUUID()}`;
    // Where the first try stopped: the worker's share taken back, the refund sent to Stripe, its answer lost.
    const { refundId, share } = await refundStopped(tip.tipId, key, "debited");
    const sent = await new StripeCardProvider(h.config.cards!.stripe!).refund({
      paymentId: tip.providerPaymentId, amountMinor: 400n, currency: "USD", idempotencyKey: `ttip-refund-${refundId}`, reason: "customer asked" });
    const retried = await adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: key, amount: USD(400), reason: "customer asked, trying again" });
    // Before, sent with the retry's words: Stripe refused the key's other parameters (idempotency_error), read as a
    // refusal: the worker's share went back and the refund failed, though the card was refunded.
    assert.equal(retried.refundId, sent.refundId);
    assert.equal(retried.tip!.refunded!.amountMinor, 400n);
    assert.equal(await h.balance(worker), 115117n - share, "the worker's share stays taken back");
    assert.ok(await h.trialBalanced());
  });

  test("a refund whose sender died holding its claim to send it: a retry is refused while the claim holds, and finishes the refund once it lapsed", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    const key = `refund-${randomUUID()}`;
    const { refundId, share } = await refundStopped(tip.tipId, key, "debited");
    await h.t.db.pool.query("UPDATE payment.card_refunds SET sending_until = now() + interval '1 hour' WHERE refund_id = $1", [refundId]);
    const sent = () => h.stripe.requests().filter((q) => q.path === "/v1/refunds" && q.idempotencyKey === `ttip-refund-${refundId}`).length;
    const ask = { tipId: tip.tipId, idempotencyKey: key, amount: USD(400), reason: "customer asked" };
    await assert.rejects(adminClient.refundTip(ask), (e: ConnectError) => e.code === Code.Aborted && /another request is sending this refund/.test(e.rawMessage));
    assert.equal(sent(), 0, "not sent beside the claim's holder");
    await h.t.db.pool.query("UPDATE payment.card_refunds SET sending_until = now() - interval '1 second' WHERE refund_id = $1", [refundId]);
    const done = await adminClient.refundTip(ask);
    assert.match(done.refundId, /^re_/);
    assert.equal(sent(), 1);
    assert.equal(done.tip!.refunded!.amountMinor, 400n);
    assert.equal(await h.balance(worker), 115117n - share);
    const { rows } = await h.t.db.pool.query("SELECT status, sending_until FROM payment.card_refunds WHERE refund_id = $1", [refundId]);
    assert.deepEqual(rows[0], { status: "sent", sending_until: null });
    assert.ok(await h.trialBalanced());
  });

  test("refunds left debited by a crash before Stripe's answer are finished by a reconciliation pass once unclaimed, under their key: each card refunded once", async () => {
    const charge = async (tipId: string) => (await (await fetch(`${h.stripe.url}/v1/charges/${(await row(tipId)).provider_charge_id}`,
      { headers: { authorization: `Bearer ${h.stripe.secretKey}` } })).json()) as { amount_refunded: number };
    const sends = (refundId: string) => h.stripe.requests().filter((q) => q.path === "/v1/refunds" && q.idempotencyKey === `ttip-refund-${refundId}`).length;
    const refund = async (refundId: string) => (await h.t.db.pool.query("SELECT status, provider_refund_id, sending_until FROM payment.card_refunds WHERE refund_id = $1", [refundId])).rows[0];
    const [never, answerLost, held, young] = await Promise.all([0, 1, 2, 3].map(async () => {
      const worker = randomUUID();
      const { tip } = await paid(worker);
      return { worker, tip, ...(await refundStopped(tip.tipId, `refund-${randomUUID()}`, "debited")) };
    }));
    // Begun an hour ago: one never sent; one sent, Stripe's answer lost and its sender's claim lapsed; one whose sender holds it still.
    await h.t.db.pool.query("UPDATE payment.card_refunds SET created_at = now() - interval '1 hour' WHERE refund_id = ANY($1)", [[never, answerLost, held].map((r) => r.refundId)]);
    await h.t.db.pool.query("UPDATE payment.card_refunds SET sending_until = now() - interval '1 second' WHERE refund_id = $1", [answerLost.refundId]);
    await h.t.db.pool.query("UPDATE payment.card_refunds SET sending_until = now() + interval '1 hour' WHERE refund_id = $1", [held.refundId]);
    const sent = await new StripeCardProvider(h.config.cards!.stripe!).refund({
      paymentId: answerLost.tip.providerPaymentId, amountMinor: 400n, currency: "USD", idempotencyKey: `ttip-refund-${answerLost.refundId}`, reason: "customer asked" });

    await internal.reconcilePending({ limit: 100 });
    // Before, no pass looked at them: the worker's share taken back, the customer never refunded.
    const finished = await refund(never.refundId);
    assert.equal(finished.status, "sent");
    assert.match(finished.provider_refund_id, /^re_/);
    assert.equal((await charge(never.tip.tipId)).amount_refunded, 400);
    assert.deepEqual(await refund(answerLost.refundId), { status: "sent", provider_refund_id: sent.refundId, sending_until: null }, "Stripe answered the refund it made");
    assert.equal((await charge(answerLost.tip.tipId)).amount_refunded, 400, "refunded once");
    assert.equal(sends(held.refundId), 0, "not sent beside the sender holding it");
    assert.equal(sends(young.refundId), 0, "not sent beside the request that began it a moment ago");
    assert.equal((await refund(young.refundId)).status, "debited");
    for (const r of [never, answerLost, held]) assert.equal(await h.balance(r.worker), 115117n - r.share, "the worker's share taken back once");
    // Again: nothing sent twice.
    await internal.reconcilePending({ limit: 100 });
    assert.deepEqual([sends(never.refundId), sends(answerLost.refundId)], [1, 2]);
    assert.ok(await h.trialBalanced());
  });

  test("refunds left new by a lost wallet answer are finished by a reconciliation pass once a claim's time old: the share taken once, the card refunded, the admin's action audited", async () => {
    const charge = async (tipId: string) => (await (await fetch(`${h.stripe.url}/v1/charges/${(await row(tipId)).provider_charge_id}`,
      { headers: { authorization: `Bearer ${h.stripe.secretKey}` } })).json()) as { amount_refunded: number };
    const refund = async (refundId: string) => (await h.t.db.pool.query("SELECT status FROM payment.card_refunds WHERE refund_id = $1", [refundId])).rows[0].status;
    const [taken, notTaken, young, old] = await Promise.all([0, 1, 2, 3].map(async () => {
      const worker = randomUUID();
      const { tip } = await paid(worker);
      return { worker, tip, ...(await refundStopped(tip.tipId, `refund-${randomUUID()}`, "new")) };
    }));
    // One whose wallet post never arrived: the share still the worker's.
    await h.t.db.pool.query("DELETE FROM payment.card_refunds WHERE refund_id = $1", [notTaken.refundId]);
    const late = await paid(notTaken.worker);
    const notTakenId = randomUUID();
    await h.t.db.pool.query(
      `INSERT INTO payment.card_refunds (refund_id, tip_id, idempotency_key, amount_minor, wallet_minor, status, reason, requested_by)
       VALUES ($1, $2, $3, 400, $4, 'new', 'customer asked', 'admin')`, [notTakenId, late.tip.tipId, `refund-${randomUUID()}`, notTaken.share]);
    await h.t.db.pool.query("UPDATE payment.card_refunds SET created_at = now() - interval '1 hour' WHERE refund_id = ANY($1)", [[taken.refundId, notTakenId]]);
    // Left two days: support may have refunded the card another way since; an admin's retry finishes it.
    await h.t.db.pool.query("UPDATE payment.card_refunds SET created_at = now() - interval '2 days' WHERE refund_id = $1", [old.refundId]);

    await internal.reconcilePending({ limit: 100 });
    // Before, no pass looked at them: the worker's share taken, the customer never refunded, every other refund refused.
    assert.deepEqual([await refund(taken.refundId), await refund(notTakenId), await refund(young.refundId), await refund(old.refundId)], ["sent", "sent", "new", "new"]);
    assert.equal((await charge(taken.tip.tipId)).amount_refunded, 400);
    assert.equal((await charge(late.tip.tipId)).amount_refunded, 400);
    assert.equal(await h.balance(taken.worker), 115117n - taken.share, "the share the wallet took, taken once");
    assert.equal(await h.balance(notTaken.worker), 2n * 115117n - taken.share - notTaken.share, "the share never taken, taken now");
    assert.equal((await status(taken.tip.tipId)).refunded!.amountMinor, 400n);
    const { rows: audited } = await h.t.db.pool.query(
      "SELECT 1 FROM payment.outbox WHERE subject = 'ttip.payment.admin_action' AND position($1 in encode(payload, 'escape')) > 0", [`tip:${taken.tip.tipId}`]);
    assert.equal(audited.length, 1, "the admin's refund audited once");
    await internal.reconcilePending({ limit: 100 });
    assert.equal((await charge(taken.tip.tipId)).amount_refunded, 400, "not refunded twice");
    assert.ok(await h.trialBalanced());
  });

  test("a refund whose send outlived its claim, answered after another sender was refused and gave the worker's share back, stays failed: support is alerted, the request told", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    const key = `refund-${randomUUID()}`;
    const { refundId, share } = await refundStopped(tip.tipId, key, "debited");
    // Stripe makes the refund; its answer waits on the way back.
    const proxy = await startHoldingProxy(h.stripe.url, (q) => q.method === "POST" && q.path === "/v1/refunds", { answers: true });
    const cardConfig = h.config.cards!;
    const stripe = cardConfig.stripe!;
    cardConfig.stripe = { ...stripe, apiBase: proxy.url, timeoutMs: 60_000 };
    let outcome: unknown;
    try {
      const sending = adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: key, amount: USD(400), reason: "customer asked" }).then((r) => r, (e: unknown) => e);
      await eventually(async () => proxy.held() === 1, "Stripe's answer held");
      // Meanwhile its claim lapsed, another sender took it, was refused, and gave the share back (its statements' effects).
      const tipRow = (await row(tip.tipId)) as CardTipRow;
      const portion = { chargedMinor: 400n, shareMinor: (tipRow.worker_share_minor * 400n) / 1000n, walletMinor: share };
      await new CardLedger(new Ledger(h.t.ctx)).restore(`card-refund-undo:${refundId}`, splitOf(tipRow), portion, "recipient", "refused");
      await h.t.db.pool.query("UPDATE payment.card_refunds SET status = 'failed', failure = 'refused', sending_until = NULL WHERE refund_id = $1", [refundId]);
      await h.t.db.pool.query("UPDATE payment.tips SET refunded_minor = 0, reversed_wallet_minor = 0, card_state = 'none' WHERE tip_id = $1", [tip.tipId]);
      proxy.releaseOldest();
      outcome = await sending;
    } finally {
      cardConfig.stripe = stripe;
      await proxy.close();
    }
    // Before, it was marked sent over the refusal: a refund shown done whose share the worker had back, and no one told.
    assert.ok(outcome instanceof ConnectError && outcome.code === Code.FailedPrecondition && /support is alerted/.test(outcome.rawMessage), String(outcome));
    const { rows: [r] } = await h.t.db.pool.query("SELECT status, provider_refund_id FROM payment.card_refunds WHERE refund_id = $1", [refundId]);
    assert.equal(r.status, "failed");
    assert.match(r.provider_refund_id, /^re_/, "Stripe's refund recorded, for balance reconciliation to match");
    // (Stripe's own word of the refund, flagged as one made outside TTIP when it comes after the refusal, is another alert.)
    const { rows: alerts } = await h.t.db.pool.query(
      "SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1 AND reason = 'CALLBACK_MISMATCH' AND detail LIKE '%after the refund was marked failed%'", [tip.tipId]);
    assert.equal(alerts.length, 1);
    assert.equal(await h.balance(worker), 115117n, "the share is the worker's until support takes it back");
    assert.ok(await h.trialBalanced());
  });

  test("a refund whose key in the wallet holds another entry is refused saying so, not UNAVAILABLE to retry: nothing is sent to the card, the worker is not debited again", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    const key = `refund-${randomUUID()}`;
    const refundId = randomUUID();
    const share = (115117n * 400n) / 1000n;
    await h.t.db.pool.query(
      `INSERT INTO payment.card_refunds (refund_id, tip_id, idempotency_key, amount_minor, wallet_minor, status, reason, requested_by)
       VALUES ($1, $2, $3, 400, $4, 'new', 'customer asked', 'admin')`, [refundId, tip.tipId, key, share]);
    const tipRow = (await row(tip.tipId)) as CardTipRow;
    // Another entry under the refund's key (a reversal of 300, not 400): what no retry can get past.
    const other = { chargedMinor: 300n, shareMinor: (tipRow.worker_share_minor * 300n) / 1000n, walletMinor: (115117n * 300n) / 1000n };
    await new CardLedger(new Ledger(h.t.ctx)).reverse(`card-refund:${refundId}`, splitOf(tipRow), other, { description: "another entry" });
    const refunds = h.stripe.requests().filter((q) => q.path === "/v1/refunds").length;
    await assert.rejects(adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: key, amount: USD(400), reason: "customer asked" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && e.rawMessage.includes(`another entry under this refund's key (card-refund:${refundId})`));
    assert.equal(h.stripe.requests().filter((q) => q.path === "/v1/refunds").length, refunds, "Stripe was not asked");
    assert.equal(await h.balance(worker), 115117n - other.walletMinor, "debited by the one entry only");
    assert.equal((await h.t.db.pool.query("SELECT status FROM payment.card_refunds WHERE refund_id = $1", [refundId])).rows[0].status, "new");
  });

  test("a held tip's approval losing to a concurrent rejection (which closed the approval's key first) is refused saying the rejection decided; nothing is paid", async () => {
    const worker = randomUUID();
    const held = await paid(worker, `pm_card_gb_${Date.now()}_3`, USD(1000), "KE");
    assert.equal(held.tip.status, TipStatus.HELD_FOR_REVIEW);
    // Where a concurrent rejection is when the approval reaches wallet: the approval's key closed, the tip not yet marked.
    await new CardLedger(new Ledger(h.t.ctx)).closeApproval(splitOf((await row(held.tip.tipId)) as CardTipRow));
    await assert.rejects(adminClient.reviewTip({ tipId: held.tip.tipId, approve: true, note: "tourist, fine" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /^tip_id: a rejection of this tip came first .*nothing was paid to the worker/.test(e.rawMessage));
    assert.equal(await h.balance(worker), 0n, "nothing paid");
    assert.equal((await status(held.tip.tipId)).status, TipStatus.HELD_FOR_REVIEW);
    assert.equal((await adminClient.reviewTip({ tipId: held.tip.tipId, approve: false, note: "stolen card" })).tip!.status, TipStatus.FAILED);
    assert.ok(await h.trialBalanced());
    // Its end told, once (before, nothing: analytics never counted the card tip's attempt, partners never heard it failed).
    const { rows } = await h.t.db.pool.query("SELECT payload FROM payment.outbox WHERE subject = 'ttip.payment.tip_failed' AND position($1 in encode(payload, 'escape')) > 0", [held.tip.tipId]);
    assert.deepEqual(rows.map((r) => fromBinary(TipFailedSchema, r.payload).resultCode), ["review_rejected"]);
    // One told failed before it was held (expired, then paid late: replaced_failure_at) is not told again.
    const late = await paid(worker, `pm_card_gb_${Date.now()}_4`, USD(1000), "KE");
    await h.t.db.pool.query("UPDATE payment.tips SET replaced_failure_at = now() - interval '1 hour', replaced_failure_code = 'expired' WHERE tip_id = $1", [late.tip.tipId]);
    await adminClient.reviewTip({ tipId: late.tip.tipId, approve: false, note: "stolen card" });
    const again = await h.t.db.pool.query("SELECT 1 FROM payment.outbox WHERE subject = 'ttip.payment.tip_failed' AND position($1 in encode(payload, 'escape')) > 0", [late.tip.tipId]);
    assert.equal(again.rowCount, 0);
  });

  test("a refund the worker's balance cannot cover is refused and changes nothing", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    await h.withdraw(worker, 115000n);
    const refunds = h.stripe.requests().filter((q) => q.path === "/v1/refunds").length;
    await assert.rejects(adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "customer asked" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /balance/.test(e.message));
    assert.equal(h.stripe.requests().filter((q) => q.path === "/v1/refunds").length, refunds, "Stripe was not asked");
    assert.equal(await h.balance(worker), 117n);
  });

  test("a dispute sets the amount aside; lost, the credit is reversed and the balance goes negative, paid back by later tips", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    await h.withdraw(worker, 115000n); // the worker already has most of it
    const du = await h.stripe.openDispute(tip.providerPaymentId);
    await until(tip.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    assert.equal(await h.balance(worker), 0n, "the 117 left is set aside");
    const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.CARD_DISPUTE });
    assert.ok(alerts.some((a) => a.tipId === tip.tipId));
    await h.stripe.closeDispute(du, "lost");
    await until(tip.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    assert.equal(await h.ledgerBalance(worker), -115000n, "the worker owes what was withdrawn");
    assert.equal(await h.balance(worker), 0n, "nothing available; the debt shows in the ledger balance");
    // Nothing else may deepen it: a withdrawal is refused.
    await assert.rejects(h.withdraw(worker, 100n));
    // The next tip pays the debt back first.
    await paid(worker);
    assert.equal(await h.ledgerBalance(worker), 115117n - 115000n);
    assert.ok(await h.trialBalanced());
  });

  test("a refund Stripe refuses because a dispute opened while it was on its way gives the worker's share back, and that dispute, lost, takes it: the share taken back once", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    // The refund took the worker's share and waits on its way to Stripe; Stripe has not seen it.
    const proxy = await startHoldingProxy(h.stripe.url, (q) => q.method === "POST" && q.path === "/v1/refunds");
    const cardConfig = h.config.cards!;
    const stripe = cardConfig.stripe!;
    cardConfig.stripe = { ...stripe, apiBase: proxy.url, timeoutMs: 60_000 };
    let du: string;
    try {
      const refund = adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "customer asked" }).then((r) => r, (e: unknown) => e);
      await eventually(async () => proxy.held() === 1, "the refund on its way to Stripe");
      assert.equal(await h.balance(worker), 0n, "the worker's share taken for the refund");
      du = await h.stripe.openDispute(tip.providerPaymentId);
      await until(tip.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
      proxy.releaseOldest();
      const refused = await refund;
      assert.ok(refused instanceof ConnectError && refused.code === Code.FailedPrecondition && /disputed/.test(refused.rawMessage), String(refused));
    } finally {
      cardConfig.stripe = stripe;
      await proxy.close();
    }
    assert.equal(await h.balance(worker), 115117n, "the share given back with the refund refused");
    await h.stripe.closeDispute(du, "lost");
    await until(tip.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    // Before, the dispute had counted the share as the refund's and took nothing: the worker kept money charged back.
    assert.equal(await h.ledgerBalance(worker), 0n, "the share taken back once, by the dispute");
    const figures = await announced(tip.tipId);
    assert.deepEqual(figures.kinds, [TipReversalKind.REFUND, TipReversalKind.REFUND_REFUSED, TipReversalKind.CHARGEBACK]);
    assert.deepEqual(figures.reversed, figures.paid[0], "the tip's figures taken back once, by the chargeback");
    assert.ok(await h.trialBalanced());
  });

  test("a dispute whose set-aside amount the worker withdrew before it moved (a crash, then a payout) sets aside what is left; lost, it still takes the share back", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    h.stripe.pauseWebhooks(true);
    let du: string;
    try {
      du = await h.stripe.openDispute(tip.providerPaymentId);
      // Where a delivery stopped: the dispute's row chose to set aside all the worker had, then its process died before the move.
      await h.t.db.pool.query(
        `INSERT INTO payment.card_disputes (dispute_id, provider, tip_id, amount_minor, currency, wallet_minor, held_wallet_minor, reason, status)
         VALUES ($1, 'stripe', $2, 1000, 'USD', 115117, 115117, 'fraudulent', 'open')`, [du, tip.tipId]);
      await h.withdraw(worker, 115000n);
      // The simulator delivers 10 ms after the event, on this process's timers: due before this one, it finds webhooks paused.
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      h.stripe.pauseWebhooks(false);
    }
    const opened = h.stripe.events().find((e) => e.type === "charge.dispute.created" && e.body.includes(du))!;
    // Before, every delivery was refused (the wallet cannot set aside 115117 of 117): never disputed, never charged back.
    assert.equal(await h.stripe.redeliver(opened.id), 200);
    assert.equal((await status(tip.tipId)).cardState, CardTipState.DISPUTED);
    assert.equal((await h.t.db.pool.query("SELECT held_wallet_minor FROM payment.card_disputes WHERE dispute_id = $1", [du])).rows[0].held_wallet_minor, 117n);
    assert.equal(await h.balance(worker), 0n, "the 117 left is set aside");
    await h.stripe.closeDispute(du, "lost");
    await until(tip.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    assert.equal(await h.ledgerBalance(worker), -115000n, "the worker owes what was withdrawn");
    assert.ok(await h.trialBalanced());
  });

  test("a dispute lost on a tip held for review takes the money back out of suspense, never from the worker, who never had it; an approval after it pays nothing", async () => {
    const worker = randomUUID();
    const held = await paid(worker, `pm_card_gb_${Date.now()}_4`, USD(1000), "KE");
    assert.equal(held.tip.status, TipStatus.HELD_FOR_REVIEW);
    const du = await h.stripe.openDispute(held.tip.providerPaymentId);
    await until(held.tip.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    await h.stripe.closeDispute(du, "lost");
    await until(held.tip.tipId, "dispute lost", (t) => t.cardState === CardTipState.DISPUTE_LOST);
    // Before, the worker's part was taken from the wallet (allowed below zero): a debt for a tip never received.
    assert.equal(await h.ledgerBalance(worker), 0n, "the worker owes nothing");
    await assert.rejects(adminClient.reviewTip({ tipId: held.tip.tipId, approve: true, note: "tourist, fine" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /charged back/.test(e.rawMessage));
    assert.equal(await h.ledgerBalance(worker), 0n, "the charged-back money is not paid out of suspense");
    assert.equal((await adminClient.reviewTip({ tipId: held.tip.tipId, approve: false, note: "charged back" })).tip!.status, TipStatus.FAILED);
    assert.ok(await h.trialBalanced());
    // Never announced paid, so nothing to take back from the figures.
    assert.deepEqual(await announced(held.tip.tipId), { paid: [], kinds: [], reversed: [0n, 0n, 0n] });
  });

  test("a tip held for review cannot be approved while its chargeback is open: nothing paid out of suspense; once won, it can", async () => {
    const worker = randomUUID();
    const held = await paid(worker, `pm_card_gb_${Date.now()}_6`, USD(1000), "KE");
    assert.equal(held.tip.status, TipStatus.HELD_FOR_REVIEW);
    const du = await h.stripe.openDispute(held.tip.providerPaymentId);
    await until(held.tip.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    await assert.rejects(adminClient.reviewTip({ tipId: held.tip.tipId, approve: true, note: "tourist, fine" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /chargeback is open/.test(e.rawMessage));
    assert.equal(await h.ledgerBalance(worker), 0n, "nothing released to the worker under dispute");
    await h.stripe.closeDispute(du, "won");
    await until(held.tip.tipId, "dispute won", (t) => t.cardState === CardTipState.DISPUTE_WON);
    assert.equal((await adminClient.reviewTip({ tipId: held.tip.tipId, approve: true, note: "won" })).tip!.status, TipStatus.SUCCEEDED);
    assert.equal(await h.balance(worker), 115117n);
    assert.ok(await h.trialBalanced());
  });

  test("an approval whose tip was loaded before its chargeback opened is refused: the disputes are read as they are when the wallet is asked", async () => {
    const worker = randomUUID();
    const held = await paid(worker, `pm_card_gb_${Date.now()}_stale`, USD(1000), "KE");
    const loaded = (await row(held.tip.tipId)) as CardTipRow;
    await h.stripe.openDispute(held.tip.providerPaymentId);
    await until(held.tip.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    const deps = { ctx: h.t.ctx, ledger: new Ledger(h.t.ctx), cards: { ledger: new CardLedger(new Ledger(h.t.ctx)) }, changes: { announce: () => undefined } } as unknown as Deps;
    // Before, the loaded row's card_state ('none') let it through: the worker paid out of suspense with the chargeback open, nothing set aside.
    await assert.rejects(reviewCardTip(deps, loaded, true, randomUUID(), "tourist, fine", async () => undefined),
      (e: Error) => e instanceof InvalidStateError && /chargeback is open/.test(e.message));
    assert.equal(await h.ledgerBalance(worker), 0n);
  });

  test("a dispute on a tip held for review and approved sets the worker's amount aside as for any paid tip; won, it goes back", async () => {
    const worker = randomUUID();
    const held = await paid(worker, `pm_card_gb_${Date.now()}_5`, USD(1000), "KE");
    assert.equal((await adminClient.reviewTip({ tipId: held.tip.tipId, approve: true, note: "tourist, fine" })).tip!.status, TipStatus.SUCCEEDED);
    assert.equal(await h.balance(worker), 115117n);
    const du = await h.stripe.openDispute(held.tip.providerPaymentId);
    await until(held.tip.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    // Before, nothing was set aside (its credit had gone to suspense): the worker could withdraw money under dispute.
    assert.equal(await h.balance(worker), 0n, "set aside");
    await h.stripe.closeDispute(du, "won");
    await until(held.tip.tipId, "dispute won", (t) => t.cardState === CardTipState.DISPUTE_WON);
    assert.equal(await h.balance(worker), 115117n);
    assert.ok(await h.trialBalanced());
  });

  test("a dispute won gives the set-aside amount back", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    const du = await h.stripe.openDispute(tip.providerPaymentId);
    await until(tip.tipId, "disputed", (t) => t.cardState === CardTipState.DISPUTED);
    assert.equal(await h.balance(worker), 0n);
    await assert.rejects(adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "while disputed" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition);
    await h.stripe.closeDispute(du, "won");
    await until(tip.tipId, "dispute won", (t) => t.cardState === CardTipState.DISPUTE_WON);
    assert.equal(await h.balance(worker), 115117n);
  });

  test("card rules: a card's 24-hour limit counts what it was charged in KES: KES 100,000 then KES 51,000 is over KES 150,000, and the second is cancelled", async () => {
    const card = `pm_card_visa_limit_${Date.now()}`;
    const first = (await paid(randomUUID(), card, KES(100_000))).tip;
    assert.equal(first.status, TipStatus.SUCCEEDED);
    // Before, the limit summed what workers received, the fees taken off: under KES 150,000 here.
    assert.ok(first.workerReceives!.amountMinor + (first.workerReceives!.amountMinor * 51n) / 100n < 150_000_00n);
    const { created, tip } = await paid(randomUUID(), card, KES(51_000));
    assert.deepEqual([tip.status, tip.resultCode], [TipStatus.FAILED, "card_limit"]);
    await eventually(async () => h.stripe.paymentIntent(created.tip!.providerPaymentId)!.status === "canceled", "authorisation cancelled");
    assert.equal((await row(tip.tipId)).charged_kes_minor, 5_100_000n, "what the card was to be charged, in KES");
  });

  test("card rules: a card tipping too often is cancelled, not charged; a foreign card is held for review", async () => {
    const worker = randomUUID();
    const card = `pm_card_visa_${Date.now()}`;
    const before = await scrape();
    for (let i = 0; i < 3; i++) assert.equal((await paid(worker, card, USD(200))).tip.status, TipStatus.SUCCEEDED);
    const { created, tip } = await paid(worker, card, USD(200));
    assert.equal(tip.status, TipStatus.FAILED);
    assert.equal(tip.resultCode, "card_velocity");
    const failed = { status: "failed", method: "card" };
    assert.equal((await scrape())("ttip_payment_tips_total", failed) - before("ttip_payment_tips_total", failed), 1, "the cancelled tip counted failed on /metrics");
    assert.match(tip.resultMessage, /nothing was charged/i);
    await eventually(async () => h.stripe.paymentIntent(created.tip!.providerPaymentId)!.status === "canceled", "authorisation cancelled");
    const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.CARD_VELOCITY });
    assert.ok(alerts.some((a) => a.tipId === tip.tipId));

    const other = randomUUID();
    const held = await paid(other, `pm_card_gb_${Date.now()}`, USD(1000), "KE");
    assert.equal(held.tip.status, TipStatus.HELD_FOR_REVIEW);
    assert.equal(await h.balance(other), 0n);
    const approved = await adminClient.reviewTip({ tipId: held.tip.tipId, approve: true, note: "tourist, fine" });
    assert.equal(approved.tip!.status, TipStatus.SUCCEEDED);
    assert.equal(await h.balance(other), 115117n);
    assert.equal((await h.t.db.pool.query("SELECT count(*) FROM wallet.entries WHERE cause_ref = $1", [held.tip.providerPaymentId])).rows[0].count, 2n, "into suspense, then out to the worker");
  });

  test("a held tip's rejection after an approval whose answer was lost is refused (the worker has the money), and a rejection closes the approval's key", async () => {
    const worker = randomUUID();
    const held = await paid(worker, `pm_card_gb_${Date.now()}`, USD(1000), "KE");
    assert.equal(held.tip.status, TipStatus.HELD_FOR_REVIEW);
    const cards = new CardLedger(new Ledger(h.t.ctx));
    // What an approval leaves when wallet posts its entry after the call's deadline: the money moved, the tip still held.
    await cards.releaseFromSuspense(splitOf((await row(held.tip.tipId)) as CardTipRow));
    assert.equal(await h.balance(worker), 115117n);
    await assert.rejects(adminClient.reviewTip({ tipId: held.tip.tipId, approve: false, note: "changed my mind" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /approval was posted/.test(e.message));
    assert.equal((await status(held.tip.tipId)).status, TipStatus.HELD_FOR_REVIEW);
    const approved = await adminClient.reviewTip({ tipId: held.tip.tipId, approve: true, note: "approved again" });
    assert.equal(approved.tip!.status, TipStatus.SUCCEEDED);
    assert.equal(await h.balance(worker), 115117n, "paid once");

    const other = randomUUID();
    const rejected = await paid(other, `pm_card_gb_${Date.now()}_2`, USD(1000), "KE");
    const out = await adminClient.reviewTip({ tipId: rejected.tip.tipId, approve: false, note: "stolen card" });
    assert.equal(out.tip!.status, TipStatus.FAILED);
    // An approval still on its way to wallet can no longer post.
    await assert.rejects(cards.releaseFromSuspense(splitOf((await row(rejected.tip.tipId)) as CardTipRow)), (e: ConnectError) => e.code === Code.AlreadyExists);
    assert.equal(await h.balance(other), 0n);
    assert.ok(await h.trialBalanced());

    // The customer was told their payment would be refunded: support refunds it, out of suspense. Before, refused
    // ("not a paid, credited card tip"), and the charge stayed in suspense.
    const refunded = await adminClient.refundTip({ tipId: rejected.tip.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "rejected: stolen card" });
    assert.equal(refunded.tip!.refunded!.amountMinor, 1000n, "the whole charge");
    const stored = await row(rejected.tip.tipId);
    const charge = (await (await fetch(`${h.stripe.url}/v1/charges/${stored.provider_charge_id}`, { headers: { authorization: `Bearer ${h.stripe.secretKey}` } })).json()) as { amount_refunded: number };
    assert.equal(charge.amount_refunded, 1000, "the card refunded at Stripe");
    const { rows: legs } = await h.t.db.pool.query<{ kind: number; amount_minor: bigint }>(
      `SELECT a.kind, p.amount_minor FROM payment.card_refunds r JOIN wallet.entries e ON e.idempotency_key = 'card-refund:' || r.refund_id
         JOIN wallet.postings p USING (entry_id) JOIN wallet.accounts a USING (account_id) WHERE r.tip_id = $1`, [rejected.tip.tipId]);
    assert.deepEqual(legs.filter((l) => l.kind === AccountKind.SUSPENSE).map((l) => l.amount_minor < 0n ? -l.amount_minor : l.amount_minor), [stored.worker_receives_minor], "the worker's part taken out of suspense");
    assert.equal(legs.filter((l) => l.kind === AccountKind.WORKER_WALLET).length, 0, "nothing from a wallet");
    assert.equal(await h.balance(other), 0n, "the worker was never credited");
    assert.ok(await h.trialBalanced());
  });

  test("bad card input is refused naming the field, and changes nothing", async () => {
    const worker = randomUUID();
    await assert.rejects(cardTip(worker, USD(200_000)), (e: ConnectError) => e.code === Code.InvalidArgument && /amount: a card tip may be at most KES 100000/.test(e.message));
    await assert.rejects(cardTip(worker, { currency: "JPY", amountMinor: 1000n }), (e: ConnectError) => e.code === Code.InvalidArgument && /amount/.test(e.message));
    // Under Stripe's least charge: before, stored, refused by Stripe, failed as "try again", and failed again.
    for (const [least, under] of [["USD 0.50", USD(45)], ["GBP 0.50", { currency: "GBP", amountMinor: 45n }], ["KES 100", { currency: "KES", amountMinor: 99_00n }]] as const) {
      await assert.rejects(cardTip(worker, under), (e: ConnectError) => e.code === Code.InvalidArgument && e.message.includes(`amount: a card tip is at least ${least}`));
    }
    const { rows } = await h.t.db.pool.query("SELECT count(*) FROM payment.tips WHERE worker_id = $1", [worker]);
    assert.equal(Number(rows[0].count), 0);
    assert.equal((await cardTip(worker, USD(50))).tip!.status, TipStatus.PENDING, "the least is taken");
  });

  test("balance reconciliation matches Stripe's charges, refunds, disputes and payouts to ours and records Stripe's fees once", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    // A charge made outside TTIP (someone else's integration on the same account).
    const stranger = await fetch(`${h.stripe.url}/v1/payment_intents`, {
      method: "POST", headers: { authorization: `Bearer ${h.stripe.secretKey}` },
      body: new URLSearchParams({ amount: "700", currency: "usd", confirm: "true", payment_method: "pm_card_visa" }),
    });
    assert.equal(stranger.status, 200);
    const first = await internal.reconcileCardBalance({ limit: 1000 });
    assert.ok(first.matched >= 10, `matched ${first.matched}`);
    assert.equal(first.unmatched, 1, "the stranger's charge");
    // Every fee of ours posted (refunds, disputes and payouts carry none here), however many refunds the file made.
    assert.ok(first.feesRecorded > 0);
    const { rows: [fees] } = await h.t.db.pool.query(
      "SELECT count(*)::int AS unposted FROM payment.card_balance_transactions WHERE provider = 'stripe' AND matched AND fee_minor <> 0 AND fee_entry_key IS NULL");
    assert.equal(fees.unposted, 0);
    const chargeId = (await row(tip.tipId)).provider_charge_id;
    const { rows: [txn] } = await h.t.db.pool.query("SELECT * FROM payment.card_balance_transactions WHERE source_id = $1", [chargeId]);
    assert.equal(txn.fee_minor, 59n, "2.9% of USD 10.00 plus 30 cents");
    const { rows: postings } = await h.t.db.pool.query(
      "SELECT p.amount_minor, p.currency FROM wallet.entries e JOIN wallet.postings p USING (entry_id) WHERE e.idempotency_key = $1 ORDER BY p.amount_minor",
      [txn.fee_entry_key],
    );
    assert.deepEqual(postings.map((p) => [p.amount_minor, p.currency.trim()]), [[-59n, "USD"], [59n, "USD"]]);
    const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.UNKNOWN_CALLBACK });
    assert.ok(alerts.some((a) => /matches nothing TTIP recorded/.test(a.detail)));
    // A payout to the bank, then nothing new: a second pass records nothing twice.
    assert.match((await h.stripe.payout("usd"))!, /^po_/);
    const second = await internal.reconcileCardBalance({ limit: 1000 });
    assert.deepEqual([second.matched, second.feesRecorded, second.unmatched, second.payouts], [0, 0, 0, 1]);
    const third = await internal.reconcileCardBalance({ limit: 1000 });
    assert.deepEqual([third.matched, third.feesRecorded, third.unmatched, third.payouts], [0, 0, 0, 0]);
    assert.ok(await h.trialBalanced());
  });

  test("a card tip's PaymentIntent takes cards alone: no Link, wallet or pay-later method, which carries no card for the rules to check", async () => {
    const r = await cardTip(randomUUID(), USD(1000), { country: "" });
    const pi = h.stripe.paymentIntent(r.stripeClientSecret.split("_secret_")[0])!;
    assert.deepEqual([pi.payment_method_types, pi.automatic_payment_methods], [["card"], null]);
  });

  test("balance transactions are read in Stripe's order, not reordered by id within a second: a pass waiting on one would have moved its cursor past it", async () => {
    const stripeGet = async (query: string) => ((await (await fetch(`${h.stripe.url}/v1/balance_transactions?${query}`, { headers: { authorization: `Bearer ${h.stripe.secretKey}` } })).json()) as { data: { id: string }[] }).data;
    const [newest] = await stripeGet("limit=1");
    // Charges made at once, outside TTIP: their transactions share a second (Stripe's `created` is whole seconds).
    await Promise.all(Array.from({ length: 8 }, () => fetch(`${h.stripe.url}/v1/payment_intents`, {
      method: "POST", headers: { authorization: `Bearer ${h.stripe.secretKey}` },
      body: new URLSearchParams({ amount: "700", currency: "usd", confirm: "true", payment_method: "pm_card_visa" }),
    })));
    const read = await new StripeCardProvider(h.config.cards!.stripe!).balanceTransactions(newest.id, 100);
    assert.deepEqual(read.map((t) => t.id), (await stripeGet(`limit=100&ending_before=${newest.id}`)).map((t) => t.id).reverse(), "oldest first, as Stripe ordered them");
    assert.equal((await internal.reconcileCardBalance({ limit: 1000 })).unmatched, 8, "strangers, each flagged");
  });

  // After balance reconciliation's test: its refund made outside TTIP matches nothing of ours.
  test("a dispute's balance adjustment seen before its webhook waits for it, then is matched and its fee posted once: no stranger raised", async () => {
    const { tip } = await paid(randomUUID());
    await internal.reconcileCardBalance({ limit: 1000 });
    h.config.cards!.unmatchedGraceMs = 30 * 24 * 3600_000; // well past where this file's tests moved the services' clock
    h.stripe.pauseWebhooks(true);
    try {
      const disputeId = await h.stripe.openDispute(tip.providerPaymentId);
      const early = await internal.reconcileCardBalance({ limit: 1000 });
      // Before, it was recorded at once as matching nothing, for good: its fee never posted, a stranger raised.
      assert.deepEqual([early.matched, early.unmatched], [0, 0], "the adjustment waits for the dispute's webhook");
      h.stripe.pauseWebhooks(false);
      const opened = h.stripe.events().find((e) => e.type === "charge.dispute.created" && e.body.includes(disputeId))!;
      assert.equal(await h.stripe.redeliver(opened.id), 200);
      const later = await internal.reconcileCardBalance({ limit: 1000 });
      assert.deepEqual([later.matched, later.unmatched, later.feesRecorded], [1, 0, 1]);
      const { rows: [txn] } = await h.t.db.pool.query("SELECT matched, fee_entry_key FROM payment.card_balance_transactions WHERE source_id = $1", [disputeId]);
      assert.equal(txn.matched, true);
      assert.ok(txn.fee_entry_key, "the dispute fee posted");
      const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.UNKNOWN_CALLBACK });
      assert.ok(!alerts.some((a) => a.detail.includes(disputeId)), "no stranger raised");
    } finally {
      h.stripe.pauseWebhooks(false);
      h.config.cards!.unmatchedGraceMs = 0;
    }
  });

  test("a refund made outside TTIP is flagged once: Stripe's word of a later TTIP refund, which reports it again, raises nothing more", async () => {
    const worker = randomUUID();
    const { tip } = await paid(worker);
    const chargeRefunded = () => h.stripe.events().filter((e) => e.type === "charge.refunded" && e.body.includes(tip.providerPaymentId));
    const outside = async () => (await h.t.db.pool.query(
      "SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1 AND reason = 'CALLBACK_MISMATCH' ORDER BY created_at", [tip.tipId])).rows.map((r) => r.detail as string);
    // From Stripe's dashboard: USD 3.00.
    await new StripeCardProvider(h.config.cards!.stripe!).refund({
      paymentId: tip.providerPaymentId, amountMinor: 300n, currency: "USD", idempotencyKey: `dashboard-${randomUUID()}`, reason: "from the dashboard" });
    await eventually(async () => (await outside()).length === 1, "the outside refund flagged");
    // Then two refunds through TTIP; each of Stripe's words reports the 300 again (700, then 1000 refunded).
    await adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, amount: USD(400), reason: "customer asked" });
    await adminClient.refundTip({ tipId: tip.tipId, idempotencyKey: `refund-${randomUUID()}`, amount: USD(300), reason: "the rest" });
    await eventually(async () => chargeRefunded().length === 3 && chargeRefunded().every((e) => e.delivered), "Stripe's words of the three refunds answered");
    // Before, each of them flagged the outside refund again.
    const flagged = await outside();
    assert.equal(flagged.length, 1, flagged.join("\n"));
    assert.match(flagged[0], /: USD 3 refunded outside TTIP/);
    assert.equal(await h.balance(worker), 115117n - (115117n * 400n) / 1000n - (115117n * 300n) / 1000n, "the worker's share taken back for TTIP's refunds only");
  });

  // Near the end: the service's clock moved on by a cancel's grace.
  test("a rejected tip's refund that Stripe refuses puts the worker's part back in suspense, never in a wallet", async () => {
    const other = randomUUID();
    const rejected = await paid(other, `pm_card_gb_${Date.now()}_refused`, USD(1000), "KE");
    await adminClient.reviewTip({ tipId: rejected.tip.tipId, approve: false, note: "stolen card" });
    // USD 3 refunded at Stripe outside TTIP (its dashboard): the whole charge can no longer be refunded. (After the
    // balance reconciliation's test, which counts what it cannot match: this refund is one.)
    const outside = await fetch(`${h.stripe.url}/v1/refunds`, { method: "POST", headers: { authorization: `Bearer ${h.stripe.secretKey}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ payment_intent: rejected.tip.providerPaymentId, amount: "300" }) });
    assert.equal(outside.status, 200);
    await assert.rejects(adminClient.refundTip({ tipId: rejected.tip.tipId, idempotencyKey: `refund-${randomUUID()}`, reason: "rejected: stolen card" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /refused the refund/.test(e.rawMessage));
    // Before, the undo paid the worker's part into their wallet: a tip they never had, which they could withdraw.
    assert.equal(await h.balance(other), 0n);
    const { rows: legs } = await h.t.db.pool.query<{ kind: number; amount_minor: bigint }>(
      `SELECT a.kind, p.amount_minor FROM payment.card_refunds r JOIN wallet.entries e ON e.idempotency_key = 'card-refund-undo:' || r.refund_id
         JOIN wallet.postings p USING (entry_id) JOIN wallet.accounts a USING (account_id) WHERE r.tip_id = $1`, [rejected.tip.tipId]);
    const stored = await row(rejected.tip.tipId);
    assert.deepEqual(legs.filter((l) => l.kind === AccountKind.SUSPENSE).map((l) => l.amount_minor), [BigInt(stored.worker_receives_minor)], "back to suspense");
    assert.equal(legs.filter((l) => l.kind === AccountKind.WORKER_WALLET).length, 0, "nothing to a wallet");
    assert.ok(await h.trialBalanced());
  });

  test("a refused authorisation whose cancel never reached Stripe is cancelled by a reconciliation pass, once the request's grace is past: the card is not held until it lapses", async () => {
    const worker = randomUUID();
    const card = `pm_card_visa_${Date.now()}_refused`;
    for (let i = 0; i < 3; i++) await paid(worker, card, USD(200));
    // Every try of the cancel is lost on its way (a crash after the refusal committed looks the same to Stripe).
    const proxy = await startHoldingProxy(h.stripe.url, (q) => q.method === "POST" && q.path.endsWith("/cancel"));
    const cardConfig = h.config.cards!;
    const stripe = cardConfig.stripe!;
    cardConfig.stripe = { ...stripe, apiBase: proxy.url };
    let paymentId: string;
    let tipId: string;
    try {
      const r = await cardTip(worker, USD(200));
      [paymentId, tipId] = [r.tip!.providerPaymentId, r.tip!.tipId];
      assert.equal((await h.confirm(r.stripeClientSecret, card)).status, 200);
      const authorised = () => h.stripe.events().find((e) => e.type === "payment_intent.amount_capturable_updated" && e.body.includes(paymentId));
      await eventually(async () => {
        while (proxy.held()) proxy.dropOldest();
        return authorised()?.delivered;
      }, "the authorisation's webhook answered, its cancel lost");
    } finally {
      cardConfig.stripe = stripe;
      await proxy.close();
    }
    const refused = await status(tipId);
    assert.deepEqual([refused.status, refused.resultCode], [TipStatus.FAILED, "card_velocity"]);
    assert.equal(h.stripe.paymentIntent(paymentId)!.status, "requires_capture", "the customer's card still held");
    const cancels = () => h.stripe.requests().filter((q) => q.path === `/v1/payment_intents/${paymentId}/cancel`);
    await internal.reconcilePending({ limit: 100 });
    assert.equal(cancels().length, 0, "left to the request that refused it while its calls may still be under way");
    h.clock.advance(3 * stripe.timeoutMs + 1);
    // Before, the pass looked only at pending tips: the authorisation stayed until it lapsed.
    await internal.reconcilePending({ limit: 100 });
    assert.equal(h.stripe.paymentIntent(paymentId)!.status, "canceled");
    assert.equal(h.stripe.paymentIntent(paymentId)!.cancellation_reason, "fraudulent", "refused by the rules");
    assert.deepEqual(cancels().map((q) => q.idempotencyKey), [`ttip-tip-${tipId}-cancel`]);
    h.clock.advance(601_000);
    await internal.reconcilePending({ limit: 100 });
    assert.equal(cancels().length, 1, "cancelled once");
    const after = await status(tipId);
    assert.deepEqual([after.status, after.resultCode], [TipStatus.FAILED, "card_velocity"]);
    assert.equal(await h.balance(worker), 3n * (await status(tipId)).workerReceives!.amountMinor, "nothing charged for the refused tip");
  });

  // Last in the file: the service's clock moved on would put every later tip past its deadline.
  test("a card tip its customer never paid expires once the service's clock is past its deadline: a pass cancels it at Stripe and fails it, as the M-Pesa pass reads its deadline", async () => {
    const r = await cardTip(randomUUID());
    const tipId = r.tip!.tipId;
    const paymentId = (await row(tipId)).provider_payment_id as string;
    await internal.reconcilePending({ limit: 100 });
    assert.deepEqual([(await status(tipId)).status, (await row(tipId)).checks], [TipStatus.PENDING, 1], "checked before its deadline: still the customer's to pay");
    // Before, the pass read its deadline (and when the tip is due) from the database's and the process's own time.
    h.clock.advance(h.config.cards!.expireAfterMs + 1);
    // Stripe's word of the cancel waits, so that it is the pass that ends the tip.
    h.stripe.pauseWebhooks(true);
    try {
      await internal.reconcilePending({ limit: 100 });
    } finally {
      h.stripe.pauseWebhooks(false);
    }
    const t = await status(tipId);
    assert.deepEqual([t.status, t.resultCode], [TipStatus.EXPIRED, "expired"]);
    assert.equal(h.stripe.paymentIntent(paymentId)?.status, "canceled", "cancelled at Stripe, so it cannot be paid after");
    // A customer who walked away, not a fraud: Stripe was told "fraudulent" for every cancel.
    assert.equal(h.stripe.paymentIntent(paymentId)?.cancellation_reason, "abandoned");
  });
});
