import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { callerHeaders, signingInterceptor } from "@ttip/runtime";
import { initializedPgliteFolder, type PgliteFolder } from "@ttip/runtime/testing";
import { startEmbedded, type EmbeddedPlatform } from "../src/embedded.js";

// `make run`: PGlite on one connection, the in-process cache and bus, a generated dev signing key.
// PGlite opens a copy of a data folder initialized once (its first start is not what this file tests).
describe("qr in the embedded platform", () => {
  let platform: EmbeddedPlatform;
  let data: PgliteFolder;
  before(async () => {
    data = await initializedPgliteFolder();
    platform = await startEmbedded({ DATA_DIR: data.dir, PORT: "0", LOG_LEVEL: "silent" });
  });
  after(async () => {
    await platform?.close();
    data?.remove();
  });

  test("a code created on the service resolves and records a scan through the gateway, anonymously, as the tip page does", async () => {
    const qrUrl = platform.services.find((s) => s.name === "qr")!.server.url;
    const worker = randomUUID();
    // Call the service directly as the gateway would for a signed-in worker (signed with this process's internal key).
    const direct = createClient(QrService, createGrpcTransport({
      baseUrl: qrUrl,
      interceptors: [(next) => (req) => {
        for (const [k, v] of Object.entries(callerHeaders(worker, "worker"))) req.header.set(k, v);
        return next(req);
      }, signingInterceptor()],
    }));
    await direct.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker, displayName: "Akinyi" });
    const { qrCode } = await direct.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker, idempotencyKey: randomUUID() });
    // The code opens the tip page on this platform's real address (PORT=0 took a free port), not a fixed loopback one.
    assert.ok(qrCode!.url.startsWith(`${platform.gatewayUrl}/t/${qrCode!.shortCode}?p=`), qrCode!.url);

    const page = createClient(QrService, createConnectTransport({ baseUrl: platform.gatewayUrl, httpVersion: "1.1" }));
    const payload = new URL(qrCode!.url).searchParams.get("p")!;
    const { target } = await page.resolveQrCode({ code: { case: "payload", value: payload } });
    assert.equal(target?.displayName, "Akinyi");
    const scan = await page.recordScan({ code: { case: "shortCode", value: qrCode!.shortCode }, referrer: "", userAgent: "test" });
    assert.equal(scan.target?.workerId, worker);
    await assert.rejects(page.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker, idempotencyKey: randomUUID() }), (e: ConnectError) => e.code === Code.Unauthenticated);
    await direct.revokeQrCode({ qrCodeId: qrCode!.qrCodeId, reason: "" });
    await assert.rejects(page.resolveQrCode({ code: { case: "payload", value: payload } }), (e: ConnectError) => e.code === Code.FailedPrecondition);
  });
});
