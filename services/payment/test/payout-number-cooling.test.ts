// A payout number that replaced another receives no automatic payout for the cooling-off (24 hours): the payout
// is held back, not failed, and reconciliation sends it once when the time is up. On its own harness: the test
// moves the services' clock a day on, which the other payout tests' timings would not survive.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { PayoutStatus, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PAYOUT_NUMBER_COOLING_OFF_MS } from "../src/payout-number-cooling.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";

describe("a new payout number's cooling-off", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  let internal: Client<typeof PaymentInternalService>;

  before(async () => {
    h = await startHarness();
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
    const worker = randomUUID();
    const [first, second] = [phone(), phone()];
    const me = asWorker(worker);
    const set = await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: first });
    assert.equal(set.settings!.automaticPayoutsFrom, undefined, "a first number waits for nothing");
    const changedAt = h.clock.now();
    const { settings } = await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: second });

    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip succeeded");
    const outcome = await eventually(async () => (b2cTo(second).length ? "sent" : (await dueAt(worker)) ? "held back" : undefined), "the automatic payout sent or held back");
    // Before, the tip's automatic payout went at once to the new number.
    assert.equal(outcome, "held back");
    // The worker is told until when (the web app's payout settings show it).
    const from = timestampDate(settings!.automaticPayoutsFrom!).getTime();
    assert.ok(from >= changedAt + PAYOUT_NUMBER_COOLING_OFF_MS && from <= h.clock.now() + PAYOUT_NUMBER_COOLING_OFF_MS, "from the change, a day on");
    assert.equal((await dueAt(worker))?.getTime(), from, "due when the cooling-off ends");
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
});
