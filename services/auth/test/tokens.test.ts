import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { createRemoteJWKSet, decodeProtectedHeader, generateKeyPair, importJWK, jwtVerify, SignJWT, type JWK } from "jose";
import { AuditAction, Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService, AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { DEV_KEY_ENCRYPTION_SECRET } from "../src/config.js";
import { Sealer } from "../src/crypto.js";
import { SigningKeys } from "../src/keys.js";
import { startHarness, type Harness } from "./harness.js";
import { revocationChecker, type RedisCache } from "@ttip/runtime";
import { eventually, testPhone } from "@ttip/runtime/testing";

const code = (e: unknown) => (e instanceof ConnectError ? e.code : e);
const fails = (p: Promise<unknown>) => p.then(() => "ok" as const, (e) => code(e));
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());

describe("auth: tokens, JWKS, refresh rotation, sessions, roles", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.close());

  test("an access token verifies with only the JWKS (an independent verifier), and through the gateway", async () => {
    const { tokens, userId } = await h.signUp(testPhone(), Role.WORKER);
    const jwks = createRemoteJWKSet(new URL(h.jwksUrl));
    const { payload, protectedHeader } = await jwtVerify(tokens.accessToken, jwks, { issuer: "ttip-auth", audience: "ttip" });
    assert.equal(protectedHeader.alg, "EdDSA");
    assert.ok(protectedHeader.kid);
    assert.equal(payload.sub, userId);
    assert.deepEqual(payload.roles, ["worker"]);
    assert.ok(payload.exp! - payload.iat! <= 600, "short-lived");
    // The JWKS over plain HTTP and the RPC publish the same keys, public halves only.
    const served = (await (await fetch(h.jwksUrl)).json()) as { keys: JWK[] };
    const rpc = JSON.parse((await h.api().getJwks({})).jwksJson) as { keys: JWK[] };
    assert.deepEqual(rpc, served);
    assert.ok(served.keys.every((k) => !("d" in k) && k.kid && k.alg === "EdDSA"));
    // The gateway verifies it the same way and passes the subject on.
    assert.equal((await h.api(tokens.accessToken).getMe({})).user?.userId, userId);
    // The private key is sealed at rest.
    const keys = await h.t.db.pool.query("SELECT private_sealed FROM auth.signing_keys");
    assert.ok(keys.rows.every((r) => r.private_sealed.startsWith("v1.") && !r.private_sealed.includes('"d"')));
  });

  test("expired, re-signed, tampered and alg=none tokens are refused", async () => {
    const { tokens, userId } = await h.signUp(testPhone());
    const kid = decodeProtectedHeader(tokens.accessToken).kid!;
    // An expired token signed with auth's own key (unsealed with the dev secret).
    const row = await h.t.db.pool.query("SELECT private_sealed FROM auth.signing_keys WHERE kid = $1", [kid]);
    const realKey = await importJWK(JSON.parse(new Sealer(DEV_KEY_ENCRYPTION_SECRET).open(row.rows[0].private_sealed)), "EdDSA");
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ roles: ["worker"] })
      .setProtectedHeader({ alg: "EdDSA", kid }).setIssuer("ttip-auth").setAudience("ttip").setSubject(userId)
      .setIssuedAt(now - 1200).setExpirationTime(now - 600).sign(realKey);
    // A control: the same key and claims, not expired, is accepted.
    const fresh = await new SignJWT({ roles: ["worker"] })
      .setProtectedHeader({ alg: "EdDSA", kid }).setIssuer("ttip-auth").setAudience("ttip").setSubject(userId)
      .setIssuedAt(now).setExpirationTime(now + 60).sign(realKey);
    assert.equal((await h.api(fresh).getMe({})).user?.userId, userId);
    assert.equal(await fails(h.api(expired).getMe({})), Code.Unauthenticated);

    // Claims changed to admin and re-signed with another key under the same kid.
    const forger = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const resigned = await new SignJWT({ ...claimsOf(tokens.accessToken), roles: ["admin"] })
      .setProtectedHeader({ alg: "EdDSA", kid }).sign(forger.privateKey);
    assert.equal(await fails(h.api(resigned).getMe({})), Code.Unauthenticated);
    // Claims changed, signature kept.
    const [head, , sig] = tokens.accessToken.split(".");
    const tampered = `${head}.${b64({ ...claimsOf(tokens.accessToken), roles: ["admin"] })}.${sig}`;
    assert.equal(await fails(h.api(tampered).getMe({})), Code.Unauthenticated);
    const none = `${b64({ alg: "none", kid })}.${b64({ ...claimsOf(tokens.accessToken), roles: ["admin"] })}.`;
    assert.equal(await fails(h.api(none).getMe({})), Code.Unauthenticated);
    // HMAC with the public key as the secret (algorithm confusion).
    const pub = (await (await fetch(h.jwksUrl)).json()) as { keys: JWK[] };
    const hs = await new SignJWT(claimsOf(tokens.accessToken))
      .setProtectedHeader({ alg: "HS256", kid }).sign(new TextEncoder().encode(JSON.stringify(pub.keys[0])));
    assert.equal(await fails(h.api(hs).getMe({})), Code.Unauthenticated);
    for (const bad of [expired, resigned, tampered, none, hs]) {
      await assert.rejects(jwtVerify(bad, createRemoteJWKSet(new URL(h.jwksUrl)), { issuer: "ttip-auth", audience: "ttip", algorithms: ["EdDSA", "ES256"] }));
    }
  });

  test("a refresh whose answer was lost (the new token never arrived) may be asked again with the old token for a minute; once the new one is used, the old is reuse", async () => {
    const { tokens: first, userId } = await h.signUp(testPhone());
    const lost = (await h.api().refreshSession({ refreshToken: first.refreshToken })).tokens!;
    // The phone never heard the answer, and asks again (twice: its second answer was lost too).
    await h.api().refreshSession({ refreshToken: first.refreshToken });
    const again = (await h.api().refreshSession({ refreshToken: first.refreshToken })).tokens!;
    assert.equal(claimsOf(again.accessToken).sid, claimsOf(first.accessToken).sid, "the same session");
    assert.equal((await h.api(again.accessToken).getMe({})).user?.userId, userId, "still signed in");
    const reissued = await h.t.db.pool.query("SELECT 1 FROM auth.audit_events WHERE user_id = $1 AND action = $2", [userId, AuditAction.REFRESH_REISSUED]);
    assert.equal(reissued.rowCount, 2, "each ask again audited");
    // The tokens it never received cannot be used by anyone.
    assert.equal(await fails(h.api().refreshSession({ refreshToken: lost.refreshToken })), Code.Unauthenticated);
    const { tokens: second } = await h.signUp(testPhone());
    const next = (await h.api().refreshSession({ refreshToken: second.refreshToken })).tokens!;
    await h.api().refreshSession({ refreshToken: next.refreshToken });
    // The new token was used: the old one now is a copy's reuse, and the session ends.
    assert.equal(await fails(h.api().refreshSession({ refreshToken: second.refreshToken })), Code.Unauthenticated);
    assert.equal(await fails(h.api(next.accessToken).getMe({})), Code.Unauthenticated);
    // Past the minute, a second ask with an old token is reuse even when its successor was never used.
    const { tokens: third } = await h.signUp(testPhone());
    await h.api().refreshSession({ refreshToken: third.refreshToken });
    await h.t.db.pool.query("UPDATE auth.refresh_tokens SET used_at = used_at - interval '61 seconds' WHERE used_at IS NOT NULL AND session_id = $1", [claimsOf(third.accessToken).sid]);
    assert.equal(await fails(h.api().refreshSession({ refreshToken: third.refreshToken })), Code.Unauthenticated);
    assert.equal(await fails(h.api(third.accessToken).getMe({})), Code.Unauthenticated);
  });

  test("refresh tokens rotate on every use; reusing an old one revokes the whole family", async () => {
    const { tokens: first, userId } = await h.signUp(testPhone());
    const second = (await h.api().refreshSession({ refreshToken: first.refreshToken })).tokens!;
    assert.notEqual(second.refreshToken, first.refreshToken);
    assert.equal(claimsOf(second.accessToken).sid, claimsOf(first.accessToken).sid, "same session");
    const third = (await h.api().refreshSession({ refreshToken: second.refreshToken })).tokens!;
    assert.equal((await h.api(third.accessToken).getMe({})).user?.userId, userId);

    // An attacker replays the first token: refused, and the family dies.
    assert.equal(await fails(h.api().refreshSession({ refreshToken: first.refreshToken })), Code.Unauthenticated);
    assert.equal(await fails(h.api().refreshSession({ refreshToken: third.refreshToken })), Code.Unauthenticated);
    assert.equal(await fails(h.api(third.accessToken).getMe({})), Code.Unauthenticated, "the session's access token stops at auth too");
    const reuse = await h.t.db.pool.query("SELECT 1 FROM auth.audit_events WHERE user_id = $1 AND action = $2", [userId, AuditAction.REFRESH_REUSE_DETECTED]);
    assert.equal(reuse.rowCount, 1);
    assert.equal(await fails(h.api().refreshSession({ refreshToken: "rt_not-a-real-token-at-all" })), Code.Unauthenticated);
    // Refresh tokens are stored hashed.
    const stored = await h.t.db.pool.query("SELECT token_hash FROM auth.refresh_tokens");
    assert.ok(stored.rows.every((r) => r.token_hash.length === 32));
  });

  test("an expired refresh token is refused", async () => {
    const { tokens } = await h.signUp(testPhone());
    await h.t.db.pool.query("UPDATE auth.refresh_tokens SET expires_at = now() - interval '1 second' WHERE session_id = $1", [claimsOf(tokens.accessToken).sid]);
    assert.equal(await fails(h.api().refreshSession({ refreshToken: tokens.refreshToken })), Code.Unauthenticated);
  });

  test("sessions: list mine (cached in Redis), revoke one, revoke all but this one, logout", async () => {
    const phone = testPhone();
    const { tokens: a, userId } = await h.signUpWithPin(phone, "4826");
    const b = await h.loginWithPin(phone, "4826");
    const c = await h.loginWithPin(phone, "4826");
    const listed = await h.api(a.accessToken).listSessions({});
    assert.equal(listed.sessions.length, 3);
    assert.equal(listed.sessions.filter((s) => s.current).map((s) => s.sessionId)[0], claimsOf(a.accessToken).sid);
    assert.ok(listed.sessions.every((s) => s.userAgent === "ttip-test/1.0"));
    const redis = (h.t.ctx.cache as import("@ttip/runtime").RedisCache).redis;
    assert.equal((await redis.keys(`*auth:sessions:${userId}`)).length, 1, "the list is cached in Redis");

    await h.api(a.accessToken).revokeSession({ sessionId: claimsOf(b.accessToken).sid });
    assert.equal((await redis.keys(`*auth:sessions:${userId}`)).length, 0, "a change drops the cached list");
    assert.equal(await fails(h.api(b.accessToken).getMe({})), Code.Unauthenticated);
    assert.equal((await h.api(a.accessToken).listSessions({})).sessions.length, 2);
    // Another user's session is not mine to revoke.
    const other = await h.signUp(testPhone());
    assert.equal(await fails(h.api(other.tokens.accessToken).revokeSession({ sessionId: claimsOf(a.accessToken).sid })), Code.NotFound);

    const d = await h.loginWithPin(phone, "4826");
    const all = await h.api(a.accessToken).revokeAllSessions({ keepCurrent: true });
    assert.equal(all.revoked, 2);
    assert.equal(await fails(h.api(c.accessToken).getMe({})), Code.Unauthenticated);
    assert.equal(await fails(h.api().refreshSession({ refreshToken: d.refreshToken })), Code.Unauthenticated);
    assert.equal((await h.api(a.accessToken).getMe({})).user?.userId, userId);

    await h.api(a.accessToken).logout({});
    assert.equal(await fails(h.api(a.accessToken).getMe({})), Code.Unauthenticated);
    assert.equal(await fails(h.api().refreshSession({ refreshToken: a.refreshToken })), Code.Unauthenticated);
  });

  test("a revocation's mark lost from Redis after it committed is written again, so the gateway refuses the session's tokens once more", async () => {
    const r = await startHarness({ AUTH_REVOCATION_REMARK_MS: "100" });
    try {
      const phone = testPhone();
      const signup = await r.signUp(phone);
      await r.api(signup.tokens.accessToken).setPin({ pin: "4826" });
      const a = await r.loginWithPin(phone, "4826");
      const b = await r.loginWithPin(phone, "4826");
      const sid = claimsOf(b.accessToken).sid;
      await r.api(a.accessToken).revokeSession({ sessionId: sid });
      const gatewaySees = revocationChecker(r.t.ctx.cache, 0);
      assert.equal(await gatewaySees(sid), true, "marked at once");
      // Lost (a failover to a replica without it, an eviction, a failed write after the commit): the gateway let its tokens through.
      const redis = (r.t.ctx.cache as RedisCache).redis;
      const marks = await redis.keys(`*revoked-session:${sid}`);
      assert.equal(marks.length, 1);
      await redis.del(...marks);
      // (Not asserted gone meanwhile: a pass may write it again before the next line runs.)
      await eventually("the mark written again", () => gatewaySees(sid));
      assert.equal(await gatewaySees(claimsOf(a.accessToken).sid), false, "the live session is not marked");
    } finally {
      await r.close();
    }
  });

  test("key rotation: the next key is published before it signs; old tokens keep verifying during the overlap", async () => {
    const r = await startHarness({ AUTH_SIGNING_KEY_ACTIVATION_SECONDS: "2" });
    try {
      const { tokens: old } = await r.signUp(testPhone());
      const oldKid = decodeProtectedHeader(old.accessToken).kid;
      // Rotated by an admin inside the cluster (the gateway path is covered by the roles test).
      const admin = r.t.client(AuthAdminService, { subject: randomUUID(), roles: ["admin"] });
      const { kid } = await admin.rotateSigningKey({});
      assert.notEqual(kid, oldKid);
      const rotated = await r.t.db.pool.query("SELECT detail FROM auth.audit_events WHERE action = $1", [AuditAction.SIGNING_KEY_ROTATED]);
      assert.equal(rotated.rows[0]?.detail, `new key ${kid}`);
      const published = (await (await fetch(r.jwksUrl)).json()) as { keys: JWK[] };
      assert.deepEqual(new Set(published.keys.map((k) => k.kid)), new Set([kid, oldKid]), "next key published, old key kept");
      // The gateway fetches the JWKS now (both keys), before the new key signs anything, and needs no refetch later.
      // In production the activation delay (60 s) outlasts its refetch cool-down (30 s), so a gateway that fetched
      // just before the rotation still finds the new kid on its first miss.
      await r.api(old.accessToken).getMe({});
      const { tokens: before } = await r.signUp(testPhone());
      assert.equal(decodeProtectedHeader(before.accessToken).kid, oldKid, "the old key signs until the new one activates");
      r.clock.advance(2_100); // past the activation delay
      const { tokens: fresh } = await r.signUp(testPhone());
      assert.equal(decodeProtectedHeader(fresh.accessToken).kid, kid);
      await r.api(fresh.accessToken).getMe({});
      await r.api(old.accessToken).getMe({});
      // An independent verifier with only the JWKS accepts both.
      const verifier = createRemoteJWKSet(new URL(r.jwksUrl));
      for (const t of [old, fresh]) await jwtVerify(t.accessToken, verifier, { issuer: "ttip-auth", audience: "ttip" });
      // Past the overlap, the retired key leaves the JWKS.
      await r.t.db.pool.query("UPDATE auth.signing_keys SET retired_at = now() - interval '1 day' WHERE kid <> $1", [kid]);
      const later = (await (await fetch(r.jwksUrl)).json()) as { keys: JWK[] };
      assert.deepEqual(later.keys.map((k) => k.kid), [kid]);
    } finally {
      await r.close();
    }
  });

  test("a signing key past its age is rotated on its own", async () => {
    const r = await startHarness({ AUTH_SIGNING_KEY_MAX_AGE_DAYS: "1", AUTH_SIGNING_KEY_ACTIVATION_SECONDS: "1" });
    try {
      // An old key, as a long-running deployment would have.
      const old = new SigningKeys(r.t.db.pool, new Sealer(DEV_KEY_ENCRYPTION_SECRET), { accessTokenTtlSeconds: 600, maxAgeSeconds: 86_400, activationSeconds: 0 });
      const oldKid = await old.rotate();
      await r.t.db.pool.query("UPDATE auth.signing_keys SET created_at = now() - interval '2 days', activates_at = now() - interval '2 days'");
      const { tokens: first } = await r.signUp(testPhone());
      assert.equal(decodeProtectedHeader(first.accessToken).kid, oldKid, "keeps signing while the next key is published");
      const keys = await r.t.db.pool.query("SELECT kid FROM auth.signing_keys WHERE kid <> $1", [oldKid]);
      assert.equal(keys.rowCount, 1, "one new key, published");
      r.clock.advance(1_100); // past the activation delay
      const { tokens: next } = await r.signUp(testPhone());
      assert.equal(decodeProtectedHeader(next.accessToken).kid, keys.rows[0].kid);
      await jwtVerify(first.accessToken, createRemoteJWKSet(new URL(r.jwksUrl)), { issuer: "ttip-auth", audience: "ttip" });
    } finally {
      await r.close();
    }
  });

  test("roles: the gateway refuses anonymous and wrong-role callers; admin needs an allow-listed network", async () => {
    const worker = await h.signUp(testPhone(), Role.WORKER);
    assert.equal(await fails(h.api().getMe({})), Code.Unauthenticated);
    assert.equal(await fails(h.api().listSessions({})), Code.Unauthenticated);
    assert.equal(await fails(h.admin(worker.tokens.accessToken).getUser({ userId: worker.userId })), Code.PermissionDenied);

    const root = await h.signUpWithPin(testPhone(), "3917");
    await h.makeAdmin(root.userId);
    const adminToken = (await h.api().refreshSession({ refreshToken: root.tokens.refreshToken })).tokens!.accessToken;
    assert.deepEqual(claimsOf(adminToken).roles, ["admin"]);
    const user = await h.admin(adminToken, "10.99.4.5").getUser({ userId: worker.userId });
    assert.equal(user.user?.userId, worker.userId);
    assert.equal(await fails(h.admin(adminToken, "203.0.113.9").getUser({ userId: worker.userId })), Code.PermissionDenied);

    // Roles change: the user's sessions carrying the lost role end.
    const updated = await h.admin(adminToken).setUserRoles({ userId: worker.userId, roles: [Role.VENUE_MANAGER] }, await h.stepUp(adminToken, "3917"));
    assert.deepEqual(updated.user?.roles, [Role.VENUE_MANAGER]);
    assert.equal(await fails(h.api(worker.tokens.accessToken).getMe({})), Code.Unauthenticated);
    const changed = await h.admin(adminToken).listAuditEvents({ userId: worker.userId, actions: [AuditAction.ROLES_CHANGED] });
    assert.equal(changed.events[0]?.actorUserId, root.userId);

    // The service itself also checks, for callers inside the cluster.
    const direct = h.t.client((await import("@ttip/proto/ttip/auth/v1/auth_service_pb.js")).AuthAdminService, { subject: worker.userId, roles: ["worker"] });
    assert.equal(await fails(direct.getUser({ userId: worker.userId })), Code.PermissionDenied);
    // The internal service is never routed through the gateway.
    const { createClient } = await import("@connectrpc/connect");
    const { createConnectTransport } = await import("@connectrpc/connect-node");
    const viaGateway = createClient(AuthInternalService, createConnectTransport({ baseUrl: h.gateway.url, httpVersion: "1.1" }));
    assert.notEqual(await fails(viaGateway.getUserById({ userId: worker.userId })), "ok");
  });

  test("profile: GetMe and UpdateProfile act on the caller only", async () => {
    const { tokens, userId } = await h.signUp(testPhone());
    const res = await h.api(tokens.accessToken).updateProfile({ displayName: "Amina", photoUrl: "https://cdn.example/a.png" });
    assert.equal(res.user?.displayName, "Amina");
    assert.equal((await h.internal.getUserById({ userId })).user?.displayName, "Amina");
    assert.match((await h.internal.getUserById({ userId })).phone, /^\+2547\d{8}$/);
  });
});
