// A venue's table code in a real browser: the page says whose pool the tip
// goes to, and the tip is credited to it as a shared tip.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { DynamicParametersSchema } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { testPhone } from "@ttip/runtime/testing";
import { WebHarness } from "./harness.js";

describe("a venue's table code (chromium at phone size)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  test("the page names the venue and says the tip is shared; the customer pays and the tip goes to the pool", async () => {
    const venue = await h.venue("Mama Oliech");
    const code = await h.venueCode(venue, { table: "7" });
    const html = await (await fetch(code.url)).text();
    assert.match(html, /<h1>Mama Oliech<\/h1>/);
    assert.match(html, /Table 7/);
    assert.match(html, /A shared tip: it goes to the team&#x27;s pool at Mama Oliech/);

    const page = await h.phone();
    await page.goto(code.url);
    await h.screenshot(page, "venue-tip-page");
    await page.getByRole("radio", { name: /KES 100/ }).check();
    await page.getByLabel("M-Pesa phone number").fill(testPhone({ format: "07" }));
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
    await page.getByRole("heading", { name: /received your tip/ }).waitFor({ timeout: 20_000 });
    const tipId = /\/tips\/([0-9a-f-]{36})/.exec(page.url())![1];
    const { tip } = await h.api(PaymentService).getTip({ tipId });
    assert.equal(tip!.status, TipStatus.SUCCEEDED);
    assert.equal(tip!.shared, true);
    assert.equal(tip!.workerId, "");
    assert.equal(tip!.venueId, venue.id);
  });

  test("a pool's code with a fixed amount in USD is paid by card: the page says so in English and Swahili, and the tip lands in the pool", async () => {
    const venue = await h.venue("Tamarind");
    const code = await h.venueCode(venue, { table: "3" });
    const usd10 = create(DynamicParametersSchema, { table: "3", fixedAmount: { amountMinor: 1_000n, currency: "USD" } });
    await h.sql("UPDATE qr.qr_codes SET parameters = $1 WHERE qr_code_id = $2", [Buffer.from(toBinary(DynamicParametersSchema, usd10)), code.qrCodeId]);
    // Before, the page said the pool took M-Pesa only and offered no form: payment answered card tips to a pool UNIMPLEMENTED.
    for (const [locale, words] of [
      ["en-KE", "This code is for USD 10. M-Pesa pays in Kenya shillings only: please pay it by card below."],
      ["sw-KE", "Msimbo huu ni wa USD 10. M-Pesa hulipa kwa shilingi za Kenya pekee: tafadhali lipa kwa kadi hapa chini."],
    ] as const) {
      const page = await h.phone({ locale, viewport: { width: 390, height: 844 } });
      await page.goto(`${h.url}/t/${code.shortCode}`);
      assert.equal(await page.locator("main p.notice", { hasText: "USD 10" }).innerText(), words);
      assert.match(await page.locator("main").innerText(), locale === "en-KE" ? /the team's pool receives Kenya shillings/ : /mfuko wa timu unapokea shilingi za Kenya/);
      await h.screenshot(page, `venue-tip-pool-usd-${locale}`);
    }

    const page = await h.phone();
    await page.goto(`${h.url}/t/${code.shortCode}`);
    await page.getByRole("button", { name: "Pay by card" }).click();
    await page.getByTestId("stripe-test-card").selectOption("pm_card_visa");
    await page.getByRole("button", { name: "Pay USD 10 by card" }).click();
    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
    await page.getByRole("heading", { name: /received your tip/ }).waitFor({ timeout: 20_000 });
    const tipId = /\/tips\/([0-9a-f-]{36})/.exec(page.url())![1];
    const { tip } = await h.api(PaymentService).getTip({ tipId });
    assert.equal(tip!.status, TipStatus.SUCCEEDED);
    assert.deepEqual([tip!.shared, tip!.workerId, tip!.venueId], [true, "", venue.id]);
    assert.deepEqual([tip!.charged!.currency, tip!.charged!.amountMinor], ["USD", 1_000n]);
    assert.equal(tip!.workerReceives!.currency, "KES", "the pool is in KES");
  });
});
