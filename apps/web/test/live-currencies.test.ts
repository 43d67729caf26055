// Today's live figures in every currency a tip came in: the worker's home and the venue's dashboard
// show a card tip in USD beside the M-Pesa tips in KES (KES first), never summed into one amount.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { PaymentMethod, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { buildEvent } from "@ttip/runtime";
import { testPhone } from "@ttip/runtime/testing";
import { eventually, WebHarness } from "./harness.js";

describe("live figures per currency (chromium at phone size)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  /** The WatchDashboard streams a page opens, as the browser sends them. */
  const watchRequests = (page: Page) => {
    const seen: string[] = [];
    page.on("request", (r) => void (r.url().includes("/WatchDashboard") && seen.push(r.url())));
    return seen;
  };

  /** Confirms a card tip's PaymentIntent as Stripe.js would in the customer's browser. */
  const confirmCard = async (clientSecret: string) => {
    const pi = clientSecret.split("_secret_")[0];
    const res = await fetch(`${h.stripe.url}/v1/payment_intents/${pi}/confirm`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.stripe.publishableKey}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ payment_method: "pm_card_visa", client_secret: clientSecret, return_url: `${h.url}/done` }),
    });
    assert.equal(res.status, 200, await res.text());
  };

  test("the worker's home: a USD card tip appears live beside the KES tip, each in its own currency", async () => {
    const worker = await h.worker("Otieno");
    const page = await h.signedInPhone(worker);
    const streams = watchRequests(page);
    await page.goto(`${h.url}/w`);
    await page.getByTestId("live-state").filter({ hasText: "Live" }).waitFor({ timeout: 20_000 });
    const pay = h.api(PaymentService);
    await pay.createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker.id },
      amount: { amountMinor: 300_00n, currency: "KES" }, payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    const card = await pay.createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker.id },
      amount: { amountMinor: 10_00n, currency: "USD" }, payment: { case: "card", value: true },
    });
    await confirmCard(card.stripeClientSecret);
    const tipped = page.getByTestId("tipped-today");
    await tipped.filter({ hasText: "USD 10" }).waitFor({ timeout: 30_000 });
    await tipped.filter({ hasText: "KES 300" }).waitFor({ timeout: 30_000 });
    assert.equal(await tipped.innerText(), "Customers tipped today (before fees): KES 300 · USD 10");
    // The card tip arrived over the live stream: the latest tips list it without a reload.
    await page.getByTestId("latest-tips").getByText("USD 10 · received").waitFor({ timeout: 20_000 });
    // What reached the worker today is the balance: the M-Pesa tip's net and the USD card tip's, credited in KES
    // (the card tip's net was in analytics' USD row before, missing from the KES "today").
    const periods = page.getByTestId("periods");
    const kes = (text: string | undefined) => Number(/^KES ([\d,.]+)$/.exec(text ?? "")?.[1]?.replace(/,/g, "") ?? NaN);
    await eventually("today's net equals the balance, the card tip's included", async () => {
      const available = kes(await page.getByTestId("available").innerText());
      const today = kes(/^Today: (KES [\d,.]+)/.exec(await periods.innerText())?.[1]);
      return available > 1_000 && today === available;
    });
    // Every currency over one stream: one of the browser's six connections to the site, not four.
    assert.equal(streams.length, 1, "one WatchDashboard stream");
    await h.screenshot(page, "worker-home-currencies");
  });

  test("the venue's dashboard: today's USD figure beside the KES one, KES first, the tips counted across both", async () => {
    const venue = await h.venue("Carnivore");
    const code = await h.venueCode(venue, { table: "4" });
    const pay = h.api(PaymentService);
    await pay.createTip({
      idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: code.shortCode },
      amount: { amountMinor: 500_00n, currency: "KES" }, payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    const page = await h.signedInAs({ accessToken: venue.managerToken });
    const streams = watchRequests(page);
    await page.goto(`${h.url}/v/${venue.id}`);
    const live = page.getByTestId("venue-live");
    await live.getByText("KES 500").waitFor({ timeout: 30_000 });
    // A staff member's USD card tip at the venue (by the staff member's own code), as payment announces
    // it: tip_succeeded alone (no tip_created for a card tip), its net credited in KES to the worker's wallet.
    const usd = (amountMinor: bigint) => ({ currency: "USD", amountMinor });
    await h.publish(buildEvent("payment", TipSucceededSchema, {
      tipId: randomUUID(), workerId: randomUUID(), venueId: venue.id, qrCodeId: code.qrCodeId, method: PaymentMethod.CARD,
      amount: usd(10_00n), fee: usd(79n), net: { currency: "KES", amountMinor: 1_250_00n },
    }));
    await live.getByText("USD 10").waitFor({ timeout: 30_000 });
    assert.deepEqual(await live.locator("strong").allInnerTexts(), ["2", "KES 500", "USD 10", "0"]);
    assert.equal(streams.length, 1, "one WatchDashboard stream for every currency");

    // The last 30 days' charts in USD, chosen among the currencies the venue was tipped in (KES first).
    await page.reload();
    const chooser = page.getByLabel("Tips paid in");
    const tables = async () => (await page.getByTestId("chart-tables").locator("g[data-value] title").allTextContents()).map((t) => t.split(" · ")[0]);
    await eventually("the tables in KES", async () => (await tables()).join() === "Table 4: KES 500");
    assert.deepEqual(await chooser.locator("option").allInnerTexts(), ["KES", "USD"]);
    // The funnel of each currency's tips (no scans: the tips came by API): the card tip counts as chosen and
    // started when it ends, never "Paid 1" after 0 chosen (what USD showed before).
    const funnel = async () => (await page.getByTestId("chart-funnel").locator("g[data-value] title").allTextContents()).join(" | ");
    const steps = "Scanned: 0 | Amount chosen: 1 | Payment started: 1 | Paid: 1";
    await eventually("the KES funnel", async () => (await funnel()) === steps);
    await chooser.selectOption("USD");
    await eventually("the tables in USD", async () => (await tables()).join() === "Table 4: USD 10");
    await eventually("the USD funnel", async () => (await funnel()) === steps).catch(async (e) => assert.fail(`${e}: ${await funnel()}`));
    await h.screenshot(page, "venue-live-currencies");
  });
});
