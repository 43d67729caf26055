import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { QrScannedSchema, TipSucceededSchema, EventMetaSchema, UserBlockChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import {
  DynamicParametersSchema,
  ErrorCorrection,
  ImageFormat,
  OwnerKind,
  QrCodeProblemSchema,
  QrCodeStatus,
  QrProblemKind,
  type QrCode,
} from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrInternalService, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import type { Role, ServiceContext } from "@ttip/runtime";
import { KES, startTestService, type TestService, eventually } from "@ttip/runtime/testing";
import { createQrModule } from "../src/index.js";
import { loadQrConfig } from "../src/config.js";
import { QrProblemError, Resolver } from "../src/resolver.js";
import { PayloadSigner } from "../src/signing.js";
import { decodeEmvco, parseTlv } from "./emvco-decoder.js";
import { decodePdfBand, decodePng, decodeSvgCodes } from "./raster.js";

const KEY = "test-signing-key-0123456789abcdef-qr";
const BASE = "https://tips.example/t";

const worker = { subject: randomUUID(), roles: ["worker"] as Role[] };
const otherWorker = { subject: randomUUID(), roles: ["worker"] as Role[] };
const manager = { subject: randomUUID(), roles: ["venue_manager"] as Role[] };
const otherManager = { subject: randomUUID(), roles: ["venue_manager"] as Role[] };
const admin = { subject: randomUUID(), roles: ["admin"] as Role[] };
const venueId = randomUUID();

/** Asserts a call fails with `code`, and with `kind` in its QrCodeProblem detail when given. */
async function rejects(p: Promise<unknown>, code: Code, kind?: QrProblemKind, message?: RegExp): Promise<ConnectError> {
  let caught: ConnectError | undefined;
  await p.then(
    () => assert.fail(`expected ${Code[code]}`),
    (e) => (caught = ConnectError.from(e)),
  );
  assert.equal(Code[caught!.code], Code[code], caught!.message);
  if (kind !== undefined) assert.equal(QrProblemKind[caught!.findDetails(QrCodeProblemSchema)[0]?.kind ?? 0], QrProblemKind[kind]);
  if (message) assert.match(caught!.message, message);
  return caught!;
}

const payloadOf = (c: QrCode) => new URL(c.url).searchParams.get("p")!;

describe("qr service", () => {
  let t: TestService;
  const as = (who: { subject: string; roles: Role[] }) => t.client(QrService, who);
  const anon = () => t.client(QrService);
  let key = 0;
  const idem = () => `idem-key-${++key}-${randomUUID()}`;

  before(async () => {
    // A change's keys are deleted again 100 ms later (2 s in production), so a test waits for that little.
    t = await startTestService(createQrModule({ env: { QR_SIGNING_KEY: KEY, QR_TIP_BASE_URL: BASE, QR_CACHE_REFORGET_MS: "100" } }));
    await as(worker).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "Wanjiku <Kamau> & Co", photoUrl: "https://cdn.example/w.jpg" });
    await as(otherWorker).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: otherWorker.subject, displayName: "Otieno" });
    await as(manager).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Java House Kimathi", city: "Nairobi" });
    await as(admin).addVenueStaff({ venueId, workerId: worker.subject });
  });
  after(async () => {
    await t?.close();
  });

  describe("profiles and staff", () => {
    test("only the worker, a manager of the venue or an admin may set a profile; only admins set active", async () => {
      await rejects(as(otherWorker).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "x" }), Code.PermissionDenied);
      await rejects(as(otherManager).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Taken" }), Code.PermissionDenied);
      await rejects(as(worker).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "W", active: true }), Code.PermissionDenied, undefined, /active/);
      await rejects(anon().putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "W" }), Code.Unauthenticated);
      await rejects(as(worker).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "W", photoUrl: "javascript:alert(1)" }), Code.InvalidArgument, undefined, /photo_url/);
      // A worker joins a venue by accepting its invitation (the venue service): before, its manager could put anyone on staff unasked.
      await rejects(as(manager).addVenueStaff({ venueId, workerId: otherWorker.subject }), Code.PermissionDenied);
      await rejects(as(manager).removeVenueStaff({ venueId, workerId: worker.subject }), Code.PermissionDenied);
      await rejects(as(admin).addVenueStaff({ venueId: randomUUID(), workerId: otherWorker.subject }), Code.NotFound);
      const got = await anon().getProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId });
      assert.equal(got.profile?.displayName, "Java House Kimathi");
      assert.equal(got.profile?.currency, "KES");
      assert.equal(got.profile?.active, true);
    });
  });

  test("admins find venues by a part of their name, any case, a % in it matching only a %; nobody else may search", async () => {
    const percent = { subject: randomUUID(), roles: ["venue_manager"] as Role[] };
    const percentVenue = randomUUID();
    await as(percent).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: percentVenue, displayName: "100% Java Juice" });
    const names = async (query: string) => (await as(admin).searchVenues({ query })).venues.map((v) => v.displayName);
    assert.deepEqual(await names("java"), ["100% Java Juice", "Java House Kimathi"]);
    assert.deepEqual(await names("HOUSE KIM"), ["Java House Kimathi"]);
    assert.deepEqual(await names("0%"), ["100% Java Juice"]);
    assert.deepEqual(await names("a%J"), [], "a % is a character, not a wildcard");
    assert.deepEqual(await names("Wanjiku"), [], "workers are not venues");
    await rejects(as(manager).searchVenues({ query: "java" }), Code.PermissionDenied);
    await rejects(as(admin).searchVenues({ query: "j" }), Code.InvalidArgument, undefined, /query/);
  });

  describe("creating codes", () => {
    test("a worker's own code: short code, URL with a signed payload, default parameters", async () => {
      const { qrCode } = await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() });
      assert.match(qrCode!.shortCode, /^[2-9A-HJ-NP-Z]{6}$/);
      assert.ok(qrCode!.url.startsWith(`${BASE}/${qrCode!.shortCode}?p=`), qrCode!.url);
      assert.equal(qrCode!.status, QrCodeStatus.ACTIVE);
      assert.equal(new PayloadSigner(KEY).verify(payloadOf(qrCode!)).qrCodeId, qrCode!.qrCodeId);
    });

    test("authorization: anonymous, another worker, another venue's manager are refused; the venue's manager may issue staff codes", async () => {
      const req = { ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() };
      await rejects(anon().createQrCode(req), Code.Unauthenticated);
      await rejects(as(otherWorker).createQrCode(req), Code.PermissionDenied);
      await rejects(as(otherManager).createQrCode({ ...req, venueId }), Code.PermissionDenied);
      await rejects(as(manager).createQrCode(req), Code.PermissionDenied, undefined);
      const staff = await as(manager).createQrCode({ ...req, venueId, parameters: { table: "7" } });
      assert.equal(staff.qrCode?.venueId, venueId);
      // Not on the staff: refused even for the manager.
      await rejects(
        as(manager).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: otherWorker.subject, venueId, idempotencyKey: idem() }),
        Code.FailedPrecondition,
        undefined,
        /not on the staff/,
      );
      await rejects(as(otherManager).createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: venueId, idempotencyKey: idem() }), Code.PermissionDenied);
      const venueCode = await as(manager).createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: venueId, idempotencyKey: idem() });
      assert.equal(venueCode.qrCode?.ownerKind, OwnerKind.VENUE);
    });

    test("bad parameters are INVALID_ARGUMENT naming the field, and nothing is created", async () => {
      const base = { ownerKind: OwnerKind.WORKER, ownerId: worker.subject };
      const before = await as(worker).listQrCodes({ ...base, includeInactive: true, page: { pageSize: 500 } });
      const cases: Array<[object, RegExp]> = [
        [{ suggestedAmounts: [{ amountMinor: 5000n, currency: "USD" }] }, /suggested_amounts\[0\]\.currency/],
        [{ suggestedAmounts: [KES(50), { amountMinor: 5050n, currency: "KES" }] }, /suggested_amounts\[1\]\.amount_minor: KES amounts must be whole shillings/],
        [{ fixedAmount: { amountMinor: -100n, currency: "KES" } }, /fixed_amount\.amount_minor: must be positive/],
        [{ table: "x".repeat(65) }, /parameters\.table/],
        [{ suggestedAmounts: [KES(50)], fixedAmount: KES(100) }, /not both/],
        [{ suggestedAmounts: Array.from({ length: 11 }, () => KES(10)) }, /suggested_amounts: at most 10/],
      ];
      for (const [parameters, message] of cases) {
        await rejects(as(worker).createQrCode({ ...base, parameters, idempotencyKey: idem() }), Code.InvalidArgument, undefined, message);
      }
      await rejects(as(worker).createQrCode({ ...base, expiresAt: timestampFromMs(Date.now() - 1000), idempotencyKey: idem() }), Code.InvalidArgument, undefined, /expires_at/);
      // Past what the signed payload's 32 bits hold: before, stored, then INTERNAL on the create and on every list of its owner.
      await rejects(as(worker).createQrCode({ ...base, expiresAt: timestampFromMs(Date.UTC(2200, 0, 1)), idempotencyKey: idem() }), Code.InvalidArgument, undefined, /expires_at/);
      await rejects(as(worker).createQrCode({ ...base, ownerId: "nope", idempotencyKey: idem() }), Code.InvalidArgument, undefined, /owner_id/);
      const after = await as(worker).listQrCodes({ ...base, includeInactive: true, page: { pageSize: 500 } });
      assert.equal(after.qrCodes.length, before.qrCodes.length);
    });

    test("a code in another currency than KES takes amounts up to that currency's largest card tip: a larger fixed amount is refused, not printed on a code every scan of which is refused", async () => {
      const usd = { subject: randomUUID(), roles: ["worker"] as Role[] };
      await as(usd).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: usd.subject, displayName: "Lindiwe", currency: "USD" });
      const base = { ownerKind: OwnerKind.WORKER, ownerId: usd.subject };
      await rejects(as(usd).createQrCode({ ...base, parameters: { fixedAmount: { amountMinor: 10_000_00n, currency: "USD" } }, idempotencyKey: idem() }),
        Code.InvalidArgument, undefined, /fixed_amount\.amount_minor: must be at most 200000 \(USD 2,000(\.00)?, the largest tip in USD\)/);
      await rejects(as(usd).createQrCode({ ...base, parameters: { suggestedAmounts: [{ amountMinor: 5_00n, currency: "USD" }, { amountMinor: 2_000_01n, currency: "USD" }] }, idempotencyKey: idem() }),
        Code.InvalidArgument, undefined, /suggested_amounts\[1\]\.amount_minor: must be at most 200000/);
      const made = await as(usd).createQrCode({ ...base, parameters: { fixedAmount: { amountMinor: 2_000_00n, currency: "USD" } }, idempotencyKey: idem() });
      assert.equal(made.qrCode?.parameters?.fixedAmount?.amountMinor, 2_000_00n, "the largest card tip itself is taken");
    });

    test("an owner without a profile, or an inactive one, gets FAILED_PRECONDITION; a retry of a code made before is answered it", async () => {
      const fresh = { subject: randomUUID(), roles: ["worker"] as Role[] };
      await rejects(as(fresh).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: fresh.subject, idempotencyKey: idem() }), Code.FailedPrecondition, undefined, /PutProfile/);
      await as(fresh).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: fresh.subject, displayName: "F" });
      // A create whose answer was lost, retried after the owner was deactivated: answered the code made, not refused.
      const made = { ownerKind: OwnerKind.WORKER, ownerId: fresh.subject, idempotencyKey: idem() };
      const { qrCode } = await as(fresh).createQrCode(made);
      await as(admin).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: fresh.subject, displayName: "F", active: false });
      await rejects(as(fresh).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: fresh.subject, idempotencyKey: idem() }), Code.FailedPrecondition, undefined, /not active/);
      assert.equal((await as(fresh).createQrCode(made)).qrCode?.qrCodeId, qrCode!.qrCodeId);
    });

    test("a retried create returns the same code; the same key with another request is refused", async () => {
      const k = idem();
      const req = { ownerKind: OwnerKind.WORKER, ownerId: worker.subject, parameters: { campaign: "xmas" }, idempotencyKey: k };
      const [a, b] = await Promise.all([as(worker).createQrCode(req), as(worker).createQrCode(req)]);
      assert.equal(a.qrCode!.qrCodeId, b.qrCode!.qrCodeId);
      assert.equal(a.qrCode!.url, b.qrCode!.url);
      await rejects(as(worker).createQrCode({ ...req, parameters: { campaign: "easter" } }), Code.AlreadyExists, undefined, /idempotency_key/);
      const { rows } = await t.db.pool.query(`SELECT count(*)::int AS n FROM qr.qr_codes WHERE parameters = $1`, [
        Buffer.from(toBinary(DynamicParametersSchema, create(DynamicParametersSchema, { campaign: "xmas" }))),
      ]);
      assert.equal(rows[0].n, 1);
    });
  });

  describe("resolving", () => {
    let code: QrCode;
    let staffCode: QrCode;
    before(async () => {
      code = (await as(worker).createQrCode({
        ownerKind: OwnerKind.WORKER,
        ownerId: worker.subject,
        parameters: { suggestedAmounts: [KES(100), KES(300)], shift: "evening" },
        idempotencyKey: idem(),
      })).qrCode!;
      staffCode = (await as(manager).createQrCode({
        ownerKind: OwnerKind.WORKER,
        ownerId: worker.subject,
        venueId,
        parameters: { fixedAmount: KES(200), table: "12" },
        idempotencyKey: idem(),
      })).qrCode!;
    });

    test("by payload and by short code (any case), anonymously: what the tip page needs", async () => {
      const { target } = await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } });
      assert.equal(target?.qrCodeId, code.qrCodeId);
      assert.equal(target?.workerId, worker.subject);
      assert.equal(target?.displayName, "Wanjiku <Kamau> & Co");
      assert.equal(target?.photoUrl, "https://cdn.example/w.jpg");
      assert.equal(target?.currency, "KES");
      assert.deepEqual(target?.suggestedAmounts.map((m) => m.amountMinor), [10000n, 30000n]);
      assert.equal(target?.shift, "evening");
      const typed = await anon().resolveQrCode({ code: { case: "shortCode", value: code.shortCode.toLowerCase() } });
      assert.equal(typed.target?.qrCodeId, code.qrCodeId);

      const staff = (await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(staffCode) } })).target!;
      assert.equal(staff.venueId, venueId);
      assert.equal(staff.venueName, "Java House Kimathi");
      assert.equal(staff.fixedAmount?.amountMinor, 20000n);
      assert.deepEqual(staff.suggestedAmounts, [], "nothing to choose with a fixed amount");
      assert.equal(staff.table, "12");
      // No amounts set: the configured defaults, in the code's currency.
      const plain = (await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() })).qrCode!;
      const dflt = (await anon().resolveQrCode({ code: { case: "shortCode", value: plain.shortCode } })).target!;
      assert.deepEqual(dflt.suggestedAmounts.map((m) => `${m.amountMinor} ${m.currency}`), ["5000 KES", "10000 KES", "20000 KES", "50000 KES"]);
    });

    test("a tampered, forged or malformed payload is INVALID_ARGUMENT / TAMPERED", async () => {
      const p = payloadOf(staffCode);
      // Change the fixed amount inside the body and keep the signature.
      const [body, sig] = p.split(".");
      const bytes = Buffer.from(body, "base64url");
      const params = fromBinary(DynamicParametersSchema, bytes.subarray(21));
      params.fixedAmount!.amountMinor = 100n;
      const altered = Buffer.concat([bytes.subarray(0, 21), Buffer.from(toBinary(DynamicParametersSchema, params))]).toString("base64url");
      await rejects(anon().resolveQrCode({ code: { case: "payload", value: `${altered}.${sig}` } }), Code.InvalidArgument, QrProblemKind.TAMPERED, /signature/);
      const forged = new PayloadSigner("another-key-that-is-long-enough-xx").sign({ qrCodeId: staffCode.qrCodeId, parameters: params });
      await rejects(anon().resolveQrCode({ code: { case: "payload", value: forged } }), Code.InvalidArgument, QrProblemKind.TAMPERED);
      await rejects(anon().resolveQrCode({ code: { case: "payload", value: "this-is-not-a-payload-at-all" } }), Code.InvalidArgument, QrProblemKind.TAMPERED);
      // Too short for the contract: protovalidate answers first.
      await rejects(anon().resolveQrCode({ code: { case: "payload", value: "short" } }), Code.InvalidArgument);
    });

    test("unknown codes are NOT_FOUND", async () => {
      await rejects(anon().resolveQrCode({ code: { case: "shortCode", value: "ZZZZ22" } }), Code.NotFound, QrProblemKind.UNKNOWN_CODE);
      const genuine = new PayloadSigner(KEY).sign({ qrCodeId: randomUUID(), parameters: create(DynamicParametersSchema) });
      await rejects(anon().resolveQrCode({ code: { case: "payload", value: genuine } }), Code.NotFound, QrProblemKind.UNKNOWN_CODE);
    });

    test("expired: by the payload's signed expiry and by the code's own", async () => {
      const signer = new PayloadSigner(KEY);
      const stale = signer.sign({ qrCodeId: code.qrCodeId, expiresAt: Math.floor(Date.now() / 1000) - 5, parameters: create(DynamicParametersSchema) });
      await rejects(anon().resolveQrCode({ code: { case: "payload", value: stale } }), Code.FailedPrecondition, QrProblemKind.EXPIRED);

      const expiring = (await as(worker).createQrCode({
        ownerKind: OwnerKind.WORKER,
        ownerId: worker.subject,
        expiresAt: timestampFromMs(Date.now() + 60_000),
        idempotencyKey: idem(),
      })).qrCode!;
      assert.ok(expiring.expiresAt);
      assert.equal(signer.verify(payloadOf(expiring)).expiresAt, Math.floor(Number(expiring.expiresAt.seconds)));
      await anon().resolveQrCode({ code: { case: "shortCode", value: expiring.shortCode } });
      // Time passes (the row says so; its cached copy is dropped as a change would drop it).
      await t.db.pool.query(`UPDATE qr.qr_codes SET expires_at = now() - interval '1 second' WHERE qr_code_id = $1`, [expiring.qrCodeId]);
      await t.ctx.cache.del(`qr:code:${expiring.qrCodeId}`);
      await rejects(anon().resolveQrCode({ code: { case: "shortCode", value: expiring.shortCode } }), Code.FailedPrecondition, QrProblemKind.EXPIRED);
      // Nor printed: before, its card (and its paybill line) came out as if live.
      await rejects(as(worker).renderQrCode({ qrCodeId: expiring.qrCodeId, format: ImageFormat.PRINT_SVG }), Code.FailedPrecondition, undefined, /has expired/);
      await rejects(as(worker).getOfflinePayload({ qrCodeId: expiring.qrCodeId }), Code.FailedPrecondition, undefined, /has expired/);
    });

    test("rotation: the old code (URL or short code) says ROTATED and names the new one, which resolves", async () => {
      const c = (await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, parameters: { table: "3" }, idempotencyKey: idem() })).qrCode!;
      await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(c) } }); // warm the cache
      const k = idem();
      const rotated = (await as(worker).rotateQrCode({ qrCodeId: c.qrCodeId, idempotencyKey: k })).qrCode!;
      assert.notEqual(rotated.shortCode, c.shortCode);
      assert.equal(rotated.parameters?.table, "3");
      const again = (await as(worker).rotateQrCode({ qrCodeId: c.qrCodeId, idempotencyKey: k })).qrCode!;
      assert.equal(again.qrCodeId, rotated.qrCodeId, "a retried rotation returns the same new code");
      for (const value of [{ case: "payload" as const, value: payloadOf(c) }, { case: "shortCode" as const, value: c.shortCode }]) {
        const e = await rejects(anon().resolveQrCode({ code: value }), Code.FailedPrecondition, QrProblemKind.ROTATED);
        assert.equal(e.findDetails(QrCodeProblemSchema)[0].replacedByQrCodeId, rotated.qrCodeId);
      }
      assert.equal((await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(rotated) } })).target?.qrCodeId, rotated.qrCodeId);
      await rejects(as(worker).rotateQrCode({ qrCodeId: c.qrCodeId, idempotencyKey: idem() }), Code.FailedPrecondition, undefined, /replaced/);
      await rejects(as(otherWorker).rotateQrCode({ qrCodeId: rotated.qrCodeId, idempotencyKey: idem() }), Code.PermissionDenied);
      // Revoking the old card is refused, naming the code that takes its tips: before, "revoked", and the new one kept taking them.
      const e = await rejects(as(worker).revokeQrCode({ qrCodeId: c.qrCodeId, reason: "card stolen" }), Code.FailedPrecondition, undefined, /replaced by/);
      assert.match(e.rawMessage, new RegExp(rotated.qrCodeId));
      const old = (await as(worker).getQrCode({ qrCodeId: c.qrCodeId })).qrCode!;
      assert.equal(old.status, QrCodeStatus.ROTATED);
      assert.equal(old.replacedByQrCodeId, rotated.qrCodeId);
    });

    test("revocation: REVOKED at once, even with a warm cache; revoking again changes nothing", async () => {
      const c = (await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() })).qrCode!;
      await anon().resolveQrCode({ code: { case: "shortCode", value: c.shortCode } });
      await rejects(as(otherWorker).revokeQrCode({ qrCodeId: c.qrCodeId, reason: "x" }), Code.PermissionDenied);
      const revoked = (await as(worker).revokeQrCode({ qrCodeId: c.qrCodeId, reason: "card lost" })).qrCode!;
      assert.equal(revoked.status, QrCodeStatus.REVOKED);
      await rejects(anon().resolveQrCode({ code: { case: "shortCode", value: c.shortCode } }), Code.FailedPrecondition, QrProblemKind.REVOKED);
      await rejects(anon().resolveQrCode({ code: { case: "payload", value: payloadOf(c) } }), Code.FailedPrecondition, QrProblemKind.REVOKED);
      assert.equal((await as(worker).revokeQrCode({ qrCodeId: c.qrCodeId, reason: "again" })).qrCode?.status, QrCodeStatus.REVOKED);
      await rejects(as(worker).revokeQrCode({ qrCodeId: randomUUID(), reason: "" }), Code.NotFound);
    });

    test("an inactive worker or venue stops its codes resolving; reactivation brings them back", async () => {
      const set = (active: boolean) =>
        as(admin).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "Wanjiku <Kamau> & Co", photoUrl: "https://cdn.example/w.jpg", active });
      await set(false);
      await rejects(anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } }), Code.FailedPrecondition, QrProblemKind.OWNER_INACTIVE);
      await set(true);
      await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } });

      const venue = (active: boolean) => as(admin).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Java House Kimathi", city: "Nairobi", active });
      await venue(false);
      await rejects(anon().resolveQrCode({ code: { case: "payload", value: payloadOf(staffCode) } }), Code.FailedPrecondition, QrProblemKind.VENUE_INACTIVE);
      // The worker's own code does not depend on the venue.
      await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } });
      await venue(true);
      await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(staffCode) } });
    });

    test("a warm resolve is served from Redis until a change invalidates it", async () => {
      // The changes above delete their keys a second time a moment later: let every second delete pass first.
      const passes = async () => {
        const { values } = await t.ctx.metrics.registry.getSingleMetric("ttip_qr_cache_invalidations_total")!.get();
        const count = (pass: string) => values.find((v) => v.labels.pass === pass)?.value ?? 0;
        return { first: count("first"), second: count("second") };
      };
      await eventually("every change's second cache delete", async () => {
        const { first, second } = await passes();
        return first > 0 && second === first;
      });
      await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } });
      // Changed behind the service's back: the cache still answers, so Postgres was not read.
      await t.db.pool.query(`UPDATE qr.profiles SET display_name = 'Behind the back' WHERE owner_id = $1`, [worker.subject]);
      const cached = await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } });
      assert.equal(cached.target?.displayName, "Wanjiku <Kamau> & Co");
      const redis = (t.ctx.cache as unknown as { redis: import("ioredis").Redis }).redis;
      const [codeKey] = await redis.keys(`*qr:code:${code.qrCodeId}`);
      const ttl = await redis.ttl(codeKey);
      assert.ok(ttl > 500 && ttl <= 600, `ttl ${ttl}`);
      // A change through the service invalidates it.
      await as(worker).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "Wanjiku <Kamau> & Co", photoUrl: "https://cdn.example/w2.jpg" });
      const fresh = await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } });
      assert.equal(fresh.target?.photoUrl, "https://cdn.example/w2.jpg");
    });

    test("concurrent misses on a cold code share one Postgres read per key", async () => {
      await t.ctx.cache.del(`qr:code:${code.qrCodeId}`);
      await t.ctx.cache.del(`qr:profile:1:${worker.subject}`);
      const pool = t.db.pool;
      const query = pool.query;
      let reads = 0;
      pool.query = ((...args: Parameters<typeof query>) => {
        reads++;
        return (query as (...a: unknown[]) => unknown).apply(pool, args);
      }) as typeof query;
      try {
        const all = await Promise.all(Array.from({ length: 20 }, () => anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } })));
        assert.ok(all.every((r) => r.target?.qrCodeId === code.qrCodeId));
      } finally {
        pool.query = query;
      }
      // Without sharing it would be 40 (a code and a profile read per call); a call that
      // missed just as the first load finished may read once more.
      assert.ok(reads >= 2 && reads <= 4, `${reads} reads`);
    });

    test("resolve outcomes and cache results are counted for Prometheus", async () => {
      const text = await t.ctx.metrics.registry.metrics();
      for (const outcome of ["ok", "tampered", "expired", "rotated", "revoked", "owner_inactive", "venue_inactive", "unknown_code"]) {
        assert.match(text, new RegExp(`ttip_qr_resolves_total\\{outcome="${outcome}"\\} [1-9]`), outcome);
      }
      assert.match(text, /ttip_qr_cache_lookups_total\{entry="code",result="hit"\} [1-9]/);
      assert.match(text, /ttip_qr_cache_lookups_total\{entry="profile",result="miss"\} [1-9]/);
    });

    test("with Redis failing, resolves fall back to Postgres instead of failing", async () => {
      const cache = t.ctx.cache;
      const { get, getMany, set } = cache;
      const down = async () => {
        throw new Error("redis down");
      };
      Object.assign(cache, { get: down, getMany: down, set: down });
      try {
        // Warm (the keys known from earlier resolves) and cold (a short code never resolved here).
        const r = await anon().resolveQrCode({ code: { case: "shortCode", value: code.shortCode } });
        assert.equal(r.target?.qrCodeId, code.qrCodeId);
        const cold = (await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() })).qrCode!;
        assert.equal((await anon().resolveQrCode({ code: { case: "shortCode", value: cold.shortCode } })).target?.qrCodeId, cold.qrCodeId);
      } finally {
        Object.assign(cache, { get, getMany, set });
      }
    });

    test("a warm resolve reads its code and profiles in one round trip to the cache, and Postgres not at all", async () => {
      const cache = t.ctx.cache;
      const { get, getMany } = cache;
      const reads: string[][] = [];
      cache.get = (key) => (reads.push([key]), get.call(cache, key));
      cache.getMany = (keys) => (reads.push([...keys]), getMany.call(cache, keys));
      const pool = t.db.pool;
      const query = pool.query;
      let queries = 0;
      // The outbox relay's idle probe and the event inbox share the pool and may run meanwhile: not the resolve's.
      const background = (sql: unknown) => /\.(outbox|inbox)\b/.test(String((sql as { text?: string })?.text ?? sql));
      pool.query = ((...args: Parameters<typeof query>) => (background(args[0]) || queries++, (query as (...a: unknown[]) => unknown).apply(pool, args))) as typeof query;
      try {
        for (const value of [{ case: "payload" as const, value: payloadOf(staffCode) }, { case: "shortCode" as const, value: staffCode.shortCode }]) {
          // The tests before changed codes and profiles: an invalidation's second pass (100 ms later here, or
          // later on a loaded machine) deleting these keys between the two resolves would make the second cold.
          await eventually("every invalidation's second pass has run", async () => {
            const text = await t.ctx.metrics.registry.metrics();
            const pass = (p: string) => text.match(new RegExp(`ttip_qr_cache_invalidations_total\\{pass="${p}"\\} (\\d+)`))?.[1];
            return pass("first") === pass("second");
          });
          await anon().resolveQrCode({ code: value }); // this process learns the keys a resolve of this code reads
          reads.length = 0;
          queries = 0;
          const { target } = await anon().resolveQrCode({ code: value });
          assert.equal(target?.venueName, "Java House Kimathi", value.case);
          assert.deepEqual(reads, [[`qr:code:${staffCode.qrCodeId}`, `qr:profile:1:${worker.subject}`, `qr:profile:2:${venueId}`]], value.case);
          assert.equal(queries, 0, value.case);
        }
      } finally {
        Object.assign(cache, { get, getMany });
        pool.query = query;
      }
    });

    test("a replica that resolved a code before sees every change made through another at once", async () => {
      const w = { subject: randomUUID(), roles: ["worker"] as Role[] };
      const m = { subject: randomUUID(), roles: ["venue_manager"] as Role[] };
      const venue = randomUUID();
      const profile = (displayName: string, active?: boolean) => as(active === undefined ? w : admin).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, displayName, active });
      const venueActive = (active: boolean) => as(admin).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venue, displayName: "Mama Oliech", active });
      await profile("Achieng");
      await as(m).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venue, displayName: "Mama Oliech" });
      await as(admin).addVenueStaff({ venueId: venue, workerId: w.subject });
      const c = (await as(m).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, venueId: venue, idempotencyKey: idem() })).qrCode!;
      // Another replica of the service: its own process memory, the same Redis and Postgres.
      const replica = new Resolver(t.ctx.pool, t.ctx.cache, new PayloadSigner(KEY), loadQrConfig({ QR_SIGNING_KEY: KEY, QR_TIP_BASE_URL: BASE }), t.ctx.logger);
      const inputs = [{ case: "payload" as const, value: payloadOf(c) }, { case: "shortCode" as const, value: c.shortCode }];
      const resolveBoth = () => Promise.all(inputs.map((input) => replica.resolve(input)));
      const refusedBoth = async (kind: QrProblemKind) => {
        for (const input of inputs) {
          await assert.rejects(replica.resolve(input), (e) => e instanceof QrProblemError && e.kind === kind && e.code === Code.FailedPrecondition, `${input.case}: ${QrProblemKind[kind]}`);
        }
      };
      await resolveBoth();
      await resolveBoth(); // warm: the replica reads each code's keys in one round trip now

      await profile("Achieng O.");
      assert.deepEqual((await resolveBoth()).map((r) => r.target.displayName), ["Achieng O.", "Achieng O."]);
      await profile("Achieng O.", false);
      await refusedBoth(QrProblemKind.OWNER_INACTIVE);
      await profile("Achieng O.", true);
      await resolveBoth();
      await venueActive(false);
      await refusedBoth(QrProblemKind.VENUE_INACTIVE);
      await venueActive(true);
      await resolveBoth();
      await as(m).revokeQrCode({ qrCodeId: c.qrCodeId, reason: "card lost" });
      await refusedBoth(QrProblemKind.REVOKED);
    });
  });

  describe("scans and conversion", () => {
    let code: QrCode;
    before(async () => {
      code = (await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() })).qrCode!;
    });

    test("RecordScan resolves, records the scan and publishes QrScanned through the outbox; a reload is the same scan", async () => {
      const seen: Array<ReturnType<typeof fromBinary<typeof QrScannedSchema>>> = [];
      const sub = await t.ctx.bus.subscribe({
        durable: `scans-${randomUUID().slice(0, 8)}`,
        subject: "ttip.qr.scanned",
        handler: async (m) => void seen.push(fromBinary(QrScannedSchema, m.data)),
      });
      try {
        const scan = { code: { case: "payload" as const, value: payloadOf(code) }, referrer: "https://instagram.com/?phone=254712345678#x", userAgent: "Safari", deviceId: "device-a" };
        const first = await anon().recordScan(scan);
        assert.equal(first.target?.qrCodeId, code.qrCodeId);
        const reload = await anon().recordScan(scan);
        assert.equal(reload.scanId, first.scanId);
        // Same browser, another phone.
        const other = await anon().recordScan({ ...scan, deviceId: "device-b", code: { case: "shortCode", value: code.shortCode } });
        assert.notEqual(other.scanId, first.scanId);
        await eventually("both scan events", () => seen.filter((e) => e.qrCodeId === code.qrCodeId).length >= 2);
        // The relay publishes what the outbox holds: two scan events for this code, none for the reload.
        const outboxed = await t.db.pool.query("SELECT count(*)::int AS n FROM qr.outbox WHERE subject = 'ttip.qr.scanned' AND position($1 in encode(payload, 'escape')) > 0", [code.qrCodeId]);
        assert.equal(outboxed.rows[0].n, 2);
        const mine = seen.filter((e) => e.qrCodeId === code.qrCodeId);
        assert.equal(mine.length, 2, "one event per scan, none for the reload");
        assert.equal(mine[0].shortCode, code.shortCode);
        assert.equal(mine[0].workerId, worker.subject);
        assert.equal(mine[0].referrer, "https://instagram.com/");
        assert.equal(mine[0].meta?.producer, "qr");
        assert.ok(mine[0].deviceHash && mine[0].deviceHash !== mine[1].deviceHash);
        assert.doesNotMatch(mine[0].deviceHash, /device/);
      } finally {
        await sub.stop();
      }
      const revoked = (await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() })).qrCode!;
      await as(worker).revokeQrCode({ qrCodeId: revoked.qrCodeId, reason: "" });
      await rejects(anon().recordScan({ code: { case: "shortCode", value: revoked.shortCode }, referrer: "", userAgent: "x" }), Code.FailedPrecondition, QrProblemKind.REVOKED);
      const { rows } = await t.db.pool.query(`SELECT count(*)::int AS n FROM qr.scans WHERE qr_code_id = $1`, [revoked.qrCodeId]);
      assert.equal(rows[0].n, 0);
    });

    test("a worker auth blocks takes no tips at their code; a block or unblock older than the one applied changes nothing", async () => {
      const resolve = () => anon().resolveQrCode({ code: { case: "shortCode", value: code.shortCode } });
      await resolve(); // cached as taking tips
      const change = (blocked: boolean, us: bigint, userId = worker.subject) => {
        const id = randomUUID();
        return t.ctx.bus.publish({
          id,
          subject: "ttip.auth.user_block_changed",
          data: toBinary(UserBlockChangedSchema, create(UserBlockChangedSchema, {
            meta: create(EventMetaSchema, { id, occurredAt: timestampNow(), producer: "auth" }),
            userId, blocked, reason: "review", changedBy: randomUUID(), changedAt: { seconds: us / 1_000_000n, nanos: Number(us % 1_000_000n) * 1000 },
          })),
        });
      };
      const refused = () => resolve().then(() => false, (e: ConnectError) => e.code === Code.FailedPrecondition && /not taking tips/.test(e.rawMessage));
      const at = BigInt(Date.now()) * 1000n;
      await change(true, at + 2n);
      await eventually("the code refusing tips", refused);
      // An unblock a microsecond older, delivered late, is not applied: the block committed after it. A marker for
      // another user after it says when it was read (one consumer, in order).
      await change(false, at + 1n);
      const marker = randomUUID();
      await change(true, at, marker);
      await eventually("the late unblock read", async () => (await t.db.pool.query("SELECT 1 FROM qr.blocked_users WHERE user_id = $1", [marker])).rowCount === 1);
      assert.equal(await refused(), true, "still blocked");
      await change(false, at + 3n);
      await eventually("the code taking tips again", () => resolve().then(() => true, () => false));
    });

    test("scan-to-tip conversion per code counts each TipSucceeded once", async () => {
      const tipId = randomUUID();
      const publish = (eventId: string, tip: string) =>
        t.ctx.bus.publish({
          id: eventId,
          subject: "ttip.payment.tip_succeeded",
          data: toBinary(TipSucceededSchema, create(TipSucceededSchema, {
            meta: create(EventMetaSchema, { id: eventId, occurredAt: timestampNow(), producer: "payment" }),
            tipId: tip,
            workerId: worker.subject,
            qrCodeId: code.qrCodeId,
            amount: KES(100),
          })),
        });
      const eventId = randomUUID();
      await publish(eventId, tipId);
      await publish(eventId, tipId);
      const again = randomUUID();
      await publish(again, tipId); // the same tip reported twice
      // Another tip after them, for another code: once it is counted, the events before it were applied (one consumer, in order).
      const last = randomUUID();
      const other = (await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() })).qrCode!;
      await t.ctx.bus.publish({
        id: last,
        subject: "ttip.payment.tip_succeeded",
        data: toBinary(TipSucceededSchema, create(TipSucceededSchema, {
          meta: create(EventMetaSchema, { id: last, occurredAt: timestampNow(), producer: "payment" }), tipId: last, workerId: worker.subject, qrCodeId: other.qrCodeId, amount: KES(100),
        })),
      });
      const range = { from: timestampFromMs(Date.now() - 3_600_000), to: timestampFromMs(Date.now() + 3_600_000) };
      await eventually("the events applied", async () => (await t.db.pool.query("SELECT 1 FROM qr.tips WHERE tip_id = $1", [last])).rowCount === 1);
      // A tip is counted by its id: its events leave no inbox row (a heap row and two index entries each).
      const inbox = await t.db.pool.query("SELECT count(*)::int AS n FROM qr.inbox WHERE event_id = ANY($1::uuid[])", [[eventId, again, last]]);
      assert.equal(inbox.rows[0].n, 0);
      const stats = (await as(worker).getScanStats({ qrCodeId: code.qrCodeId, ...range })).stats[0];
      assert.equal(stats.scans, 2n);
      assert.equal(stats.uniqueDevices, 2n);
      assert.equal(stats.tips, 1n);
      assert.equal(stats.conversionBps, 5000);
      const byOwner = await as(worker).getScanStats({ ownerId: worker.subject, ...range });
      assert.ok(byOwner.stats.some((s) => s.qrCodeId === code.qrCodeId && s.tips === 1n));
      const byVenue = await as(manager).getScanStats({ ownerId: venueId, ...range });
      assert.ok(byVenue.stats.length > 0 && byVenue.stats.every((s) => s.qrCodeId !== code.qrCodeId), "the venue sees its codes only");
      await rejects(as(otherWorker).getScanStats({ qrCodeId: code.qrCodeId, ...range }), Code.PermissionDenied);
      await rejects(as(otherWorker).getScanStats({ ownerId: worker.subject, ...range }), Code.PermissionDenied);
      await rejects(as(worker).getScanStats({ ...range }), Code.InvalidArgument);
      // A manager who named a venue by a worker's id (found by resolving their code) read the worker's counts as the venue's.
      const squatter = { subject: randomUUID(), roles: ["venue_manager"] as Role[] };
      await rejects(as(squatter).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: worker.subject, displayName: "x" }), Code.InvalidArgument, undefined, /owner_id: names a worker/);
      await rejects(as(squatter).getScanStats({ ownerId: worker.subject, ...range }), Code.PermissionDenied);
      // A venue's statistics count its own codes and those at it, never a worker's elsewhere under the same id.
      await t.db.pool.query("INSERT INTO qr.venue_managers (venue_id, manager_id) VALUES ($1, $2)", [worker.subject, squatter.subject]);
      assert.deepEqual((await as(squatter).getScanStats({ ownerId: worker.subject, ...range })).stats, [], "a venue of that id has no codes");
    });
  });

  describe("offline form and C2B matching", () => {
    test("the KE-QR payload decodes with an independent decoder, CRC correct, naming the worker's account reference", async () => {
      const c = (await as(manager).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, venueId, idempotencyKey: idem() })).qrCode!;
      const { offline } = await as(worker).getOfflinePayload({ qrCodeId: c.qrCodeId });
      assert.equal(offline?.paybillOrTill, "174379");
      assert.equal(offline?.accountReference, c.shortCode);
      // Dialled on a keypad (0-9, * and # only), its digits name the code.
      const dialled = /^\*483\*123\*(\d{11})#$/.exec(offline!.ussdCode)?.[1];
      assert.ok(dialled, `a keypad can dial ${offline?.ussdCode}`);
      assert.equal((await as(worker).resolveQrCode({ code: { case: "shortCode", value: dialled } })).target?.qrCodeId, c.qrCodeId);
      const d = decodeEmvco(offline!.emvcoPayload);
      assert.ok(d.crcOk, "CRC16-CCITT in tag 63");
      assert.equal(d.tags.get("53"), "404");
      assert.equal(d.tags.get("58"), "KE");
      assert.equal(d.tags.get("59"), "Wanjiku <Kamau> & Co");
      assert.equal(d.tags.get("60"), "Nairobi");
      assert.equal(parseTlv(d.tags.get("28")!).get("01"), "174379");
      assert.equal(parseTlv(d.tags.get("62")!).get("05"), c.shortCode);
      assert.equal(parseTlv(d.tags.get("81")!).get("01"), offline?.ussdCode);
      await rejects(as(otherWorker).getOfflinePayload({ qrCodeId: c.qrCodeId }), Code.PermissionDenied);
    });

    test("MatchAccountReference finds the worker, as typed, and still for a rotated code", async () => {
      const internal = t.client(QrInternalService);
      const c = (await as(manager).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, venueId, idempotencyKey: idem() })).qrCode!;
      const m = await internal.matchAccountReference({ accountReference: ` ${c.shortCode.toLowerCase()} ` });
      assert.equal(m.workerId, worker.subject);
      assert.equal(m.qrCodeId, c.qrCodeId);
      assert.equal(m.venueId, venueId);
      assert.equal(m.status, QrCodeStatus.ACTIVE);
      await as(worker).rotateQrCode({ qrCodeId: c.qrCodeId, idempotencyKey: idem() });
      const late = await internal.matchAccountReference({ accountReference: c.shortCode });
      assert.equal(late.workerId, worker.subject);
      assert.equal(late.status, QrCodeStatus.ROTATED);
      const v = (await as(manager).createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: venueId, idempotencyKey: idem() })).qrCode!;
      const venueMatch = await internal.matchAccountReference({ accountReference: v.shortCode });
      assert.equal(venueMatch.workerId, "");
      assert.equal(venueMatch.venueId, venueId);
      await rejects(internal.matchAccountReference({ accountReference: "NOPE99" }), Code.NotFound);
    });
  });

  describe("rendering", () => {
    let code: QrCode;
    before(async () => {
      code = (await as(manager).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, venueId, parameters: { table: "9" }, idempotencyKey: idem() })).qrCode!;
    });

    test("PNG at the asked size and error correction decodes back to the code's URL", async () => {
      for (const [size, ec] of [[0, ErrorCorrection.UNSPECIFIED], [300, ErrorCorrection.H], [1024, ErrorCorrection.L]] as const) {
        const r = await as(worker).renderQrCode({ qrCodeId: code.qrCodeId, format: ImageFormat.PNG, size, errorCorrection: ec });
        assert.equal(r.contentType, "image/png");
        const png = decodePng(r.content);
        assert.equal(png.width, size || 512);
        assert.equal(png.height, size || 512);
        assert.equal(png.text, code.url);
      }
      await rejects(as(worker).renderQrCode({ qrCodeId: code.qrCodeId, format: ImageFormat.PNG, caption: true }), Code.InvalidArgument, undefined, /caption/);
      await rejects(as(worker).renderQrCode({ qrCodeId: code.qrCodeId, format: ImageFormat.PNG, size: 40 }), Code.InvalidArgument, undefined, /size: at least/);
      await rejects(as(worker).renderQrCode({ qrCodeId: code.qrCodeId, format: ImageFormat.UNSPECIFIED }), Code.InvalidArgument);
      await rejects(as(otherWorker).renderQrCode({ qrCodeId: code.qrCodeId, format: ImageFormat.PNG }), Code.PermissionDenied);
    });

    test("SVG decodes back to the URL; the print card carries both codes and the caption", async () => {
      const svg = Buffer.from((await as(worker).renderQrCode({ qrCodeId: code.qrCodeId, format: ImageFormat.SVG, size: 400, errorCorrection: ErrorCorrection.Q })).content).toString();
      assert.match(svg, /^<svg[^>]*width="400"/);
      assert.deepEqual(decodeSvgCodes(svg), [code.url]);

      const { offline } = await as(worker).getOfflinePayload({ qrCodeId: code.qrCodeId });
      for (const req of [{ format: ImageFormat.PRINT_SVG }, { format: ImageFormat.SVG, caption: true }]) {
        const r = await as(manager).renderQrCode({ qrCodeId: code.qrCodeId, ...req });
        assert.equal(r.contentType, "image/svg+xml");
        const card = Buffer.from(r.content).toString();
        assert.deepEqual(decodeSvgCodes(card), [code.url, offline!.emvcoPayload]);
        assert.match(card, /Wanjiku &lt;Kamau&gt; &amp; Co/);
        assert.match(card, new RegExp(`Code ${code.shortCode}`));
        assert.match(card, /Java House Kimathi/);
        assert.match(card, new RegExp(`Paybill 174379 Account ${code.shortCode}`));
        assert.ok(card.includes(`Dial ${offline!.ussdCode}`) && /^\*483\*123\*\d{11}#$/.test(offline!.ussdCode), "a USSD string a keypad dials");
      }
    });

    test("the PDF card draws both codes, which decode back to the URL and the KE-QR payload", async () => {
      const r = await as(worker).renderQrCode({ qrCodeId: code.qrCodeId, format: ImageFormat.PDF });
      assert.equal(r.contentType, "application/pdf");
      const pdf = Buffer.from(r.content);
      assert.equal(pdf.subarray(0, 8).toString(), "%PDF-1.4");
      assert.match(pdf.toString("latin1"), /%%EOF\n$/);
      // The xref offset points at the xref table.
      const xref = Number(/startxref\n(\d+)/.exec(pdf.toString("latin1"))![1]);
      assert.equal(pdf.subarray(xref, xref + 4).toString(), "xref");
      const { offline } = await as(worker).getOfflinePayload({ qrCodeId: code.qrCodeId });
      assert.equal(decodePdfBand(pdf, 298, 185, 415), code.url);
      assert.equal(decodePdfBand(pdf, 298, 25, 145), offline!.emvcoPayload);
      assert.match(pdf.toString("latin1"), new RegExp(`\\(Code ${code.shortCode}\\) Tj`));
    });

    test("a revoked code is not rendered", async () => {
      const c = (await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() })).qrCode!;
      await as(worker).revokeQrCode({ qrCodeId: c.qrCodeId, reason: "" });
      await rejects(as(worker).renderQrCode({ qrCodeId: c.qrCodeId, format: ImageFormat.SVG }), Code.FailedPrecondition, undefined, /revoked/);
      await rejects(as(worker).getOfflinePayload({ qrCodeId: c.qrCodeId }), Code.FailedPrecondition);
    });
  });

  describe("listing and staff removal", () => {
    test("pages through a worker's codes newest first; inactive ones only when asked", async () => {
      const w = { subject: randomUUID(), roles: ["worker"] as Role[] };
      await as(w).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, displayName: "Pager" });
      const made: string[] = [];
      for (let i = 0; i < 5; i++) made.push((await as(w).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, idempotencyKey: idem() })).qrCode!.qrCodeId);
      await as(w).revokeQrCode({ qrCodeId: made[0], reason: "" });
      const seen: string[] = [];
      let pageToken = "";
      do {
        const r = await as(w).listQrCodes({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, includeInactive: true, page: { pageSize: 2, pageToken } });
        assert.ok(r.qrCodes.length <= 2);
        seen.push(...r.qrCodes.map((c) => c.qrCodeId));
        pageToken = r.page?.nextPageToken ?? "";
      } while (pageToken);
      assert.deepEqual(seen, [...made].reverse());
      await t.db.pool.query(`UPDATE qr.qr_codes SET expires_at = now() - interval '1 minute' WHERE qr_code_id = $1`, [made[1]]);
      const active = await as(w).listQrCodes({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, includeInactive: false });
      assert.deepEqual(active.qrCodes.map((c) => c.qrCodeId), made.slice(2).reverse(), "revoked and expired codes are left out");
      await rejects(as(otherWorker).listQrCodes({ ownerKind: OwnerKind.WORKER, ownerId: w.subject }), Code.PermissionDenied);
      await rejects(as(w).listQrCodes({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, page: { pageSize: 2, pageToken: "garbage" } }), Code.InvalidArgument, undefined, /page_token/);
    });

    test("removing a worker from the staff revokes their codes at that venue only", async () => {
      const w = { subject: randomUUID(), roles: ["worker"] as Role[] };
      await as(w).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, displayName: "Leaving" });
      await as(admin).addVenueStaff({ venueId, workerId: w.subject });
      await as(admin).addVenueStaff({ venueId, workerId: w.subject });
      const atVenue = (await as(manager).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, venueId, idempotencyKey: idem() })).qrCode!;
      const own = (await as(w).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, idempotencyKey: idem() })).qrCode!;
      await anon().resolveQrCode({ code: { case: "shortCode", value: atVenue.shortCode } });
      const r = await as(admin).removeVenueStaff({ venueId, workerId: w.subject });
      assert.equal(r.revokedCodes, 1);
      await rejects(anon().resolveQrCode({ code: { case: "shortCode", value: atVenue.shortCode } }), Code.FailedPrecondition, QrProblemKind.REVOKED);
      await anon().resolveQrCode({ code: { case: "shortCode", value: own.shortCode } });
      await rejects(as(manager).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, venueId, idempotencyKey: idem() }), Code.FailedPrecondition);
    });

    test("a code made or rotated while the worker is being removed from the staff is refused, not left active at the venue", async () => {
      const w = { subject: randomUUID(), roles: ["worker"] as Role[] };
      await as(w).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, displayName: "Racing" });
      await as(admin).addVenueStaff({ venueId, workerId: w.subject });
      const code = (await as(manager).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, venueId, idempotencyKey: idem() })).qrCode!;
      // RemoveVenueStaff's transaction, between its delete and its revoke, while a create and a rotate come in.
      const removal = await t.db.pool.connect();
      try {
        await removal.query("BEGIN");
        await removal.query("DELETE FROM qr.venue_staff WHERE venue_id = $1 AND worker_id = $2", [venueId, w.subject]);
        const created = as(manager).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: w.subject, venueId, idempotencyKey: idem() }).then(() => "made", (e) => ConnectError.from(e).code);
        const rotated = as(manager).rotateQrCode({ qrCodeId: code.qrCodeId, idempotencyKey: idem() }).then(() => "made", (e) => ConnectError.from(e).code);
        await new Promise((r) => setTimeout(r, 300));
        await removal.query("UPDATE qr.qr_codes SET status = 3, revoked_reason = 'removed from the venue staff', status_changed_at = now() WHERE owner_kind = 1 AND owner_id = $1 AND venue_id = $2 AND status = 1", [w.subject, venueId]);
        await removal.query("COMMIT");
        // Before, both went ahead on a read of the staff outside their transactions: two active codes after the removal.
        assert.deepEqual([await created, await rotated], [Code.FailedPrecondition, Code.FailedPrecondition]);
      } finally {
        removal.release();
      }
      const { rows } = await t.db.pool.query("SELECT count(*)::int AS n FROM qr.qr_codes WHERE owner_id = $1 AND venue_id = $2 AND status = 1", [w.subject, venueId]);
      assert.equal(rows[0].n, 0);
    });
  });

  describe("role and uploaded photo", () => {
    // The smallest real PNG (1x1) and the first bytes of a JPEG and a WebP: the service reads only the signature.
    const PNG = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==", "base64");
    const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0]);
    const WEBP = Buffer.concat([Buffer.from("RIFF"), Buffer.from([4, 0, 0, 0]), Buffer.from("WEBPVP8 ")]);
    const GIF = Buffer.from("GIF89a\x01\x00\x01\x00", "latin1");

    test("a role is kept until set again, cleared with an empty one, and reaches the tip page's target", async () => {
      const w = { subject: randomUUID(), roles: ["worker"] as Role[] };
      const mine = { ownerKind: OwnerKind.WORKER, ownerId: w.subject };
      const put = await as(w).putProfile({ ...mine, displayName: "Baraka", role: "waiter" });
      assert.equal(put.profile?.role, "waiter");
      // A client that does not know the field leaves the role alone.
      assert.equal((await as(w).putProfile({ ...mine, displayName: "Baraka O." })).profile?.role, "waiter");
      const code = (await as(w).createQrCode({ ...mine, idempotencyKey: idem() })).qrCode!;
      const resolved = await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } });
      assert.equal(resolved.target?.role, "waiter");
      await rejects(as(w).putProfile({ ...mine, displayName: "Baraka", role: "x".repeat(41) }), Code.InvalidArgument, undefined, /role/);
      await rejects(as(w).putProfile({ ...mine, displayName: "Baraka", role: "wai\nter" }), Code.InvalidArgument, undefined, /role/);
      assert.equal((await anon().getProfile(mine)).profile?.role, "waiter", "a refused role changes nothing");
      await as(w).putProfile({ ...mine, displayName: "Baraka", role: "" });
      assert.equal((await anon().getProfile(mine)).profile?.role, "");
      assert.equal((await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } })).target?.role, "", "the cached profile was forgotten");
    });

    test("a photo is stored by its first bytes' type, served back as sent, and shown in place of the link", async () => {
      const w = { subject: randomUUID(), roles: ["worker"] as Role[] };
      const mine = { ownerKind: OwnerKind.WORKER, ownerId: w.subject };
      await rejects(as(w).putProfilePhoto({ ...mine, image: PNG }), Code.FailedPrecondition, undefined, /PutProfile/);
      await as(w).putProfile({ ...mine, displayName: "Neema", photoUrl: "https://cdn.example/n.jpg" });
      const code = (await as(w).createQrCode({ ...mine, idempotencyKey: idem() })).qrCode!;
      const target = async () => (await anon().resolveQrCode({ code: { case: "payload", value: payloadOf(code) } })).target!;
      assert.equal((await target()).photoUrl, "https://cdn.example/n.jpg");

      const { profile } = await as(w).putProfilePhoto({ ...mine, image: PNG });
      assert.match(profile!.uploadedPhotoUrl, new RegExp(`^https://tips\\.example/photos/worker/${w.subject}\\?v=[0-9a-f]{16}$`));
      assert.equal(profile!.photoUrl, "https://cdn.example/n.jpg", "the link is kept");
      assert.equal((await target()).photoUrl, profile!.uploadedPhotoUrl);
      const served = await anon().getProfilePhoto(mine);
      assert.equal(served.contentType, "image/png");
      assert.deepEqual(Buffer.from(served.image), PNG);

      for (const [image, type] of [[JPEG, "image/jpeg"], [WEBP, "image/webp"]] as const) {
        const again = await as(w).putProfilePhoto({ ...mine, image });
        assert.notEqual(again.profile!.uploadedPhotoUrl, profile!.uploadedPhotoUrl, "a new photo is a new URL");
        assert.equal((await anon().getProfilePhoto(mine)).contentType, type);
      }
      // Wrong type or too big: INVALID_ARGUMENT naming image, and the stored photo stays.
      await rejects(as(w).putProfilePhoto({ ...mine, image: GIF }), Code.InvalidArgument, undefined, /image: must be a JPEG, PNG or WebP/);
      await rejects(as(w).putProfilePhoto({ ...mine, image: Buffer.concat([PNG, Buffer.alloc(524_289 - PNG.length)]) }), Code.InvalidArgument, undefined, /image/);
      assert.equal((await anon().getProfilePhoto(mine)).contentType, "image/webp");
      await rejects(as(otherWorker).putProfilePhoto({ ...mine, image: PNG }), Code.PermissionDenied);
      await rejects(anon().putProfilePhoto({ ...mine, image: PNG }), Code.Unauthenticated);

      // An empty image removes it: the link shows again.
      const removed = await as(w).putProfilePhoto({ ...mine, image: new Uint8Array() });
      assert.equal(removed.profile?.uploadedPhotoUrl, "");
      await rejects(anon().getProfilePhoto(mine), Code.NotFound);
      assert.equal((await target()).photoUrl, "https://cdn.example/n.jpg");
    });
  });
});

