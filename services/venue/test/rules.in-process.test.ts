// venue's handler rules in the fast tier: venue, and the qr service that keeps
// its venues and managers, in this process behind the servers' own interceptors,
// reached through router transports on one real database. Invitations by SMS,
// distributions and the wallet stay in venue.test.ts.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { callerHeaders, violationsOf, type Role } from "@ttip/runtime";
import { conflictingKeyOf, reasonOf, refusal, startInProcessService, type InProcessService } from "@ttip/runtime/testing";
import { createQrModule } from "@ttip/qr";
import { createAuth } from "@ttip/auth";
import { Role as AuthRole } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { testPhone } from "@ttip/runtime/testing";
import { createVenueModule } from "../src/index.js";

const fieldsOf = (err: Parameters<typeof violationsOf>[0]) => violationsOf(err).map((v) => v.field);

describe("venue rules, in process (with qr and auth)", () => {
  let s: InProcessService;
  // The SMS edge: the codes auth would text, by number.
  const codes = new Map<string, string>();

  before(async () => {
    s = await startInProcessService(createVenueModule({ env: { VENUE_RESUME_INTERVAL_MS: "0" } }), {
      with: [
        createQrModule({ env: { QR_SIGNING_KEY: "test-signing-key-0123456789abcdef-qr", QR_TIP_BASE_URL: "https://tips.example/t" } }),
        createAuth({ env: {}, otpSender: { send: async (m) => void codes.set(m.phone, m.code) } }),
      ],
    });
  });
  after(() => s?.close());

  /** A venue in qr, managed by a new venue manager, and venue's API as that manager. */
  async function newVenue() {
    const venueId = randomUUID();
    const managerId = randomUUID();
    await createClient(QrService, s.ctx.peers("qr")).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Java House" }, { headers: callerHeaders(managerId, "venue_manager") });
    return { venueId, managerId, api: s.client(VenueService, { subject: managerId, roles: ["venue_manager"] }) };
  }

  test("bad input is refused as INVALID_ARGUMENT naming the field, and changes nothing", async () => {
    const v = await newVenue();
    const phone = await refusal(v.api.inviteMember({ venueId: v.venueId, phone: "0812", displayName: "Amina", roleId: "kitchen", idempotencyKey: randomUUID() }));
    assert.equal(phone.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(phone), ["phone"]);
    const role = await refusal(v.api.inviteMember({ venueId: v.venueId, phone: "0711111111", displayName: "Amina", roleId: "chef", idempotencyKey: randomUUID() }));
    assert.deepEqual(fieldsOf(role), ["role_id"]);
    const shares = await refusal(v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.FIXED_PERCENTAGES, fixedShares: [{ memberId: randomUUID(), basisPoints: 9000 }], idempotencyKey: randomUUID() }));
    assert.deepEqual(violationsOf(shares).map((x) => [x.field, x.message]), [["fixed_shares", "add up to 9000 basis points, not 10000 (100%)"]]);
    // 36 characters of dashes and digits are no member id: refused here, not by the database's uuid cast (INTERNAL).
    const notAnId = await refusal(v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.FIXED_PERCENTAGES, fixedShares: [{ memberId: "-".repeat(36), basisPoints: 10_000 }], idempotencyKey: randomUUID() }));
    assert.equal(notAnId.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(notAnId), ["fixed_shares[0].member_id"]);
    const points = await refusal(v.api.putRole({ venueId: v.venueId, roleId: "barista", name: "Barista", points: 1001 }));
    assert.deepEqual(fieldsOf(points), ["points"]);
    assert.equal((await v.api.listMembers({ venueId: v.venueId })).members.length, 0);
    assert.equal((await v.api.listSplitRules({ venueId: v.venueId })).rules.length, 0);
  });

  test("an invitation starting more than 90 days ahead, or naming the manager's own number, is refused naming the field; nothing is added", async () => {
    // A manager who signed up by OTP: auth holds their number.
    const managerPhone = testPhone({ format: "07" });
    const auth = createClient(AuthService, s.ctx.peers("auth"));
    const { challengeId } = await auth.startPhoneVerification({ phone: managerPhone });
    const code = [...codes].find(([to]) => to.endsWith(managerPhone.slice(1)))?.[1];
    assert.ok(code, "the OTP sent");
    const { tokens } = await auth.verifyPhoneOtp({ challengeId, otp: code, role: AuthRole.VENUE_MANAGER });
    const managerId = JSON.parse(Buffer.from(tokens!.accessToken.split(".")[1], "base64url").toString()).sub as string;
    const venueId = randomUUID();
    await createClient(QrService, s.ctx.peers("qr")).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Tamarind" }, { headers: callerHeaders(managerId, "venue_manager") });
    const api = s.client(VenueService, { subject: managerId, roles: ["venue_manager"] });
    const invite = (phone: string, joinedAt?: Date) =>
      api.inviteMember({ venueId, phone, displayName: "Amina", roleId: "kitchen", joinedAt: joinedAt && timestampFromDate(joinedAt), idempotencyKey: randomUUID() });

    // Their own number, however it is written: before, they were invited to their own staff.
    for (const typed of [managerPhone, `+254${managerPhone.slice(1)}`]) {
      const own = await refusal(invite(typed));
      assert.equal(own.code, Code.InvalidArgument, typed);
      assert.deepEqual(violationsOf(own).map((v) => v.field), ["phone"]);
      assert.match(own.rawMessage, /your own number/);
    }
    // Years ahead (a typo'd year): before, accepted, and they counted for no split until then.
    const day = 86_400_000;
    const later = await refusal(invite(testPhone({ format: "07" }), new Date(Date.now() + 3 * 365 * day)));
    assert.equal(later.code, Code.InvalidArgument);
    assert.deepEqual(violationsOf(later).map((v) => [v.field, v.message]), [["joined_at", "at most 90 days from today; invite them nearer the day they start"]]);
    assert.equal((await refusal(invite(testPhone({ format: "07" }), new Date(Date.now() + 91 * day)))).code, Code.InvalidArgument);
    assert.equal((await api.listMembers({ venueId })).members.length, 0, "nothing added");
    // Within the limit, and another's number: invited.
    const { member } = await invite(testPhone({ format: "07" }), new Date(Date.now() + 89 * day));
    assert.ok(member?.memberId);
  });

  test("access: signed out is refused before the handler; only this venue's manager manages it", async () => {
    const a = await newVenue();
    const b = await newVenue();
    assert.equal((await refusal(s.client(VenueService).listMembers({ venueId: a.venueId }))).code, Code.Unauthenticated);
    const otherManager = await refusal(b.api.listMembers({ venueId: a.venueId }));
    assert.equal(otherManager.code, Code.PermissionDenied);
    assert.match(otherManager.rawMessage, /manager/);
    const worker = s.client(VenueService, { subject: randomUUID(), roles: ["worker"] as Role[] });
    const notStaff = await refusal(worker.setSplitRule({ venueId: a.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: randomUUID() }));
    assert.equal(notStaff.code, Code.PermissionDenied);
    assert.equal((await a.api.listSplitRules({ venueId: a.venueId })).rules.length, 0);
  });

  test("a split rule's key: the same request is the same version; another under the key is ALREADY_EXISTS naming the key; the rule stays", async () => {
    const v = await newVenue();
    const key = randomUUID();
    const first = (await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: key })).rule!;
    const again = (await v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, idempotencyKey: key })).rule!;
    assert.deepEqual([first.version, again.version], [1, 1]);
    const conflict = await refusal(v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.EQUAL_ON_SHIFT, idempotencyKey: key }));
    assert.equal(conflict.code, Code.AlreadyExists);
    assert.equal(conflictingKeyOf(conflict), key);
    const { rules } = await v.api.listSplitRules({ venueId: v.venueId });
    assert.deepEqual(rules.map((r) => [r.version, r.method]), [[1, SplitMethod.BY_HOURS]]);
  });

  test("domain refusals: an unknown venue, a venue with no rule yet, a shift for no member, pooling individual tips (not built)", async () => {
    const v = await newVenue();
    const unknown = await refusal(v.api.listMembers({ venueId: randomUUID() }));
    assert.equal(unknown.code, Code.NotFound);
    assert.match(unknown.rawMessage, /^venue_id: no venue/);
    const noRule = await refusal(v.api.getSplitRule({ venueId: v.venueId }));
    assert.equal(noRule.code, Code.NotFound);
    const hour = 3_600_000;
    const at = (ms: number) => ({ seconds: BigInt(Math.floor(ms / 1000)), nanos: 0 });
    const shift = await refusal(v.api.recordShift({ venueId: v.venueId, memberId: randomUUID(), startedAt: at(Date.now() - 9 * hour), endedAt: at(Date.now() - hour), idempotencyKey: randomUUID() }));
    assert.equal(shift.code, Code.NotFound);
    assert.equal(reasonOf(shift), "NOT_FOUND");
    assert.match(shift.rawMessage, /^member_id: /);
    const pooled = await refusal(v.api.setSplitRule({ venueId: v.venueId, method: SplitMethod.BY_HOURS, poolIndividualTips: true, idempotencyKey: randomUUID() }));
    assert.equal(pooled.code, Code.Unimplemented);
  });
});
