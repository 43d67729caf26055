// auth's handler rules in the fast tier: the module's handlers called through a
// router transport (no sockets, no gateway), with the server's own interceptors,
// on a real database; OTPs go out to the SMS simulator over its real HTTP shape.
// Tokens, the gateway's checks and the audit trail stay in the other auth tests.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { Role as UserRole } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService, AuthInternalService, AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { violationsOf, type Role } from "@ttip/runtime";
import { conflictingKeyOf, reasonOf, refusal, startInProcessService, type InProcessService, testPhone } from "@ttip/runtime/testing";
import { createAuth } from "../src/index.js";
import { startSmsSimulator, type SmsSimulator } from "../src/testing.js";

const admin = { subject: randomUUID(), roles: ["admin"] as Role[], stepUp: true };
const subjectOf = (token: string): string => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub;
const fieldsOf = (err: Parameters<typeof violationsOf>[0]) => violationsOf(err).map((v) => v.field);

describe("auth rules, in process", () => {
  let s: InProcessService;
  let sim: SmsSimulator;
  const auth = (as?: { subject: string; roles: Role[] }) => s.client(AuthService, as);

  before(async () => {
    sim = await startSmsSimulator({ apiKey: "test-sms-key" });
    s = await startInProcessService(createAuth({ env: { AUTH_SMS_URL: sim.url, AUTH_SMS_API_KEY: "test-sms-key", AUTH_OTP_RESEND_SECONDS: "60", AUTH_OTP_PER_IP_PER_HOUR: "1000" } }));
  });
  after(async () => {
    await s?.close();
    await sim?.close();
  });

  const otpFor = (phone: string) => /\b(\d{6})\b/.exec(sim.lastTo(phone)!.message)![1];
  async function signUp(phone = testPhone()) {
    const { challengeId } = await auth().startPhoneVerification({ phone });
    const { tokens } = await auth().verifyPhoneOtp({ challengeId, otp: otpFor(phone), role: UserRole.WORKER });
    return { phone, userId: subjectOf(tokens!.accessToken) };
  }

  test("bad input is refused as INVALID_ARGUMENT naming the field: a malformed phone, a weak PIN, a wrong code (which counts a try)", async () => {
    const phone = await refusal(auth().startPhoneVerification({ phone: "07-12" }));
    assert.equal(phone.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(phone), ["phone"]);

    const { userId } = await signUp();
    const weak = await refusal(auth({ subject: userId, roles: ["worker"] }).setPin({ pin: "1234" }));
    assert.equal(weak.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(weak), ["pin"]);

    const number = testPhone();
    const { challengeId } = await auth().startPhoneVerification({ phone: number });
    const wrong = String((Number(otpFor(number)) + 1) % 1_000_000).padStart(6, "0");
    const refused = await refusal(auth().verifyPhoneOtp({ challengeId, otp: wrong, role: UserRole.WORKER }));
    assert.equal(refused.code, Code.InvalidArgument);
    assert.deepEqual(violationsOf(refused).map((v) => [v.field, v.message]), [["otp", "wrong code; 4 tries left"]]);
    const badShape = await refusal(auth().verifyPhoneOtp({ challengeId, otp: "12ab56" }));
    assert.deepEqual(fieldsOf(badShape), ["otp"]);
    const { tokens } = await auth().verifyPhoneOtp({ challengeId, otp: otpFor(number), role: UserRole.WORKER });
    assert.ok(tokens?.accessToken, "the right code still works after a wrong one");
  });

  test("access by role: signed out and non-admins are refused before the handler; support may not issue partner keys", async () => {
    assert.equal((await refusal(auth().getMe({}))).code, Code.Unauthenticated);
    const worker = { subject: randomUUID(), roles: ["worker"] as Role[] };
    assert.equal((await refusal(s.client(AuthAdminService, worker).searchUsers({ query: "" }))).code, Code.PermissionDenied);
    const support = { subject: randomUUID(), roles: ["support"] as Role[] };
    const notAdmin = await refusal(s.client(AuthAdminService, support).setUserRoles({ userId: randomUUID(), roles: [UserRole.ADMIN] }));
    assert.equal(notAdmin.code, Code.PermissionDenied);
    const request = { partnerName: "Savanna POS", scopes: ["tips:create"], idempotencyKey: `issue-${randomUUID()}` };
    const supportKey = await refusal(s.client(AuthAdminService, support).issuePartnerApiKey(request));
    assert.equal(supportKey.code, Code.PermissionDenied);
    assert.equal((await s.client(AuthAdminService, admin).listPartnerApiKeys({})).keys.length, 0, "nothing was issued");
  });

  test("a partner key's idempotency key: the same request gets the same key and secret; another is ALREADY_EXISTS naming the key; one key exists", async () => {
    const adminClient = s.client(AuthAdminService, admin);
    const idempotencyKey = `issue-${randomUUID()}`;
    const issued = await adminClient.issuePartnerApiKey({ partnerName: "Duka Pay", scopes: ["tips:create", "statements:read"], idempotencyKey });
    const again = await adminClient.issuePartnerApiKey({ partnerName: "Duka Pay", scopes: ["statements:read", "tips:create"], idempotencyKey });
    assert.equal(again.key!.keyId, issued.key!.keyId, "scopes in another order are the same request");
    assert.equal(again.secret, issued.secret);
    const conflict = await refusal(adminClient.issuePartnerApiKey({ partnerName: "Other", scopes: ["tips:create"], idempotencyKey }));
    assert.equal(conflict.code, Code.AlreadyExists);
    assert.equal(conflictingKeyOf(conflict), idempotencyKey);
    const keys = (await adminClient.listPartnerApiKeys({})).keys.filter((k) => k.partnerName === "Duka Pay" || k.partnerName === "Other");
    assert.deepEqual(keys.map((k) => k.keyId), [issued.key!.keyId]);
  });

  test("domain refusals: a second code within the cool-down (with retry-after), a used code, an unknown user", async () => {
    const { phone } = await signUp();
    const tooSoon = await refusal(auth().startPhoneVerification({ phone }));
    assert.equal(tooSoon.code, Code.ResourceExhausted);
    assert.equal(reasonOf(tooSoon), "RATE_LIMITED");
    assert.ok(Number(tooSoon.metadata.get("retry-after")) > 0, "says when to ask again");

    const number = testPhone();
    const { challengeId } = await auth().startPhoneVerification({ phone: number });
    await auth().verifyPhoneOtp({ challengeId, otp: otpFor(number), role: UserRole.WORKER });
    const reused = await refusal(auth().verifyPhoneOtp({ challengeId, otp: otpFor(number), role: UserRole.WORKER }));
    assert.equal(reused.code, Code.FailedPrecondition);
    assert.equal(reasonOf(reused), "INVALID_STATE");

    const unknown = await refusal(s.client(AuthInternalService).getUserById({ userId: randomUUID() }));
    assert.equal(unknown.code, Code.NotFound);
  });
});