describe("qr stopping", () => {
  test("a change's second cache delete, still waiting, runs when the service stops: before its cache closes, none lost", async () => {
    // A minute (the most it may be): only the stop can run the second delete within this test.
    const t = await startTestService(createQrModule({ env: { QR_SIGNING_KEY: KEY, QR_TIP_BASE_URL: BASE, QR_CACHE_REFORGET_MS: "60000" } }));
    let closed = false;
    try {
      const owner = { subject: randomUUID(), roles: ["worker" as Role] };
      await t.client(QrService, owner).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: owner.subject, displayName: "Akinyi" });
      const seconds = async () => Number(/ttip_qr_cache_invalidations_total\{pass="second"\} (\d+)/.exec(await t.ctx.metrics.registry.metrics())?.[1] ?? 0);
      assert.equal(await seconds(), 0, "the second delete waits");
      await t.service.close();
      assert.equal(await seconds(), 1, "the stop ran it");
      await t.close();
      closed = true;
    } finally {
      if (!closed) await t.close();
    }
  });
});

describe("qr cache outage", () => {
  test("a change whose cache deletes fail (Redis erring) is deleted again until a delete goes through: a deactivated worker's code stops resolving then, not when its entry expires", async () => {
    const t = await startTestService(createQrModule({ env: { QR_SIGNING_KEY: KEY, QR_TIP_BASE_URL: BASE, QR_CACHE_REFORGET_MS: "100" } }));
    try {
      const owner = { subject: randomUUID(), roles: ["worker" as Role] };
      await t.client(QrService, owner).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: owner.subject, displayName: "Akinyi" });
      const { qrCode } = await t.client(QrService, owner).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: owner.subject, idempotencyKey: `idem-${randomUUID()}` });
      const resolve = () => t.client(QrService).resolveQrCode({ code: { case: "shortCode", value: qrCode!.shortCode } });
      await resolve(); // cached
      const cache = t.ctx.cache;
      const del = cache.del.bind(cache);
      let refused = 0;
      cache.del = async () => {
        refused++;
        throw new Error("Command timed out");
      };
      try {
        await t.client(QrService, { subject: randomUUID(), roles: ["admin"] }).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: owner.subject, displayName: "Akinyi", active: false });
        await eventually("the first, the second and a retried delete failed", async () => refused >= 3);
        await resolve(); // the cache still holds the active profile
      } finally {
        cache.del = del;
      }
      // Before, only logged: the code took tips until its entry expired.
      await eventually("a retry deleted the entry", async () => (await resolve().then(() => false, (e) => ConnectError.from(e).code === Code.FailedPrecondition)));
      await rejects(resolve(), Code.FailedPrecondition, QrProblemKind.OWNER_INACTIVE);
    } finally {
      await t.close();
    }
  });
});

