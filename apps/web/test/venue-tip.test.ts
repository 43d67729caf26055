// A venue's table code in a real browser: the page says whose pool the tip
// goes to, and the tip is credited to it as a shared tip.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { successNumber, WebHarness } from "./harness.js";

describe("a venue's table code (chromium at phone size)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
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
    await page.getByLabel("M-Pesa phone number").fill(successNumber());
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
});
