// qr's handler rules in the fast tier: the module's handlers called through a
// router transport (no sockets), with the server's own interceptors, on a real
// database. The wire, renders and events stay in qr.test.ts.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { violationsOf, type Role } from "@ttip/runtime";
import { type InProcessService, KES, refusal, startInProcessService } from "@ttip/runtime/testing";
import { createQrModule } from "../src/index.js";

const worker = { subject: randomUUID(), roles: ["worker"] as Role[] };
const otherWorker = { subject: randomUUID(), roles: ["worker"] as Role[] };
const customer = { subject: randomUUID(), roles: ["customer"] as Role[] };
const manager = { subject: randomUUID(), roles: ["venue_manager"] as Role[] };
const idem = () => `idem-${randomUUID()}`;

describe("qr rules, in process", () => {
  let s: InProcessService;
  const as = (who: { subject: string; roles: Role[] }) => s.client(QrService, who);

  before(async () => {
    s = await startInProcessService(createQrModule({ env: { QR_SIGNING_KEY: "test-signing-key-0123456789abcdef-qr", QR_TIP_BASE_URL: "https://tips.example/t" } }));
  });
  after(() => s.close());

  test("the declared roles hold before the handler: a customer may not create a code, nobody signed out may", async () => {
    const denied = await refusal(as(customer).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: customer.subject, idempotencyKey: idem() }));
    assert.equal(denied.code, Code.PermissionDenied);
    assert.match(denied.rawMessage, /^this call needs the role worker or venue_manager or admin\b/);
    const anonymous = await refusal(s.client(QrService).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() }));
    assert.equal(anonymous.code, Code.Unauthenticated);
  });

  test("a worker's code needs a profile, takes fixed or suggested amounts but not both, and is theirs alone to rotate", async () => {
    const noProfile = await refusal(as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem() }));
    assert.equal(noProfile.code, Code.FailedPrecondition);
    assert.match(noProfile.rawMessage, /^owner_id: .* has no profile yet/);

    await as(worker).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "Wanjiku" });
    const both = await refusal(
      as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem(), parameters: { fixedAmount: KES(200), suggestedAmounts: [KES(100)] } }),
    );
    assert.equal(both.code, Code.InvalidArgument);
    assert.deepEqual(violationsOf(both).map((v) => v.field), ["parameters.fixed_amount"]);

    const { qrCode } = await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem(), parameters: { fixedAmount: KES(200) } });
    assert.ok(qrCode);
    const { target } = await s.client(QrService).resolveQrCode({ code: { case: "shortCode", value: qrCode.shortCode } });
    assert.equal(target?.workerId, worker.subject, "anyone may resolve a code to whom it tips");
    assert.equal(target?.fixedAmount?.amountMinor, 20_000n);

    const notTheirs = await refusal(as(otherWorker).rotateQrCode({ qrCodeId: qrCode.qrCodeId, idempotencyKey: idem() }));
    assert.equal(notTheirs.code, Code.PermissionDenied);
  });

  test("a venue's shared code may fix its amount in the venue's currency, USD too (paid by card into the pool); another currency is refused, naming the field", async () => {
    const venueId = randomUUID();
    await as(manager).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Safari Lodge", currency: "USD" });
    // Before, a pool's fixed amount in USD was refused: card tips to a pool were not taken.
    const { qrCode: table } = await as(manager).createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: venueId, idempotencyKey: idem(), parameters: { table: "2", fixedAmount: { amountMinor: 1_000n, currency: "USD" } } });
    const { target: usdTarget } = await s.client(QrService).resolveQrCode({ code: { case: "shortCode", value: table!.shortCode } });
    assert.deepEqual([usdTarget?.shared, usdTarget?.fixedAmount?.currency, usdTarget?.fixedAmount?.amountMinor], [true, "USD", 1_000n]);
    const eur = await refusal(as(manager).createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: venueId, idempotencyKey: idem(), parameters: { fixedAmount: { amountMinor: 1_000n, currency: "EUR" } } }));
    assert.equal(eur.code, Code.InvalidArgument);
    assert.deepEqual(violationsOf(eur).map((v) => v.field), ["parameters.fixed_amount.currency"]);
    // Open amounts stay possible (the customer types KES), and a worker's USD code is paid by card.
    const { qrCode } = await as(manager).createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: venueId, idempotencyKey: idem(), parameters: { table: "4" } });
    assert.ok(qrCode);
    await as(worker).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, displayName: "Wanjiku", currency: "USD" });
    const { qrCode: guide } = await as(worker).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.subject, idempotencyKey: idem(), parameters: { fixedAmount: { amountMinor: 1_000n, currency: "USD" } } });
    assert.ok(guide);
  });

  test("a profile's currency is one the platform handles: a typo is refused, naming the field, and the profile keeps its own", async () => {
    const venueId = randomUUID();
    await as(manager).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Java House", currency: "KES" });
    const typo = await refusal(as(manager).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Java House", currency: "KSH" }));
    assert.equal(typo.code, Code.InvalidArgument);
    assert.match(typo.rawMessage, /^currency: unsupported currency KSH/);
    const { profile } = await as(manager).getProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId });
    assert.equal(profile?.currency, "KES");
  });
});
