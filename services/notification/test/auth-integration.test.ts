// With the real auth service: auth's OTPs go out through this service, and a
// worker's phone, which events never carry whole, comes from auth's
// GetUserById the first time it is needed.
import assert from "node:assert/strict";
import { randomInt, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { Locale, Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { Channel } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { createAuth } from "@ttip/auth";
import { eventually, startTestService, type TestService } from "@ttip/runtime/testing";
import { createNotificationModule, DEFAULT_RETRY } from "../src/index.js";
import { ProviderSimulator } from "../src/testing.js";

describe("notification with the auth service", () => {
  const sim = new ProviderSimulator();
  let t: TestService;
  let url = "";

  before(async () => {
    await sim.start();
    t = await startTestService(
      createNotificationModule({
        config: { providers: sim.config(), retry: { ...DEFAULT_RETRY, baseDelayMs: 30 }, publicUrl: () => url },
      }),
      { with: [createAuth({ env: { AUTH_OTP_SENDER: "notification", AUTH_OTP_PER_IP_PER_HOUR: "1000" } })] },
    );
    url = t.service.server.url;
  });
  after(async () => {
    await t?.close();
    await sim.close();
  });

  test("a worker signs up with an OTP sent by this service, then hears of a tip on the number auth holds", async () => {
    const authApi = createClient(AuthService, t.ctx.peers("auth"));
    const phone = `+2547${String(randomInt(0, 100_000_000)).padStart(8, "0")}`;
    const { challengeId } = await authApi.startPhoneVerification({ phone, locale: Locale.SW });
    const otpSms = await eventually("the OTP SMS", () => sim.sent.find((m) => m.to === phone));
    const code = /ni (\d{6})\./.exec(otpSms.body)?.[1];
    assert.ok(code, otpSms.body);
    assert.equal(otpSms.body, `Nambari yako ya TTIP ni ${code}. Itaisha baada ya dakika 5. Usimpe mtu yeyote.`);

    const verified = await authApi.verifyPhoneOtp({ challengeId, otp: code, role: Role.WORKER });
    assert.equal(verified.newUser, true);
    const workerId = JSON.parse(Buffer.from(verified.tokens!.accessToken.split(".")[1], "base64url").toString()).sub as string;
    // auth's user_registered event tells us the worker reads Swahili.
    await eventually("the worker's locale", async () => {
      const r = await t.db.pool.query("SELECT locale FROM notification.recipients WHERE user_id = $1", [workerId]);
      return r.rows[0]?.locale === "sw";
    });

    const eventId = randomUUID();
    const tip = create(TipSucceededSchema, {
      meta: { id: eventId, producer: "payment" },
      tipId: randomUUID(),
      workerId,
      amount: { amountMinor: 20000n, currency: "KES" },
      net: { amountMinor: 19000n, currency: "KES" },
      customerPhoneMasked: "2547******55",
    });
    await t.ctx.bus.publish({ id: eventId, subject: "ttip.payment.tip_succeeded", data: toBinary(TipSucceededSchema, tip) });
    const tipSms = await eventually("the tip SMS", () => sim.sent.find((m) => m.to === phone && m.body.startsWith("Umepokea")));
    assert.equal(tipSms.body, "Umepokea bakshishi ya KES 200 kutoka kwa 2547******55. Unapata KES 190 baada ya ada.");
    const stored = await t.db.pool.query("SELECT phone FROM notification.recipients WHERE user_id = $1", [workerId]);
    assert.equal(stored.rows[0].phone, phone.slice(1), "the number is kept for next time");
    const d = await t.db.pool.query("SELECT address_masked FROM notification.deliveries WHERE user_id = $1 AND channel = $2", [workerId, Channel.SMS]);
    assert.equal(d.rows[0].address_masked, `${phone.slice(1, 5)}******${phone.slice(-2)}`);
  });

  test("a user auth does not know gets no SMS and a failed delivery that says why", async () => {
    const workerId = randomUUID();
    const eventId = randomUUID();
    const tip = create(TipSucceededSchema, { meta: { id: eventId }, tipId: randomUUID(), workerId, amount: { amountMinor: 100n, currency: "KES" } });
    await t.ctx.bus.publish({ id: eventId, subject: "ttip.payment.tip_succeeded", data: toBinary(TipSucceededSchema, tip) });
    const row = await eventually("the failed SMS delivery", async () => {
      const r = await t.db.pool.query("SELECT status, last_error FROM notification.deliveries WHERE user_id = $1 AND channel = $2", [workerId, Channel.SMS]);
      return r.rows[0]?.status === "failed" && r.rows[0];
    });
    assert.equal(row.last_error, "no phone number on file");
  });
});
