// An admin gives an M-Pesa tip back from its payment detail: the reason is asked, a device step-up proves the
// admin, the worker's share leaves their balance at once, and M-Pesa's reversal (the Daraja simulator's) shows
// on the tip when its result comes. Without a reason, the service's words name the field and nothing moves. A
// paybill payment refunded in Suspense goes back the same way, out of suspense.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { MpesaReversalState, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import type { Page } from "playwright-core";
import { KES, testPhone } from "@ttip/runtime/testing";
import { AdminHarness, eventually } from "./harness.js";


describe("admin console: giving an M-Pesa tip back", () => {
  const h = new AdminHarness();
  let page: Page;

  before(async () => {
    await h.start();
    ({ page } = await h.firstAdmin(testPhone()));
  });
  after(() => h.stop());

  /** The worker's available KES balance, as their wallet answers them. */
  const balanceOf = async (worker: { accessToken: string }) =>
    (await h.api(WalletService, worker.accessToken).getBalance({ currency: "KES" })).balances[0]?.available?.amountMinor ?? 0n;

  test("Reverse on M-Pesa asks a reason, takes the worker's share at once and shows M-Pesa's reversal; without a reason nothing moves", async () => {
    const worker = await h.signUp(testPhone());
    const balance = () => balanceOf(worker);
    const { tip } = await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker.userId }, amount: KES(100), payment: { case: "mpesaPhone", value: testPhone() },
    });
    await eventually("the tip paid and credited", async () =>
      (await h.api(PaymentService).getTip({ tipId: tip!.tipId })).tip?.status === TipStatus.SUCCEEDED && (await balance()) === 9500n);

    const detail = await h.tipDetail(page, worker.userId, tip!.tipId);
    await detail.getByRole("button", { name: "Reverse on M-Pesa" }).click();
    assert.match((await detail.getByRole("note").textContent())!, /M-Pesa gives all KES 100\.00 back to .+; the worker's share leaves the balance first\./);
    await detail.getByRole("button", { name: "Confirm reverse on m-pesa" }).click();
    await detail.getByRole("alert").filter({ hasText: "Check the input: reason:" }).waitFor();
    assert.equal(await balance(), 9500n, "nothing taken");

    await detail.getByLabel("Reason (Reverse on M-Pesa)").fill("customer tipped the wrong waiter");
    await detail.getByRole("button", { name: "Confirm reverse on m-pesa" }).click();
    await detail.getByRole("status").filter({ hasText: "Sent to M-Pesa; its answer shows here as the reversal's state." }).waitFor();
    assert.equal(await balance(), 0n, "the worker's KES 95 taken back");
    await eventually("M-Pesa reversed it", async () => (await h.api(PaymentService).getTip({ tipId: tip!.tipId })).tip?.mpesaReversal === MpesaReversalState.REVERSED);

    const again = await h.tipDetail(page, worker.userId, tip!.tipId);
    await again.getByTestId("mpesa-reversal").filter({ hasText: "reversed" }).waitFor();
    assert.equal(await again.getByTestId("refunded").textContent(), "KES 100.00");
    // The ledger shows what took the share back beside the credit (before, the credit alone).
    const taken = again.getByLabel("Later ledger entry");
    await taken.locator("caption").filter({ hasText: `Reversal of M-Pesa tip ${tip!.tipId}` }).waitFor();
    const amounts = (await taken.locator("tbody tr td:nth-child(2)").allTextContents()).map((a) => a.replace(/[^\d.-]/g, "")).sort();
    assert.deepEqual(amounts, ["-5.00", "-95.00", "100.00"], "the worker's 95 and the fee's 5 back to clearing's 100");
    const button = again.getByRole("button", { name: "Reverse on M-Pesa" });
    assert.deepEqual([await button.isDisabled(), await button.getAttribute("title")], [true, "M-Pesa reversed it already"], "nothing left to give back");
  });

  test("a reversal timed out in M-Pesa's queue is ended by the statement: 'Not reversed' gives the worker's share back and the tip can be reversed again", async () => {
    const worker = await h.signUp(testPhone());
    const balance = () => balanceOf(worker);
    const payer = testPhone();
    h.daraja.script({ phone: payer }, { reversal: "queue_timeout" });
    const { tip } = await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker.userId }, amount: KES(100), payment: { case: "mpesaPhone", value: payer },
    });
    await eventually("the tip credited", async () => (await balance()) === 9500n);
    const detail = await h.tipDetail(page, worker.userId, tip!.tipId);
    await detail.getByRole("button", { name: "Reverse on M-Pesa" }).click();
    await detail.getByLabel("Reason (Reverse on M-Pesa)").fill("asked by the customer");
    await detail.getByRole("button", { name: "Confirm reverse on m-pesa" }).click();
    await detail.getByRole("status").filter({ hasText: "Sent to M-Pesa" }).waitFor();
    // M-Pesa's queue timeout arrives, and support is alerted: only then is the statement's word taken.
    await eventually("support alerted", async () => (await h.db.pool.query("SELECT 1 FROM payment.mpesa_reversals WHERE tip_id = $1 AND alerted_at IS NOT NULL", [tip!.tipId])).rowCount === 1);
    // Support finds it in the Fraud queue, whose alert links to the tip's detail.
    await page.getByRole("link", { name: /Fraud/ }).click();
    await page.locator(`tr[data-tip-id="${tip!.tipId}"]`).filter({ hasText: "in doubt" }).getByRole("link", { name: "Open this tip" }).click();
    assert.ok(page.url().endsWith(`/admin/payments/tip/${tip!.tipId}`));
    const resolve = page.getByLabel("Payment detail").getByLabel("Resolve reversal");
    await resolve.getByRole("button", { name: "Not reversed on the statement" }).click();
    await resolve.getByLabel("Note (Not reversed on the statement)").fill("statement shows the KES 100 still in");
    await resolve.getByRole("button", { name: "Confirm not reversed on the statement" }).click();
    await eventually("the share back", async () => (await balance()) === 9500n);
    const again = await h.tipDetail(page, worker.userId, tip!.tipId);
    await again.getByTestId("mpesa-reversal").filter({ hasText: "failed" }).waitFor();
    assert.equal(await again.getByRole("button", { name: "Reverse on M-Pesa" }).isDisabled(), false, "it may be reversed again");
    assert.equal(await again.getByLabel("Resolve reversal").count(), 0);
    // Its alert ended with it: before, it stayed in the open queue for good, asking for what was done.
    await page.getByRole("link", { name: /Fraud/ }).click();
    await page.getByRole("heading", { name: "Alerts" }).waitFor();
    await page.locator(`tr[data-tip-id="${tip!.tipId}"]`).waitFor({ state: "detached" });
  });

  test("a paybill payment refunded before refunds were reversed (its money left in suspense) is reversed from Suspense, after a confirmation naming the amount", async () => {
    const paid = await h.daraja.c2b.pay({ billRefNumber: "NOSUCH78", amount: 310, skipValidation: true });
    await eventually("parked", async () => (await h.db.pool.query("SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1 AND suspense_entry_id IS NOT NULL", [paid.transId])).rowCount === 1);
    // As such a refund was recorded: closed, nothing sent to M-Pesa.
    await h.db.pool.query("UPDATE payment.c2b_payments SET resolution = 'refund', resolved_by = 'finance-1', resolved_at = now() WHERE trans_id = $1", [paid.transId]);
    await page.getByRole("link", { name: "Users" }).click();
    await page.getByRole("link", { name: "Suspense" }).click();
    await page.getByLabel("include resolved").check();
    const row = page.locator(`tr[data-receipt="${paid.transId}"]`);
    await row.getByRole("button", { name: "Reverse on M-Pesa" }).click();
    assert.match((await row.getByRole("note").textContent())!, /^Check M-Pesa's statement first: .* M-Pesa gives KES 310\.00 back to its payer, or answers that it was reversed already \(on the portal\); either way the money leaves suspense\.$/);
    await row.getByLabel("Reason (Reverse on M-Pesa)").fill("clearing what was refunded by hand");
    await row.getByRole("button", { name: "Confirm reverse on m-pesa" }).click();
    await eventually("M-Pesa reversed it", async () => (await h.db.pool.query("SELECT 1 FROM payment.mpesa_reversals WHERE suspense_receipt = $1 AND status = 'reversed'", [paid.transId])).rowCount === 1);
    await page.getByRole("link", { name: "Users" }).click();
    await page.getByRole("link", { name: "Suspense" }).click();
    await page.getByLabel("include resolved").check();
    await row.getByTestId("state").filter({ hasText: "refund: reversed to the payer" }).waitFor();
    assert.equal(await row.getByRole("button", { name: "Reverse on M-Pesa" }).count(), 0, "nothing more to send");
  });

  test("an alert that holds nothing (a callback for no payment) is closed from the Fraud queue with a note, and leaves the open queue", async () => {
    const conversation = `AG_${randomUUID()}`;
    const stray = { Result: { ResultType: 0, ResultCode: 0, ResultDesc: "done", OriginatorConversationID: conversation, ConversationID: conversation, TransactionID: "SXXXXXXXXX" } };
    const answer = await fetch(`${h.platform.urls.get("payment")}/daraja/reversal/result/${"z".repeat(32)}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(stray) });
    assert.equal(answer.status, 200);
    await page.getByRole("link", { name: "Users" }).click();
    await page.getByRole("link", { name: /Fraud/ }).click();
    const row = page.locator("tr").filter({ hasText: conversation });
    await row.getByRole("button", { name: "Close" }).click();
    await row.getByLabel("Note (Close)").fill("Safaricom's sandbox test call");
    await row.getByRole("button", { name: "Confirm close" }).click();
    await row.waitFor({ state: "detached" });
    await page.getByLabel("Alert status").selectOption({ label: "closed" });
    await page.locator("tr").filter({ hasText: conversation }).getByTestId("alert-status").filter({ hasText: "closed" }).waitFor();
    // Off the queue, so the next visit loads it afresh (with the open alerts).
    await page.getByRole("link", { name: "Users" }).click();
  });

  test("a held tip refused after review is reversed from its detail too: the KES 99 M-Pesa took goes back, the worker never had it", async () => {
    const worker = await h.signUp(testPhone());
    const held = await h.heldTip(worker.userId);
    await page.getByRole("link", { name: /Fraud/ }).click();
    const row = page.locator(`tr[data-tip-id="${held.tipId}"]`).filter({ hasText: "hold" });
    await row.getByRole("button", { name: "Refuse" }).click();
    await row.getByLabel("Note (Refuse)").fill("not the customer's payment");
    await row.getByRole("button", { name: "Confirm refuse" }).click();
    await eventually("the tip declined", async () => (await h.api(PaymentService).getTip({ tipId: held.tipId })).tip?.status === TipStatus.FAILED);

    const detail = await h.tipDetail(page, worker.userId, held.tipId);
    await detail.getByRole("button", { name: "Reverse on M-Pesa" }).click();
    assert.match((await detail.getByRole("note").textContent())!, /M-Pesa gives all KES 99\.00 back to .+; it comes out of suspense, where it waits\./);
    await detail.getByLabel("Reason (Reverse on M-Pesa)").fill("declined after review");
    await detail.getByRole("button", { name: "Confirm reverse on m-pesa" }).click();
    await detail.getByRole("status").filter({ hasText: "Sent to M-Pesa" }).waitFor();
    await eventually("M-Pesa reversed it", async () => (await h.api(PaymentService).getTip({ tipId: held.tipId })).tip?.mpesaReversal === MpesaReversalState.REVERSED);
    const reversals = h.daraja.transactions().filter((t) => t.kind === "reversal" && t.reversal === held.mpesaReceipt);
    assert.deepEqual(reversals.map((t) => [t.amount, t.resultCode]), [[99, 0]], "what M-Pesa took, given back once");
    assert.equal(await balanceOf(worker), 0n);
  });

  test("Refund to the card refunds what is left of a card tip from its detail, the worker's share first; then the button says it is refunded in full", async () => {
    const worker = await h.signUp(testPhone());
    const tip = await h.cardTip(worker.userId, { currency: "USD", amountMinor: 10_00n });
    const balance = () => balanceOf(worker);
    await eventually("the card tip credited", async () => (await balance()) > 0n);
    const detail = await h.tipDetail(page, worker.userId, tip.tipId);
    await detail.getByRole("button", { name: "Refund to the card" }).click();
    assert.match((await detail.getByRole("note").textContent())!, /What is left of the USD 10\.00 charge goes back to the card; the worker's share leaves the balance first\./);
    await detail.getByLabel("Reason (Refund to the card)").fill("customer asked");
    await detail.getByRole("button", { name: "Confirm refund to the card" }).click();
    await detail.getByRole("status").filter({ hasText: /^Refunded to the card \(re_/ }).waitFor();
    assert.equal(await balance(), 0n, "the worker's share taken back");
    const again = await h.tipDetail(page, worker.userId, tip.tipId);
    assert.equal(await again.getByTestId("refunded").textContent(), "USD 10.00");
    const button = again.getByRole("button", { name: "Refund to the card" });
    assert.deepEqual([await button.isDisabled(), await button.getAttribute("title")], [true, "refunded in full already"]);
  });

  test("a paybill payment refunded in Suspense goes back on M-Pesa: refused, it stays there with M-Pesa's words; in doubt, the Fraud queue leads back to it; Refund again reverses it", async () => {
    const paid = await h.daraja.c2b.pay({ billRefNumber: "NOSUCH77", amount: 263, skipValidation: true });
    const reversals = async () => (await h.db.pool.query<{ status: string; alerted: boolean }>(
      "SELECT status, alerted_at IS NOT NULL AS alerted FROM payment.mpesa_reversals WHERE suspense_receipt = $1 ORDER BY created_at", [paid.transId])).rows;
    const openSuspense = async () => {
      await page.getByRole("link", { name: "Users" }).click();
      await page.getByRole("link", { name: "Suspense" }).click();
      return page.locator(`tr[data-receipt="${paid.transId}"]`);
    };
    const refund = async (button: string, reason: string) => {
      const row = await openSuspense();
      await row.getByRole("button", { name: button }).click();
      await row.getByLabel(`Reason (${button})`).fill(reason);
      await row.getByRole("button", { name: `Confirm ${button.toLowerCase()}` }).click();
    };

    h.daraja.script({ amount: 263 }, { reversal: "refused" });
    await refund("Refund", "the customer paid the wrong paybill");
    await eventually("M-Pesa refused", async () => (await reversals())[0]?.status === "failed");
    // Before, a refund left the list at once, marked for someone to reverse by hand, its money in suspense for good.
    await (await openSuspense()).getByTestId("state").filter({ hasText: /reversal not made \(M-Pesa refused: .+\); the money is in suspense again/ }).waitFor();
    // As support reads it on a phone: the row's state and Refund again on screen without scrolling the row (before,
    // past the long Why column); kept under test-artifacts/admin.
    await page.setViewportSize({ width: 390, height: 844 });
    const refusedRow = page.locator(`tr[data-receipt="${paid.transId}"]`);
    const again = refusedRow.getByRole("button", { name: "Refund again" });
    await again.waitFor();
    const box = (await again.boundingBox())!;
    assert.ok(box.x + box.width <= 390, `Refund again ends at ${box.x + box.width} px, past the 390 px screen`);
    await page.screenshot({ path: "test-artifacts/admin/suspense-reversal-refused.png", fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });

    h.daraja.script({ amount: 263 }, { reversal: "queue_timeout" });
    await refund("Refund again", "utility account topped up");
    await eventually("support alerted", async () => (await reversals())[1]?.alerted === true);
    await page.getByRole("link", { name: /Fraud/ }).click();
    await page.locator("tr").filter({ hasText: `of paybill payment ${paid.transId}, ` }).getByRole("link", { name: "Resolve in Suspense" }).click();
    await page.waitForURL(/\/admin\/suspense$/);
    const row = page.locator(`tr[data-receipt="${paid.transId}"]`);
    await row.getByTestId("state").filter({ hasText: "reversal waiting for M-Pesa" }).waitFor();
    const resolve = row.getByLabel("Resolve reversal");
    await resolve.getByRole("button", { name: "Not reversed on the statement" }).click();
    await resolve.getByLabel("Note (Not reversed on the statement)").fill("statement shows the KES 263 still in");
    await resolve.getByRole("button", { name: "Confirm not reversed on the statement" }).click();
    await eventually("not reversed, by the statement", async () => (await reversals())[1]?.status === "failed");

    h.daraja.script({ amount: 263 }, {});
    await refund("Refund again", "sent once more");
    await eventually("M-Pesa reversed it", async () => (await reversals())[2]?.status === "reversed");
    const reversed = await openSuspense();
    await page.getByLabel("include resolved").check();
    await reversed.getByTestId("state").filter({ hasText: "refund: reversed to the payer" }).waitFor();
    await page.getByLabel("include resolved").uncheck();
    await reversed.waitFor({ state: "detached" });
    assert.deepEqual(h.daraja.transactions().filter((t) => t.kind === "reversal" && t.reversal === paid.transId).map((t) => t.amount), [263, 263, 263], "three requests, one per refund, none repeated");
  });
});
