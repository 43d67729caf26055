import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DeviceRegisteredSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { signPartnerRequest } from "../src/index.js";
import { MAX_DEVICE_KEYS } from "../src/devices.js";
import { startHarness, type Harness } from "./harness.js";
import { testPhone } from "@ttip/runtime/testing";

const code = (e: unknown) => (e instanceof ConnectError ? e.code : e);
const fails = (p: Promise<unknown>) => p.then(() => "ok" as const, (e) => code(e));

/** A phone's device key pair (ES256), as the app would keep it behind the biometric prompt. */
function deviceKey() {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    publicJwk: JSON.stringify(publicKey.export({ format: "jwk" })),
    privateJwk: JSON.stringify(privateKey.export({ format: "jwk" })),
    sign: (data: Uint8Array) => sign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" }),
  };
}

describe("auth: devices and biometric unlock, partner API keys", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.close());

  test("a device registers its key after a PIN login and proves possession for a one-time payout step-up", async () => {
    const phone = testPhone();
    const signup = await h.signUp(phone);
    const key = deviceKey();
    // An OTP-only session (no PIN yet) may not add a key.
    assert.equal(await fails(h.api(signup.tokens.accessToken).registerDevice({ name: "Pixel", publicKeyJwk: key.publicJwk, pin: "4826" })), Code.FailedPrecondition);
    await h.api(signup.tokens.accessToken).setPin({ pin: "4826" });
    const tokens = await h.loginWithPin(phone, "4826");
    const me = h.api(tokens.accessToken);
    assert.equal(await fails(me.registerDevice({ name: "Pixel", publicKeyJwk: key.privateJwk, pin: "4826" })), Code.InvalidArgument, "private keys refused");
    const rsa = JSON.stringify(generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ format: "jwk" }));
    assert.equal(await fails(me.registerDevice({ name: "Pixel", publicKeyJwk: rsa, pin: "4826" })), Code.InvalidArgument, "only ES256");
    const { device } = await me.registerDevice({ name: "Pixel", publicKeyJwk: key.publicJwk, pin: "4826" });
    assert.equal((await me.listDevices({})).devices.map((d) => d.deviceId).join(), device!.deviceId);
    // The user is told (notification sends the SMS): one event, for the key added, none for the refused ones.
    const added = await h.t.db.pool.query<{ payload: Buffer }>("SELECT payload FROM auth.outbox WHERE subject = 'ttip.auth.device_registered'");
    const told = added.rows.map((r) => fromBinary(DeviceRegisteredSchema, r.payload)).filter((e) => e.userId === signup.userId);
    assert.deepEqual(told.map((e) => [e.deviceId, e.name]), [[device!.deviceId, "Pixel"]]);

    // Biometric unlock: sign the server's challenge with the device key.
    const ch = await me.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    assert.equal(ch.challenge.length, 32);
    const proof = await me.verifyDeviceChallenge({ challengeId: ch.challengeId, signature: key.sign(ch.challenge) });
    assert.ok(proof.stepUpToken.length > 16);
    // A challenge is good once.
    assert.equal(await fails(me.verifyDeviceChallenge({ challengeId: ch.challengeId, signature: key.sign(ch.challenge) })), Code.FailedPrecondition);

    // Payment checks the second factor, once, for the right user and purpose.
    assert.equal(await fails(h.internal.verifyStepUpToken({ stepUpToken: proof.stepUpToken, userId: signup.userId, purpose: "unlock" })), Code.PermissionDenied);
    const checked = await h.internal.verifyStepUpToken({ stepUpToken: proof.stepUpToken, userId: signup.userId, purpose: "payout" });
    assert.equal(checked.deviceId, device!.deviceId);
    assert.equal(await fails(h.internal.verifyStepUpToken({ stepUpToken: proof.stepUpToken, userId: signup.userId, purpose: "payout" })), Code.PermissionDenied, "spent");

    // Another key's signature is refused (and spends the challenge).
    const ch2 = await me.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "unlock" });
    assert.equal(await fails(me.verifyDeviceChallenge({ challengeId: ch2.challengeId, signature: deviceKey().sign(ch2.challenge) })), Code.PermissionDenied);
    // Someone else cannot use my device or my challenge.
    const other = await h.signUp(testPhone());
    assert.equal(await fails(h.api(other.tokens.accessToken).createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" })), Code.NotFound);
    const ch3 = await me.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    assert.equal(await fails(h.api(other.tokens.accessToken).verifyDeviceChallenge({ challengeId: ch3.challengeId, signature: key.sign(ch3.challenge) })), Code.NotFound);
    // An expired challenge is refused.
    await h.t.db.pool.query("UPDATE auth.device_challenges SET expires_at = now() - interval '1 second' WHERE challenge_id = $1", [ch3.challengeId]);
    assert.equal(await fails(me.verifyDeviceChallenge({ challengeId: ch3.challengeId, signature: key.sign(ch3.challenge) })), Code.FailedPrecondition);
    // Its 2 minutes are the service's (before, the database's clock decided, and this one was still open).
    const late = await me.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    h.clock.advance(2 * 60_000 + 1_000);
    assert.equal(await fails(me.verifyDeviceChallenge({ challengeId: late.challengeId, signature: key.sign(late.challenge) })), Code.FailedPrecondition);

    // A PIN login may name the device; removing it ends its proofs.
    const ch4 = await me.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    const proof4 = await me.verifyDeviceChallenge({ challengeId: ch4.challengeId, signature: key.sign(ch4.challenge) });
    const onDevice = await h.loginWithPin(phone, "4826", device!.deviceId);
    const sessions = await h.api(onDevice.accessToken).listSessions({});
    assert.ok(sessions.sessions.some((s) => s.current && s.deviceId === device!.deviceId));
    await me.removeDevice({ deviceId: device!.deviceId });
    assert.equal((await me.listDevices({})).devices.length, 0);
    assert.equal(await fails(h.internal.verifyStepUpToken({ stepUpToken: proof4.stepUpToken, userId: signup.userId, purpose: "payout" })), Code.PermissionDenied);
    const actions = (await h.t.db.pool.query("SELECT action FROM auth.audit_events WHERE user_id = $1", [signup.userId])).rows.map((r) => r.action);
    assert.ok(actions.includes(AuditAction.DEVICE_REGISTERED) && actions.includes(AuditAction.DEVICE_REMOVED));
  });

  test("adding a device key takes the PIN itself: a session holding only a refresh token adds none, and wrong PINs count towards the lockout", async () => {
    const phone = testPhone();
    const signup = await h.signUp(phone);
    await h.api(signup.tokens.accessToken).setPin({ pin: "4826" });
    const session = await h.loginWithPin(phone, "4826");
    // Whoever took the refresh token gets a session that proved the PIN once, but does not know it.
    const stolen = await h.api().refreshSession({ refreshToken: session.refreshToken });
    const thief = h.api(stolen.tokens!.accessToken);
    const noPin = await thief.registerDevice({ name: "Thief", publicKeyJwk: deviceKey().publicJwk }).catch((e: ConnectError) => e);
    assert.ok(noPin instanceof ConnectError && noPin.code === Code.InvalidArgument && /pin/.test(noPin.rawMessage), String(noPin));
    assert.equal(await fails(thief.registerDevice({ name: "Thief", publicKeyJwk: deviceKey().publicJwk, pin: "1111" })), Code.PermissionDenied);
    const failures = await h.t.db.pool.query("SELECT pin_failures FROM auth.users WHERE user_id = $1", [signup.userId]);
    assert.equal(failures.rows[0].pin_failures, 1, "a wrong PIN here is a try like any other");
    assert.equal((await thief.listDevices({})).devices.length, 0);
    const { device } = await thief.registerDevice({ name: "Phone", publicKeyJwk: deviceKey().publicJwk, pin: "4826" });
    assert.deepEqual((await thief.listDevices({})).devices.map((d) => d.deviceId), [device!.deviceId]);
  });

  test("removing a device ends the sessions that may be on that phone: the one that registered its key, those tied to it and those tied to no device (a stolen phone adds no key of its own); the remover's session and those proved on another phone stay", async () => {
    const phone = testPhone();
    const signup = await h.signUp(phone);
    await h.api(signup.tokens.accessToken).setPin({ pin: "4826" });
    const stolen = await h.loginWithPin(phone, "4826");
    const { device } = await h.api(stolen.accessToken).registerDevice({ name: "Old phone", publicKeyJwk: deviceKey().publicJwk, pin: "4826" });
    const namedIt = await h.loginWithPin(phone, "4826", device!.deviceId);
    // The sign-up's session is tied to no device: it may be the lost phone's (signed in there again, after a PIN
    // reset or an expired session, without naming its key).
    const untied = { accessToken: signup.tokens.accessToken, refreshToken: signup.tokens.refreshToken };
    // Another phone, whose session signed in naming no key, then registered its own and proved with it: the proof ties it.
    const other = await h.loginWithPin(phone, "4826");
    const otherKey = deviceKey();
    const { device: otherDevice } = await h.api(other.accessToken).registerDevice({ name: "Other phone", publicKeyJwk: otherKey.publicJwk, pin: "4826" });
    const ch = await h.api(other.accessToken).createDeviceChallenge({ deviceId: otherDevice!.deviceId, purpose: "payout" });
    await h.api(other.accessToken).verifyDeviceChallenge({ challengeId: ch.challengeId, signature: otherKey.sign(ch.challenge) });
    const newPhone = await h.loginWithPin(phone, "4826");
    await h.api(newPhone.accessToken).removeDevice({ deviceId: device!.deviceId });
    for (const [name, s] of Object.entries({ stolen, namedIt, untied })) {
      assert.equal(await fails(h.api(s.accessToken).registerDevice({ name: "Thief", publicKeyJwk: deviceKey().publicJwk, pin: "4826" })), Code.Unauthenticated, name);
      assert.equal(await fails(h.api().refreshSession({ refreshToken: s.refreshToken })), Code.Unauthenticated, name);
    }
    assert.equal((await h.api(newPhone.accessToken).listDevices({})).devices.length, 1, "the other phone's key");
    const left = (await h.api(newPhone.accessToken).listSessions({})).sessions;
    assert.equal(left.length, 2, "the remover's and the other phone's");
    assert.ok(left.some((s) => s.deviceId === otherDevice!.deviceId), "the proof tied its session to the other phone");
    await h.api().refreshSession({ refreshToken: other.refreshToken });
  });

  test("a session that added two keys (a phone's own, then a thief's) ends with either's removal", async () => {
    const phone = testPhone();
    const signup = await h.signUp(phone);
    await h.api(signup.tokens.accessToken).setPin({ pin: "4826" });
    const newPhone = await h.loginWithPin(phone, "4826");
    const twice = await h.loginWithPin(phone, "4826");
    await h.api(twice.accessToken).registerDevice({ name: "Phone", publicKeyJwk: deviceKey().publicJwk, pin: "4826" });
    const { device: second } = await h.api(twice.accessToken).registerDevice({ name: "Thief", publicKeyJwk: deviceKey().publicJwk, pin: "4826" });
    await h.api(newPhone.accessToken).removeDevice({ deviceId: second!.deviceId });
    assert.equal(await fails(h.api().refreshSession({ refreshToken: twice.refreshToken })), Code.Unauthenticated);
  });

  test("a session signed in naming the phone's key ends with that phone's removal, though it proved since with a key it added", async () => {
    const phone = testPhone();
    const signup = await h.signUp(phone);
    await h.api(signup.tokens.accessToken).setPin({ pin: "4826" });
    const owner = await h.loginWithPin(phone, "4826");
    const { device: phoneKey } = await h.api(owner.accessToken).registerDevice({ name: "Phone", publicKeyJwk: deviceKey().publicJwk, pin: "4826" });
    // A thief with the phone and its PIN signs in naming its key, adds a key of their own and proves with it.
    const thief = await h.loginWithPin(phone, "4826", phoneKey!.deviceId);
    const theirs = deviceKey();
    const { device: thiefKey } = await h.api(thief.accessToken).registerDevice({ name: "Thief", publicKeyJwk: theirs.publicJwk, pin: "4826" });
    const ch = await h.api(thief.accessToken).createDeviceChallenge({ deviceId: thiefKey!.deviceId, purpose: "payout" });
    await h.api(thief.accessToken).verifyDeviceChallenge({ challengeId: ch.challengeId, signature: theirs.sign(ch.challenge) });
    // Before, the proof moved the session to the thief's key, and removing the phone's left it signed in.
    await h.api(owner.accessToken).removeDevice({ deviceId: phoneKey!.deviceId });
    assert.equal(await fails(h.api().refreshSession({ refreshToken: thief.refreshToken })), Code.Unauthenticated);
  });

  test("an account keeps at most MAX_DEVICE_KEYS keys: the next retires the one used longest ago, whose step-ups end; a key used lately stays", async () => {
    const phone = testPhone();
    const signup = await h.signUp(phone);
    await h.api(signup.tokens.accessToken).setPin({ pin: "4826" });
    const me = h.api((await h.loginWithPin(phone, "4826")).accessToken);
    const add = async (name: string) => {
      const key = deviceKey();
      return { key, id: (await me.registerDevice({ name, publicKeyJwk: key.publicJwk, pin: "4826" })).device!.deviceId };
    };
    const first = await add("first");
    const second = await add("second");
    for (let i = 3; i <= MAX_DEVICE_KEYS; i++) await add(`key ${i}`);
    // The first is used now: the second becomes the one used longest ago. Its challenge made before it is retired dies with it.
    const used = await me.createDeviceChallenge({ deviceId: first.id, purpose: "payout" });
    await me.verifyDeviceChallenge({ challengeId: used.challengeId, signature: first.key.sign(used.challenge) });
    const pending = await me.createDeviceChallenge({ deviceId: second.id, purpose: "payout" });
    const onSecond = await h.loginWithPin(phone, "4826", second.id); // a session signed in naming the second key
    const onKey = async (id: string) => (await me.listSessions({})).sessions.filter((s) => s.deviceId === id).length;
    assert.equal(await onKey(second.id), 1); // the session list is cached now
    const newest = await add("newest");
    // Before, the cached list kept showing the session on the retired key.
    assert.equal(await onKey(second.id), 0);
    const kept = (await me.listDevices({})).devices.map((d) => d.deviceId);
    assert.equal(kept.length, MAX_DEVICE_KEYS);
    assert.ok(kept.includes(first.id) && kept.includes(newest.id) && !kept.includes(second.id));
    assert.equal(await fails(me.createDeviceChallenge({ deviceId: second.id, purpose: "payout" })), Code.NotFound);
    assert.equal(await fails(me.verifyDeviceChallenge({ challengeId: pending.challengeId, signature: second.key.sign(pending.challenge) })), Code.FailedPrecondition);
    const { rows } = await h.t.db.pool.query("SELECT detail FROM auth.audit_events WHERE user_id = $1 AND action = $2", [signup.userId, AuditAction.DEVICE_REMOVED]);
    assert.deepEqual(rows.map((r) => r.detail), [`device ${second.id} retired: over ${MAX_DEVICE_KEYS} keys, the one used longest ago`]);
    // Its session stays, tied to no device: removing a phone ends it, as one that may be on a lost phone.
    await me.removeDevice({ deviceId: newest.id });
    assert.equal(await fails(h.api().refreshSession({ refreshToken: onSecond.refreshToken })), Code.Unauthenticated);
  });

  test("a step-up token made before its user was blocked approves nothing after", async () => {
    const phone = testPhone();
    const signup = await h.signUp(phone);
    await h.api(signup.tokens.accessToken).setPin({ pin: "4826" });
    const me = h.api((await h.loginWithPin(phone, "4826")).accessToken);
    const key = deviceKey();
    const { device } = await me.registerDevice({ name: "Pixel", publicKeyJwk: key.publicJwk, pin: "4826" });
    const ch = await me.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    const { stepUpToken } = await me.verifyDeviceChallenge({ challengeId: ch.challengeId, signature: key.sign(ch.challenge) });
    await h.t.db.pool.query("UPDATE auth.users SET blocked_at = now(), blocked_reason = 'reported fraud' WHERE user_id = $1", [signup.userId]);
    const refused = await h.internal.verifyStepUpToken({ stepUpToken, userId: signup.userId, purpose: "payout", spendKey: "payout-key-1" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(refused?.code, Code.PermissionDenied);
    assert.equal(refused?.rawMessage, "this account is blocked: contact support");
  });

  test("a payout's step-up token is spent on the payout's key: that payout's retry verifies again until the token expires, any other use is refused", async () => {
    const phone = testPhone();
    const signup = await h.signUp(phone);
    await h.api(signup.tokens.accessToken).setPin({ pin: "4826" });
    const me = h.api((await h.loginWithPin(phone, "4826")).accessToken);
    const key = deviceKey();
    const { device } = await me.registerDevice({ name: "Pixel", publicKeyJwk: key.publicJwk, pin: "4826" });
    const stepUp = async () => {
      const ch = await me.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
      return (await me.verifyDeviceChallenge({ challengeId: ch.challengeId, signature: key.sign(ch.challenge) })).stepUpToken;
    };
    const verify = (stepUpToken: string, spendKey: string) => h.internal.verifyStepUpToken({ stepUpToken, userId: signup.userId, purpose: "payout", spendKey });

    const token = await stepUp();
    assert.equal((await verify(token, "payout-key-1")).deviceId, device!.deviceId);
    assert.equal((await verify(token, "payout-key-1")).deviceId, device!.deviceId, "the same payout's retry (its first answer lost)");
    assert.equal(await fails(verify(token, "payout-key-2")), Code.PermissionDenied, "another payout");
    assert.equal(await fails(verify(token, "")), Code.PermissionDenied, "a use naming no payout");
    assert.equal(await fails(h.internal.verifyStepUpToken({ stepUpToken: token, userId: signup.userId, purpose: "admin", spendKey: "payout-key-1" })), Code.PermissionDenied, "another purpose");
    await h.t.db.pool.query("UPDATE auth.step_up_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1", [signup.userId]);
    assert.equal(await fails(verify(token, "payout-key-1")), Code.PermissionDenied, "expired: proved again");

    // Spent naming no payout (as before keys): spent for good, whatever key comes after.
    const unnamed = await stepUp();
    await verify(unnamed, "");
    assert.equal(await fails(verify(unnamed, "")), Code.PermissionDenied);
    assert.equal(await fails(verify(unnamed, "payout-key-3")), Code.PermissionDenied);
  });

  test("a payout's step-up token is spent on the payout's key, amount and number: a retry under the key with another amount or number is refused naming the field, the same retry verifies", async () => {
    const phone = testPhone();
    const signup = await h.signUp(phone);
    await h.api(signup.tokens.accessToken).setPin({ pin: "4826" });
    const me = h.api((await h.loginWithPin(phone, "4826")).accessToken);
    const key = deviceKey();
    const { device } = await me.registerDevice({ name: "Pixel", publicKeyJwk: key.publicJwk, pin: "4826" });
    const ch = await me.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    const token = (await me.verifyDeviceChallenge({ challengeId: ch.challengeId, signature: key.sign(ch.challenge) })).stepUpToken;
    const payout = { spendKey: "payout-key-1", spendAmount: { currency: "KES", amountMinor: 50_000n }, spendPhone: "254712345678" };
    const verify = (terms: Partial<typeof payout>) => h.internal.verifyStepUpToken({ stepUpToken: token, userId: signup.userId, purpose: "payout", ...payout, ...terms });
    const refusal = (p: Promise<unknown>) => p.then(() => "verified", (e: ConnectError) => `${Code[e.code]} ${e.rawMessage.split(":")[0]}`);

    assert.equal((await verify({})).deviceId, device!.deviceId);
    assert.equal(await refusal(verify({ spendAmount: { currency: "KES", amountMinor: 5_000n } })), "PermissionDenied spend_amount", "another amount under the key");
    assert.equal(await refusal(verify({ spendPhone: "254798765432" })), "PermissionDenied spend_phone", "another number under the key");
    assert.equal(await refusal(verify({ spendPhone: "" })), "PermissionDenied spend_phone", "no number where one was spent");
    assert.equal((await verify({})).deviceId, device!.deviceId, "the same payout's retry");
    assert.equal(await refusal(verify({ spendKey: "payout-key-2" })), "PermissionDenied step-up token is invalid, expired or already spent on another payout");
  });

  test("partner keys: issued once (hashed and sealed at rest), idempotent, HMAC-signed requests with a replay window", async () => {
    const root = await h.signUpWithPin(testPhone(), "3917");
    await h.makeAdmin(root.userId);
    const adminToken = (await h.api().refreshSession({ refreshToken: root.tokens.refreshToken })).tokens!.accessToken;
    const admin = h.admin(adminToken);
    const stepUp = () => h.stepUp(adminToken, "3917");
    assert.equal(await fails(admin.issuePartnerApiKey({ partnerName: "Savanna POS", scopes: ["tips:create"], idempotencyKey: "issue-savanna-0" })), Code.PermissionDenied, "no device step-up");
    const issued = await admin.issuePartnerApiKey({ partnerName: "Savanna POS", scopes: ["tips:create", "statements:read"], idempotencyKey: "issue-savanna-1" }, await stepUp());
    assert.ok(issued.secret.startsWith("ttip_sk_"));
    assert.equal(issued.key?.prefix, issued.secret.slice(0, 12));
    const again = await admin.issuePartnerApiKey({ partnerName: "Savanna POS", scopes: ["statements:read", "tips:create"], idempotencyKey: "issue-savanna-1" }, await stepUp());
    assert.equal(again.key?.keyId, issued.key?.keyId, "a retry gets the same key");
    assert.equal(again.secret, issued.secret);
    assert.equal(await fails(admin.issuePartnerApiKey({ partnerName: "Other", scopes: ["tips:create"], idempotencyKey: "issue-savanna-1" }, await stepUp())), Code.AlreadyExists);
    const stored = await h.t.db.pool.query("SELECT * FROM auth.partner_api_keys WHERE key_id = $1", [issued.key!.keyId]);
    assert.ok(!JSON.stringify(stored.rows[0]).includes(issued.secret.slice(12)), "the secret is not stored in clear");
    assert.deepEqual(stored.rows[0].secret_hash, createHash("sha256").update(issued.secret).digest());
    assert.equal((await admin.listPartnerApiKeys({})).keys.length, 1);

    const keyId = issued.key!.keyId;
    const body = Buffer.from(JSON.stringify({ amount: "50000", currency: "KES" }));
    const bodySha256 = createHash("sha256").update(body).digest();
    const signed = (at: Date, path = "/v1/tips", digest: Uint8Array = bodySha256) => ({
      keyId, method: "POST", path, timestamp: timestampFromDate(at), bodySha256: digest,
      signature: signPartnerRequest(issued.secret, "POST", "/v1/tips", Math.floor(at.getTime() / 1000), bodySha256),
    });
    const now = new Date();
    const ok = await h.internal.verifyPartnerSignature(signed(now));
    assert.equal(ok.partnerName, "Savanna POS");
    assert.deepEqual(ok.scopes, ["statements:read", "tips:create"]);
    assert.equal(await fails(h.internal.verifyPartnerSignature(signed(now))), Code.Unauthenticated, "replayed");
    assert.equal(await fails(h.internal.verifyPartnerSignature({ ...signed(now), keyId: keyId.toUpperCase() })), Code.Unauthenticated, "replayed under the key id in capitals");
    assert.equal(await fails(h.internal.verifyPartnerSignature(signed(new Date(Date.now() - 10 * 60_000)))), Code.Unauthenticated, "too old");
    assert.equal(await fails(h.internal.verifyPartnerSignature(signed(new Date(Date.now() + 1000), "/v1/payouts"))), Code.Unauthenticated, "other path");
    const otherBody = createHash("sha256").update("{}").digest();
    assert.equal(await fails(h.internal.verifyPartnerSignature(signed(new Date(Date.now() + 2000), "/v1/tips", otherBody))), Code.Unauthenticated, "other body");
    await h.internal.verifyPartnerSignature(signed(new Date(Date.now() + 3000)));

    // With a nonce (the fifth line signed): identical calls in one second both pass; each nonce is spent once.
    const withNonce = (at: Date, nonce: string, signedNonce = nonce) => ({
      ...signed(at),
      nonce,
      signature: signPartnerRequest(issued.secret, "POST", "/v1/tips", Math.floor(at.getTime() / 1000), bodySha256, signedNonce),
    });
    const [n1, n2, n3] = [randomUUID(), randomUUID(), randomUUID()];
    const sameSecond = new Date();
    assert.equal((await h.internal.verifyPartnerSignature(withNonce(sameSecond, n1))).partnerName, "Savanna POS");
    assert.equal((await h.internal.verifyPartnerSignature(withNonce(sameSecond, n2))).partnerName, "Savanna POS");
    assert.equal(await fails(h.internal.verifyPartnerSignature(withNonce(new Date(Date.now() + 1000), n2))), Code.Unauthenticated, "a nonce is spent once");
    assert.equal(await fails(h.internal.verifyPartnerSignature(withNonce(sameSecond, n3, randomUUID()))), Code.Unauthenticated, "the nonce is signed");
    assert.equal(await fails(h.internal.verifyPartnerSignature({ ...signed(sameSecond), nonce: randomUUID() })), Code.Unauthenticated, "a nonce added to a first-scheme signature");

    const revoked = await admin.revokePartnerApiKey({ keyId });
    assert.ok(revoked.key?.revokedAt);
    assert.equal(await fails(h.internal.verifyPartnerSignature(signed(new Date(Date.now() + 4000)))), Code.Unauthenticated, "revoked");
    const audit = await admin.listAuditEvents({ actions: [AuditAction.API_KEY_ISSUED, AuditAction.API_KEY_REVOKED] });
    assert.deepEqual(audit.events.map((e) => e.action), [AuditAction.API_KEY_REVOKED, AuditAction.API_KEY_ISSUED]);
    assert.ok(audit.events.every((e) => e.actorUserId === root.userId));
  });

  test("the audit log pages newest first and filters by user", async () => {
    const root = await h.signUp(testPhone());
    await h.makeAdmin(root.userId);
    const adminToken = (await h.api().refreshSession({ refreshToken: root.tokens.refreshToken })).tokens!.accessToken;
    const user = await h.signUpWithPin(testPhone(), "4826");
    const all = await h.admin(adminToken).listAuditEvents({ userId: user.userId });
    assert.deepEqual(all.events.map((e) => e.action), [AuditAction.PIN_SET, AuditAction.LOGIN]);
    const first = await h.admin(adminToken).listAuditEvents({ userId: user.userId, page: { pageSize: 1 } });
    assert.equal(first.events[0].action, AuditAction.PIN_SET);
    const second = await h.admin(adminToken).listAuditEvents({ userId: user.userId, page: { pageSize: 1, pageToken: first.page!.nextPageToken } });
    assert.equal(second.events[0].action, AuditAction.LOGIN);
    assert.equal(second.page?.nextPageToken, "");
  });
  test("a PIN reset by SMS code ends the proofs asked before it: a challenge not yet answered, a step-up not yet used", async () => {
    const phone = testPhone();
    const signup = await h.signUpWithPin(phone, "4826");
    const before = h.api((await h.loginWithPin(phone, "4826")).accessToken);
    const key = deviceKey();
    const { device } = await before.registerDevice({ name: "Pixel", publicKeyJwk: key.publicJwk, pin: "4826" });
    const pending = await before.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    const asked = await before.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    const { stepUpToken } = await before.verifyDeviceChallenge({ challengeId: asked.challengeId, signature: key.sign(asked.challenge) });
    // One spent on a payout that payment then refused before storing it (over the balance): its retry verifies again.
    const spentAsked = await before.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    const spent = (await before.verifyDeviceChallenge({ challengeId: spentAsked.challengeId, signature: key.sign(spentAsked.challenge) })).stepUpToken;
    const payout = { stepUpToken: spent, userId: signup.userId, purpose: "payout", spendKey: "payout-before-reset", spendAmount: { amountMinor: 200_000n, currency: "KES" } };
    await h.internal.verifyStepUpToken(payout);
    await h.internal.verifyStepUpToken(payout);
    const { challengeId, otp } = await h.startVerification(phone);
    const after = h.api((await h.api().resetPin({ challengeId, otp, newPin: "5193" })).tokens!.accessToken);
    // Before, each approved a payout for its minutes after the reset, past the hold on the key.
    assert.equal(await fails(after.verifyDeviceChallenge({ challengeId: pending.challengeId, signature: key.sign(pending.challenge) })), Code.FailedPrecondition);
    assert.equal(await fails(h.internal.verifyStepUpToken({ stepUpToken, userId: signup.userId, purpose: "payout", spendKey: "payout-after-reset" })), Code.PermissionDenied);
    // Before, the spent one's retry still verified: that payout, asked again, went out within the hold.
    assert.equal(await fails(h.internal.verifyStepUpToken(payout)), Code.PermissionDenied);
  });

  test("a session revoked while RegisterDevice or ChangePin checked its PIN adds no key and changes no PIN", async () => {
    const phone = testPhone();
    const signup = await h.signUpWithPin(phone, "4826");
    const tokens = await h.loginWithPin(phone, "4826");
    const me = h.api(tokens.accessToken);
    await me.listDevices({}); // the session's state is cached as active, as at the start of a call
    // Revoked (sign out everywhere from another phone) after the call's session check: the cached state still says active.
    const sid = JSON.parse(Buffer.from(tokens.accessToken.split(".")[1], "base64url").toString()).sid as string;
    await h.t.db.pool.query("UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'revoke all' WHERE session_id = $1", [sid]);
    // Before, the key was added (approving payouts after the owner's sign-out) and the PIN changed.
    assert.equal(await fails(me.registerDevice({ name: "Thief", publicKeyJwk: deviceKey().publicJwk, pin: "4826" })), Code.Unauthenticated);
    assert.equal(await fails(me.changePin({ currentPin: "4826", newPin: "5193" })), Code.Unauthenticated);
    const { rows } = await h.t.db.pool.query("SELECT count(*)::int AS n FROM auth.devices WHERE user_id = $1", [signup.userId]);
    assert.equal(rows[0].n, 0);
    assert.ok(await h.loginWithPin(phone, "4826"), "the PIN is unchanged");
  });

  test("a session revoked while SetPin hashed the PIN sets none", async () => {
    const phone = testPhone();
    const { tokens, userId } = await h.signUp(phone);
    const me = h.api(tokens.accessToken);
    await me.listDevices({}); // the session's state is cached as active, as at the start of a call
    const sid = JSON.parse(Buffer.from(tokens.accessToken.split(".")[1], "base64url").toString()).sid as string;
    await h.t.db.pool.query("UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'revoke all' WHERE session_id = $1", [sid]);
    // Before, the revoked session's PIN became the account's: its owner had to reset it, holding their payouts a day.
    assert.equal(await fails(me.setPin({ pin: "4826" })), Code.Unauthenticated);
    const { rows } = await h.t.db.pool.query("SELECT pin_hash FROM auth.users WHERE user_id = $1", [userId]);
    assert.equal(rows[0].pin_hash, null);
  });

  // Last in this file: it moves the service's clock a day on.
  test("a PIN reset by SMS code alone: no key approves a payout, a payout number or an admin action for a day, neither one added after it nor one the account had (a lost phone keeps its key)", async () => {
    const phone = testPhone();
    await h.signUpWithPin(phone, "4826");
    const owner = h.api((await h.loginWithPin(phone, "4826")).accessToken);
    const ownerKey = (await owner.registerDevice({ name: "Owner's phone", publicKeyJwk: deviceKey().publicJwk, pin: "4826" })).device!;

    // Whoever holds the SIM (swapped, or a code talked out of its owner): a new PIN, a new key.
    const { challengeId, otp } = await h.startVerification(phone);
    const reset = await h.api().resetPin({ challengeId, otp, newPin: "5193" });
    const holder = h.api(reset.tokens!.accessToken);
    const theirs = deviceKey();
    const { device } = await holder.registerDevice({ name: "Phone", publicKeyJwk: theirs.publicJwk, pin: "5193" });
    // Before, an admin action was not held: a SIM's holder reached the console's refunds and roles at once.
    for (const purpose of ["payout", "payout_number", "admin"]) {
      const held = await holder.createDeviceChallenge({ deviceId: device!.deviceId, purpose }).catch((e: unknown) => ConnectError.from(e));
      assert.ok(held instanceof ConnectError && held.code === Code.FailedPrecondition, `${purpose}: ${held}`);
      const info = held.findDetails(DomainErrorInfoSchema)[0];
      assert.equal(info?.reason, "PAYOUTS_HELD_AFTER_PIN_RESET");
      const until = Date.parse(info!.metadata.held_until);
      assert.ok(Math.abs(until - (h.clock.now() + 24 * 3_600_000)) < 60_000, `a day from the reset: ${info!.metadata.held_until}`);
      assert.match(held.rawMessage, purpose === "admin" ? /admin actions wait until .*call support/ : /withdrawals wait until .*call support/);
    }
    assert.ok((await holder.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "unlock" })).challengeId, "unlocking the app is not held");
    // A second reset does not lift the hold on a key added after the first (it counts from the second now).
    const again = await h.startVerification(phone);
    const second = h.api((await h.api().resetPin({ challengeId: again.challengeId, otp: again.otp, newPin: "5193" })).tokens!.accessToken);
    assert.equal(await fails(second.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" })), Code.FailedPrecondition, "still held");
    // The key from before the resets may be on a phone the worker lost, signed out but holding it: held too.
    assert.equal(await fails(second.createDeviceChallenge({ deviceId: ownerKey.deviceId, purpose: "payout" })), Code.FailedPrecondition);

    h.clock.advance(24 * 3_600_000 + 10 * 60_000);
    const later = h.api((await h.loginWithPin(phone, "5193")).accessToken);
    const ch = await later.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    assert.ok((await later.verifyDeviceChallenge({ challengeId: ch.challengeId, signature: theirs.sign(ch.challenge) })).stepUpToken, "a day on, the new key approves");
    assert.ok((await later.createDeviceChallenge({ deviceId: ownerKey.deviceId, purpose: "payout" })).challengeId, "and the older one");
  });
});
