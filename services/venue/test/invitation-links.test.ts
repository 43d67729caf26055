import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { MemberStatus } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { AdjustableClock } from "@ttip/runtime";
import { testPhone } from "@ttip/runtime/testing";
import { LINK_TTL_MS, RESEND_SPACING_MS } from "../src/invitation-link.js";
import { eventually, startHarness, type Harness } from "./setup.js";

const rejects = (code: Code, message: RegExp) => (e: ConnectError) => {
  assert.equal(Code[e.code], Code[code], e.message);
  assert.match(e.message, message);
  return true;
};
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

describe("invitation links: they expire, and a pending invitation is texted a new one", () => {
  const clock = new AdjustableClock();
  let h: Harness;
  before(async () => {
    h = await startHarness({ clock });
  });
  after(async () => {
    await h.close();
  });

  /** The links texted to a number "07…", oldest first (`path`: "" for the staff's, "manage/" for a manager's). */
  const linksTo = (phone: string, path: "" | "manage/") => h.sim.sent
    .filter((m) => m.to.replace(/^\+/, "") === `254${phone.slice(1)}`)
    .map((m) => new RegExp(`/join/${path}([A-Za-z0-9_-]{16,})`).exec(m.body)?.[1])
    .filter((link): link is string => !!link);
  /** The link the row holds now, once its SMS has arrived. */
  const currentLink = (phone: string, path: "" | "manage/", hashNow: () => Promise<string | null>) =>
    eventually(async () => {
      const hash = await hashNow();
      return linksTo(phone, path).find((link) => sha256(link) === hash);
    }, "the invitation's SMS");
  const staffHash = (memberId: string) => async () =>
    (await h.t.db.pool.query("SELECT invite_token_hash FROM venue.members WHERE member_id = $1", [memberId])).rows[0]?.invite_token_hash ?? null;
  const managerHash = (invitationId: string) => async () =>
    (await h.t.db.pool.query("SELECT token_hash FROM venue.manager_invitations WHERE invitation_id = $1", [invitationId])).rows[0]?.token_hash ?? null;

  // First: the tests after it move the services' clock weeks ahead of the database's, which removals read.
  test("a staff invitation is withdrawn, one for next month too (before, refused as 'before they joined'); a hire removed before their first day never begins", async () => {
    const v = await h.newVenue("Mawimbi Beach Bar");
    const nextMonth = new Date(clock.now() + 30 * 86_400_000);
    const startsAt = { seconds: BigInt(Math.floor(nextMonth.getTime() / 1000)), nanos: 0 };
    const phone = testPhone({ format: "07" });
    const invite = (displayName: string, number = testPhone({ format: "07" })) =>
      v.api.inviteMember({ venueId: v.venueId, phone: number, displayName, roleId: "front_of_house", joinedAt: startsAt, idempotencyKey: randomUUID() });
    const { member: pending } = await invite("Halima", phone);
    const link = await currentLink(phone, "", staffHash(pending!.memberId));

    const { member: cancelled } = await v.api.removeMember({ venueId: v.venueId, memberId: pending!.memberId });
    assert.equal(MemberStatus[cancelled!.status], MemberStatus[MemberStatus.CANCELLED]);
    assert.equal(cancelled!.invitationExpiresAt, undefined);
    await assert.rejects(h.t.client(VenueService).getInvitation({ token: link }), rejects(Code.NotFound, /token/));
    assert.deepEqual((await v.api.listMembers({ venueId: v.venueId })).members.map((m) => m.displayName), [], "not on the current staff");
    assert.deepEqual((await v.api.listMembers({ venueId: v.venueId, includeLeft: true })).members.map((m) => [m.displayName, MemberStatus[m.status]]), [["Halima", "CANCELLED"]]);
    const { rows: audit } = await h.t.db.pool.query("SELECT action FROM venue.audit_records WHERE venue_id = $1 ORDER BY sequence", [v.venueId]);
    assert.deepEqual(audit.map((r) => r.action), ["member.invited", "member.invitation_cancelled"]);
    // The number may be invited again.
    assert.equal((await invite("Halima", phone)).member!.status, MemberStatus.INVITED);

    // Accepted, then the hire falls through before the first day: the membership ends at its start, at once.
    const barakaPhone = testPhone({ format: "07" });
    const joiner = await invite("Baraka", barakaPhone);
    const workerId = randomUUID();
    await h.asWorker(workerId).acceptInvitation({ token: await currentLink(barakaPhone, "", staffHash(joiner.member!.memberId)) });
    const { member: ended } = await v.api.removeMember({ venueId: v.venueId, memberId: joiner.member!.memberId, reason: "took another job" });
    assert.equal(MemberStatus[ended!.status], MemberStatus[MemberStatus.LEFT]);
    assert.equal(timestampDate(ended!.leftAt!).getTime(), timestampDate(ended!.joinedAt!).getTime());
    assert.deepEqual((await h.asWorker(workerId).listMyVenues({})).memberships.map((m) => MemberStatus[m.status]), ["LEFT"]);
    assert.ok(!(await v.api.listMembers({ venueId: v.venueId })).members.some((m) => m.displayName === "Baraka"), "not on the current staff");
    // A member already started still cannot be taken off before they joined.
    const started = await h.join(v, "Zuberi");
    await assert.rejects(v.api.removeMember({ venueId: v.venueId, memberId: started.memberId, leftAt: { seconds: BigInt(Math.floor(clock.now() / 1000) - 86_400), nanos: 0 } }),
      rejects(Code.InvalidArgument, /^\[invalid_argument\] left_at: before they joined/));
  });

  test("staff: invited again from the list, a new link voids the old, at most once a minute, a repeat of its key texts nothing; an expired link is refused and a new one works", async () => {
    const v = await h.newVenue("Kilimanjaro Bar");
    const phone = testPhone({ format: "07" });
    const invite = { venueId: v.venueId, phone, displayName: "Wanjiru", roleId: "front_of_house", idempotencyKey: randomUUID() };
    const invited = await v.api.inviteMember(invite);
    assert.ok(invited.invitationSent);
    const memberId = invited.member!.memberId;
    const sentAt = clock.now();
    const expires = timestampDate(invited.member!.invitationExpiresAt!).getTime();
    assert.ok(Math.abs(expires - (sentAt + LINK_TTL_MS)) < 5_000, `expires ${new Date(expires).toISOString()}`);
    const first = await currentLink(phone, "", staffHash(memberId));
    // The invitation repeated (its answer lost) texts nothing more and keeps the link texted: before, a new link
    // went out each time, voiding the one the worker held.
    const textedFirst = linksTo(phone, "").length;
    const hashFirst = sha256(first);
    const repeated = await v.api.inviteMember(invite);
    assert.deepEqual([repeated.member!.memberId, repeated.invitationSent], [memberId, true]);
    assert.deepEqual([linksTo(phone, "").length, await staffHash(memberId)()], [textedFirst, hashFirst]);
    // Under that key with another start: another request, refused (before, answered with the first as if taken).
    await assert.rejects(v.api.inviteMember({ ...invite, joinedAt: timestampFromDate(new Date(clock.now() + 86_400_000)) }),
      (e: ConnectError) => e.code === Code.AlreadyExists && /key/.test(e.message));
    const anyone = h.t.client(VenueService);
    assert.deepEqual([(await anyone.getInvitation({ token: first })).venueName, (await anyone.getInvitation({ token: first })).expired], ["Kilimanjaro Bar", false]);

    // Inviting the number again under a new key is refused, naming where to send it again (before, it said "on the staff").
    await assert.rejects(v.api.inviteMember({ venueId: v.venueId, phone, displayName: "Wanjiru", roleId: "front_of_house", idempotencyKey: randomUUID() }),
      rejects(Code.AlreadyExists, /^\[already_exists\] phone: this number is already invited .*send its invitation again/));

    // Within a minute of the first SMS: refused, with when to retry; nothing changed.
    const key = randomUUID();
    await assert.rejects(v.api.resendInvitation({ venueId: v.venueId, memberId, idempotencyKey: key }), (e: ConnectError) => {
      rejects(Code.ResourceExhausted, /less than a minute ago/)(e);
      assert.ok(Number(e.metadata.get("retry-after")) > 0 && Number(e.metadata.get("retry-after")) <= RESEND_SPACING_MS / 1000);
      return true;
    });
    assert.equal(await staffHash(memberId)(), sha256(first));

    clock.advance(RESEND_SPACING_MS);
    const resent = await v.api.resendInvitation({ venueId: v.venueId, memberId, idempotencyKey: key });
    assert.ok(resent.invitationSent);
    assert.equal(resent.member!.status, MemberStatus.INVITED);
    const second = await currentLink(phone, "", staffHash(memberId));
    assert.notEqual(second, first);
    await assert.rejects(anyone.getInvitation({ token: first }), rejects(Code.NotFound, /token/));
    // A repeat of the key (a lost answer) texts nothing more and keeps the link.
    const texted = linksTo(phone, "").length;
    assert.ok((await v.api.resendInvitation({ venueId: v.venueId, memberId, idempotencyKey: key })).invitationSent);
    assert.equal(await staffHash(memberId)(), sha256(second));
    assert.equal(linksTo(phone, "").length, texted);
    // The invitation's own key, repeated after that (a queued retry): the same. Before, past the minute it texted a new
    // link under it, voiding the resent one the worker held (within it, refused as too soon).
    clock.advance(RESEND_SPACING_MS);
    assert.ok((await v.api.inviteMember(invite)).invitationSent);
    assert.equal(await staffHash(memberId)(), sha256(second));
    assert.equal(linksTo(phone, "").length, texted);

    // Fourteen days on, the link says so (publicly, with its date) and accepting it changes nothing.
    clock.advance(LINK_TTL_MS);
    const lookedUp = await anyone.getInvitation({ token: second });
    assert.equal(lookedUp.expired, true);
    assert.ok(timestampDate(lookedUp.expiresAt!).getTime() <= clock.now());
    const worker = h.asWorker(randomUUID());
    await assert.rejects(worker.acceptInvitation({ token: second }), rejects(Code.FailedPrecondition, /^\[failed_precondition\] token: this invitation's link stopped working on \d{4}-\d\d-\d\d; ask the venue's manager/));
    const [listed] = (await v.api.listMembers({ venueId: v.venueId })).members;
    assert.deepEqual([listed.status, listed.workerId], [MemberStatus.INVITED, ""]);

    // A new link works for another fourteen days, and once accepted there is nothing to send again.
    await v.api.resendInvitation({ venueId: v.venueId, memberId, idempotencyKey: randomUUID() });
    const third = await currentLink(phone, "", staffHash(memberId));
    assert.equal((await anyone.getInvitation({ token: third })).expired, false);
    assert.equal((await worker.acceptInvitation({ token: third })).member!.status, MemberStatus.ACTIVE);
    const [joined] = (await v.api.listMembers({ venueId: v.venueId })).members;
    assert.equal(joined.invitationExpiresAt, undefined);
    clock.advance(RESEND_SPACING_MS);
    await assert.rejects(v.api.resendInvitation({ venueId: v.venueId, memberId, idempotencyKey: randomUUID() }), rejects(Code.FailedPrecondition, /^\[failed_precondition\] member_id: they accepted/));
    await assert.rejects(v.api.resendInvitation({ venueId: v.venueId, memberId: randomUUID(), idempotencyKey: randomUUID() }), rejects(Code.NotFound, /^\[not_found\] member_id/));
    const { rows: audit } = await h.t.db.pool.query("SELECT action FROM venue.audit_records WHERE venue_id = $1 AND action = 'member.invitation_resent'", [v.venueId]);
    assert.equal(audit.length, 2);
  });

  test("a manager's invitation: expired, refused to its own number; texted again, accepted; a cancelled one is not sent again", async () => {
    const v = await h.newVenue("Nyama Mama");
    const phone = testPhone({ format: "07" });
    const userId = randomUUID();
    await h.t.db.pool.query("INSERT INTO auth.users (user_id, phone, roles) VALUES ($1, $2, $3)", [userId, `254${phone.slice(1)}`, ["worker"]]);
    const invitee = h.t.client(VenueService, { subject: userId, roles: ["worker"] });
    const invite = { venueId: v.venueId, phone, displayName: "Otieno", idempotencyKey: randomUUID() };
    const { invitation } = await v.api.inviteManager(invite);
    const first = await currentLink(phone, "manage/", managerHash(invitation!.invitationId));
    // Repeated (its answer lost): nothing more texted, the link kept.
    const texted = linksTo(phone, "manage/").length;
    assert.ok((await v.api.inviteManager(invite)).invitationSent);
    assert.deepEqual([linksTo(phone, "manage/").length, await managerHash(invitation!.invitationId)()], [texted, sha256(first)]);
    const listedExpiry = (await v.api.listManagers({ venueId: v.venueId })).invitations[0].expiresAt;
    assert.equal(timestampDate(listedExpiry!).getTime(), timestampDate(invitation!.expiresAt!).getTime());

    clock.advance(LINK_TTL_MS + 1_000);
    assert.equal((await h.t.client(VenueService).getManagerInvitation({ token: first })).expired, true);
    await assert.rejects(invitee.acceptManagerInvitation({ token: first }), rejects(Code.FailedPrecondition, /stopped working/));
    const { rows: [roles] } = await h.t.db.pool.query("SELECT roles FROM auth.users WHERE user_id = $1", [userId]);
    assert.deepEqual(roles.roles, ["worker"]);

    const resent = await v.api.resendManagerInvitation({ venueId: v.venueId, invitationId: invitation!.invitationId, idempotencyKey: randomUUID() });
    assert.ok(timestampDate(resent.invitation!.expiresAt!).getTime() > clock.now() + LINK_TTL_MS - 60_000);
    const second = await currentLink(phone, "manage/", managerHash(invitation!.invitationId));
    // The invitation's own key repeated after the resend (a queued retry): nothing texted, the resent link kept. Before,
    // a new link under it, voiding the one the invitee held.
    clock.advance(RESEND_SPACING_MS);
    const resentTexted = linksTo(phone, "manage/").length;
    assert.ok((await v.api.inviteManager(invite)).invitationSent);
    assert.deepEqual([linksTo(phone, "manage/").length, await managerHash(invitation!.invitationId)()], [resentTexted, sha256(second)]);
    await assert.rejects(invitee.acceptManagerInvitation({ token: first }), rejects(Code.NotFound, /token/));
    assert.equal((await invitee.acceptManagerInvitation({ token: second })).venueId, v.venueId);
    await assert.rejects(v.api.resendManagerInvitation({ venueId: v.venueId, invitationId: invitation!.invitationId, idempotencyKey: randomUUID() }),
      rejects(Code.FailedPrecondition, /^\[failed_precondition\] invitation_id: this invitation was accepted/));

    const other = await v.api.inviteManager({ venueId: v.venueId, phone: testPhone({ format: "07" }), displayName: "Akinyi", idempotencyKey: randomUUID() });
    await v.api.cancelManagerInvitation({ venueId: v.venueId, invitationId: other.invitation!.invitationId });
    await assert.rejects(v.api.resendManagerInvitation({ venueId: v.venueId, invitationId: other.invitation!.invitationId, idempotencyKey: randomUUID() }),
      rejects(Code.FailedPrecondition, /cancelled/));
  });
});

