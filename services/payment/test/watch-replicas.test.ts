// Two payment replicas on one database and one NATS server, as under an HPA: a
// customer's WatchTip on one replica hears a decision committed by the other at
// once, not at its next poll.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { createPeers, InProcessBus, JetStreamBus, Metrics, RedisCache, signingInterceptor, startService, type RunningService, type ServiceContext } from "@ttip/runtime";
import { captureLogger, createTestDatabase, testEnv, uniqueName, type TestDatabase } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { ChangeFeed } from "../src/changes.js";
import { createPaymentModule, type PaymentConfig } from "../src/index.js";
import { simulatedPaymentConfig, startDarajaSimulator, startStripeSimulator, type DarajaSimulator, type StripeSimulator } from "../src/testing.js";
import { KES, phone } from "./setup.js";

// Far longer than the wake-up may take, on a loaded machine too: a watcher that only polls cannot pass.
const WATCH_POLL_MS = 120_000;
const WOKEN_WITHIN_MS = WATCH_POLL_MS / 3;

describe("WatchTip across payment replicas (JetStream bus)", () => {
  let db: TestDatabase;
  let sim: DarajaSimulator;
  let stripe: StripeSimulator;
  const buses: JetStreamBus[] = [];
  const caches: RedisCache[] = [];
  const running: RunningService[] = [];
  let peers: ReturnType<typeof createPeers>;
  let replicaA: string;
  let replicaB: string;

  before(async () => {
    db = await createTestDatabase();
    // watchNewTip holds the push's callback until the watcher has streamed the pending tip.
    sim = await startDarajaSimulator();
    stripe = await startStripeSimulator({ webhookDelayMs: 10 });
    const config: PaymentConfig = simulatedPaymentConfig(sim, {
      watchPollMs: WATCH_POLL_MS,
      cards: {
        stripe: { secretKey: stripe.secretKey, publishableKey: stripe.publishableKey, webhookSecret: stripe.webhookSecret, apiBase: stripe.url, webhookToleranceS: 300, timeoutMs: 5000 },
        returnUrl: "http://127.0.0.1/tip/done",
        // No reconciliation pass during the test: only the webhook on B may decide a card tip.
        expireAfterMs: 60 * 60_000,
        checkAfterMs: 60 * 60_000,
        rules: { maxPerTipKesMinor: 100_000_00n, perCardPerHour: 3, perCardDailyKesMinor: 150_000_00n, countryMismatch: "off" },
      },
    });
    const { logger } = captureLogger("silent");
    const stream = uniqueName("W").toUpperCase();
    const subjectPrefix = uniqueName("ev");
    const urls = new Map<string, string>();
    peers = createPeers((name) => urls.get(name));
    /** One replica's own connections (bus, cache, metrics) to the shared servers. */
    const replicaContext = async (): Promise<ServiceContext> => {
      const bus = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream, subjectPrefix, logger, redeliveryDelayMs: 100 });
      const cache = new RedisCache(testEnv().redisUrl, `${subjectPrefix}:`);
      buses.push(bus);
      caches.push(cache);
      return { logger, pool: db.pool, bus, cache, metrics: new Metrics(), peers };
    };
    const ctxA = await replicaContext();
    const walletService = await startService(wallet, ctxA);
    urls.set("wallet", walletService.server.url);
    running.push(walletService);
    const a = await startService(createPaymentModule({ config: () => config }), ctxA);
    const b = await startService(createPaymentModule({ config: () => config }), await replicaContext());
    running.push(a, b);
    replicaA = a.server.url;
    replicaB = b.server.url;
    urls.set("payment", replicaA);
    // Daraja calls back replica B (the ingress may route it to any replica).
    config.callbackBaseUrl = replicaB;
    // So does Stripe's webhook.
    stripe.setWebhookUrl(`${replicaB}/stripe/webhook`);
  });
  after(async () => {
    for (const s of running.reverse()) await s.close();
    peers?.close();
    for (const b of buses) await b.close();
    for (const c of caches) await c.close();
    await sim?.close();
    await stripe?.close();
    await db?.drop();
  });

  const client = (baseUrl: string) => createClient(PaymentService, createGrpcTransport({ baseUrl, interceptors: [signingInterceptor()] }));
  /**
   * A tip created on `creator`, watched on `watcher` until decided (or the test's patience ends): the
   * statuses streamed, and how long the decision took to reach the watcher after its callback was let go.
   * The callback is held until the watcher has streamed the pending tip, so the decision always finds
   * it waiting, however slow the machine.
   */
  const watchNewTip = async (creator: string, watcher: string) => {
    const callbacks = sim.hold("stk");
    let released: Promise<void> | undefined;
    const seen: TipStatus[] = [];
    let releasedAt = 0;
    try {
      const { tip } = await client(creator).createTip({
        idempotencyKey: randomUUID(),
        recipient: { case: "workerId", value: randomUUID() },
        amount: KES(100),
        payment: { case: "mpesaPhone", value: phone() },
      });
      try {
        for await (const m of client(watcher).watchTip({ tipId: tip!.tipId }, { signal: AbortSignal.timeout(WOKEN_WITHIN_MS) })) {
          seen.push(m.tip!.status);
          if (!released) {
            releasedAt = Date.now();
            released = callbacks.release();
          }
        }
      } catch (err) {
        assert.fail(`the watcher saw ${JSON.stringify(seen.map((s) => TipStatus[s]))} and no decision within ${WOKEN_WITHIN_MS} ms (${(err as Error).message})`);
      }
      return { seen, tookMs: Date.now() - releasedAt, tipId: tip!.tipId };
    } finally {
      await (released ?? callbacks.release());
    }
  };

  test("a watcher on replica A sees SUCCEEDED decided by replica B's callback, well before A's poll", async () => {
    const { seen, tookMs } = await watchNewTip(replicaA, replicaA);
    assert.deepEqual(seen, [TipStatus.PENDING, TipStatus.SUCCEEDED], "A streamed the pending tip, then its success");
    assert.ok(tookMs < WATCH_POLL_MS / 3, `woken in ${tookMs} ms, not by the ${WATCH_POLL_MS} ms poll`);
    const tx = sim.transactions().find((t) => t.callbackUrl?.includes("/daraja/stk/"));
    assert.ok(tx?.callbackUrl?.startsWith(replicaB), "the callback was decided by replica B, not A");
  });

  test("a watcher on the replica that decides is woken in process, as before", async () => {
    const { seen, tookMs } = await watchNewTip(replicaA, replicaB);
    assert.deepEqual(seen, [TipStatus.PENDING, TipStatus.SUCCEEDED]);
    assert.ok(tookMs < WATCH_POLL_MS / 3, `woken in ${tookMs} ms, not by the ${WATCH_POLL_MS} ms poll`);
  });

  /** Confirms a card tip's PaymentIntent as Stripe.js does in the customer's browser. */
  const confirmCard = async (clientSecret: string, paymentMethod: string) => {
    const res = await fetch(`${stripe.url}/v1/payment_intents/${clientSecret.split("_secret_")[0]}/confirm`, {
      method: "POST",
      headers: { authorization: `Bearer ${stripe.publishableKey}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ payment_method: paymentMethod, client_secret: clientSecret, return_url: "http://127.0.0.1/tip/done" }),
    });
    assert.equal(res.status, 200);
  };

  test("a watcher on replica A sees a card tip's 3-D Secure step and its success, decided by Stripe's webhooks on B, well before A's poll", async () => {
    const { tip, stripeClientSecret } = await client(replicaA).createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: randomUUID() },
      amount: { currency: "USD", amountMinor: 1000n }, payment: { case: "card", value: true },
    });
    const seen: { status: TipStatus; result: string; at: number }[] = [];
    const started = Date.now();
    const watching = (async () => {
      for await (const m of client(replicaA).watchTip({ tipId: tip!.tipId }, { signal: AbortSignal.timeout(WOKEN_WITHIN_MS * 2) })) {
        seen.push({ status: m.tip!.status, result: m.tip!.resultCode, at: Date.now() - started });
      }
    })().catch((err: Error) => assert.fail(`the watcher saw ${JSON.stringify(seen)} and no decision (${err.message})`));
    // The bank asks for 3-D Secure: the tip stays pending, now showing the step.
    await confirmCard(stripeClientSecret, "pm_card_threeDSecure2Required");
    const step = Date.now();
    while (!seen.some((s) => s.result === "requires_action") && Date.now() - step < WOKEN_WITHIN_MS) await new Promise((r) => setTimeout(r, 20));
    assert.ok(seen.some((s) => s.status === TipStatus.PENDING && s.result === "requires_action"), `A streamed the 3-D Secure step: ${JSON.stringify(seen)}`);
    // The customer passes it: Stripe authorises, B captures and credits.
    await stripe.completeThreeDS(tip!.providerPaymentId, true);
    await watching;
    assert.equal(seen.at(-1)!.status, TipStatus.SUCCEEDED, `A streamed the success: ${JSON.stringify(seen)}`);
    assert.ok(Date.now() - started < WATCH_POLL_MS / 3, `woken in ${Date.now() - started} ms, not by the ${WATCH_POLL_MS} ms poll`);
  });
});

describe("ChangeFeed: every change is announced to every replica", () => {
  test("announce wakes this replica's watcher with the row and another replica's without it; waking only local watchers is not offered", async () => {
    const bus = new InProcessBus(captureLogger("silent").logger);
    const here = new ChangeFeed(bus);
    const there = new ChangeFeed(bus);
    const stop = await there.listen();
    try {
      const key = randomUUID();
      const ac = new AbortController();
      const [local, remote] = [here.next(key, ac.signal, 60_000), there.next(key, ac.signal, 60_000)];
      here.announce(key, { status: "succeeded" });
      assert.deepEqual(await local.wait, { status: "succeeded" });
      assert.equal(await remote.wait, undefined, "woken through the bus, without the row");
      assert.equal("emit" in here, false, "no public emit: a change cannot skip the other replicas");
      // The row a change committed here stands in for a watcher's first read; a change elsewhere sends it to the database.
      assert.deepEqual(here.recent(key), { status: "succeeded" });
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(there.recent(key), undefined);
      const gone = new AbortController();
      const waiting = here.next(key, gone.signal, 60_000);
      gone.abort();
      assert.equal(await waiting.wait, undefined, "the caller left");
      const cancelled = here.next(key, ac.signal, 60_000);
      cancelled.cancel();
      here.announce(key, { status: "refunded" });
      assert.equal(await cancelled.wait, undefined, "cancelled before the change");
      const polled = here.next(key, ac.signal, 5);
      assert.equal(await polled.wait, undefined, "the poll interval passed");
      assert.equal(await here.next(key, AbortSignal.abort(), 60_000).wait, undefined, "the caller had left already");
      assert.equal(here["local"].listenerCount(key), 0, "every finished wait let go of its listener");
    } finally {
      await stop();
      await bus.close();
    }
  });
});

describe("ChangeFeed: the rows kept for a watcher's first read", () => {
  test("a created tip's row is kept until a change replaces it; an offer never hides a change, here or on another replica", async () => {
    const bus = new InProcessBus(captureLogger("silent").logger);
    const here = new ChangeFeed(bus);
    const there = new ChangeFeed(bus);
    const stop = await here.listen();
    try {
      const created = randomUUID();
      here.offer(created, { status: "pending" });
      assert.deepEqual(here.recent(created), { status: "pending" });
      here.announce(created, { status: "succeeded" });
      here.offer(created, { status: "pending" });
      assert.deepEqual(here.recent(created), { status: "succeeded" }, "the later change stays");
      here.announce(created);
      assert.equal(here.recent(created), undefined, "a change without its row: read the database");

      const decidedElsewhere = randomUUID();
      there.announce(decidedElsewhere, { status: "failed" });
      await new Promise((resolve) => setImmediate(resolve));
      here.offer(decidedElsewhere, { status: "pending" });
      assert.equal(here.recent(decidedElsewhere), undefined, "the other replica's change is not hidden by an older row");
      assert.equal(here.recent(randomUUID()), undefined);
    } finally {
      await stop();
      await bus.close();
    }
  });
});
