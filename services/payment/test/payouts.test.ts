import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { PayoutSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { AlertStatus, FraudAction, FraudReason, PayoutStatus, TipStatus, type Payout } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { AccountKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { asConnectError, httpRequest, violationsOf } from "@ttip/runtime";
import { freePort } from "@ttip/runtime/testing";
import { callbackUrl, type CallbackKind } from "../src/callback-paths.js";
import { stepUpVerifyFailure } from "../src/handlers/payouts.js";
import { Ledger } from "../src/ledger.js";
import { startHoldingProxy, twoPassesHeld } from "./held-requests.js";
import { darajaRefusing, eventually, KES, phone, startHarness, type Harness } from "./setup.js";


describe("B2C payouts: held in the wallet, sent once, settled or released by the result", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  let internal: Client<typeof PaymentInternalService>;

  before(async () => {
    h = await startHarness();
    pay = h.t.client(PaymentService);
    internal = h.t.client(PaymentInternalService);
  });
  after(async () => {
    await h.close();
  });

  const asWorker = (worker: string) => h.t.client(PaymentService, { subject: worker, roles: ["worker"] });
  const msisdn = (p: string) => `254${p.slice(1)}`;
  const b2cTo = (p: string) => h.sim.transactions().filter((t) => t.kind === "b2c" && t.phone === msisdn(p));

  /** A worker with automatic payout to `payoutPhone`, then a KES 100 tip (KES 95 to the worker). */
  async function tippedWorker(payoutPhone: string, minimumKes = 10): Promise<string> {
    const worker = randomUUID();
    await asWorker(worker).updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(minimumKes), payoutPhone });
    const { tip } = await pay.createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() },
    });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip succeeded");
    return worker;
  }
  /** The worker's one payout (it starts right after the tip's credit, so it may take a moment to appear). */
  async function onlyPayout(worker: string): Promise<Payout> {
    const payouts = await eventually(async () => {
      const { payouts } = await asWorker(worker).listPayouts({});
      return payouts.length > 0 && payouts;
    }, "a payout");
    assert.equal(payouts.length, 1, "one payout");
    return payouts[0];
  }
  async function reconcileUntil(worker: string, done: (p: Payout) => boolean, passes = 12): Promise<Payout> {
    for (let i = 0; i < passes; i++) {
      const p = await onlyPayout(worker);
      if (done(p)) return p;
      // Several replicas at once.
      await Promise.all([1, 2, 3].map(() => internal.reconcilePending({ limit: 100 })));
      await h.sim.idle();
      // What the sleep here gave: the clock moves on 150 ms more than the time the passes took.
      h.clock.advance(150);
    }
    return onlyPayout(worker);
  }
  const holdState = async (payoutId: string) => (await h.t.db.pool.query("SELECT hold_state FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0].hold_state;
  const events = async (subject: string, id: string) =>
    Number((await h.t.db.pool.query("SELECT count(*) FROM payment.outbox WHERE subject = $1 AND position($2 in encode(payload, 'escape')) > 0", [subject, id])).rows[0].count);

  test("a wallet stuck on a payout's hold: the call gives up past its deadline (to be retried), rather than holding the payout", async () => {
    const worker = randomUUID();
    // A deadline of 300 ms, not the 5 s in force: the test waits it out (wall time, no CPU).
    const ledger = new Ledger(h.t.ctx, undefined, undefined, () => 300);
    // Its wallet made first: the hold is the only call left to wait.
    await ledger.account(AccountKind.WORKER_WALLET, worker);
    const holder = await h.t.db.pool.connect();
    let outcome: unknown;
    try {
      await holder.query("BEGIN");
      // Wallet's statements on its holds wait for this lock, with no lock timeout of their own: wallet answers nothing.
      await holder.query("LOCK TABLE wallet.holds IN ACCESS EXCLUSIVE MODE");
      outcome = await ledger.placeHold(worker, 100n, randomUUID()).then(() => "held", (err: unknown) => err);
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    assert.ok(outcome instanceof ConnectError, "refused, not held");
    assert.equal(Code[outcome.code], Code[Code.DeadlineExceeded]);
  });

  test("a wallet stuck on the reads an automatic payout's amount comes from: they give up past their deadline, rather than queueing the worker's later payouts behind them", async () => {
    const worker = randomUUID();
    const ledger = new Ledger(h.t.ctx, undefined, undefined, () => 300);
    await ledger.account(AccountKind.WORKER_WALLET, worker);
    const holder = await h.t.db.pool.connect();
    let outcomes: unknown[];
    try {
      await holder.query("BEGIN");
      // Wallet's reads of balances and limits wait for these locks, with no lock timeout of their own: wallet answers nothing.
      await holder.query("LOCK TABLE wallet.accounts, wallet.holds IN ACCESS EXCLUSIVE MODE");
      outcomes = await Promise.all([ledger.available(worker), ledger.withdrawalRoom(worker)].map((p) => p.then(() => "answered", (err: unknown) => err)));
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    for (const outcome of outcomes) {
      assert.ok(outcome instanceof ConnectError, "gave up, not answered");
      assert.equal(Code[outcome.code], Code[Code.DeadlineExceeded]);
    }
  });

  test("automatic payout after a tip: held, sent once, settled", async () => {
    const p = phone();
    const worker = await tippedWorker(p);
    const payout = await eventually(async () => {
      const x = await onlyPayout(worker);
      return x.status === PayoutStatus.SUCCEEDED && x;
    }, "payout succeeded");
    assert.equal(payout.amount!.amountMinor, 9500n);
    assert.ok(payout.automatic);
    assert.equal(payout.mpesaReceipt, b2cTo(p)[0].receipt);
    assert.equal(b2cTo(p).length, 1);
    assert.equal(b2cTo(p)[0].amount, 95);
    await eventually(async () => (await holdState(payout.payoutId)) === "settled", "hold settled");
    assert.equal(await h.balance(worker), 0n);
    assert.equal(await events("ttip.payment.payout_succeeded", payout.payoutId), 1);
    assert.ok(await h.trialBalanced());
  });

  test("no automatic payout below the worker's minimum", async () => {
    const p = phone();
    const worker = await tippedWorker(p, 200);
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    assert.equal((await asWorker(worker).listPayouts({})).payouts.length, 0);
    assert.equal(b2cTo(p).length, 0);
  });

  test("a minimum over what one withdrawal may be is read as that limit: the automatic payout pays up to it, the rest left with a note", async () => {
    const p = phone();
    const worker = randomUUID();
    // A tier of its own whose withdrawals are at most KES 50 (basic's is KES 20,000: the same case, with smaller tips).
    await h.t.db.pool.query("INSERT INTO wallet.tier_limits (tier, currency, per_transaction_minor, daily_minor, monthly_minor) VALUES (77, 'KES', 5000, 100000, 1000000) ON CONFLICT DO NOTHING");
    await h.t.db.pool.query("INSERT INTO wallet.user_tiers (owner_id, tier) VALUES ($1, 77)", [worker]);
    await asWorker(worker).updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(60), payoutPhone: p });
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip succeeded");
    // Before, KES 50 (the most one withdrawal may be) was under the KES 60 minimum every time: never paid out.
    const payout = await reconcileUntil(worker, (x) => x.status === PayoutStatus.SUCCEEDED);
    assert.equal(payout.amount!.amountMinor, 5000n);
    assert.match(payout.note, /^KES 45 left in your wallet: your withdrawal limit allows KES 50 now/);
    assert.equal(b2cTo(p).length, 1);
    assert.equal(await h.balance(worker), 4500n);
  });

  test("no automatic payout below B2C's KES 10, whatever minimum the worker stored before it was enforced; a minimum under it is refused naming the field", async () => {
    const p = phone();
    const worker = randomUUID();
    await asWorker(worker).updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: p });
    // Before, accepted: an automatic payout of KES 9 was then held, sent and failed by M-Pesa.
    // The contract's rule when automatic payout is on; the service's when it is off (the minimum kept for later).
    await assert.rejects(asWorker(worker).updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(9), payoutPhone: p }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /^auto_payout_minimum must be at least 10 KES/.test(e.rawMessage));
    await assert.rejects(asWorker(worker).updatePayoutSettings({ autoPayout: false, autoPayoutMinimum: KES(9), payoutPhone: p }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /^auto_payout_minimum: M-Pesa pays out at least KES 10/.test(e.rawMessage));
    await h.t.db.pool.query("UPDATE payment.payout_settings SET auto_payout_minimum_minor = 100 WHERE worker_id = $1", [worker]);
    // Shown as the minimum that applies: before, KES 1, which the worker's own settings form then refused to save.
    assert.equal((await asWorker(worker).getPayoutSettings({})).settings!.autoPayoutMinimum!.amountMinor, 1000n);
    assert.equal((await asWorker(randomUUID()).getPayoutSettings({})).settings!.autoPayoutMinimum!.amountMinor, 1000n, "offered to a worker with no settings");
    const tip = async (kes: number) => {
      const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(kes), payment: { case: "mpesaPhone", value: phone() } });
      await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip succeeded");
    };
    await tip(10);
    const credited = await eventually(async () => (await h.balance(worker)) || undefined, "credited");
    assert.ok(credited >= 900n && credited < 1000n, `KES 9 and some cents in the wallet (${credited})`);
    // The next tip's payout starts after this one's would have (one at a time per worker): it finds all of the balance.
    await tip(100);
    const paid = await eventually(async () => {
      const { payouts } = await asWorker(worker).listPayouts({});
      return payouts.some((x) => x.status === PayoutStatus.SUCCEEDED) && payouts;
    }, "the second tip's payout paid");
    // Before, two: KES 9 held, sent and failed by M-Pesa, then the rest.
    assert.deepEqual(paid.map((x) => [PayoutStatus[x.status], x.amount!.amountMinor]), [["SUCCEEDED", ((credited + 9500n) / 100n) * 100n]]);
    assert.deepEqual(b2cTo(p).map((t) => t.amount), [Number((credited + 9500n) / 100n)]);
  });

  test("a B2C whose answer never comes is resolved by transaction status, never sent again", async () => {
    const p = phone("0004"); // slow_ack: paid at once, the answer comes after our timeout
    const worker = await tippedWorker(p);
    const resolving = await eventually(async () => {
      const x = await onlyPayout(worker);
      return x.status !== PayoutStatus.PENDING && x;
    }, "B2C timed out");
    assert.equal(resolving.status, PayoutStatus.RESOLVING);
    const done = await reconcileUntil(worker, (x) => x.status === PayoutStatus.SUCCEEDED);
    assert.equal(done.status, PayoutStatus.SUCCEEDED);
    assert.equal(done.mpesaReceipt, b2cTo(p)[0].receipt);
    // More passes change nothing.
    await reconcileUntil(worker, () => false, 3);
    assert.equal(b2cTo(p).length, 1, "sent exactly once");
    await eventually(async () => (await holdState(done.payoutId)) === "settled", "hold settled");
    assert.equal(await h.balance(worker), 0n);
  });

  test("a B2C whose result came before its answer, and the answer was then lost: the payout stays as its result ended it, announced once", async () => {
    const p = phone("5616");
    // Paid, its result posted at once; the answer to the request itself is held, then never comes (its connection cut).
    const proxy = await startHoldingProxy(h.sim.url, (r) => r.path === "/mpesa/b2c/v3/paymentrequest" && r.body.includes(msisdn(p)), { answers: true });
    const daraja = h.config.daraja!;
    h.config.daraja = { ...daraja, baseUrl: proxy.url, timeoutMs: 60_000 };
    let payoutId = "";
    const row = async () => (await h.t.db.pool.query("SELECT b2c_state, status FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0] as { b2c_state: string; status: string };
    try {
      const worker = await tippedWorker(p);
      payoutId = (await onlyPayout(worker)).payoutId;
      await eventually(async () => proxy.held() === 1 && (await row()).status === "succeeded", "its result ended it, its answer held");
      proxy.dropOldest();
      await eventually(async () => (await row()).b2c_state === "unknown", "the answer lost");
      // Before, the lost answer reopened it (resolving): asked about again, and announced paid a second time.
      assert.equal((await row()).status, "succeeded", "still ended as its result said");
      await reconcileUntil(worker, () => false, 3);
    } finally {
      h.config.daraja = daraja;
      await proxy.close();
    }
    assert.equal(await events("ttip.payment.payout_succeeded", payoutId), 1, "announced once");
    assert.equal(b2cTo(p).length, 1, "sent once");
    assert.equal(await holdState(payoutId), "settled");
  });

  test("a B2C that ran, answered by Daraja's server-error refusal (a duplicate OriginatorConversationID), is in doubt: resolved by transaction status, its hold never released", async () => {
    const p = phone("5617");
    // Paid, its result lost; the answer read is Daraja's 500 refusing a B2C under an id it already has.
    h.sim.script({ phone: msisdn(p) }, { b2c: "lost_result" });
    const daraja = h.config.daraja!;
    const refusal = JSON.stringify({ requestId: "1234-5678", errorCode: "500.002.1001", errorMessage: "Duplicate OriginatorConversationID" });
    h.config.daraja = { ...daraja, request: async (url, call) => {
      const reply = await httpRequest(url, call);
      if (!url.pathname.includes("/b2c/") || !String(call.body).includes(msisdn(p))) return reply;
      return { status: 500, ok: false, statusText: "Internal Server Error", headers: reply.headers, text: async () => refusal };
    } };
    let worker = "";
    try {
      worker = await tippedWorker(p);
      const answered = await eventually(async () => {
        const x = await onlyPayout(worker);
        return x.status !== PayoutStatus.PENDING && x;
      }, "the B2C answered");
      // Before, refused: failed and its hold released, the money back in the wallet to withdraw again, though M-Pesa paid it.
      assert.equal(PayoutStatus[answered.status], PayoutStatus[PayoutStatus.RESOLVING]);
    } finally {
      h.config.daraja = daraja;
    }
    const done = await reconcileUntil(worker, (x) => x.status === PayoutStatus.SUCCEEDED);
    assert.equal(PayoutStatus[done.status], PayoutStatus[PayoutStatus.SUCCEEDED]);
    assert.equal(done.mpesaReceipt, b2cTo(p)[0].receipt);
    assert.equal(b2cTo(p).length, 1, "sent once");
    await eventually(async () => (await holdState(done.payoutId)) === "settled", "hold settled");
    assert.equal(await h.balance(worker), 0n);
  });

  test("a result that never arrives is found by transaction status", async () => {
    const p = phone("0003"); // lost_result
    const worker = await tippedWorker(p);
    assert.equal((await onlyPayout(worker)).status, PayoutStatus.PENDING);
    const done = await reconcileUntil(worker, (x) => x.status === PayoutStatus.SUCCEEDED);
    assert.equal(done.status, PayoutStatus.SUCCEEDED);
    assert.equal(b2cTo(p).length, 1);
  });

  test("a Transaction Status that fails as a query never releases the hold: the payout stays resolving, its money held, sent once", async () => {
    const p = phone("5611");
    // Paid, its result lost; each status query about it fails on its own (a receiver party Daraja calls invalid).
    h.sim.script({ phone: msisdn(p) }, { b2c: "lost_result", statusError: "SFC_IC0003" });
    const worker = await tippedWorker(p);
    const payout = await reconcileUntil(worker, () => false);
    assert.ok(b2cTo(p)[0].queries >= 3, `asked ${b2cTo(p)[0].queries} times, past the "not found" count`);
    assert.equal(payout.status, PayoutStatus.RESOLVING);
    assert.equal(await holdState(payout.payoutId), "held");
    assert.equal(await h.balance(worker), 0n, "nothing back in the wallet to withdraw again");
    assert.equal(b2cTo(p).length, 1, "sent once");
  });

  test("a Transaction Status that says neither Completed, Failed nor Cancelled keeps the payout held and tells support once", async () => {
    const p = phone("5612");
    // Its result lost; every status query says "Expired", which decides nothing here.
    h.sim.script({ phone: msisdn(p) }, { b2c: "lost_result", statusAnswer: "Expired" });
    const worker = await tippedWorker(p);
    const payout = await reconcileUntil(worker, () => false);
    assert.ok(b2cTo(p)[0].queries >= 2, `asked ${b2cTo(p)[0].queries} times`);
    assert.equal(payout.status, PayoutStatus.RESOLVING);
    assert.equal(await holdState(payout.payoutId), "held");
    // Before, it was asked about every pass for ever, its money held, and no one was told.
    const { rows } = await h.t.db.pool.query("SELECT reason, detail FROM payment.fraud_alerts WHERE payout_id = $1", [payout.payoutId]);
    assert.deepEqual(rows.map((r) => r.reason), ["CALLBACK_MISMATCH"], "told once, however many passes asked");
    assert.match(rows[0].detail, /status query says "Expired" of payout .*decides nothing here/);
  });

  test("WatchPayout follows a payout live to its end, each change once, to its worker only", async () => {
    const p = phone("0003"); // lost_result: pending until transaction status finds it
    const worker = await tippedWorker(p);
    const pending = await onlyPayout(worker);
    assert.equal(pending.status, PayoutStatus.PENDING);
    await assert.rejects(
      (async () => {
        for await (const _ of asWorker(randomUUID()).watchPayout({ payoutId: pending.payoutId })) assert.fail("someone else's payout streamed");
      })(),
      (e) => ConnectError.from(e).code === Code.NotFound,
    );
    const seen: Payout[] = [];
    const watching = (async () => {
      for await (const res of asWorker(worker).watchPayout({ payoutId: pending.payoutId })) seen.push(res.payout!);
    })();
    await eventually(async () => seen.length > 0, "the first status");
    assert.equal(seen[0].status, PayoutStatus.PENDING);
    await reconcileUntil(worker, (x) => x.status === PayoutStatus.SUCCEEDED);
    await watching; // the stream ends by itself once the payout is final
    assert.equal(seen.at(-1)!.status, PayoutStatus.SUCCEEDED);
    assert.equal(seen.at(-1)!.mpesaReceipt, b2cTo(p)[0].receipt);
    const states = seen.map((x) => `${x.status}|${x.resultCode}|${x.mpesaReceipt}`);
    assert.equal(new Set(states).size, states.length, `each change once: ${states.join(", ")}`);
  });

  test("a queue timeout is asked about; not executed means failed and the hold released, still sent once", async () => {
    const p = phone("0006");
    const worker = await tippedWorker(p);
    const done = await reconcileUntil(worker, (x) => x.status === PayoutStatus.FAILED);
    assert.equal(done.status, PayoutStatus.FAILED);
    assert.equal(b2cTo(p).length, 1, "never re-sent");
    await eventually(async () => (await holdState(done.payoutId)) === "released", "hold released");
    assert.equal(await h.balance(worker), 9500n, "the money is back in the wallet");
    assert.equal(await events("ttip.payment.payout_failed", done.payoutId), 1);
  });

  test("a failed B2C releases the hold and says why", async () => {
    const p = phone("2001");
    const worker = await tippedWorker(p);
    const done = await eventually(async () => {
      const x = await onlyPayout(worker);
      return x.status === PayoutStatus.FAILED && x;
    }, "payout failed");
    assert.equal(done.resultCode, "2001");
    assert.match(done.resultMessage, /initiator/i);
    await eventually(async () => (await h.balance(worker)) === 9500n, "released");
  });

  /** Posts again every result callback stored for the payout, as M-Pesa (or a relay) repeating it would. */
  async function repeatResults(payoutId: string): Promise<number> {
    const { rows } = await h.t.db.pool.query<{ path: string; raw_body: Buffer; callback_token: string }>(
      `SELECT c.path, c.raw_body, p.callback_token FROM payment.callbacks c JOIN payment.payouts p USING (payout_id)
        WHERE c.payout_id = $1 AND c.path LIKE '%/result/%' ORDER BY c.received_at`, [payoutId]);
    for (const r of rows) {
      // Stored with its token redacted: posted to the payout's own URL.
      const kind = /(?:b2c|status)\/result/.exec(r.path)![0] as CallbackKind;
      assert.equal((await h.post(callbackUrl("", kind, r.callback_token), JSON.parse(r.raw_body.toString()))).status, 200);
    }
    return rows.length;
  }
  const mismatchAlerts = async (payoutId: string) =>
    (await h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["support"] }).getPaymentDetail({ subject: { case: "payoutId", value: payoutId } }))
      .alerts.filter((a) => a.reason === FraudReason.CALLBACK_MISMATCH);

  /** Posts to the payout's result URL a success in Daraja's Result envelope, paying `kes` under `receipt`. */
  async function postPaidResult(payoutId: string, kes: number, receipt: string): Promise<number> {
    const { rows: [{ callback_token: token }] } = await h.t.db.pool.query("SELECT callback_token FROM payment.payouts WHERE payout_id = $1", [payoutId]);
    const body = { Result: { ResultType: 0, ResultCode: 0, ResultDesc: "The service request is processed successfully.", OriginatorConversationID: payoutId,
      ConversationID: `AG_20260101_${receipt}`, TransactionID: receipt,
      ResultParameters: { ResultParameter: [{ Key: "TransactionAmount", Value: kes }, { Key: "TransactionReceipt", Value: receipt }] } } };
    return (await h.post(callbackUrl("", "b2c/result", token), body)).status;
  }

  test("a B2C result paying another amount than the payout: held for review, its wallet hold neither settled nor released, one admin alert however often it comes", async () => {
    const p = phone("5631");
    h.sim.script({ phone: msisdn(p) }, { b2c: "amount_mismatch" }); // KES 95 asked, KES 96 sent
    const worker = await tippedWorker(p);
    const held = await eventually(async () => {
      const x = await onlyPayout(worker);
      return x.status !== PayoutStatus.PENDING && x;
    }, "the result applied");
    // Before, settled at KES 95 (the worker's debit) while KES 96 left the paybill, with only a log line.
    assert.equal(PayoutStatus[held.status], PayoutStatus[PayoutStatus.ON_HOLD]);
    assert.equal(held.mpesaReceipt, b2cTo(p)[0].receipt);
    assert.match(held.resultMessage, /KES 96.*KES 95.*review/);
    assert.equal(await holdState(held.payoutId), "held");
    assert.equal(await h.balance(worker), 0n, "nothing back in the wallet to withdraw again");
    assert.ok(await repeatResults(held.payoutId) >= 1, "a result to repeat");
    await reconcileUntil(worker, () => false, 3);
    const alerts = await mismatchAlerts(held.payoutId);
    assert.equal(alerts.length, 1, "one alert per payout");
    assert.equal(FraudAction[alerts[0].action], FraudAction[FraudAction.HOLD]);
    assert.equal(alerts[0].workerId, worker);
    assert.match(alerts[0].detail, /KES 96.*KES 95/);
    assert.equal(PayoutStatus[(await onlyPayout(worker)).status], PayoutStatus[PayoutStatus.ON_HOLD]);
    assert.equal(await holdState(held.payoutId), "held");
    assert.equal(await events("ttip.payment.payout_succeeded", held.payoutId), 0, "not announced paid");
    assert.equal(b2cTo(p).length, 1, "sent once");
  });

  test("a result in another amount for a payout already paid and settled is flagged once, the payout left as it ended", async () => {
    const p = phone("5634");
    const worker = await tippedWorker(p);
    const done = await eventually(async () => {
      const x = await onlyPayout(worker);
      return x.status === PayoutStatus.SUCCEEDED && x;
    }, "paid");
    await eventually(async () => (await holdState(done.payoutId)) === "settled", "hold settled");
    for (let i = 0; i < 2; i++) assert.equal(await postPaidResult(done.payoutId, 96, done.mpesaReceipt), 200);
    const alerts = await mismatchAlerts(done.payoutId);
    assert.equal(alerts.length, 1, "one alert per payout");
    assert.equal(FraudAction[alerts[0].action], FraudAction[FraudAction.FLAG]);
    assert.match(alerts[0].detail, /KES 96.*KES 95.*already succeeded, its hold settled/);
    assert.equal(PayoutStatus[(await onlyPayout(worker)).status], PayoutStatus[PayoutStatus.SUCCEEDED]);
  });

  test("M-Pesa reporting paid a payout already ended as failed (its hold released) alerts support once per payout, however often it says so", async () => {
    const p = phone("0006"); // queue timeout: never executed; the status query then ends it failed
    const worker = await tippedWorker(p);
    const failed = await reconcileUntil(worker, (x) => x.status === PayoutStatus.FAILED);
    await eventually(async () => (await holdState(failed.payoutId)) === "released", "hold released");
    // A success result for it, posted three times.
    for (let i = 0; i < 3; i++) assert.equal(await postPaidResult(failed.payoutId, 95, "SLATE00001"), 200);
    // Before, one alert at each repeat.
    const alerts = await mismatchAlerts(failed.payoutId);
    assert.equal(alerts.length, 1, "one alert per payout");
    assert.match(alerts[0].detail, /paid \(receipt SLATE00001\) after it was ended as failed/);
    assert.equal(PayoutStatus[(await onlyPayout(worker)).status], PayoutStatus[PayoutStatus.FAILED]);
  });

  test("a status answer finding the payout paid in another amount holds it for review too; its late result, in the same amount, adds no alert", async () => {
    const p = phone("5632");
    h.sim.script({ phone: msisdn(p) }, { b2c: "amount_mismatch" });
    const parked = h.sim.hold("b2c"); // its result parked: only a status query tells
    let worker = "";
    try {
      worker = await tippedWorker(p);
      const held = await reconcileUntil(worker, (x) => x.status === PayoutStatus.ON_HOLD);
      // Before, a "Completed" answer settled it at KES 95 whatever amount it said.
      assert.equal(PayoutStatus[held.status], PayoutStatus[PayoutStatus.ON_HOLD]);
      assert.equal(await holdState(held.payoutId), "held");
    } finally {
      await parked.release();
    }
    const payout = await onlyPayout(worker);
    await eventually(async () => b2cTo(p)[0].callbacksSent === 1, "the late result delivered");
    assert.equal((await mismatchAlerts(payout.payoutId)).length, 1, "one alert per payout");
    assert.equal(PayoutStatus[(await onlyPayout(worker)).status], PayoutStatus[PayoutStatus.ON_HOLD]);
    assert.equal(await holdState(payout.payoutId), "held");
  });

  describe("ResolveHeldPayout: support ends a payout held for its amount by what M-Pesa's statement shows", () => {
    const finance = () => h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["finance"], stepUp: true });
    const key = () => `resolve-${randomUUID()}`;
    const refusal = (call: Promise<unknown>) => call.then(() => assert.fail("accepted"), (e: unknown) => ConnectError.from(e));
    /** A payout held for the amount M-Pesa reported: KES 95 asked, KES 96 sent (the simulator's amount_mismatch). */
    async function heldPayout(last4: string) {
      const p = phone(last4);
      h.sim.script({ phone: msisdn(p) }, { b2c: "amount_mismatch" });
      const worker = await tippedWorker(p);
      const held = await eventually(async () => {
        const x = await onlyPayout(worker);
        return x.status === PayoutStatus.ON_HOLD && x;
      }, "held for its amount");
      return { p, worker, held, receipt: b2cTo(p)[0].receipt! };
    }
    /** What the ledger moved for the payout, per account kind (entries caused by it), in minor units. */
    async function movedFor(payoutId: string): Promise<Record<string, bigint>> {
      const { rows } = await h.t.db.pool.query<{ kind: number; sum: string }>(
        `SELECT a.kind, sum(p.amount_minor)::text AS sum FROM wallet.postings p JOIN wallet.entries e USING (entry_id) JOIN wallet.accounts a USING (account_id)
          WHERE e.cause_ref = $1 GROUP BY a.kind`, [payoutId]);
      return Object.fromEntries(rows.map((r) => [AccountKind[r.kind], BigInt(r.sum)]).filter(([, v]) => v !== 0n));
    }
    /** What a KES 95 payout paid `difference` more (or less) moves: more from the platform's fees, less back to the worker. */
    const movedWhenPaid = (difference: bigint, fee: bigint) =>
      difference > 0n
        ? { WORKER_WALLET: -9500n, PAYOUT_CLEARING: 9500n + fee + difference, PLATFORM_FEES: -fee - difference }
        : { WORKER_WALLET: -9500n - difference, PAYOUT_CLEARING: 9500n + fee + difference, ...(fee ? { PLATFORM_FEES: -fee } : {}) };
    const alertStatus = async (payoutId: string) => (await mismatchAlerts(payoutId)).map((a) => AlertStatus[a.status]);
    const paid = (kes: number, mpesaReceipt: string) => ({ case: "paid" as const, value: { paidAmount: KES(kes), mpesaReceipt } });

    test("paid as the payout said (the result was wrong): the hold settled at the payout's amount, SUCCEEDED and announced once, its alert closed; a retry gets the same", async () => {
      const { p, worker, held, receipt } = await heldPayout("5641");
      const fee = held.transferFee!.amountMinor;
      const req = { payoutId: held.payoutId, idempotencyKey: key(), outcome: paid(95, receipt), note: "statement shows KES 95" };
      const admin = finance();
      // The worker, finance staff too, settles no payout of their own.
      const own = await refusal(h.t.client(PaymentAdminService, { subject: worker, roles: ["worker", "finance"], stepUp: true }).resolveHeldPayout(req));
      assert.deepEqual([own.code, own.rawMessage], [Code.PermissionDenied, "payout_id: this is your own account's; another admin must decide it"]);
      // Before: UNIMPLEMENTED (no way out of on_hold).
      const { payout } = await admin.resolveHeldPayout(req);
      assert.equal(PayoutStatus[payout!.status], PayoutStatus[PayoutStatus.SUCCEEDED]);
      assert.equal(payout!.mpesaReceipt, receipt);
      assert.match(payout!.resultMessage, /KES 95, confirmed on M-Pesa's statement/);
      assert.equal(await holdState(held.payoutId), "settled");
      assert.deepEqual(await movedFor(held.payoutId), { WORKER_WALLET: -9500n, PAYOUT_CLEARING: 9500n + fee, ...(fee ? { PLATFORM_FEES: -fee } : {}) });
      assert.equal(await events("ttip.payment.payout_succeeded", held.payoutId), 1);
      assert.equal(await events("ttip.payment.admin_action", held.payoutId), 1, "audited");
      assert.deepEqual(await alertStatus(held.payoutId), ["APPROVED"]);
      // Before, a payout's detail named no ledger entry: the settlement's id was dropped.
      const detail = await admin.getPaymentDetail({ subject: { case: "payoutId", value: held.payoutId } });
      const { rows: [settled] } = await h.t.db.pool.query("SELECT e.entry_id, e.idempotency_key FROM wallet.holds h JOIN wallet.entries e ON e.entry_id = h.settle_entry_id WHERE h.payout_id = $1", [held.payoutId]);
      assert.equal(detail.ledgerEntryId, settled.entry_id, "the settlement's entry");
      assert.deepEqual(detail.reversalEntryKeys, [], "paid as asked: no difference booked");
      const again = await admin.resolveHeldPayout(req);
      assert.equal(PayoutStatus[again.payout!.status], PayoutStatus[PayoutStatus.SUCCEEDED], "the retry's answer");
      assert.equal(await events("ttip.payment.payout_succeeded", held.payoutId), 1, "announced once");
      assert.equal(await events("ttip.payment.admin_action", held.payoutId), 1, "audited once");
      assert.equal(b2cTo(p).length, 1, "never sent again");
      assert.equal(await h.balance(worker), 0n);
      assert.equal(await h.trialBalanced(), true);
    });

    test("paid another amount: more is booked to the platform's fees, the worker charged the payout; less goes back to the worker, charged what reached them; once", async () => {
      for (const [last4, paidKes] of [["5642", 96], ["5643", 94]] as const) {
        const { p, worker, held, receipt } = await heldPayout(last4);
        const fee = held.transferFee!.amountMinor;
        const req = { payoutId: held.payoutId, idempotencyKey: key(), outcome: paid(paidKes, receipt), note: `statement shows KES ${paidKes}` };
        const admin = finance();
        const { payout } = await admin.resolveHeldPayout(req);
        assert.equal(PayoutStatus[payout!.status], PayoutStatus[PayoutStatus.SUCCEEDED], `paid KES ${paidKes}`);
        assert.match(payout!.resultMessage, new RegExp(`KES ${paidKes} sent for this KES 95 payout.*charged KES ${Math.min(paidKes, 95)}`));
        assert.equal(await holdState(held.payoutId), "settled");
        const difference = BigInt(paidKes - 95) * 100n;
        assert.deepEqual(await movedFor(held.payoutId), movedWhenPaid(difference, fee), `paid KES ${paidKes}`);
        await admin.resolveHeldPayout(req);
        const { rows } = await h.t.db.pool.query("SELECT count(*)::int AS n FROM wallet.entries WHERE idempotency_key = $1", [`payout:${held.payoutId}:paid-difference`]);
        assert.equal(rows[0].n, 1, "the difference booked once");
        const detail = await admin.getPaymentDetail({ subject: { case: "payoutId", value: held.payoutId } });
        assert.deepEqual(detail.reversalEntryKeys, [`payout:${held.payoutId}:paid-difference`], "the difference's entry, for the console to list");
        const { rows: [settled] } = await h.t.db.pool.query("SELECT idempotency_key FROM wallet.entries WHERE entry_id = $1", [detail.ledgerEntryId]);
        assert.equal(settled?.idempotency_key, `hold:${detail.holdId}:settle`, "the settlement's entry");
        assert.equal(await events("ttip.payment.payout_succeeded", held.payoutId), 1);
        // Told as what M-Pesa paid (before, the payout's KES 95: analytics' payouts and their CSV said what never left).
        const { rows: [told] } = await h.t.db.pool.query("SELECT payload FROM payment.outbox WHERE subject = 'ttip.payment.payout_succeeded' AND position($1 in encode(payload, 'escape')) > 0", [held.payoutId]);
        assert.equal(fromBinary(PayoutSucceededSchema, told.payload).amount?.amountMinor, BigInt(paidKes) * 100n);
        assert.equal(b2cTo(p).length, 1, "never sent again");
        // Before, paid KES 94 charged the worker KES 95 and the platform's fees kept the shilling.
        assert.equal(await h.balance(worker), difference < 0n ? -difference : 0n, "the worker charged what reached them, at most the payout");
      }
      assert.equal(await h.trialBalanced(), true);
    });

    test("a paid amount over KES 50 from the payout's needs that difference confirmed: the typo 9600 for 96 refused naming paid.confirmed_difference, nothing changed", async () => {
      const { p, worker, held, receipt } = await heldPayout("5648");
      const admin = finance();
      const typo = { payoutId: held.payoutId, idempotencyKey: key(), outcome: paid(9600, receipt), note: "statement shows KES 96" };
      // Before, this was taken: SUCCEEDED, KES 9,505 booked to the platform's fees.
      for (const confirmedDifference of [undefined, KES(9400)]) {
        const e = await refusal(admin.resolveHeldPayout({ ...typo, idempotencyKey: key(), outcome: { case: "paid", value: { ...typo.outcome.value, confirmedDifference } } }));
        assert.equal(Code[e.code], Code[Code.InvalidArgument]);
        assert.deepEqual(violationsOf(e).map((v) => v.field), ["paid.confirmed_difference"]);
        assert.match(e.rawMessage, /KES 9,600 paid for this KES 95 payout is a difference of KES 9,505/);
      }
      const usd = await refusal(admin.resolveHeldPayout({ ...typo, idempotencyKey: key(), outcome: { case: "paid", value: { ...typo.outcome.value, confirmedDifference: { currency: "USD", amountMinor: 950_500n } } } }));
      assert.deepEqual(violationsOf(usd).map((v) => v.field), ["paid.confirmed_difference"]);
      assert.equal(PayoutStatus[(await onlyPayout(worker)).status], PayoutStatus[PayoutStatus.ON_HOLD]);
      assert.equal(await holdState(held.payoutId), "held");
      assert.deepEqual(await movedFor(held.payoutId), {}, "nothing booked");
      assert.equal(await events("ttip.payment.admin_action", held.payoutId), 0, "nothing audited");
      assert.deepEqual(await alertStatus(held.payoutId), ["OPEN"]);
      // Corrected: KES 96, within KES 50 of the payout, needs no confirmation; the statement's receipt replaces M-Pesa's, which is kept.
      const { payout } = await admin.resolveHeldPayout({ ...typo, outcome: { case: "paid", value: { paidAmount: KES(96), mpesaReceipt: "SUPPORT001" } } });
      assert.equal(PayoutStatus[payout!.status], PayoutStatus[PayoutStatus.SUCCEEDED]);
      assert.equal(payout!.mpesaReceipt, "SUPPORT001");
      assert.equal(payout!.reportedMpesaReceipt, receipt, "the receipt M-Pesa's result named, kept");
      assert.equal((await h.t.db.pool.query("SELECT reported_mpesa_receipt FROM payment.payouts WHERE payout_id = $1", [held.payoutId])).rows[0].reported_mpesa_receipt, receipt);
      assert.equal(b2cTo(p).length, 1, "never sent again");
    });

    test("a difference over KES 50 confirmed exactly, more or less paid, is taken and booked once", async () => {
      for (const [last4, paidKes] of [["5649", 200], ["5640", 40]] as const) {
        const { held, receipt } = await heldPayout(last4);
        const fee = held.transferFee!.amountMinor;
        const difference = BigInt(paidKes - 95) * 100n;
        const { payout } = await finance().resolveHeldPayout({
          payoutId: held.payoutId, idempotencyKey: key(), note: `statement shows KES ${paidKes}`,
          outcome: { case: "paid", value: { paidAmount: KES(paidKes), mpesaReceipt: receipt, confirmedDifference: { currency: "KES", amountMinor: difference } } },
        });
        assert.equal(PayoutStatus[payout!.status], PayoutStatus[PayoutStatus.SUCCEEDED], `paid KES ${paidKes}`);
        assert.deepEqual(await movedFor(held.payoutId), movedWhenPaid(difference, fee), `paid KES ${paidKes}`);
      }
      assert.equal(await h.trialBalanced(), true);
    });

    test("the wallet not answering the settlement: the resolution stands (SUCCEEDED, hold still held), and reconciliation settles it with the difference booked once", async () => {
      const { held, receipt } = await heldPayout("5647");
      const fee = held.transferFee!.amountMinor;
      const admin = finance();
      const holder = await h.t.db.pool.connect();
      let resolved: Payout | undefined;
      try {
        await holder.query("BEGIN");
        // Wallet's statements on its holds wait for this lock, with no lock timeout of their own: the settlement is not answered.
        await holder.query("LOCK TABLE wallet.holds IN ACCESS EXCLUSIVE MODE");
        resolved = (await admin.resolveHeldPayout({ payoutId: held.payoutId, idempotencyKey: key(), outcome: paid(96, receipt), note: "statement shows KES 96" })).payout;
      } finally {
        await holder.query("ROLLBACK");
        holder.release();
      }
      assert.equal(PayoutStatus[resolved!.status], PayoutStatus[PayoutStatus.SUCCEEDED], "decided and announced");
      assert.equal(await holdState(held.payoutId), "held", "the settlement left to reconciliation");
      await eventually(async () => {
        await internal.reconcilePending({ limit: 100 });
        return (await holdState(held.payoutId)) === "settled";
      }, "settled by reconciliation", 20_000);
      assert.deepEqual(await movedFor(held.payoutId), { WORKER_WALLET: -9500n, PAYOUT_CLEARING: 9500n + fee + 100n, PLATFORM_FEES: -fee - 100n });
      assert.equal(await events("ttip.payment.payout_succeeded", held.payoutId), 1);
      assert.equal(await h.trialBalanced(), true);
    });

    test("not paid at all: the hold released (the money back in the wallet), FAILED and announced, its alert closed as rejected", async () => {
      const { p, worker, held } = await heldPayout("5644");
      const { payout } = await finance().resolveHeldPayout({ payoutId: held.payoutId, idempotencyKey: key(), outcome: { case: "notPaid", value: true }, note: "nothing on the statement" });
      assert.equal(PayoutStatus[payout!.status], PayoutStatus[PayoutStatus.FAILED]);
      assert.equal(await holdState(held.payoutId), "released");
      assert.equal(await h.balance(worker), 9500n, "available again");
      assert.deepEqual(await movedFor(held.payoutId), {}, "nothing posted");
      assert.equal(await events("ttip.payment.payout_failed", held.payoutId), 1);
      assert.equal(await events("ttip.payment.payout_succeeded", held.payoutId), 0);
      assert.deepEqual(await alertStatus(held.payoutId), ["REJECTED"]);
      assert.equal(b2cTo(p).length, 1, "never sent again");
    });

    test("refusals change nothing: a payout not held for its amount is FAILED_PRECONDITION naming payout_id, bad input INVALID_ARGUMENT naming the field", async () => {
      const { worker, held, receipt } = await heldPayout("5645");
      const plain = phone("5646");
      const paidOut = await reconcileUntil(await tippedWorker(plain), (x) => x.status === PayoutStatus.SUCCEEDED);
      const admin = finance();
      const base = { payoutId: held.payoutId, idempotencyKey: key(), outcome: paid(95, receipt), note: "statement checked" };
      const notHeld = await refusal(admin.resolveHeldPayout({ ...base, payoutId: paidOut.payoutId }));
      assert.equal(Code[notHeld.code], Code[Code.FailedPrecondition]);
      assert.match(notHeld.rawMessage, new RegExp(`^payout_id: payout ${paidOut.payoutId} is succeeded`));
      assert.equal(Code[(await refusal(admin.resolveHeldPayout({ ...base, payoutId: randomUUID() }))).code], Code[Code.NotFound]);
      for (const [field, outcome] of [
        ["paid.paid_amount", { case: "paid", value: { paidAmount: { currency: "USD", amountMinor: 9500n }, mpesaReceipt: receipt } }],
        ["paid.paid_amount", { case: "paid", value: { paidAmount: { currency: "KES", amountMinor: 9550n }, mpesaReceipt: receipt } }],
        ["paid.paid_amount", { case: "paid", value: { mpesaReceipt: receipt } }],
        ["mpesa_receipt", { case: "paid", value: { paidAmount: KES(95), mpesaReceipt: "not-a-receipt" } }],
        ["outcome", { case: undefined }],
        // Another payout's receipt (a neighbouring statement line): was INTERNAL, the unique index's refusal.
        ["paid.mpesa_receipt", { case: "paid", value: { paidAmount: KES(95), mpesaReceipt: paidOut.mpesaReceipt } }],
      ] as const) {
        const e = await refusal(admin.resolveHeldPayout({ ...base, outcome } as Parameters<typeof admin.resolveHeldPayout>[0]));
        assert.equal(Code[e.code], Code[Code.InvalidArgument], field);
        assert.match(e.rawMessage, new RegExp(field.replace(".", "\\.")), field);
      }
      assert.equal(PayoutStatus[(await onlyPayout(worker)).status], PayoutStatus[PayoutStatus.ON_HOLD]);
      assert.equal(await holdState(held.payoutId), "held");
      assert.equal(await events("ttip.payment.admin_action", held.payoutId), 0, "nothing audited");
      assert.deepEqual(await alertStatus(held.payoutId), ["OPEN"]);
      // Resolved once; the key again with another outcome, or another key, is refused.
      const first = { ...base, outcome: { case: "notPaid" as const, value: true } };
      await admin.resolveHeldPayout(first);
      assert.equal(Code[(await refusal(admin.resolveHeldPayout({ ...first, outcome: paid(95, receipt) }))).code], Code[Code.AlreadyExists]);
      const twice = await refusal(admin.resolveHeldPayout({ ...first, idempotencyKey: key() }));
      assert.equal(Code[twice.code], Code[Code.FailedPrecondition]);
      assert.match(twice.rawMessage, /^payout_id: .* is failed/);
      assert.equal(await holdState(held.payoutId), "released");
    });
  });

  test("a B2C Daraja could not be sent (nothing left) is sent later, not failed; one an admin held meanwhile is never sent, its money back in the wallet", async () => {
    const daraja = h.config.daraja!;
    const refusedConnection = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const row = async (payoutId: string) =>
      (await h.t.db.pool.query("SELECT b2c_state, status, hold_state FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0] as { b2c_state: string; status: string; hold_state: string };
    const [sent, held] = [phone(), phone()];
    let workers: string[];
    let refused = 0;
    try {
      h.config.daraja = { ...daraja, request: async (url, call) => (url.pathname.includes("/b2c/") ? (refused++, Promise.reject(refusedConnection)) : httpRequest(url, call)) };
      workers = [await tippedWorker(sent), await tippedWorker(held)];
      // Both first sends refused before Daraja comes back: a payout seen held is not yet sent (its hold comes first),
      // and one sent after this point would reach M-Pesa before the admin's hold (a CI run met it).
      await eventually(async () => refused === 2, "both first sends refused");
      for (const w of workers) {
        const p = await onlyPayout(w);
        await eventually(async () => (await row(p.payoutId)).b2c_state === "new", "back to be sent again");
        assert.deepEqual(await row(p.payoutId), { b2c_state: "new", status: "pending", hold_state: "held" }, "to be sent again, not failed");
      }
    } finally {
      h.config.daraja = daraja;
    }
    await h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["admin"] }).holdPayouts({ workerId: workers[1], reason: "phone reported stolen", idempotencyKey: `hold-${workers[1]}` });
    h.clock.advance(h.config.payoutResultWaitMs + 1_000);
    const paid = await reconcileUntil(workers[0], (p) => p.status === PayoutStatus.SUCCEEDED);
    assert.equal(b2cTo(sent).length, 1);
    assert.equal(paid.amount!.amountMinor, 9500n);
    const stopped = await reconcileUntil(workers[1], (p) => p.status === PayoutStatus.FAILED);
    assert.match(stopped.resultMessage, /on hold/);
    assert.equal(b2cTo(held).length, 0, "never sent");
    await eventually(async () => (await row(stopped.payoutId)).hold_state === "released", "its hold released");
    assert.equal(await h.balance(workers[1]), 9500n);
  });

  test("a B2C on its way when support re-queries it, then found never sent: sent later, not left resolving with its hold for good", async () => {
    const daraja = h.config.daraja!;
    const refusedConnection = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const row = async (payoutId: string) =>
      (await h.t.db.pool.query("SELECT b2c_state, status, hold_state, status_queries FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0] as { b2c_state: string; status: string; hold_state: string; status_queries: number };
    const p = phone();
    let onItsWay = () => undefined as void;
    const started = new Promise<void>((r) => (onItsWay = r));
    let fail = () => undefined as void;
    const failing = new Promise<void>((r) => (fail = r));
    let worker: string;
    let payoutId: string;
    try {
      // The first B2C waits (as a slow connection does), then is found never sent.
      h.config.daraja = { ...daraja, request: async (url, call) => {
        if (!url.pathname.includes("/b2c/")) return httpRequest(url, call);
        onItsWay();
        await failing;
        throw refusedConnection;
      } };
      worker = await tippedWorker(p);
      await started;
      payoutId = (await onlyPayout(worker)).payoutId;
      await h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["finance"] }).requeryPayment({ subject: { case: "payoutId", value: payoutId } });
      assert.equal((await row(payoutId)).status, "resolving", "M-Pesa asked about it while it was on its way");
      // Queries sent (an answer coming after, its other half, has no time it was sent: it cannot decide).
      const queries = async () => (await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.payout_status_queries WHERE payout_id = $1 AND sent_at IS NOT NULL", [payoutId])).rows[0].n as number;
      await eventually(async () => (await queries()) === 1, "the query recorded");
      fail();
      await eventually(async () => (await row(payoutId)).b2c_state === "new", "back to be sent again");
      // Before, kept: the B2C sent again, the first query after it (a result wait on from this one) decided "no record"
      // before M-Pesa had recorded it, the payout failed and its hold released, and M-Pesa paid it after.
      assert.equal(await queries(), 0, "the query asked about nothing M-Pesa had");
    } finally {
      h.config.daraja = daraja;
    }
    await h.sim.idle();
    // Before, it stayed resolving and unsent for good: a pass sends only a pending payout, and none failed it.
    h.clock.advance(h.config.payoutResultWaitMs + 1_000);
    const paid = await reconcileUntil(worker, (x) => x.status === PayoutStatus.SUCCEEDED);
    assert.equal(PayoutStatus[paid.status], PayoutStatus[PayoutStatus.SUCCEEDED]);
    assert.equal(b2cTo(p).length, 1, "sent once");
    await eventually(async () => (await row(payoutId)).hold_state === "settled", "its hold settled");
  });

  test("payouts on hold by an admin are not made automatically; released, what came in meanwhile is paid out by the next pass", async () => {
    const p = phone();
    const worker = randomUUID();
    await h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["admin"] }).holdPayouts({ workerId: worker, reason: "under review", idempotencyKey: `hold-${worker}` });
    await asWorker(worker).updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: p });
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip");
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    await internal.reconcilePending({ limit: 100 });
    assert.equal(b2cTo(p).length, 0);
    assert.equal((await asWorker(worker).listPayouts({})).payouts.length, 0);
    // Before, the release only lifted the flag: the KES 95 stayed in the wallet until another tip came.
    await h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["admin"], stepUp: true }).releasePayouts({ workerId: worker, note: "cleared", idempotencyKey: `release-${worker}` });
    await internal.reconcilePending({ limit: 100 });
    const payout = await reconcileUntil(worker, (x) => x.status === PayoutStatus.SUCCEEDED);
    assert.equal(payout.amount!.amountMinor, 9500n);
    assert.ok(payout.automatic);
    assert.equal(b2cTo(p).length, 1);
    assert.equal(await h.balance(worker), 0n);
  });

  test("an automatic payout whose start failed (wallet stuck on the worker's limits) is started by the next pass, once", async () => {
    const p = phone();
    const worker = randomUUID();
    await asWorker(worker).updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: p });
    const holder = await h.t.db.pool.connect();
    try {
      await holder.query("BEGIN");
      // The tip's credit does not read the limits; the automatic payout's start does (withdrawalRoom), past its 5 s deadline.
      await holder.query("LOCK TABLE wallet.tier_limits IN ACCESS EXCLUSIVE MODE");
      const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
      await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip succeeded");
      // Before, the failed start left only a log line: nothing due, no pass ever looked at the worker again.
      await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM payment.payout_settings WHERE worker_id = $1 AND auto_payout_due_at IS NOT NULL", [worker])).rowCount === 1, "due again", 15_000);
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    await internal.reconcilePending({ limit: 100 });
    const payout = await reconcileUntil(worker, (x) => x.status === PayoutStatus.SUCCEEDED);
    assert.equal(payout.amount!.amountMinor, 9500n);
    assert.equal(b2cTo(p).length, 1);
    assert.equal(await h.balance(worker), 0n);
  });

  test("a manual withdrawal needs a verified step-up token; bad input changes nothing", async () => {
    const worker = randomUUID();
    const me = asWorker(worker);
    const before = h.sim.transactions().length;
    await assert.rejects(
      me.requestPayout({ idempotencyKey: randomUUID(), amount: KES(50), mpesaPhone: phone(), stepUpToken: "x".repeat(32) }),
      (e: ConnectError) => e.code === Code.Unavailable && /step_up_token/.test(e.message),
    );
    await assert.rejects(
      me.requestPayout({ idempotencyKey: randomUUID(), amount: { currency: "KES", amountMinor: 5050n }, stepUpToken: "x".repeat(32) }),
      (e: ConnectError) => e.code === Code.InvalidArgument,
    );
    await assert.rejects(pay.requestPayout({ idempotencyKey: randomUUID(), amount: KES(50), stepUpToken: "x".repeat(32) }), (e: ConnectError) => e.code === Code.Unauthenticated);
    // The platform's own keys (a tip's automatic payout is "auto-<tip id>"): before, such a withdrawal was taken for that payout.
    await assert.rejects(me.requestPayout({ idempotencyKey: `auto-${randomUUID()}`, amount: KES(50), mpesaPhone: phone(), stepUpToken: "x".repeat(32) }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /^idempotency_key: /.test(e.rawMessage));
    await assert.rejects(me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10) }), (e: ConnectError) => e.code === Code.InvalidArgument && /payout_phone/.test(e.message));
    await assert.rejects(me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: { currency: "KES", amountMinor: 150n }, payoutPhone: phone() }), (e: ConnectError) => e.code === Code.InvalidArgument);
    assert.equal(h.sim.transactions().length, before);
    assert.equal((await me.listPayouts({})).payouts.length, 0);
    const s = await me.getPayoutSettings({});
    assert.equal(s.settings!.autoPayout, false);
  });

  test("an admin's re-query asks about that payout alone: another due payout whose lease PostgreSQL refuses to let go does not answer the admin an error", async () => {
    const finance = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["finance"] });
    const [mine, theirs] = [phone("0003"), phone("0003")]; // lost_result: paid, only a status query tells
    const target = await onlyPayout(await tippedWorker(mine));
    const other = await onlyPayout(await tippedWorker(theirs));
    const row = async (payoutId: string) =>
      (await h.t.db.pool.query("SELECT b2c_state, status_queries FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0] as { b2c_state: string; status_queries: number };
    await eventually(async () => (await row(target.payoutId)).b2c_state === "sent" && (await row(other.payoutId)).b2c_state === "sent", "both sent");
    // The other payout due before this one, and any statement letting go of its lease refused.
    await h.t.db.pool.query("UPDATE payment.payouts SET next_check_at = now() - interval '1 hour' WHERE payout_id = $1", [other.payoutId]);
    const trigger = `payout_test_refuse_${other.payoutId.replaceAll("-", "")}`;
    await h.t.db.pool.query(`CREATE FUNCTION payment.${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'lease release refused'; END $$`);
    await h.t.db.pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE OF lease_until ON payment.payouts FOR EACH ROW
      WHEN (NEW.payout_id = '${other.payoutId}'::uuid AND OLD.lease_until IS NOT NULL AND NEW.lease_until IS NULL) EXECUTE FUNCTION payment.${trigger}()`);
    // The status result waits (a proxy in front of payment's callback address) until the admin's answer is read:
    // 30 ms after the query it could end the payout before the re-query's answer on a loaded machine.
    const results = await startHoldingProxy(h.t.service.server.url, (r) => r.method === "POST" && r.path.includes("status/result"));
    const callbackBase = h.config.callbackBaseUrl;
    h.config.callbackBaseUrl = results.url;
    try {
      const r = await finance.requeryPayment({ subject: { case: "payoutId", value: target.payoutId } });
      assert.equal(r.payout!.payoutId, target.payoutId);
      assert.equal(r.payout!.status, PayoutStatus.RESOLVING, "its status asked");
      assert.equal((await row(target.payoutId)).status_queries, 1);
      assert.equal((await row(other.payoutId)).status_queries, 0, "the other payout not asked about");
      await eventually(async () => results.held() === 1, "its status result sent");
      results.releaseOldest();
      await h.sim.idle();
    } finally {
      h.config.callbackBaseUrl = callbackBase;
      await results.close();
      await h.t.db.pool.query(`DROP TRIGGER ${trigger} ON payment.payouts`);
      await h.t.db.pool.query(`DROP FUNCTION payment.${trigger}()`);
    }
    const done = await eventually(async () => {
      const p = await onlyPayout(target.workerId);
      return p.status === PayoutStatus.SUCCEEDED && p;
    }, "the status result settled it");
    assert.equal(done.mpesaReceipt, b2cTo(mine)[0].receipt);
    assert.equal(b2cTo(mine).length, 1, "sent once");
    assert.equal(b2cTo(theirs).length, 1, "sent once");
    await eventually(async () => (await holdState(target.payoutId)) === "settled", "hold settled");
  });

  test("an admin's re-query of a payout another reconciliation pass holds is refused saying until when its lease runs, nothing asked; once let go, it is asked about", async () => {
    const finance = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["finance"] });
    const p = phone("0003"); // lost_result: paid, only a status query tells
    const { payoutId, workerId } = await onlyPayout(await tippedWorker(p));
    const row = async () => (await h.t.db.pool.query("SELECT b2c_state, status_queries FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0] as { b2c_state: string; status_queries: number };
    await eventually(async () => (await row()).b2c_state === "sent", "sent");
    // Another replica's pass leased it a moment ago and is asking M-Pesa about it now.
    const { rows: [{ lease }] } = await h.t.db.pool.query("UPDATE payment.payouts SET lease_until = now() + interval '1 minute' WHERE payout_id = $1 RETURNING lease_until AS lease", [payoutId]);
    try {
      const refused = await finance.requeryPayment({ subject: { case: "payoutId", value: payoutId } }).then(() => undefined, (e: unknown) => ConnectError.from(e));
      // Before, answered with the payout as it was, as if it had been asked about.
      assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
      assert.ok(refused.rawMessage.startsWith(`payout_id: another reconciliation pass is asking about it now (its lease ends at ${(lease as Date).toISOString()})`), refused.rawMessage);
      assert.deepEqual([(await row()).status_queries, b2cTo(p)[0].queries], [0, 0], "this re-query asked nothing beside the other pass");
    } finally {
      await h.t.db.pool.query("UPDATE payment.payouts SET lease_until = NULL WHERE payout_id = $1", [payoutId]);
    }
    await finance.requeryPayment({ subject: { case: "payoutId", value: payoutId } });
    assert.equal((await row()).status_queries, 1, "asked once let go");
    await eventually(async () => (await onlyPayout(workerId)).status === PayoutStatus.SUCCEEDED, "the status result settled it");
    await eventually(async () => (await holdState(payoutId)) === "settled", "hold settled");
  });

  test("an admin's re-query of a payout that M-Pesa could not be asked about says so (refused, or no answer) instead of answering as if asked; the pass asks later", async () => {
    const finance = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["finance"] });
    const p = phone("0003"); // lost_result: paid, only a status query tells
    const { payoutId } = await onlyPayout(await tippedWorker(p));
    const row = async () => (await h.t.db.pool.query("SELECT b2c_state, status_queries, lease_until FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0] as
      { b2c_state: string; status_queries: number; lease_until: Date | null };
    await eventually(async () => (await row()).b2c_state === "sent", "sent");
    const requery = () => finance.requeryPayment({ subject: { case: "payoutId", value: payoutId } }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    const daraja = h.config.daraja!;
    try {
      // Daraja refuses the query itself (its synchronous answer).
      h.config.daraja = darajaRefusing(daraja, "/transactionstatus/", "400.002.02", "Bad Request - Invalid TransactionID");
      // Before, both answered OK with the payout as it was, as if M-Pesa had been asked about it.
      const refused = await requery();
      assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
      assert.match(refused.rawMessage, /^payout_id: M-Pesa refused the payout status query: .*400\.002\.02.*; nothing was learnt; the reconciliation pass asks again later$/);
      // Daraja unreachable: a port nothing listens on.
      h.config.daraja = { ...daraja, baseUrl: `http://127.0.0.1:${await freePort()}` };
      const unanswered = await requery();
      assert.equal(unanswered?.code, Code.Unavailable, String(unanswered));
      assert.match(unanswered.rawMessage, /^payout_id: M-Pesa did not answer the payout status query \(.+\); nothing was learnt/);
    } finally {
      h.config.daraja = daraja;
    }
    const after = await row();
    assert.deepEqual([after.b2c_state, after.status_queries, after.lease_until], ["sent", 0, null], "still sent, nothing counted as asked, its lease let go for the pass");
  });

  test("an admin's re-query of a payout whose row another transaction holds waits for the row, and past a short wait is refused as busy, nothing asked; once free, asked", async () => {
    const finance = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["finance"] });
    const p = phone("0003"); // lost_result: paid, only a status query tells
    const { payoutId, workerId } = await onlyPayout(await tippedWorker(p));
    const row = async () => (await h.t.db.pool.query("SELECT b2c_state, status_queries FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0] as { b2c_state: string; status_queries: number };
    await eventually(async () => (await row()).b2c_state === "sent", "sent");
    const holder = await h.t.db.pool.connect();
    try {
      await holder.query("BEGIN");
      // A lock the made-due update passes (it changes no key) and the lease meets: a callback's or a pass's lock
      // taken between the two, as one can be.
      await holder.query("SELECT 1 FROM payment.payouts WHERE payout_id = $1 FOR KEY SHARE", [payoutId]);
      const refused = await finance.requeryPayment({ subject: { case: "payoutId", value: payoutId } }).then(() => undefined, (e: unknown) => ConnectError.from(e));
      // Before, the lease skipped the row: answered with the payout as it was, nothing asked and nothing said.
      assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
      assert.match(refused.rawMessage, /^payout_id: busy: .*try again/);
      assert.deepEqual([(await row()).status_queries, b2cTo(p)[0].queries], [0, 0], "nothing asked");
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    await finance.requeryPayment({ subject: { case: "payoutId", value: payoutId } });
    assert.equal((await row()).status_queries, 1, "asked once free");
    await eventually(async () => (await onlyPayout(workerId)).status === PayoutStatus.SUCCEEDED, "the status result settled it");
    await eventually(async () => (await holdState(payoutId)) === "settled", "hold settled");
  });

  test("a status answer that comes before its pass counted the query counts it: support sees M-Pesa asked once, the pass's count after it adds none", async () => {
    const support = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["support"] });
    const p = phone("0003"); // lost_result: paid, only a status query tells
    const { payoutId, workerId } = await onlyPayout(await tippedWorker(p));
    const asked = async () => (await support.getPaymentDetail({ subject: { case: "payoutId", value: payoutId } })).statusQueries;
    await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM payment.payouts WHERE payout_id = $1 AND b2c_state = 'sent'", [payoutId])).rowCount === 1, "sent");
    const { rows: [{ token }] } = await h.t.db.pool.query(
      "UPDATE payment.payouts SET status_query_sent_at = $2 WHERE payout_id = $1 RETURNING callback_token AS token", [payoutId, new Date(h.clock.now())]);
    // As a pass does before asking: its status query on its way.
    // Its answer, as Daraja sends it (30 ms after the query: on a loaded machine, before the pass's count after sending).
    const tx = b2cTo(p)[0];
    const answer = { Result: { ResultType: 0, ResultCode: 0, ResultDesc: "The service request has been accepted successfully.", OriginatorConversationID: randomUUID(),
      ConversationID: `AG_20260101_${tx.receipt}`, TransactionID: tx.receipt, ReferenceData: { ReferenceItem: { Key: "Occasion" } },
      ResultParameters: { ResultParameter: [{ Key: "ReceiptNo", Value: tx.receipt }, { Key: "TransactionStatus", Value: "Completed" }, { Key: "ResultCode", Value: 0 },
        { Key: "Amount", Value: tx.amount }, { Key: "OriginatorConversationID", Value: payoutId }] } } };
    assert.equal((await h.post(callbackUrl("", "status/result", token), answer)).status, 200);
    assert.equal(PayoutStatus[(await onlyPayout(workerId)).status], PayoutStatus[PayoutStatus.SUCCEEDED]);
    // Before, 0: only the pass counted, and its count finds the payout ended.
    assert.equal(await asked(), 1, "asked once");
    assert.equal((await h.post(callbackUrl("", "status/result", token), answer)).status, 200);
    assert.equal(await asked(), 1, "the same answer again counts nothing");
  });

  test("a pass whose step outlived its lease lets go of no later pass's lease: the payout stays with the replica that leased it since", async () => {
    const p = phone("0003"); // lost_result: paid, its result never sent
    const worker = await tippedWorker(p);
    const { payoutId } = await onlyPayout(worker);
    const row = async () => (await h.t.db.pool.query("SELECT b2c_state, hold_state, lease_until::text AS lease FROM payment.payouts WHERE payout_id = $1", [payoutId]))
      .rows[0] as { b2c_state: string; hold_state: string; lease: string | null };
    await eventually(async () => (await row()).b2c_state === "sent" && (await row()).hold_state === "held", "sent, its amount held");
    // Paid as a status result said, its hold not settled yet (the wallet did not answer): a pass settles it, first of all.
    await h.t.db.pool.query(
      "UPDATE payment.payouts SET status = 'succeeded', result_code = '0', mpesa_receipt = $2, completed_at = now(), next_check_at = now() - interval '100 years' WHERE payout_id = $1",
      [payoutId, b2cTo(p)[0].receipt]);
    const leaseMs = h.config.reconcileLeaseMs;
    // Shortened so that the pass's step outlives it (as a slow Daraja call outlives 120 s).
    h.config.reconcileLeaseMs = 1;
    const holder = await h.t.db.pool.connect();
    let pass: Promise<unknown>;
    let later: string | undefined;
    try {
      await holder.query("BEGIN");
      // The wallet's statements on its holds wait for this lock: the pass's settle waits in it.
      await holder.query("LOCK TABLE wallet.holds IN ACCESS EXCLUSIVE MODE");
      pass = internal.reconcilePending({ limit: 1 });
      await eventually(async () => (await row()).lease !== null && (await h.t.db.pool.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%wallet.holds%'")).rows[0].n > 0, "the pass settling the hold");
      // Its lease past, another replica leases the payout (the lease statement's own effect) and is working on it.
      later = (await h.t.db.pool.query(
        "UPDATE payment.payouts SET lease_until = now() + interval '120 seconds' WHERE payout_id = $1 AND lease_until < now() RETURNING lease_until::text AS lease",
        [payoutId])).rows[0]?.lease;
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
      h.config.reconcileLeaseMs = leaseMs;
    }
    assert.ok(later, "the first pass's lease had lapsed");
    await pass;
    // Let go, a third pass could lease the payout and work on it beside the replica holding it.
    assert.equal((await row()).lease, later, "the later lease stands");
  });

  test("two status queries sent at once (one after its pass's lease lapsed) count once: two replicas asking at once are not repeated asking", async () => {
    const p = phone("5612");
    // Paid, its result lost; each status query about it fails as a query, so no answer ends it meanwhile.
    h.sim.script({ phone: msisdn(p) }, { b2c: "lost_result", statusError: "SFC_IC0003" });
    const worker = await tippedWorker(p);
    const { payoutId } = await onlyPayout(worker);
    const row = async () => (await h.t.db.pool.query("SELECT b2c_state, lease_until::text AS lease, status_queries FROM payment.payouts WHERE payout_id = $1", [payoutId]))
      .rows[0] as { b2c_state: string; lease: string | null; status_queries: number };
    await eventually(async () => (await row()).b2c_state === "sent", "sent");
    await h.t.db.pool.query("UPDATE payment.payouts SET next_check_at = now() - interval '100 years' WHERE payout_id = $1", [payoutId]);
    // This payout's status queries wait in the proxy until let go; the client waits longer than any hold here.
    const proxy = await startHoldingProxy(h.sim.url, (r) => r.path === "/mpesa/transactionstatus/v1/query" && r.body.includes(payoutId));
    const [daraja, leaseMs, resultWaitMs] = [h.config.daraja!, h.config.reconcileLeaseMs, h.config.payoutResultWaitMs];
    h.config.daraja = { ...daraja, baseUrl: proxy.url, timeoutMs: 60_000 };
    // Shortened so that the held query outlives it (as a slow Daraja call outlives 120 s).
    h.config.reconcileLeaseMs = 1;
    // Counted queries are spaced by the result wait: here far longer than this test takes, whatever the load.
    h.config.payoutResultWaitMs = 10 * 60_000;
    try {
      // Its lease past, another replica's pass leases the payout and asks about it too.
      const passes = await twoPassesHeld(proxy, () => internal.reconcilePending({ limit: 100 }), "query");
      await passes.finishFirst();
      assert.equal((await row()).status_queries, 1, "the first query answered is counted");
      await passes.finishSecond();
      const after = await row();
      assert.deepEqual([after.status_queries, after.lease], [1, null], "the second, sent at the same time, not counted; let go by the pass holding the payout");
    } finally {
      h.config.daraja = daraja;
      h.config.reconcileLeaseMs = leaseMs;
      h.config.payoutResultWaitMs = resultWaitMs;
      await proxy.close();
    }
    await h.sim.idle();
    assert.equal(b2cTo(p)[0].queries, 2, "both queries were sent");
    assert.equal((await onlyPayout(worker)).status, PayoutStatus.RESOLVING);
    assert.equal(await holdState(payoutId), "held");
  });

  test("a pass whose query about one payout outlived its lease leaves its next payout to the replica that leased it since: that payout is asked about once", async () => {
    const finance = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["finance"] });
    const [first, second] = [phone("5614"), phone("5615")];
    // Paid, their results lost; each status query fails as a query, so no answer ends them meanwhile.
    for (const p of [first, second]) h.sim.script({ phone: msisdn(p) }, { b2c: "lost_result", statusError: "SFC_IC0003" });
    const [one, two] = [await onlyPayout(await tippedWorker(first)), await onlyPayout(await tippedWorker(second))];
    const state = async (payoutId: string) => (await h.t.db.pool.query("SELECT b2c_state FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0].b2c_state;
    await eventually(async () => (await state(one.payoutId)) === "sent" && (await state(two.payoutId)) === "sent", "both sent");
    // Both due before any other payout, the first one first: one pass leases both and asks about the first before the second.
    await h.t.db.pool.query("UPDATE payment.payouts SET next_check_at = now() - interval '200 years' WHERE payout_id = $1", [one.payoutId]);
    await h.t.db.pool.query("UPDATE payment.payouts SET next_check_at = now() - interval '199 years' WHERE payout_id = $1", [two.payoutId]);
    const proxy = await startHoldingProxy(h.sim.url, (r) => r.path === "/mpesa/transactionstatus/v1/query" && r.body.includes(one.payoutId));
    const [daraja, leaseMs, resultWaitMs] = [h.config.daraja!, h.config.reconcileLeaseMs, h.config.payoutResultWaitMs];
    h.config.daraja = { ...daraja, baseUrl: proxy.url, timeoutMs: 60_000 };
    // Shortened so that the held query outlives it (as a slow Daraja call outlives 120 s).
    h.config.reconcileLeaseMs = 1;
    // Counted queries are spaced by the result wait: here far longer than this test takes, whatever the load.
    h.config.payoutResultWaitMs = 10 * 60_000;
    let pass: Promise<unknown> | undefined;
    try {
      pass = internal.reconcilePending({ limit: 100 });
      await eventually(async () => proxy.held() === 1, "the pass's query about the first payout held");
      // The pass's lease past, another replica (an admin's re-query) leases the second payout and asks about it.
      await finance.requeryPayment({ subject: { case: "payoutId", value: two.payoutId } });
      assert.equal(b2cTo(second)[0].queries, 1, "the other replica asked");
      proxy.releaseOldest();
      await pass;
    } finally {
      h.config.daraja = daraja;
      h.config.reconcileLeaseMs = leaseMs;
      h.config.payoutResultWaitMs = resultWaitMs;
      await proxy.close();
      await pass?.catch(() => undefined);
    }
    await h.sim.idle();
    // Before, the pass asked about it again on its way, under the lease it had lost.
    assert.equal(b2cTo(second)[0].queries, 1, "asked about once");
    assert.equal(b2cTo(first)[0].queries, 1, "the first asked about by the pass");
    assert.deepEqual([b2cTo(first).length, b2cTo(second).length], [1, 1], "each sent once");
  });

  /** A tipped worker's automatic payout whose B2C is lost on its way (M-Pesa never sees it: no record), resolving. */
  const payoutNeverSeen = async (p: string) => {
    const proxy = await startHoldingProxy(h.sim.url, (r) => r.path.includes("/b2c/") && r.body.includes(msisdn(p)));
    const daraja = h.config.daraja!;
    h.config.daraja = { ...daraja, baseUrl: proxy.url, timeoutMs: 60_000 };
    try {
      const worker = await tippedWorker(p);
      await eventually(async () => proxy.held() === 1, "the B2C held");
      proxy.dropOldest();
      const { payoutId } = await eventually(async () => {
        const x = await onlyPayout(worker);
        return x.status === PayoutStatus.RESOLVING && x;
      }, "the B2C unanswered");
      await h.t.db.pool.query("UPDATE payment.payouts SET next_check_at = now() - interval '100 years' WHERE payout_id = $1", [payoutId]);
      return { worker, payoutId };
    } finally {
      h.config.daraja = daraja;
      await proxy.close();
    }
  };

  test("M-Pesa's \"no record\" decides on the answer to the second status query also when each answer comes before its pass counts the query", async () => {
    const p = phone("5616");
    const { worker, payoutId } = await payoutNeverSeen(p);
    // Each status query reaches M-Pesa at once; its answer to the pass is held, so M-Pesa's result comes before the pass counts the query.
    const answers = await startHoldingProxy(h.sim.url, (r) => r.path === "/mpesa/transactionstatus/v1/query" && r.body.includes(payoutId), { answers: true });
    const daraja = h.config.daraja!;
    h.config.daraja = { ...daraja, baseUrl: answers.url, timeoutMs: 60_000 };
    const results = async () => (await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE payout_id = $1 ORDER BY received_at", [payoutId])).rows.map((r) => r.outcome as string);
    try {
      for (let asked = 1; asked <= 2; asked++) {
        const pass = internal.reconcilePending({ limit: 100 });
        await eventually(async () => answers.held() === 1 && (await results()).length === asked, `query ${asked}'s result applied, its answer to the pass held`);
        answers.releaseOldest();
        await pass;
        h.clock.advance(h.config.payoutResultWaitMs);
        await h.t.db.pool.query("UPDATE payment.payouts SET next_check_at = now() - interval '100 years' WHERE payout_id = $1", [payoutId]);
      }
    } finally {
      h.config.daraja = daraja;
      await answers.close();
    }
    // Each result came before its query was named to the pass: the second's "no record" decides when the pass names it.
    // (Before, each answer read the count without its own query: a third query was needed.)
    assert.deepEqual(await results(), ["not_found_yet", "not_found_yet"]);
    const done = await onlyPayout(worker);
    const { rows: [asked] } = await h.t.db.pool.query("SELECT status_queries FROM payment.payouts WHERE payout_id = $1", [payoutId]);
    assert.deepEqual([done.status, asked.status_queries, b2cTo(p).length], [PayoutStatus.FAILED, 2, 0], "failed after two queries; M-Pesa never saw the B2C");
    assert.match(done.resultMessage, /no record/);
    await eventually(async () => (await holdState(payoutId)) === "released", "hold released");
    assert.equal(await h.balance(worker), 9500n, "the money is back in the wallet");
  });

  test("a late answer to an earlier status query decides nothing, whatever was sent since: \"no record\" decides as the answer to a query sent a result wait after the first", async () => {
    const p = phone("5652");
    const { worker, payoutId } = await payoutNeverSeen(p);
    const results = async () => (await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE payout_id = $1 ORDER BY received_at", [payoutId])).rows.map((r) => r.outcome as string);
    await internal.reconcilePending({ limit: 100 });
    await eventually(async () => (await results()).length === 1, "the first query's answer applied");
    h.clock.advance(h.config.payoutResultWaitMs + 1);
    await h.t.db.pool.query("UPDATE payment.payouts SET next_check_at = now() - interval '100 years' WHERE payout_id = $1", [payoutId]);
    // The second query leaves and waits on its way to M-Pesa (which may have paid the B2C since the first).
    const proxy = await startHoldingProxy(h.sim.url, (r) => r.path === "/mpesa/transactionstatus/v1/query" && r.body.includes(payoutId));
    const daraja = h.config.daraja!;
    h.config.daraja = { ...daraja, baseUrl: proxy.url, timeoutMs: 60_000 };
    let pass: Promise<unknown> | undefined;
    try {
      pass = internal.reconcilePending({ limit: 100 });
      await eventually(async () => proxy.held() === 1, "the second query on its way");
      // Meanwhile the first query's "no record" comes again (late, or repeated on its way).
      assert.equal(await repeatResults(payoutId), 1);
      // Before, it was counted as the second query's answer: the payout failed and its hold went back to the wallet.
      assert.equal(PayoutStatus[(await onlyPayout(worker)).status], PayoutStatus[PayoutStatus.RESOLVING]);
      assert.equal(await holdState(payoutId), "held");
      proxy.releaseOldest();
      await pass;
    } finally {
      h.config.daraja = daraja;
      await proxy.close();
      await pass?.catch(() => undefined);
    }
    // The second query's own "no record" decides.
    await eventually(async () => (await onlyPayout(worker)).status === PayoutStatus.FAILED, "failed on the second query's answer");
    await eventually(async () => (await holdState(payoutId)) === "released", "hold released");
  });

  test("a status answer coming a result wait after its pass counted the query does not count it again: one query's \"no record\" never decides", async () => {
    const p = phone("5633");
    const { worker, payoutId } = await payoutNeverSeen(p);
    const row = async () => (await h.t.db.pool.query("SELECT status_queries FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0] as { status_queries: number };
    const results = async () => (await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE payout_id = $1 ORDER BY received_at", [payoutId])).rows.map((r) => r.outcome as string);
    await internal.reconcilePending({ limit: 100 });
    await eventually(async () => (await results()).length === 1, "the query's answer applied");
    assert.equal((await row()).status_queries, 1);
    // The same answer again (late, or repeated on its way) past a result wait: still the one query.
    h.clock.advance(h.config.payoutResultWaitMs + 1);
    assert.equal(await repeatResults(payoutId), 1);
    // Before, counted again: a second "no record" from one query, the payout failed and its hold released.
    assert.deepEqual(await results(), ["not_found_yet", "not_found_yet"]);
    assert.equal((await row()).status_queries, 1, "one query, counted once");
    assert.equal(PayoutStatus[(await onlyPayout(worker)).status], PayoutStatus[PayoutStatus.RESOLVING]);
    assert.equal(await holdState(payoutId), "held");
  });

  test("a payout each of whose passes outlives its lease still reaches M-Pesa's \"no record\": its spaced queries count, its hold is released", async () => {
    const p = phone("5613");
    const { worker, payoutId } = await payoutNeverSeen(p);
    // Every status query about the payout waits in the proxy until let go, each outliving its pass's lease while the next pass leases the payout.
    const proxy = await startHoldingProxy(h.sim.url, (r) => r.path === "/mpesa/transactionstatus/v1/query" && r.body.includes(payoutId));
    const [daraja, leaseMs, resultWaitMs] = [h.config.daraja!, h.config.reconcileLeaseMs, h.config.payoutResultWaitMs];
    h.config.daraja = { ...daraja, baseUrl: proxy.url, timeoutMs: 60_000 };
    const passes: Promise<unknown>[] = [];
    try {
      // Shortened so that each held query outlives it (as a slow Daraja call outlives 120 s).
      h.config.reconcileLeaseMs = 1;
      // Counted queries are spaced by the result wait: here far longer than this test takes, whatever the load.
      h.config.payoutResultWaitMs = 10 * 60_000;
      passes.push(internal.reconcilePending({ limit: 100 }));
      await eventually(async () => proxy.held() === 1, "the first pass's query held");
      for (let i = 1; i <= 2; i++) {
        // Later by the result wait, another replica's pass leases the payout (the lease before lapsed) and asks too;
        // then the pass before it gets its answer.
        h.clock.advance(h.config.payoutResultWaitMs);
        passes.push(internal.reconcilePending({ limit: 100 }));
        await eventually(async () => proxy.held() === 2, `pass ${i + 1}'s query held`);
        proxy.releaseOldest();
        await passes[i - 1];
        await h.sim.idle();
      }
      const { rows: [asked] } = await h.t.db.pool.query("SELECT status_queries FROM payment.payouts WHERE payout_id = $1", [payoutId]);
      assert.equal(asked.status_queries, 2, "M-Pesa asked twice, a result wait apart, each pass's lease taken by the next meanwhile");
      // The second's "no record" decides (NO_RECORD_AFTER_QUERIES); the third, asked at once after it, is not counted.
      proxy.releaseOldest();
      await Promise.all(passes);
      const done = await eventually(async () => {
        const x = await onlyPayout(worker);
        return x.status === PayoutStatus.FAILED && x;
      }, "failed: no record");
      assert.match(done.resultMessage, /no record/);
      await eventually(async () => (await holdState(payoutId)) === "released", "hold released");
      assert.equal(await h.balance(worker), 9500n, "the money is back in the wallet");
      assert.equal(b2cTo(p).length, 0, "M-Pesa never saw the B2C");
    } finally {
      h.config.daraja = daraja;
      h.config.reconcileLeaseMs = leaseMs;
      h.config.payoutResultWaitMs = resultWaitMs;
      await proxy.close();
      await Promise.allSettled(passes);
    }
  });

  test("saved M-Pesa numbers: the first is the default, one default at a time, masked, removable by their owner only", async () => {
    const owner = randomUUID();
    const me = h.t.client(PaymentService, { subject: owner, roles: ["customer"] });
    const a = (await me.addPaymentMethod({ mpesaPhone: "0712000001", label: "mine" })).paymentMethod!;
    assert.ok(a.isDefault);
    assert.equal(a.phoneMasked, "2547******01");
    const again = (await me.addPaymentMethod({ mpesaPhone: "+254712000001", label: "mine" })).paymentMethod!;
    assert.equal(again.paymentMethodId, a.paymentMethodId, "adding the same number again is the same method");
    const b = (await me.addPaymentMethod({ mpesaPhone: "0112000002", label: "work", makeDefault: true })).paymentMethod!;
    let list = (await me.listPaymentMethods({})).paymentMethods;
    assert.deepEqual(list.map((m) => [m.paymentMethodId, m.isDefault]), [[b.paymentMethodId, true], [a.paymentMethodId, false]]);
    await assert.rejects(
      h.t.client(PaymentService, { subject: randomUUID(), roles: ["customer"] }).removePaymentMethod({ paymentMethodId: b.paymentMethodId }),
      (e: ConnectError) => e.code === Code.NotFound,
    );
    await me.removePaymentMethod({ paymentMethodId: b.paymentMethodId });
    list = (await me.listPaymentMethods({})).paymentMethods;
    assert.deepEqual(list.map((m) => [m.paymentMethodId, m.isDefault]), [[a.paymentMethodId, true]]);
    await assert.rejects(me.addPaymentMethod({ mpesaPhone: "0812000003" }), (e: ConnectError) => e.code === Code.InvalidArgument && /mpesa_phone/.test(e.message));
    await assert.rejects(pay.listPaymentMethods({}), (e: ConnectError) => e.code === Code.Unauthenticated);
  });

  // Last in the file's payouts: the service's clock moved on 10 minutes makes every open payout before it due at once.
  test("a payout's first check is set on the service's clock, the one its reconciliation reads it on: sent, or unanswered, on a clock ahead of the database's it is not due before its result wait", async () => {
    // The service's clock 10 minutes ahead of the database's (a test's clock moved on; a replica's clock apart from PostgreSQL's).
    h.clock.advance(10 * 60_000);
    const before = h.clock.now();
    const [sent, unanswered] = [phone("0003"), phone("0004")]; // lost_result: sent, no result; slow_ack: its answer comes too late
    const payouts = [await onlyPayout(await tippedWorker(sent)), await onlyPayout(await tippedWorker(unanswered))];
    const row = async (payoutId: string) => (await h.t.db.pool.query("SELECT b2c_state, next_check_at FROM payment.payouts WHERE payout_id = $1", [payoutId]))
      .rows[0] as { b2c_state: string; next_check_at: Date };
    await eventually(async () => (await row(payouts[0].payoutId)).b2c_state === "sent", "sent");
    await eventually(async () => (await row(payouts[1].payoutId)).b2c_state === "unknown", "unanswered");
    for (const [i, p] of payouts.entries()) {
      const { b2c_state, next_check_at } = await row(p.payoutId);
      // Before, set from the database's now(): 10 minutes early on this clock, due at once.
      assert.ok(next_check_at.getTime() >= before + h.config.payoutResultWaitMs, `${b2c_state}: first check ${next_check_at.toISOString()} on the service's clock`);
      assert.equal(b2cTo([sent, unanswered][i]).length, 1, "sent once");
    }
  });
});

describe("a withdrawal's step-up check failing in auth is told by what failed", () => {
  const told = (code: Code, message: string) => asConnectError(stepUpVerifyFailure(new ConnectError(message, code)));

  test("auth's refusal of the proof is PERMISSION_DENIED naming this call's field; a caller's mistake keeps its precise code; auth's outage is UNAVAILABLE", () => {
    const spent = told(Code.PermissionDenied, "spend_phone: the step-up token was spent on this payout's key for another number");
    assert.deepEqual([spent.code, spent.rawMessage.split(":")[0]], [Code.PermissionDenied, "mpesa_phone"]);
    const invalid = told(Code.PermissionDenied, "step-up token is invalid, expired or already spent");
    assert.deepEqual([invalid.code, invalid.rawMessage.split(":")[0]], [Code.PermissionDenied, "step_up_token"]);
    assert.equal(told(Code.InvalidArgument, "step_up_token: too short").rawMessage, "step_up_token: too short", "named once");
    for (const code of [Code.InvalidArgument, Code.FailedPrecondition, Code.NotFound, Code.ResourceExhausted]) {
      const e = told(code, "spend_amount: not what auth accepts");
      assert.deepEqual([Code[e.code], e.rawMessage.split(":")[0]], [Code[code], "amount"], `auth's ${Code[code]} stays the caller's ${Code[code]}`);
    }
    for (const code of [Code.Unavailable, Code.Unimplemented, Code.Internal, Code.Unknown, Code.DataLoss, Code.Aborted, Code.Unauthenticated, Code.DeadlineExceeded]) {
      const e = told(code, "connection refused");
      assert.deepEqual([Code[e.code], e.rawMessage.split(":")[0]], ["Unavailable", "step_up_token"], `auth's ${Code[code]} is its outage, not a refused proof`);
      assert.match(e.rawMessage, /cannot be verified now/);
    }
  });
});
