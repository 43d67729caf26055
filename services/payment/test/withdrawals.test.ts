import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { createAuth } from "@ttip/auth";
import { PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { PayoutStatus, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { eventually, KES, phone, startHarness, workerWithStepUp, type Harness } from "./setup.js";


// Manual withdrawals, with the real auth service verifying the step-up token.
describe("withdrawals by RequestPayout", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;

  before(async () => {
    h = await startHarness({}, [createAuth({ env: { AUTH_OTP_SENDER: "sms" } })]);
    pay = h.t.client(PaymentService);
  });
  after(async () => {
    await h.close();
  });

  const workerWithDevice = () => workerWithStepUp(h);

  /** A worker with a device, KES 95 in the wallet (a KES 100 tip's share), and the worker's own client. */
  async function tippedWorkerWithDevice() {
    const { worker, stepUp } = await workerWithDevice();
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip");
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    return { worker, stepUp, me: h.t.client(PaymentService, { subject: worker, roles: ["worker"] }) };
  }

  test("auth stuck on the step-up token's verification: the withdrawal is refused UNAVAILABLE naming VerifyStepUpToken, past its deadline, and stores nothing; the token auth spent late is accepted for that withdrawal's retry only", async () => {
    const { worker, stepUp } = await workerWithDevice();
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip");
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    const me = h.t.client(PaymentService, { subject: worker, roles: ["worker"] });
    const token = await stepUp();
    const request = { idempotencyKey: randomUUID(), amount: KES(50), mpesaPhone: phone(), stepUpToken: token };
    const holder = await h.t.db.pool.connect();
    let outcome: unknown;
    try {
      await holder.query("BEGIN");
      // Auth's statement spending the token waits for this lock, with no lock timeout of its own: auth answers nothing.
      await holder.query("LOCK TABLE auth.step_up_tokens IN ACCESS EXCLUSIVE MODE");
      let timer: NodeJS.Timeout | undefined;
      // A guard, not a timing: a call that never answers fails here and lets the lock go.
      const unanswered = new Promise((resolve) => (timer = setTimeout(() => resolve("no answer within 30 s"), 30_000)));
      outcome = await Promise.race([me.requestPayout(request).then(() => "paid out", (err: unknown) => err), unanswered]).finally(() => clearTimeout(timer));
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    assert.ok(outcome instanceof ConnectError, String(outcome));
    assert.equal(Code[outcome.code], Code[Code.Unavailable]);
    assert.match(outcome.rawMessage, /^step_up_token: cannot be verified now \(auth did not answer VerifyStepUpToken within 5000 ms\)/);
    const { payouts } = await me.listPayouts({});
    assert.equal(payouts.length, 0, "nothing stored");

    // Auth's statement ran once the lock went: the token is spent, after payment stopped waiting.
    await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM auth.step_up_tokens WHERE user_id = $1 AND used_at IS NOT NULL", [worker])).rowCount === 1, "spent late");
    await assert.rejects(me.requestPayout({ ...request, idempotencyKey: randomUUID() }),
      (e: ConnectError) => e.code === Code.PermissionDenied && /^step_up_token: step-up token is invalid, expired or already spent/.test(e.rawMessage), "another withdrawal");
    const { payout } = await me.requestPayout(request);
    assert.equal((await me.requestPayout(request)).payout!.payoutId, payout!.payoutId, "the retry is that withdrawal");
    await eventually(async () => (await me.getPayout({ payoutId: payout!.payoutId })).payout!.status === PayoutStatus.SUCCEEDED, "paid");
    assert.equal(await h.balance(worker), 4500n, "KES 50 left the wallet, once");
    assert.equal(h.sim.transactions().filter((t) => t.kind === "b2c" && t.phone === `254${request.mpesaPhone.slice(1)}`).length, 1);
  });

  test("without M-Pesa payouts configured a withdrawal is refused before anything is stored or the step-up spent", async () => {
    const { worker, stepUp, me } = await tippedWorkerWithDevice();
    const token = await stepUp();
    const request = { idempotencyKey: randomUUID(), amount: KES(50), mpesaPhone: phone(), stepUpToken: token };
    const daraja = h.config.daraja;
    h.config.daraja = undefined;
    let refused: ConnectError;
    try {
      refused = await me.requestPayout(request).then(() => assert.fail("paid out"), (e: unknown) => ConnectError.from(e));
    } finally {
      h.config.daraja = daraja;
    }
    assert.deepEqual([refused.code, refused.rawMessage], [Code.FailedPrecondition, "M-Pesa payouts are not configured on this deployment (DARAJA_BASE_URL, PAYMENT_CALLBACK_BASE_URL)"]);
    // Before, the payout was stored and left pending for good, and went out once M-Pesa was set up.
    assert.equal((await me.listPayouts({})).payouts.length, 0, "nothing stored");
    assert.equal(await h.balance(worker), 9500n, "nothing held");
    const { rows: spent } = await h.t.db.pool.query("SELECT 1 FROM auth.step_up_tokens WHERE user_id = $1 AND used_at IS NOT NULL", [worker]);
    assert.equal(spent.length, 0, "the step-up token not spent");
    // Configured again, the same request goes through on the same token.
    const { payout } = await me.requestPayout(request);
    await eventually(async () => (await me.getPayout({ payoutId: payout!.payoutId })).payout!.status === PayoutStatus.SUCCEEDED, "paid");
  });

  test("without M-Pesa payouts configured an automatic payout due is let go, the balance left in the wallet: not tried and warned about every pass", async () => {
    const { worker } = await tippedWorkerWithDevice();
    // Due a minute ago, to the millisecond as the service marks it.
    await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone, auto_payout_due_at) VALUES ($1, true, 100, $2, $3)",
      [worker, `254${phone().slice(1)}`, new Date(h.clock.now() - 60_000)]);
    const daraja = h.config.daraja;
    h.config.daraja = undefined;
    try {
      // (The pass's M-Pesa steps fail without Daraja; its automatic payouts' step runs all the same.)
      await h.t.client(PaymentInternalService).reconcilePending({ limit: 100 }).catch(() => undefined);
    } finally {
      h.config.daraja = daraja;
    }
    const { rows: [s] } = await h.t.db.pool.query("SELECT auto_payout_due_at FROM payment.payout_settings WHERE worker_id = $1", [worker]);
    assert.equal(s.auto_payout_due_at, null, "no longer due");
    assert.equal((await h.t.db.pool.query("SELECT 1 FROM payment.payouts WHERE worker_id = $1", [worker])).rowCount, 0, "nothing stored");
    assert.equal(await h.balance(worker), 9500n);
  });

  test("a verified withdrawal is held, sent once and settled; a retry returns it; a spent token is refused", async () => {
    const { worker, stepUp, me } = await tippedWorkerWithDevice();
    const to = phone();
    const token = await stepUp();
    const key = randomUUID();
    const { payout, replayed } = await me.requestPayout({ idempotencyKey: key, amount: KES(50), mpesaPhone: to, stepUpToken: token });
    assert.ok(payout!.status === PayoutStatus.PENDING || payout!.status === PayoutStatus.SUCCEEDED);
    assert.equal(payout!.automatic, false);
    assert.equal(replayed, false);
    const again = await me.requestPayout({ idempotencyKey: key, amount: KES(50), mpesaPhone: to, stepUpToken: token });
    assert.equal(again.payout!.payoutId, payout!.payoutId, "a retry with the same key is the same payout");
    // Said so: the app tells the worker this is the withdrawal asked for before, not a new one (its clock cannot).
    assert.equal(again.replayed, true);
    await eventually(async () => (await me.getPayout({ payoutId: payout!.payoutId })).payout!.status === PayoutStatus.SUCCEEDED, "paid");
    await eventually(async () => (await h.balance(worker)) === 4500n, "KES 50 left the wallet");
    const sent = h.sim.transactions().filter((t) => t.kind === "b2c" && t.phone === `254${to.slice(1)}`);
    assert.equal(sent.length, 1);

    await assert.rejects(me.requestPayout({ idempotencyKey: randomUUID(), amount: KES(10), mpesaPhone: to, stepUpToken: token }), (e: ConnectError) => e.code === Code.PermissionDenied && /step_up_token/.test(e.message));
    await assert.rejects(
      me.requestPayout({ idempotencyKey: randomUUID(), amount: KES(10), mpesaPhone: to, stepUpToken: "x".repeat(32) }),
      (e: ConnectError) => e.code === Code.PermissionDenied,
    );
    await assert.rejects(h.t.client(PaymentService, { subject: randomUUID(), roles: ["worker"] }).getPayout({ payoutId: payout!.payoutId }), (e: ConnectError) => e.code === Code.NotFound);
    assert.equal(h.sim.transactions().filter((t) => t.kind === "b2c" && t.phone === `254${to.slice(1)}`).length, 1);
  });

  test("a withdrawal under B2C's KES 10 is refused up front, INVALID_ARGUMENT naming amount: nothing held or sent, its token unspent; KES 10 is paid out", async () => {
    const { worker, stepUp, me } = await tippedWorkerWithDevice();
    const to = phone();
    const b2cTo = () => h.sim.transactions().filter((t) => t.kind === "b2c" && t.phone === `254${to.slice(1)}`);
    const token = await stepUp();
    // Before, held and sent: M-Pesa (the simulator, as the service now) refuses a B2C under KES 10, a failed payout told to the worker.
    const refused = await me.requestPayout({ idempotencyKey: randomUUID(), amount: KES(9), mpesaPhone: to, stepUpToken: token }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.ok(refused, "refused");
    assert.equal(Code[refused.code], Code[Code.InvalidArgument]);
    assert.match(refused.rawMessage, /^amount: M-Pesa pays out at least KES 10/);
    assert.deepEqual([(await me.listPayouts({})).payouts.length, b2cTo().length, await h.balance(worker)], [0, 0, 9500n], "nothing stored, sent or held");
    const { payout } = await me.requestPayout({ idempotencyKey: randomUUID(), amount: KES(10), mpesaPhone: to, stepUpToken: token });
    await eventually(async () => (await me.getPayout({ payoutId: payout!.payoutId })).payout!.status === PayoutStatus.SUCCEEDED, "KES 10 paid with the same token");
    assert.deepEqual([b2cTo().length, b2cTo()[0].amount, await h.balance(worker)], [1, 10, 8500n]);
  });

  test("more than the available balance is FAILED_PRECONDITION and sends nothing", async () => {
    const { worker, stepUp } = await workerWithDevice();
    const me = h.t.client(PaymentService, { subject: worker, roles: ["worker"] });
    const to = phone();
    await assert.rejects(
      me.requestPayout({ idempotencyKey: randomUUID(), amount: KES(500), mpesaPhone: to, stepUpToken: await stepUp() }),
      (e: ConnectError) => e.code === Code.FailedPrecondition,
    );
    assert.equal(h.sim.transactions().filter((t) => t.kind === "b2c" && t.phone === `254${to.slice(1)}`).length, 0);
    assert.equal(await h.balance(worker), 0n);
  });

  test("a withdrawal refused before it was stored, retried under its key with the same token: another amount or number is refused naming the field, the same request is accepted and paid once", async () => {
    const { worker, stepUp } = await workerWithDevice();
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    assert.equal((await pay.getTip({ tipId: tip!.tipId })).tip!.status, TipStatus.SUCCEEDED);
    const me = h.t.client(PaymentService, { subject: worker, roles: ["worker"] });
    const to = phone();
    const request = { idempotencyKey: randomUUID(), amount: KES(50), mpesaPhone: to, stepUpToken: await stepUp() };
    const answer = (p: Promise<unknown>) => p.then(() => "accepted", (e: ConnectError) => `${Code[e.code]} ${e.rawMessage.split(":")[0]}`);
    // An automatic payout of the worker still placing its hold: the withdrawal waits for it, then is refused with nothing stored (the token spent on its key).
    const stuck = randomUUID();
    await h.t.db.pool.query(
      `INSERT INTO payment.payouts (payout_id, worker_id, idempotency_key, currency, amount_minor, phone, phone_masked, automatic, status, callback_token, next_check_at)
       VALUES ($1, $2, $3, 'KES', 1000, '254700000000', '2547****000', true, 'pending', $3, now() + interval '1 hour')`,
      [stuck, worker, `auto-${stuck}`],
    );
    try {
      assert.match(await answer(me.requestPayout(request)), /^Aborted an automatic payout .* is still placing its hold/);
    } finally {
      await h.t.db.pool.query("DELETE FROM payment.payouts WHERE payout_id = $1", [stuck]);
    }
    assert.equal(await answer(me.requestPayout({ ...request, amount: KES(90) })), "PermissionDenied amount", "another amount under the key");
    assert.equal(await answer(me.requestPayout({ ...request, mpesaPhone: phone() })), "PermissionDenied mpesa_phone", "another number under the key");
    const { payout } = await me.requestPayout(request);
    await eventually(async () => (await me.getPayout({ payoutId: payout!.payoutId })).payout!.status === PayoutStatus.SUCCEEDED, "paid");
    assert.equal(await h.balance(worker), 4500n, "KES 50 left the wallet, once");
    assert.equal(h.sim.transactions().filter((t) => t.kind === "b2c").filter((t) => t.phone === `254${to.slice(1)}`).length, 1);
  });

  test("a withdrawal retried under its key after its answer was lost is answered with its payout, though the payout number changed or a hold was placed since", async () => {
    const { worker, stepUp, me } = await tippedWorkerWithDevice();
    const first = phone();
    await me.updatePayoutSettings({ payoutPhone: first });
    const request = { idempotencyKey: randomUUID(), amount: KES(50), stepUpToken: await stepUp() };
    const { payout } = await me.requestPayout(request);
    // The worker moves the payout number on meanwhile, then retries the withdrawal (no number given: "to my number").
    await me.updatePayoutSettings({ payoutPhone: phone(), stepUpToken: await stepUp("payout_number") });
    assert.equal((await me.requestPayout(request)).payout!.payoutId, payout!.payoutId, "the retry is that withdrawal");
    await h.t.db.pool.query("UPDATE payment.payout_settings SET payouts_on_hold = true WHERE worker_id = $1", [worker]);
    assert.equal((await me.requestPayout(request)).payout!.payoutId, payout!.payoutId, "a hold placed since refuses new withdrawals, not the answer to this one");
    await assert.rejects(me.requestPayout({ ...request, mpesaPhone: phone() }), (e: ConnectError) => e.code === Code.AlreadyExists, "another number named under the key");
    await eventually(async () => (await me.getPayout({ payoutId: payout!.payoutId })).payout!.status === PayoutStatus.SUCCEEDED, "paid");
    assert.equal(await h.balance(worker), 4500n, "KES 50 left the wallet, once");
    assert.equal(h.sim.transactions().filter((t) => t.kind === "b2c" && t.phone === `254${first.slice(1)}`).length, 1, "to the number of the first request");
  });

  test("without a number given, the worker's default saved number is used", async () => {
    const { worker, stepUp } = await workerWithDevice();
    const me = h.t.client(PaymentService, { subject: worker, roles: ["worker"] });
    await assert.rejects(
      me.requestPayout({ idempotencyKey: randomUUID(), amount: KES(10), stepUpToken: await stepUp() }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /mpesa_phone/.test(e.message),
    );
    const saved = phone();
    await me.addPaymentMethod({ mpesaPhone: saved, label: "main" });
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip");
    await eventually(async () => (await h.balance(worker)) === 9500n, "credited");
    const { payout } = await me.requestPayout({ idempotencyKey: randomUUID(), amount: KES(20), stepUpToken: await stepUp() });
    await eventually(async () => (await me.getPayout({ payoutId: payout!.payoutId })).payout!.status === PayoutStatus.SUCCEEDED, "paid");
    assert.equal(h.sim.transactions().filter((t) => t.kind === "b2c" && t.phone === `254${saved.slice(1)}`).length, 1);
  });
});
