// A card tip on the customer's tip page in a real browser: the Payment Element
// (the Stripe simulator's Stripe.js double, served locally), 3-D Secure on the
// bank's page, and the status page, against the platform as make run serves it.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, afterEach, before, describe, test } from "node:test";
import { PaymentMethodKind, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WebHarness } from "./harness.js";

describe("card tips on the tip page (chromium at phone size, Stripe simulator)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  const payByCard = async (name: string, card: string) => {
    const worker = await h.worker(name);
    const code = await h.qrCode(worker);
    const page = await h.phone();
    const external: string[] = [];
    // Every load of the tip's status page (a navigation or the router's fetch of it), in order.
    const statusLoads: string[] = [];
    page.on("request", (r) => {
      const host = new URL(r.url()).hostname;
      if (host !== "127.0.0.1" && host !== "localhost") external.push(r.url());
      if (/\/tips\/[0-9a-f-]{36}/.test(new URL(r.url()).pathname)) statusLoads.push(r.url());
    });
    await page.goto(code.url);
    await page.getByLabel("Amount", { exact: true }).fill("10");
    await page.getByLabel("Currency").selectOption("USD");
    await page.getByRole("button", { name: "Pay by card" }).click();
    const element = page.getByTestId("stripe-test-card");
    await element.waitFor();
    await element.selectOption(card);
    await page.getByRole("button", { name: "Pay USD 10 by card" }).click();
    return { worker, page, external, statusLoads };
  };

  test("a tourist tips USD 10 by card: authorised, captured, received in KES; nothing loads from the internet", async () => {
    const { worker, page, external } = await payByCard("Achieng", "pm_card_visa");
    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
    await page.getByRole("heading", { name: "Thank you! Achieng received your tip." }).waitFor({ timeout: 20_000 });
    await h.screenshot(page, "card-tip-received");
    const tipId = /\/tips\/([0-9a-f-]{36})/.exec(page.url())![1];
    const { tip } = await h.api(PaymentService).getTip({ tipId });
    assert.equal(tip!.status, TipStatus.SUCCEEDED);
    assert.equal(tip!.method, PaymentMethodKind.CARD);
    assert.equal(tip!.charged!.currency, "USD");
    assert.equal(tip!.workerReceives!.currency, "KES");
    assert.equal(tip!.workerId, worker.id);
    assert.equal(h.stripe.paymentIntent(tip!.providerPaymentId)!.status, "succeeded");
    assert.deepEqual(external, []);

    // The worker reads the tip in the currency it was paid in (USD 10), not as KES 10.
    assert.equal(tip!.amount!.currency, "USD");
    const mine = await h.signedInPhone(worker);
    await mine.goto(`${h.url}/w/history`);
    await mine.getByRole("link", { name: "USD 10" }).click();
    await mine.waitForURL(/\/w\/tips\/[0-9a-f-]{36}/);
    await mine.getByRole("cell", { name: "USD 10", exact: true }).waitFor();
    assert.doesNotMatch(await mine.locator("main").innerText(), /KES 10\b/);
    await h.screenshot(mine, "worker-card-tip-usd");
  });

  test("3-D Secure: the bank's page, then back to the status page with the tip received", async () => {
    const { page, statusLoads } = await payByCard("Kamau", "pm_card_threeDSecure2Required");
    await page.waitForURL(/\/__sim\/3ds\/pi_/);
    await page.getByRole("link", { name: "Complete authentication" }).waitFor();
    // Stripe.js leaves the page for the bank's and its promise never settles: the form must not
    // also go to the status page (before, the double answered and the form's router.push raced
    // the redirect to the bank's page).
    assert.deepEqual(statusLoads, [], "the status page is not loaded before 3-D Secure");
    await h.screenshot(page, "card-tip-3ds");
    await page.getByRole("link", { name: "Complete authentication" }).click();
    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
    await page.getByRole("heading", { name: "Thank you! Kamau received your tip." }).waitFor({ timeout: 20_000 });
  });

  test("a card tip that ended unpaid: the status page's 'Try again' does not offer the card's cents as shillings", async () => {
    const { page, worker } = await payByCard("Wafula", "pm_card_threeDSecure2Required");
    await page.waitForURL(/\/__sim\/3ds\/pi_/);
    // The customer never completes 3-D Secure: the tip expires (as the unpaid tips' sweep ends it), then its page is opened.
    const { rows: [tip] } = await h.sql("SELECT tip_id FROM payment.tips WHERE worker_id = $1", [worker.id]);
    await h.sql("UPDATE payment.tips SET status = 'expired', completed_at = now() WHERE tip_id = $1", [tip.tip_id]);
    await page.goBack();
    await page.goto(page.url().replace(/(\/t\/[^/?]+).*$/, `$1/tips/${tip.tip_id}`));
    const again = page.getByRole("link", { name: "Try again" });
    await again.waitFor({ timeout: 20_000 });
    // Before, amount=1000: USD 10's cents, which the M-Pesa form took as KES 10.
    assert.match((await again.getAttribute("href"))!, /[?&]amount=$/);
  });

  test("the card's one write: a retry after a lost answer carries the same seed and starts one tip; the button reads the amount as money is written", async () => {
    const worker = await h.worker("Wanjiru");
    const code = await h.qrCode(worker);
    const page = await h.phone();
    await page.goto(code.url);
    await page.getByLabel("Amount", { exact: true }).fill("0010");
    await page.getByLabel("Currency").selectOption("USD");
    // The card form's server action: the first answer is lost after the tip was started.
    const seeds: string[] = [];
    let lose = 1;
    await page.route((url) => url.pathname.startsWith("/t/"), async (route) => {
      const r = route.request();
      if (r.method() !== "POST" || !r.headers()["next-action"]) return route.continue();
      seeds.push(/"seed":"([^"]+)"/.exec(r.postData() ?? "")?.[1] ?? "");
      if (lose-- <= 0) return route.continue();
      await route.fetch();
      await route.abort("connectionreset");
    });
    const start = page.getByRole("button", { name: "Pay by card" });
    await start.click();
    await page.getByRole("alert").filter({ hasText: "Something went wrong" }).waitFor();
    await start.click();
    const element = page.getByTestId("stripe-test-card");
    await element.waitFor();
    assert.equal(seeds.length, 2);
    assert.match(seeds[0]!, /^[0-9a-f-]{36}$/);
    assert.equal(seeds[1], seeds[0], "the retry carries the lost attempt's seed, so its key");
    const { accessToken } = await h.tokens(worker);
    assert.equal((await h.api(PaymentService, accessToken).listTips({})).tips.length, 1, "one tip for the two attempts");
    await element.selectOption("pm_card_visa");
    // "0010" typed: the button says USD 10, as every amount on the page is written.
    await page.getByRole("button", { name: "Pay USD 10 by card", exact: true }).click();
    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
    await page.getByRole("heading", { name: "Thank you! Wanjiru received your tip." }).waitFor({ timeout: 20_000 });
    assert.equal((await h.api(PaymentService, accessToken).listTips({})).tips.length, 1);
  });

  test("a card confirmed whose answer was lost: the page opened again and paid again shows the tip, charged once", async () => {
    const worker = await h.worker("Chebet");
    const code = await h.qrCode(worker);
    const page = await h.phone();
    await page.goto(code.url);
    const payTen = async () => {
      await page.getByLabel("Amount", { exact: true }).fill("10");
      await page.getByLabel("Currency").selectOption("USD");
      await page.getByRole("button", { name: "Pay by card" }).click();
    };
    await payTen();
    await page.getByTestId("stripe-test-card").selectOption("pm_card_visa");
    // Stripe charged the card, its answer was lost, and so was the form's look at the tip after it.
    await page.route("**/v1/payment_intents/*/confirm", async (route) => {
      await route.fetch();
      await route.abort("connectionreset");
    });
    await page.route((url) => url.pathname.startsWith("/t/"), (route) =>
      route.request().method() === "POST" && route.request().headers()["next-action"] ? route.abort("connectionreset") : route.continue());
    await page.getByRole("button", { name: "Pay USD 10 by card" }).click();
    await page.getByRole("alert").filter({ hasText: "Something went wrong" }).waitFor();
    await page.unrouteAll();
    // The customer opens the tip page again and pays the same tip.
    await page.goto(code.url);
    await payTen();
    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
    await page.getByRole("heading", { name: "Thank you! Chebet received your tip." }).waitFor({ timeout: 20_000 });
    const { accessToken } = await h.tokens(worker);
    const { tips } = await h.api(PaymentService, accessToken).listTips({});
    assert.equal(tips.length, 1, "one tip");
    assert.equal(tips[0]!.status, TipStatus.SUCCEEDED);
    assert.equal(h.stripe.paymentIntent(tips[0]!.providerPaymentId)!.status, "succeeded");
  });

  test("a card confirmed whose answer was lost: the form looks the tip up and shows it", async () => {
    const worker = await h.worker("Wambui");
    const code = await h.qrCode(worker);
    const page = await h.phone();
    await page.goto(code.url);
    await page.getByLabel("Amount", { exact: true }).fill("10");
    await page.getByLabel("Currency").selectOption("USD");
    await page.getByRole("button", { name: "Pay by card" }).click();
    await page.getByTestId("stripe-test-card").selectOption("pm_card_visa");
    await page.route("**/v1/payment_intents/*/confirm", async (route) => {
      await route.fetch();
      await route.abort("connectionreset");
    });
    await page.getByRole("button", { name: "Pay USD 10 by card" }).click();
    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
    await page.getByRole("heading", { name: "Thank you! Wambui received your tip." }).waitFor({ timeout: 20_000 });
    const { accessToken } = await h.tokens(worker);
    assert.equal((await h.api(PaymentService, accessToken).listTips({})).tips.length, 1);
  });

  test("a card tip under the card's least charge says that least, not 'Enter a whole amount.', and starts nothing", async () => {
    const worker = await h.worker("Akinyi");
    const code = await h.qrCode(worker);
    const page = await h.phone();
    await page.goto(code.url);
    await page.getByLabel("Amount", { exact: true }).fill("50");
    await page.getByLabel("Currency").selectOption("KES");
    await page.getByRole("button", { name: "Pay by card" }).click();
    await page.getByRole("alert").filter({ hasText: "A card tip is at least KES 100." }).waitFor();
    const { accessToken } = await h.tokens(worker);
    assert.equal((await h.api(PaymentService, accessToken).listTips({})).tips.length, 0);
  });

  test("a declined card says so on the page and charges nothing", async () => {
    const { page } = await payByCard("Njeri", "pm_card_chargeDeclined");
    await page.getByRole("alert").filter({ hasText: /declined/i }).waitFor();
    assert.match(page.url(), /\/t\/[A-Za-z0-9]+/);
  });

  test("the web server renders with React's production build only (a development react under the production react-dom failed renders: dispatcher.getOwner is not a function)", () => {
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((f) => /[\\/]react[\\/]cjs[\\/]react\.(development|production)\.js$/.test(f));
    assert.ok(loaded.length > 0, "the pages above loaded react");
    assert.deepEqual(loaded.filter((f) => f.includes("development")), []);
  });
});
