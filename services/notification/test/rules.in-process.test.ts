// notification's handler rules in the fast tier: notification, and the auth
// service it asks for phone numbers, in this process behind the servers' own
// interceptors, reached through router transports on one real database; SMS go
// to the provider simulator over its real HTTP shape. Delivery reports, retries,
// quiet hours and events stay in notification.test.ts.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { Channel, DeliveryStatus, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationAdminService, NotificationInternalService, NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { violationsOf, type Role } from "@ttip/runtime";
import { conflictingKeyOf, eventually, refusal, startInProcessService, type InProcessService, testPhone } from "@ttip/runtime/testing";
import { createAuth } from "@ttip/auth";
import { createNotificationModule, DEFAULT_RETRY } from "../src/index.js";
import { ProviderSimulator } from "../src/testing.js";

const fieldsOf = (err: Parameters<typeof violationsOf>[0]) => violationsOf(err).map((v) => v.field);
const admin = { subject: randomUUID(), roles: ["admin"] as Role[] };

describe("notification rules, in process (with auth)", () => {
  const sim = new ProviderSimulator();
  let s: InProcessService;
  const internal = () => s.client(NotificationInternalService);
  const smsTo = (phone: string) => sim.sent.filter((m) => m.to === phone);

  before(async () => {
    await sim.start();
    const config = {
      providers: sim.config("africastalking", "at-callback-secret"),
      retry: { ...DEFAULT_RETRY, attemptsPerProvider: 2, baseDelayMs: 30, maxDelayMs: 100, sendLeaseMs: 15_000, httpTimeoutMs: 3_000 },
      // Delivery reports are not called back here.
      publicUrl: () => "http://127.0.0.1:9",
    };
    s = await startInProcessService(createNotificationModule({ config, sweepIntervalMs: 100 }), { with: [createAuth({ env: {} })] });
  });
  after(async () => {
    await s?.close();
    await sim.close();
  });

  test("bad input is refused as INVALID_ARGUMENT naming the field, and changes nothing", async () => {
    const workerId = randomUUID();
    const me = s.client(NotificationService, { subject: workerId, roles: ["worker"] });
    const before = await me.getPreferences({});
    const quiet = await refusal(me.updatePreferences({ preferences: { quietHoursStart: "25:00", quietHoursEnd: "06:00" } }));
    assert.equal(quiet.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(quiet), ["preferences.quiet_hours_start"]);
    const otpByEmail = await refusal(me.updatePreferences({ preferences: { kinds: [{ key: TemplateKey.OTP, channels: [Channel.EMAIL] }] } }));
    assert.ok(fieldsOf(otpByEmail).length === 1 && fieldsOf(otpByEmail)[0].includes("kinds[0]"), `violations: ${fieldsOf(otpByEmail)}`);
    assert.deepEqual(await me.getPreferences({}), before, "the refused updates changed nothing");

    const phone = testPhone({ format: "+254" });
    const missing = await refusal(internal().sendNotification({ idempotencyKey: `otp-${randomUUID()}`, recipient: { case: "phone", value: phone }, templateKey: TemplateKey.OTP, variables: { minutes: "5" } }));
    assert.deepEqual(violationsOf(missing).map((v) => [v.field, v.message]), [["variables", "missing code"]]);
    const otpMail = await refusal(internal().sendNotification({ idempotencyKey: `otp-${randomUUID()}`, recipient: { case: "email", value: "a@example.com" }, templateKey: TemplateKey.OTP, variables: { code: "123456" } }));
    assert.deepEqual(fieldsOf(otpMail), ["email"]);
    const { deliveries } = await s.client(NotificationAdminService, admin).listDeliveries({});
    assert.equal(deliveries.length, 0, "no delivery was written");
  });

  test("a template version without the variable its message exists for (an OTP's {{code}}, an invitation's {{link}}) is refused naming body; nothing is saved", async () => {
    const templates = s.client(NotificationAdminService, admin);
    const versions = async () => (await s.ctx.pool.query<{ n: string }>("SELECT count(*) AS n FROM notification.templates")).rows[0].n;
    const before = await versions();
    // Before, saved: activated, every sign-in SMS would have come without its code.
    const otp = await refusal(templates.createTemplateVersion({ key: TemplateKey.OTP, channel: Channel.SMS, locale: "en", subject: "", body: "Welcome back to TTIP. It expires in {{minutes}} minutes." }));
    assert.equal(otp.code, Code.InvalidArgument);
    assert.deepEqual(violationsOf(otp).map((v) => [v.field, v.message]), [["body", "OTP must use {{code}}: without it the message is of no use to whoever gets it"]]);
    const invite = await refusal(templates.createTemplateVersion({ key: TemplateKey.STAFF_INVITE, channel: Channel.SMS, locale: "sw", subject: "", body: "{{venue}} imekualika." }));
    assert.deepEqual(fieldsOf(invite), ["body"]);
    assert.match(invite.rawMessage, /STAFF_INVITE must use \{\{link\}\}/);
    // A placeholder mistyped went out as written ("Ulipokea {{Amount}}"): refused, naming what is wrong.
    for (const body of ["Code {{code}}; tip of {{Amount}}", "Code {{code}} for {amount}", "Code {{code}} for {{amount}"]) {
      const mistyped = await refusal(templates.createTemplateVersion({ key: TemplateKey.OTP, channel: Channel.SMS, locale: "en", subject: "", body }));
      assert.deepEqual(fieldsOf(mistyped), ["body"], body);
      assert.match(mistyped.rawMessage, /not a placeholder; write one as \{\{name\}\}/, body);
    }
    // An SMS is sent without its subject: the code there never reaches the phone.
    const inSubject = await refusal(templates.createTemplateVersion({ key: TemplateKey.OTP, channel: Channel.SMS, locale: "en", subject: "{{code}}", body: "Your TTIP code is ready." }));
    assert.deepEqual(violationsOf(inSubject).map((v) => [v.field, v.message]), [["body", "OTP must use {{code}}: without it the message is of no use to whoever gets it"]]);
    assert.equal(await versions(), before, "nothing saved");
    // With it (in the subject counts too, for e-mail), saved.
    await templates.createTemplateVersion({ key: TemplateKey.OTP, channel: Channel.EMAIL, locale: "en", subject: "Code {{code}}", body: "Use the code above." });
  });

  test("an SMS template over 3 SMS parts (a 3,000-character one) is refused naming body, the parts it takes said; the same text by e-mail is saved", async () => {
    const templates = s.client(NotificationAdminService, admin);
    const versions = async () => (await s.ctx.pool.query<{ n: string }>("SELECT count(*) AS n FROM notification.templates")).rows[0].n;
    const before = await versions();
    const long = `Your code is {{code}}. ${"Keep it to yourself. ".repeat(150)}`.slice(0, 3_000);
    // Before, saved: once active, each sign-in code went as 20 billed SMS parts.
    const refused = await refusal(templates.createTemplateVersion({ key: TemplateKey.OTP, channel: Channel.SMS, locale: "en", subject: "", body: long }));
    assert.equal(refused.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(refused), ["body"]);
    assert.match(refused.rawMessage, /at most 3 SMS parts \(459 plain characters\); this one takes 20 \(3004 GSM-7 units\)/); // a brace counts 2 (GSM-7 extension table)
    assert.equal(await versions(), before, "nothing saved");
    // Three parts exactly (459 units: the four braces count two) is kept; e-mail has no parts.
    await templates.createTemplateVersion({ key: TemplateKey.OTP, channel: Channel.SMS, locale: "en", subject: "", body: long.slice(0, 455) });
    await templates.createTemplateVersion({ key: TemplateKey.OTP, channel: Channel.EMAIL, locale: "en", subject: "Code {{code}}", body: long });
  });

  test("access by role: signed out and a worker at the admin service are refused before the handler", async () => {
    assert.equal((await refusal(s.client(NotificationService).getPreferences({}))).code, Code.Unauthenticated);
    const worker = { subject: randomUUID(), roles: ["worker"] as Role[] };
    assert.equal((await refusal(s.client(NotificationAdminService, worker).listTemplates({}))).code, Code.PermissionDenied);
    assert.equal((await refusal(s.client(NotificationAdminService, worker).getDelivery({ deliveryId: randomUUID() }))).code, Code.PermissionDenied);
  });

  test("a send's key: the same request is the same delivery, one SMS; another under the key is ALREADY_EXISTS naming the key", async () => {
    const phone = testPhone({ format: "+254" });
    const req = { idempotencyKey: `otp-${randomUUID()}`, recipient: { case: "phone" as const, value: phone }, templateKey: TemplateKey.OTP, variables: { code: "739201", minutes: "5" } };
    const first = await internal().sendNotification(req);
    assert.deepEqual((await internal().sendNotification(req)).deliveryIds, first.deliveryIds);
    const conflict = await refusal(internal().sendNotification({ ...req, variables: { code: "111111", minutes: "5" } }));
    assert.equal(conflict.code, Code.AlreadyExists);
    assert.equal(conflictingKeyOf(conflict), req.idempotencyKey);
    await eventually("the OTP SMS", () => smsTo(phone).length > 0);
    assert.deepEqual(smsTo(phone).map((m) => m.body.includes("739201")), [true], "one SMS, with the first request's code");
  });

  test("domain refusals: an unknown template version, an unknown delivery; a user auth does not know gets no SMS (auth answered, in process)", async () => {
    const console = s.client(NotificationAdminService, admin);
    const version = await refusal(console.activateTemplateVersion({ key: TemplateKey.WEEKLY_SUMMARY, locale: "sw", channel: Channel.SMS, version: 9 }));
    assert.equal(version.code, Code.NotFound);
    assert.equal((await refusal(console.getDelivery({ deliveryId: randomUUID() }))).code, Code.NotFound);

    const { deliveryIds } = await internal().sendNotification({ idempotencyKey: `tip-${randomUUID()}`, recipient: { case: "userId", value: randomUUID() }, templateKey: TemplateKey.TIP_RECEIVED, channels: [Channel.SMS], variables: { amount: "KES 150", net: "KES 142", from: "2547******78", message: "" } });
    // Auth's NOT_FOUND is final (an unreachable auth would be retried): the delivery fails at once.
    const failed = await eventually("the delivery settled", async () => {
      const d = (await console.getDelivery({ deliveryId: deliveryIds[0] })).delivery!;
      return d.status !== DeliveryStatus.QUEUED && d;
    }, 5_000);
    assert.equal(failed.status, DeliveryStatus.FAILED);
  });
});
