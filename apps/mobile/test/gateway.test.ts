// The mobile app's screens (jest-expo, on the mobile toolchain's Node) against the
// platform as make run serves it: the phone's software device key against the real
// auth service, the payout against the Daraja simulator, a new payout number against payment.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { maskPhone } from "@ttip/runtime";
import { testPhone } from "@ttip/runtime/testing";
import { eventually, WebHarness } from "../../web/test/harness.js";
import { startGatewayRecorder } from "./gateway-recorder.js";
import { runJest } from "./run-jest.js";

/** What the spec's push registrar gives the app as this phone's FCM token. */
const PUSH_TOKEN = "fcm-gateway-test-token-0123456789";

describe("the mobile app's screens against the platform (jest-expo)", () => {
  const h = new WebHarness();
  let otpServer: http.Server | undefined;
  let recorder: Awaited<ReturnType<typeof startGatewayRecorder>> | undefined;
  before(async () => {
    await h.start();
    recorder = await startGatewayRecorder(h.url);
  });
  after(async () => {
    await recorder?.close();
    otpServer?.closeAllConnections();
    await new Promise((r) => otpServer?.close(r) ?? r(undefined));
    await h.stop();
  });

  test("sign in and withdraw with the phone's device key", async (t) => {
    const worker = await h.worker("Njeri");
    const signUpOtp = h.otpFor(worker.phone);
    await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: worker.id },
      amount: { amountMinor: 40_000n, currency: "KES" },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    const wallet = h.api(WalletService, worker.token);
    const available = await eventually("the tip credited", async () => {
      const b = (await wallet.getBalance({ currency: "KES" })).balances[0]?.available?.amountMinor ?? 0n;
      return b > 0n ? b : undefined;
    });
    // The app's sign-in asks for a new code; the test reads it from the SMS simulator.
    otpServer = http.createServer(async (req, res) => {
      const phone = new URL(req.url ?? "/", "http://x").searchParams.get("phone") ?? "";
      const otp = await eventually("the sign-in OTP", () => {
        const o = h.otpFor(phone);
        return o !== signUpOtp ? o : undefined;
      }).catch(() => "");
      res.end(otp);
    });
    await new Promise<void>((r) => otpServer!.listen(0, "127.0.0.1", r));
    // The OTP resend wait (1 s in the harness) after the sign-up's own code: the clock moves past it.
    h.clock.advance(1_100);

    // Payouts go to the sign-in phone (a first number, no step-up); the app replaces it with this one.
    await h.api(PaymentService, worker.token).updatePayoutSettings({ payoutPhone: worker.phone });
    const newPayoutPhone = testPhone({ format: "07" });
    const whole = available / 100n;
    const result = await runJest("src/__gateway__/", {
      // The app reaches the gateway through the recorder, which notes how it spoke.
      TTIP_GATEWAY_URL: recorder!.url,
      TTIP_OTP_URL: `http://127.0.0.1:${(otpServer.address() as AddressInfo).port}/otp`,
      TTIP_WORKER_PHONE: worker.phone,
      TTIP_WORKER_PIN: worker.pin,
      TTIP_WORKER_ID: worker.id,
      TTIP_NEW_PAYOUT_PHONE: newPayoutPhone,
      TTIP_EXPECT_AVAILABLE: `KES ${whole.toLocaleString("en")}${available % 100n ? `.${String(available % 100n).padStart(2, "0")}` : ""}`,
    });
    assert.equal(result.numTotalTests, 1, result.testResults.map((r) => r.message).join("\n"));
    for (const a of result.testResults.flatMap((r) => r.assertionResults)) {
      await t.test(a.fullName, () => assert.equal(a.status, "passed", a.failureMessages.join("\n")));
    }
    // The app spoke binary protobuf to the gateway: every call it made, sign-in to payout.
    const rpcs = recorder!.rpcs();
    assert.ok(rpcs.length >= 8, `the app's calls reached the gateway through the recorder (${rpcs.length})`);
    assert.deepEqual(rpcs.filter((c) => c.contentType !== "application/proto"), []);
    // What the platform saw: one device registered for the worker, one B2C of KES 150.
    const { devices } = await h.api(AuthService, (await h.tokens(worker)).accessToken).listDevices({});
    assert.equal(devices.length, 1);
    assert.match(JSON.parse(devices[0].publicKeyJwk).crv, /^P-256$/);
    // The worker's own payouts: the stage's simulator also holds the browser files' (they run in one process).
    const b2c = h.payoutsTo(worker.phone);
    assert.deepEqual(b2c.map((tx) => tx.amount), [150], "one B2C payout of KES 150");
    // Payment holds the new payout number, cooling off; auth spent one step-up for it.
    const { settings } = await h.api(PaymentService, worker.token).getPayoutSettings({});
    assert.equal(settings?.payoutPhoneMasked, maskPhone(newPayoutPhone));
    assert.ok(settings?.automaticPayoutsFrom, "a replaced number waits out the cooling-off");
    assert.equal(rpcs.filter((c) => c.path.endsWith("/VerifyDeviceChallenge")).length, 2, "one step-up for the payout, one for the number");

    // The app registered the phone's push token at sign-in: the next tip arrives as a push (FCM, simulated).
    await h.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: worker.id },
      amount: { amountMinor: 7_700n, currency: "KES" },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    const push = await eventually("a push for the tip to the app's token", () =>
      h.providers.sentBy("fcm").find((m) => m.to === PUSH_TOKEN && /77/.test(m.body)),
    );
    assert.match(push.subject, /\S/, "the push has a title");
  });
});
