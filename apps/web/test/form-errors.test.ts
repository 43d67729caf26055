// After a refused form the focus is on the field to correct (as on the tip page), the withdraw form's
// message names the limit the screen shows, the shares page says it is loading, and the tip status
// page's feedback form keeps what the customer chose when it is refused.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { testPhone } from "@ttip/runtime/testing";
import { eventually, WebHarness } from "./harness.js";

/** The id (else name) of the element holding the focus. */
const focused = (page: Page) => page.evaluate(() => document.activeElement?.id || document.activeElement?.getAttribute("name") || document.activeElement?.tagName || "");

describe("refused forms and loading pages (chromium at phone size)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  test("withdraw: the amount over the per-withdrawal limit shown above is refused naming that limit, and the focus goes to the field named", async () => {
    const worker = await h.worker("Nekesa");
    const page = await h.signedInPhone(worker);
    await page.goto(`${h.url}/w/withdraw`);
    const per = page.getByRole("row").filter({ hasText: "Per withdrawal" });
    await per.waitFor();
    const limit = /of KES ([\d,]+)/.exec(await per.innerText())?.[1];
    assert.ok(limit && limit !== "250,000", `the per-withdrawal limit shown: ${await per.innerText()}`);
    await page.getByLabel("Amount (KES, whole shillings)").fill("25000");
    await page.getByRole("button", { name: "Withdraw" }).click();
    await page.getByRole("alert").filter({ hasText: `Enter whole shillings, from 10 to ${limit}.` }).waitFor();
    assert.equal(await focused(page), "amount");
    await page.getByLabel("Amount (KES, whole shillings)").fill("100");
    await page.getByLabel("M-Pesa number (empty: your payout number)").fill("12345");
    await page.getByRole("button", { name: "Withdraw" }).click();
    await page.getByRole("alert").filter({ hasText: "Enter a Kenyan M-Pesa number" }).waitFor();
    assert.equal(await focused(page), "phone");
    // Under M-Pesa's least payout (KES 10): refused here, before the device's proof is asked for.
    await page.getByLabel("M-Pesa number (empty: your payout number)").fill("");
    await page.getByLabel("Amount (KES, whole shillings)").fill("9");
    await page.getByRole("button", { name: "Withdraw" }).click();
    await page.getByRole("alert").filter({ hasText: `Enter whole shillings, from 10 to ${limit}.` }).waitFor();
    assert.equal(await focused(page), "amount");
  });

  test("settings: each form's refusal puts the focus on its field", async () => {
    const worker = await h.worker("Wekesa");
    const page = await h.signedInPhone(worker);
    await page.goto(`${h.url}/w/settings`);
    const profile = page.getByTestId("form-profile");
    await profile.getByLabel("Your name (as customers see it)").fill(" ");
    await profile.getByRole("button", { name: "Save profile" }).click();
    await profile.getByRole("alert").waitFor();
    assert.equal(await focused(page), "name");
    const payout = page.getByTestId("form-payout");
    await payout.getByLabel("Payout M-Pesa number").fill("12345");
    await payout.getByRole("button", { name: "Save payout settings" }).click();
    await payout.getByRole("alert").waitFor();
    assert.equal(await focused(page), "payoutPhone");
    const notifications = page.getByTestId("form-notifications");
    await notifications.getByLabel("Quiet hours from (HH:MM, East Africa Time)").fill("25:00");
    await notifications.getByRole("button", { name: "Save notifications" }).click();
    await notifications.getByRole("alert").waitFor();
    assert.equal(await focused(page), "quietStart");
  });

  test("a venue manager's Add venue without a name: refused, the focus on the name", async () => {
    const venue = await h.venue("Java House");
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    await page.goto(`${h.url}/v`);
    await page.getByRole("link", { name: "Java House" }).waitFor();
    await page.getByRole("button", { name: "Add venue" }).click();
    await page.getByRole("alert").filter({ hasText: "Give the venue a name" }).waitFor();
    assert.equal(await focused(page), "name");
  });

  test("the shares page says it is loading while its lists come, in English and Swahili", async () => {
    const worker = await h.worker("Chebet");
    for (const [locale, heading, word] of [["en-KE", "My venue shares", "Loading…"], ["sw-KE", "Mgao wangu wa mahali pa kazi", "Inapakia…"]] as const) {
      const page = await h.signedInPhone(worker, { locale });
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      await page.route("**/ttip.venue.v1.VenueService/ListMyShares", async (route) => {
        await held;
        await route.continue();
      });
      await page.goto(`${h.url}/w/shares`);
      // The screen itself (not the placeholder before its script runs) says it is loading.
      await page.getByRole("heading", { name: heading }).waitFor();
      await page.getByRole("status").filter({ hasText: word }).waitFor();
      release();
      await page.getByRole("status").filter({ hasText: word }).waitFor({ state: "detached" });
    }
  });

  test("the tip status page's feedback: the service failing to store it says so and to send again (not 'only for a tip that went through'), and the stars and the message chosen stay as they were", async () => {
    const worker = await h.worker("Kiprop");
    const code = await h.qrCode(worker);
    const { tip } = await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: code.shortCode },
      amount: { amountMinor: 100_00n, currency: "KES" }, payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    await eventually("the tip received", async () => (await h.api(PaymentService).getTip({ tipId: tip!.tipId })).tip?.status === TipStatus.SUCCEEDED);
    // The payment service fails to store this tip's feedback (a trigger on its row alone): the form is refused.
    const refuse = `refuse_feedback_${tip!.tipId.replace(/-/g, "")}`;
    await h.sql(`CREATE FUNCTION payment.${refuse}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'feedback refused by the test'; END $$`);
    await h.sql(`CREATE TRIGGER ${refuse} BEFORE UPDATE OF rating ON payment.tips FOR EACH ROW WHEN (NEW.tip_id = '${tip!.tipId}') EXECUTE FUNCTION payment.${refuse}()`);
    try {
      const page = await h.phone();
      await page.goto(`${h.url}/t/${code.shortCode}/tips/${tip!.tipId}`);
      await page.getByRole("radio", { name: "4 of 5" }).check();
      await page.getByLabel("A message to Kiprop (optional)").fill("Karibu tena");
      await page.getByRole("button", { name: "Send" }).click();
      await page.getByRole("alert").filter({ hasText: "Your feedback could not be saved just now (your tip is not affected). Send it again in a minute." }).waitFor();
      assert.equal(await page.getByRole("radio", { name: "4 of 5" }).isChecked(), true, "the stars chosen");
      assert.equal(await page.getByLabel("A message to Kiprop (optional)").inputValue(), "Karibu tena");
    } finally {
      await h.sql(`DROP TRIGGER ${refuse} ON payment.tips`);
      await h.sql(`DROP FUNCTION payment.${refuse}()`);
    }
  });
});
