// A payout number that replaced another receives no automatic payout for the cooling-off (24 hours): the payout
// is held back, not failed, and reconciliation sends it once when the time is up. An automatic payout due while
// another payout of the worker is open waits for it, and is paid once after it. On its own harness: the test
// moves the services' clock a day on, which the other payout tests' timings would not survive. Replacing the number
// needs the device's step-up (auth is in this harness), and every change is told to the worker through the outbox.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { PayoutNumberChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { maskPhone, normalisePhone } from "@ttip/runtime";
import { PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { PayoutStatus, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PAYOUT_NUMBER_COOLING_OFF_MS } from "../src/payout-number-cooling.js";
import { createAuth } from "@ttip/auth";
import { eventually, KES, phone, startHarness, workerWithStepUp, type Harness } from "./setup.js";

describe("a new payout number's cooling-off", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  let internal: Client<typeof PaymentInternalService>;

  before(async () => {
    // Auth verifies the step-up of the withdrawals the automatic payouts wait behind.
    h = await startHarness({ payoutNumberCoolingOffMs: PAYOUT_NUMBER_COOLING_OFF_MS }, [createAuth({ env: { AUTH_OTP_SENDER: "sms" } })]);
    pay = h.t.client(PaymentService);
    internal = h.t.client(PaymentInternalService);
  });
  after(() => h.close());

  const asWorker = (worker: string) => h.t.client(PaymentService, { subject: worker, roles: ["worker"] });
  const b2cTo = (p: string) => h.sim.transactions().filter((t) => t.kind === "b2c" && t.phone === `254${p.slice(1)}`);
  /** Three replicas' reconciliation passes at once, then the simulator's results delivered. */
  const reconcile = async () => {
    await Promise.all([1, 2, 3].map(() => internal.reconcilePending({ limit: 100 })));
    await h.sim.idle();
  };
  const dueAt = async (worker: string): Promise<Date | null> =>
    (await h.t.db.pool.query("SELECT auto_payout_due_at FROM payment.payout_settings WHERE worker_id = $1", [worker])).rows[0].auto_payout_due_at;

  test("a number replacing another gets no automatic payout for 24 hours: held back (not failed), told to the worker, then sent once", async () => {
    const { worker, signInPhone: first, stepUp } = await workerWithStepUp(h);
    const second = phone();
    const me = asWorker(worker);
    const set = await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: first });
    assert.equal(set.settings!.automaticPayoutsFrom, undefined, "a first number that is the sign-in phone waits for nothing");
    const changedAt = h.clock.now();
    const { settings } = await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: second, stepUpToken: await stepUp("payout_number") });

    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip succeeded");
    // The worker is told until when (the web app's payout settings show it).
    const from = timestampDate(settings!.automaticPayoutsFrom!).getTime();
    assert.ok(from >= changedAt + PAYOUT_NUMBER_COOLING_OFF_MS && from <= h.clock.now() + PAYOUT_NUMBER_COOLING_OFF_MS, "from the change, a day on");
    // Held back: due when the cooling-off ends (the credit marked it due sooner, to be looked at).
    const outcome = await eventually(async () => (b2cTo(second).length ? "sent" : (await dueAt(worker))?.getTime() === from ? "held back" : undefined), "the automatic payout sent or held back");
    // Before, the tip's automatic payout went at once to the new number.
    assert.equal(outcome, "held back");
    await reconcile();
    assert.equal(b2cTo(second).length, 0, "nothing sent to the new number");
    assert.equal(b2cTo(first).length, 0, "nor to the old one");
    assert.deepEqual((await me.listPayouts({})).payouts, [], "no payout made, none failed");
    assert.equal(await h.balance(worker), 9500n, "the tip waits in the wallet");

    h.clock.advance(from - h.clock.now() - 60_000);
    await reconcile();
    assert.equal(b2cTo(second).length, 0, "a minute before the end: still waiting");
    assert.ok((await me.getPayoutSettings({})).settings!.automaticPayoutsFrom, "still told");

    h.clock.advance(60_000);
    await reconcile();
    await reconcile();
    assert.equal(b2cTo(second).length, 1, "sent once, by passes of three replicas, twice");
    assert.equal(b2cTo(second)[0].amount, 95);
    const payouts = await eventually(async () => {
      const { payouts } = await me.listPayouts({});
      return payouts[0]?.status === PayoutStatus.SUCCEEDED && payouts;
    }, "the payout succeeded");
    assert.equal(payouts.length, 1);
    assert.ok(payouts[0].automatic);
    assert.equal(await dueAt(worker), null, "nothing due any more");
    assert.equal((await me.getPayoutSettings({})).settings!.automaticPayoutsFrom, undefined);
    assert.equal(await h.balance(worker), 0n);
    assert.ok(await h.trialBalanced());
  });

  /** A withdrawal of KES 50 to a number of its own, left open: M-Pesa paid it, and each status query about it fails. */
  async function openWithdrawal(me: Client<typeof PaymentService>, stepUp: () => Promise<string>) {
    const to = phone();
    h.sim.script({ phone: `254${to.slice(1)}` }, { b2c: "lost_result", statusError: "SFC_IC0003" });
    const { payout } = await me.requestPayout({ idempotencyKey: randomUUID(), amount: KES(50), mpesaPhone: to, stepUpToken: await stepUp() });
    assert.ok(payout!.status === PayoutStatus.PENDING || payout!.status === PayoutStatus.RESOLVING, PayoutStatus[payout!.status]);
    return {
      payoutId: payout!.payoutId,
      /** M-Pesa answers its status queries again: the next passes find it paid. */
      end: async () => {
        h.sim.script({ phone: `254${to.slice(1)}` }, { b2c: "lost_result" });
        h.clock.advance(15 * 60_000); // past its next check
        await reconcile();
        await eventually(async () => (await me.getPayout({ payoutId: payout!.payoutId })).payout!.status === PayoutStatus.SUCCEEDED, "the withdrawal succeeded");
      },
    };
  }

  /**
   * Once the open withdrawal ends, reconciliation pays out to `to` what it left in the wallet (its whole shillings),
   * once, by passes of three replicas, twice, and again later; nothing stays due.
   */
  async function paidOutOnceAfter(withdrawal: { end(): Promise<void> }, worker: string, to: string) {
    // What the withdrawal leaves, read beside its hold before it ends: the passes that end it may start the due
    // automatic payout at once (its due time is past by then), which would leave nothing to read after.
    const left = await h.balance(worker);
    assert.ok(left >= 10n * 100n, `the withdrawal leaves ${left}`);
    await withdrawal.end();
    h.clock.advance(60_000);
    await reconcile();
    await reconcile();
    assert.equal(b2cTo(to).length, 1, "paid out once the withdrawal ended");
    assert.equal(BigInt(b2cTo(to)[0].amount) * 100n, (left / 100n) * 100n, "what the withdrawal left");
    await eventually(async () => (await asWorker(worker).listPayouts({})).payouts.find((p) => p.automatic)?.status === PayoutStatus.SUCCEEDED, "the automatic payout succeeded");
    assert.equal(await dueAt(worker), null, "nothing due any more");
    h.clock.advance(60_000);
    await reconcile();
    assert.equal(b2cTo(to).length, 1, "not paid again");
    assert.ok(await h.trialBalanced());
  }

  const tipped = async (worker: string) => {
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip succeeded");
  };

  test("an automatic payout falling due while a withdrawal is open is not dropped: it waits for the withdrawal's end, then pays what it left, once", async () => {
    const { worker, stepUp, signInPhone: first } = await workerWithStepUp(h);
    const me = asWorker(worker);
    const second = phone();
    await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: first });
    const { settings } = await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: second, stepUpToken: await stepUp("payout_number") });
    await tipped(worker);
    await eventually(async () => (await dueAt(worker)) !== null, "held back by the cooling-off");
    const withdrawal = await openWithdrawal(me, stepUp);

    h.clock.advance(timestampDate(settings!.automaticPayoutsFrom!).getTime() - h.clock.now() + 1_000);
    await reconcile();
    await reconcile();
    assert.equal(b2cTo(second).length, 0, "nothing sent beside the open withdrawal");
    // Before, the pass found the withdrawal open, started nothing and marked the payout done: dropped until another tip.
    assert.ok(await dueAt(worker), "still due");

    await paidOutOnceAfter(withdrawal, worker, second);
  });

  test("a due automatic payout another replica's pass started under its key is this pass's too: done, not moved on to fall due again", async () => {
    const { worker, stepUp, signInPhone: first } = await workerWithStepUp(h);
    const me = asWorker(worker);
    const second = phone();
    await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: first });
    await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: second, stepUpToken: await stepUp("payout_number") });
    await tipped(worker);
    const due = (await eventually(() => dueAt(worker), "held back by the cooling-off"))!;
    h.clock.advance(due.getTime() - h.clock.now() + 1_000);
    // Where three passes taking the same due payout at once leave this one: another's payout under the due's key, ended.
    await h.t.db.pool.query(
      `INSERT INTO payment.payouts (payout_id, worker_id, idempotency_key, currency, amount_minor, phone, phone_masked, automatic, status, callback_token, next_check_at, transfer_fee_minor, note, completed_at)
       VALUES ($1, $2, $3, 'KES', 9500, $4, $5, true, 'failed', $6, now(), 0, '', now() - interval '1 second')`,
      [randomUUID(), worker, `auto-due-${due.toISOString()}`, normalisePhone(second), maskPhone(normalisePhone(second)), randomUUID()]);
    await internal.reconcilePending({ limit: 100 });
    // Before, read as a payout to wait behind: the due moved on a result wait, beside the other pass clearing it.
    assert.equal(await dueAt(worker), null);
    assert.equal(b2cTo(second).length, 0, "not started a second time");
  });

  test("a tip credited while a withdrawal is open is paid out automatically after the withdrawal ends, with no other tip coming, once", async () => {
    const { worker, stepUp, signInPhone: to } = await workerWithStepUp(h);
    const me = asWorker(worker);
    await tipped(worker);
    const withdrawal = await openWithdrawal(me, stepUp);
    await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: to }); // the sign-in phone as first number: no cooling-off
    await tipped(worker);
    await reconcile();
    assert.equal(b2cTo(to).length, 0, "nothing sent beside the open withdrawal");

    // Before, the tip's automatic payout found the withdrawal open and left its money to a next tip that never came.
    await paidOutOnceAfter(withdrawal, worker, to);
  });

  test("a withdrawal failed whose hold is not given back yet holds the automatic payout back until it is; then all is paid out", async () => {
    const { worker, stepUp, signInPhone: to } = await workerWithStepUp(h);
    const me = asWorker(worker);
    await tipped(worker);
    const withdrawal = await openWithdrawal(me, stepUp);
    await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: to });
    // Its failure recorded, its hold not released yet (the wallet slow to answer): the first step of a failure alone.
    await h.t.db.pool.query("UPDATE payment.payouts SET status = 'failed', result_code = '2001', completed_at = now() WHERE payout_id = $1", [withdrawal.payoutId]);
    await tipped(worker);
    h.clock.advance(15 * 60_000);
    await reconcile();
    h.clock.advance(15 * 60_000);
    await reconcile();
    // Before, the tip's payout read the balance beside the held KES 50 and sent the rest; the 50 came back with nothing due.
    await eventually(async () => (await asWorker(worker).listPayouts({})).payouts.filter((p) => p.automatic).every((p) => p.status === PayoutStatus.SUCCEEDED), "the automatic payouts ended");
    assert.ok((await h.balance(worker)) < 100n, `all paid out (${await h.balance(worker)} left)`);
    assert.equal(await dueAt(worker), null);
  });

  test("a first payout number other than the sign-in phone waits out the cooling-off too, held back, not sent; a number replacing it waits again", async () => {
    const { worker, signInPhone, stepUp } = await workerWithStepUp(h);
    const me = asWorker(worker);
    const other = phone();
    const changedAt = h.clock.now();
    const { settings } = await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: other });
    // Before, a first number waited for nothing: a stolen session setting its own number for a worker who had none got every automatic payout at once.
    assert.ok(settings!.automaticPayoutsFrom, "told until when");
    const from = timestampDate(settings!.automaticPayoutsFrom!).getTime();
    assert.ok(from >= changedAt + PAYOUT_NUMBER_COOLING_OFF_MS && from <= h.clock.now() + PAYOUT_NUMBER_COOLING_OFF_MS, "a day from the change");
    await tipped(worker);
    await eventually(async () => (b2cTo(other).length ? "sent" : (await dueAt(worker)) ? "held back" : undefined), "the automatic payout sent or held back")
      .then((outcome) => assert.equal(outcome, "held back"));
    await reconcile();
    assert.equal(b2cTo(other).length, 0, "nothing sent to the first number");
    // The worker's own, OTP-verified number replacing it is a replacement like any other: it waits too.
    const replaced = await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: signInPhone, stepUpToken: await stepUp("payout_number") });
    assert.ok(replaced.settings!.automaticPayoutsFrom, "a replacing number waits, whichever it is");
  });

  test("a payout number set or changed is told to the worker through the outbox, once per change: the same number again or another setting tells nothing", async () => {
    const { worker, stepUp } = await workerWithStepUp(h);
    const me = asWorker(worker);
    const told = async () =>
      (await h.t.db.pool.query<{ payload: Buffer }>("SELECT payload FROM payment.outbox WHERE subject = 'ttip.payment.payout_number_changed' AND position($1 in encode(payload, 'escape')) > 0 ORDER BY seq", [worker]))
        .rows.map((r) => fromBinary(PayoutNumberChangedSchema, r.payload)).map((e) => [e.phoneMasked, e.previousPhoneMasked]);
    const [first, second] = [phone(), phone()];
    await me.updatePayoutSettings({ autoPayout: false, payoutPhone: first });
    await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: first });
    await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(20) });
    assert.deepEqual(await told(), [[maskPhone(normalisePhone(first)), ""]], "set once; the same number and the minimum tell nothing");
    await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(20), payoutPhone: second, stepUpToken: await stepUp("payout_number") });
    assert.deepEqual((await told())[1], [maskPhone(normalisePhone(second)), maskPhone(normalisePhone(first))]);
    // Refused input changes nothing and tells nothing.
    await assert.rejects(me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: "0812" }), (e: ConnectError) => e.code === Code.InvalidArgument);
    assert.equal((await told()).length, 2);
  });

  test("replacing the payout number needs the device's step-up for that number: none is FAILED_PRECONDITION, a withdrawal's or another number's PERMISSION_DENIED, each naming its field, and nothing changes", async () => {
    const { worker, signInPhone: first, stepUp } = await workerWithStepUp(h);
    const me = asWorker(worker);
    const stored = async () => (await h.t.db.pool.query("SELECT payout_phone FROM payment.payout_settings WHERE worker_id = $1", [worker])).rows[0]?.payout_phone;
    const refusal = (req: Parameters<typeof me.updatePayoutSettings>[0]) => me.updatePayoutSettings(req).then(() => "accepted", (e) => { const c = ConnectError.from(e); return `${Code[c.code]} ${c.rawMessage.split(":")[0]}`; });
    await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: first }); // a first number needs none
    const [second, third] = [phone(), phone()];
    const change = { autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: second };
    // Before, the session alone redirected every later payout to another number.
    assert.equal(await refusal(change), "FailedPrecondition step_up_token");
    assert.equal(await refusal({ ...change, stepUpToken: await stepUp("payout") }), "PermissionDenied step_up_token", "a withdrawal's proof is not this one");
    assert.equal(await stored(), normalisePhone(first), "unchanged");

    const token = await stepUp("payout_number");
    await me.updatePayoutSettings({ ...change, stepUpToken: token });
    assert.equal(await stored(), normalisePhone(second));
    // The same change retried with its proof (a lost answer) is accepted; the proof does not carry to another number.
    assert.equal(await refusal({ ...change, stepUpToken: token }), "accepted");
    await assert.rejects(me.updatePayoutSettings({ ...change, payoutPhone: third, stepUpToken: token }), (e: ConnectError) =>
      e.code === Code.PermissionDenied && e.rawMessage === "payout_phone: the step-up token was spent on another payout number; this number needs a new step-up");
    assert.equal(await stored(), normalisePhone(second));
    // The same number again, or the other settings alone, need none.
    assert.equal(await refusal({ autoPayout: false, payoutPhone: second }), "accepted");
    assert.equal(await refusal({ autoPayout: true, autoPayoutMinimum: KES(50) }), "accepted");
  });

});
