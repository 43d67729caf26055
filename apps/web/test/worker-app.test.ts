// The worker's web app in a real browser at phone size, against the platform
// as make run serves it.
import assert from "node:assert/strict";
import { randomInt, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { eventually as waitUntil } from "@ttip/runtime/testing";
import { successNumber, WebHarness } from "./harness.js";

describe("the worker's web app (chromium at phone size)", () => {
  const h = new WebHarness();
  before(() => h.start().then(() => undefined));
  after(() => h.stop());

  test("a worker signs in (OTP, then a new PIN), sees a tip arrive live, withdraws with the browser's device key and downloads a statement", async () => {
    const phone = `07${randomInt(10_000_000, 99_999_999)}`;
    const page = await h.phone({ acceptDownloads: true });
    await page.goto(`${h.url}/w`);
    await page.waitForURL(/\/w\/signin/);
    await page.getByLabel("Your phone number").fill(phone);
    await page.getByRole("button", { name: "Send me a code" }).click();
    await page.getByLabel("The 6-digit code we sent by SMS").fill(await waitForOtp(h, phone));
    await h.screenshot(page, "worker-otp");
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByLabel("New PIN (4 to 6 digits)").fill("4826");
    await page.getByLabel("The same PIN again").fill("4826");
    await page.getByRole("button", { name: "Continue" }).click();
    await page.waitForURL(`${h.url}/w`);
    await page.getByText("No tips yet. Share your QR code!").waitFor();
    const workerId = await page.evaluate(() => JSON.parse(localStorage.getItem("ttip_session")!).userId as string);

    // A customer tips while the home screen is open: it appears without a reload.
    const { tip } = await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: workerId },
      amount: { amountMinor: 30_000n, currency: "KES" },
      payment: { case: "mpesaPhone", value: successNumber() },
    });
    await page.getByTestId("latest-tips").getByText("KES 300 · succeeded").waitFor({ timeout: 20_000 });
    await page.getByTestId("available").filter({ hasNotText: "KES 0" }).waitFor();
    const available = (await page.getByTestId("available").textContent())!;
    await h.screenshot(page, "worker-home");

    // The tip's detail.
    await page.getByTestId("latest-tips").getByText("KES 300 · succeeded").click();
    await page.getByRole("cell", { name: tip!.customerPhoneMasked }).waitFor();

    // Withdraw with a device key made in this browser; its status arrives over WatchPayout, never asked for each second.
    const payoutCalls: string[] = [];
    page.on("request", (r) => /PaymentService\/(GetPayout|WatchPayout)$/.test(r.url()) && payoutCalls.push(r.url().split("/").at(-1)!));
    await page.getByRole("link", { name: "Withdraw" }).click();
    await page.getByLabel("Amount (KES, whole shillings)").fill("200");
    await page.getByLabel("M-Pesa number (empty: your payout number)").fill(phone);
    await page.getByRole("button", { name: "Withdraw" }).click();
    await page.getByTestId("payout-status").filter({ hasText: "succeeded" }).waitFor({ timeout: 30_000 }).catch(async (err) => {
      await h.screenshot(page, "worker-withdraw-failed");
      throw new Error(`${(err as Error).message}\npage says: ${await page.locator("main").innerText()}`);
    });
    await h.screenshot(page, "worker-withdrawn");
    assert.ok(payoutCalls.includes("WatchPayout"), `the status was streamed: ${payoutCalls.join(", ")}`);
    assert.ok(!payoutCalls.includes("GetPayout"), `no polling while the stream is up: ${payoutCalls.join(", ")}`);
    const key = await page.evaluate(
      (userId) =>
        new Promise<{ extractable: boolean; algorithm: string; curve: string }>((resolve, reject) => {
          const open = indexedDB.open("ttip-device", 1);
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            const get = open.result.transaction("keys").objectStore("keys").get(userId);
            get.onsuccess = () => {
              const k = get.result.privateKey as CryptoKey;
              resolve({ extractable: k.extractable, algorithm: k.algorithm.name, curve: (k.algorithm as EcKeyAlgorithm).namedCurve });
            };
          };
        }),
      workerId,
    );
    assert.deepEqual(key, { extractable: false, algorithm: "ECDSA", curve: "P-256" }, "the private key stays in the browser, not extractable");
    const b2c = h.daraja.transactions().filter((t) => t.kind === "b2c" && t.amount === 200);
    assert.equal(b2c.length, 1, "one B2C payout of KES 200");
    assert.notEqual(available, "KES 0");

    // This month's statement as CSV.
    await page.getByRole("link", { name: "Statements" }).click();
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download CSV" }).click()]);
    const csv = readFileSync((await download.path())!, "utf8");
    assert.match(download.suggestedFilename(), /^ttip-statement-\d{4}-\d{2}\.csv$/);
    assert.ok(csv.split("\n").length >= 3, `a header and at least the tip and the withdrawal:\n${csv}`);
    assert.match(csv, /300|285/);
    await h.screenshot(page, "worker-statements");
  });
});

function waitForOtp(h: WebHarness, phone: string): Promise<string> {
  // otpFor throws until the SMS has arrived.
  return waitUntil("the OTP SMS", () => h.otpFor(phone), { timeoutMs: 10_000, everyMs: 100, retryErrors: true });
}
