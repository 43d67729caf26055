// The admin console's side of auth: the first admin by one-time setup token,
// console roles (support reads, only admin changes accounts, enforced by the
// gateway and by the service), finding users, blocking and ending sessions.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { UserBlockChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { AuditAction, Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { issueSetupToken } from "../src/index.js";
import { startHarness, subjectOf, type Harness } from "./harness.js";
import { testPhone } from "@ttip/runtime/testing";

const fails = (p: Promise<unknown>) => p.then(() => "ok", (e) => Code[ConnectError.from(e).code]);
const message = (p: Promise<unknown>) => p.then(() => "", (e) => ConnectError.from(e).rawMessage);

describe("admin console: first admin, roles, users", () => {
  let h: Harness;
  let adminToken: string;
  let adminId: string;
  const adminPhone = testPhone();
  before(async () => {
    h = await startHarness();
  });
  after(() => h?.close());

  test("the first admin: a one-time setup token, claimed by a PIN-signed user from an admin network, audited; never twice", async () => {
    const first = await issueSetupToken(h.t.db.pool);
    assert.ok(first && first.token.startsWith("ttip_setup"));
    // A newer token (a restart) replaces the older one.
    const setup = (await issueSetupToken(h.t.db.pool, "by test"))!;
    const noPin = await h.signUp(testPhone());
    assert.match(await message(h.api(noPin.tokens.accessToken).claimFirstAdmin({ setupToken: setup.token })), /PIN/);

    const user = await h.signUpWithPin(adminPhone, "7391");
    const api = h.api(user.tokens.accessToken);
    assert.equal(await fails(api.claimFirstAdmin({ setupToken: first!.token })), "PermissionDenied", "the replaced token");
    assert.equal(await fails(h.api(user.tokens.accessToken, "203.0.113.9").claimFirstAdmin({ setupToken: setup.token })), "PermissionDenied", "outside the admin networks");
    assert.match(await message(api.claimFirstAdmin({ setupToken: "short" })), /setup_token/);
    const claimed = await api.claimFirstAdmin({ setupToken: setup.token });
    assert.deepEqual(claimed.user!.roles, [Role.WORKER, Role.ADMIN]);
    adminId = user.userId;
    // The role is in the next token.
    adminToken = (await h.api().refreshSession({ refreshToken: user.tokens.refreshToken })).tokens!.accessToken;
    assert.equal((await h.admin(adminToken).getUser({ userId: adminId })).user!.userId, adminId);

    assert.equal(await fails(api.claimFirstAdmin({ setupToken: setup.token })), "FailedPrecondition");
    assert.equal(await issueSetupToken(h.t.db.pool), undefined, "no token once an admin exists");
    const { events } = await h.admin(adminToken).listAuditEvents({ actions: [AuditAction.SETUP_TOKEN_ISSUED, AuditAction.ADMIN_BOOTSTRAPPED] });
    assert.deepEqual(events.map((e) => e.action), [AuditAction.ADMIN_BOOTSTRAPPED, AuditAction.SETUP_TOKEN_ISSUED, AuditAction.SETUP_TOKEN_ISSUED]);
    assert.equal(events[0].actorUserId, adminId);
  });

  test("support reads users and is refused every change, by the gateway and by the service", async () => {
    const s = await h.signUpWithPin(testPhone(), "5820");
    await h.admin(adminToken).setUserRoles({ userId: s.userId, roles: [Role.SUPPORT] }, await h.stepUp(adminToken, "7391"));
    const supportToken = (await h.loginWithPin((await h.t.db.pool.query("SELECT phone FROM auth.users WHERE user_id = $1", [s.userId])).rows[0].phone, "5820")).accessToken;
    const support = h.admin(supportToken);
    assert.equal((await support.getUser({ userId: adminId })).user!.userId, adminId);
    assert.ok((await support.searchUsers({ query: adminId })).users.length === 1);
    assert.equal(await fails(support.blockUser({ userId: adminId, reason: "test" })), "PermissionDenied");
    assert.equal(await fails(support.unlockUser({ userId: adminId, reason: "test" })), "PermissionDenied");
    assert.equal(await fails(support.setUserRoles({ userId: s.userId, roles: [Role.ADMIN] })), "PermissionDenied");
    // Past the gateway (a call signed as if it had let it through): the service refuses too.
    const direct = h.t.client(AuthAdminService, { subject: s.userId, roles: ["support"] });
    assert.equal(await fails(direct.blockUser({ userId: adminId, reason: "test" })), "PermissionDenied");
    assert.equal(await fails(direct.revokeUserSessions({ userId: adminId, reason: "test" })), "PermissionDenied");
    assert.equal(await fails(direct.listUserSessions({ userId: adminId })), "ok");
  });

  test("roles saved from a screen read before another change are refused, naming the roles held now; a retry of the same save answers the same", async () => {
    const s = await h.signUp(testPhone());
    const read = [Role.WORKER];
    // A venue's manager invitation accepted after the admin read the user.
    await h.internal.grantVenueManagerRole({ userId: s.userId });
    const stale = await h.admin(adminToken).setUserRoles({ userId: s.userId, roles: [Role.WORKER, Role.SUPPORT], expectedRoles: read }, await h.stepUp(adminToken, "7391")).catch((e: ConnectError) => e);
    assert.ok(stale instanceof ConnectError && stale.code === Code.Aborted, String(stale));
    assert.match(stale.message, /expected_roles: .*now worker, venue_manager/);
    assert.deepEqual((await h.admin(adminToken).getUser({ userId: s.userId })).user!.roles, [Role.WORKER, Role.VENUE_MANAGER], "nothing changed");
    const roles = [Role.WORKER, Role.VENUE_MANAGER, Role.SUPPORT];
    const saved = await h.admin(adminToken).setUserRoles({ userId: s.userId, roles, expectedRoles: [Role.VENUE_MANAGER, Role.WORKER] }, await h.stepUp(adminToken, "7391"));
    assert.deepEqual(saved.user!.roles, roles);
    // Its answer lost, the console sends it again: the user holds those roles already.
    assert.deepEqual((await h.admin(adminToken).setUserRoles({ userId: s.userId, roles, expectedRoles: [Role.WORKER, Role.VENUE_MANAGER] }, await h.stepUp(adminToken, "7391"))).user!.roles, roles);
  });

  test("search by id, by phone as people type it, by name; bad queries name the field", async () => {
    const phone = testPhone();
    const u = await h.signUp(phone);
    await h.api(u.tokens.accessToken).updateProfile({ displayName: "Wanjiku Kamau" });
    const admin = h.admin(adminToken);
    const ids = async (query: string) => (await admin.searchUsers({ query })).users.map((x) => x.userId);
    assert.deepEqual(await ids(u.userId), [u.userId]);
    assert.ok((await ids(`0${phone.slice(3)}`)).includes(u.userId), "07… finds 2547…");
    assert.ok((await ids(phone.slice(-6))).includes(u.userId));
    assert.ok((await ids("wanjiku")).includes(u.userId));
    assert.deepEqual(await ids("nobody%"), []);
    const found = (await admin.searchUsers({ query: u.userId })).users[0];
    assert.ok(!found.phoneMasked.includes(phone.slice(4, 9)), "the number stays masked");
    assert.match(await message(admin.searchUsers({ query: "07" })), /^query:/);
    assert.match(await message(admin.searchUsers({ query: "x".repeat(101) })), /query/);
    // Paging: every user once.
    const seen: string[] = [];
    let pageToken = "";
    do {
      const r = await admin.searchUsers({ page: { pageSize: 2, pageToken } });
      seen.push(...r.users.map((x) => x.userId));
      pageToken = r.page?.nextPageToken ?? "";
    } while (pageToken);
    const { rows } = await h.t.db.pool.query("SELECT count(*)::int AS n FROM auth.users");
    assert.equal(new Set(seen).size, rows[0].n);
    assert.equal(seen.length, rows[0].n);
  });

  test("block ends every session and every way in; unblock lets the user back; both audited", async () => {
    const phone = testPhone();
    const u = await h.signUpWithPin(phone, "4826");
    const admin = h.admin(adminToken);
    assert.equal((await admin.listUserSessions({ userId: u.userId })).sessions.length, 1);
    const blocked = await admin.blockUser({ userId: u.userId, reason: "reported fraud" });
    assert.equal(blocked.sessionsRevoked, 1);
    assert.ok(blocked.user!.blockedAt);
    assert.equal(blocked.user!.blockedReason, "reported fraud");
    // Payment and qr are told, with the row's time to the microsecond (through a Date it kept milliseconds, and a
    // block and an unblock in one millisecond compared equal in qr).
    const told = await h.t.db.pool.query<{ payload: Buffer }>("SELECT payload FROM auth.outbox WHERE subject = 'ttip.auth.user_block_changed'");
    const event = told.rows.map((r) => fromBinary(UserBlockChangedSchema, r.payload)).find((e) => e.userId === u.userId)!;
    const { rows: [row] } = await h.t.db.pool.query("SELECT (extract(epoch FROM updated_at) * 1000000)::int8 AS us FROM auth.users WHERE user_id = $1", [u.userId]);
    assert.deepEqual([event.userId, event.blocked, event.reason], [u.userId, true, "reported fraud"]);
    assert.equal(event.changedAt!.seconds * 1_000_000n + BigInt(event.changedAt!.nanos / 1000), row.us);
    assert.equal(await fails(h.api(u.tokens.accessToken).getMe({})), "Unauthenticated");
    assert.equal(await fails(h.api().refreshSession({ refreshToken: u.tokens.refreshToken })), "Unauthenticated");
    assert.equal(await fails(h.loginWithPin(phone, "4826")), "PermissionDenied");
    // Refused at the code, with no PIN step: before, the PIN step answered a wrong PIN "wrong PIN" and the right one
    // "blocked" (and reset the lockout), so the phone's holder could test guesses.
    const { challengeId, otp } = await h.startVerification(phone);
    assert.equal(await fails(h.api().verifyPhoneOtp({ challengeId, otp })), "PermissionDenied");
    assert.equal(await fails(admin.blockUser({ userId: adminId, reason: "oops" })), "FailedPrecondition", "not oneself");

    await admin.unblockUser({ userId: u.userId, reason: "cleared" });
    const again = await h.loginWithPin(phone, "4826");
    assert.equal(subjectOf(again.accessToken), u.userId);
    const sessions = (await admin.listUserSessions({ userId: u.userId })).sessions;
    assert.equal(sessions.length, 1);
    assert.equal((await admin.revokeUserSessions({ userId: u.userId, sessionId: sessions[0].sessionId, reason: "lost phone" })).revoked, 1);
    assert.match(await message(admin.revokeUserSessions({ userId: u.userId, sessionId: sessions[0].sessionId, reason: "lost phone" })), /^session_id:/);
    const { events } = await admin.listAuditEvents({ userId: u.userId, actions: [AuditAction.USER_BLOCKED, AuditAction.USER_UNBLOCKED, AuditAction.SESSION_REVOKED] });
    assert.deepEqual(events.map((e) => e.action), [AuditAction.SESSION_REVOKED, AuditAction.USER_UNBLOCKED, AuditAction.USER_BLOCKED]);
    assert.ok(events.every((e) => e.actorUserId === adminId));
  });

  // A change committed while a PIN sign-in is between its PIN check and its session: the PIN step's transaction is
  // held after the PIN was checked (its PIN step marked used) while the change's locks the user, then the change
  // revokes the user's sessions and commits. Before, the sign-in read the user unlocked, and its session came after
  // the revocation: a block's with the roles read before it, a PIN reset's for whoever knew the old PIN.
  for (const [change, apply, refused] of [
    ["a block", "UPDATE auth.users SET blocked_at = now(), blocked_reason = 'reported fraud' WHERE user_id = $1", "PermissionDenied"],
    ["a PIN reset", "UPDATE auth.users SET pin_hash = 'reset-' || pin_hash WHERE user_id = $1", "FailedPrecondition"],
  ] as const) {
    test(`a PIN sign-in racing ${change} waits for it and opens no session`, async () => {
      const phone = testPhone();
      const u = await h.signUpWithPin(phone, "6142");
      const { challengeId, otp } = await h.startVerification(phone);
      const step = await h.api().verifyPhoneOtp({ challengeId, otp });
      const { pool } = h.t.db;
      const gate = await pool.connect();
      const blocker = await pool.connect();
      const trigger = `auth_test_gate_${u.userId.replaceAll("-", "")}`;
      try {
        await gate.query("SELECT pg_advisory_lock(6142)");
        await pool.query(`CREATE FUNCTION auth.${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock(6142); RETURN NEW; END $$`);
        await pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE ON auth.pin_sessions FOR EACH ROW WHEN (NEW.pin_session_id = '${step.pinSessionId}'::uuid) EXECUTE FUNCTION auth.${trigger}()`);
        const signIn = h.api().verifyPin({ pinSessionId: step.pinSessionId, pin: "6142" }).then(() => "ok", (e) => Code[ConnectError.from(e).code]);
        const waiting = async (onAdvisory: boolean) => {
          for (let i = 0; i < 500; i++) {
            const { rows } = await pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND (wait_event = 'advisory') = $1", [onAdvisory]);
            if (rows[0].n > 0) return;
            await new Promise((r) => setTimeout(r, 10));
          }
          throw new Error(`nothing waits on ${onAdvisory ? "the gate" : "a row"}`);
        };
        await waiting(true); // at the gate
        await blocker.query("BEGIN");
        await blocker.query("SELECT 1 FROM auth.users WHERE user_id = $1 FOR UPDATE", [u.userId]);
        await gate.query("SELECT pg_advisory_unlock(6142)");
        await waiting(false); // the sign-in, now on the user's row
        await blocker.query(apply, [u.userId]);
        await blocker.query("UPDATE auth.sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", [u.userId]);
        await blocker.query("COMMIT");
        assert.equal(await signIn, refused);
        const { rows } = await pool.query("SELECT count(*)::int AS n FROM auth.sessions WHERE user_id = $1 AND revoked_at IS NULL", [u.userId]);
        assert.equal(rows[0].n, 0);
      } finally {
        await blocker.query("ROLLBACK").catch(() => undefined);
        blocker.release();
        gate.release();
        await pool.query(`DROP TRIGGER IF EXISTS ${trigger} ON auth.pin_sessions`);
        await pool.query(`DROP FUNCTION IF EXISTS auth.${trigger}()`);
      }
    });
  }

  test("the last admin keeps the role", async () => {
    assert.match(await message(h.admin(adminToken).setUserRoles({ userId: adminId, roles: [Role.WORKER] }, await h.stepUp(adminToken, "7391"))), /last admin/);
  });

  test("an admin who can sign in is always left: not blocked by their own id in capitals, nor by two admins blocking each other at once; a blocked admin counts for none", async () => {
    // Before, the id in capitals passed the check, and the only admin was locked out for good.
    assert.match(await message(h.admin(adminToken).blockUser({ userId: adminId.toUpperCase(), reason: "oops" })), /block yourself/);
    const second = await h.signUpWithPin(testPhone(), "6142");
    await h.admin(adminToken).setUserRoles({ userId: second.userId, roles: [Role.WORKER, Role.ADMIN] }, await h.stepUp(adminToken, "7391"));
    const secondToken = (await h.api().refreshSession({ refreshToken: second.tokens.refreshToken })).tokens!.accessToken;
    // Each blocks the other at once: before, both committed, and nobody could sign in to the console again.
    const [byFirst, bySecond] = await Promise.all([
      fails(h.admin(adminToken).blockUser({ userId: second.userId, reason: "race" })),
      fails(h.admin(secondToken).blockUser({ userId: adminId, reason: "race" })),
    ]);
    assert.deepEqual([byFirst, bySecond].sort(), ["FailedPrecondition", "ok"]);
    const standing = byFirst === "ok" ? { id: adminId, token: adminToken, pin: "7391" } : { id: second.userId, token: secondToken, pin: "6142" };
    // The other is blocked: it counts for no admin, so the one standing keeps the role.
    assert.match(await message(h.admin(standing.token).setUserRoles({ userId: standing.id, roles: [Role.WORKER] }, await h.stepUp(standing.token, standing.pin))), /last admin/);
    // Every admin blocked (by hand in the database): a setup token is the way back in (before, refused for good).
    await h.t.db.pool.query("UPDATE auth.users SET blocked_at = now() WHERE user_id = $1", [standing.id]);
    assert.ok(await issueSetupToken(h.t.db.pool));
  });
});
