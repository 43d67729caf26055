// The mobile app's main flow in its browser build (react-native-web) in Debian's
// chromium at phone size, against the platform as make run serves it: sign in (OTP
// then PIN), see a tip arrive live, withdraw with the device key (the browser's
// fallback: a non-extractable WebCrypto key registered with auth).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { testPhone } from "@ttip/runtime/testing";
import { eventually, WebHarness } from "../../web/test/harness.js";
import { startGatewayRecorder } from "./gateway-recorder.js";
import { ensureMobileWebBuild, serveMobileWeb } from "./web-build.js";

describe("the mobile app's web build (chromium at phone size)", () => {
  const h = new WebHarness();
  let site: Awaited<ReturnType<typeof serveMobileWeb>> | undefined;
  let recorder: Awaited<ReturnType<typeof startGatewayRecorder>> | undefined;
  before(async () => {
    const dist = await ensureMobileWebBuild((l) => console.log(l));
    await h.start();
    site = await serveMobileWeb(dist);
    recorder = await startGatewayRecorder(h.url);
  });
  after(async () => {
    await recorder?.close();
    await site?.close();
    await h.stop();
  });

  test("a worker signs in with OTP and PIN, sees a tip arrive, and withdraws with this browser's device key", async () => {
    const worker = await h.worker("Wanjiru");
    const page = await h.phone();
    const fail = async (err: unknown, name: string) => {
      await h.screenshot(page, name);
      throw new Error(`${(err as Error).message}\npage says: ${await page.locator("body").innerText()}`);
    };
    // The page reaches the gateway through the recorder, which notes how it spoke.
    await page.goto(`${site!.url}/?api=${encodeURIComponent(recorder!.url)}`);
    await page.getByLabel("Your phone number").fill(worker.phone);
    // The OTP resend wait (1 s in the harness) after the sign-up's own code.
    const before = h.sms.lastTo(worker.phone.replace(/^0/, "254"))?.message;
    h.clock.advance(1_100);
    await page.getByRole("button", { name: "Send me a code" }).click();
    await eventually("a new OTP", () => h.sms.lastTo(worker.phone.replace(/^0/, "254"))?.message !== before);
    await page.getByLabel("The 6-digit code we sent by SMS").fill(h.otpFor(worker.phone));
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByLabel("Your PIN").fill(worker.pin);
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByText("No tips yet. Share your QR code!").waitFor().catch((e) => fail(e, "mobile-web-home-failed"));
    await h.screenshot(page, "mobile-web-home-empty");

    // A customer tips while home is open: it is announced without a reload.
    await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: worker.id },
      amount: { amountMinor: 30_000n, currency: "KES" },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    await page.getByText("New tip: KES 300").waitFor({ timeout: 20_000 }).catch((e) => fail(e, "mobile-web-tip-failed"));
    await page.getByTestId("latest-tips").getByText("KES 300").waitFor();
    await h.screenshot(page, "mobile-web-home-tip");
    // notification put the tip in the worker's in-app inbox too.
    await page.getByRole("button", { name: /Messages \(\d+ new\)/ }).click({ timeout: 20_000 }).catch((e) => fail(e, "mobile-web-inbox-failed"));
    await page.getByTestId("inbox-list").getByText(/300/).first().waitFor().catch((e) => fail(e, "mobile-web-inbox-failed"));
    await h.screenshot(page, "mobile-web-inbox");
    await page.getByRole("button", { name: "Back" }).click();

    // Withdraw: review, confirm, the device key is made, registered and signs.
    await page.getByRole("tab", { name: "Withdraw" }).click();
    // Loaded: an amount, not "…" (loading) nor KES 0.
    await page.getByTestId("withdraw-available").filter({ hasText: /^KES [1-9]/ }).waitFor();
    const availableBefore = await page.getByTestId("withdraw-available").innerText();
    await page.getByLabel("Amount (KES, whole shillings)").fill("200");
    await page.getByLabel("M-Pesa number (empty: your payout number)").fill(worker.phone);
    await page.getByRole("button", { name: "Withdraw", exact: true }).click();
    // The confirmation says where the money goes: the number typed, as the worker reads it.
    await page.getByText(/^Send KES 200 to 0\d{3} \d{3} \d{3} by M-Pesa\?$/).waitFor();
    await page.getByRole("button", { name: "Confirm" }).click();
    // The first key takes the PIN (auth adds a key only with it).
    await page.getByLabel("Your PIN", { exact: true }).fill(worker.pin);
    await page.getByRole("button", { name: "Set up this device" }).click();
    await page.getByText("Withdrawal of KES 200: sent").waitFor({ timeout: 30_000 }).catch((e) => fail(e, "mobile-web-withdraw-failed"));
    await page.getByText(/M-Pesa receipt \w+/).waitFor();
    // The balance on screen follows the settled payout.
    await page.getByTestId("withdraw-available").filter({ hasNotText: availableBefore }).waitFor();
    await h.screenshot(page, "mobile-web-withdrawn");

    const key = await page.evaluate(
      (userId) =>
        new Promise<{ extractable: boolean; curve: string; deviceId: string }>((resolve, reject) => {
          const open = indexedDB.open("ttip-mobile-device", 1);
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            const get = open.result.transaction("keys").objectStore("keys").get(userId);
            get.onsuccess = () => {
              const k = get.result.privateKey as CryptoKey;
              resolve({ extractable: k.extractable, curve: (k.algorithm as EcKeyAlgorithm).namedCurve, deviceId: get.result.deviceId });
            };
          };
        }),
      worker.id,
    );
    assert.equal(key.extractable, false, "the private key cannot leave the browser");
    assert.equal(key.curve, "P-256");
    assert.match(key.deviceId, /^[0-9a-f-]{36}$/, "registered with auth");
    // Listed as the browser it is (its agent cut to 60 characters names the system only), as the web app's keys
    // are: before, "TTIP app (web)", shown as written.
    await page.getByRole("tab", { name: "Settings" }).click();
    await page.getByText(/^Linux \(this phone\)$/).waitFor();
    const b2c = h.payoutsTo(worker.phone).filter((t) => t.amount === 200);
    assert.equal(b2c.length, 1, "one B2C payout of KES 200");
    // The page spoke binary protobuf to the gateway: every call it made, sign-in to payout.
    const rpcs = recorder!.rpcs();
    assert.ok(rpcs.length >= 8, `the page's calls reached the gateway through the recorder (${rpcs.length})`);
    assert.deepEqual(rpcs.filter((c) => c.contentType !== "application/proto"), []);
  });

  test("a link naming a server off loopback in ?api= is not followed: the page's calls stay with its own origin", async () => {
    const page = await h.phone();
    const asked: string[] = [];
    page.on("request", (r) => asked.push(r.url()));
    await page.goto(`${site!.url}/?api=${encodeURIComponent("http://10.255.255.1:9")}`);
    await page.getByLabel("Your phone number").fill(testPhone({ format: "07" }));
    await page.getByRole("button", { name: "Send me a code" }).click();
    // Before, the number went to whatever ?api= named, and with it later the code, the PIN and every token.
    const startVerification = await eventually("the code asked for", () => asked.find((u) => u.endsWith("/StartPhoneVerification")));
    assert.equal(new URL(startVerification).origin, site!.url);
    assert.deepEqual(asked.filter((u) => new URL(u).hostname === "10.255.255.1"), []);
  });
});
