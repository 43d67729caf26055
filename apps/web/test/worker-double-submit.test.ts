// A double tap on the worker's forms sends each request once: the sign-in's
// code, OTP and PIN, and the withdrawal's device-key registration and step-up
// challenge. A withdrawal the server refused can still be retried.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { eventually as waitUntil, testPhone } from "@ttip/runtime/testing";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { loseFirstAnswer, WebHarness } from "./harness.js";

/** The auth and payment calls the page sends, by method name, as they leave the browser. */
function countCalls(page: Page): Map<string, number> {
  const calls = new Map<string, number>();
  page.on("request", (r) => {
    const m = /\/ttip\.(?:auth|payment)\.v1\.\w+\/(\w+)$/.exec(r.url());
    if (m) calls.set(m[1]!, (calls.get(m[1]!) ?? 0) + 1);
  });
  return calls;
}

describe("the worker's forms under a double tap (chromium at phone size)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  afterEach(() => h.closePages());
  after(() => h.stop());

  test("sign-in sends one code, one OTP check and one new PIN; withdraw registers one device key and asks one challenge, and a failed withdrawal can be retried", async () => {
    const phone = testPhone({ format: "07" });
    const page = await h.phone();
    const calls = countCalls(page);
    await page.goto(`${h.url}/w/signin`);
    await page.getByLabel("Your phone number").fill(phone);
    await page.getByRole("button", { name: "Send me a code" }).dblclick();
    await page.getByLabel("The 6-digit code we sent by SMS").fill(await waitForOtp(h, phone));
    await page.getByRole("button", { name: "Continue" }).dblclick();
    await page.getByLabel("New PIN (4 to 6 digits)").fill("4826");
    await page.getByLabel("The same PIN again").fill("4826");
    await page.getByRole("button", { name: "Continue" }).dblclick();
    await page.waitForURL(`${h.url}/w`);
    assert.equal(calls.get("StartPhoneVerification"), 1, "one code sent for the double tap");
    assert.equal(calls.get("VerifyPhoneOtp"), 1, "one OTP check for the double tap");
    assert.equal(calls.get("SetPin"), 1, "one PIN set for the double tap");

    // A tip to withdraw, but no payout number yet and none typed: the payout is refused, after the step-up
    // (more than the balance would be refused before it).
    const workerId = await page.evaluate(() => JSON.parse(localStorage.getItem("ttip_session")!).userId as string);
    await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: workerId },
      amount: { amountMinor: 30_000n, currency: "KES" },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    await page.getByTestId("available").filter({ hasNotText: "KES 0" }).waitFor({ timeout: 20_000 });
    await page.getByRole("link", { name: "Withdraw" }).click();
    await page.getByLabel("Amount (KES, whole shillings)").fill("200");
    const withdraw = page.getByRole("button", { name: "Withdraw" });
    await withdraw.dblclick();
    const refused = page.locator("form").getByRole("alert"); // the form's own, not Next's route announcer
    await h.pinIfAsked(page, "4826", refused);
    await refused.waitFor({ timeout: 20_000 });
    assert.equal(calls.get("RegisterDevice"), 1, "one device key registered for the double tap");
    assert.equal(calls.get("CreateDeviceChallenge"), 1, "one step-up challenge for the double tap");
    assert.equal(calls.get("RequestPayout"), 1, "one payout asked for the double tap");

    // The failed attempt released the form: a retry goes through with the key already registered.
    await waitUntil("the button enabled again", async () => await withdraw.isEnabled(), { timeoutMs: 10_000, everyMs: 50 });
    await withdraw.click();
    await waitUntil("the retry's payout request", () => calls.get("RequestPayout") === 2, { timeoutMs: 20_000, everyMs: 50 });
    assert.equal(calls.get("CreateDeviceChallenge"), 2, "the retry asks a fresh challenge");
    assert.equal(calls.get("RegisterDevice"), 1, "the retry reuses the registered key");
  });

  /** A signed-in worker with KES 3,000 tipped (room for a few payouts) on Withdraw, the page's calls counted. */
  const withdrawingWorker = async (name: string) => {
    const worker = await h.worker(name);
    await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: worker.id },
      amount: { amountMinor: 300_000n, currency: "KES" },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    const page = await h.signedInPhone(worker);
    const calls = countCalls(page);
    await page.goto(`${h.url}/w/withdraw`);
    await page.getByText(/KES 2,\d{3}/).first().waitFor({ timeout: 20_000 }); // the tip credited
    return { worker, page, calls };
  };

  test("the browser's key is added only with the PIN: declined or wrong, no key and no payout; the right PIN adds it and pays out", async () => {
    const { worker, page, calls } = await withdrawingWorker("Chebet");
    const ask = async () => {
      await page.getByLabel("M-Pesa number (empty: your payout number)").fill(worker.phone);
      await page.getByLabel("Amount (KES, whole shillings)").fill("300");
      await page.getByRole("button", { name: "Withdraw" }).click();
    };
    const pin = page.getByLabel("Your PIN", { exact: true });
    const refused = page.locator("form").getByRole("alert");
    await ask();
    await page.getByRole("button", { name: "Cancel" }).click();
    await refused.filter({ hasText: "Nothing was sent: this device is set up with your PIN first." }).waitFor();
    assert.equal(await pin.count(), 0, "the prompt is gone");
    await ask();
    await pin.fill("12");
    await page.getByRole("button", { name: "Set up this device" }).click();
    await page.getByRole("alert").filter({ hasText: "Your PIN is 4 to 6 digits." }).waitFor();
    await pin.fill(worker.pin === "1111" ? "2222" : "1111");
    await page.getByRole("button", { name: "Set up this device" }).click();
    await refused.filter({ hasText: /wrong PIN/ }).waitFor({ timeout: 20_000 });
    assert.equal(calls.get("RegisterDevice"), 1, "the wrong PIN reached auth once");
    assert.equal(calls.get("RequestPayout") ?? 0, 0);
    const { rows } = await h.sql("SELECT (SELECT count(*)::int FROM auth.devices WHERE user_id = $1) AS keys, (SELECT pin_failures FROM auth.users WHERE user_id = $1) AS failures", [worker.id]);
    assert.deepEqual(rows[0], { keys: 0, failures: 1 });
    await ask();
    await h.pinIfAsked(page, worker.pin, page.getByTestId("payout-status"));
    await page.getByTestId("payout-status").waitFor({ timeout: 20_000 });
    assert.equal((await h.api(PaymentService, worker.token).listPayouts({})).payouts.length, 1);
  });

  test("a withdrawal whose answer was lost, asked for again with the amount written another way, is the same payout", async () => {
    const { worker, page, calls } = await withdrawingWorker("Akinyi");
    // The first payout reaches payment, and its answer is lost on the way back.
    await loseFirstAnswer(page, "ttip.payment.v1.PaymentService/RequestPayout");
    const amount = page.getByLabel("Amount (KES, whole shillings)");
    await page.getByLabel("M-Pesa number (empty: your payout number)").fill(worker.phone);
    // More than half the balance: asked again, the payout is more than the balance read after it.
    await amount.fill("2,000");
    const shown = page.getByTestId("withdraw-available");
    const before = (await shown.textContent())!;
    await page.getByRole("button", { name: "Withdraw" }).click();
    await h.pinIfAsked(page, worker.pin, page.locator("form").getByRole("alert"));
    await page.locator("form").getByRole("alert").waitFor({ timeout: 20_000 });
    // The balance shown follows the payout the lost answer made (before, the one from before it: "nothing moved").
    await shown.filter({ hasNotText: before }).waitFor({ timeout: 20_000 });
    // Asked again, not refused as over that balance: the same payout.
    await amount.fill("2000");
    await page.getByRole("button", { name: "Withdraw" }).click();
    await page.getByTestId("payout-status").waitFor({ timeout: 20_000 });
    assert.equal(calls.get("RequestPayout"), 2);
    // Before, "2000" was another request than "2,000": a new key, and a second payout of KES 2,000.
    assert.equal((await h.api(PaymentService, worker.token).listPayouts({})).payouts.length, 1);
  });

  test("a withdrawal whose answer was lost, asked again with the number typed where it was left blank (or the other way), is asked about first: given as then, the same payout; asked again as it is, a payout of its own", async () => {
    const { worker, page, calls } = await withdrawingWorker("Nafula");
    // The number a blank field stands for: set in the worker's settings.
    await h.sql("INSERT INTO payment.payout_settings (worker_id, payout_phone) VALUES ($1, $2)", [worker.id, `254${worker.phone.slice(1)}`]);
    const number = page.getByLabel("M-Pesa number (empty: your payout number)");
    const amount = page.getByLabel("Amount (KES, whole shillings)");
    const refused = page.locator("form").getByRole("alert");
    const maybeSent = (how: string) => refused.filter({ hasText: `A withdrawal of KES 500 asked for before, with the number ${how}, got no answer: it may have gone.` });
    const ask = async (phone: string) => {
      await number.fill(phone);
      await amount.fill("500");
      await page.getByRole("button", { name: "Withdraw" }).click();
      await h.pinIfAsked(page, worker.pin, page.getByTestId("payout-status").or(refused));
    };
    const payouts = async () => (await h.api(PaymentService, worker.token).listPayouts({})).payouts.length;
    const another = () => page.getByRole("button", { name: "Make another withdrawal" }).click({ timeout: 30_000 });
    // Twice: left blank (the payout number), the answer lost; asked again with that number typed: asked about, nothing
    // sent (before, another key: a second payout); given as then, that payout. The second time too: the first time's
    // question is not taken as this one's answer.
    for (const [i, lost] of [[1, 1], [2, 3]]) {
      await loseFirstAnswer(page, "ttip.payment.v1.PaymentService/RequestPayout");
      await ask("");
      await refused.waitFor({ timeout: 20_000 });
      await ask(worker.phone);
      await maybeSent("left empty").waitFor({ timeout: 20_000 });
      assert.equal(calls.get("RequestPayout"), lost);
      await ask("");
      await page.getByTestId("payout-status").waitFor({ timeout: 20_000 });
      assert.equal(await payouts(), i);
      await another();
    }

    // The other way: typed, lost; asked again blank, it is asked about; asked again as it is, a payout of its own.
    await loseFirstAnswer(page, "ttip.payment.v1.PaymentService/RequestPayout");
    await ask(testPhone({ format: "07" }));
    await refused.waitFor({ timeout: 20_000 });
    await ask("");
    await maybeSent("typed in").waitFor({ timeout: 20_000 });
    assert.equal(calls.get("RequestPayout"), 5);
    await ask("");
    await page.getByTestId("payout-status").waitFor({ timeout: 20_000 });
    assert.equal(calls.get("RequestPayout"), 6);
    assert.equal(await payouts(), 4);
  });

  test("a withdrawal left while it is sent and opened again shows that payout; after a lost answer, the same amount from a screen opened again is the same payout", async () => {
    const { worker, page, calls } = await withdrawingWorker("Wanjiru");
    const away = async () => {
      await page.getByRole("link", { name: "Home" }).click();
      await page.waitForURL(`${h.url}/w`);
      await page.getByRole("link", { name: "Withdraw" }).click();
    };
    const ask = async (amount: string) => {
      await page.getByLabel("M-Pesa number (empty: your payout number)").fill(worker.phone);
      await page.getByLabel("Amount (KES, whole shillings)").fill(amount);
      await page.getByRole("button", { name: "Withdraw" }).click();
      await h.pinIfAsked(page, worker.pin, page.getByTestId("payout-status").or(page.locator("form").getByRole("alert")));
    };
    // The payout is on its way to payment when the worker goes to another tab and comes back.
    let letGo = () => {};
    const held = new Promise<void>((resolve) => (letGo = resolve));
    await page.route("**/ttip.payment.v1.PaymentService/RequestPayout", async (route) => (await held, route.continue()), { times: 1 });
    await ask("500");
    await waitUntil("the payout request sent", () => calls.get("RequestPayout") === 1, { timeoutMs: 20_000, everyMs: 50 });
    await away();
    // Its stream is slow to connect: the screen shows the payout as RequestPayout answered it (before, "KES 0 to :").
    const watch = "**/ttip.payment.v1.PaymentService/WatchPayout";
    await page.route(watch, async (route) => (await new Promise((r) => setTimeout(r, 3_000)), route.continue()), { times: 1 });
    letGo();
    // Before, the screen opened again was an empty form: the payout was shown nowhere, and asked again it was a second one.
    await page.getByTestId("payout-status").waitFor({ timeout: 20_000 });
    assert.match(await page.getByRole("status").filter({ has: page.getByTestId("payout-status") }).innerText(), /KES 500/);
    const another = page.getByRole("button", { name: "Make another withdrawal" });
    await another.click();
    // The next payout's stream cannot connect: it is asked about meanwhile, and shown as itself. Before, it was shown
    // with the one before's final status, and not asked about.
    await page.route(watch, (route) => route.abort("connectionreset"));
    await ask("600");
    await page.getByRole("status").filter({ hasText: "KES 600" }).getByTestId("payout-status").waitFor({ timeout: 20_000 });
    await page.unroute(watch);
    await another.click();

    // The next one's answer is lost; the worker leaves, comes back, and asks the same amount again.
    await loseFirstAnswer(page, "ttip.payment.v1.PaymentService/RequestPayout");
    await ask("700");
    await page.locator("form").getByRole("alert").waitFor({ timeout: 20_000 });
    await away();
    await ask("700");
    await page.getByTestId("payout-status").waitFor({ timeout: 20_000 });
    assert.equal(calls.get("RequestPayout"), 4);
    // Before, the screen opened again had a new key: a second payout of KES 700.
    const payouts = (await h.api(PaymentService, worker.token).listPayouts({})).payouts;
    assert.deepEqual(payouts.map((p) => p.amount!.amountMinor).sort(), [50_000n, 60_000n, 70_000n]);
  });
});

function waitForOtp(h: WebHarness, phone: string): Promise<string> {
  // otpFor throws until the SMS has arrived.
  return waitUntil("the OTP SMS", () => h.otpFor(phone), { timeoutMs: 10_000, everyMs: 100, retryErrors: true });
}
