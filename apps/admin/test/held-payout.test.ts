// A payout held because M-Pesa reported it paid in another amount (the Daraja simulator's amount_mismatch
// B2C) resolved in the console: the payment detail shows why it is held and a Resolve form; what M-Pesa's
// statement shows is sent with the device step-up, and the worker's payout ends, its hold settled once.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PayoutStatus, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import type { Page } from "playwright-core";
import { KES, testPhone } from "@ttip/runtime/testing";
import { AdminHarness, eventually } from "./harness.js";


describe("admin console: a payout held for the amount M-Pesa reported", () => {
  const h = new AdminHarness();
  let page: Page;
  let adminToken: string;

  before(async () => {
    await h.start();
    ({ page, token: adminToken } = await h.firstAdmin(testPhone()));
  });
  after(() => h.stop());

  /** A worker's automatic payout held for its amount (KES 95 asked, KES 96 sent), opened in the console's payment detail. */
  async function heldPayoutOnScreen() {
    // The sign-in phone as payout number: a first number other than it waits a day for automatic payouts.
    const payoutPhone = testPhone();
    const worker = await h.signUp(payoutPhone);
    h.daraja.script({ phone: payoutPhone }, { b2c: "amount_mismatch" }); // KES 95 asked, KES 96 sent
    const pay = h.api(PaymentService, worker.accessToken);
    await pay.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: `0${payoutPhone.slice(3)}` });
    const { tip } = await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker.userId }, amount: KES(100), payment: { case: "mpesaPhone", value: testPhone() },
    });
    await eventually("the tip paid", async () => (await h.api(PaymentService).getTip({ tipId: tip!.tipId })).tip?.status === TipStatus.SUCCEEDED);
    const held = await eventually("the payout held for its amount", async () => (await pay.listPayouts({})).payouts.find((p) => p.status === PayoutStatus.ON_HOLD));

    const detail = await h.payoutDetail(page, worker.userId, held.payoutId);
    await detail.getByTestId("payment-status").filter({ hasText: "on hold" }).waitFor();
    return { worker, pay, held, detail, tip: tip! };
  }

  test("the detail shows the mismatch and a Resolve form; paid KES 96 for the KES 95 payout is sent with the step-up: SUCCEEDED, the worker charged KES 95, audited", async () => {
    const { worker, pay, held, detail } = await heldPayoutOnScreen();
    // Before, nothing on screen ended it: no Resolve form.
    const form = detail.getByLabel("Resolve held payout");
    await form.getByRole("note").filter({ hasText: /KES 96.*KES 95/ }).waitFor();
    assert.equal(await form.getByLabel("M-Pesa receipt").inputValue(), held.mpesaReceipt, "the reported receipt, to check on the statement");

    // Not whole shillings: said on screen, nothing sent.
    await form.getByLabel("Paid amount (KES)").fill("95.5");
    await form.getByRole("button", { name: "Resolve as paid" }).click();
    await form.getByLabel("Note (Resolve as paid)").fill("statement checked");
    await form.getByRole("button", { name: "Confirm resolve as paid" }).click();
    await form.getByRole("alert").filter({ hasText: "whole shillings" }).waitFor();
    assert.equal((await pay.getPayout({ payoutId: held.payoutId })).payout?.status, PayoutStatus.ON_HOLD);
    // A stray comma is a typo, not KES 96 (before, every comma was dropped and this resolved the payout).
    await form.getByLabel("Paid amount (KES)").fill("9,6");
    await form.getByRole("button", { name: "Confirm resolve as paid" }).click();
    await form.getByRole("alert").filter({ hasText: "Paid amount: whole shillings" }).waitFor();
    assert.equal((await pay.getPayout({ payoutId: held.payoutId })).payout?.status, PayoutStatus.ON_HOLD);

    await form.getByLabel("Paid amount (KES)").fill("96");
    await form.getByRole("button", { name: "Confirm resolve as paid" }).click();
    await detail.getByTestId("payment-status").filter({ hasText: "succeeded" }).waitFor();
    assert.equal(await detail.getByLabel("Resolve held payout").count(), 0, "nothing left to resolve");
    // Before, a payout's detail had no ledger: the settlement's entry was not kept.
    await detail.getByLabel("Ledger entry").getByRole("cell", { name: "withdrawal", exact: true }).waitFor();
    await detail.getByLabel("Later ledger entry").getByRole("cell", { name: "B2C paid more than the payout" }).waitFor();
    await page.setViewportSize({ width: 390, height: 844 });
    for (const table of await detail.getByRole("table").all()) {
      const box = (await table.boundingBox())!;
      assert.ok(box.x + box.width <= 390, `a ledger table ends at ${box.x + box.width} px, past the 390 px screen`);
    }
    await page.screenshot({ path: "test-artifacts/admin/payout-ledger.png", fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });

    const done = (await pay.getPayout({ payoutId: held.payoutId })).payout!;
    assert.equal(PayoutStatus[done.status], PayoutStatus[PayoutStatus.SUCCEEDED]);
    assert.match(done.resultMessage, /KES 96 sent for this KES 95 payout/);
    const balance = await h.api(WalletService, worker.accessToken).getBalance({ currency: "KES" });
    assert.equal(balance.balances[0]?.ledger?.amountMinor, 0n, "the worker charged the payout's KES 95 alone");
    await eventually("the resolution audited", async () =>
      (await h.api(AuthAdminService, adminToken).listAuditEvents({ actions: [AuditAction.HELD_PAYOUT_RESOLVED] })).events.some((e) => e.target === `payout:${held.payoutId}` && /paid KES 96/.test(e.detail)));
  });

  test("the difference is shown as it is typed; over KES 50 it is sent only once ticked for that very figure, and M-Pesa's receipt is kept beside the statement's", async () => {
    const { pay, held, detail } = await heldPayoutOnScreen();
    const form = detail.getByLabel("Resolve held payout");
    const difference = form.getByTestId("paid-difference");
    const box = form.getByLabel(/I checked the statement/);
    // Before, a typo of 9600 for 96 went straight to the service, which booked KES 9,505 to the platform's fees.
    await form.getByLabel("Paid amount (KES)").fill("9600");
    await difference.filter({ hasText: "Difference: KES 9,505.00, more than the payout" }).waitFor();
    await box.check();
    // Another figure: the tick was for KES 9,505, not this one.
    await form.getByLabel("Paid amount (KES)").fill("200");
    await difference.filter({ hasText: "Difference: KES 105.00" }).waitFor();
    assert.equal(await box.isChecked(), false, "a confirmation does not carry over to another difference");
    await form.getByLabel("M-Pesa receipt").fill("SUPPORT002");
    await form.getByRole("button", { name: "Resolve as paid" }).click();
    await form.getByLabel("Note (Resolve as paid)").fill("statement shows KES 200");
    await form.getByRole("button", { name: "Confirm resolve as paid" }).click();
    await form.getByRole("alert").filter({ hasText: "tick the box" }).waitFor();
    assert.equal((await pay.getPayout({ payoutId: held.payoutId })).payout?.status, PayoutStatus.ON_HOLD, "nothing sent unticked");

    await box.check();
    await form.getByRole("button", { name: "Confirm resolve as paid" }).click();
    await detail.getByTestId("payment-status").filter({ hasText: "succeeded" }).waitFor();
    assert.equal(await detail.getByTestId("reported-receipt").textContent(), held.mpesaReceipt, "the receipt M-Pesa reported, kept");
    const done = (await pay.getPayout({ payoutId: held.payoutId })).payout!;
    assert.equal(done.mpesaReceipt, "SUPPORT002");
    assert.match(done.resultMessage, /KES 200 sent for this KES 95 payout/);
  });
  test("the Fraud queue's alert for a held payout links to where it is resolved: that payout's detail, with its Resolve form", async () => {
    const { held } = await heldPayoutOnScreen();
    await page.getByRole("link", { name: /Fraud/ }).click();
    const row = page.locator("tr").filter({ hasText: held.payoutId });
    // Before, the alert's Review cell was empty: nothing said where a held payout is resolved.
    await row.getByRole("link", { name: "Resolve in Payments" }).click();
    const detail = page.getByLabel("Payment detail");
    await detail.getByLabel("Resolve held payout").waitFor();
    assert.equal(await detail.getByTestId("payment-status").textContent(), "on hold");
    assert.ok(page.url().endsWith(`/admin/payments/payout/${held.payoutId}`));
  });
  test("a tip's ledger entry names its accounts: the worker's wallet by phone, platform fees, M-Pesa clearing; each id kept in its title", async () => {
    const { worker, tip } = await heldPayoutOnScreen();
    await page.getByLabel("Kind").selectOption("tips");
    await page.getByLabel("Worker id").fill(worker.userId);
    await page.getByRole("button", { name: "Filter" }).click();
    await page.locator(`tr[data-tip-id="${tip.tipId}"]`).getByRole("button").first().click();
    const accounts = page.getByLabel("Payment detail").getByTestId("ledger-account");
    const { user } = await h.api(AuthAdminService, adminToken).getUser({ userId: worker.userId });
    // Before, each row was the account's UUID alone.
    await accounts.filter({ hasText: `worker wallet · ${user!.phoneMasked}` }).waitFor();
    const said = await accounts.allTextContents();
    assert.ok(said.includes("platform fees (KES)") && said.includes("mpesa clearing (KES)"), said.join(" | "));
    assert.ok((await accounts.evaluateAll((tds) => tds.map((td) => td.getAttribute("title")))).every((id) => /^[0-9a-f-]{36}$/.test(id ?? "")), "the ids in the titles");
  });
});
