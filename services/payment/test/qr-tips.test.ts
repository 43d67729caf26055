import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createQrModule } from "@ttip/qr";
import { callerHeaders } from "@ttip/runtime";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";


// A customer scans a worker's code: the real qr service says who is tipped.
describe("tips by scanned QR code", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  let qr: Client<typeof QrService>;

  before(async () => {
    h = await startHarness({}, [createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } })]);
    pay = h.t.client(PaymentService);
    qr = createClient(QrService, h.t.ctx.peers("qr"));
  });
  after(async () => {
    await h.close();
  });

  const codeFor = async (worker: string, parameters?: { fixedAmount?: { currency: string; amountMinor: bigint } }) => {
    const as = { headers: callerHeaders(worker, "worker") };
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker, displayName: "Wanjiru" }, as);
    const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker, idempotencyKey: randomUUID(), parameters }, as);
    return qrCode!;
  };
  const tipBy = (qrCode: string, shillings = 100) =>
    pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: qrCode }, amount: KES(shillings), payment: { case: "mpesaPhone", value: phone() } });

  test("a short code or the signed payload tips the code's worker, and the tip names the code", async () => {
    const worker = randomUUID();
    const code = await codeFor(worker);
    const byShort = (await tipBy(code.shortCode.toLowerCase())).tip!;
    assert.equal(byShort.workerId, worker);
    assert.equal(byShort.qrCodeId, code.qrCodeId);
    const byPayload = (await tipBy(new URL(code.url).searchParams.get("p")!)).tip!;
    assert.equal(byPayload.workerId, worker);
    // As a person writes it down: the tip page showed the worker, then Pay was refused as a tampered code.
    const written = `${code.shortCode.slice(0, 3)}-${code.shortCode.slice(3)}`;
    const byWritten = (await tipBy(written)).tip!;
    assert.equal(byWritten.qrCodeId, code.qrCodeId);
    for (const t of [byShort, byPayload, byWritten]) {
      await eventually(async () => (await pay.getTip({ tipId: t.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip");
    }
    await eventually(async () => (await h.balance(worker)) === 28500n, "all three credited");
  });

  test("unknown, tampered or revoked codes are refused naming qr_code, and nothing is pushed", async () => {
    const before = h.sim.transactions().length;
    await assert.rejects(tipBy("ZZZZZZ"), (e: ConnectError) => e.code === Code.NotFound && /qr_code/.test(e.message));
    const worker = randomUUID();
    const code = await codeFor(worker);
    const payload = new URL(code.url).searchParams.get("p")!;
    const tampered = payload.slice(0, -2) + (payload.endsWith("AA") ? "BB" : "AA");
    await assert.rejects(tipBy(tampered), (e: ConnectError) => e.code === Code.InvalidArgument && /qr_code/.test(e.message));
    await qr.revokeQrCode({ qrCodeId: code.qrCodeId, reason: "lost" }, { headers: callerHeaders(worker, "worker") });
    await assert.rejects(tipBy(code.shortCode), (e: ConnectError) => e.code === Code.FailedPrecondition && /qr_code/.test(e.message));
    assert.equal(h.sim.transactions().length, before);
  });

  test("a tip's retry after its code was revoked gets its tip, not a refusal; another request under the key does not", async () => {
    const worker = randomUUID();
    const code = await codeFor(worker);
    const request = { idempotencyKey: randomUUID(), recipient: { case: "qrCode" as const, value: code.shortCode }, amount: KES(150), payment: { case: "mpesaPhone" as const, value: phone() } };
    const first = (await pay.createTip(request)).tip!;
    const pushes = h.sim.transactions().length;
    // The answer was lost; meanwhile the worker revoked the code. The prompt is on the customer's phone.
    await qr.revokeQrCode({ qrCodeId: code.qrCodeId, reason: "lost" }, { headers: callerHeaders(worker, "worker") });
    const again = (await pay.createTip(request)).tip!;
    assert.equal(again.tipId, first.tipId);
    assert.equal(h.sim.transactions().length, pushes, "no second prompt");
    await assert.rejects(pay.createTip({ ...request, amount: KES(160) }), (e: ConnectError) => e.code === Code.AlreadyExists);
    await assert.rejects(pay.createTip({ ...request, idempotencyKey: randomUUID() }), (e: ConnectError) => e.code === Code.FailedPrecondition && /qr_code/.test(e.message));
  });

  test("a code with a fixed amount accepts only that amount", async () => {
    const worker = randomUUID();
    const code = await codeFor(worker, { fixedAmount: KES(200) });
    await assert.rejects(tipBy(code.shortCode, 100), (e: ConnectError) => e.code === Code.InvalidArgument && /amount/.test(e.message));
    const ok = (await tipBy(code.shortCode, 200)).tip!;
    assert.equal(ok.amount!.amountMinor, 20000n);
  });
});
