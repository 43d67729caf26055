// The customer's tip page in a real browser at phone size, against the
// platform as make run serves it.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { testPhone } from "@ttip/runtime/testing";
import { eventually, WebHarness } from "./harness.js";

describe("the customer's tip page (chromium at phone size)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  test("a customer opens the QR's URL, tips KES 100 by M-Pesa and sees the receipt", async () => {
    const worker = await h.worker("Wanjiku");
    const code = await h.qrCode(worker, { table: "12" });
    assert.ok(code.url.startsWith(`${h.url}/t/${code.shortCode}?p=`), `the QR encodes this platform's real address: ${code.url}`);

    // The first HTML already names the worker and shows the amounts and their fees (no script needed).
    const html = await (await fetch(code.url)).text();
    assert.match(html, /<h1>Wanjiku<\/h1>/);
    assert.match(html, /Table 12/);
    assert.match(html, /KES 100<small>fee KES \d+<\/small>/);

    // The page's server asks the gateway for the customer, by the customer's address: before, every customer of
    // the tip page shared the web server's budget (600 calls a minute for the whole platform).
    const customer = `203.0.113.${Math.floor(Math.random() * 250) + 1}`;
    assert.equal((await fetch(code.url, { headers: { "x-forwarded-for": customer } })).status, 200);
    await eventually("the page's calls charged to the customer's address", () => h.budgetCharged(customer));

    const page = await h.phone();
    await page.goto(code.url);
    await h.screenshot(page, "tip-page");
    await page.getByRole("radio", { name: /KES 100/ }).check();
    assert.equal(await page.getByLabel(/Cover the fee so Wanjiku gets it all/).isChecked(), true, "covering the fee is on by default");
    const phone = testPhone({ format: "07" });
    await page.getByLabel("M-Pesa phone number").fill(phone);
    const pay = page.getByRole("button", { name: /Pay KES 1\d\d with M-Pesa/ });
    const total = /Pay (KES [\d,]+) with M-Pesa/.exec((await pay.textContent()) ?? "")![1];
    await pay.click();

    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
    await page.getByRole("heading", { name: "Thank you! Wanjiku received your tip." }).waitFor({ timeout: 20_000 });
    const receipt = /M-Pesa receipt (\w+)/.exec((await page.getByText(/M-Pesa receipt/).textContent()) ?? "")?.[1];
    assert.ok(receipt, "the M-Pesa receipt number is shown");
    await h.screenshot(page, "tip-received");

    // M-Pesa charged once, the total the button showed (the tip plus the fee).
    const pushes = h.pushesTo(phone);
    assert.equal(pushes.length, 1);
    assert.equal(`KES ${pushes[0].amount}`, total);
    assert.equal(pushes[0].receipt, receipt);

    // Another worker's code with this tip's id says nothing of the tip: it did not reach them.
    const other = await h.qrCode(await h.worker("Otieno"));
    const tipId = /\/tips\/([0-9a-f-]{36})/.exec(page.url())![1];
    assert.equal((await fetch(`${h.url}/t/${other.shortCode}/tips/${tipId}`)).status, 404);
    assert.equal((await fetch(`${h.url}/t/${code.shortCode}/tips/${tipId}`)).status, 200);
    // No other site frames these pages (a framed withdrawal or split would take the worker's clicks).
    for (const path of [`/t/${code.shortCode}`, "/w/withdraw", "/w/signin"]) {
      const headers = (await fetch(`${h.url}${path}`, { redirect: "manual" })).headers;
      assert.equal(headers.get("x-frame-options"), "DENY", path);
      assert.match(headers.get("content-security-policy") ?? "", /frame-ancestors 'none'/, path);
    }
    // A path that is no code (bad percent-encoding) is a bad request, where the middleware threw: a server error (500).
    assert.equal((await fetch(`${h.url}/t/%E0%A4%A`)).status, 400);

    // A feedback outcome the page does not know, one of every object's inherited names included, shows the form plainly.
    const odd = new URL(page.url());
    odd.searchParams.set("feedback", "constructor");
    const oddPage = await fetch(odd);
    assert.equal(oddPage.status, 200, "an unknown feedback outcome still renders the page");
    assert.match(await oddPage.text(), /A message to Wanjiku/);

    // After the confirmed payment: a rating and a message to the worker.
    await page.getByRole("radio", { name: "5 of 5" }).check();
    await page.getByLabel("A message to Wanjiku (optional)").fill("Asante, great service!");
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByText("Thank you for your feedback!").waitFor();
    await h.screenshot(page, "tip-feedback");
    const [mine] = (await h.api(PaymentService, worker.token).listTips({})).tips;
    assert.equal(mine.rating, 5);
    assert.equal(mine.message, "Asante, great service!");
  });

  /** A tip of `amount` shillings sent from the page by a fresh number the Daraja simulator answers as `stk`. */
  async function pushFromPage(name: string, amount: number, stk: "lost" | "cancelled" | "rule_limited") {
    const worker = await h.worker(name);
    const code = await h.qrCode(worker);
    const phone = testPhone({ format: "07" });
    h.daraja.script({ phone: `254${phone.slice(1)}` }, { stk });
    const page = await h.phone();
    await page.goto(code.url);
    await page.getByRole("radio", { name: new RegExp(`KES ${amount}\\b`) }).check();
    await page.getByLabel("M-Pesa phone number").fill(phone);
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    return { worker, phone, page };
  }

  test("no prompt on the phone: the page gives the paybill and this tip's account; paid from the menu, this very tip is received, once", async () => {
    const { worker, page } = await pushFromPage("Kamau", 100, "lost");
    await page.getByRole("heading", { name: "No prompt on your phone?" }).waitFor({ timeout: 20_000 });
    const [, paybill, account] = /^Paybill (\d+), account (\w+)$/.exec(((await page.getByText(/^Paybill \d+, account/).textContent()) ?? "").trim())!;
    assert.equal(paybill, h.daraja.options.shortcode);
    const amount = Number(/^Amount KES ([\d,]+)$/.exec(((await page.getByText(/^Amount KES/).textContent()) ?? "").trim())![1].replace(/,/g, ""));
    await h.screenshot(page, "tip-no-prompt");

    // The customer pays from the phone's own menu with what the page says.
    const paid = await h.daraja.c2b.pay({ shortCode: paybill, billRefNumber: account, amount });
    await page.getByRole("heading", { name: "Thank you! Kamau received your tip." }).waitFor({ timeout: 20_000 });
    assert.equal(await page.getByText(`M-Pesa receipt ${paid.transId}`).count(), 1, "the paybill receipt is this tip's");
    const tips = (await h.api(PaymentService, worker.token).listTips({})).tips;
    assert.deepEqual(tips.map((x) => x.status), [TipStatus.SUCCEEDED], "one tip, received once");
  });

  test("a URL naming one code in its path and another's short code in ?p= pays the worker the page names", async () => {
    const named = await h.worker("Achieng");
    const other = await h.worker("Kamau");
    const [a, b] = [await h.qrCode(named), await h.qrCode(other)];
    const page = await h.phone();
    await page.goto(`${h.url}/t/${a.shortCode}?p=${b.shortCode}`);
    await page.getByRole("heading", { name: "Achieng" }).waitFor();
    await page.getByRole("radio", { name: /KES 100/ }).check();
    await page.getByLabel("M-Pesa phone number").fill(testPhone({ format: "07" }));
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    await page.getByRole("heading", { name: "Thank you! Achieng received your tip." }).waitFor({ timeout: 20_000 });
    // Before, the page showed Achieng and the payment went to Kamau (the ?p= value, whatever its length, was the recipient).
    assert.equal((await h.api(PaymentService, named.token).listTips({})).tips.length, 1);
    assert.equal((await h.api(PaymentService, other.token).listTips({})).tips.length, 0);
  });

  /** The page's first Pay reaches the server (the tip starts, M-Pesa prompts) and its answer is lost. */
  async function loseFirstPayAnswer(page: Awaited<ReturnType<typeof h.phone>>, shortCode: string) {
    let lose = true;
    await page.route((url) => url.pathname === `/t/${shortCode}`, async (route) => {
      if (route.request().method() !== "POST" || !lose) return route.continue();
      lose = false;
      // The answer's cookies are lost with it: route.fetch() would set them in the browser.
      const cookies = await page.context().cookies();
      await route.fetch();
      await page.context().clearCookies();
      await page.context().addCookies(cookies);
      await route.abort("connectionreset");
    });
  }

  /** KES 100 by M-Pesa from `phone`, on the tip page open in `page`. */
  async function payHundred(page: Awaited<ReturnType<typeof h.phone>>, phone: string) {
    await page.getByRole("radio", { name: /KES 100/ }).check();
    await page.getByLabel("M-Pesa phone number").fill(phone);
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
  }

  /** The page opened again at `url` and paid as before: it lands on the tip that started first, one tip and one M-Pesa prompt in all. */
  async function payAgainIsTheFirstTip(page: Awaited<ReturnType<typeof h.phone>>, url: string, worker: { token: string }, phone: string) {
    const [first] = (await h.api(PaymentService, worker.token).listTips({})).tips;
    await page.goto(url);
    await payHundred(page, phone);
    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
    assert.equal(/\/tips\/([0-9a-f-]{36})/.exec(page.url())![1], first.tipId);
    assert.equal((await h.api(PaymentService, worker.token).listTips({})).tips.length, 1, "one tip");
    assert.equal(h.pushesTo(phone).length, 1, "one M-Pesa prompt");
  }

  test("Pay's answer lost after the tip started: the page says so, and the same tip asked again from the page opened again is that tip, one M-Pesa prompt", async () => {
    const worker = await h.worker("Chebet");
    const code = await h.qrCode(worker);
    const page = await h.phone();
    await loseFirstPayAnswer(page, code.shortCode);
    const phone = testPhone({ format: "07" });
    const pay = (p: typeof page) => payHundred(p, phone);
    await page.goto(code.url);
    // Opened at the table 31 minutes before Pay: the seed's half hour counts from the Pay, not from the page's opening.
    // (The form keeps its seed once hydrated: waited for, as the page's HTML comes first.)
    await page.waitForFunction((key) => localStorage.getItem(key) !== null, `ttip.tip-seed.${code.shortCode}`);
    await page.evaluate((key) => {
      const kept = JSON.parse(localStorage.getItem(key)!) as { seed: string; at: number };
      localStorage.setItem(key, JSON.stringify({ ...kept, at: kept.at - 31 * 60_000 }));
    }, `ttip.tip-seed.${code.shortCode}`);
    // With an address for the receipt, which the page opened again does not keep: the same tip all the same (before,
    // the address was part of the key: a second tip, refused by the 2-minute rule as if nothing had been charged).
    await page.getByText("E-mail for a receipt (optional)").first().click();
    await page.locator("#email").fill("chebet.guest@example.com");
    await pay(page);
    // Before, Next's bare "Application error"; and a page opened again made a new key: a second tip, a second prompt.
    await page.getByRole("alert").filter({ hasText: "The connection dropped before we heard back" }).waitFor();
    await h.screenshot(page, "tip-answer-lost");
    await eventually("the first tip started", () => h.pushesTo(phone).length === 1);
    const [first] = (await h.api(PaymentService, worker.token).listTips({})).tips;
    await page.getByRole("button", { name: "Try again" }).click();
    await pay(page);
    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
    assert.equal(/\/tips\/([0-9a-f-]{36})/.exec(page.url())![1], first.tipId, "the page opened again lands on the tip that started");
    const tips = await h.api(PaymentService, worker.token).listTips({});
    assert.equal(tips.tips.length, 1, "one tip");
    assert.equal(h.pushesTo(phone).length, 1, "one M-Pesa prompt");
  });

  test("Pay's answer lost, then the page opened again and paid before its script ran (a slow phone): the same tip, one prompt", async () => {
    const worker = await h.worker("Njoroge");
    const code = await h.qrCode(worker);
    const page = await h.phone();
    await loseFirstPayAnswer(page, code.shortCode);
    const phone = testPhone({ format: "07" });
    await page.goto(code.url);
    await page.waitForFunction((key) => localStorage.getItem(key) !== null, `ttip.tip-seed.${code.shortCode}`);
    await payHundred(page, phone);
    await page.getByRole("alert").filter({ hasText: "The connection dropped before we heard back" }).waitFor();
    await eventually("the first tip started", () => h.pushesTo(phone).length === 1);
    // Opened again, its script never runs: the form posts the seed the server rendered. Before, a new one: a second tip.
    await page.route("**/_next/static/**", (route) => route.abort());
    await payAgainIsTheFirstTip(page, code.url, worker, phone);
  });

  test("at 390 px: a long name without spaces wraps inside the screen, Pay says what it is doing while asked, and an e-mail refusal is tied to its field", async () => {
    const worker = await h.worker(`Wanjiku${"Nyambura".repeat(6)}`);
    const code = await h.qrCode(worker);
    const page = await h.phone({ viewport: { width: 390, height: 844 } });
    await page.goto(code.url);
    // Before, the name widened the page past the screen.
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `no sideways scroll: the page is ${width} px wide`);
    await page.getByRole("radio", { name: /KES 100/ }).check();
    await page.getByLabel("M-Pesa phone number").fill(testPhone({ format: "07" }));
    await page.getByText("E-mail for a receipt (optional)").first().click();
    await page.locator("#email").fill("not-an-address");
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    const email = page.locator("#email");
    await page.locator("#email-error").waitFor();
    assert.equal(await email.getAttribute("aria-describedby"), "email-error", "the refusal is read with its field");
    // The answer held back a moment: the button says the prompt is being asked for (before, it only turned grey).
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    await page.route((url) => url.pathname === `/t/${code.shortCode}`, async (route) => {
      if (route.request().method() !== "POST") return route.continue();
      await held;
      await route.continue();
    });
    await email.fill("");
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    await page.getByRole("button", { name: "Asking M-Pesa to prompt your phone…" }).waitFor();
    await h.screenshot(page, "tip-paying-long-name");
    release();
    await page.waitForURL(/\/tips\/[0-9a-f-]{36}/);
  });

  test("a tip M-Pesa never answered for (expired) is not said to be uncharged, and a late success shows on the page", async () => {
    const { page } = await pushFromPage("Wafula", 100, "lost");
    await page.getByRole("heading", { name: "No prompt on your phone?" }).waitFor({ timeout: 20_000 });
    const tipId = /\/tips\/([0-9a-f-]{36})/.exec(page.url())![1];
    // Past the 5 s payment's watch keeps the row CreateTip committed (the statements below bypass it, as no replica would).
    await new Promise((r) => setTimeout(r, 5_500));
    // Expired as payment leaves a tip whose STK query could not say whether it was paid.
    await h.sql("UPDATE payment.tips SET status = 'expired', result_code = 'expired', result_message = 'M-Pesa did not confirm the payment in time.' WHERE tip_id = $1", [tipId]);
    await page.reload();
    await page.getByRole("heading", { name: "We could not confirm this tip" }).waitFor({ timeout: 20_000 });
    // Before: "The tip did not go through" and "The one above was not charged": a second tip, a second charge.
    await page.getByText("If M-Pesa took the money, Wafula still gets the tip, and this page will say so.").waitFor();
    await page.getByText("Check your M-Pesa SMS first: if this tip was charged, trying again pays twice.").waitFor();
    assert.equal(await page.getByText("The one above was not charged").count(), 0);
    await h.screenshot(page, "tip-expired");
    // M-Pesa's answer comes late and the tip is paid: the page, still watching, says so.
    await h.sql("UPDATE payment.tips SET status = 'succeeded', result_code = '0', result_message = '' WHERE tip_id = $1", [tipId]);
    await page.getByRole("heading", { name: /received your tip/ }).waitFor({ timeout: 30_000 });
  });

  test("a push that failed while its page offered the paybill (no answer from the phone) is not said to be the whole story: paid by paybill meanwhile, the page, still watching, shows the tip received", async () => {
    const { page } = await pushFromPage("Njeri", 100, "lost");
    await page.getByRole("heading", { name: "No prompt on your phone?" }).waitFor({ timeout: 20_000 });
    const [, paybill, account] = /^Paybill (\d+), account (\w+)$/.exec(((await page.getByText(/^Paybill \d+, account/).textContent()) ?? "").trim())!;
    const amount = Number(/^Amount KES ([\d,]+)$/.exec(((await page.getByText(/^Amount KES/).textContent()) ?? "").trim())![1].replace(/,/g, ""));
    const tipId = /\/tips\/([0-9a-f-]{36})/.exec(page.url())![1];
    // Past the 5 s payment's watch keeps the row CreateTip committed (the statement below bypasses it, as no replica would).
    await new Promise((r) => setTimeout(r, 5_500));
    // Failed as payment fails a push the phone never answered (1037), while the customer turns to the paybill.
    await h.sql("UPDATE payment.tips SET status = 'failed', result_code = '1037', completed_at = now() WHERE tip_id = $1", [tipId]);
    await page.reload();
    await page.getByRole("heading", { name: "The tip did not go through" }).waitFor({ timeout: 20_000 });
    // Before: "The one above was not charged" beside Try again, and the page stopped watching: a second tip, a second charge.
    await page.getByText("If you paid by Pay Bill instead, Njeri still gets the tip and this page will say so").waitFor();
    assert.equal(await page.getByText("The one above was not charged").count(), 0);
    await h.daraja.c2b.pay({ shortCode: paybill, billRefNumber: account, amount });
    await page.getByRole("heading", { name: "Thank you! Njeri received your tip." }).waitFor({ timeout: 30_000 });
  });

  test("a cancelled payment, then a retry that succeeds: one charge only", async () => {
    const { worker, phone, page } = await pushFromPage("Otieno", 200, "cancelled");
    await page.getByRole("heading", { name: "The tip did not go through" }).waitFor({ timeout: 20_000 });
    await page.getByText("You cancelled the M-Pesa payment. Nothing was charged.").waitFor();
    await h.screenshot(page, "tip-cancelled");

    // The customer tries again: a new request, now answered with the PIN.
    h.daraja.script({ phone: `254${phone.slice(1)}` }, { stk: "success" });
    await page.getByRole("link", { name: "Try again" }).click();
    assert.equal(await page.getByRole("radio", { name: /KES 200/ }).isChecked(), true, "the retry keeps the amount");
    await page.getByLabel("M-Pesa phone number").fill(phone);
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    await page.getByRole("heading", { name: /received your tip/ }).waitFor({ timeout: 20_000 });

    const pushes = h.pushesTo(phone);
    assert.equal(pushes.length, 2, "two requests: the cancelled one and the retry");
    assert.equal(pushes.filter((p) => p.resultCode === 0).length, 1, "one charge only");
    const tips = await h.api(PaymentService, worker.token).listTips({});
    assert.deepEqual(tips.tips.map((t) => t.status).sort(), [TipStatus.SUCCEEDED, TipStatus.FAILED].sort());
  });

  test("refusals the customer can act on are said as such: M-Pesa's 2-minute rule beside the amount, a blocked number beside the number; not 'this code cannot take tips' or 'press Pay again'", async () => {
    const { phone, page } = await pushFromPage("Wairimu", 200, "rule_limited");
    await page.getByRole("heading", { name: "The tip did not go through" }).waitFor({ timeout: 20_000 });
    // The same amount again within 2 minutes: payment refuses it before M-Pesa would.
    await page.getByRole("link", { name: "Try again" }).click();
    await page.getByLabel("M-Pesa phone number").fill(phone);
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    await page.getByText("M-Pesa refuses the same amount from the same number within 2 minutes. Nothing was charged: wait 2 minutes, or tip another amount.").waitFor({ timeout: 20_000 });
    assert.equal(await page.getByText("This QR code cannot take tips right now").count(), 0);
    assert.equal(h.pushesTo(phone).length, 1, "no second prompt");

    const blocked = testPhone({ format: "07" });
    await h.sql("INSERT INTO payment.blocked_phones (phone, reason, blocked_by) VALUES ($1, 'chargebacks', 'test')", [`254${blocked.slice(1)}`]);
    await page.getByLabel("M-Pesa phone number").fill(blocked);
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    await page.getByText("This number cannot be used for tips. Nothing was charged. Please contact TTIP support.").waitFor({ timeout: 20_000 });
    assert.equal(await page.getByText(/press Pay again/).count(), 0);
    assert.equal(h.pushesTo(blocked).length, 0);
  });

  /** A KES 50 tip paid from a browser without scripts: the form's post as the browser sent it (to send again) and its tip. */
  async function scriptlessTip(name: string) {
    const worker = await h.worker(name);
    const code = await h.qrCode(worker);
    const phone = testPhone({ format: "07" });
    const page = await h.phone({ javaScriptEnabled: false });
    await page.goto(code.url);
    await page.getByRole("radio", { name: /KES 50\b/ }).check();
    await page.getByLabel("M-Pesa phone number").fill(phone);
    const posted = page.waitForRequest((r) => r.method() === "POST");
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    const request = await posted;
    await page.waitForURL(/\/tips\/([0-9a-f-]{36})/);
    return { worker, phone, page, request, first: /\/tips\/([0-9a-f-]{36})/.exec(page.url())![1] };
  }

  test("without scripts from the first page, Pay's answer lost and the page opened again: the same tip, one prompt; the tip's page open, the seed is forgotten", async () => {
    const worker = await h.worker("Otieno");
    const code = await h.qrCode(worker);
    const page = await h.phone({ javaScriptEnabled: false });
    await loseFirstPayAnswer(page, code.shortCode);
    const phone = testPhone({ format: "07" });
    await page.goto(code.url);
    await payHundred(page, phone);
    await page.waitForURL((url) => url.protocol === "chrome-error:");
    await eventually("the first tip started", () => h.pushesTo(phone).length === 1);
    // The QR scanned again: no script ever kept the seed, the page's first answer did (before, a new seed: a second tip).
    await payAgainIsTheFirstTip(page, code.url, worker, phone);
    const seeds = (await page.context().cookies(code.url)).filter((c) => c.name === "ttip_seed");
    assert.deepEqual(seeds, [], "its tip's page open: a tip asked for after this one is a new one");
  });

  test("the same form posted twice (a double tap, or back and resubmit) starts one payment", async () => {
    const { page, phone, request, first } = await scriptlessTip("Akinyi");
    const again = await page.request.post(request.url(), { headers: request.headers(), data: request.postDataBuffer()!, maxRedirects: 0 });
    const second = /\/tips\/([0-9a-f-]{36})/.exec(again.headers()["location"] ?? (await again.text()))?.[1];
    assert.equal(second, first, "the second post lands on the same tip");
    await eventually("the tip to settle", async () => (await h.api(PaymentService).getTip({ tipId: first })).tip?.status === TipStatus.SUCCEEDED);
    assert.equal(h.pushesTo(phone).length, 1, "one STK push for both posts");
  });

  test("without scripts, the form posted again with an edited amount (after a lost answer) is a new tip under a new key; unedited, it is the first tip", async () => {
    const { worker, phone, request, first } = await scriptlessTip("Wafula");
    // The same page's form posted again, as the browser would after the answer was lost, with the amount edited or not.
    const { "content-type": type, "content-length": _length, ...headers } = request.headers();
    const postAgain = async (amountMinor?: string) => {
      const form = await new Response(new Uint8Array(request.postDataBuffer()!), { headers: { "content-type": type } }).formData();
      const amount = [...form.keys()].find((k) => /(^|_)amount$/.test(k));
      assert.ok(amount, "the form posts its amount");
      if (amountMinor) form.set(amount, amountMinor);
      const res = await fetch(request.url(), { method: "POST", headers, body: form, redirect: "manual" });
      return /\/tips\/([0-9a-f-]{36})/.exec(res.headers.get("location") ?? (await res.text()))?.[1];
    };
    const edited = await postAgain("10000");
    assert.ok(edited, "the edited form starts a tip, not a conflict with the first one's key");
    assert.notEqual(edited, first);
    assert.equal(await postAgain(), first, "the unedited form again is the first tip");
    assert.equal(await postAgain("10000"), edited, "the edited form again is the edited tip");
    for (const tipId of [first, edited]) {
      await eventually("the tip to settle", async () => (await h.api(PaymentService).getTip({ tipId })).tip?.status === TipStatus.SUCCEEDED);
    }
    const amounts = (await h.api(PaymentService, worker.token).listTips({})).tips.map((t) => Number(t.amount?.amountMinor)).sort((a, b) => a - b);
    assert.deepEqual(amounts, [50_00, 100_00], "one tip of each amount");
    assert.equal(h.pushesTo(phone).length, 2, "one STK push each");
  });

  test("without scripts (a proxy browser), the form posts and the status page refreshes itself until the tip is received", async () => {
    const worker = await h.worker("Baraka");
    const code = await h.qrCode(worker);
    const page = await h.phone({ javaScriptEnabled: false });
    await page.goto(code.url);
    await page.getByRole("radio", { name: "Other" }).check();
    await page.getByRole("textbox", { name: "Other amount (KES)" }).fill("150");
    await page.getByLabel("M-Pesa phone number").fill(testPhone({ format: "07" }));
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    // A typed amount's fee is shown before paying: the second step.
    await page.getByText(/Fee KES \d+ · You pay KES 1\d\d/).waitFor();
    await h.screenshot(page, "tip-nojs-confirm");
    // M-Pesa's answer held until the waiting page has reloaded itself once, however slow the machine.
    const callbacks = h.daraja.hold("stk");
    try {
      await page.getByRole("button", { name: /Pay KES 1\d\d with M-Pesa/ }).click();
      await page.waitForURL(/\/tips\//);
      const waiting = page.url();
      // Navigated to again with no script running: the waiting page reloads itself (its meta refresh).
      const reload = () => page.waitForResponse((r) => r.url().startsWith(waiting.split("?")[0]) && r.url().includes("refreshed=1") && r.request().isNavigationRequest(), { timeout: 60_000 });
      assert.equal((await reload()).status(), 200, "the waiting page reloads itself");
      // The code's page opened in another tab meanwhile, for a tip meant next: the waiting page's reloads keep its seed
      // (only a tip page's first opening ends it; before, each reload did, and that tab's Pay retried got a new key).
      const next = await page.context().newPage();
      await next.goto(code.url);
      const seed = async () => (await page.context().cookies(code.url)).find((c) => c.name === "ttip_seed")?.value;
      const kept = await seed();
      assert.ok(kept, "the code's page set its seed");
      await reload();
      assert.equal(await seed(), kept, "a reload of the waiting page does not end it");
      await next.close();
    } finally {
      await callbacks.release();
    }
    await page.getByRole("heading", { name: "Thank you! Baraka received your tip." }).waitFor({ timeout: 60_000 });
    await h.screenshot(page, "tip-nojs-received");
  });

  test("a zero amount and a wrong number: each named beside its field, and the focus on the first to correct, not lost to the page", async () => {
    const worker = await h.worker("Wairimu");
    const code = await h.qrCode(worker);
    const page = await h.phone();
    await page.goto(code.url);
    const focused = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
    await page.getByLabel("Other amount (KES)").fill("0");
    await page.getByLabel("M-Pesa phone number").fill("0712");
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    await page.getByText("Enter a whole number of shillings, from 1 to 250,000.").waitFor();
    await page.getByText("Enter a Kenyan M-Pesa number, for example 0712 345 678.").waitFor();
    await eventually("the focus on the amount", async () => (await focused()) === "other");
    await page.getByLabel("Other amount (KES)").fill("150");
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    await eventually("the amount's error gone", async () => (await page.getByText(/Enter a whole number of shillings/).count()) === 0);
    await eventually("the focus on the number", async () => (await focused()) === "phone");
    assert.equal((await h.api(PaymentService, worker.token).listTips({})).tips.length, 0, "no tip");
  });

  test("a number corrected after a refusal pays the amount still chosen: KES 200 charged as the button says, not the page's first choice", async () => {
    const worker = await h.worker("Chebet");
    const code = await h.qrCode(worker);
    const page = await h.phone();
    await page.goto(code.url);
    await page.getByRole("radio", { name: /KES 200/ }).check();
    await page.getByLabel("M-Pesa phone number").fill("0712");
    await page.getByRole("button", { name: /with M-Pesa/ }).click();
    await page.getByText("Enter a Kenyan M-Pesa number, for example 0712 345 678.").waitFor();
    assert.equal(await page.getByRole("radio", { name: /KES 200/ }).isChecked(), true, "the amount chosen is still chosen after the refusal");
    const phone = testPhone({ format: "07" });
    await page.getByLabel("M-Pesa phone number").fill(phone);
    const pay = page.getByRole("button", { name: /Pay KES 2\d\d with M-Pesa/ });
    const total = /Pay (KES [\d,]+) with M-Pesa/.exec((await pay.textContent()) ?? "")![1];
    await pay.click();
    await page.getByRole("heading", { name: /received your tip/ }).waitFor({ timeout: 20_000 });
    assert.deepEqual(h.pushesTo(phone).map((x) => `KES ${x.amount}`), [total], "M-Pesa asked once, for the total the button showed");
    const [tip] = (await h.api(PaymentService, worker.token).listTips({})).tips;
    assert.equal(tip.amount!.amountMinor, 20_000n);
  });

  test("KES 250,000 with the fee covered (over M-Pesa's KES 250,000 for one payment): said beside the amount, nothing pushed, no tip", async () => {
    const worker = await h.worker("Mwangi");
    const code = await h.qrCode(worker);
    const page = await h.phone();
    await page.goto(code.url);
    await page.getByLabel("Other amount (KES)").fill("250000");
    const phone = testPhone({ format: "07" });
    await page.getByLabel("M-Pesa phone number").fill(phone);
    await page.getByRole("button", { name: /Pay KES 250,\d{3} with M-Pesa/ }).click();
    await page.getByText("With the fee, this is over M-Pesa's KES 250,000 for one payment. Choose a smaller amount, or untick covering the fee.").waitFor({ timeout: 20_000 });
    await h.screenshot(page, "tip-over-mpesa-limit");
    assert.equal(h.pushesTo(phone).length, 0, "nothing asked of M-Pesa");
    assert.equal((await h.api(PaymentService, worker.token).listTips({})).tips.length, 0, "no tip made");
  });

  test("a tip support gave back says so on its page: being given back, then given back to the customer's M-Pesa, in English and Swahili", async () => {
    const worker = await h.worker("Achieng");
    const code = await h.qrCode(worker);
    const { tip } = await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker.id }, amount: { currency: "KES", amountMinor: 100_00n },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    await eventually("the tip received", async () => (await h.api(PaymentService).getTip({ tipId: tip!.tipId })).tip?.status === TipStatus.SUCCEEDED);
    const url = `${h.url}/t/${code.shortCode}/tips/${tip!.tipId}`;
    const page = await h.phone();
    // The reversal's states as payment records them (its flow is payment's own test): its row, and then M-Pesa's word.
    await h.sql("UPDATE payment.tips SET mpesa_reversal = 'pending', refunded_minor = charged_minor WHERE tip_id = $1", [tip!.tipId]);
    await page.goto(url);
    assert.match(await page.getByTestId("given-back").innerText(), /^KES 1\d\d is being given back to your M-Pesa\.$/);
    await h.sql("UPDATE payment.tips SET mpesa_reversal = 'reversed' WHERE tip_id = $1", [tip!.tipId]);
    await page.reload();
    assert.match(await page.getByTestId("given-back").innerText(), /^KES 1\d\d was given back to your M-Pesa\.$/);
    await h.screenshot(page, "tip-given-back");
    // Declined after review and given back: its payment was taken. Before, the page said "The one above was not
    // charged" beside a button to pay again.
    await h.sql("UPDATE payment.tips SET status = 'failed', result_code = 'review_rejected', result_message = 'The tip was declined after review; your payment will be refunded.' WHERE tip_id = $1", [tip!.tipId]);
    await page.reload();
    await page.getByText("The tip was declined after review; your payment will be refunded.").waitFor();
    assert.match(await page.getByTestId("given-back").innerText(), /was given back to your M-Pesa/);
    assert.equal(await page.getByRole("link", { name: "Try again" }).count(), 0);
    assert.equal(await page.getByText("was not charged").count(), 0);
    await page.context().addCookies([{ name: "ttip_lang", value: "sw", url: h.url }]);
    await page.reload();
    assert.match(await page.getByTestId("given-back").innerText(), /^KES 1\d\d imerudishwa kwenye M-Pesa yako\.$/);
  });

  test("in Swahili by the browser's language, with a switch back to English", async () => {
    const worker = await h.worker("Juma");
    const code = await h.qrCode(worker);
    const page = await h.phone({ locale: "sw-KE" });
    await page.goto(code.url);
    assert.equal(await page.getAttribute("html", "lang"), "sw");
    await page.getByText("Tip kwa", { exact: true }).waitFor();
    await page.getByLabel("Lipa ada ili Juma apate kiasi chote").waitFor();
    await page.getByLabel("Nambari ya simu ya M-Pesa").fill("0712");
    await page.getByRole("button", { name: /kwa M-Pesa/ }).click();
    await page.getByText("Weka nambari ya M-Pesa ya Kenya, kwa mfano 0712 345 678.").waitFor();
    await h.screenshot(page, "tip-page-sw");

    // Daraja's answer in Swahili too.
    const phone = testPhone({ format: "07" });
    h.daraja.script({ phone: `254${phone.slice(1)}` }, { stk: "wrong_pin" });
    await page.getByLabel("Nambari ya simu ya M-Pesa").fill(phone);
    await page.getByRole("button", { name: /kwa M-Pesa/ }).click();
    await page.getByText("PIN ya M-Pesa si sahihi. Hakuna pesa iliyotozwa.").waitFor({ timeout: 20_000 });
    await h.screenshot(page, "tip-failed-sw");
    // The tip was asked for in Swahili: its receipt would be written in it (CreateTipRequest.locale).
    const tipId = /\/tips\/([0-9a-f-]{36})/.exec(page.url())![1];
    assert.deepEqual((await h.sql("SELECT locale FROM payment.tips WHERE tip_id = $1", [tipId])).rows, [{ locale: "sw" }]);

    await page.getByRole("link", { name: "English" }).click();
    await page.getByText("The M-Pesa PIN was wrong. Nothing was charged.").waitFor();
    assert.equal(await page.getAttribute("html", "lang"), "en");
  });

  test("a code asking in another currency (a guide's USD): the page opens, M-Pesa takes a typed amount in KES, the card opens on USD; a fixed USD amount is left to the card", async () => {
    const worker = await h.worker("Odhiambo");
    await h.api(QrService, worker.token).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.id, displayName: "Odhiambo", currency: "USD", city: "Mombasa" });
    const code = await h.qrCode(worker);
    const page = await h.phone();
    assert.equal((await page.goto(code.url))!.status(), 200, "the page opens");
    await h.screenshot(page, "tip-page-usd");
    // M-Pesa moves shillings only: no USD amounts offered to it, and the typed amount says KES.
    assert.doesNotMatch(await page.locator("form").first().innerText(), /USD/);
    await page.getByRole("textbox", { name: "Other amount (KES)" }).fill("150");
    assert.equal(await page.getByLabel("Currency").inputValue(), "USD");
    await page.getByLabel("M-Pesa phone number").fill(testPhone({ format: "07" }));
    await page.getByRole("button", { name: /Pay KES 1\d\d with M-Pesa/ }).click();
    await page.getByRole("heading", { name: "Thank you! Odhiambo received your tip." }).waitFor({ timeout: 20_000 });

    const fixed = await h.qrCode(worker, { fixedAmount: { amountMinor: 10_00n, currency: "USD" } });
    await page.goto(fixed.url);
    await page.getByText("This code is for USD 10. M-Pesa pays in Kenya shillings only: please pay it by card below.").waitFor();
    assert.equal(await page.getByLabel("M-Pesa phone number").count(), 0, "no M-Pesa form for an amount it cannot move");
    assert.equal(await page.getByLabel("Currency").inputValue(), "USD");
    // The card pays the code's amount as it is: nothing to type, and the payment is started for USD 10.
    assert.equal(await page.getByLabel("Amount", { exact: true }).inputValue(), "10");
    await page.getByRole("button", { name: "Pay by card" }).click();
    await page.getByRole("button", { name: "Pay USD 10 by card" }).waitFor({ timeout: 20_000 });
  });

  test("a code keeps the currency it was made in: a fixed KES 500 made before its owner turned to USD is paid by M-Pesa, in KES", async () => {
    const worker = await h.worker("Nafula");
    const code = await h.qrCode(worker, { fixedAmount: { amountMinor: 500_00n, currency: "KES" } });
    await h.api(QrService, worker.token).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.id, displayName: "Nafula", currency: "USD", city: "Malindi" });
    const page = await h.phone();
    await page.goto(code.url);
    await h.screenshot(page, "tip-page-fixed-kes-on-usd");
    // Not "This code is for USD 500" (the code's shillings read in the owner's new currency) with the M-Pesa form left out.
    await page.getByText("This code is for KES 500", { exact: true }).waitFor();
    assert.equal(await page.getByText(/USD 500/).count(), 0);
    assert.equal(await page.getByLabel("Currency").inputValue(), "KES", "the card, too, pays the code's KES 500");
    assert.equal(await page.getByLabel("Amount", { exact: true }).inputValue(), "500");
    const phone = testPhone({ format: "07" });
    await page.getByLabel("M-Pesa phone number").fill(phone);
    await page.getByRole("button", { name: /Pay KES 5\d\d with M-Pesa/ }).click();
    await page.getByRole("heading", { name: "Thank you! Nafula received your tip." }).waitFor({ timeout: 20_000 });
    assert.equal(h.pushesTo(phone).length, 1);
  });

  test("a revoked code says so plainly", async () => {
    const worker = await h.worker("Chebet");
    const code = await h.qrCode(worker);
    await h.api(QrService, worker.token).revokeQrCode({ qrCodeId: code.qrCodeId, reason: "lost" });
    const page = await h.phone();
    await page.goto(code.url);
    await page.getByText("This QR code was switched off by its owner.").waitFor();
  });
});
