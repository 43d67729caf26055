import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { FraudAlertSchema, PaymentMethod, TipFailedSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { FraudReason, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { callerHeaders, normalisePhone, startTracing, stepUpHeaders } from "@ttip/runtime";
import { startHoldingProxy, twoPassesHeld } from "./held-requests.js";
import { DARAJA_LATE_MS, darajaRefusing, eventually, KES, phone, startHarness, type Harness } from "./setup.js";
import { bannedUrlWord } from "../src/daraja/client.js";
import { Ledger } from "../src/ledger.js";

const admin = { subject: randomUUID(), roles: ["admin" as const], stepUp: true };

describe("tips by M-Pesa STK push, against the Daraja simulator and the real wallet", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  let internal: Client<typeof PaymentInternalService>;
  let adminClient: Client<typeof PaymentAdminService>;

  before(async () => {
    h = await startHarness();
    pay = h.t.client(PaymentService);
    internal = h.t.client(PaymentInternalService);
    adminClient = h.t.client(PaymentAdminService, admin);
  });
  after(async () => {
    await h.close();
  });

  const tip = (workerId: string, mpesaPhone: string, shillings = 100, key: string = randomUUID()) =>
    pay.createTip({ idempotencyKey: key, recipient: { case: "workerId", value: workerId }, amount: KES(shillings), payment: { case: "mpesaPhone", value: mpesaPhone } });
  const status = async (tipId: string) => (await pay.getTip({ tipId })).tip!;
  const settled = (tipId: string) => eventually(async () => {
    const t = await status(tipId);
    return t.status !== TipStatus.PENDING && t;
  }, `tip ${tipId} settled`);
  const row = async (tipId: string) => (await h.t.db.pool.query("SELECT * FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0];
  const outboxCount = async (subject: string, tipId: string) =>
    Number((await h.t.db.pool.query("SELECT count(*) FROM payment.outbox o WHERE subject = $1 AND position($2 in encode(payload, 'escape')) > 0", [subject, tipId])).rows[0].count);
  // The wallet posts before payment records the credit (and its event) in a transaction of its own.
  const creditRecorded = (tipId: string) => eventually(async () => Boolean((await row(tipId)).credit_entry_id), `tip ${tipId} credit recorded`);
  const reconcile = async () => {
    h.clock.advance(h.config.stkDeadlineMs + 20);
    return internal.reconcilePending({ limit: 100 });
  };
  /** A pass after the push's deadline and its expiry: what is still unknown then expires. */
  const reconcilePastExpiry = async () => {
    h.clock.advance(h.config.stkDeadlineMs + h.config.stkExpireAfterMs + 20);
    return internal.reconcilePending({ limit: 100 });
  };

  test("a push Daraja refuses at once is failed in the customer's words for that refusal, not as M-Pesa's two-minute rule (a callback's result 17)", async () => {
    const daraja = h.config.daraja!;
    try {
      for (const [errorCode, errorMessage, said] of [
        ["500.001.1001", "Unable to lock subscriber, a transaction is already in process for the current subscriber", /busy with another transaction on your phone/],
        ["400.002.02", "Bad Request - Invalid PhoneNumber", /could not send the payment prompt/],
      ] as const) {
        h.config.daraja = darajaRefusing(daraja, "/stkpush/v1/processrequest", errorCode, errorMessage);
        const { tip: t } = await tip(randomUUID(), phone());
        const failed = await settled(t!.tipId);
        assert.equal(failed.status, TipStatus.FAILED, errorCode);
        // Before: "M-Pesa refused a repeat of the same amount from this number within 2 minutes" for both, as the
        // reason its TipFailed event carries (a partner's webhook); the customer read the generic words for the first.
        assert.match((await row(t!.tipId)).result_message, said, errorCode);
        if (errorCode === "500.001.1001") assert.match(failed.resultMessage, said);
        assert.equal(failed.resultCode, errorCode);
      }
    } finally {
      h.config.daraja = daraja;
    }
  });

  test("a tip is pushed, called back, credited once and watched live", async () => {
    const worker = randomUUID();
    const customer = "+2547" + phone().slice(2);
    const { tip: created } = await tip(worker, customer);
    // CreateTip answers after the push went out, with the tip as it is then: PENDING, or
    // SUCCEEDED when the simulator's callback (30 ms later) came first. Never anything else.
    assert.ok([TipStatus.PENDING, TipStatus.SUCCEEDED].includes(created!.status), `CreateTip answered ${TipStatus[created!.status]}`);
    assert.equal(created!.charged!.amountMinor, 10000n);
    // A tip's id is in time order (UUID version 7): payment.tips_pkey grows at its end.
    assert.match(created!.tipId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const pushed = h.sim.transactions().filter((t) => t.kind === "stk" && t.phone === customer.slice(1));
    assert.equal(pushed.length, 1, "one STK push, sent before CreateTip answered");
    assert.equal(pushed[0].amount, 100);
    const seen: TipStatus[] = [];
    for await (const m of pay.watchTip({ tipId: created!.tipId })) seen.push(m.tip!.status);
    assert.deepEqual(seen.at(-1), TipStatus.SUCCEEDED);
    assert.ok(seen.every((s) => s === TipStatus.PENDING || s === TipStatus.SUCCEEDED), `watched ${seen.map((s) => TipStatus[s])}`);
    const done = await status(created!.tipId);
    // A settled answer is the settled tip itself, receipt and all.
    if (created!.status === TipStatus.SUCCEEDED) assert.equal(created!.mpesaReceipt, done.mpesaReceipt);
    const simTx = h.sim.transactions().find((t) => t.receipt === done.mpesaReceipt);
    assert.ok(simTx, "the receipt is the one M-Pesa issued");
    // Safaricom refuses URLs holding words such as "mpesa" or "query"; the old /mpesa/ paths
    // are still served for attempts made before (the tests below post to them).
    assert.match(simTx!.callbackUrl!, /\/daraja\/stk\/[A-Za-z0-9_-]{16,64}$/);
    assert.equal(bannedUrlWord(simTx!.callbackUrl!), undefined);
    await eventually(async () => (await h.balance(worker)) === 9500n, "worker credited KES 95 (KES 100 less the 5% fee)");
    assert.equal(await h.walletEntries(worker), 1);
    await creditRecorded(created!.tipId);
    assert.equal(await outboxCount("ttip.payment.tip_succeeded", created!.tipId), 1);
    assert.match(done.resultMessage, /received/i);
    assert.equal(done.customerPhoneMasked.slice(0, 4), "2547");
    assert.ok(!done.customerPhoneMasked.includes(simTx!.phone.slice(4, 10)));
    // The customer is owed a receipt; with no notification service here it stays owed, not lost.
    // A sent receipt's row is deleted: a row whose send was attempted is a receipt still owed.
    await eventually(async () => {
      const { rows } = await h.t.db.pool.query("SELECT attempts FROM payment.receipts WHERE tip_id = $1", [created!.tipId]);
      return rows[0]?.attempts > 0;
    }, "a receipt send attempted");
  });

  test("the same idempotency key returns the same tip and pushes once; another tip under it is ALREADY_EXISTS", async () => {
    const worker = randomUUID();
    const p = phone();
    const key = `key-${randomUUID()}`;
    const [a, b] = await Promise.all([tip(worker, p, 50, key), tip(worker, p, 50, key)]);
    assert.equal(a.tip!.tipId, b.tip!.tipId);
    const again = await tip(worker, p, 50, key);
    assert.equal(again.tip!.tipId, a.tip!.tipId);
    const pushes = h.sim.transactions().filter((t) => t.kind === "stk" && t.phone === `254${p.slice(1)}`);
    assert.equal(pushes.length, 1);
    await assert.rejects(tip(worker, p, 60, key), (e: ConnectError) => e.code === Code.AlreadyExists && /idempotency_key/.test(e.message));
  });

  test("a callback duplicated three times credits once", async () => {
    const worker = randomUUID();
    const { tip: t } = await tip(worker, phone("0002"));
    await settled(t!.tipId);
    await h.sim.idle();
    const r = await row(t!.tipId);
    const deliveries = h.sim.transactions().find((x) => x.checkoutRequestId === r.checkout_request_id)!;
    assert.equal(deliveries.callbacksSent, 3, "the simulator delivered it three times");
    const stored = (await h.t.db.pool.query("SELECT callback_id, outcome FROM payment.callbacks WHERE tip_id = $1 ORDER BY received_at", [t!.tipId])).rows;
    assert.deepEqual(stored.map((x) => x.outcome).sort(), ["credited", "duplicate", "duplicate"]);
    // Each callback's id is in time order (UUID version 7): payment.callbacks_pkey grows at its end.
    for (const { callback_id: id } of stored) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    assert.equal(await h.walletEntries(worker), 1);
    await creditRecorded(t!.tipId);
    assert.equal(await outboxCount("ttip.payment.tip_succeeded", t!.tipId), 1);
  });

  /** A tip whose own callback is lost, with what M-Pesa knows of its payment (the receipt it issued). */
  const pushedNoCallback = async (worker: string) => {
    const { tip: t } = await tip(worker, phone("0003"));
    const r = await eventually(async () => {
      const x = await row(t!.tipId);
      return x.checkout_request_id && x;
    }, "push answered");
    const sim = h.sim.transactions().find((x) => x.checkoutRequestId === r.checkout_request_id)!;
    return { tipId: t!.tipId, token: r.callback_token as string, checkout: r.checkout_request_id as string, receipt: sim.receipt!, phone: sim.phone };
  };
  const successBody = (checkout: string, receipt: string, payer: string, shillings = 100) => ({
    Body: { stkCallback: { MerchantRequestID: "m", CheckoutRequestID: checkout, ResultCode: 0, ResultDesc: "ok", CallbackMetadata: { Item: [
      { Name: "Amount", Value: shillings }, { Name: "MpesaReceiptNumber", Value: receipt }, { Name: "TransactionDate", Value: 20260101120000 }, { Name: "PhoneNumber", Value: Number(payer) },
    ] } } },
  });
  const callbackOutcomes = async (tipId: string) =>
    (await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE tip_id = $1", [tipId])).rows.map((x) => x.outcome as string).sort();

  test("the same success called back five times at once credits once; a second success with another receipt is flagged, not credited", async () => {
    const worker = randomUUID();
    const p = await pushedNoCallback(worker);
    const answers = await Promise.all([1, 2, 3, 4, 5].map(() => h.post(`/mpesa/stk/${p.token}`, successBody(p.checkout, p.receipt, p.phone))));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200]);
    assert.deepEqual(await callbackOutcomes(p.tipId), ["credited", "duplicate", "duplicate", "duplicate", "duplicate"]);
    await creditRecorded(p.tipId);
    assert.equal(await h.balance(worker), 9500n);
    assert.equal(await h.walletEntries(worker), 1);
    assert.equal(await outboxCount("ttip.payment.tip_succeeded", p.tipId), 1);

    const other = await h.post(`/mpesa/stk/${p.token}`, successBody(p.checkout, "OTHER12345", p.phone));
    assert.equal(other.status, 200);
    const after = await row(p.tipId);
    assert.deepEqual([after.mpesa_receipt, after.credit_key], [p.receipt, p.receipt], "the first receipt stays the tip's");
    const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.CALLBACK_MISMATCH });
    assert.ok(alerts.some((a) => a.tipId === p.tipId && /another receipt \(OTHER12345\)/.test(a.detail)));
    assert.equal(await h.walletEntries(worker), 1);
    assert.equal(await h.balance(worker), 9500n);
  });

  test("a callback in another amount after a query credited the tip in full is flagged once, however often it comes; nothing credited again", async () => {
    const worker = randomUUID();
    const p = await pushedNoCallback(worker);
    await reconcile();
    const credited = await eventually(async () => {
      const x = await row(p.tipId);
      return x.status === "succeeded" && x;
    }, "credited by the query");
    assert.match(credited.credit_key, /^stk-/, "by the query's success, which says no amount");
    const answers = await Promise.all([1, 2, 3].map(() => h.post(`/mpesa/stk/${p.token}`, successBody(p.checkout, p.receipt, p.phone, 99))));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200]);
    // Before, the late callback only recorded its receipt: the worker kept KES 1 M-Pesa never took, and nobody knew.
    const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.CALLBACK_MISMATCH });
    const mine = alerts.filter((a) => a.tipId === p.tipId);
    assert.equal(mine.length, 1, "flagged once");
    assert.match(mine[0].detail, /callback does not match the tip a query had credited in full: amount 99 instead of 100/);
    assert.equal((await row(p.tipId)).mpesa_receipt, p.receipt);
    assert.equal(await h.walletEntries(worker), 1);
  });

  const failureBody = (checkout: string, code: number, desc = "Request cancelled by user") => ({
    Body: { stkCallback: { MerchantRequestID: "m", CheckoutRequestID: checkout, ResultCode: code, ResultDesc: desc } },
  });

  test("the same failure called back five times at once fails the tip once, with one tip_failed event carrying the tip's fields", async () => {
    const worker = randomUUID();
    const p = await pushedNoCallback(worker);
    const answers = await Promise.all([1, 2, 3, 4, 5].map(() => h.post(`/daraja/stk/${p.token}`, failureBody(p.checkout, 1032))));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200]);
    assert.deepEqual(await callbackOutcomes(p.tipId), ["duplicate", "duplicate", "duplicate", "duplicate", "failed"]);
    const failed = await row(p.tipId);
    assert.deepEqual([failed.status, failed.result_code], ["failed", "1032"]);
    const { rows } = await h.t.db.pool.query("SELECT event_id, payload FROM payment.outbox WHERE subject = 'ttip.payment.tip_failed' AND position($1 in encode(payload, 'escape')) > 0", [p.tipId]);
    assert.equal(rows.length, 1);
    // The event the step-by-step path builds from the row, field for field (its meta aside: its own id and time).
    const event = fromBinary(TipFailedSchema, rows[0].payload);
    const built = create(TipFailedSchema, {
      tipId: p.tipId, workerId: worker, qrCodeId: "", amount: { amountMinor: 10000n, currency: "KES" }, method: PaymentMethod.MPESA, resultCode: "1032",
      reason: failed.result_message, venueId: "", pushRefused: false, createdBy: "",
    });
    assert.deepEqual({ ...event, meta: undefined }, { ...built, meta: undefined });
    assert.deepEqual([event.meta?.id, event.meta?.producer, event.meta?.correlationId], [rows[0].event_id, "payment", p.tipId]);
    assert.equal(await h.balance(worker), 0n);
  });

  test("a success after a failure is still credited, once, as the money was taken; a failure after that changes nothing", async () => {
    const worker = randomUUID();
    const p = await pushedNoCallback(worker);
    assert.equal((await h.post(`/daraja/stk/${p.token}`, failureBody(p.checkout, 1037, "DS timeout user cannot be reached"))).status, 200);
    assert.equal((await status(p.tipId)).status, TipStatus.FAILED);
    assert.equal((await h.post(`/daraja/stk/${p.token}`, successBody(p.checkout, p.receipt, p.phone))).status, 200);
    assert.equal((await status(p.tipId)).status, TipStatus.SUCCEEDED);
    await creditRecorded(p.tipId);
    assert.equal((await h.post(`/daraja/stk/${p.token}`, failureBody(p.checkout, 1032))).status, 200);
    assert.equal((await status(p.tipId)).status, TipStatus.SUCCEEDED);
    assert.deepEqual(await callbackOutcomes(p.tipId), ["credited", "duplicate", "failed"]);
    assert.equal(await h.balance(worker), 9500n);
    assert.equal(await h.walletEntries(worker), 1);
    assert.equal(await outboxCount("ttip.payment.tip_succeeded", p.tipId), 1);
  });

  test("a failure naming another push's CheckoutRequestID fails nothing: stored, flagged as unknown", async () => {
    const worker = randomUUID();
    const p = await pushedNoCallback(worker);
    assert.equal((await h.post(`/daraja/stk/${p.token}`, failureBody("ws_CO_NOT_THIS_ONE", 1032))).status, 200);
    assert.equal((await status(p.tipId)).status, TipStatus.PENDING);
    const { rows } = await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE external_reference = 'ws_CO_NOT_THIS_ONE'");
    assert.deepEqual(rows.map((r) => r.outcome), ["unknown"]);
    assert.equal(await outboxCount("ttip.payment.tip_failed", p.tipId), 0);
    // Its own push's failure still fails it (and leaves no pending tip to later tests' reconciliation).
    assert.equal((await h.post(`/daraja/stk/${p.token}`, failureBody(p.checkout, 1032))).status, 200);
    assert.equal((await status(p.tipId)).status, TipStatus.FAILED);
    assert.equal(await outboxCount("ttip.payment.tip_failed", p.tipId), 1);
  });

  test("a success paid from another number than the tip's goes to suspense and is held", async () => {
    const worker = randomUUID();
    const p = await pushedNoCallback(worker);
    const stranger = `254${phone().slice(1)}`; // another subscriber than the tip's: testPhone never repeats one
    assert.equal((await h.post(`/mpesa/stk/${p.token}`, successBody(p.checkout, p.receipt, stranger))).status, 200);
    assert.equal((await status(p.tipId)).status, TipStatus.HELD_FOR_REVIEW);
    assert.deepEqual(await callbackOutcomes(p.tipId), ["held"]);
    const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.CALLBACK_MISMATCH });
    assert.ok(alerts.some((a) => a.tipId === p.tipId && /paid from/.test(a.detail)));
    await eventually(async () => (await row(p.tipId)).credit_entry_id, "parked in suspense");
    assert.equal(await h.balance(worker), 0n);
  });

  test("a lost callback is recovered by reconciliation, once, even with replicas reconciling together", async () => {
    const worker = randomUUID();
    const { tip: t } = await tip(worker, phone("0003"));
    await h.sim.idle(); // every callback the simulator scheduled has been sent
    assert.equal((await status(t!.tipId)).status, TipStatus.PENDING, "no callback came");
    h.clock.advance(h.config.stkDeadlineMs);
    // Four passes at once, as four replicas would run them.
    const passes = await Promise.all([1, 2, 3, 4].map(() => internal.reconcilePending({ limit: 100 })));
    assert.equal(passes.reduce((s, p) => s + p.settled, 0), 1, "exactly one pass settled it");
    const done = await status(t!.tipId);
    assert.equal(done.status, TipStatus.SUCCEEDED);
    // Asked by one pass: each pass counts the tips it asked about. Not Daraja's count of queries, which
    // is more when that pass's query was answered after its client's timeout (a loaded machine) and sent again.
    assert.equal(passes.reduce((s, p) => s + p.queried, 0), 1, "one pass queried it");
    const r = await row(t!.tipId);
    assert.ok(h.sim.transactions().find((x) => x.checkoutRequestId === r.checkout_request_id)!.queries >= 1, "Daraja was asked");
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    await reconcile();
    assert.equal(await h.walletEntries(worker), 1);
  });

  test("an STK query Daraja refuses is counted as query_error, not as a tip the query found failed (a lost callback, which pages)", async () => {
    const worker = randomUUID();
    const { tip: t } = await tip(worker, phone("0003")); // the callback is lost
    await h.sim.idle();
    const outcomes = async () => {
      const { values } = await h.t.ctx.metrics.registry.getSingleMetric("ttip_payment_stk_reconciliation_total")!.get();
      return Object.fromEntries(values.map((v) => [v.labels.outcome, v.value]));
    };
    const before = await outcomes();
    const daraja = h.config.daraja!;
    h.config.daraja = darajaRefusing(daraja, "/stkpushquery/v1/query", "500.003.02", "System is busy. Please try again in few minutes.");
    try {
      await reconcile();
    } finally {
      h.config.daraja = daraja;
    }
    const after = await outcomes();
    assert.equal((after.query_error ?? 0) - (before.query_error ?? 0), 1);
    assert.equal(after.query_failed ?? 0, before.query_failed ?? 0, "before: query_failed, which TTIPCallbacksLost counts");
    assert.equal((await status(t!.tipId)).status, TipStatus.PENDING, "still pending: the next pass asks again");
  });

  test("a pass whose STK query outlived its lease lets go of no later pass's lease, and the tip's check is counted once, by the pass holding it", async () => {
    const worker = randomUUID();
    const { tip: t } = await tip(worker, phone("0003")); // the callback is lost: success comes by query
    await h.sim.idle();
    const tipId = t!.tipId;
    const checkout = (await row(tipId)).checkout_request_id as string;
    const leaseOf = async () => (await h.t.db.pool.query("SELECT lease_until::text AS lease, checks FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0];
    // This tip's STK queries wait in the proxy until let go; the client waits longer than any hold here.
    const proxy = await startHoldingProxy(h.sim.url, (r) => r.path === "/mpesa/stkpushquery/v1/query" && r.body.includes(checkout));
    const [daraja, leaseMs] = [h.config.daraja!, h.config.reconcileLeaseMs];
    h.config.daraja = { ...daraja, baseUrl: proxy.url, timeoutMs: 60_000 };
    // Shortened so that the held query outlives it (as a slow STK query outlives 120 s).
    h.config.reconcileLeaseMs = 1;
    try {
      h.clock.advance(h.config.stkDeadlineMs);
      // Its lease past, another replica's pass leases the tip and asks about it too.
      const passes = await twoPassesHeld(proxy, () => internal.reconcilePending({ limit: 100 }), "query");
      const later = (await leaseOf()).lease as string;
      await passes.finishFirst();
      assert.deepEqual(await leaseOf(), { lease: later, checks: 0 }, "the second pass's lease stands, and the first counted no check");
      await passes.finishSecond();
      assert.deepEqual(await leaseOf(), { lease: null, checks: 1 }, "let go by the pass holding it, its check counted once");
    } finally {
      h.config.daraja = daraja;
      h.config.reconcileLeaseMs = leaseMs;
      await proxy.close();
    }
    assert.equal((await status(tipId)).status, TipStatus.SUCCEEDED);
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    assert.equal(await h.walletEntries(worker), 1, "credited once");
  });

  test("a pass whose STK query about one tip outlived its lease leaves its next tip to the replica that leased it since: that tip is asked about once", async () => {
    // Their callbacks lost: success comes by query.
    const tips = [(await tip(randomUUID(), phone("0003"))).tip!.tipId, (await tip(randomUUID(), phone("0003"))).tip!.tipId];
    await h.sim.idle();
    const [first, second] = await Promise.all(tips.map(async (tipId) => (await row(tipId)).checkout_request_id as string));
    const queries = (checkout: string) => h.sim.transactions().find((x) => x.checkoutRequestId === checkout)!.queries;
    // Both due before any other tip, the first one first: one pass leases both and asks about the first before the second.
    await h.t.db.pool.query("UPDATE payment.tips SET next_check_at = now() - interval '200 years' WHERE tip_id = $1", [tips[0]]);
    await h.t.db.pool.query("UPDATE payment.tips SET next_check_at = now() - interval '199 years' WHERE tip_id = $1", [tips[1]]);
    const proxy = await startHoldingProxy(h.sim.url, (r) => r.path === "/mpesa/stkpushquery/v1/query" && r.body.includes(first));
    const [daraja, leaseMs] = [h.config.daraja!, h.config.reconcileLeaseMs];
    h.config.daraja = { ...daraja, baseUrl: proxy.url, timeoutMs: 60_000 };
    // Shortened so that the held query outlives it (as a slow STK query outlives 120 s).
    h.config.reconcileLeaseMs = 1;
    let pass: Promise<unknown> | undefined;
    try {
      pass = internal.reconcilePending({ limit: 100 });
      await eventually(async () => proxy.held() === 1, "the pass's query about the first tip held");
      // The pass's lease past, another replica (an admin's re-query) leases the second tip and asks about it.
      await adminClient.requeryPayment({ subject: { case: "tipId", value: tips[1] } });
      assert.equal(queries(second), 1, "the other replica asked");
      proxy.releaseOldest();
      await pass;
    } finally {
      h.config.daraja = daraja;
      h.config.reconcileLeaseMs = leaseMs;
      await proxy.close();
      await pass?.catch(() => undefined);
    }
    // Before, the pass asked about it again on its way, under the lease it had lost.
    assert.equal(queries(second), 1, "asked about once");
    assert.equal(queries(first), 1, "the first asked about by the pass");
    for (const tipId of tips) assert.equal((await status(tipId)).status, TipStatus.SUCCEEDED);
  });

  test("a tip's deadline and first check are set on the service's clock, the one reconciliation reads them on", async () => {
    // The service's clock 10 minutes ahead of the database's (a test's clock moved on; a replica's clock apart from PostgreSQL's).
    h.clock.advance(10 * 60_000);
    const before = h.clock.now();
    const { tip: t } = await tip(randomUUID(), phone("0003"));
    const r = await row(t!.tipId);
    // Before, set from the database's now(): 10 minutes early on this clock.
    assert.ok(r.deadline_at.getTime() >= before + h.config.stkDeadlineMs, `deadline ${r.deadline_at.toISOString()} on the service's clock`);
    assert.equal(r.next_check_at.getTime(), r.deadline_at.getTime());
  });

  test("a reconciliation pass's limit is the contract's (1 to 1,000): 0, negative and larger limits are refused naming limit, and a due tip is left as it was", async () => {
    const worker = randomUUID();
    const { tip: t } = await tip(worker, phone("0003"));
    await h.sim.idle();
    h.clock.advance(h.config.stkDeadlineMs);
    const refused = (e: ConnectError) => e.code === Code.InvalidArgument && /limit/.test(e.message);
    for (const limit of [0, -1, 1001, 2 ** 31 - 1]) {
      await assert.rejects(internal.reconcilePending({ limit }), refused, `limit ${limit}`);
      await assert.rejects(internal.reconcileCardBalance({ limit }), refused, `card balance, limit ${limit}`);
    }
    const r = await row(t!.tipId);
    assert.deepEqual([r.status, r.checks, r.lease_until], ["pending", 0, null], "no pass ran");
    assert.equal(h.sim.transactions().find((x) => x.checkoutRequestId === r.checkout_request_id)!.queries, 0, "nothing asked of M-Pesa");
  });

  test("a crash between the wallet entry and its record: the retry gets the same entry, even after the receipt arrived", async () => {
    const worker = randomUUID();
    const { tip: t } = await tip(worker, phone("0003")); // the callback is lost: success comes by query
    await reconcile();
    await eventually(async () => (await row(t!.tipId)).credit_entry_id, "credited by query");
    const decided = await row(t!.tipId);
    assert.match(decided.credit_key, /^stk-/);
    // The process dies after the wallet posted but before payment's record (and its event) committed.
    await h.t.db.pool.query("UPDATE payment.tips SET credit_entry_id = NULL, credited_at = NULL WHERE tip_id = $1", [t!.tipId]);
    await h.t.db.pool.query("DELETE FROM payment.outbox WHERE subject = 'ttip.payment.tip_succeeded' AND position($1 in encode(payload, 'escape')) > 0", [t!.tipId]);
    const callback = await h.post(`/mpesa/stk/${decided.callback_token}`, {
      Body: { stkCallback: { MerchantRequestID: "m", CheckoutRequestID: decided.checkout_request_id, ResultCode: 0, ResultDesc: "ok", CallbackMetadata: { Item: [
        { Name: "Amount", Value: 100 }, { Name: "MpesaReceiptNumber", Value: "LATE123456" }, { Name: "TransactionDate", Value: 20260101120000 }, { Name: "PhoneNumber", Value: Number(`254${decided.phone.slice(3)}`) },
      ] } } },
    });
    assert.equal(callback.status, 200);
    await reconcile();
    const after = await eventually(async () => {
      const x = await row(t!.tipId);
      return x.credit_entry_id && x;
    }, "the credit recorded again");
    assert.equal(after.mpesa_receipt, "LATE123456", "the receipt is kept on the tip");
    assert.equal(await h.walletEntries(worker), 1, "one wallet entry");
    assert.equal(await h.balance(worker), 9500n);
    assert.equal(await outboxCount("ttip.payment.tip_succeeded", t!.tipId), 1);
  });

  /** The tip expired, flagged (CALLBACK_MISMATCH) for matching against the paybill statement, its detail matching `detail`. */
  const expiredFlagged = async (tipId: string, detail: RegExp, why = "flagged for matching against the paybill statement") => {
    assert.equal((await status(tipId)).status, TipStatus.EXPIRED);
    const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.CALLBACK_MISMATCH });
    const alert = alerts.find((a) => a.tipId === tipId);
    assert.ok(alert, why);
    assert.match(alert.detail, detail);
  };

  test("a push whose answer never came and whose callback was lost expires flagged: it cannot be asked about, yet may be paid", async () => {
    const worker = randomUUID();
    const p = phone();
    // Charged at once; the answer comes after the client's timeout; no callback.
    h.sim.script({ phone: `254${p.slice(1)}` }, { stk: "lost", answerDelayMs: DARAJA_LATE_MS });
    const { tip: t } = await tip(worker, p);
    assert.equal(t!.status, TipStatus.PENDING, "an unanswered push stays pending");
    assert.equal((await row(t!.tipId)).checkout_request_id, null);
    await reconcilePastExpiry();
    await expiredFlagged(t!.tipId, /CheckoutRequestID/);
    assert.equal(await h.balance(worker), 0n, "nothing credited without proof of payment");
  });

  test("a push M-Pesa is still deciding at its expiry (the query says \"being processed\") expires flagged; its late callback still credits it", async () => {
    const worker = randomUUID();
    const p = phone();
    // The callback is held back (delayed past the expiry): until it goes out, every query answers "processing".
    const callbacks = h.sim.hold("stk");
    try {
      h.sim.script({ phone: `254${p.slice(1)}` }, { stk: "late", delayMs: 10 });
      const { tip: t } = await tip(worker, p);
      assert.ok((await row(t!.tipId)).checkout_request_id, "the push was answered");
      await reconcilePastExpiry();
      // Before, "processing" read as no failure of the query: expired silently, and a lost callback left the money unseen.
      await expiredFlagged(t!.tipId, /STK query could not say whether it was paid .*: the customer may have paid/);
      await callbacks.release();
      await eventually(async () => (await h.balance(worker)) === 9500n, "the late callback credits it");
      assert.equal((await status(t!.tipId)).status, TipStatus.SUCCEEDED);
    } finally {
      await callbacks.release(); // again, if the test failed before: nothing parked is left to a later test
    }
  });

  test("a paid push whose callback was lost, while every STK query fails, expires flagged: M-Pesa never said it was unpaid", async () => {
    const worker = randomUUID();
    const p = phone();
    // Paid, no callback, and each query answered without a ResultCode (nothing final said).
    h.sim.script({ phone: `254${p.slice(1)}` }, { stk: "lost", blankQueryResult: true });
    const { tip: t } = await tip(worker, p);
    assert.ok((await row(t!.tipId)).checkout_request_id, "the push was answered");
    await reconcilePastExpiry();
    await expiredFlagged(t!.tipId, /STK query could not say whether it was paid \(.*ResultCode.*\): the customer may have paid/, "flagged for matching against the paybill statement (before: expired silently)");
    assert.equal(await h.balance(worker), 0n, "nothing credited without proof of payment");
    assert.equal(await outboxCount("ttip.payment.tip_failed", t!.tipId), 1);
  });

  /**
   * Runs `steps` with STK callbacks held until it lets them go (or ends): a callback meant to come after
   * a reconciliation pass does, however slow the machine (one 800 ms or 1.5 s after its push came first at load 45).
   */
  const callbacksHeld = async (steps: (letGo: () => Promise<void>) => Promise<void>) => {
    const callbacks = h.sim.hold("stk");
    try {
      await steps(async () => (await callbacks.release(), await h.sim.idle()));
    } finally {
      await callbacks.release();
    }
  };
  /** The callbacks the simulator delivered for a tip's push. */
  const callbacksSent = async (tipId: string) => {
    const checkout = (await row(tipId)).checkout_request_id;
    return h.sim.transactions().find((x) => x.checkoutRequestId === checkout)?.callbacksSent;
  };

  test("a failure learned by STK query ends the tip once, with one tip_failed; its callback arriving after changes nothing", () => callbacksHeld(async (letGo) => {
    const worker = randomUUID();
    const p = phone();
    // Cancelled by the customer; the callback comes after reconciliation has asked.
    h.sim.script({ phone: `254${p.slice(1)}` }, { stk: "cancelled" });
    const { tip: t } = await tip(worker, p);
    const pass = await reconcile();
    assert.ok(pass.queried >= 1);
    const failed = await status(t!.tipId);
    assert.equal(failed.status, TipStatus.FAILED);
    assert.equal((await row(t!.tipId)).result_code, "1032");
    await letGo(); // the callback arrives
    assert.equal(await callbacksSent(t!.tipId), 1);
    assert.equal((await status(t!.tipId)).status, TipStatus.FAILED);
    assert.equal(await outboxCount("ttip.payment.tip_failed", t!.tipId), 1);
    assert.equal(await h.walletEntries(worker), 0);
  }));

  test("a late callback after the tip expired still credits, once", () => callbacksHeld(async (letGo) => {
    const worker = randomUUID();
    const { tip: t } = await tip(worker, phone("0004"));
    const pass = await reconcilePastExpiry();
    assert.ok(pass.queried >= 1);
    const expired = await status(t!.tipId);
    assert.equal(expired.status, TipStatus.EXPIRED, "the query said 'processing' and the deadline passed");
    assert.equal(await outboxCount("ttip.payment.tip_failed", t!.tipId), 1);
    const expiredAt = (await row(t!.tipId)).completed_at as Date;
    await letGo(); // the late callback arrives
    assert.equal(await callbacksSent(t!.tipId), 1);
    const done = await status(t!.tipId);
    assert.equal(done.status, TipStatus.SUCCEEDED);
    assert.ok(done.mpesaReceipt);
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    // Its tip_succeeded says which failure it replaces (analytics takes it back: one attempt, paid).
    const { rows } = await h.t.db.pool.query("SELECT payload FROM payment.outbox WHERE subject = 'ttip.payment.tip_succeeded' AND position($1 in encode(payload, 'escape')) > 0", [t!.tipId]);
    const succeeded = fromBinary(TipSucceededSchema, rows[0].payload);
    assert.equal(succeeded.replacedFailureCode, "expired");
    assert.equal(timestampDate(succeeded.replacedFailureAt!).getTime(), expiredAt.getTime());
    await reconcile();
    assert.equal(await h.walletEntries(worker), 1);
  }));

  /** A tip of KES 100 to `worker` expired while its callback is held: its row and the simulator's payment. */
  const expiredUnanswered = async (worker: string) => {
    const { tip: t } = await tip(worker, phone("0004"));
    await reconcilePastExpiry();
    assert.equal((await status(t!.tipId)).status, TipStatus.EXPIRED);
    const r = await row(t!.tipId);
    return { t, r, sim: h.sim.transactions().find((x) => x.checkoutRequestId === r.checkout_request_id)! };
  };

  /** A late success for an expired tip, stored but not decided (its deciding transaction failed: Daraja answered 500). */
  const storedUndecided = async (worker: string) => {
    const { t, r, sim } = await expiredUnanswered(worker);
    // The deciding transaction fails once (a statement timeout, a failover): Daraja is answered 500 and never sends it again.
    const trigger = `stk_test_refuse_${t!.tipId.replaceAll("-", "")}`;
    await h.t.db.pool.query(`CREATE FUNCTION payment.${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'deciding refused'; END $$`);
    await h.t.db.pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE ON payment.tips FOR EACH ROW WHEN (NEW.tip_id = '${t!.tipId}'::uuid) EXECUTE FUNCTION payment.${trigger}()`);
    try {
      assert.equal((await h.post(`/mpesa/stk/${r.callback_token}`, successBody(r.checkout_request_id, sim.receipt!, sim.phone, 100))).status, 500);
    } finally {
      await h.t.db.pool.query(`DROP TRIGGER ${trigger} ON payment.tips`);
      await h.t.db.pool.query(`DROP FUNCTION payment.${trigger}()`);
    }
    const stored = () => h.t.db.pool.query("SELECT callback_id, outcome FROM payment.callbacks WHERE source = 'mpesa_stk' AND position($1 in convert_from(raw_body, 'UTF8')) > 0", [r.checkout_request_id]);
    assert.deepEqual((await stored()).rows.map((c) => c.outcome), ["received"], "kept, undecided");
    assert.equal((await status(t!.tipId)).status, TipStatus.EXPIRED);
    return { t, stored, callbackId: (await stored()).rows[0].callback_id as string };
  };

  test("a late callback stored but not decided (its transaction failed) is decided by a later pass, once: the worker gets the money", () => callbacksHeld(async () => {
    const worker = randomUUID();
    const { t, stored, callbackId } = await storedUndecided(worker);
    // A pass leaves a callback of the last minute to its own handling; an older one it decides as if it came now.
    await reconcile();
    assert.equal((await status(t!.tipId)).status, TipStatus.EXPIRED, "not before a minute");
    await h.t.db.pool.query("UPDATE payment.callbacks SET received_at = received_at - interval '2 minutes' WHERE callback_id = $1", [callbackId]);
    await reconcile();
    assert.equal((await status(t!.tipId)).status, TipStatus.SUCCEEDED);
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    assert.deepEqual((await stored()).rows.map((c) => c.outcome), ["credited"]);
    await reconcile();
    assert.equal(await h.walletEntries(worker), 1, "decided once");
  }));

  test("a late callback stored undecided by the version before tokens were checked at storing is decided by its body's push, as that version did", () => callbacksHeld(async () => {
    const worker = randomUUID();
    const { t, callbackId } = await storedUndecided(worker);
    // As the version before stored it (its rollout's pods too): no tip kept, nothing said of its token.
    await h.t.db.pool.query("UPDATE payment.callbacks SET tip_id = NULL, token_checked = NULL, received_at = received_at - interval '2 minutes' WHERE callback_id = $1", [callbackId]);
    await reconcile();
    assert.equal((await status(t!.tipId)).status, TipStatus.SUCCEEDED);
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
  }));

  test("a stored callback whose path's token named no tip is not credited by the replay, though its body names a real push", () => callbacksHeld(async () => {
    const worker = randomUUID();
    const { t, r, sim } = await expiredUnanswered(worker);
    // A forged success: the push's CheckoutRequestID, amount, number and receipt, at a token that is not the tip's.
    const forged = randomUUID().replaceAll("-", "");
    assert.equal((await h.post(`/mpesa/stk/${forged}`, successBody(r.checkout_request_id, sim.receipt!, sim.phone, 100))).status, 200);
    const stored = () => h.t.db.pool.query("SELECT callback_id, outcome FROM payment.callbacks WHERE source = 'mpesa_stk' AND position($1 in convert_from(raw_body, 'UTF8')) > 0", [r.checkout_request_id]);
    assert.deepEqual((await stored()).rows.map((c) => c.outcome), ["unknown"]);
    // Its marking lost (a failed statement, a stop between two): stored as 'received', over a minute ago.
    await h.t.db.pool.query("UPDATE payment.callbacks SET outcome = 'received', received_at = received_at - interval '2 minutes' WHERE callback_id = $1", [(await stored()).rows[0].callback_id]);
    await reconcile();
    // Before, the replay found the tip by the body's CheckoutRequestID and credited it: money no one had paid.
    assert.equal((await status(t!.tipId)).status, TipStatus.EXPIRED);
    assert.deepEqual((await stored()).rows.map((c) => c.outcome), ["unknown"]);
    assert.equal(await h.balance(worker), 0n);
  }));

  test("a tip that expired, then held on its late callback and rejected, has told its failure once: one tip_failed", () => callbacksHeld(async () => {
    const worker = randomUUID();
    const { t, r, sim } = await expiredUnanswered(worker);
    // A late success for KES 99 of the 100 asked: held, not credited.
    assert.equal((await h.post(`/mpesa/stk/${r.callback_token}`, successBody(r.checkout_request_id, sim.receipt!, sim.phone, 99))).status, 200);
    assert.equal((await settled(t!.tipId)).status, TipStatus.HELD_FOR_REVIEW);
    assert.equal((await adminClient.reviewTip({ tipId: t!.tipId, approve: false, note: "not the customer's" })).tip!.status, TipStatus.FAILED);
    // Before, the rejection told it again: analytics counted two failed attempts, partners heard tip_failed twice.
    assert.equal(await outboxCount("ttip.payment.tip_failed", t!.tipId), 1);
    assert.equal(await h.balance(worker), 0n);
  }));

  test("out of order: a callback before the push's own answer, a failure after the success, a callback after the query", async () => {
    // The callback overtakes the synchronous answer.
    const w1 = randomUUID();
    const { tip: early } = await tip(w1, phone("0005"));
    const e = await settled(early!.tipId);
    assert.equal(e.status, TipStatus.SUCCEEDED);
    assert.ok((await row(early!.tipId)).checkout_request_id);
    await eventually(async () => (await h.balance(w1)) === 9500n, "credited");

    // A failure arriving after the success changes nothing.
    const r = await row(early!.tipId);
    const late = await h.post(`/mpesa/stk/${r.callback_token}`, {
      Body: { stkCallback: { MerchantRequestID: r.merchant_request_id ?? "m", CheckoutRequestID: r.checkout_request_id, ResultCode: 1032, ResultDesc: "Request cancelled by user" } },
    });
    assert.equal(late.status, 200);
    assert.equal((await status(early!.tipId)).status, TipStatus.SUCCEEDED);
    assert.equal(await h.walletEntries(w1), 1);

    // The query settles first (no receipt in a query); the callback comes afterwards with the receipt.
    const w2 = randomUUID();
    const p2 = phone();
    h.sim.script({ phone: `254${p2.slice(1)}` }, { stk: "query_first" });
    const { tip: qf } = await tip(w2, p2);
    await reconcile();
    assert.equal((await status(qf!.tipId)).status, TipStatus.SUCCEEDED);
    await h.sim.idle();
    const withReceipt = await eventually(async () => {
      const s = await status(qf!.tipId);
      return s.mpesaReceipt !== "" && s;
    }, "the receipt recorded from the later callback");
    assert.equal(withReceipt.status, TipStatus.SUCCEEDED);
    await eventually(async () => (await h.balance(w2)) === 9500n, "credited");
    assert.equal(await h.walletEntries(w2), 1);
  });

  for (const [suffix, code, words] of [
    ["1032", "1032", /cancelled/i],
    ["1037", "1037", /could not reach your phone|not answered/i],
    ["0001", "1", /balance is too low/i],
    ["2001", "2001", /PIN/],
    ["0017", "17", /same amount from this number within 2 minutes/i],
  ] as const) {
    test(`result ${code}: the tip fails, nothing is credited, the customer is told why`, async () => {
      const worker = randomUUID();
      const { tip: t } = await tip(worker, phone(suffix));
      const done = await settled(t!.tipId);
      assert.equal(done.status, TipStatus.FAILED);
      assert.equal(done.resultCode, code);
      assert.match(done.resultMessage, words);
      assert.equal(await h.balance(worker), 0n);
      assert.equal(await outboxCount("ttip.payment.tip_failed", t!.tipId), 1);
      await reconcile();
      assert.equal((await status(t!.tipId)).status, TipStatus.FAILED);
      assert.equal(await h.balance(worker), 0n);
    });
  }

  test("after M-Pesa's 'rule limited' (17), a retry of the same amount from the number is refused with the wait, and nothing is pushed", async () => {
    const customer = phone("0017");
    const { tip: first } = await tip(randomUUID(), customer);
    assert.equal((await settled(first!.tipId)).resultCode, "17");
    const pushes = () => h.sim.transactions().filter((x) => x.kind === "stk" && x.phone === `254${customer.slice(1)}`).length;
    const before = pushes();
    assert.equal(before, 1);
    await assert.rejects(tip(randomUUID(), customer), (e: ConnectError) =>
      e.code === Code.FailedPrecondition && /try again in \d+ seconds, or change the amount/.test(e.message));
    assert.equal(pushes(), before, "no second prompt for a push M-Pesa would refuse");
    const { tip: other } = await tip(randomUUID(), customer, 150);
    // Pushed (this number's pushes all come back 17, 30 ms later: under load that callback may
    // already have failed it when CreateTip answers, so its status is not what says it went through).
    assert.ok(other?.tipId, "another amount goes through");
    assert.equal(pushes(), before + 1, "and is pushed");
    assert.equal((await settled(other.tipId)).resultCode, "17");
  });

  test("Swahili when the customer asks for it", async () => {
    const { tip: t } = await tip(randomUUID(), phone("1032"));
    await settled(t!.tipId);
    const sw = await pay.getTip({ tipId: t!.tipId }, { headers: { "accept-language": "sw-KE" } });
    assert.match(sw.tip!.resultMessage, /Umesitisha/);
  });

  test("forged callbacks credit nothing: an unlisted address, an unknown token, an unknown CheckoutRequestID", async () => {
    const worker = randomUUID();
    const { tip: t } = await tip(worker, phone("0003")); // its real callback is lost
    const r = await eventually(async () => {
      const x = await row(t!.tipId);
      return x.checkout_request_id && x;
    }, "push answered");
    const success = (checkout: string) => ({
      Body: { stkCallback: { MerchantRequestID: "x", CheckoutRequestID: checkout, ResultCode: 0, ResultDesc: "ok", CallbackMetadata: { Item: [
        { Name: "Amount", Value: 100 }, { Name: "MpesaReceiptNumber", Value: "FORGED1234" }, { Name: "TransactionDate", Value: 20260101120000 }, { Name: "PhoneNumber", Value: Number(`254${r.phone.slice(3)}`) },
      ] } } },
    });
    const fromOutside = await h.post(`/mpesa/stk/${r.callback_token}`, success(r.checkout_request_id), "127.0.0.2");
    assert.equal(fromOutside.status, 403);
    const unknownToken = await h.post(`/mpesa/stk/${"A".repeat(32)}`, success(r.checkout_request_id));
    assert.equal(unknownToken.status, 200, "Daraja is told it was received; nothing more");
    const unknownCheckout = await h.post(`/mpesa/stk/${r.callback_token}`, success("ws_CO_forged"));
    assert.equal(unknownCheckout.status, 200);
    const malformed = await h.post(`/mpesa/stk/${r.callback_token}`, { Body: { stkCallback: { ResultCode: "zero" } } });
    assert.equal(malformed.status, 400);
    assert.equal((await status(t!.tipId)).status, TipStatus.PENDING);
    assert.equal(await h.balance(worker), 0n);

    const { callbacks } = await adminClient.listUnmatchedCallbacks({});
    const forged = callbacks.filter((c) => Buffer.from(c.rawBody).toString().includes("FORGED1234") || Buffer.from(c.rawBody).toString().includes("zero"));
    assert.equal(forged.length, 4, "all four stored raw");
    assert.ok(forged.some((c) => c.remoteAddress.endsWith("127.0.0.2")));
    const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.UNKNOWN_CALLBACK });
    assert.ok(alerts.length >= 2, "unknown token and unknown CheckoutRequestID alerted");
  });

  test("a callback whose amount does not match goes to suspense and is held; an admin's approval credits the worker", async () => {
    const worker = randomUUID();
    const p = phone();
    h.sim.script({ phone: `254${p.slice(1)}` }, { stk: "amount_mismatch" });
    const { tip: t } = await tip(worker, p);
    const done = await settled(t!.tipId);
    assert.equal(done.status, TipStatus.HELD_FOR_REVIEW);
    assert.equal(await h.balance(worker), 0n);
    const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.CALLBACK_MISMATCH });
    assert.ok(alerts.some((a) => a.tipId === t!.tipId && /amount 99 instead of 100/.test(a.detail)));
    await eventually(async () => (await row(t!.tipId)).credit_entry_id, "parked in suspense");
    const reviewed = await adminClient.reviewTip({ tipId: t!.tipId, approve: true, note: "customer confirmed" });
    assert.equal(reviewed.tip!.status, TipStatus.SUCCEEDED);
    // M-Pesa took KES 99, not 100: suspense held 99 and the worker gets it less the quoted KES 5 fee.
    await eventually(async () => (await h.balance(worker)) === 9400n, "credited after approval");
    assert.equal((await row(t!.tipId)).received_minor, 9900n);
    // Approved again (its answer lost, say): the approved tip, and nothing more booked.
    assert.equal((await adminClient.reviewTip({ tipId: t!.tipId, approve: true, note: "again" })).tip!.status, TipStatus.SUCCEEDED);
    assert.equal(await h.walletEntries(worker), 1);
    assert.ok(await h.trialBalanced());
  });

  test("a held tip whose payment does not cover its fee cannot be approved (nothing would reach the worker): refused saying so, left held, and rejected as any other", async () => {
    const worker = randomUUID();
    const p = await pushedNoCallback(worker);
    // A callback saying M-Pesa took KES 5 of the KES 100 asked: the quoted fee (KES 5) takes it all.
    assert.equal((await h.post(`/mpesa/stk/${p.token}`, successBody(p.checkout, p.receipt, p.phone, 5))).status, 200);
    assert.equal((await settled(p.tipId)).status, TipStatus.HELD_FOR_REVIEW);
    const refused = await adminClient.reviewTip({ tipId: p.tipId, approve: true, note: "customer confirmed" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(refused?.code, Code.FailedPrecondition, "before: the approval's claim was kept and retried every pass");
    assert.equal(refused?.rawMessage, "tip_id: M-Pesa took KES 5, which does not cover the tip's fee of KES 5: nothing would reach the worker; reject it, and the payment goes back to support to refund");
    const held = await row(p.tipId);
    assert.deepEqual([held.status, held.approval_receipt], ["held_for_review", null], "still held, nothing claimed");
    assert.equal((await adminClient.reviewTip({ tipId: p.tipId, approve: false, note: "short payment" })).tip!.status, TipStatus.FAILED);
    assert.equal(await h.balance(worker), 0n);
    assert.ok(await h.trialBalanced());
  });

  test("a held tip's approval losing to a concurrent rejection (which closed the approval's key first) is refused saying the rejection decided; nothing is paid and the rejection finishes", async () => {
    const worker = randomUUID();
    const p = phone();
    h.sim.script({ phone: `254${p.slice(1)}` }, { stk: "amount_mismatch" });
    const { tip: t } = await tip(worker, p);
    assert.equal((await settled(t!.tipId)).status, TipStatus.HELD_FOR_REVIEW);
    const held = await eventually(async () => {
      const r = await row(t!.tipId);
      return r.credit_entry_id && r;
    }, "parked in suspense");
    // Where a concurrent rejection is when the approval reaches wallet: the approval's key closed, the tip not yet marked.
    await new Ledger(h.t.ctx).closeApproval(`${held.credit_key}:approved`, { cause: { case: "mpesaReceipt", value: held.mpesa_receipt ?? held.credit_key } });
    await assert.rejects(adminClient.reviewTip({ tipId: t!.tipId, approve: true, note: "customer confirmed" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /^tip_id: a rejection of this tip came first .*nothing was paid to the worker/.test(e.rawMessage));
    assert.equal(await h.balance(worker), 0n, "nothing paid");
    assert.equal((await status(t!.tipId)).status, TipStatus.HELD_FOR_REVIEW);
    const rejected = await adminClient.reviewTip({ tipId: t!.tipId, approve: false, note: "stolen phone" });
    assert.equal(rejected.tip!.status, TipStatus.FAILED);
    assert.equal(await h.balance(worker), 0n);
    assert.ok(await h.trialBalanced());
  });

  test("bad input is INVALID_ARGUMENT naming the field and pushes nothing", async () => {
    const before = h.sim.transactions().length;
    await assert.rejects(tip(randomUUID(), "0812345678"), (e: ConnectError) => e.code === Code.InvalidArgument && /mpesa_phone/.test(e.message));
    await assert.rejects(
      pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: randomUUID() }, amount: { currency: "KES", amountMinor: 10050n }, payment: { case: "mpesaPhone", value: phone() } }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /whole/.test(e.message),
    );
    await assert.rejects(tip(randomUUID(), phone(), 250_001), (e: ConnectError) => e.code === Code.InvalidArgument && /amount/.test(e.message));
    await assert.rejects(
      pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: randomUUID() }, amount: KES(10), payment: { case: "card", value: true } }),
      // Card tips exist now (cards.test.ts); this harness configures no card provider.
      (e: ConnectError) => e.code === Code.FailedPrecondition && /card tips are not configured/.test(e.message),
    );
    assert.equal(h.sim.transactions().length, before);
  });

  test("fraud rules: blocked numbers refused, phone velocity refused, outliers held, all visible to admins", async () => {
    const blocked = phone();
    await adminClient.blockPhoneNumber({ phone: blocked, reason: "reported stolen" });
    await assert.rejects(tip(randomUUID(), blocked), (e: ConnectError) => e.code === Code.PermissionDenied);
    await adminClient.unblockPhoneNumber({ phone: blocked });

    const busy = phone("1032");
    for (let i = 0; i < 5; i++) await tip(randomUUID(), busy, 10);
    await assert.rejects(tip(randomUUID(), busy, 10), (e: ConnectError) => e.code === Code.ResourceExhausted && /mpesa_phone/.test(e.message));

    const worker = randomUUID();
    const { tip: big } = await tip(worker, phone(), 25_000);
    const done = await settled(big!.tipId);
    assert.equal(done.status, TipStatus.HELD_FOR_REVIEW, "paid, but held before crediting");
    assert.equal(await h.balance(worker), 0n);
    await eventually(async () => (await row(big!.tipId)).credit_entry_id, "parked in suspense");
    const rejected = await adminClient.reviewTip({ tipId: big!.tipId, approve: false, note: "card testing pattern" });
    assert.equal(rejected.tip!.status, TipStatus.FAILED);
    assert.match(rejected.tip!.resultMessage, /declined after review/);
    assert.equal(await h.balance(worker), 0n);

    const { alerts } = await adminClient.listFraudAlerts({});
    const reasons = new Set(alerts.map((a) => a.reason));
    for (const r of [FraudReason.BLOCKED_NUMBER, FraudReason.VELOCITY_PHONE, FraudReason.AMOUNT_OUTLIER]) assert.ok(reasons.has(r), FraudReason[r]);
    await assert.rejects(h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["worker"] }).listFraudAlerts({}), (e: ConnectError) => e.code === Code.PermissionDenied);
  });

  test("held tips from one number at once still count each other: twenty outliers together pass the number's limit of five no more than one by one", async () => {
    const busy = phone("1033");
    const sent = await Promise.allSettled(Array.from({ length: 20 }, () => tip(randomUUID(), busy, 25_000)));
    // Before, each held tip's transaction counted the others as not there yet: twenty placed, twenty prompts.
    const placed = sent.filter((r) => r.status === "fulfilled").length;
    assert.equal(placed, h.config.fraud.phonePerWindow);
    for (const r of sent) if (r.status === "rejected") assert.equal(ConnectError.from(r.reason).code, Code.ResourceExhausted);
    const { rows } = await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.tips WHERE phone = $1", [normalisePhone(busy)]);
    assert.equal(rows[0].n, h.config.fraud.phonePerWindow);
  });

  test("a worker tipping themself is held for review rather than refused", async () => {
    const worker = randomUUID();
    const self = await h.t.client(PaymentService, { subject: worker, roles: ["worker"] }).createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() },
    });
    assert.equal((await settled(self.tip!.tipId)).status, TipStatus.HELD_FOR_REVIEW);
    assert.equal(await h.balance(worker), 0n);
    const { alerts } = await adminClient.listFraudAlerts({});
    assert.ok(alerts.some((a) => a.reason === FraudReason.SELF_TIP && a.workerId === worker));
    // A worker who is staff too approves no tip of their own: before, they credited the tip they had held themselves.
    const ownAdmin = h.t.client(PaymentAdminService, { subject: worker, roles: ["worker", "admin"], stepUp: true });
    await assert.rejects(ownAdmin.reviewTip({ tipId: self.tip!.tipId, approve: true, note: "mine" }),
      (e: ConnectError) => e.code === Code.PermissionDenied && e.rawMessage === "tip_id: this is your own account's; another admin must decide it");
    assert.deepEqual([(await settled(self.tip!.tipId)).status, await h.balance(worker)], [TipStatus.HELD_FOR_REVIEW, 0n]);
    await adminClient.reviewTip({ tipId: self.tip!.tipId, approve: true, note: "their own money, tipped" });
    await eventually(async () => (await h.balance(worker)) > 0n, "another admin's approval credits it");
  });

  test("a held tip's key: the same request answers the held tip with its one alert; another request under it is ALREADY_EXISTS", async () => {
    const worker = randomUUID();
    const asWorker = h.t.client(PaymentService, { subject: worker, roles: ["worker"] });
    const p = phone();
    const request = { idempotencyKey: randomUUID(), recipient: { case: "workerId" as const, value: worker }, amount: KES(100), payment: { case: "mpesaPhone" as const, value: p } };
    const first = (await asWorker.createTip(request)).tip!;
    assert.equal((await row(first.tipId)).fraud_action, "hold");
    const again = (await asWorker.createTip(request)).tip!;
    assert.equal(again.tipId, first.tipId);
    await assert.rejects(asWorker.createTip({ ...request, amount: KES(101) }), (e: ConnectError) => e.code === Code.AlreadyExists && /idempotency_key/.test(e.message));
    const { alerts } = await adminClient.listFraudAlerts({});
    assert.equal(alerts.filter((a) => a.tipId === first.tipId).length, 1, "one alert, stored with the tip");
    assert.equal(h.sim.transactions().filter((t) => t.kind === "stk" && t.phone === `254${p.slice(1)}`).length, 1, "pushed once");
  });

  test("with M-Pesa unconfigured, a replay still answers its tip and a blocked number is still refused; a new tip is FAILED_PRECONDITION and nothing is stored", async () => {
    const worker = randomUUID();
    const p = phone();
    const key = `key-${randomUUID()}`;
    const { tip: first } = await tip(worker, p, 50, key);
    const blocked = phone();
    await adminClient.blockPhoneNumber({ phone: blocked, reason: "reported stolen" });
    const base = h.config.callbackBaseUrl;
    h.config.callbackBaseUrl = undefined;
    try {
      assert.equal((await tip(worker, p, 50, key)).tip!.tipId, first!.tipId);
      await assert.rejects(tip(worker, p, 60, key), (e: ConnectError) => e.code === Code.AlreadyExists);
      await assert.rejects(tip(randomUUID(), blocked), (e: ConnectError) => e.code === Code.PermissionDenied && /mpesa_phone/.test(e.message));
      const fresh = `key-${randomUUID()}`;
      await assert.rejects(tip(worker, p, 50, fresh), (e: ConnectError) => e.code === Code.FailedPrecondition && /M-Pesa is not configured/.test(e.message));
      const { rows } = await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.tips WHERE idempotency_key = $1", [fresh]);
      assert.equal(rows[0].n, 0);
    } finally {
      h.config.callbackBaseUrl = base;
      await adminClient.unblockPhoneNumber({ phone: blocked });
    }
  });

  test("a tip far above the worker's usual tips is an outlier, held for review", async () => {
    const worker = randomUUID();
    for (let i = 0; i < 5; i++) {
      const { tip: t } = await tip(worker, phone(), 10);
      assert.equal((await settled(t!.tipId)).status, TipStatus.SUCCEEDED);
    }
    const usual = await tip(worker, phone(), 150);
    assert.equal((await settled(usual.tip!.tipId)).status, TipStatus.SUCCEEDED, "15x the median is fine");
    const { tip: odd } = await tip(worker, phone(), 250);
    assert.equal((await settled(odd!.tipId)).status, TipStatus.HELD_FOR_REVIEW);
    const { alerts } = await adminClient.listFraudAlerts({ reason: FraudReason.AMOUNT_OUTLIER });
    assert.ok(alerts.some((a) => a.tipId === odd!.tipId && /median/.test(a.detail)));
    // The event carries the amount, for the staff alert (notification has no other way to know it).
    const { rows } = await h.t.db.pool.query("SELECT payload FROM payment.outbox WHERE subject = 'ttip.payment.fraud_alert' AND position($1 in encode(payload, 'escape')) > 0", [odd!.tipId]);
    const held = fromBinary(FraudAlertSchema, rows[0].payload);
    assert.deepEqual([held.action, held.tipAmount?.amountMinor, held.tipAmount?.currency], ["held", 25_000n, "KES"]);
  });

  test("repeated wrong PINs stop the number", async () => {
    const p = phone("2001");
    for (let i = 0; i < 3; i++) {
      const { tip: t } = await tip(randomUUID(), p, 10);
      await settled(t!.tipId);
    }
    await assert.rejects(tip(randomUUID(), p, 10), (e: ConnectError) => e.code === Code.ResourceExhausted && /PIN/.test(e.message));
  });

  test("a worker lists their own tips, newest first, page by page", async () => {
    const worker = randomUUID();
    for (let i = 0; i < 3; i++) await tip(worker, phone("1032"), 10 + i);
    const me = h.t.client(PaymentService, { subject: worker, roles: ["worker"] });
    const first = await me.listTips({ page: { pageSize: 2 } });
    assert.equal(first.tips.length, 2);
    assert.equal(first.tips[0].amount!.amountMinor, 1200n);
    const second = await me.listTips({ page: { pageSize: 2, pageToken: first.page!.nextPageToken } });
    assert.equal(second.tips.length, 1);
    assert.equal(second.page!.nextPageToken, "");
    assert.ok(first.tips.concat(second.tips).every((t) => t.workerId === worker));
  });

  test("a tip keeps the fee schedule version it was quoted under: a new version applies to the next tip once payment has its event, not to a replay of an earlier one", async () => {
    const worker = randomUUID();
    const p = phone();
    const key = `key-${randomUUID()}`;
    const { tip: before } = await tip(worker, p, 100, key);
    const was = await row(before!.tipId);
    const walletAdmin = createClient(WalletAdminService, h.t.ctx.peers("wallet"));
    const headers = { ...callerHeaders(admin.subject, "admin"), ...stepUpHeaders() };
    const { schedules } = await walletAdmin.listFeeSchedules({ currency: "KES" }, { headers });
    const current = schedules.at(-1)!;
    const version = (platformFeeBps: number) =>
      walletAdmin.createFeeSchedule({ idempotencyKey: `fees-${randomUUID()}`, schedule: { ...current, platformFeeBps, effectiveFrom: undefined } }, { headers });
    const { schedule: doubled } = await version(current.platformFeeBps * 2);
    try {
      assert.ok(doubled!.version > was.fee_schedule_version);
      // Payment quotes from its copy of the schedules, reloaded on wallet's event (well before the copy's age bound).
      await eventually(async () => (await h.copiedFeeScheduleVersion("KES")) === doubled!.version, "payment's copy has the new version");
      const replay = await row((await tip(worker, p, 100, key)).tip!.tipId);
      assert.deepEqual([replay.tip_id, replay.fee_schedule_version, replay.fee_minor], [was.tip_id, was.fee_schedule_version, was.fee_minor]);
      const next = await row((await tip(worker, p, 100)).tip!.tipId);
      assert.equal(next.fee_schedule_version, doubled!.version);
      assert.equal(next.fee_minor, was.fee_minor * 2n);
    } finally {
      const { schedule: restored } = await version(current.platformFeeBps);
      await eventually(async () => (await h.copiedFeeScheduleVersion("KES")) === restored!.version, "payment's copy has the restored version");
    }
  });

  test("with tracing on, a tip's created event keeps the caller's trace context (in its outbox row) for its consumers; its succeeded event the callback's", async () => {
    // A collector that takes anything: this checks what is stored, not what is exported.
    const collector = http.createServer((req, res) => req.resume().on("end", () => res.writeHead(200).end("{}")));
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    const tracing = await startTracing({ endpoint: `http://127.0.0.1:${(collector.address() as AddressInfo).port}`, serviceName: "payment-test", exportDelayMs: 60_000 });
    try {
      const traceId = randomUUID().replaceAll("-", "");
      const { tip: created } = await pay.createTip(
        { idempotencyKey: randomUUID(), recipient: { case: "workerId", value: randomUUID() }, amount: KES(100), payment: { case: "mpesaPhone", value: "+2547" + phone().slice(2) } },
        { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } },
      );
      const { rows } = await h.t.db.pool.query(
        "SELECT traceparent FROM payment.outbox WHERE subject = 'ttip.payment.tip_created' AND position($1 in encode(payload, 'escape')) > 0",
        [created!.tipId],
      );
      assert.equal(rows.length, 1);
      assert.match(rows[0].traceparent, new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
      assert.doesNotMatch(rows[0].traceparent, /00f067aa0ba902b7/, "the parent is the service's own span, not the caller's");
      // Its success comes by Daraja's callback, a webhook: a trace of its own (Safaricom sends none), stored
      // with tip_succeeded although that row is written in one statement outside a transaction.
      const succeeded = await eventually(async () => {
        const found = await h.t.db.pool.query(
          "SELECT traceparent FROM payment.outbox WHERE subject = 'ttip.payment.tip_succeeded' AND position($1 in encode(payload, 'escape')) > 0",
          [created!.tipId],
        );
        return found.rows[0];
      }, "tip_succeeded written");
      assert.match(succeeded.traceparent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      assert.ok(!succeeded.traceparent.includes(traceId));
    } finally {
      await tracing.stop();
      await new Promise((resolve) => collector.close(resolve));
    }
  });
});

