// An admin's re-query of an open payout from the payment detail, while M-Pesa's Transaction Status API is down
// (the Daraja simulator answers it 503): the console says M-Pesa was not asked, in the service's words, and the
// payout stays open; once Daraja answers again, the same button settles it.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { PayoutStatus, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import type { Page } from "playwright-core";
import { KES, testPhone } from "@ttip/runtime/testing";
import { AdminHarness, eventually } from "./harness.js";


describe("admin console: re-querying a payout while M-Pesa cannot be asked", () => {
  const h = new AdminHarness();
  let page: Page;

  before(async () => {
    await h.start();
    ({ page } = await h.firstAdmin(testPhone()));
  });
  after(() => h.stop());

  test("Re-query M-Pesa on a payout whose status query Daraja does not take says Unavailable and what failed, not done; the payout stays open, and is settled by the same button once Daraja is back", async () => {
    // The sign-in phone as payout number: no cooling-off for the automatic payout.
    const payoutPhone = testPhone();
    const worker = await h.signUp(payoutPhone);
    h.daraja.script({ phone: payoutPhone }, { b2c: "lost_result", statusOutage: true }); // paid; only a status query tells, and it fails
    const pay = h.api(PaymentService, worker.accessToken);
    await pay.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: `0${payoutPhone.slice(3)}` });
    const { tip } = await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker.userId }, amount: KES(100), payment: { case: "mpesaPhone", value: testPhone() },
    });
    await eventually("the tip paid", async () => (await h.api(PaymentService).getTip({ tipId: tip!.tipId })).tip?.status === TipStatus.SUCCEEDED);
    const open = await eventually("the payout sent", async () => (await pay.listPayouts({})).payouts[0]);

    const detail = await h.payoutDetail(page, worker.userId, open.payoutId);
    await detail.getByRole("button", { name: "Re-query M-Pesa" }).click();
    const said = detail.getByRole("alert").filter({ hasText: "Unavailable, try again: payout_id: M-Pesa did not answer the payout status query" });
    await said.waitFor();
    assert.match((await said.textContent())!, /HTTP 503/, "what Daraja answered");
    assert.equal(await detail.getByRole("status").filter({ hasText: "Done." }).count(), 0, "not told it was asked");
    const still = (await pay.getPayout({ payoutId: open.payoutId })).payout!.status;
    assert.ok(still === PayoutStatus.PENDING || still === PayoutStatus.RESOLVING, PayoutStatus[still]);

    h.daraja.script({ phone: payoutPhone }, { b2c: "lost_result" });
    await detail.getByRole("button", { name: "Re-query M-Pesa" }).click();
    await detail.getByRole("status").filter({ hasText: "Done." }).waitFor();
    await eventually("the status result settled it", async () => (await pay.getPayout({ payoutId: open.payoutId })).payout?.status === PayoutStatus.SUCCEEDED);
  });
});
