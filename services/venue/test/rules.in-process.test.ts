// venue's handler rules in the fast tier: venue, and the qr service that keeps
// its venues and managers, in this process behind the servers' own interceptors,
// reached through router transports on one real database. Invitations by SMS,
// distributions and the wallet stay in venue.test.ts.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { callerHeaders, violationsOf, type Role } from "@ttip/runtime";
import { conflictingKeyOf, reasonOf, refusal, startInProcessService, type InProcessService } from "@ttip/runtime/testing";
import { createQrModule } from "@ttip/qr";
import { createVenueModule } from "../src/index.js";

const fieldsOf = (err: Parameters<typeof violationsOf>[0]) => violationsOf(err).map((v) => v.field);

describe("venue rules, in process (with qr)", () => {
  let s: InProcessService;

  before(async () => {
    s = await startInProcessService(createVenueModule({ env: { VENUE_RESUME_INTERVAL_MS: "0" } }), {
      with: [createQrModule({ env: { QR_SIGNING_KEY: "test-signing-key-0123456789abcdef-qr", QR_TIP_BASE_URL: "https://tips.example/t" } })],
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
    const points = await refusal(v.api.putRole({ venueId: v.venueId, roleId: "barista", name: "Barista", points: 1001 }));
    assert.deepEqual(fieldsOf(points), ["points"]);
    assert.equal((await v.api.listMembers({ venueId: v.venueId })).members.length, 0);
    assert.equal((await v.api.listSplitRules({ venueId: v.venueId })).rules.length, 0);
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
