// A partner key acts only for the workers and venues linked to it: signed calls
// through the real gateway to the real payment and qr services (PostgreSQL,
// Redis, JetStream; Daraja simulated), allowed for its own, refused for others.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createAuth } from "@ttip/auth";
import { partnerCallSigner, type PartnerKey } from "@ttip/auth/testing";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createPaymentModule } from "@ttip/payment";
import { simulatedPaymentConfig, startDarajaSimulator, type DarajaSimulator } from "@ttip/payment/testing";
import { createQrModule } from "@ttip/qr";
import { callerHeaders, Metrics, stepUpHeaders, type RedisCache, type Role, type RunningServer } from "@ttip/runtime";
import { captureLogger, failure, KES, startTestService, testPhone, type TestService } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { startGateway } from "../src/index.js";

describe("partner keys act only for the workers and venues linked to them", () => {
  let sim: DarajaSimulator;
  let t: TestService;
  let gateway: RunningServer;
  let key: PartnerKey;
  let other: PartnerKey;
  /** Through the gateway, signed with a key. */
  let pay: (k: PartnerKey) => Client<typeof PaymentService>;
  let codes: (k: PartnerKey) => Client<typeof QrService>;
  /** Direct to qr, as the gateway passes a verified user's token. */
  const qrAs = (subject: string, ...roles: Role[]) => ({ client: createClient(QrService, t.ctx.peers("qr")), opts: { headers: callerHeaders(subject, ...roles) } });

  before(async () => {
    const { logger } = captureLogger("silent");
    sim = await startDarajaSimulator({ callbackDelayMs: 30 });
    const config = simulatedPaymentConfig(sim, { stkDeadlineMs: 100 });
    t = await startTestService(createPaymentModule({ config: () => config }), {
      with: [wallet, createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } }), createAuth()],
    });
    config.callbackBaseUrl = t.service.server.url;
    gateway = await startGateway({
      logger,
      metrics: new Metrics(),
      cache: t.ctx.cache as RedisCache,
      backends: [
        { service: PaymentService, url: t.service.server.url },
        { service: QrService, url: t.urls.get("qr")! },
      ],
      rateLimit: { points: 100_000, durationSeconds: 60 },
      corsOrigins: [],
      partners: { authUrl: t.urls.get("auth")!, rateLimit: { points: 10_000, durationSeconds: 60 } },
    });
    const admin = createClient(AuthAdminService, t.ctx.peers("auth"));
    const issue = async (partnerName: string) => {
      const r = await admin.issuePartnerApiKey(
        { partnerName, scopes: ["tips:create", "tips:read", "qr:read", "qr:write"], idempotencyKey: `issue-${randomUUID()}` },
        { headers: { ...callerHeaders(randomUUID(), "admin"), ...stepUpHeaders() } },
      );
      return { keyId: r.key!.keyId, secret: r.secret };
    };
    key = await issue("Savanna POS");
    other = await issue("Kilimani Bookings");
    const signed = (k: PartnerKey) => createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: [partnerCallSigner(k)] });
    pay = (k) => createClient(PaymentService, signed(k));
    codes = (k) => createClient(QrService, signed(k));
  });

  after(async () => {
    await gateway?.close();
    await t?.close();
    await sim?.close();
  });

  const worker = async () => {
    const id = randomUUID();
    const { client, opts } = qrAs(id, "worker");
    await client.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: id, displayName: "Wanjiru" }, opts);
    return id;
  };
  const tipFor = (k: PartnerKey, workerId: string) =>
    pay(k).createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: workerId }, amount: KES(150), payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) } });
  const workerCode = (k: PartnerKey, workerId: string, venueId = "") =>
    codes(k).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: workerId, venueId, idempotencyKey: randomUUID() });

  test("a worker's link: tips and codes for that worker only, until the worker unlinks", async () => {
    const mine = await worker();
    const stranger = await worker();
    const pushed = sim.transactions().length;
    assert.deepEqual(await failure(tipFor(key, mine)), {
      code: Code.PermissionDenied,
      message: `partner key ${key.keyId} is not linked to worker ${mine} nor to a venue with them on its staff: the worker or a manager of their venue links it with QrService.LinkPartner`,
    });
    assert.equal(sim.transactions().length, pushed, "no M-Pesa prompt for a refused tip");

    const { client, opts } = qrAs(mine, "worker");
    const { link } = await client.linkPartner({ keyId: key.keyId, ownerKind: OwnerKind.WORKER, ownerId: mine }, opts);
    assert.equal(link!.linkedBy, mine);
    const tip = (await tipFor(key, mine)).tip!;
    assert.equal(tip.workerId, mine);
    assert.equal((await pay(key).getTip({ tipId: tip.tipId })).tip!.tipId, tip.tipId);
    const code = (await workerCode(key, mine)).qrCode!;
    assert.equal(code.ownerId, mine);
    assert.equal((await codes(key).listQrCodes({ ownerKind: OwnerKind.WORKER, ownerId: mine })).qrCodes.length, 1);

    // Another worker, and another key for this worker: refused, naming what is missing.
    assert.match((await failure(tipFor(key, stranger))).message, new RegExp(`not linked to worker ${stranger}`));
    assert.equal((await failure(workerCode(key, stranger))).code, Code.PermissionDenied);
    assert.equal((await failure(codes(key).listQrCodes({ ownerKind: OwnerKind.WORKER, ownerId: stranger }))).code, Code.PermissionDenied);
    assert.equal((await failure(tipFor(other, mine))).code, Code.PermissionDenied);
    assert.equal((await failure(pay(other).getTip({ tipId: tip.tipId }))).code, Code.PermissionDenied);
    assert.equal((await failure(codes(other).getQrCode({ qrCodeId: code.qrCodeId }))).code, Code.PermissionDenied);

    // A tip the stranger got from someone else is not the key's to read.
    await client.linkPartner({ keyId: other.keyId, ownerKind: OwnerKind.WORKER, ownerId: mine }, opts);
    const theirs = (await tipFor(other, mine)).tip!;
    assert.equal((await pay(key).getTip({ tipId: theirs.tipId })).tip!.tipId, theirs.tipId, "a linked worker's tips are readable whoever created them");

    // Withdrawn by the worker: refused at once; a tip the key created stays readable to it.
    const { link: gone } = await client.unlinkPartner({ keyId: key.keyId, ownerKind: OwnerKind.WORKER, ownerId: mine }, opts);
    assert.ok(gone!.unlinkedAt);
    assert.equal((await failure(tipFor(key, mine))).code, Code.PermissionDenied);
    assert.equal((await failure(codes(key).revokeQrCode({ qrCodeId: code.qrCodeId, reason: "lost card" }))).code, Code.PermissionDenied);
    assert.equal((await pay(key).getTip({ tipId: tip.tipId })).tip!.tipId, tip.tipId);
    assert.equal((await failure(pay(key).getTip({ tipId: theirs.tipId }))).code, Code.PermissionDenied);
  });

  test("a partner's idempotency keys are its own: two partners' same invoice number are two tips, each retry answered its own; a tip keyed before keys were scoped is still its creator's", async () => {
    const mine = await worker();
    const { client, opts } = qrAs(mine, "worker");
    for (const k of [key, other]) await client.linkPartner({ keyId: k.keyId, ownerKind: OwnerKind.WORKER, ownerId: mine }, opts);
    const phone = testPhone({ format: "07" });
    const invoice = (k: PartnerKey, idempotencyKey: string, amount = 150) =>
      pay(k).createTip({ idempotencyKey, recipient: { case: "workerId", value: mine }, amount: KES(amount), payment: { case: "mpesaPhone", value: phone } });
    const number = `INV-${randomUUID().slice(0, 8)}`;
    const first = (await invoice(key, number)).tip!;
    const second = (await invoice(other, number, 160)).tip!;
    assert.notEqual(second.tipId, first.tipId, "the other partner's tip, not ALREADY_EXISTS for a key it never used");
    assert.equal((await invoice(other, number, 160)).tip!.tipId, second.tipId, "its retry answers its own tip");
    assert.equal((await invoice(key, number)).tip!.tipId, first.tipId);
    assert.equal((await failure(invoice(key, number, 170))).code, Code.AlreadyExists, "another tip under its own key is still refused");

    // A tip stored under the bare key (before keys were scoped) is found by its creator, and only by it.
    const legacy = `INV-${randomUUID().slice(0, 8)}`;
    const old = (await invoice(key, legacy, 180)).tip!;
    await t.ctx.pool.query("UPDATE payment.tips SET idempotency_key = $2 WHERE tip_id = $1", [old.tipId, legacy]);
    assert.equal((await invoice(key, legacy, 180)).tip!.tipId, old.tipId, "the creator's retry finds its tip under the bare key");
    assert.notEqual((await invoice(other, legacy, 190)).tip!.tipId, old.tipId);
    // Nor by a caller without a key, sending the bare key and the same terms: before, answered the partner's tip.
    const anonymous = createClient(PaymentService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }));
    const guessed = await failure(anonymous.createTip({ idempotencyKey: legacy, recipient: { case: "workerId", value: mine }, amount: KES(180), payment: { case: "mpesaPhone", value: phone } }));
    assert.equal(guessed.code, Code.AlreadyExists);

    // Nobody else may write in the partners' key space.
    const squat = await failure(anonymous.createTip({ idempotencyKey: `partner:${key.keyId}:${number}`, recipient: { case: "workerId", value: mine }, amount: KES(150), payment: { case: "mpesaPhone", value: phone } }));
    assert.deepEqual(squat, { code: Code.InvalidArgument, message: 'idempotency_key: must not begin with "partner:"' });
  });

  test("only a live key is linked: an unknown or revoked key is refused, naming key_id, and nothing is stored", async () => {
    const mine = await worker();
    const { client, opts } = qrAs(mine, "worker");
    const linksOf = async () => (await client.listPartnerLinks({ ownerKind: OwnerKind.WORKER, ownerId: mine }, opts)).links.map((l) => l.keyId);

    const mistyped = randomUUID();
    assert.deepEqual(await failure(client.linkPartner({ keyId: mistyped, ownerKind: OwnerKind.WORKER, ownerId: mine }, opts)), {
      code: Code.NotFound,
      message: `key_id: no partner key ${mistyped}`,
    });

    const admin = createClient(AuthAdminService, t.ctx.peers("auth"));
    const adminOpts = { headers: { ...callerHeaders(randomUUID(), "admin"), ...stepUpHeaders() } };
    const { key: issued } = await admin.issuePartnerApiKey({ partnerName: "Retired Till", scopes: ["tips:create"], idempotencyKey: `issue-${randomUUID()}` }, adminOpts);
    await admin.revokePartnerApiKey({ keyId: issued!.keyId }, adminOpts);
    assert.deepEqual(await failure(client.linkPartner({ keyId: issued!.keyId, ownerKind: OwnerKind.WORKER, ownerId: mine }, opts)), {
      code: Code.FailedPrecondition,
      message: `key_id: partner key ${issued!.keyId} is revoked; link an active key`,
    });
    assert.deepEqual(await linksOf(), [], "a refused link stores nothing");

    const { link } = await client.linkPartner({ keyId: key.keyId, ownerKind: OwnerKind.WORKER, ownerId: mine }, opts);
    assert.equal(link!.keyId, key.keyId);
    assert.deepEqual(await linksOf(), [key.keyId]);
  });

  test("a venue's link covers its staff and its own codes, not other workers or venues", async () => {
    const manager = randomUUID();
    const venue = randomUUID();
    const otherVenue = randomUUID();
    const m = qrAs(manager, "venue_manager");
    await m.client.putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venue, displayName: "Java House Kimathi" }, m.opts);
    const staff = await worker();
    const outsider = await worker();
    // On staff as the venue service puts an invited worker there.
    const staffing = qrAs(randomUUID(), "admin");
    await staffing.client.addVenueStaff({ venueId: venue, workerId: staff }, staffing.opts);
    const o = qrAs(randomUUID(), "venue_manager");
    await o.client.putProfile({ ownerKind: OwnerKind.VENUE, ownerId: otherVenue, displayName: "Artcaffe Westgate" }, o.opts);

    // Only a manager of the venue links it; a worker links only themself.
    assert.equal((await failure(o.client.linkPartner({ keyId: key.keyId, ownerKind: OwnerKind.VENUE, ownerId: venue }, o.opts))).code, Code.PermissionDenied);
    const w = qrAs(staff, "worker");
    assert.equal((await failure(w.client.linkPartner({ keyId: key.keyId, ownerKind: OwnerKind.WORKER, ownerId: outsider }, w.opts))).code, Code.PermissionDenied);
    await m.client.linkPartner({ keyId: key.keyId, ownerKind: OwnerKind.VENUE, ownerId: venue }, m.opts);

    assert.equal((await tipFor(key, staff)).tip!.workerId, staff);
    assert.equal((await workerCode(key, staff, venue)).qrCode!.venueId, venue);
    // A staff member's personal code (no venue) is theirs alone: before, the venue's link revoked it and made more.
    const personal = (await w.client.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: staff, idempotencyKey: randomUUID() }, w.opts)).qrCode!;
    assert.equal((await failure(codes(key).revokeQrCode({ qrCodeId: personal.qrCodeId }))).code, Code.PermissionDenied);
    assert.equal((await failure(workerCode(key, staff))).code, Code.PermissionDenied);
    const venueCode = (await codes(key).createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: venue, idempotencyKey: randomUUID() })).qrCode!;
    // A tip by the venue's code goes to its pool, through the venue's link.
    const pooled = (await pay(key).createTip({ idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: venueCode.shortCode }, amount: KES(200), payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) } })).tip!;
    assert.equal(pooled.venueId, venue);

    assert.match((await failure(tipFor(key, outsider))).message, new RegExp(`not linked to worker ${outsider}`));
    assert.deepEqual(await failure(codes(key).createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: otherVenue, idempotencyKey: randomUUID() })), {
      code: Code.PermissionDenied,
      message: `partner key ${key.keyId} is not linked to venue ${otherVenue}: a manager of the venue links it with QrService.LinkPartner`,
    });

    // The key lists what it is linked to; the manager lists the venue's keys.
    const mineAll = (await codes(key).listPartnerLinks({})).links.filter((l) => l.unlinkedAt === undefined);
    assert.ok(mineAll.some((l) => l.ownerKind === OwnerKind.VENUE && l.ownerId === venue));
    assert.ok(mineAll.every((l) => l.keyId === key.keyId));
    const ofVenue = (await m.client.listPartnerLinks({ ownerKind: OwnerKind.VENUE, ownerId: venue }, m.opts)).links;
    assert.deepEqual(ofVenue.map((l) => l.keyId), [key.keyId]);

    // Off the staff, the venue's link no longer covers the worker.
    await staffing.client.removeVenueStaff({ venueId: venue, workerId: staff }, staffing.opts);
    assert.equal((await failure(tipFor(key, staff))).code, Code.PermissionDenied);
  });
});
