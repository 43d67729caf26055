import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client, createClient } from "@connectrpc/connect";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { VenueManagerChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { OwnerKind, QrCodeStatus } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { QrInternalService, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { callerHeaders, type Role } from "@ttip/runtime";
import { testPhone } from "@ttip/runtime/testing";
import { eventually, period, startHarness, ts, type Harness } from "./setup.js";

const rejects = (code: Code, message: RegExp) => (e: ConnectError) => {
  assert.equal(Code[e.code], Code[code], e.message);
  assert.match(e.message, message);
  return true;
};

describe("a venue's co-managers", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h.close();
  });

  /** A user with an account in auth (as sign-up makes one), by their number "07…". */
  async function account(roles: Role[] = ["worker"]) {
    const phone = testPhone({ format: "07" });
    const userId = randomUUID();
    await h.t.db.pool.query("INSERT INTO auth.users (user_id, phone, roles) VALUES ($1, $2, $3)", [userId, `254${phone.slice(1)}`, roles]);
    return { userId, phone, api: h.t.client(VenueService, { subject: userId, roles: [...roles, "venue_manager"] }) };
  }

  /** The link a staff invitation's SMS carries (a staff link does not check who accepts it). */
  const staffLink = (memberId: string) => eventually(async () => {
    const { rows: [row] } = await h.t.db.pool.query("SELECT phone FROM venue.members WHERE member_id = $1", [memberId]);
    const sms = h.sim.sent.filter((m) => m.to.replace(/^\+/, "") === row.phone).pop();
    return sms ? /\/join\/([A-Za-z0-9_-]+)/.exec(sms.body)?.[1] : undefined;
  }, "staff invitation SMS");

  /** Invites a number to manage the venue; the link its SMS carries (the last one sent to that number). */
  async function inviteManager(v: { venueId: string; api: Client<typeof VenueService> }, phone: string, name: string, key = randomUUID()) {
    const req = { venueId: v.venueId, phone, displayName: name, idempotencyKey: key };
    let res = await v.api.inviteManager(req);
    // Its SMS call has a 5 s deadline, which a loaded machine can miss: a manager invites again under the same key.
    for (let again = 0; !res.invitationSent && again < 5; again++) res = await v.api.inviteManager(req);
    assert.ok(res.invitationSent, "invitation sent");
    const msisdn = phone.replace(/^\+/, "").replace(/^0/, "254");
    // The link the invitation holds now: an earlier SMS to the number carries one since replaced.
    const token = await eventually(async () => {
      const { rows: [row] } = await h.t.db.pool.query("SELECT token_hash FROM venue.manager_invitations WHERE invitation_id = $1", [res.invitation!.invitationId]);
      const links = h.sim.sent.filter((m) => m.to.replace(/^\+/, "") === msisdn).map((m) => /\/join\/manage\/([A-Za-z0-9_-]+)/.exec(m.body)?.[1]);
      return links.find((link) => link && createHash("sha256").update(link).digest("hex") === row?.token_hash);
    }, "manager invitation SMS");
    return { invitation: res.invitation!, token };
  }

  test("invited by SMS, accepted only by the invited number's holder, who manages the venue as fully; a venue keeps its last manager", async () => {
    const v = await h.newVenue("Java House Kimathi");
    const njeri = await account();
    const other = await account();
    const { invitation, token } = await inviteManager(v, njeri.phone, "Njeri");
    assert.equal(invitation.phoneMasked, `2547******${njeri.phone.slice(-2)}`);
    const anyone = h.t.client(VenueService);
    assert.equal((await anyone.getManagerInvitation({ token })).venueName, "Java House Kimathi");
    await assert.rejects(anyone.acceptManagerInvitation({ token }), (e: ConnectError) => e.code === Code.Unauthenticated);
    await assert.rejects(njeri.api.listMembers({ venueId: v.venueId }), rejects(Code.PermissionDenied, /manager/));
    // A forwarded link manages nothing.
    await assert.rejects(other.api.acceptManagerInvitation({ token }), rejects(Code.PermissionDenied, /another number/));

    const accepted = await njeri.api.acceptManagerInvitation({ token });
    assert.deepEqual([accepted.venueId, accepted.venueName], [v.venueId, "Java House Kimathi"]);
    const { rows: [roles] } = await h.t.db.pool.query("SELECT roles FROM auth.users WHERE user_id = $1", [njeri.userId]);
    assert.deepEqual(roles.roles, ["worker", "venue_manager"]);
    // A repeat (a lost answer) answers the same; the link is spent for anyone else.
    assert.equal((await njeri.api.acceptManagerInvitation({ token })).venueId, v.venueId);
    await assert.rejects(other.api.acceptManagerInvitation({ token }), rejects(Code.FailedPrecondition, /someone else/));
    await assert.rejects(anyone.getManagerInvitation({ token }), rejects(Code.NotFound, /token/));

    // As fully as the venue's creator: its staff, its split rules, its managers.
    await njeri.api.inviteMember({ venueId: v.venueId, phone: testPhone({ format: "07" }), displayName: "Otieno", roleId: "kitchen", idempotencyKey: randomUUID() });
    assert.equal((await njeri.api.listMembers({ venueId: v.venueId })).members.length, 1);
    const seen = await njeri.api.listManagers({ venueId: v.venueId });
    assert.deepEqual(seen.managers.map((m) => [m.userId, m.displayName, m.isYou]), [[v.managerId, "", false], [njeri.userId, "Njeri", true]]);
    assert.equal(seen.managers[1].phoneMasked, invitation.phoneMasked);
    assert.deepEqual(seen.invitations, []);

    // The creator steps down; the last manager cannot.
    await v.api.removeManager({ venueId: v.venueId, userId: v.managerId });
    await assert.rejects(v.api.listMembers({ venueId: v.venueId }), rejects(Code.PermissionDenied, /manager/));
    await assert.rejects(njeri.api.removeManager({ venueId: v.venueId, userId: njeri.userId }), rejects(Code.FailedPrecondition, /last manager/));
    await assert.rejects(njeri.api.removeManager({ venueId: v.venueId, userId: other.userId }), rejects(Code.NotFound, /user_id/));
    const { records } = await njeri.api.listAuditRecords({ venueId: v.venueId });
    const actions = records.map((r) => r.action);
    for (const a of ["manager.invited", "manager.joined", "manager.removed"]) assert.ok(actions.includes(a), `${a} in ${actions}`);
    assert.equal(actions.filter((a) => a === "manager.removed").length, 1, "the refused removal left no record");
    // Told to the managers (notification) through the outbox: the joining and the stepping down, not the refused removal.
    const { rows: announced } = await h.t.db.pool.query<{ payload: Buffer }>("SELECT payload FROM venue.outbox WHERE subject = 'ttip.venue.manager_changed' ORDER BY seq");
    const told = announced.map((r) => fromBinary(VenueManagerChangedSchema, r.payload)).filter((e) => e.venueId === v.venueId);
    assert.deepEqual(told.map((e) => [e.change, e.userId, e.displayName, e.actorId]), [
      ["joined", njeri.userId, "Njeri", njeri.userId],
      ["removed", v.managerId, "", v.managerId],
    ]);
  });

  test("a removal asked again (its answer lost, or at once) is answered as done, recorded once; one whose record was lost is recorded then", async () => {
    const v = await h.newVenue("Tamarind Tree");
    const joined = async (name: string) => {
      const who = await account();
      await who.api.acceptManagerInvitation({ token: (await inviteManager(v, who.phone, name)).token });
      return who;
    };
    const njeri = await joined("Njeri");
    await v.api.removeManager({ venueId: v.venueId, userId: njeri.userId });
    // Before, NOT_FOUND "does not manage venue": the screen said the removal failed.
    await v.api.removeManager({ venueId: v.venueId, userId: njeri.userId });
    // Removed at qr by a try whose own records were not committed (venue's commit failed after qr's answer).
    const wambui = await joined("Wambui");
    await createClient(QrInternalService, h.t.ctx.peers("qr")).removeVenueManager({ venueId: v.venueId, userId: wambui.userId });
    await v.api.removeManager({ venueId: v.venueId, userId: wambui.userId });
    // Two at once (a retry while the first runs): one after the other, the second finds the first's record.
    const kamau = await joined("Kamau");
    await Promise.all([0, 1].map(() => v.api.removeManager({ venueId: v.venueId, userId: kamau.userId })));
    const { rows } = await h.t.db.pool.query<{ user_id: string }>(
      "SELECT detail->>'user_id' AS user_id FROM venue.audit_records WHERE venue_id = $1 AND action = 'manager.removed' ORDER BY sequence", [v.venueId]);
    // Before, Wambui's removal had no record, nor a message to the managers.
    assert.deepEqual(rows.map((r) => r.user_id), [njeri.userId, wambui.userId, kamau.userId]);
    const { rows: announced } = await h.t.db.pool.query<{ payload: Buffer }>("SELECT payload FROM venue.outbox WHERE subject = 'ttip.venue.manager_changed' ORDER BY seq");
    const removed = announced.map((r) => fromBinary(VenueManagerChangedSchema, r.payload)).filter((e) => e.venueId === v.venueId && e.change === "removed");
    assert.deepEqual(removed.map((e) => e.userId), [njeri.userId, wambui.userId, kamau.userId]);
    // Never a manager here: still NOT_FOUND.
    await assert.rejects(v.api.removeManager({ venueId: v.venueId, userId: (await account()).userId }), rejects(Code.NotFound, /user_id/));
  });

  test("a new invitation to the same number replaces the link; a cancelled one opens nothing; bad input changes nothing", async () => {
    const v = await h.newVenue("Artcaffe Westgate");
    const amina = await account();
    const first = await inviteManager(v, amina.phone, "Amina");
    const secondKey = randomUUID();
    const second = await inviteManager(v, `+254${amina.phone.slice(1)}`, "Amina W.", secondKey);
    assert.equal(second.invitation.invitationId, first.invitation.invitationId, "one pending invitation per number");
    assert.notEqual(second.token, first.token);
    // The second repeated under its key (found by the number, not by a key of its own): its link stands.
    const hash = async () => (await h.t.db.pool.query("SELECT token_hash FROM venue.manager_invitations WHERE invitation_id = $1", [first.invitation.invitationId])).rows[0].token_hash;
    const linkBefore = await hash();
    assert.ok((await v.api.inviteManager({ venueId: v.venueId, phone: amina.phone, displayName: "Amina W.", idempotencyKey: secondKey })).invitationSent);
    assert.equal(await hash(), linkBefore, "no new link texted");
    await assert.rejects(amina.api.acceptManagerInvitation({ token: first.token }), rejects(Code.NotFound, /token/));
    const listed = await v.api.listManagers({ venueId: v.venueId });
    assert.deepEqual(listed.invitations.map((i) => i.displayName), ["Amina W."]);

    await v.api.cancelManagerInvitation({ venueId: v.venueId, invitationId: second.invitation.invitationId });
    await assert.rejects(amina.api.acceptManagerInvitation({ token: second.token }), rejects(Code.NotFound, /token/));
    await assert.rejects(v.api.cancelManagerInvitation({ venueId: v.venueId, invitationId: second.invitation.invitationId }), rejects(Code.NotFound, /invitation_id/));
    assert.deepEqual((await v.api.listManagers({ venueId: v.venueId })).invitations, []);

    const key = randomUUID();
    await v.api.inviteManager({ venueId: v.venueId, phone: testPhone({ format: "07" }), displayName: "Baraka", idempotencyKey: key });
    const before = await h.t.db.pool.query("SELECT count(*)::int AS n FROM venue.manager_invitations WHERE venue_id = $1", [v.venueId]);
    await assert.rejects(v.api.inviteManager({ venueId: v.venueId, phone: testPhone({ format: "07" }), displayName: "Baraka", idempotencyKey: key }), (e: ConnectError) => e.code !== Code.Internal && /key/.test(e.message));
    await assert.rejects(v.api.inviteManager({ venueId: v.venueId, phone: "0812", displayName: "x", idempotencyKey: randomUUID() }), rejects(Code.InvalidArgument, /phone/));
    await assert.rejects(v.api.inviteManager({ venueId: v.venueId, phone: testPhone({ format: "07" }), displayName: "", idempotencyKey: randomUUID() }), rejects(Code.InvalidArgument, /display_name/));
    const outsider = await account();
    await assert.rejects(outsider.api.inviteManager({ venueId: v.venueId, phone: testPhone({ format: "07" }), displayName: "x", idempotencyKey: randomUUID() }), rejects(Code.PermissionDenied, /manager/));
    await assert.rejects(outsider.api.listManagers({ venueId: v.venueId }), rejects(Code.PermissionDenied, /manager/));
    const after = await h.t.db.pool.query("SELECT count(*)::int AS n FROM venue.manager_invitations WHERE venue_id = $1", [v.venueId]);
    assert.equal(after.rows[0].n, before.rows[0].n);

    // A blocked account is refused before the venue is theirs.
    const blocked = await account();
    const link = await inviteManager(v, blocked.phone, "Blocked");
    await h.t.db.pool.query("UPDATE auth.users SET blocked_at = now() WHERE user_id = $1", [blocked.userId]);
    await assert.rejects(blocked.api.acceptManagerInvitation({ token: link.token }), rejects(Code.FailedPrecondition, /blocked/));
    assert.deepEqual((await v.api.listManagers({ venueId: v.venueId })).managers.map((m) => m.userId), [v.managerId]);
  });

  test("a manager is not on the venue's staff, and a member of its staff is not its manager: neither invitation crosses", async () => {
    const v = await h.newVenue("Nyama Mama");
    // A number invited to the staff is not invited to manage.
    const staffPhone = testPhone({ format: "07" });
    await v.api.inviteMember({ venueId: v.venueId, phone: staffPhone, displayName: "Kamau", roleId: "bar", idempotencyKey: randomUUID() });
    await assert.rejects(v.api.inviteManager({ venueId: v.venueId, phone: staffPhone, displayName: "Kamau", idempotencyKey: randomUUID() }), rejects(Code.FailedPrecondition, /phone: .*staff/));
    // A manager's number is not invited to the staff.
    const wambui = await account();
    await wambui.api.acceptManagerInvitation({ token: (await inviteManager(v, wambui.phone, "Wambui")).token });
    await assert.rejects(v.api.inviteMember({ venueId: v.venueId, phone: wambui.phone, displayName: "Wambui", roleId: "bar", idempotencyKey: randomUUID() }), rejects(Code.FailedPrecondition, /phone: .*manages/));
    // Nor does a manager take a staff invitation sent to another number (a staff link does not check the number).
    const { member } = await v.api.inviteMember({ venueId: v.venueId, phone: testPhone({ format: "07" }), displayName: "Wambui 2", roleId: "bar", idempotencyKey: randomUUID() });
    const staffToken = await staffLink(member!.memberId);
    await assert.rejects(wambui.api.acceptInvitation({ token: staffToken }), rejects(Code.FailedPrecondition, /you manage this venue/));
    // A member of the staff does not take a manager's invitation sent to their number.
    const juma = await account();
    const managerLink = await inviteManager(v, juma.phone, "Juma");
    await juma.api.acceptInvitation({ token: staffToken });
    // The staff list says which number accepted the link sent to another: shares go to that account.
    const joinedFrom = (await v.api.listMembers({ venueId: v.venueId })).members.find((m) => m.memberId === member!.memberId);
    assert.equal(joinedFrom?.acceptedPhoneMasked, `2547******${juma.phone.slice(-2)}`);
    const same = await account();
    const { member: sameMember } = await v.api.inviteMember({ venueId: v.venueId, phone: same.phone, displayName: "Same", roleId: "bar", idempotencyKey: randomUUID() });
    await same.api.acceptInvitation({ token: await staffLink(sameMember!.memberId) });
    assert.equal((await v.api.listMembers({ venueId: v.venueId })).members.find((m) => m.memberId === sameMember!.memberId)?.acceptedPhoneMasked, "", "accepted from the invited number: nothing to say");
    await assert.rejects(juma.api.acceptManagerInvitation({ token: managerLink.token }), rejects(Code.FailedPrecondition, /staff/));
    const { managers } = await v.api.listManagers({ venueId: v.venueId });
    assert.deepEqual(managers.map((m) => m.userId), [v.managerId, wambui.userId]);
  });

  test("both invitations accepted at once by one person: one of them is refused", async () => {
    for (let round = 0; round < 3; round++) {
      const v = await h.newVenue(`Mwembe Tayari ${round}`);
      const kioko = await account();
      const { member } = await v.api.inviteMember({ venueId: v.venueId, phone: testPhone({ format: "07" }), displayName: "Kioko", roleId: "bar", idempotencyKey: randomUUID() });
      const staffToken = await staffLink(member!.memberId);
      const { token } = await inviteManager(v, kioko.phone, "Kioko");
      const outcomes = await Promise.allSettled([kioko.api.acceptInvitation({ token: staffToken }), kioko.api.acceptManagerInvitation({ token })]);
      assert.equal(outcomes.filter((o) => o.status === "fulfilled").length, 1, `round ${round}: ${outcomes.map((o) => o.status === "rejected" ? (o.reason as Error).message : "ok")}`);
    }
  });

  test("an admin changes a venue they do not manage only with the device step-up, and the console's audit log has it; its own managers need none and stay out of that log", async () => {
    const v = await h.newVenue("Kengeles Lavington");
    const adminId = randomUUID();
    const bare = h.t.client(VenueService, { subject: adminId, roles: ["admin"] });
    const steppedUp = h.t.client(VenueService, { subject: adminId, roles: ["admin"], stepUp: true });
    const consoleLog = async () =>
      (await h.t.db.pool.query("SELECT action, actor_user_id, target, service, detail FROM auth.audit_events WHERE target = $1 ", [`venue:${v.venueId}`])).rows;
    const managerRows = async () => (await h.t.db.pool.query("SELECT count(*)::int AS n FROM venue.manager_invitations WHERE venue_id = $1", [v.venueId])).rows[0].n;

    // Reading needs no step-up; a change without one is refused and changes nothing.
    assert.equal((await bare.listManagers({ venueId: v.venueId })).managers.length, 1);
    const invite = { venueId: v.venueId, phone: testPhone({ format: "07" }), displayName: "Baraka", idempotencyKey: randomUUID() };
    await assert.rejects(bare.inviteManager(invite), rejects(Code.PermissionDenied, /device step-up/));
    await assert.rejects(bare.removeManager({ venueId: v.venueId, userId: v.managerId }), rejects(Code.PermissionDenied, /device step-up/));
    assert.equal(await managerRows(), 0);

    const { invitation } = await steppedUp.inviteManager(invite);
    await steppedUp.cancelManagerInvitation({ venueId: v.venueId, invitationId: invitation!.invitationId });
    await steppedUp.putRole({ venueId: v.venueId, roleId: "sommelier", name: "Sommelier", points: 3 });
    // The venue's own manager: no step-up, and nothing in the console's log.
    await v.api.putRole({ venueId: v.venueId, roleId: "runner", name: "Runner", points: 1 });

    const rows = await eventually(async () => {
      const r = await consoleLog();
      return r.length >= 3 ? r : undefined;
    }, "the admin's actions in auth's audit log");
    assert.deepEqual(rows.map((r) => [AuditAction[r.action], r.actor_user_id, r.service, r.detail.split(" ")[0]]).sort(), [
      ["VENUE_MANAGERS_CHANGED", adminId, "venue", "manager.invitation_cancelled"],
      ["VENUE_MANAGERS_CHANGED", adminId, "venue", "manager.invited"],
      ["VENUE_STAFF_CHANGED", adminId, "venue", "role.changed"],
    ]);
    assert.ok(!rows.some((r) => r.detail.includes(invite.phone.slice(1))), "no phone number in the console's log");
    const { rows: trail } = await h.t.db.pool.query("SELECT actor, action FROM venue.audit_records WHERE venue_id = $1 AND action = 'role.changed' ORDER BY sequence", [v.venueId]);
    assert.deepEqual(trail.map((r) => r.actor), [adminId, v.managerId], "both in the venue's own trail");
  });

  test("a waiter promoted to manager sets nothing of their own old membership (hours, role, its role's points, fixed share) and confirms no split that pays it: another manager does", async () => {
    const v = await h.newVenue("Pilipili Beach");
    const wanjiru = await account();
    const dayAgo = new Date(Date.now() - 86_400_000);
    const old = await h.join(v, "Wanjiru", undefined, dayAgo, wanjiru.userId);
    await v.api.removeMember({ venueId: v.venueId, memberId: old.memberId, reason: "promoted" });
    await wanjiru.api.acceptManagerInvitation({ token: (await inviteManager(v, wanjiru.phone, "Wanjiru")).token });
    const hourAgo = new Date(Date.now() - 3_600_000);
    const shift = (memberId: string) => ({ venueId: v.venueId, memberId, startedAt: ts(new Date(hourAgo.getTime() - 7_200_000)), endedAt: ts(hourAgo), idempotencyKey: randomUUID() });
    const own = rejects(Code.PermissionDenied, /your own membership/);
    // Before, each went through: she set her own pay for the period she worked, then confirmed its split.
    await assert.rejects(wanjiru.api.recordShift(shift(old.memberId)), own);
    await assert.rejects(wanjiru.api.updateMember({ venueId: v.venueId, memberId: old.memberId, roleId: "bar" }), own);
    await assert.rejects(wanjiru.api.putRole({ venueId: v.venueId, roleId: "front_of_house", name: "Front of house", points: 1000 }), rejects(Code.PermissionDenied, /role of your own membership/));
    const other = await h.join(v, "Baraka", undefined, dayAgo);
    await assert.rejects(wanjiru.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.FIXED_PERCENTAGES, idempotencyKey: randomUUID(),
      fixedShares: [{ memberId: old.memberId, basisPoints: 9_999 }, { memberId: other.memberId, basisPoints: 1 }] }), own);
    const csv = new TextEncoder().encode(`member,start,end\n${old.memberId},2026-11-24 08:00,2026-11-24 12:00\n`);
    const imported = await wanjiru.api.importShifts({ venueId: v.venueId, csv, dryRun: true });
    assert.equal(imported.imported, 0);
    assert.match(imported.rejected[0]?.reason ?? "", /your own membership/);
    // The other manager records her hours.
    assert.ok((await v.api.recordShift(shift(old.memberId))).shift);
    assert.ok((await wanjiru.api.recordShift(shift(other.memberId))).shift, "and she records others'");
    // Nor does she confirm a split that pays her (the other roles' points and the rule still weigh it): the other manager does.
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.EQUAL_ON_SHIFT, idempotencyKey: randomUUID() });
    await h.tipPool(v.venueId, 10_000n);
    const p = period(dayAgo, new Date());
    await assert.rejects(wanjiru.api.confirmDistribution({ venueId: v.venueId, period: p }), rejects(Code.PermissionDenied, /this split pays you/));
    const { distribution } = await v.api.confirmDistribution({ venueId: v.venueId, period: p });
    assert.deepEqual(distribution!.shares.map((x) => [x.memberId, x.amount!.amountMinor]).sort(), [[old.memberId, 5_000n], [other.memberId, 5_000n]].sort());
  });

  test("qr's staff list follows the venue's, whoever sent the invitation: an admin's invitee may get a code there, and a worker taken off by another manager loses theirs", async () => {
    const v = await h.newVenue("Tamarind Tree");
    const onQrStaff = async (workerId: string) =>
      (await h.t.db.pool.query("SELECT 1 FROM qr.venue_staff WHERE venue_id = $1 AND worker_id = $2", [v.venueId, workerId])).rowCount === 1;
    const codeAt = async (workerId: string) => {
      const qr = createClient(QrService, h.t.ctx.peers("qr"));
      const asWorker = { headers: callerHeaders(workerId, "worker") };
      await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: workerId, displayName: "Staff", currency: "KES" }, asWorker);
      return qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: workerId, venueId: v.venueId, idempotencyKey: randomUUID() }, asWorker);
    };
    // Invited by an admin, who manages no venue.
    const admin = h.t.client(VenueService, { subject: randomUUID(), roles: ["admin"], stepUp: true });
    const byAdmin = await h.join({ venueId: v.venueId, api: admin }, "Achieng");
    assert.ok(await onQrStaff(byAdmin.workerId), "an admin's invitee is on qr's staff");

    // Invited by the venue's creator, who then stops managing it; the co-manager takes the worker off.
    const wambui = await h.join(v, "Wambui");
    const njeri = await account();
    await njeri.api.acceptManagerInvitation({ token: (await inviteManager(v, njeri.phone, "Njeri")).token });
    await njeri.api.removeManager({ venueId: v.venueId, userId: v.managerId });
    const { qrCode } = await codeAt(wambui.workerId);
    await njeri.api.removeMember({ venueId: v.venueId, memberId: wambui.memberId, reason: "left" });
    assert.equal(await onQrStaff(wambui.workerId), false, "off qr's staff");
    const { rows: [code] } = await h.t.db.pool.query("SELECT status FROM qr.qr_codes WHERE qr_code_id = $1", [qrCode!.qrCodeId]);
    assert.equal(code.status, QrCodeStatus.REVOKED, "their code at the venue takes no more tips");

    // Taken off and back again: the old membership's removal, repeated, leaves the new one's code alone.
    await njeri.api.removeMember({ venueId: v.venueId, memberId: byAdmin.memberId, reason: "season over" });
    assert.equal(await onQrStaff(byAdmin.workerId), false);
    await h.join({ venueId: v.venueId, api: njeri.api }, "Achieng", undefined, undefined, byAdmin.workerId);
    const { qrCode: again } = await codeAt(byAdmin.workerId);
    await njeri.api.removeMember({ venueId: v.venueId, memberId: byAdmin.memberId, reason: "season over" });
    assert.ok(await onQrStaff(byAdmin.workerId), "still on qr's staff");
    const { rows: [kept] } = await h.t.db.pool.query("SELECT status FROM qr.qr_codes WHERE qr_code_id = $1", [again!.qrCodeId]);
    assert.equal(kept.status, QrCodeStatus.ACTIVE);
  });
});