describe("invitation SMS a day: to one number, from one venue, from one inviting account", () => {
  const clock = new AdjustableClock();
  let h: Harness;
  before(async () => {
    h = await startHarness({ clock, env: { VENUE_INVITES_PER_NUMBER_PER_DAY: "2", VENUE_INVITES_PER_VENUE_PER_DAY: "3", VENUE_INVITES_PER_INVITER_PER_DAY: "4" } });
  });
  after(async () => {
    await h.close();
  });

  test("each budget, once spent, refuses the next SMS naming what is spent and when to retry, and changes nothing", async () => {
    const v = await h.newVenue("Carnivore");
    const invite = (phone: string, api = v.api, venueId = v.venueId) =>
      api.inviteMember({ venueId, phone, displayName: "Someone", roleId: "bar", idempotencyKey: randomUUID() });
    const spent = (what: RegExp) => (e: ConnectError) => {
      rejects(Code.ResourceExhausted, what)(e);
      assert.match(e.message, /retry in \d+ h$/);
      assert.ok(Number(e.metadata.get("retry-after")) > 23 * 3_600, "retry-after: the day's window");
      return true;
    };
    const first = testPhone({ format: "07" });
    const { member } = await invite(first);
    clock.advance(RESEND_SPACING_MS);
    await v.api.resendInvitation({ venueId: v.venueId, memberId: member!.memberId, idempotencyKey: randomUUID() });
    const hashBefore = (await h.t.db.pool.query("SELECT invite_token_hash FROM venue.members WHERE member_id = $1", [member!.memberId])).rows[0].invite_token_hash;
    clock.advance(RESEND_SPACING_MS);
    await assert.rejects(v.api.resendInvitation({ venueId: v.venueId, memberId: member!.memberId, idempotencyKey: randomUUID() }),
      spent(/^\[resource_exhausted\] phone: this number has had as many invitations today as a day allows/));
    assert.equal((await h.t.db.pool.query("SELECT invite_token_hash FROM venue.members WHERE member_id = $1", [member!.memberId])).rows[0].invite_token_hash, hashBefore, "the link unchanged");

    await invite(testPhone({ format: "07" }));
    const refused = testPhone({ format: "07" });
    await assert.rejects(invite(refused), spent(/the venue has sent as many invitations today/));
    const { rows } = await h.t.db.pool.query("SELECT 1 FROM venue.members WHERE phone = $1", [`254${refused.slice(1)}`]);
    assert.equal(rows.length, 0, "no one invited");

    // The same manager's second venue: their own budget (three texted from the first) has one left.
    const other = await h.newVenue("Carnivore Two", "", v.managerId);
    await other.api.inviteManager({ venueId: other.venueId, phone: testPhone({ format: "07" }), displayName: "Njoroge", idempotencyKey: randomUUID() });
    await assert.rejects(invite(testPhone({ format: "07" }), other.api, other.venueId), spent(/you have sent as many invitations today/));
  });
});

