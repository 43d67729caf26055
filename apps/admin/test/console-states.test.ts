// The admin console's states in chromium, one admin's page throughout: a worker's payout hold shown
// (since when, by whom, why) with only the action that applies, and its release's note audited; the
// writes that change what every tip or worker gets ask first; empty and failed states said, and a phone's width.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService, AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationAdminService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { AlertStatus, FraudAction } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import type { Page } from "playwright-core";
import { AdminHarness, eventually } from "./harness.js";
import { testPhone } from "@ttip/runtime/testing";

const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e) => ConnectError.from(e));

describe("admin console states in chromium", () => {
  const h = new AdminHarness();
  let page: Page;
  let adminToken: string;
  let adminId: string;

  before(async () => {
    await h.start();
    ({ page, token: adminToken } = await h.firstAdmin(testPhone()));
    adminId = JSON.parse(Buffer.from(adminToken.split(".")[1], "base64url").toString()).sub as string;
    await h.api(AuthService, adminToken).updateProfile({ displayName: "Wanjiru Admin" });
  });
  after(() => h.stop());

  test("a worker's payout hold: shown with since when, by whom and why; only Hold or Release offered; a second hold refused; the release's note audited", async () => {
    const worker = await h.signUp(testPhone(), "2580", "Juma Kiprop");
    await page.getByRole("link", { name: "Users" }).click();
    await page.getByRole("textbox", { name: "Search" }).fill("Juma Kiprop");
    await page.getByRole("button", { name: "Search" }).click();
    await page.locator(`tr[data-user-id="${worker.userId}"]`).getByRole("button").click();
    const detail = page.getByLabel("User detail");
    await detail.getByTestId("payout-hold").filter({ hasText: "Payouts run: no hold." }).waitFor();
    assert.equal(await detail.getByRole("button", { name: "Release payouts" }).count(), 0, "nothing to release");

    await detail.getByRole("button", { name: "Hold payouts" }).click();
    await detail.getByLabel("Reason (Hold payouts)").fill("chargeback under review");
    await detail.getByRole("button", { name: "Confirm hold payouts" }).click();
    const shown = detail.getByTestId("payout-hold").filter({ hasText: /^On hold since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d by / });
    await shown.waitFor();
    assert.match((await shown.textContent()) ?? "", new RegExp(`by Wanjiru Admin \\(${adminId}\\): chargeback under review$`));
    assert.equal(await detail.getByRole("button", { name: "Hold payouts" }).count(), 0, "held already: no second hold offered");

    // The server refuses what the screen no longer offers, and the first hold stays as it was.
    const payment = h.api(PaymentAdminService, adminToken);
    const again = await refusal(payment.holdPayouts({ workerId: worker.userId, reason: "another reason", idempotencyKey: `again-${worker.userId}` }));
    assert.equal(again?.code, Code.FailedPrecondition);
    assert.match(again!.rawMessage, /^worker_id: .*on hold already/);
    assert.equal((await payment.getPayoutHold({ workerId: worker.userId })).hold?.reason, "chargeback under review");

    await detail.getByRole("button", { name: "Release payouts" }).click();
    await detail.getByLabel("Note (Release payouts)").fill("bank confirmed the card holder");
    await detail.getByRole("button", { name: "Confirm release payouts" }).click();
    await detail.getByTestId("payout-hold").filter({ hasText: "Payouts run: no hold." }).waitFor();
    assert.equal(await detail.getByRole("button", { name: "Release payouts" }).count(), 0);
    // A release through the gateway without the device's step-up is refused before payment sees it (payment's own
    // refusal of a release of a worker not held is services/payment/test/console-roles.test.ts's).
    assert.equal((await refusal(payment.releasePayouts({ workerId: worker.userId, idempotencyKey: `release-${worker.userId}` })))?.code, Code.PermissionDenied);

    const released = await eventually("the release in the audit log", async () =>
      (await h.api(AuthAdminService, adminToken).listAuditEvents({ userId: worker.userId, actions: [AuditAction.PAYOUTS_RELEASED] })).events[0]);
    assert.equal(released.actorUserId, adminId);
    assert.equal(released.detail, "bank confirmed the card holder");
    assert.ok(released.occurredAt, "when");
  });
  test("a fee schedule's wrong input (basis points typed as 2.5 or with letters, a cap below the minimum) is refused naming the field: nothing asked, nothing sent", async () => {
    const calls = () => h.rpcs.filter((r) => r.path.endsWith("/CreateFeeSchedule")).length;
    const before = calls();
    await page.getByRole("link", { name: "Money" }).click();
    const form = page.getByRole("form", { name: "New fee schedule" });
    // Each figure's name stays on the screen once typed (before, placeholders only).
    assert.deepEqual(await form.locator("label").allInnerTexts(), ["Platform fee (bps)", "Minimum fee (KES)", "Fee cap (KES)", "Card fee (bps)", "Card fixed fee (KES)", "Applies from (Nairobi time, EAT)"]);
    await form.getByLabel("Minimum fee (KES)").fill("5");
    await form.getByLabel("Fee cap (KES)").fill("1500");
    await form.getByLabel("Applies from (Nairobi time, EAT)").fill(`${new Date().getUTCFullYear() + 3}-01-02T00:00`);
    // A card fee over 20% is a typo wallet refuses (2000 bps at most), said here before the step-up too.
    for (const [field, typed, most] of [["Platform fee (bps)", "2.5", 10_000], ["Card fee (bps)", "290abc", 2_000], ["Platform fee (bps)", "10001", 10_000], ["Card fee (bps)", "2001", 2_000]] as const) {
      await form.getByLabel("Platform fee (bps)").fill(field === "Platform fee (bps)" ? typed : "250");
      await form.getByLabel("Card fee (bps)").fill(field === "Card fee (bps)" ? typed : "290");
      await form.getByRole("button", { name: "Schedule new version" }).click();
      await page.getByRole("alert").filter({ hasText: `Check the input: ${field.toLowerCase()} must be whole basis points from 0 to ${most} ` }).waitFor();
      assert.equal(await page.getByRole("note").filter({ hasText: "A new KES version" }).count(), 0, `${typed}: nothing to confirm`);
    }
    // A cap below the minimum: refused before the confirmation and the step-up, naming the cap.
    await form.getByLabel("Platform fee (bps)").fill("250");
    await form.getByLabel("Card fee (bps)").fill("290");
    await form.getByLabel("Minimum fee (KES)").fill("1500");
    await form.getByLabel("Fee cap (KES)").fill("5");
    await form.getByRole("button", { name: "Schedule new version" }).click();
    await page.getByRole("alert").filter({ hasText: "Check the input: cap must be at least the minimum fee (KES 1500)" }).waitFor();
    assert.equal(await page.getByRole("note").filter({ hasText: "A new KES version" }).count(), 0, "a cap below the minimum: nothing to confirm");
    assert.equal(calls(), before, "nothing sent");
  });

  test("a fee amount with stray commas (\"1,2,3\") is refused naming the field, the focus on it, not read as KES 123; \"1,250.50\" is read as written", async () => {
    const calls = () => h.rpcs.filter((r) => r.path.endsWith("/CreateFeeSchedule")).length;
    const before = calls();
    await page.getByRole("link", { name: "Money" }).click();
    const form = page.getByRole("form", { name: "New fee schedule" });
    await form.getByLabel("Platform fee (bps)").fill("250");
    await form.getByLabel("Card fee (bps)").fill("290");
    await form.getByLabel("Fee cap (KES)").fill("1500");
    await form.getByLabel("Applies from (Nairobi time, EAT)").fill(`${new Date().getUTCFullYear() + 3}-01-02T00:00`);
    for (const [label, typed] of [["Minimum fee (KES)", "1,2,3"], ["Fee cap (KES)", "1,50,0"], ["Card fixed fee (KES)", "12,5"]] as const) {
      const box = form.getByLabel(label);
      const kept = await box.inputValue();
      await box.fill(typed);
      await form.getByRole("button", { name: "Schedule new version" }).click();
      // Before, every comma was dropped: KES 123 went to the confirmation as the minimum fee.
      await page.getByRole("alert").filter({ hasText: `Check the input: ${label.toLowerCase()} must be an amount in KES` }).waitFor();
      assert.equal(await page.getByRole("note").filter({ hasText: "A new KES version" }).count(), 0, `${typed}: nothing to confirm`);
      assert.ok(await box.evaluate((el) => el === document.activeElement), `the focus on ${label}`);
      await box.fill(kept);
    }
    await form.getByLabel("Minimum fee (KES)").fill("1,250.50");
    await form.getByLabel("Fee cap (KES)").fill("2,000");
    await form.getByRole("button", { name: "Schedule new version" }).click();
    await page.getByRole("note").filter({ hasText: "(min KES 1,250.50, cap KES 2,000.00)" }).waitFor();
    await page.getByRole("button", { name: "Cancel" }).click();
    assert.equal(calls(), before, "nothing sent");
  });
  test("scheduling a fee version, unblocking a number and activating a template ask first: Cancel sends nothing, a double click on Confirm sends one call", async () => {
    const calls = (method: string) => h.rpcs.filter((r) => r.path.endsWith(`/${method}`)).length;
    // Two clicks in one frame, as a double tap lands: the second before the screen re-renders.
    const doubleClick = (button: ReturnType<Page["getByRole"]>) => button.evaluate((b: HTMLButtonElement) => (b.click(), b.click()));

    // A fee version: what will be scheduled is shown, in its currency, before anything is sent.
    await page.getByRole("link", { name: "Money" }).click();
    const form = page.getByRole("form", { name: "New fee schedule" });
    const year = new Date().getUTCFullYear() + 2;
    await form.getByLabel("Platform fee (bps)").fill("260");
    await form.getByLabel("Minimum fee (KES)").fill("5");
    await form.getByLabel("Fee cap (KES)").fill("1500");
    await form.getByLabel("Card fee (bps)").fill("290");
    await form.getByLabel("Applies from (Nairobi time, EAT)").fill(`${year}-01-02T00:00`);
    await form.getByRole("button", { name: "Schedule new version" }).click();
    const feeNote = page.getByRole("note").filter({ hasText: `A new KES version applies to every tip from ${year}-01-02 00:00:00 EAT` });
    await feeNote.waitFor();
    assert.match((await feeNote.textContent()) ?? "", /platform fee 260 bps \(min KES 5\.00, cap KES 1,500\.00\)/);
    await page.getByRole("button", { name: "Cancel" }).click();
    await feeNote.waitFor({ state: "detached" });
    assert.equal(calls("CreateFeeSchedule"), 0, "Cancel sent nothing");
    await form.getByRole("button", { name: "Schedule new version" }).click();
    await doubleClick(page.getByRole("button", { name: "Confirm schedule" }));
    await page.getByRole("status").filter({ hasText: `from ${year}-01-02 00:00:00 EAT` }).waitFor();
    await page.waitForLoadState("networkidle");
    assert.equal(calls("CreateFeeSchedule"), 1, "one call for the double click");

    // A blocked payer number, unblocked: the number is named before it is let through.
    const payment = h.api(PaymentAdminService, adminToken);
    await payment.blockPhoneNumber({ phone: "0712345670", reason: "card testing" });
    await page.getByRole("link", { name: /Fraud/ }).click();
    await page.getByLabel("Payer phone number").fill("0712345670");
    await page.getByRole("button", { name: "Unblock number" }).click();
    const unblockNote = page.getByRole("note").filter({ hasText: "Tips paid from 0712345670 will be accepted again." });
    await unblockNote.waitFor();
    await page.getByRole("button", { name: "Cancel" }).click();
    await unblockNote.waitFor({ state: "detached" });
    assert.equal(calls("UnblockPhoneNumber"), 0, "Cancel sent nothing");
    assert.equal((await h.db.pool.query("SELECT count(*)::int AS n FROM payment.blocked_phones")).rows[0].n, 1, "still blocked");
    await page.getByRole("button", { name: "Unblock number" }).click();
    await doubleClick(page.getByRole("button", { name: "Confirm unblock number" }));
    await page.getByRole("status").filter({ hasText: "Done." }).waitFor();
    await page.waitForLoadState("networkidle");
    assert.equal(calls("UnblockPhoneNumber"), 1, "one call for the double click");
    assert.equal((await h.db.pool.query("SELECT count(*)::int AS n FROM payment.blocked_phones")).rows[0].n, 0, "unblocked");

    // A template version: activating it changes what every worker is sent.
    const notifications = h.api(NotificationAdminService, adminToken);
    const { template } = await notifications.createTemplateVersion({ key: TemplateKey.TIP_RECEIVED, channel: Channel.SMS, locale: "en", body: "Tip of {{amount}} from {{from}}; {{net}} is yours." });
    await page.getByRole("link", { name: "Templates" }).click();
    await page.locator('tr[data-template="TIP_RECEIVED-SMS-en"]').getByRole("button").click();
    const editor = page.getByLabel("Template editor");
    const row = editor.locator(`tr[data-version="${template!.version}"]`);
    await row.getByRole("button", { name: "Activate" }).click();
    const activateNote = row.getByRole("note").filter({ hasText: `v${template!.version} will be the text of every tip received sms in en from now on.` });
    await activateNote.waitFor();
    await row.getByRole("button", { name: "Cancel" }).click();
    await activateNote.waitFor({ state: "detached" });
    assert.equal(calls("ActivateTemplateVersion"), 0, "Cancel sent nothing");
    await row.getByRole("button", { name: "Activate" }).click();
    await doubleClick(row.getByRole("button", { name: "Confirm activate" }));
    await row.filter({ hasText: "(active)" }).waitFor();
    await page.waitForLoadState("networkidle");
    assert.equal(calls("ActivateTemplateVersion"), 1, "one call for the double click");
  });
  test("empty states say what is empty; a failed first read of the M-Pesa balance says so and retries; at 360 px Approve and Refuse and a partner's secret fit the screen", async () => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.getByRole("link", { name: "Partners" }).click();
    await page.getByText("No partner keys issued yet.").waitFor();

    await page.getByRole("link", { name: "Notifications" }).click();
    const nobody = "0192d6a0-7c1e-7000-8000-000000000000";
    await page.getByLabel("Delivery user id").fill(nobody);
    await page.getByRole("button", { name: "Show deliveries" }).click();
    await page.getByText(`No deliveries to user ${nobody}.`).waitFor();

    // The first read of the last balance check fails once: the section says so, and Retry reads it again.
    let failOnce = true;
    await page.route("**/ttip.payment.v1.PaymentAdminService/GetMpesaBalance", (route) => (failOnce ? ((failOnce = false), route.abort("connectionreset")) : route.continue()));
    try {
      await page.getByRole("link", { name: "Money" }).click();
      const failed = page.getByRole("alert").filter({ hasText: "Could not read the last M-Pesa balance" });
      await failed.waitFor();
      await failed.getByRole("button", { name: "Retry" }).click();
      // No check was ever asked for here: NOT_FOUND is "never checked", not a failure.
      await failed.waitFor({ state: "detached" });
    } finally {
      await page.unroute("**/ttip.payment.v1.PaymentAdminService/GetMpesaBalance");
    }
    // No card tip and no payout here: the charts say so rather than draw zeros.
    await page.getByTestId("chart-success-card").getByText(/^No card payments in these \d+ days\.$/).waitFor();
    await page.getByTestId("chart-latency").getByText(/^No payouts ended in these \d+ days\.$/).waitFor();
    assert.equal(await page.getByTestId("chart-latency").getByText(/ ms/).count(), 0, "no 0 ms latency");

    // A phone: a held tip's Approve and Refuse are on screen without scrolling its row; the secret wraps.
    await page.setViewportSize({ width: 360, height: 800 });
    const width = await page.evaluate(() => document.documentElement.clientWidth);
    const rightOf = async (l: ReturnType<Page["getByRole"]>) => { const b = (await l.boundingBox())!; return b.x + b.width; };
    const worker = await h.signUp(testPhone());
    const tip = await h.heldTip(worker.userId);
    await page.getByRole("link", { name: /Fraud/ }).click();
    const row = page.locator(`tr[data-tip-id="${tip.tipId}"]`).filter({ hasText: "hold" });
    for (const name of ["Approve", "Refuse"]) {
      const button = row.getByRole("button", { name });
      await button.waitFor();
      assert.ok((await rightOf(button)) <= width, `${name} ends at ${await rightOf(button)} px, past the ${width} px screen`);
    }
    // The held tip's amount not shown (its read failed): Approve waits for it, Refuse does not. Before, money
    // nobody had seen could be approved.
    await page.route("**/ttip.payment.v1.PaymentAdminService/GetPaymentDetail", (route) => route.abort("connectionreset"));
    try {
      await page.getByRole("link", { name: "Money" }).click();
      await page.getByRole("link", { name: /Fraud/ }).click();
      await row.getByRole("alert").filter({ hasText: "Amount not shown" }).waitFor();
      assert.equal(await row.getByRole("button", { name: "Approve" }).isDisabled(), true);
      assert.equal(await row.getByRole("button", { name: "Refuse" }).isDisabled(), false);
    } finally {
      await page.unroute("**/ttip.payment.v1.PaymentAdminService/GetPaymentDetail");
    }
    await page.getByRole("link", { name: "Partners" }).click();
    await page.getByLabel("Partner name").fill("Savannah POS");
    await page.getByRole("button", { name: "Issue key" }).click();
    const secret = page.getByTestId("partner-secret");
    await secret.waitFor();
    assert.ok((await rightOf(secret)) <= width, `the secret ends at ${await rightOf(secret)} px, past the ${width} px screen`);
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test("suspense: a paybill payment over M-Pesa's KES 250,000 or below KES 1 is shown to refund, without Match (the server refuses it); one at the cap can still be matched", async () => {
    const [over, atCap, below] = [
      await h.daraja.c2b.pay({ billRefNumber: "NOSUCH3", amount: 250_000.01, skipValidation: true }),
      await h.daraja.c2b.pay({ billRefNumber: "NOSUCH4", amount: 250_000, skipValidation: true }),
      await h.daraja.c2b.pay({ billRefNumber: "NOSUCH6", amount: 0.99, skipValidation: true }),
    ];
    await page.getByRole("link", { name: "Users" }).click();
    await page.getByRole("link", { name: "Suspense" }).click();
    const overRow = page.locator(`tr[data-receipt="${over.transId}"]`);
    await overRow.getByText("over M-Pesa's cap: check with Safaricom, refund").waitFor();
    assert.equal(await overRow.getByRole("button", { name: "Match" }).count(), 0, "no Match offered");
    assert.equal(await overRow.getByLabel(`Code for ${over.transId}`).count(), 0, "no code to type");
    await overRow.getByRole("button", { name: "Refund" }).waitFor();
    const atCapRow = page.locator(`tr[data-receipt="${atCap.transId}"]`);
    await atCapRow.getByRole("button", { name: "Match" }).waitFor();
    assert.equal(await atCapRow.getByText("over M-Pesa's cap").count(), 0);
    // Before, a code box and Match, which the server refuses for a payment of no money.
    const belowRow = page.locator(`tr[data-receipt="${below.transId}"]`);
    await belowRow.getByText("below KES 1, no money: refund to close").waitFor();
    assert.deepEqual([await belowRow.getByRole("button", { name: "Match" }).count(), await belowRow.getByLabel(`Code for ${below.transId}`).count()], [0, 0], "no Match offered");
    await belowRow.getByRole("button", { name: "Refund" }).waitFor();
  });

  test("suspense: Match with the code box empty is refused at once naming the field, the focus on the box: no reason asked, no device step-up, nothing sent", async () => {
    const paid = await h.daraja.c2b.pay({ billRefNumber: "NOSUCH8", amount: 300, skipValidation: true });
    await page.getByRole("link", { name: "Users" }).click();
    await page.getByRole("link", { name: "Suspense" }).click();
    const row = page.locator(`tr[data-receipt="${paid.transId}"]`);
    const code = row.getByLabel(`Code for ${paid.transId}`);
    const sent = h.rpcs.length;
    const moneyCalls = () => h.rpcs.slice(sent).map((r) => r.path).filter((p) => /DeviceChallenge|ResolveSuspensePayment/.test(p));
    const focused = () => code.evaluate((el) => el === document.activeElement);

    await code.fill("  ");
    await row.getByRole("button", { name: "Match" }).click();
    // Before, the reason was asked, then the device signed a step-up, and only then did the server refuse the code.
    await row.getByRole("alert").filter({ hasText: "Worker code: type the code" }).waitFor();
    assert.equal(await row.getByLabel("Reason (Match)").count(), 0, "no reason asked");
    assert.ok(await focused(), "the focus on the code box");

    // Cleared after the reason was typed: refused on Confirm the same way.
    await code.fill("QX7");
    await row.getByRole("button", { name: "Match" }).click();
    await row.getByLabel("Reason (Match)").fill("customer called");
    await code.fill("");
    await row.getByRole("button", { name: "Confirm match" }).click();
    await row.getByRole("alert").filter({ hasText: "Worker code: type the code" }).waitFor();
    assert.ok(await focused(), "the focus on the code box");
    assert.deepEqual(moneyCalls(), [], "no step-up asked, nothing sent");
    const { payments } = await h.api(PaymentAdminService, adminToken).listSuspensePayments({ includeResolved: false, page: { pageSize: 100 } });
    assert.equal(payments.find((p) => p.receipt === paid.transId)?.resolution, "open");
  });

  test("suspense: past the 50 newest payments, More shows the older ones: the one waiting longest can be resolved", async () => {
    const oldest = await h.daraja.c2b.pay({ billRefNumber: "NOSUCH9", amount: 120, skipValidation: true });
    for (let i = 0; i < 50; i++) await h.daraja.c2b.pay({ billRefNumber: `NOSUCH${i}X`, amount: 100, skipValidation: true });
    await page.getByRole("link", { name: "Users" }).click();
    await page.getByRole("link", { name: "Suspense" }).click();
    const row = page.locator(`tr[data-receipt="${oldest.transId}"]`);
    await page.locator("tr[data-receipt]").nth(49).waitFor();
    assert.equal(await row.count(), 0, "the oldest is past the first page");
    // Before, the first 50 were all there was: no More, and the oldest payment out of reach.
    await page.getByRole("button", { name: "More" }).click();
    await row.getByRole("button", { name: "Refund" }).waitFor();
    assert.equal(await page.locator(`tr[data-receipt="${oldest.transId}"]`).count(), 1, "shown once");
  });

  test("the Fraud badge counts every held item, however many open flags (which nothing closes) came after them", async () => {
    const worker = await h.signUp(testPhone(), "2580", "Otieno Flags");
    await h.heldTip(worker.userId);
    // 100 open flags newer than the hold: before, the badge read the newest 100 open alerts and found no hold among them.
    await h.db.pool.query(
      `INSERT INTO payment.fraud_alerts (alert_id, reason, action, worker_id, detail)
       SELECT gen_random_uuid(), 'CALLBACK_MISMATCH', 'flag', $1, 'flag ' || n FROM generate_series(1, 100) AS n`,
      [worker.userId],
    );
    const payment = h.api(PaymentAdminService, adminToken);
    let held = 0;
    for (let token = "", first = true; first || token; first = false) {
      const { alerts, page: next } = await payment.listFraudAlerts({ status: AlertStatus.OPEN, page: { pageSize: 100, pageToken: token } });
      held += alerts.filter((a) => a.action === FraudAction.HOLD).length;
      token = next?.nextPageToken ?? "";
    }
    assert.ok(held >= 1 && held < 100, `${held} held`);
    await page.reload();
    await page.getByRole("status", { name: `${held} held for review` }).waitFor();
    const listed = await payment.listFraudAlerts({ status: AlertStatus.OPEN, action: FraudAction.HOLD, page: { pageSize: 100 } });
    assert.equal(listed.alerts.length, held, "asked by action: only the holds");
  });

  test("a refusal puts the focus on the field it names, on every search and form: users, payments, fraud's payer number, partners, notifications", async () => {
    const focusedLabel = () => page.evaluate(() => document.activeElement?.getAttribute("aria-label") ?? document.activeElement?.tagName);
    const refused = async (said: RegExp | string, label: string) => {
      await page.getByRole("alert").filter({ hasText: said }).first().waitFor();
      // Before, the focus stayed on the button that sent it (or fell to the page).
      assert.equal(await focusedLabel(), label, `${String(said)}: the focus`);
    };
    await page.getByRole("link", { name: "Users" }).click();
    await page.getByRole("textbox", { name: "Search" }).fill("x".repeat(300));
    await page.getByRole("button", { name: "Search" }).click();
    await refused("query: must be at most 100 characters", "Search");

    await page.getByRole("link", { name: "Payments" }).click();
    const filters = page.getByRole("form", { name: "Payment filters" });
    // The two times say on the screen which is which (before, two blank date fields side by side).
    assert.deepEqual(await filters.locator("label").allInnerTexts(), ["From", "To"]);
    await filters.getByLabel("Worker id").fill("not-a-worker");
    await filters.getByRole("button", { name: "Filter" }).click();
    await refused("worker_id: must be a valid UUID", "Worker id");
    await filters.getByLabel("Worker id").fill("");
    await filters.getByLabel("Min amount").fill("20");
    await filters.getByRole("button", { name: "Filter" }).click();
    await refused(/^currency: /, "Currency");
    await filters.getByLabel("Currency").selectOption("KES");
    await filters.getByLabel("Min KES").fill("1,2,3");
    await filters.getByRole("button", { name: "Filter" }).click();
    await refused(/^min_amount: /, "Min KES");
    await filters.getByLabel("Min KES").fill("500");
    await filters.getByLabel("Max KES").fill("100");
    await filters.getByRole("button", { name: "Filter" }).click();
    await refused("max_amount_minor: must not be below min_amount_minor", "Max KES");
    await filters.getByLabel("Min KES").fill("");
    await filters.getByLabel("Max KES").fill("");
    await filters.getByLabel("Currency").selectOption("");

    // A number that is not one: said at once, no reason asked for a block the server would refuse.
    await page.getByRole("link", { name: /Fraud/ }).click();
    await page.getByLabel("Payer phone number").fill("0812");
    await page.getByRole("button", { name: "Block number", exact: true }).click();
    await refused("phone: type the payer's Kenyan mobile number", "Payer phone number");
    assert.equal(await page.getByLabel("Reason (Block number)").count(), 0, "no reason asked");
    // A reason too short: the server names it, and the focus goes back to the reason's box.
    await page.getByLabel("Payer phone number").fill("0711 222 333");
    await page.getByRole("button", { name: "Block number", exact: true }).click();
    await page.getByRole("button", { name: "Confirm block number" }).click();
    await refused("reason: must be at least 3 characters", "Reason (Block number)");
    await page.getByRole("button", { name: "Cancel" }).click();

    await page.getByRole("link", { name: "Partners" }).click();
    await page.getByLabel("Partner name").fill("");
    await page.getByRole("button", { name: "Issue key" }).click();
    await refused("partner_name: must be at least 2 characters", "Partner name");
    await page.getByLabel("Partner name").fill("Acme POS");
    for (const box of await page.getByRole("checkbox").all()) await box.uncheck();
    await page.getByRole("button", { name: "Issue key" }).click();
    await refused("scopes: must contain at least 1 item", "INPUT");
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLInputElement | null)?.type), "checkbox", "the focus on the first scope");

    await page.getByRole("link", { name: "Notifications" }).click();
    await page.getByLabel("Delivery user id").fill("someone");
    await page.getByRole("button", { name: "Show deliveries" }).click();
    await refused(/user_id: /, "Delivery user id");
  });

  test("a paybill payment resolved in Suspense leaves the Fraud queue: its alert closes with the admin's note (refunded: rejected; matched: approved)", async () => {
    const payment = h.api(PaymentAdminService, adminToken);
    const alertOf = async (receipt: string) =>
      (await payment.listFraudAlerts({ page: { pageSize: 100 } })).alerts.find((a) => a.detail.startsWith(`paybill payment ${receipt} `));
    const paid = await h.daraja.c2b.pay({ billRefNumber: "NOSUCH10", amount: 70, skipValidation: true });
    const open = await eventually("the suspense alert", () => alertOf(paid.transId));
    assert.equal(open.status, AlertStatus.OPEN);
    await page.getByRole("link", { name: /Fraud/ }).click();
    const alertRow = page.locator("tr").filter({ hasText: `paybill payment ${paid.transId}` });
    await alertRow.waitFor();

    // The alert says where it is decided (before, its Review cell was empty).
    await alertRow.getByRole("link", { name: "Resolve in Suspense" }).click();
    await page.waitForURL(/\/admin\/suspense$/);
    const row = page.locator(`tr[data-receipt="${paid.transId}"]`);
    await row.getByRole("button", { name: "Refund" }).click();
    await row.getByLabel("Reason (Refund)").fill("customer called, refunded by M-Pesa reversal");
    await row.getByRole("button", { name: "Confirm refund" }).click();
    await row.waitFor({ state: "detached" });

    // Before, the alert stayed open (and counted as held) with nothing left to do about it.
    const closed = await alertOf(paid.transId);
    assert.equal(AlertStatus[closed!.status], AlertStatus[AlertStatus.REJECTED]);
    assert.match(closed!.detail, /review: customer called, refunded by M-Pesa reversal$/);
    await page.getByRole("link", { name: /Fraud/ }).click();
    await page.getByRole("heading", { name: "Alerts" }).waitFor();
    await page.waitForTimeout(300);
    assert.equal(await alertRow.count(), 0, "not in the open queue");
  });

  test("an OTP template without {{code}} is refused naming the text, with the focus on it: nothing saved that would sign nobody in", async () => {
    await page.getByRole("link", { name: "Templates" }).click();
    await page.locator('tr[data-template="OTP-SMS-en"]').getByRole("button").click();
    const editor = page.getByLabel("Template editor");
    await editor.getByLabel("Template text").fill("Welcome back to TTIP. It expires in {{minutes}} minutes.");
    await editor.getByRole("button", { name: "Save as new version" }).click();
    // Before, "Saved as v2 (not active yet)": one click on Activate from every sign-in SMS coming without its code.
    await editor.getByRole("alert").filter({ hasText: "body: OTP must use {{code}}" }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("aria-label")), "Template text");
    assert.equal(await editor.locator("tr[data-version]").count(), 1, "no new version");
  });

  test("an SMS template's parts are counted as it is typed; over 3 is refused before anything is sent, naming the text, with the focus on it", async () => {
    await page.getByRole("link", { name: "Templates" }).click();
    await page.locator('tr[data-template="OTP-SMS-en"]').getByRole("button").click();
    const editor = page.getByLabel("Template editor");
    const saves = () => h.rpcs.filter((r) => r.path.endsWith("/CreateTemplateVersion")).length;
    const savedBefore = saves();
    await editor.getByLabel("Template text").fill(`Your code is {{code}}. ${"Keep it to yourself. ".repeat(25)}`);
    await editor.getByTestId("sms-size").filter({ hasText: "552 SMS characters, 4 SMS parts (at most 3)" }).waitFor();
    await editor.getByRole("button", { name: "Save as new version" }).click();
    // Before, sent and saved: each sign-in code as 4 billed SMS parts.
    await editor.getByRole("alert").filter({ hasText: "body: an SMS template may take at most 3 SMS parts (459 plain characters); this one takes 4" }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("aria-label")), "Template text");
    assert.equal(saves(), savedBefore, "nothing sent");
    await editor.getByLabel("Template text").fill("Your code is {{code}}.");
    await editor.getByTestId("sms-size").filter({ hasText: "26 SMS characters, 1 SMS part (at most 3)" }).waitFor();
  });

  test("by keyboard: the first Tab stop skips the header's screens to the screen's own first control, each showing the focus", async () => {
    await page.getByRole("link", { name: "Users" }).click();
    await page.reload(); // Tab from the top of the page, as it opens
    await page.getByRole("textbox", { name: "Search" }).waitFor();
    await page.keyboard.press("Tab");
    const focus = () => page.evaluate(() => {
      const e = document.activeElement as HTMLElement;
      const style = getComputedStyle(e);
      return { what: `${e.tagName.toLowerCase()} ${e.getAttribute("aria-label") || e.innerText}`, inHeader: Boolean(e.closest("header")), outline: `${style.outlineStyle} ${style.outlineWidth}` };
    });
    // Before, the first stops were the header's dozen screens and Sign out.
    assert.deepEqual(await focus(), { what: "a Skip to the screen", inHeader: false, outline: "solid 3px" });
    await page.keyboard.press("Enter");
    await page.keyboard.press("Tab");
    assert.deepEqual(await focus(), { what: "input Search", inHeader: false, outline: "solid 3px" });
  });

  test("Money's revenue by month asks analytics for twelve months it takes: a table or its empty state, never a refusal of the console's own range", async () => {
    await page.getByRole("link", { name: "Money" }).click();
    const revenue = page.locator("section").filter({ has: page.getByRole("heading", { name: "Revenue (platform fees)" }) });
    await page.getByLabel("Revenue by").selectOption({ label: "by month (12 months)" });
    // Before, on every day but a month's first: "Check the input: range: from must be before to, at most 366 days apart".
    await revenue.getByRole("table", { name: "Revenue" }).locator("tbody tr").first().or(revenue.getByText("No KES revenue in this period.")).waitFor();
    await page.waitForTimeout(300);
    assert.equal(await revenue.getByRole("alert").count(), 0, await revenue.getByRole("alert").allInnerTexts().then(String));
    await page.getByLabel("Revenue by").selectOption({ label: "by day (30 days)" });
  });

  test("a key issued whose answer was lost, then the name corrected: the corrected request is a new one, issued; not refused as another request under the first key", async () => {
    await page.getByRole("link", { name: "Partners" }).click();
    let lose = true;
    await page.route("**/ttip.auth.v1.AuthAdminService/IssuePartnerApiKey", async (route) => {
      if (!lose) return route.continue();
      lose = false;
      await route.fetch();
      await route.abort("connectionreset");
    });
    try {
      await page.getByLabel("Partner name").fill("Kilifi Tll");
      for (const box of await page.getByRole("checkbox").all()) await box.check();
      await page.getByRole("button", { name: "Issue key" }).click();
      await page.getByRole("alert").filter({ hasText: /./ }).first().waitFor();
      await page.getByLabel("Partner name").fill("Kilifi Till");
      await page.getByRole("button", { name: "Issue key" }).click();
      // Before: "idempotency_key: already used for a different request", and the correction never went.
      await page.getByRole("status").filter({ hasText: /^Issued ttip_sk_/ }).waitFor();
    } finally {
      await page.unroute("**/ttip.auth.v1.AuthAdminService/IssuePartnerApiKey");
    }
    const { keys } = await h.api(AuthAdminService, adminToken).listPartnerApiKeys({});
    assert.deepEqual(keys.map((k) => k.partnerName).filter((n) => n.startsWith("Kilifi")).sort(), ["Kilifi Till", "Kilifi Tll"], "the lost one and the corrected one");
  });
});