// Its own service: a velocity limit of two tips per worker, rather than the shared harness's 1,000 changed for one test.
describe("too many tips to one worker within the window", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ fraud: { phonePerWindow: 5, workerPerWindow: 2, windowMs: 600_000, outlierMinor: 20_000_00n, pinFailures: 3 } });
  });
  after(async () => {
    await h.close();
  });

  test("the third is held for review rather than refused; the first two are credited", async () => {
    const pay = h.t.client(PaymentService);
    const popular = randomUUID();
    const tip = () => pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: popular }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    const settled = (tipId: string) => eventually(async () => {
      const t = (await pay.getTip({ tipId })).tip!;
      return t.status !== TipStatus.PENDING && t;
    }, `tip ${tipId} settled`);
    const first = [await tip(), await tip()];
    const third = await tip();
    for (const f of first) assert.equal((await settled(f.tip!.tipId)).status, TipStatus.SUCCEEDED);
    assert.equal((await settled(third.tip!.tipId)).status, TipStatus.HELD_FOR_REVIEW);
    await eventually(async () => (await h.balance(popular)) === 19000n, "only the first two credited");
    const { alerts } = await h.t.client(PaymentAdminService, admin).listFraudAlerts({});
    assert.ok(alerts.some((a) => a.reason === FraudReason.VELOCITY_WORKER && a.tipId === third.tip!.tipId));
  });
});
