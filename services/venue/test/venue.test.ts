import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { VenueDistributionReversedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { DistributionNoteKind, DistributionStatus, MemberStatus, SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { ReportFormat, VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { testPhone } from "@ttip/runtime/testing";
import { eventually, KES, period, startHarness, ts, type Harness } from "./setup.js";

const HOUR = 3600_000;
const rejects = (code: Code, field: RegExp) => (e: ConnectError) => {
  assert.equal(Code[e.code], Code[code], e.message);
  assert.match(e.message, field);
  return true;
};

describe("venue staff, shifts and pooled tips", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h.close();
  });

  test("staff: invited by SMS, accepted by the signed-in worker, roles, several venues, left", async () => {
    const a = await h.newVenue("Java House");
    const b = await h.newVenue("Artcaffe");
    const { roles } = await a.api.listRoles({ venueId: a.venueId });
    assert.deepEqual(roles.find((r) => r.roleId === "manager")?.isManager, true);
    await a.api.putRole({ venueId: a.venueId, roleId: "barista", name: "Barista", points: 12 });
    const wanjiru = await h.join(a, "Wanjiru", "barista");
    // The same person on a second venue's staff.
    const phoneInvite = await b.api.inviteMember({ venueId: b.venueId, phone: "0712345678", displayName: "Otieno", roleId: "kitchen", idempotencyKey: randomUUID() });
    assert.equal(phoneInvite.member!.status, MemberStatus.INVITED);
    assert.equal(phoneInvite.member!.phoneMasked, "2547******78");
    await assert.rejects(
      b.api.inviteMember({ venueId: b.venueId, phone: "+254712345678", displayName: "Otieno again", roleId: "kitchen", idempotencyKey: randomUUID() }),
      rejects(Code.AlreadyExists, /phone/),
    );
    await assert.rejects(a.api.inviteMember({ venueId: a.venueId, phone: "0812", displayName: "x", roleId: "kitchen", idempotencyKey: randomUUID() }), rejects(Code.InvalidArgument, /phone/));
    await assert.rejects(a.api.inviteMember({ venueId: a.venueId, phone: "0711111111", displayName: "x", roleId: "chef", idempotencyKey: randomUUID() }), rejects(Code.InvalidArgument, /role_id/));
    const second = await h.join(b, "Wanjiru at B");
    const worker = h.asWorker(second.workerId);
    // Another manager's venue is not yours to manage.
    await assert.rejects(b.api.listMembers({ venueId: a.venueId }), rejects(Code.PermissionDenied, /manager/));
    await assert.rejects(worker.listMembers({ venueId: b.venueId }), rejects(Code.PermissionDenied, /manager/));
    const mine = await h.asWorker(wanjiru.workerId).listMyVenues({});
    assert.deepEqual(mine.memberships.map((m) => [m.venueName, m.status]), [["Java House", MemberStatus.ACTIVE]]);
    const left = await a.api.removeMember({ venueId: a.venueId, memberId: wanjiru.memberId, reason: "moved to Mombasa" });
    assert.equal(left.member!.status, MemberStatus.LEFT);
    assert.equal((await a.api.listMembers({ venueId: a.venueId })).members.length, 0);
    assert.equal((await a.api.listMembers({ venueId: a.venueId, includeLeft: true })).members.length, 1);
  });

  test("an invitation's link names its venue and its expiry to anyone holding it (the join page before sign-in), and nothing of the member; not once the membership has ended", async () => {
    const v = await h.newVenue("Kilimanjaro Grill");
    const phone = testPhone({ format: "07" });
    const { member } = await v.api.inviteMember({ venueId: v.venueId, phone, displayName: "Zawadi", roleId: "front_of_house", idempotencyKey: randomUUID() });
    const token = await eventually(async () => {
      const sms = h.sim.sent.filter((m) => m.to.replace(/^\+/, "") === `254${phone.slice(1)}`).pop();
      return sms ? /\/join\/([A-Za-z0-9_-]+)/.exec(sms.body)?.[1] : undefined;
    }, "invitation SMS");
    const anyone = h.t.client(VenueService);
    const found = await anyone.getInvitation({ token });
    assert.equal(found.venueName, "Kilimanjaro Grill");
    assert.deepEqual(Object.keys(found).filter((k) => k !== "$typeName"), ["venueName", "expired", "expiresAt"], "the venue's name and the link's expiry, nothing else");
    // Accepting still needs a signed-in worker.
    await assert.rejects(anyone.acceptInvitation({ token }), (e: ConnectError) => e.code === Code.Unauthenticated);
    await assert.rejects(anyone.getInvitation({ token: "x".repeat(32) }), rejects(Code.NotFound, /token/));
    await assert.rejects(anyone.getInvitation({ token: "short" }), rejects(Code.InvalidArgument, /token/));
    await v.api.removeMember({ venueId: v.venueId, memberId: member!.memberId, reason: "never started" });
    await assert.rejects(anyone.getInvitation({ token }), rejects(Code.NotFound, /token/));
  });

  test("shifts: clock in and out, manager-recorded, CSV import with a report of rejected rows, hours per member", async () => {
    const v = await h.newVenue();
    const joined = new Date(Date.now() - 48 * HOUR);
    const amina = await h.join(v, "Amina", "front_of_house", joined);
    const baraka = await h.join(v, "Baraka", "kitchen", joined);
    const w = h.asWorker(amina.workerId);
    const { shift } = await w.clockIn({ venueId: v.venueId });
    await assert.rejects(w.clockIn({ venueId: v.venueId }), rejects(Code.FailedPrecondition, /clocked in/));
    const out = (await w.clockOut({ venueId: v.venueId })).shift!;
    assert.equal(out.shiftId, shift!.shiftId);
    await assert.rejects(w.clockOut({ venueId: v.venueId }), rejects(Code.FailedPrecondition, /not clocked in/));
    await assert.rejects(h.asWorker(randomUUID()).clockIn({ venueId: v.venueId }), rejects(Code.PermissionDenied, /staff/));
    // A hire starting next week: a clock-in now would count for nothing in a split, and is refused saying when.
    const hire = await h.join(v, "Wekesa", "kitchen", new Date(Date.now() + 7 * 24 * HOUR));
    await assert.rejects(h.asWorker(hire.workerId).clockIn({ venueId: v.venueId }), rejects(Code.FailedPrecondition, /you start here on \d{4}-\d\d-\d\d \d\d:\d\d EAT/));

    const day = new Date(Date.now() - 30 * HOUR);
    const at = (hours: number) => new Date(day.getTime() + hours * HOUR);
    await v.api.recordShift({ venueId: v.venueId, memberId: baraka.memberId, startedAt: ts(at(0)), endedAt: ts(at(8)), idempotencyKey: randomUUID() });
    await assert.rejects(
      v.api.recordShift({ venueId: v.venueId, memberId: baraka.memberId, startedAt: ts(at(7)), endedAt: ts(at(9)), idempotencyKey: randomUUID() }),
      // Named by the time that falls in the other shift (the screens mark that input): before, always ended_at.
      rejects(Code.InvalidArgument, /\] started_at: overlaps/),
    );
    await assert.rejects(
      v.api.recordShift({ venueId: v.venueId, memberId: baraka.memberId, startedAt: ts(at(-1)), endedAt: ts(at(1)), idempotencyKey: randomUUID() }),
      rejects(Code.InvalidArgument, /\] ended_at: overlaps/),
    );
    const eat = (d: Date) => new Date(d.getTime() + 3 * HOUR).toISOString().slice(0, 16).replace("T", " ");
    const csv = [
      "member,start,end",
      `${amina.memberId},${eat(at(1))},${eat(at(5))}`,
      `${amina.memberId},${at(6).toISOString()},${at(7).toISOString()}`,
      `${randomUUID()},${eat(at(1))},${eat(at(2))}`,
      `${amina.memberId},yesterday,${eat(at(2))}`,
      `${amina.memberId},${eat(at(3))},${eat(at(4))}`,
      `${baraka.memberId},${eat(at(9))},${eat(at(40))}`,
      // No 31 April: read as 1 May, it was imported as a shift nobody worked.
      `${amina.memberId},2026-04-31 08:00,2026-04-31 10:00`,
      `${amina.memberId},2026-05-02T08:00:00+03:00,2026-05-02T24:00:00+03:00`,
    ].join("\n");
    const dry = await v.api.importShifts({ venueId: v.venueId, csv: new TextEncoder().encode(csv), dryRun: true });
    assert.equal(dry.imported, 2);
    const r = await v.api.importShifts({ venueId: v.venueId, csv: new TextEncoder().encode(csv) });
    assert.equal(r.imported, 2);
    assert.deepEqual(r.rejected.map((x) => x.line), [4, 5, 6, 7, 8, 9]);
    assert.match(r.rejected[4].reason, /^start: "2026-04-31 08:00" is not a time/);
    assert.match(r.rejected[5].reason, /^end: "2026-05-02T24:00:00\+03:00" is not a time/);
    assert.match(r.rejected[0].reason, /member/);
    assert.match(r.rejected[1].reason, /start/);
    assert.match(r.rejected[2].reason, /overlap/);
    assert.match(r.rejected[3].reason, /24 hours/);
    await assert.rejects(v.api.importShifts({ venueId: v.venueId, csv: new TextEncoder().encode("who,when\nx,y") }), rejects(Code.InvalidArgument, /csv/));

    const { hours } = await v.api.getHours({ venueId: v.venueId, period: period(at(0), at(24)) });
    const byName = Object.fromEntries(hours.map((x) => [x.displayName, x.minutes]));
    assert.deepEqual(byName, { Amina: 300n, Baraka: 480n });
    // A worker sees only their own hours.
    const own = await w.getHours({ venueId: v.venueId, period: period(at(0), at(24)) });
    assert.deepEqual(own.hours.map((x) => x.displayName), ["Amina"]);
  });

  test("an import waits for a shift being recorded for the same member, and refuses its row as overlapping it: the hours are counted once", async () => {
    const v = await h.newVenue();
    const zuri = await h.join(v, "Zuri", "front_of_house", new Date(Date.now() - 72 * HOUR));
    const start = new Date(Math.floor((Date.now() - 30 * HOUR) / HOUR) * HOUR);
    const end = new Date(start.getTime() + 8 * HOUR);
    // A RecordShift (or ClockIn) for Zuri, between its lock and its commit.
    const recording = await h.t.db.pool.connect();
    try {
      await recording.query("BEGIN");
      await recording.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`venue.shifts.${zuri.memberId}`]);
      await recording.query("INSERT INTO venue.shifts (shift_id, venue_id, member_id, started_at, ended_at, source, recorded_by) VALUES ($1, $2, $3, $4, $5, 2, $6)",
        [randomUUID(), v.venueId, zuri.memberId, start, end, randomUUID()]);
      const csv = `member,start,end\n${zuri.memberId},${start.toISOString()},${end.toISOString()}\n`;
      const imported = v.api.importShifts({ venueId: v.venueId, csv: new TextEncoder().encode(csv) });
      await new Promise((r) => setTimeout(r, 300));
      await recording.query("COMMIT");
      // Before, the import's overlap check did not wait and saw nothing: both went in, 16 hours for 8.
      const r = await imported;
      assert.equal(r.imported, 0);
      assert.match(r.rejected[0]?.reason ?? "", /overlaps/);
    } finally {
      recording.release();
    }
    const { hours } = await v.api.getHours({ venueId: v.venueId, period: period(new Date(start.getTime() - HOUR), new Date()) });
    assert.deepEqual(hours.map((x) => x.minutes), [480n]);
  });

  test("a clock-in never clocked out: after 24 hours neither clock-out nor clock-in ends it; the manager's recorded shift replaces it and the worker clocks in again", async () => {
    const v = await h.newVenue();
    const amina = await h.join(v, "Amina", "front_of_house", new Date(Date.now() - 72 * HOUR));
    const w = h.asWorker(amina.workerId);
    const { shift } = await w.clockIn({ venueId: v.venueId });
    // Forgotten: clocked in 30 hours ago (08:00 EAT on that day), never out.
    const clockedIn = new Date(Math.floor((Date.now() - 30 * HOUR) / HOUR) * HOUR);
    await h.t.db.pool.query("UPDATE venue.shifts SET started_at = $2 WHERE shift_id = $1", [shift!.shiftId, clockedIn]);
    await assert.rejects(w.clockOut({ venueId: v.venueId }), rejects(Code.FailedPrecondition, /more than 24 hours; ask a manager/));
    const eat = new Date(clockedIn.getTime() + 3 * HOUR).toISOString().slice(0, 16).replace("T", " ");
    await assert.rejects(w.clockIn({ venueId: v.venueId }), rejects(Code.FailedPrecondition, new RegExp(`clock-in of ${eat} EAT was never clocked out; ask a manager`)));

    // The manager records what was worked (an hour earlier to eight hours later): the stale clock-in becomes that shift.
    const recorded = { venueId: v.venueId, memberId: amina.memberId, startedAt: ts(new Date(clockedIn.getTime() - HOUR)), endedAt: ts(new Date(clockedIn.getTime() + 8 * HOUR)), idempotencyKey: randomUUID() };
    const { shift: replaced } = await v.api.recordShift(recorded);
    assert.equal(replaced!.shiftId, shift!.shiftId, "the clock-in's row, now the recorded shift");
    assert.equal(replaced!.minutes, 540n);
    assert.equal((await v.api.recordShift(recorded)).shift!.shiftId, shift!.shiftId, "the same key answers the same shift");
    const { shifts } = await v.api.listShifts({ venueId: v.venueId, period: period(new Date(clockedIn.getTime() - 2 * HOUR), new Date()) });
    assert.deepEqual(shifts.map((s) => [s.shiftId, s.minutes, Boolean(s.endedAt)]), [[shift!.shiftId, 540n, true]], "one shift, none open");
    const { hours } = await v.api.getHours({ venueId: v.venueId, period: period(new Date(clockedIn.getTime() - 2 * HOUR), new Date()) });
    assert.deepEqual(hours.map((x) => x.minutes), [540n]);
    // Free to clock in again; a fresh clock-in is not replaced by a shift recorded beside it.
    const { shift: next } = await w.clockIn({ venueId: v.venueId });
    assert.notEqual(next!.shiftId, shift!.shiftId);
    await assert.rejects(
      v.api.recordShift({ ...recorded, startedAt: ts(new Date(Date.now() - 2 * HOUR)), endedAt: ts(new Date()), idempotencyKey: randomUUID() }),
      rejects(Code.InvalidArgument, /overlaps/),
    );
  });

  test("removing a member whose clock-in was never clocked out counts no day on its word: the manager records the real shift, even after", async () => {
    const v = await h.newVenue();
    const baraka = await h.join(v, "Baraka", "front_of_house", new Date(Date.now() - 72 * HOUR));
    const { shift } = await h.asWorker(baraka.workerId).clockIn({ venueId: v.venueId });
    const clockedIn = new Date(Math.floor((Date.now() - 30 * HOUR) / HOUR) * HOUR);
    await h.t.db.pool.query("UPDATE venue.shifts SET started_at = $2 WHERE shift_id = $1", [shift!.shiftId, clockedIn]);
    await v.api.removeMember({ venueId: v.venueId, memberId: baraka.memberId, reason: "left" });
    const span = period(new Date(clockedIn.getTime() - 2 * HOUR), new Date());
    // Before, removal closed it 24 hours after the clock-in: a day of hours in the split, and no way to correct it.
    const minutes = async () => (await v.api.getHours({ venueId: v.venueId, period: span })).hours.reduce((sum, x) => sum + x.minutes, 0n);
    assert.equal(await minutes(), 0n);
    const recorded = { venueId: v.venueId, memberId: baraka.memberId, startedAt: ts(clockedIn), endedAt: ts(new Date(clockedIn.getTime() + 6 * HOUR)), idempotencyKey: randomUUID() };
    assert.equal((await v.api.recordShift(recorded)).shift!.shiftId, shift!.shiftId, "the clock-in's row, now the recorded shift");
    assert.equal(await minutes(), 360n);
  });

  test("split rules are versioned, visible to members, fixed percentages add to 100%, pooling individual tips is not built", async () => {
    const v = await h.newVenue();
    const m = await h.join(v, "Chebet");
    await assert.rejects(h.asWorker(m.workerId).getSplitRule({ venueId: v.venueId }), rejects(Code.NotFound, /no split rule/));
    const r1 = (await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: randomUUID(), note: "first" })).rule!;
    const key = randomUUID();
    const r2 = (await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.EQUAL_ON_SHIFT, includeManagers: true, idempotencyKey: key })).rule!;
    const again = (await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.EQUAL_ON_SHIFT, includeManagers: true, idempotencyKey: key })).rule!;
    assert.deepEqual([r1.version, r2.version, again.version], [1, 2, 2]);
    const seen = (await h.asWorker(m.workerId).getSplitRule({ venueId: v.venueId })).rule!;
    assert.equal(seen.version, 2);
    assert.match(seen.summary, /managers included/);
    await assert.rejects(
      v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.FIXED_PERCENTAGES, fixedShares: [{ memberId: m.memberId, basisPoints: 9000 }], idempotencyKey: randomUUID() }),
      rejects(Code.InvalidArgument, /fixed_shares.*10000/),
    );
    await assert.rejects(
      v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, poolIndividualTips: true, idempotencyKey: randomUUID() }),
      rejects(Code.Unimplemented, /pool_individual_tips/),
    );
    await assert.rejects(h.asWorker(m.workerId).setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: randomUUID() }), rejects(Code.PermissionDenied, /manager/));
    const { rules } = await v.api.listSplitRules({ venueId: v.venueId });
    assert.deepEqual(rules.map((r) => r.version), [2, 1]);
  });

  test("a confirm pays what its preview showed: a shift recorded in between is refused as expected_shares and moves nothing; previewed again, it is paid", async () => {
    const start = new Date(Date.now() - 10 * HOUR);
    const at = (hours: number) => new Date(start.getTime() + hours * HOUR);
    const v = await h.newVenue("Mama Oliech");
    const asha = await h.join(v, "Asha", "front_of_house", at(-1));
    const juma = await h.join(v, "Juma", "kitchen", at(-1));
    const shift = (memberId: string, from: number, to: number) =>
      v.api.recordShift({ venueId: v.venueId, memberId, startedAt: ts(at(from)), endedAt: ts(at(to)), idempotencyKey: randomUUID() });
    await shift(asha.memberId, 0, 2);
    await shift(juma.memberId, 0, 2);
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: randomUUID() });
    await h.tipPool(v.venueId, KES(300).amountMinor);
    const p = period(at(0), new Date());
    const seen = (await v.api.previewDistribution({ venueId: v.venueId, period: p })).distribution!;
    assert.deepEqual(seen.shares.map((s) => s.amount!.amountMinor), [15000n, 15000n]);
    // A co-manager records Juma's second shift meanwhile: the same takings, another split.
    await shift(juma.memberId, 3, 7);
    const confirm = (digest: string) => v.api.confirmDistribution({ venueId: v.venueId, period: p, expectedCollected: KES(300), expectedShares: digest });
    await assert.rejects(confirm(seen.sharesDigest), rejects(Code.FailedPrecondition, /expected_shares/));
    assert.deepEqual([await h.walletBalance(asha.workerId), await h.walletBalance(juma.workerId), await h.poolBalance(v.venueId)], [0n, 0n, 30000n], "nothing moved");
    const again = (await v.api.previewDistribution({ venueId: v.venueId, period: p })).distribution!;
    assert.notEqual(again.sharesDigest, seen.sharesDigest);
    const done = (await confirm(again.sharesDigest)).distribution!;
    assert.deepEqual(done.shares.map((s) => s.amount!.amountMinor), again.shares.map((s) => s.amount!.amountMinor));
    assert.equal(await h.walletBalance(juma.workerId), 22500n);
  });

  test("a shift still open in the period: the preview says whose, and a confirm is refused until it is closed, so no one's hours are dropped", async () => {
    const start = new Date(Date.now() - 10 * HOUR);
    const at = (hours: number) => new Date(start.getTime() + hours * HOUR);
    const v = await h.newVenue("Kosewe");
    const asha = await h.join(v, "Asha", "front_of_house", at(-1));
    const juma = await h.join(v, "Juma", "kitchen", at(-1));
    await v.api.recordShift({ venueId: v.venueId, memberId: asha.memberId, startedAt: ts(at(0)), endedAt: ts(at(2)), idempotencyKey: randomUUID() });
    // Juma clocked in at at(3) and has not clocked out.
    await h.t.db.pool.query("INSERT INTO venue.shifts (shift_id, venue_id, member_id, started_at, source, recorded_by) VALUES ($1, $2, $3, $4, 1, $5)",
      [randomUUID(), v.venueId, juma.memberId, at(3), juma.workerId]);
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: randomUUID() });
    await h.tipPool(v.venueId, KES(100).amountMinor);
    const p = period(at(0), new Date());
    const seen = (await v.api.previewDistribution({ venueId: v.venueId, period: p })).distribution!;
    const open = seen.notes.filter((n) => n.kind === DistributionNoteKind.SHIFT_STILL_OPEN);
    assert.deepEqual(open.map((n) => n.displayName), ["Juma"]);
    assert.match(open[0].detail, /^\d{4}-\d\d-\d\d \d\d:\d\d EAT$/);
    await assert.rejects(v.api.confirmDistribution({ venueId: v.venueId, period: p, expectedShares: seen.sharesDigest }), rejects(Code.FailedPrecondition, /period: Juma clocked in at .* and not out/));
    assert.equal(await h.poolBalance(v.venueId), 10000n, "nothing paid");
    await h.asWorker(juma.workerId).clockOut({ venueId: v.venueId });
    const now = (await v.api.previewDistribution({ venueId: v.venueId, period: p })).distribution!;
    assert.deepEqual(now.notes.filter((n) => n.kind === DistributionNoteKind.SHIFT_STILL_OPEN), []);
    await v.api.confirmDistribution({ venueId: v.venueId, period: p, expectedShares: now.sharesDigest });
    // Juma's seven hours in the period count, beside Asha's two.
    const jumaLine = now.shares.find((l) => l.displayName === "Juma")!;
    assert.ok(jumaLine.minutes >= 419n && jumaLine.minutes <= 420n, `${jumaLine.minutes} minutes`);
    assert.equal(await h.walletBalance(juma.workerId), jumaLine.amount!.amountMinor);
  });

  test("a shift recorded or imported into a period already split by hours is refused, naming the split, until it is reversed: its hours would count in no split", async () => {
    const start = new Date(Date.now() - 10 * HOUR);
    const at = (hours: number) => new Date(start.getTime() + hours * HOUR);
    const v = await h.newVenue("Tamarind");
    const asha = await h.join(v, "Asha", "front_of_house", at(-1));
    const wanjiru = await h.join(v, "Wanjiru", "kitchen", at(-1));
    await v.api.recordShift({ venueId: v.venueId, memberId: asha.memberId, startedAt: ts(at(0)), endedAt: ts(at(2)), idempotencyKey: randomUUID() });
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: randomUUID() });
    await h.tipPool(v.venueId, KES(100).amountMinor);
    const p = period(at(0), new Date());
    const { distribution } = await v.api.confirmDistribution({ venueId: v.venueId, period: p });
    // Wanjiru's forgotten shift, recorded after the split: before, taken without a word and never paid.
    const forgotten = { venueId: v.venueId, memberId: wanjiru.memberId, startedAt: ts(at(3)), endedAt: ts(at(6)), idempotencyKey: randomUUID() };
    await assert.rejects(v.api.recordShift(forgotten), rejects(Code.FailedPrecondition, new RegExp(`started_at: falls in .* split already \\(distribution ${distribution!.distributionId}\\): reverse that split first`)));
    const eat = (d: Date) => new Date(d.getTime() + 3 * HOUR).toISOString().slice(0, 16).replace("T", " ");
    const r = await v.api.importShifts({ venueId: v.venueId, csv: new TextEncoder().encode(`member,start,end\n${wanjiru.memberId},${eat(at(3))},${eat(at(6))}\n`) });
    assert.equal(r.imported, 0);
    assert.match(r.rejected[0]?.reason ?? "", /split already/);
    await v.api.reverseDistribution({ venueId: v.venueId, distributionId: distribution!.distributionId, reason: "Wanjiru's shift was missing" });
    await v.api.recordShift(forgotten);
    const again = (await v.api.confirmDistribution({ venueId: v.venueId, period: p })).distribution!;
    assert.deepEqual(Object.fromEntries(again.shares.map((l) => [l.displayName, l.amount!.amountMinor])), { Asha: 4000n, Wanjiru: 6000n });
  });

  test("cancelling an invitation from a list read before it was accepted is refused: the worker stays on the staff", async () => {
    const v = await h.newVenue("Java House");
    const amina = await h.join(v, "Amina", "front_of_house", new Date(Date.now() - HOUR));
    await assert.rejects(v.api.removeMember({ venueId: v.venueId, memberId: amina.memberId, onlyIfInvited: true }),
      rejects(Code.FailedPrecondition, /member_id: Amina accepted the invitation already; to take them off the staff, remove them/));
    const { members } = await v.api.listMembers({ venueId: v.venueId });
    assert.deepEqual(members.map((m) => [m.displayName, m.status]), [["Amina", MemberStatus.ACTIVE]]);
    // One still pending is withdrawn.
    const { member } = await v.api.inviteMember({ venueId: v.venueId, phone: testPhone({ format: "07" }), displayName: "Baraka", roleId: "kitchen", idempotencyKey: randomUUID() });
    const withdrawn = await v.api.removeMember({ venueId: v.venueId, memberId: member!.memberId, onlyIfInvited: true });
    assert.equal(withdrawn.member!.status, MemberStatus.CANCELLED);
  });

  test("a RecordShift retried while its first attempt waits for the member's lock returns the same shift, not an overlap with it", async () => {
    const v = await h.newVenue("Nyama Choma Corner");
    const zuri = await h.join(v, "Zuri", "front_of_house", new Date(Date.now() - 72 * HOUR));
    const start = new Date(Math.floor((Date.now() - 30 * HOUR) / HOUR) * HOUR);
    const asked = { venueId: v.venueId, memberId: zuri.memberId, startedAt: ts(start), endedAt: ts(new Date(start.getTime() + 8 * HOUR)), idempotencyKey: randomUUID() };
    const holding = await h.t.db.pool.connect();
    const lockWaits = async () => (await h.t.db.pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0].n as number;
    try {
      await holding.query("BEGIN");
      await holding.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`venue.shifts.${zuri.memberId}`]);
      const first = v.api.recordShift(asked);
      await eventually(async () => (await lockWaits()) >= 1, "the first attempt waits");
      const retry = v.api.recordShift(asked);
      await eventually(async () => (await lockWaits()) >= 2, "the retry waits");
      await holding.query("COMMIT");
      const [a, b] = await Promise.all([first, retry]);
      assert.equal(b.shift!.shiftId, a.shift!.shiftId);
    } finally {
      holding.release();
    }
  });

  test("a clock-in racing the worker's removal waits for it and is refused: no open shift is left that nobody can close", async () => {
    const v = await h.newVenue("Talisman");
    const juma = await h.join(v, "Juma", "kitchen", new Date(Date.now() - HOUR));
    const removing = await h.t.db.pool.connect();
    try {
      // A removal between its lock of the member and its commit (qr's staff list is being set).
      await removing.query("BEGIN");
      await removing.query("SELECT 1 FROM venue.members WHERE member_id = $1 FOR UPDATE", [juma.memberId]);
      await removing.query("UPDATE venue.members SET left_at = now() WHERE member_id = $1", [juma.memberId]);
      const clockIn = h.asWorker(juma.workerId).clockIn({ venueId: v.venueId }).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 300));
      await removing.query("COMMIT");
      assert.ok(await clockIn instanceof ConnectError && (await clockIn as ConnectError).code === Code.PermissionDenied, String(await clockIn));
    } finally {
      removing.release();
    }
    const { rows } = await h.t.db.pool.query("SELECT 1 FROM venue.shifts WHERE member_id = $1", [juma.memberId]);
    assert.equal(rows.length, 0);
  });


  test("removed with a leaving time just ahead: the open shift ends then, and no new one starts before it (it would overlap, open past the leaving)", async () => {
    const v = await h.newVenue("Kilimanjaro Grill");
    const juma = await h.join(v, "Juma", "kitchen", new Date(Date.now() - HOUR));
    const w = h.asWorker(juma.workerId);
    await w.clockIn({ venueId: v.venueId });
    const leftAt = new Date(Date.now() + 50_000);
    await v.api.removeMember({ venueId: v.venueId, memberId: juma.memberId, leftAt: ts(leftAt), reason: "last day" });
    await assert.rejects(w.clockIn({ venueId: v.venueId }), rejects(Code.FailedPrecondition, /venue_id: you leave this venue's staff at \d{4}-\d\d-\d\d \d\d:\d\d EAT; no new shift starts/));
    const { rows } = await h.t.db.pool.query<{ open: boolean }>("SELECT ended_at IS NULL AS open FROM venue.shifts WHERE member_id = $1", [juma.memberId]);
    assert.deepEqual(rows.map((r) => r.open), [false], "the one shift, closed by the removal");
  });

  test("a pool too small for all on shift (KES 2 among five): the lines rounded to nothing are shown, but not counted as paid nor listed as a worker's share", async () => {
    const start = new Date(Date.now() - 10 * HOUR);
    const at = (hours: number) => new Date(start.getTime() + hours * HOUR);
    const v = await h.newVenue("Kibanda");
    const staff = [];
    for (const name of ["Amani", "Baraka", "Chausiku", "Dalia", "Eshe"]) staff.push(await h.join(v, name, "front_of_house", at(-1)));
    for (const m of staff) await v.api.recordShift({ venueId: v.venueId, memberId: m.memberId, startedAt: ts(at(0)), endedAt: ts(at(4)), idempotencyKey: randomUUID() });
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.EQUAL_ON_SHIFT, idempotencyKey: randomUUID() });
    await h.tipPool(v.venueId, KES(2).amountMinor);
    const p = period(at(0), new Date());
    const preview = (await v.api.previewDistribution({ venueId: v.venueId, period: p })).distribution!;
    const amounts = preview.shares.map((x) => x.amount!.amountMinor).sort();
    assert.deepEqual(amounts, [0n, 0n, 0n, 100n, 100n]);
    // Before, 5: "Members with a share: 5" beside KES 2 that pays two.
    assert.equal(preview.memberCount, 2);
    const d = (await v.api.confirmDistribution({ venueId: v.venueId, period: p, expectedCollected: KES(2) })).distribution!;
    assert.equal(d.memberCount, 2);
    const listed = await Promise.all(staff.map(async (m) => (await h.asWorker(m.workerId).listMyShares({})).shares.length));
    // Before, the three paid nothing each read a share of KES 0 from Kibanda.
    assert.deepEqual(listed.sort(), [0, 0, 0, 1, 1]);
  });

  test("a distribution by hours: preview, confirm posts one entry once, members told, a leaver and the manager get nothing, reversal with a reason", async () => {
    const start = new Date(Date.now() - 10 * HOUR);
    const at = (hours: number) => new Date(start.getTime() + hours * HOUR);
    const v = await h.newVenue("Nyama Mama");
    const asha = await h.join(v, "Asha", "front_of_house", at(-1));
    const juma = await h.join(v, "Juma", "kitchen", at(-1));
    const leaver = await h.join(v, "Left Early", "bar", at(-1));
    const boss = await h.join(v, "Boss", "manager", at(-1));
    const shift = (memberId: string, from: number, to: number) =>
      v.api.recordShift({ venueId: v.venueId, memberId, startedAt: ts(at(from)), endedAt: ts(at(to)), idempotencyKey: randomUUID() });
    await shift(asha.memberId, 0, 6);
    await shift(juma.memberId, 1, 4);
    await shift(leaver.memberId, 0, 1);
    await shift(boss.memberId, 0, 8);
    await v.api.removeMember({ venueId: v.venueId, memberId: leaver.memberId, leftAt: ts(at(2)) });
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: randomUUID() });
    for (const amount of [100, 250, 95, 55]) await h.tipPool(v.venueId, KES(amount).amountMinor);
    const end = new Date();
    const p = period(at(2), end);

    const preview = (await v.api.previewDistribution({ venueId: v.venueId, period: p })).distribution!;
    assert.equal(preview.status, DistributionStatus.PREVIEW);
    assert.equal(preview.collected!.amountMinor, 50000n);
    assert.match(preview.remainderRule, /add up to the takings exactly/);
    // In [at(2), end): Asha 4 h, Juma 2 h; the leaver left at at(2), the manager is not in the pool.
    const shares = Object.fromEntries(preview.shares.map((s) => [s.displayName, s.amount!.amountMinor]));
    assert.deepEqual(shares, { Asha: 33300n, Juma: 16700n });
    assert.match(preview.summary, /Left Early: left before the period/);
    assert.match(preview.summary, /Boss: managers are not in the pool/);
    // The same facts as fields, for screens to word in their language: 333.33 and 166.67 round down to
    // 333 and 166 shillings, and the shilling left over goes to Juma, whose share lost the most.
    assert.equal(preview.memberCount, 2);
    assert.equal(preview.roundingRemainderMinor, 100n);
    // In the roster's order (all four joined at the same moment here): compared sorted.
    assert.deepEqual(preview.notes.map((n) => [DistributionNoteKind[n.kind], n.displayName]).sort(), [["LEFT_BEFORE_PERIOD", "Left Early"], ["MANAGER_NOT_IN_POOL", "Boss"]]);

    await assert.rejects(
      v.api.confirmDistribution({ venueId: v.venueId, period: p, expectedCollected: KES(400) }),
      rejects(Code.FailedPrecondition, /expected_collected/),
    );
    await assert.rejects(v.api.confirmDistribution({ venueId: v.venueId, period: period(at(2), new Date(Date.now() + HOUR)) }), rejects(Code.FailedPrecondition, /not over/));
    const [c1, c2] = await Promise.all([
      v.api.confirmDistribution({ venueId: v.venueId, period: p, expectedCollected: KES(500) }),
      v.api.confirmDistribution({ venueId: v.venueId, period: p, expectedCollected: KES(500) }),
    ]);
    assert.equal(c1.distribution!.distributionId, c2.distribution!.distributionId);
    assert.deepEqual([c1.created, c2.created].sort(), [false, true]);
    const d = c1.distribution!;
    assert.equal(d.status, DistributionStatus.CONFIRMED);
    assert.deepEqual([d.memberCount, d.roundingRemainderMinor], [2, 100n], "read back from the saved shares");
    assert.ok(d.entryId);
    const third = await v.api.confirmDistribution({ venueId: v.venueId, period: p });
    assert.equal(third.created, false);
    assert.equal(third.distribution!.entryId, d.entryId);
    assert.equal(await h.walletBalance(asha.workerId), 33300n);
    assert.equal(await h.walletBalance(juma.workerId), 16700n);
    assert.equal(await h.walletBalance(leaver.workerId), 0n);
    assert.equal(await h.walletBalance(boss.workerId), 0n);
    assert.equal(await h.poolBalance(v.venueId), 0n);
    assert.equal(await h.trialBalanced(), true);
    // An overlapping period is refused while this one stands.
    await assert.rejects(v.api.confirmDistribution({ venueId: v.venueId, period: period(at(1), end) }), rejects(Code.FailedPrecondition, /already covers/));
    // Exactly one share event per member paid, and the member is told (in-app).
    const events = await h.t.db.pool.query("SELECT count(*)::int AS n FROM venue.outbox WHERE subject = 'ttip.venue.share_allocated'");
    assert.ok(events.rows[0].n >= 2);
    await eventually(async () => {
      const { rows } = await h.t.db.pool.query("SELECT count(*)::int AS n FROM notification.deliveries WHERE user_id = $1", [asha.workerId]);
      return rows[0].n > 0;
    }, "Asha told her share");
    // The worker sees the share and its breakdown.
    const mine = await h.asWorker(asha.workerId).listMyShares({});
    assert.equal(mine.shares[0].line!.amount!.amountMinor, 33300n);
    assert.match(mine.shares[0].line!.explanation, /240 minutes worked: 240 of 360 x KES 500 = KES 333/);
    assert.equal(mine.shares[0].venueName, "Nyama Mama");
    // A member reading the distribution sees only their own line.
    const asMember = (await h.asWorker(juma.workerId).getDistribution({ venueId: v.venueId, distributionId: d.distributionId })).distribution!;
    assert.deepEqual(asMember.shares.map((s) => s.displayName), ["Juma"]);
    // Before, the totals were summed over the lines shown: Juma read KES 167 of the KES 500 split, 1 member.
    assert.deepEqual([asMember.distributed?.amountMinor, asMember.memberCount, asMember.roundingRemainderMinor, asMember.summary],
      [d.distributed?.amountMinor, d.memberCount, d.roundingRemainderMinor, d.summary]);

    const reversed = (await v.api.reverseDistribution({ venueId: v.venueId, distributionId: d.distributionId, reason: "Juma's hours were wrong" })).distribution!;
    assert.equal(reversed.status, DistributionStatus.REVERSED);
    assert.equal(await h.walletBalance(asha.workerId), 0n);
    assert.equal(await h.poolBalance(v.venueId), 50000n);
    // Each member's share is named in the event (analytics takes it back from each worker's earnings).
    const { rows: reversals } = await h.t.db.pool.query<{ payload: Buffer }>("SELECT payload FROM venue.outbox WHERE subject = 'ttip.venue.distribution_reversed'");
    const told = reversals.map((r) => fromBinary(VenueDistributionReversedSchema, r.payload)).find((e) => e.distributionId === d.distributionId);
    assert.ok(told);
    assert.deepEqual(told.shares.map((x) => [x.workerId, x.amount?.amountMinor]).sort(), d.shares.filter((x) => x.amount!.amountMinor > 0n).map((x) => [x.workerId, x.amount?.amountMinor]).sort());
    assert.equal(told.shares.reduce((n, x) => n + x.amount!.amountMinor, 0n), told.amount?.amountMinor);
    // Each worker whose share was taken back from their balance is told, with the manager's reason (before: nobody was).
    const notice = await eventually(async () => {
      const { rows } = await h.t.db.pool.query<{ body: string }>(
        "SELECT body FROM notification.deliveries WHERE user_id = $1 AND template_key = $2 AND channel = $3", [asha.workerId, TemplateKey.POOL_SHARE_REVERSED, Channel.IN_APP]);
      return rows.length > 0 && rows;
    }, "Asha told her share was taken back");
    assert.equal(notice.length, 1);
    assert.match(notice[0].body, /Nyama Mama reversed a split of its tips: your share of KES 333 was taken from your TTIP balance\. Reason: Juma's hours were wrong/);
    // The period can now be split again (revision 1), and it is a new entry.
    const redo = await v.api.confirmDistribution({ venueId: v.venueId, period: p });
    assert.equal(redo.created, true);
    assert.equal(redo.distribution!.revision, 1);
    assert.notEqual(redo.distribution!.entryId, d.entryId);
    assert.equal(await h.walletBalance(asha.workerId), 33300n);

    const audit = (await v.api.listAuditRecords({ venueId: v.venueId })).records.map((r) => r.action);
    for (const a of ["rule.changed", "distribution.confirmed", "distribution.reversed", "member.left", "member.invited"]) assert.ok(audit.includes(a), a);
    const report = await v.api.getPeriodReport({ venueId: v.venueId, period: p, format: ReportFormat.CSV });
    const csv = new TextDecoder().decode(report.csv);
    assert.match(csv, /^member_id,name,role,minutes,shifts,shares_kes_minor,distributions\r\n/);
    assert.match(csv, new RegExp(`${asha.memberId},Asha,front_of_house,240,1,33300,1`));
    assert.equal(report.distributed!.amountMinor, 50000n);

    // Pages of a worker's shares continue from the exact microsecond: two confirmations in the same
    // millisecond, either side of a page break, are both served (a millisecond position skipped the second).
    await h.t.db.pool.query("UPDATE venue.distributions SET confirmed_at = $2 WHERE distribution_id = $1", [d.distributionId, "2026-11-01T07:00:00.123456Z"]);
    await h.t.db.pool.query("UPDATE venue.distributions SET confirmed_at = $2 WHERE distribution_id = $1", [redo.distribution!.distributionId, "2026-11-01T07:00:00.123400Z"]);
    const first = await h.asWorker(asha.workerId).listMyShares({ page: { pageSize: 1 } });
    assert.deepEqual(first.shares.map((s) => s.distributionId), [d.distributionId]);
    const next = await h.asWorker(asha.workerId).listMyShares({ page: { pageSize: 1, pageToken: first.page!.nextPageToken } });
    assert.deepEqual(next.shares.map((s) => s.distributionId), [redo.distribution!.distributionId]);
    // A worker who left and came back holds two memberships, each may have a share of one distribution:
    // a page break between them serves both (a (time, distribution) position skipped the second).
    await h.t.db.pool.query(
      `INSERT INTO venue.shares (distribution_id, line, member_id, worker_id, display_name, role_id, weight, total_weight, minutes, amount_minor, remainder_minor, explanation)
       SELECT distribution_id, 99, $2, worker_id, display_name, role_id, weight, total_weight, minutes, amount_minor, remainder_minor, explanation
         FROM venue.shares WHERE distribution_id = $1 AND member_id = $3`,
      [d.distributionId, randomUUID(), asha.memberId],
    );
    const paged: string[] = [];
    let token = "";
    for (let i = 0; i < 5; i++) {
      const page = await h.asWorker(asha.workerId).listMyShares({ page: { pageSize: 1, pageToken: token } });
      paged.push(...page.shares.map((s) => s.distributionId));
      token = page.page!.nextPageToken;
      if (!token) break;
    }
    assert.deepEqual(paged, [d.distributionId, d.distributionId, redo.distribution!.distributionId]);
  });

  test("a hire removed before its start held no hours: hired again from now, the worker starts now, not on the cancelled start", async () => {
    const v = await h.newVenue("Nyama Choma Corner");
    const later = await h.join(v, "Juma", "kitchen", new Date(Date.now() + 7 * 24 * HOUR));
    await v.api.removeMember({ venueId: v.venueId, memberId: later.memberId });
    const again = await h.join(v, "Juma", "kitchen", undefined, later.workerId);
    const { members } = await v.api.listMembers({ venueId: v.venueId });
    assert.ok(timestampDate(members.find((m) => m.memberId === again.memberId)!.joinedAt!).getTime() <= Date.now(), "starts now");
  });

  test("a worker who left and came back within the period is one line, their hours added, and the split is confirmed", async () => {
    const start = new Date(Date.now() - 10 * HOUR);
    const at = (hours: number) => new Date(start.getTime() + hours * HOUR);
    const v = await h.newVenue("Mama Oliech");
    const baraka = await h.join(v, "Baraka", "front_of_house", at(-1));
    const neema = await h.join(v, "Neema", "kitchen", at(-1));
    const shift = (memberId: string, from: number, to: number) =>
      v.api.recordShift({ venueId: v.venueId, memberId, startedAt: ts(at(from)), endedAt: ts(at(to)), idempotencyKey: randomUUID() });
    await shift(baraka.memberId, 0, 2);
    await v.api.removeMember({ venueId: v.venueId, memberId: baraka.memberId, leftAt: ts(at(3)) });
    // Invited back from before he left: he starts when he left (before, hours of that overlap counted on both memberships).
    const early = await h.join(v, "Baraka", "front_of_house", at(2), baraka.workerId);
    const { members } = await v.api.listMembers({ venueId: v.venueId, includeLeft: true });
    assert.equal(timestampDate(members.find((m) => m.memberId === early.memberId)!.joinedAt!).getTime(), at(3).getTime());
    await v.api.removeMember({ venueId: v.venueId, memberId: early.memberId, leftAt: ts(at(4)) });

    const back = await h.join(v, "Baraka", "front_of_house", at(4), baraka.workerId);
    assert.equal(back.workerId, baraka.workerId);
    await shift(back.memberId, 5, 6);
    await shift(neema.memberId, 0, 3);
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: randomUUID() });
    await h.tipPool(v.venueId, KES(600).amountMinor);
    const p = period(start, new Date());

    const preview = (await v.api.previewDistribution({ venueId: v.venueId, period: p })).distribution!;
    // Baraka 2 h + 1 h, Neema 3 h: half each, and no note that Baraka "left" (he is paid).
    assert.deepEqual(preview.shares.map((s) => [s.displayName, s.amount!.amountMinor]).sort(), [["Baraka", 30000n], ["Neema", 30000n]]);
    assert.deepEqual(preview.notes, []);
    assert.match(preview.shares.find((s) => s.displayName === "Baraka")!.explanation, /120 minutes worked \+ 60 minutes worked: 180 of 360/);
    const { distribution } = await v.api.confirmDistribution({ venueId: v.venueId, period: p, expectedCollected: KES(600) });
    assert.equal(distribution!.status, DistributionStatus.CONFIRMED);
    assert.equal(await h.walletBalance(baraka.workerId), 30000n);
    assert.equal(await h.walletBalance(neema.workerId), 30000n);
    // Under equal shares he is one person: one share of two, not two of three.
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.EQUAL_ON_SHIFT, idempotencyKey: randomUUID() });
    await v.api.reverseDistribution({ venueId: v.venueId, distributionId: distribution!.distributionId, reason: "equal shares agreed" });
    const equal = (await v.api.confirmDistribution({ venueId: v.venueId, period: p })).distribution!;
    assert.deepEqual(equal.shares.map((s) => s.amount!.amountMinor), [30000n, 30000n]);
    assert.equal(await h.walletBalance(baraka.workerId), 30000n);

    // He leaves and comes back once more: he still reads the line he was paid under his membership of then
    // (before, lines were matched to his current membership, and he saw none).
    await v.api.removeMember({ venueId: v.venueId, memberId: back.memberId });
    const third = await h.join(v, "Baraka", "front_of_house", new Date(), baraka.workerId);
    const line = equal.shares.find((s) => s.workerId === baraka.workerId)!;
    assert.notEqual(line.memberId, third.memberId);
    const asBaraka = (await h.asWorker(baraka.workerId).getDistribution({ venueId: v.venueId, distributionId: equal.distributionId })).distribution!;
    assert.deepEqual(asBaraka.shares.map((s) => [s.memberId, s.amount!.amountMinor]), [[line.memberId, 30000n]]);
  });

  test("a split an admin reversed in the wallet is reversed in the venue when asked, and its period can be split again", async () => {
    const start = new Date(Date.now() - 4 * HOUR);
    const v = await h.newVenue("Carnivore");
    const wambui = await h.join(v, "Wambui", "front_of_house", new Date(start.getTime() - HOUR));
    await v.api.recordShift({ venueId: v.venueId, memberId: wambui.memberId, startedAt: ts(start), endedAt: ts(new Date(start.getTime() + HOUR)), idempotencyKey: randomUUID() });
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: randomUUID() });
    await h.tipPool(v.venueId, KES(200).amountMinor);
    const p = period(start, new Date());
    const d = (await v.api.confirmDistribution({ venueId: v.venueId, period: p })).distribution!;
    const reversalId = await h.reverseInWallet(d.entryId, "posted to the wrong venue");
    assert.equal(await h.poolBalance(v.venueId), 20000n);

    const reversed = (await v.api.reverseDistribution({ venueId: v.venueId, distributionId: d.distributionId, reason: "reversed by support" })).distribution!;
    assert.equal(reversed.status, DistributionStatus.REVERSED);
    assert.equal(reversed.reversalEntryId, reversalId, "the wallet's reversal, not a second one");
    assert.equal(await h.poolBalance(v.venueId), 20000n);
    const redo = await v.api.confirmDistribution({ venueId: v.venueId, period: p });
    assert.deepEqual([redo.created, redo.distribution!.revision], [true, 1]);
    assert.equal(await h.walletBalance(wambui.workerId), 20000n);
    assert.equal(await h.trialBalanced(), true);
  });

  test("a venue whose tip page is in USD splits its pool in KES, where its tips land (M-Pesa's, and cards' at their quoted rate)", async () => {
    const start = new Date(Date.now() - 4 * HOUR);
    const v = await h.newVenue("Safari Lodge", "USD");
    const m = await h.join(v, "Wanjiku", "front_of_house", new Date(start.getTime() - HOUR));
    await v.api.recordShift({ venueId: v.venueId, memberId: m.memberId, startedAt: ts(start), endedAt: ts(new Date(start.getTime() + 3 * HOUR)), idempotencyKey: randomUUID() });
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.EQUAL_ON_SHIFT, idempotencyKey: randomUUID() });
    await h.tipPool(v.venueId, 50000n);
    // Before, the USD venue's period read its USD pool, where no tip lands: nothing to distribute.
    const preview = (await v.api.previewDistribution({ venueId: v.venueId, period: period(start, new Date()) })).distribution!;
    assert.deepEqual([preview.collected!.currency, preview.collected!.amountMinor], ["KES", 50000n]);
    const { distribution } = await v.api.confirmDistribution({ venueId: v.venueId, period: period(start, new Date()), expectedCollected: { currency: "KES", amountMinor: 50000n } });
    assert.equal(distribution!.distributed!.amountMinor, 50000n);
    assert.equal(await h.walletBalance(m.workerId), 50000n);
    assert.equal(await h.poolBalance(v.venueId), 0n);
  });

  test("a preview says what a pool owes (a chargeback after its takings were split) before Confirm refuses it; a period covering the chargeback nets it", async () => {
    const v = await h.newVenue();
    const m = await h.join(v, "Akinyi", "front_of_house");
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.FIXED_PERCENTAGES, fixedShares: [{ memberId: m.memberId, basisPoints: 10_000 }], idempotencyKey: randomUUID() });
    const start = new Date();
    await h.tipPool(v.venueId, 2_000n);
    const split = new Date();
    await v.api.confirmDistribution({ venueId: v.venueId, period: period(start, split) });
    await h.takeFromPool(v.venueId, 1_500n);
    const later = new Date();
    await h.tipPool(v.venueId, 2_000n);
    const end = new Date();

    const owing = (await v.api.previewDistribution({ venueId: v.venueId, period: period(later, end) })).distribution!;
    assert.equal(owing.collected!.amountMinor, 2_000n);
    assert.deepEqual(owing.notes.map((n) => [DistributionNoteKind[n.kind], n.amount?.amountMinor, n.amount?.currency]), [["POOL_OWES", 1_500n, "KES"]]);
    assert.match(owing.summary, /the pool holds KES 5 but the period took KES 20: it owes KES 15 from refunds or chargebacks after earlier splits/);
    await assert.rejects(v.api.confirmDistribution({ venueId: v.venueId, period: period(later, end) }), rejects(Code.FailedPrecondition, /it owes KES 15/));
    // The period that also holds the chargeback owes nothing: its KES 5 is split.
    const netted = (await v.api.previewDistribution({ venueId: v.venueId, period: period(split, end) })).distribution!;
    assert.deepEqual([netted.collected!.amountMinor, netted.notes.length], [500n, 0]);
    const { distribution } = await v.api.confirmDistribution({ venueId: v.venueId, period: period(split, end) });
    assert.equal(distribution!.distributed!.amountMinor, 500n);
    assert.equal(await h.poolBalance(v.venueId), 0n);
  });

  test("tips arriving while a period is distributed are not lost: they fall in the next period", async () => {
    const start = new Date(Date.now() - 4 * HOUR);
    const v = await h.newVenue();
    const m = await h.join(v, "Kamau", "front_of_house", new Date(start.getTime() - HOUR));
    await v.api.recordShift({ venueId: v.venueId, memberId: m.memberId, startedAt: ts(start), endedAt: ts(new Date(start.getTime() + 3 * HOUR)), idempotencyKey: randomUUID() });
    await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.EQUAL_ON_SHIFT, idempotencyKey: randomUUID() });
    for (let i = 0; i < 5; i++) await h.tipPool(v.venueId, 10000n);
    const cut = new Date();
    // Tips keep coming while the distribution of [start, cut) is confirmed.
    let streaming = true;
    let late = 0n;
    const stream = (async () => {
      while (streaming) {
        await h.tipPool(v.venueId, 5000n);
        late += 5000n;
      }
    })();
    await eventually(async () => late > 0n, "tips arriving while the period is confirmed");
    const { distribution } = await v.api.confirmDistribution({ venueId: v.venueId, period: period(start, cut) });
    streaming = false;
    await stream;
    assert.equal(distribution!.distributed!.amountMinor, 50000n);
    assert.ok(late > 0n);
    const next = (await v.api.previewDistribution({ venueId: v.venueId, period: period(cut, new Date()) })).distribution!;
    assert.equal(next.collected!.amountMinor, late);
    assert.equal(await h.poolBalance(v.venueId), late);
  });
});
