// The admin console's payments: tips and payouts across workers with filters
// and paging, one tip's raw callbacks and ledger entry, and a re-query that
// recovers a tip whose callback was lost.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { PaymentMethodKind, PayoutStatus, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { callerHeaders } from "@ttip/runtime";
import { freePort } from "@ttip/runtime/testing";
import { startCardHarness, type CardHarness } from "./cards-setup.js";
import { darajaRefusing, eventually, KES, phone } from "./setup.js";

const message = (p: Promise<unknown>) => p.then(() => "", (e) => `${Code[ConnectError.from(e).code]} ${ConnectError.from(e).rawMessage}`);

describe("payments in the admin console", () => {
  let h: CardHarness;
  let pay: ReturnType<typeof createClient<typeof PaymentService>>;
  let support: ReturnType<typeof createClient<typeof PaymentAdminService>>;
  let finance: ReturnType<typeof createClient<typeof PaymentAdminService>>;
  const worker = randomUUID();
  const other = randomUUID();
  const tips: Record<string, string> = {};
  const started = new Date(Date.now() - 1000);

  const tip = async (workerId: string, shillings: number, mpesaPhone = phone()) =>
    (await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: workerId }, amount: KES(shillings), payment: { case: "mpesaPhone", value: mpesaPhone } })).tip!.tipId;
  const statusOf = async (tipId: string) => (await pay.getTip({ tipId })).tip!.status;

  before(async () => {
    // No automatic STK query for a long while: only the admin's re-query recovers the lost callback.
    // Cards on (Stripe's simulator): tips in other currencies than KES.
    h = await startCardHarness({}, { stkDeadlineMs: 600_000 });
    pay = h.t.client(PaymentService);
    support = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["support"] });
    finance = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["finance"] });
    tips.ok100 = await tip(worker, 100);
    tips.ok300 = await tip(worker, 300);
    const cancelled = phone();
    h.sim.script({ phone: `254${cancelled.slice(1)}` }, { stk: "cancelled" });
    tips.cancelled = await tip(worker, 200, cancelled);
    tips.other = await tip(other, 150);
    const lost = phone();
    h.sim.script({ phone: `254${lost.slice(1)}` }, { stk: "lost" });
    tips.lost = await tip(worker, 120, lost);
    await eventually(async () => (await statusOf(tips.ok100)) === TipStatus.SUCCEEDED && (await statusOf(tips.ok300)) === TipStatus.SUCCEEDED
      && (await statusOf(tips.other)) === TipStatus.SUCCEEDED && (await statusOf(tips.cancelled)) === TipStatus.FAILED, "tips settled");
  });
  after(() => h?.close());

  test("filters: status, amount range, method, result code, worker, dates; keyset paging covers each tip once", async () => {
    const ids = async (req: Parameters<typeof support.searchTips>[0]) => (await support.searchTips(req)).tips.map((t) => t.tipId).sort();
    assert.deepEqual(await ids({ workerId: worker, status: TipStatus.SUCCEEDED }), [tips.ok100, tips.ok300].sort());
    assert.deepEqual(await ids({ workerId: worker, currency: "KES", minAmountMinor: 150_00n, maxAmountMinor: 300_00n }), [tips.cancelled, tips.ok300].sort());
    assert.deepEqual(await ids({ resultCode: "1032", workerId: worker }), [tips.cancelled]);
    assert.deepEqual(await ids({ workerId: other }), [tips.other]);
    assert.deepEqual(await ids({ workerId: worker, method: PaymentMethodKind.CARD }), []);
    assert.equal((await ids({ workerId: worker, method: PaymentMethodKind.MPESA })).length, 4);
    assert.deepEqual(await ids({ workerId: worker, to: timestampFromDate(started) }), []);
    const seen: string[] = [];
    let pageToken = "";
    do {
      const r = await support.searchTips({ from: timestampFromDate(started), page: { pageSize: 2, pageToken } });
      seen.push(...r.tips.map((t) => t.tipId));
      pageToken = r.page!.nextPageToken;
    } while (pageToken);
    assert.deepEqual([...seen].sort(), Object.values(tips).sort(), "every tip once, across pages");
    // Bad input names the field and is never INTERNAL.
    assert.match(await message(support.searchTips({ minAmountMinor: 500n, maxAmountMinor: 100n })), /^InvalidArgument max_amount_minor/);
    assert.match(await message(support.searchTips({ from: timestampFromDate(new Date()), to: timestampFromDate(started) })), /^InvalidArgument to:/);
    assert.match(await message(support.searchTips({ workerId: "not-a-uuid" })), /^InvalidArgument .*worker_id/);
    assert.match(await message(support.searchPayouts({ resultCode: "x".repeat(41) })), /^InvalidArgument .*result_code/);
  });

  test("amount bounds are in the currency asked for: a USD card tip and a KES tip of the same minor units are told apart; a bound without a currency is refused naming it", async () => {
    const tourist = randomUUID();
    const card = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: tourist }, amount: { currency: "USD", amountMinor: 15_00n }, payment: { case: "card", value: true } });
    assert.equal((await h.confirm(card.stripeClientSecret, "pm_card_visa")).status, 200);
    const usd = card.tip!.tipId;
    const kes = await tip(tourist, 15);
    await eventually(async () => (await statusOf(usd)) === TipStatus.SUCCEEDED && (await statusOf(kes)) === TipStatus.SUCCEEDED, "both tips settled");
    const ids = async (req: Parameters<typeof support.searchTips>[0]) => (await support.searchTips({ workerId: tourist, ...req })).tips.map((t) => t.tipId).sort();
    const fifteen = { minAmountMinor: 15_00n, maxAmountMinor: 15_00n };
    assert.deepEqual(await ids({ ...fifteen, currency: "USD" }), [usd]);
    assert.deepEqual(await ids({ ...fifteen, currency: "KES" }), [kes]);
    assert.deepEqual(await ids({ minAmountMinor: 15_01n, currency: "USD" }), []);
    // A currency alone lists that currency's tips; none lists every one.
    assert.deepEqual(await ids({ currency: "USD" }), [usd]);
    assert.deepEqual(await ids({ currency: "EUR" }), []);
    assert.deepEqual(await ids({}), [usd, kes].sort());
    // Bounds in no currency are refused, naming the field, and never INTERNAL.
    assert.match(await message(support.searchTips({ workerId: tourist, minAmountMinor: 15_00n })), /^InvalidArgument currency: required with min_amount_minor or max_amount_minor/);
    assert.match(await message(support.searchTips({ maxAmountMinor: 15_00n })), /^InvalidArgument currency: /);
    assert.match(await message(support.searchTips({ currency: "usd" })), /^InvalidArgument .*currency/);
    assert.match(await message(support.searchPayouts({ currency: "US" })), /^InvalidArgument .*currency/);
  });

  test("a tip's detail: the raw STK callback as received and the ledger entry that credited the worker", async () => {
    const detail = await support.getPaymentDetail({ subject: { case: "tipId", value: tips.ok100 } });
    assert.equal(detail.tip!.tipId, tips.ok100);
    assert.ok(detail.callbacks.length >= 1, "the callback is stored raw");
    const raw = JSON.parse(Buffer.from(detail.callbacks[0].rawBody).toString());
    assert.equal(raw.Body.stkCallback.ResultCode, 0);
    // Support reads the callback, not the payer's number: masked as the screen beside it shows it (before, whole).
    const items = raw.Body.stkCallback.CallbackMetadata.Item as { Name: string; Value?: unknown }[];
    assert.match(String(items.find((i) => i.Name === "PhoneNumber")!.Value), /^2547\*{6}\d\d$/);
    assert.equal(items.find((i) => i.Name === "Amount")!.Value, 100);
    assert.doesNotMatch(Buffer.from(detail.callbacks[0].rawBody).toString(), /2547\d{8}/);
    await eventually(async () => (await support.getPaymentDetail({ subject: { case: "tipId", value: tips.ok100 } })).ledgerEntryId, "credit recorded");
    const { ledgerEntryId, ledgerCreditKind } = await support.getPaymentDetail({ subject: { case: "tipId", value: tips.ok100 } });
    assert.equal(ledgerCreditKind, "worker");
    const entry = await createClient(WalletAdminService, h.t.ctx.peers("wallet")).getJournalEntry({ entryId: ledgerEntryId }, { headers: callerHeaders(randomUUID(), "finance") });
    assert.ok(entry.entry, "the wallet knows the entry");
    assert.match(await message(support.getPaymentDetail({ subject: { case: "tipId", value: randomUUID() } })), /^NotFound tip_id/);
    assert.match(await message(support.getPaymentDetail({})), /^InvalidArgument/);
  });

  test("re-query: a tip whose callback was lost is settled by the STK query; support may not; a settled tip has nothing to re-query", async () => {
    assert.equal(await statusOf(tips.lost), TipStatus.PENDING);
    assert.match(await message(support.requeryPayment({ subject: { case: "tipId", value: tips.lost } })), /^PermissionDenied/);
    const r = await finance.requeryPayment({ subject: { case: "tipId", value: tips.lost } });
    assert.equal(r.tip!.status, TipStatus.SUCCEEDED);
    assert.match(await message(finance.requeryPayment({ subject: { case: "tipId", value: tips.lost } })), /^FailedPrecondition tip_id: the tip is succeeded/);
    await eventually(async () => (await h.balance(worker)) > 0n, "credited");
    assert.ok(await h.trialBalanced());
  });

  test("re-query on a service clock behind the database's: the tip is made due on the clock its pass reads, asked about and settled", async () => {
    const lost = phone();
    h.sim.script({ phone: `254${lost.slice(1)}` }, { stk: "lost" });
    const tipId = await tip(worker, 115, lost);
    // The service's clock 10 minutes behind PostgreSQL's (a replica's clock apart from the database's). The test clock
    // only moves forward on purpose; this test alone takes it back, and puts it where it was.
    const clock = h.clock as unknown as { offsetMs: number };
    clock.offsetMs -= 600_000;
    try {
      const r = await finance.requeryPayment({ subject: { case: "tipId", value: tipId } });
      // Before, made due by the database's clock: not yet due on the service's, nothing asked, answered pending.
      assert.equal(TipStatus[r.tip!.status], TipStatus[TipStatus.SUCCEEDED]);
    } finally {
      clock.offsetMs += 600_000;
    }
    await eventually(async () => (await h.t.db.pool.query("SELECT credit_entry_id FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0].credit_entry_id, "credited");
  });

  test("re-query of a tip another reconciliation pass holds: refused saying until when its lease runs, nothing asked; once let go, asked and settled", async () => {
    const lost = phone();
    h.sim.script({ phone: `254${lost.slice(1)}` }, { stk: "lost" });
    const tipId = await tip(worker, 110, lost);
    const checkout = (await h.t.db.pool.query("SELECT checkout_request_id FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0].checkout_request_id as string;
    const queries = () => h.sim.transactions().find((t) => t.checkoutRequestId === checkout)!.queries;
    // Another replica's pass leased it a moment ago and is asking M-Pesa about it now.
    const { rows: [{ lease }] } = await h.t.db.pool.query("UPDATE payment.tips SET lease_until = now() + interval '1 minute' WHERE tip_id = $1 RETURNING lease_until AS lease", [tipId]);
    try {
      const refused = await finance.requeryPayment({ subject: { case: "tipId", value: tipId } }).then(() => undefined, (e: unknown) => ConnectError.from(e));
      // Before, answered with the tip as it was (pending), as if it had been asked about.
      assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
      assert.ok(refused.rawMessage.startsWith(`tip_id: another reconciliation pass is asking about it now (its lease ends at ${(lease as Date).toISOString()})`), refused.rawMessage);
      assert.equal(queries(), 0, "this re-query asked nothing beside the other pass");
      assert.equal(await statusOf(tipId), TipStatus.PENDING);
    } finally {
      await h.t.db.pool.query("UPDATE payment.tips SET lease_until = NULL WHERE tip_id = $1", [tipId]);
    }
    const r = await finance.requeryPayment({ subject: { case: "tipId", value: tipId } });
    assert.equal(r.tip!.status, TipStatus.SUCCEEDED);
    assert.equal(queries(), 1);
    await eventually(async () => (await h.t.db.pool.query("SELECT credit_entry_id FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0].credit_entry_id, "credited");
  });

  test("re-query of a tip whose row another transaction holds: it waits for the row, and past a short wait is refused as busy, nothing asked; once free, asked and settled", async () => {
    const lost = phone();
    h.sim.script({ phone: `254${lost.slice(1)}` }, { stk: "lost" });
    const tipId = await tip(worker, 120, lost);
    const checkout = (await h.t.db.pool.query("SELECT checkout_request_id FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0].checkout_request_id as string;
    const queries = () => h.sim.transactions().find((t) => t.checkoutRequestId === checkout)!.queries;
    const holder = await h.t.db.pool.connect();
    try {
      await holder.query("BEGIN");
      // A lock the made-due update passes (it changes no key) and the lease meets: a callback's or a pass's lock
      // taken between the two, as one can be.
      await holder.query("SELECT 1 FROM payment.tips WHERE tip_id = $1 FOR KEY SHARE", [tipId]);
      const refused = await finance.requeryPayment({ subject: { case: "tipId", value: tipId } }).then(() => undefined, (e: unknown) => ConnectError.from(e));
      // Before, the lease skipped the row: answered with the tip as it was (pending), nothing asked and nothing said.
      assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
      assert.match(refused.rawMessage, /^tip_id: busy: .*try again/);
      assert.equal(queries(), 0, "nothing asked");
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    const r = await finance.requeryPayment({ subject: { case: "tipId", value: tipId } });
    assert.equal(r.tip!.status, TipStatus.SUCCEEDED);
    assert.equal(queries(), 1);
    await eventually(async () => (await h.t.db.pool.query("SELECT credit_entry_id FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0].credit_entry_id, "credited");
  });

  test("re-query of a tip that M-Pesa could not be asked about says so (refused, or no answer) instead of answering pending as if asked; once it answers, settled", async () => {
    const lost = phone();
    h.sim.script({ phone: `254${lost.slice(1)}` }, { stk: "lost" });
    const tipId = await tip(worker, 125, lost);
    const daraja = h.config.daraja!;
    try {
      // Daraja refuses the STK query itself.
      h.config.daraja = darajaRefusing(daraja, "/stkpushquery/", "400.002.02", "Bad Request - Invalid CheckoutRequestID");
      // Before, both answered OK with the tip pending, as if M-Pesa had been asked about it.
      assert.match(await message(finance.requeryPayment({ subject: { case: "tipId", value: tipId } })),
        /^FailedPrecondition tip_id: M-Pesa refused the STK query: .*400\.002\.02.*; nothing was learnt; the reconciliation pass asks again later$/);
      // Daraja unreachable: a port nothing listens on.
      h.config.daraja = { ...daraja, baseUrl: `http://127.0.0.1:${await freePort()}` };
      assert.match(await message(finance.requeryPayment({ subject: { case: "tipId", value: tipId } })),
        /^Unavailable tip_id: M-Pesa did not answer the STK query \(.+\); nothing was learnt/);
      assert.equal(await statusOf(tipId), TipStatus.PENDING);
    } finally {
      h.config.daraja = daraja;
    }
    const r = await finance.requeryPayment({ subject: { case: "tipId", value: tipId } });
    assert.equal(TipStatus[r.tip!.status], TipStatus[TipStatus.SUCCEEDED]);
  });

  test("re-query asks about that tip alone: another tip whose recording PostgreSQL refuses on every try does not answer the admin an error", async () => {
    const lost = phone();
    h.sim.script({ phone: `254${lost.slice(1)}` }, { stk: "lost" });
    const tipId = await tip(worker, 130, lost);
    const stuck = await tip(other, 140);
    const entryOf = async () => (await h.t.db.pool.query("SELECT credit_entry_id FROM payment.tips WHERE tip_id = $1", [stuck])).rows[0].credit_entry_id as string | null;
    await eventually(async () => (await statusOf(stuck)) === TipStatus.SUCCEEDED && (await entryOf()), "the other tip settled and its credit recorded");
    // Its entry unrecorded again (queued for reconciliation), and any statement recording it refused.
    await h.t.db.pool.query("UPDATE payment.tips SET credit_entry_id = NULL, credited_at = NULL WHERE tip_id = $1", [stuck]);
    const trigger = `console_test_refuse_${stuck.replaceAll("-", "")}`;
    await h.t.db.pool.query(`CREATE FUNCTION payment.${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'recording refused'; END $$`);
    await h.t.db.pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE OF credit_entry_id ON payment.tips FOR EACH ROW
      WHEN (NEW.tip_id = '${stuck}'::uuid AND OLD.credit_entry_id IS NULL) EXECUTE FUNCTION payment.${trigger}()`);
    try {
      const r = await finance.requeryPayment({ subject: { case: "tipId", value: tipId } });
      assert.equal(r.tip!.status, TipStatus.SUCCEEDED);
      assert.equal(await entryOf(), null, "the other tip left to reconciliation");
    } finally {
      await h.t.db.pool.query(`DROP TRIGGER ${trigger} ON payment.tips`);
      await h.t.db.pool.query(`DROP FUNCTION payment.${trigger}()`);
    }
    // Once PostgreSQL takes it, a pass records it (the tests after this one wait for every success credited).
    await h.t.client(PaymentInternalService).reconcilePending({ limit: 100 });
    assert.ok(await entryOf(), "recorded by reconciliation");
  });

  test("payouts across workers: filters and detail with the raw B2C result and the wallet hold", async () => {
    const saver = randomUUID();
    await h.t.client(PaymentService, { subject: saver, roles: ["worker"] }).updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: phone() });
    await tip(saver, 100);
    const paid = await eventually(async () => (await support.searchPayouts({ workerId: saver, status: PayoutStatus.SUCCEEDED })).payouts[0], "the automatic payout paid");
    assert.deepEqual((await support.searchPayouts({ workerId: saver, status: PayoutStatus.FAILED })).payouts, []);
    assert.deepEqual((await support.searchPayouts({ workerId: worker })).payouts, []);
    assert.equal((await support.searchPayouts({ workerId: saver, currency: "KES", minAmountMinor: paid.amount!.amountMinor + 1n })).payouts.length, 0);
    assert.deepEqual((await support.searchPayouts({ workerId: saver, currency: "KES", minAmountMinor: paid.amount!.amountMinor, maxAmountMinor: paid.amount!.amountMinor })).payouts.map((p) => p.payoutId), [paid.payoutId]);
    assert.deepEqual((await support.searchPayouts({ workerId: saver, currency: "USD" })).payouts, [], "a KES payout is not a USD one");
    assert.match(await message(support.searchPayouts({ workerId: saver, maxAmountMinor: paid.amount!.amountMinor })), /^InvalidArgument currency: required with/);
    const detail = await eventually(async () => {
      const d = await support.getPaymentDetail({ subject: { case: "payoutId", value: paid.payoutId } });
      return d.holdState === "settled" && d.callbacks.length ? d : undefined;
    }, "the hold settled");
    const result = JSON.parse(Buffer.from(detail.callbacks[0].rawBody).toString()).Result;
    assert.equal(result.ResultCode, 0);
    const receiver = (result.ResultParameters.ResultParameter as { Key: string; Value: string }[]).find((p) => p.Key === "ReceiverPartyPublicName")!.Value;
    assert.match(receiver, /^2547\*{6}\d\d - S\*\*\* C\*\*\*$/, "the receiver's number and name masked");
    assert.match(await message(finance.requeryPayment({ subject: { case: "payoutId", value: paid.payoutId } })), /^FailedPrecondition payout_id: the payout is succeeded/);
    assert.match(await message(support.getPaymentDetail({ subject: { case: "payoutId", value: randomUUID() } })), /^NotFound payout_id/);
    assert.match(await message(finance.requeryPayment({ subject: { case: "payoutId", value: randomUUID() } })), /^NotFound payout_id/);
  });

  test("the M-Pesa balance (Daraja Account Balance, answered by callback) reconciled against the ledger", async () => {
    assert.match(await message(support.checkMpesaBalance({})), /^PermissionDenied/);
    assert.match(await message(finance.getMpesaBalance({ checkId: randomUUID() })), /^NotFound check_id/);
    // Everything above has settled: every receipt credited, the payout's hold settled.
    await eventually(async () => !(await h.t.db.pool.query("SELECT 1 FROM payment.tips WHERE status = 'succeeded' AND credit_entry_id IS NULL")).rowCount, "every success credited");
    const { checkId } = await finance.checkMpesaBalance({});
    const answer = await eventually(async () => {
      const r = await finance.getMpesaBalance({ checkId });
      return r.answeredAt ? r : undefined;
    }, "M-Pesa answered");
    assert.equal(answer.resultCode, "0");
    const utility = answer.accounts.find((a) => a.name === "Utility Account");
    assert.ok(utility && utility.current!.amountMinor > 0n, "the utility account holds the tips taken");
    // What M-Pesa holds is what the ledger says came in less what went out (the simulator starts from nothing).
    assert.equal(answer.reported!.amountMinor, answer.ledgerNet!.amountMinor);
    assert.equal(answer.difference!.amountMinor, 0n);
    assert.equal((await finance.getMpesaBalance({})).checkId, checkId, "the latest check by default");
    const { rows } = await h.t.db.pool.query("SELECT raw_body FROM payment.callbacks WHERE source = 'mpesa_balance'");
    assert.equal(rows.length, 1, "the answer is stored raw");
    assert.match(rows[0].raw_body.toString(), /Utility Account\|KES\|/);
  });

  test("the M-Pesa balance with wallet stuck on the ledger's side: refused UNAVAILABLE naming the wallet call, past its deadline", async () => {
    const { checkId } = await finance.checkMpesaBalance({});
    const holder = await h.t.db.pool.connect();
    let outcome: unknown;
    try {
      await holder.query("BEGIN");
      // Wallet's reads of its accounts wait for this lock, with no lock timeout of their own: wallet answers nothing.
      await holder.query("LOCK TABLE wallet.accounts IN ACCESS EXCLUSIVE MODE");
      let timer: NodeJS.Timeout | undefined;
      // A guard, not a timing: a read that never answers fails here and lets the lock go.
      const unanswered = new Promise((resolve) => (timer = setTimeout(() => resolve("no answer within 30 s"), 30_000)));
      outcome = await Promise.race([finance.getMpesaBalance({ checkId }).then(() => "answered", (err: unknown) => err), unanswered]).finally(() => clearTimeout(timer));
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    assert.ok(outcome instanceof ConnectError, String(outcome));
    assert.equal(Code[outcome.code], Code[Code.Unavailable]);
    assert.match(outcome.rawMessage, /^wallet did not answer ListAccounts within 5000 ms; retry$/);
  });
});
