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

  test("a pool's code with a fixed amount in USD (qr refuses new ones; printed cards stay) says why it cannot be paid and what to do, in English and Swahili, and offers no form", async () => {
    const venue = await h.venue("Tamarind");
    const code = await h.venueCode(venue, { table: "3" });
    const usd10 = create(DynamicParametersSchema, { table: "3", fixedAmount: { amountMinor: 1_000n, currency: "USD" } });
    await h.sql("UPDATE qr.qr_codes SET parameters = $1 WHERE qr_code_id = $2", [Buffer.from(toBinary(DynamicParametersSchema, usd10)), code.qrCodeId]);
    for (const [locale, words] of [
      ["en-KE", "This code asks for USD 10, but the team's pool at Tamarind takes tips by M-Pesa in Kenya shillings only, so it cannot be paid. To tip, scan a staff member's own code or ask the staff for a code in KES."],
      ["sw-KE", "Msimbo huu unaomba USD 10, lakini mfuko wa timu wa Tamarind hupokea tip kwa M-Pesa kwa shilingi za Kenya pekee, kwa hivyo hauwezi kulipwa. Ili kutoa tip, skani msimbo wa mfanyakazi mwenyewe au omba wafanyakazi msimbo wa KES."],
    ] as const) {
      const page = await h.phone({ locale, viewport: { width: 390, height: 844 } });
      await page.goto(`${h.url}/t/${code.shortCode}`);
      assert.equal(await page.locator("main").getByRole("alert").innerText(), words);
      assert.equal(await page.locator("form").count(), 0, "no form that could only fail");
      assert.doesNotMatch(await page.locator("main").innerText(), /by card below|kwa kadi hapa chini|coming soon|karibuni/);
      await h.screenshot(page, `venue-tip-pool-usd-${locale}`);
    }
  });
});
