// With the real auth service: auth's OTPs go out through this service, and a
// worker's phone, which events never carry whole, comes from auth's
// GetUserById the first time it is needed.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { Locale, Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { callerHeaders, SESSION_HEADER } from "@ttip/runtime";
import { FraudAlertSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { Channel } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { createAuth } from "@ttip/auth";
import { eventually, startTestService, type TestService, testPhone } from "@ttip/runtime/testing";
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
        config: { providers: sim.config(), retry: { ...DEFAULT_RETRY, baseDelayMs: 30 }, publicUrl: () => url, consoleUrl: "https://tips.example.co.ke/admin" },
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
    const phone = testPhone({ format: "+254" });
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

  /** A user signed up through auth with an OTP this service sent, then given `roles` (as an admin would). */
  async function signUp(locale: Locale, roles: string[], displayName = "", s: TestService = t): Promise<{ userId: string; phone: string }> {
    const authApi = createClient(AuthService, s.ctx.peers("auth"));
    const phone = testPhone({ format: "+254" });
    const { challengeId } = await authApi.startPhoneVerification({ phone, locale });
    const otpSms = await eventually("the OTP SMS", () => sim.sent.find((m) => m.to === phone));
    const code = /(\d{6})/.exec(otpSms.body)![1];
    const verified = await authApi.verifyPhoneOtp({ challengeId, otp: code, role: Role.WORKER });
    const userId = JSON.parse(Buffer.from(verified.tokens!.accessToken.split(".")[1], "base64url").toString()).sub as string;
    await s.db.pool.query("UPDATE auth.users SET roles = $2, display_name = $3 WHERE user_id = $1", [userId, roles, displayName]);
    await eventually("the user's locale", async () => {
      const r = await s.db.pool.query("SELECT locale FROM notification.recipients WHERE user_id = $1", [userId]);
      return r.rows[0]?.locale === (locale === Locale.SW ? "sw" : "en");
    });
    return { userId, phone };
  }

  test("a phone's push token goes when auth ends the session it was registered from; one registered elsewhere stays", async () => {
    const { userId } = await signUp(Locale.EN, ["worker"]);
    const { rows } = await t.db.pool.query<{ session_id: string }>("SELECT session_id FROM auth.sessions WHERE user_id = $1 AND revoked_at IS NULL", [userId]);
    assert.equal(rows.length, 1);
    const as = (session?: string) => ({ headers: { ...callerHeaders(userId, "worker"), ...(session ? { [SESSION_HEADER]: session } : {}) } });
    const notifications = createClient(NotificationService, t.ctx.peers("notification"));
    await notifications.registerPushToken({ token: `fcm-lost-${userId}`, platform: "android" }, as(rows[0].session_id));
    await notifications.registerPushToken({ token: `fcm-kept-${userId}`, platform: "ios" }, as());
    const tokens = async () => (await t.db.pool.query<{ token: string }>("SELECT token FROM notification.push_tokens WHERE user_id = $1 ORDER BY token", [userId])).rows.map((r) => r.token);
    assert.deepEqual(await tokens(), [`fcm-kept-${userId}`, `fcm-lost-${userId}`]);
    // Signed out everywhere from another phone: before, the lost one still showed every tip and payout.
    await createClient(AuthService, t.ctx.peers("auth")).revokeAllSessions({}, as());
    await eventually("the lost phone's token forgotten", async () => (await tokens()).length === 1);
    assert.deepEqual(await tokens(), [`fcm-kept-${userId}`]);
  });

  test("a held tip texts each admin and finance user once, in their language, and nobody else", async () => {
    const admin = await signUp(Locale.EN, ["admin"]);
    const finance = await signUp(Locale.SW, ["finance", "worker"]);
    const support = await signUp(Locale.EN, ["support"]);
    const worker = await signUp(Locale.EN, ["worker"], "Amina Wanjiru");
    const blockedAdmin = await signUp(Locale.EN, ["admin"]);
    await t.db.pool.query("UPDATE auth.users SET blocked_at = now() WHERE user_id = $1", [blockedAdmin.userId]);

    const alert = (tipId: string, reasonCode: string, eventId = randomUUID(), busId = eventId) => {
      const e = create(FraudAlertSchema, {
        meta: { id: eventId, producer: "payment" },
        alertId: randomUUID(),
        reasonCode,
        tipId,
        workerId: worker.userId,
        action: "held",
        tipAmount: { amountMinor: 1_500_000n, currency: "KES" },
      });
      return t.ctx.bus.publish({ id: busId, subject: "ttip.payment.fraud_alert", data: toBinary(FraudAlertSchema, e) });
    };
    const staffAlerts = (phone: string) => sim.sent.filter((m) => m.to === phone && /^(A tip of|Bakshishi ya)/.test(m.body));

    const tipId = randomUUID();
    const eventId = randomUUID();
    await alert(tipId, "AMOUNT_OUTLIER", eventId);
    const [toAdmin] = await eventually("the admin's alert", () => staffAlerts(admin.phone).length === 1 && staffAlerts(admin.phone));
    assert.equal(toAdmin.body, "A tip of KES 15,000 to Amina Wanjiru was held for review: amount outlier. Open the console: https://tips.example.co.ke/admin");
    const [toFinance] = await eventually("the finance user's alert", () => staffAlerts(finance.phone).length === 1 && staffAlerts(finance.phone));
    assert.equal(toFinance.body, "Bakshishi ya KES 15,000 kwa Amina Wanjiru imezuiliwa ikaguliwe: amount outlier. Fungua konsoli: https://tips.example.co.ke/admin");

    // The same event redelivered under a new bus id, and a second rule holding the same tip.
    await alert(tipId, "AMOUNT_OUTLIER", eventId, randomUUID());
    await alert(tipId, "CALLBACK_MISMATCH");
    // A later hold on the same consumer: once it is out, the ones before it were handled.
    const laterTip = randomUUID();
    await alert(laterTip, "VELOCITY_WORKER");
    await eventually("the later alert", () => staffAlerts(admin.phone).length === 2 && staffAlerts(finance.phone).length === 2);
    const rows = await t.db.pool.query("SELECT user_id FROM notification.deliveries WHERE source_key = $1 AND channel = $2 ORDER BY user_id", [`tip-held:${tipId}`, Channel.SMS]);
    assert.deepEqual(rows.rows.map((r) => r.user_id), [admin.userId, finance.userId].sort(), "one SMS per reviewer for the tip, whatever was redelivered");
    assert.equal(staffAlerts(admin.phone).filter((m) => m.body.includes("amount outlier")).length, 1);
    assert.equal(staffAlerts(support.phone).length, 0, "support cannot act on a hold, so is not alerted");
    assert.equal(staffAlerts(worker.phone).length, 0, "the worker gets their own notice, not the staff alert");
    assert.equal(staffAlerts(blockedAdmin.phone).length, 0, "a blocked admin is not alerted");
    const logged = await t.db.pool.query("SELECT address_masked FROM notification.deliveries WHERE source_key = $1 AND user_id = $2 AND channel = $3", [`tip-held:${tipId}`, admin.userId, Channel.SMS]);
    assert.equal(logged.rows[0].address_masked, `${admin.phone.slice(1, 5)}******${admin.phone.slice(-2)}`);
  });

  test("a fraud alert that cannot be read holds back no hold in its batch: the others' staff are alerted", async () => {
    // The in-process bus hands both messages over in one batch, and again as they were after a failure.
    const s = await startTestService(
      createNotificationModule({ config: { providers: sim.config(), retry: { ...DEFAULT_RETRY, baseDelayMs: 30 }, publicUrl: () => "" } }),
      { bus: "in-process", with: [createAuth({ env: { AUTH_OTP_SENDER: "notification", AUTH_OTP_PER_IP_PER_HOUR: "1000" } })] },
    );
    try {
      const admin = await signUp(Locale.EN, ["admin"], "", s);
      const eventId = randomUUID();
      const held = create(FraudAlertSchema, { meta: { id: eventId, producer: "payment" }, alertId: randomUUID(), reasonCode: "AMOUNT_OUTLIER", tipId: randomUUID(), action: "held" });
      await Promise.all([
        s.ctx.bus.publish({ id: randomUUID(), subject: "ttip.payment.fraud_alert", data: new Uint8Array([0xff, 0xff, 0xff]) }),
        s.ctx.bus.publish({ id: eventId, subject: "ttip.payment.fraud_alert", data: toBinary(FraudAlertSchema, held) }),
      ]);
      const alert = await eventually("the admin's alert", () => sim.sent.find((m) => m.to === admin.phone && m.body.startsWith("A tip of")));
      assert.match(alert.body, /held for review: amount outlier/);
    } finally {
      await s.close();
    }
  });
});