describe("qr configuration", () => {
  test("a cluster process without QR_SIGNING_KEY refuses to start", async () => {
    // It fails before touching anything, so no real context is needed.
    await assert.rejects(createQrModule({ env: {} }).start!({} as ServiceContext), /QR_SIGNING_KEY: is required/);
  });
});

describe("qr with no paybill configured (QR_MPESA_SHORTCODE empty: M-Pesa's paybill payments are not credited)", () => {
  let t: TestService;
  before(async () => void (t = await startTestService(createQrModule({ env: { QR_SIGNING_KEY: KEY, QR_TIP_BASE_URL: BASE, QR_MPESA_SHORTCODE: "" } }))));
  after(async () => void (await t?.close()));

  test("a card prints the tip code and the USSD line, no paybill and no KE-QR code; the offline form is FAILED_PRECONDITION", async () => {
    const me = t.client(QrService, worker);
    await me.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "Wanjiku" });
    const code = (await me.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: randomUUID() })).qrCode!;
    const card = Buffer.from((await me.renderQrCode({ qrCodeId: code.qrCodeId, format: ImageFormat.PRINT_SVG })).content).toString();
    assert.deepEqual(decodeSvgCodes(card), [code.url], "the tip code alone");
    assert.doesNotMatch(card, /Paybill|Till|174379/);
    assert.match(card, /No data\? Dial \*483\*123\*\d{11}#/);
    const pdf = Buffer.from((await me.renderQrCode({ qrCodeId: code.qrCodeId, format: ImageFormat.PDF })).content).toString("latin1");
    assert.doesNotMatch(pdf, /Paybill|Till|174379/);
    assert.match(pdf, /\(No data\? Dial \*483\*123\*\d{11}#\) Tj/);
    await rejects(me.getOfflinePayload({ qrCodeId: code.qrCodeId }), Code.FailedPrecondition, undefined, /no paybill/);
  });
});
