import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { admission, localTransport, Metrics, startServer } from "../src/index.js";
import { captureLogger, eventually } from "../src/testing/index.js";

const BOUND = 3;
const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;

/** A server whose GetQrCode holds every call until released, recording each one that ran; a callback path beside it. */
async function heldServer() {
  const ran: string[] = [];
  const callbacks: string[] = [];
  const held: Array<() => void> = [];
  const bound = admission(BOUND);
  const server = await startServer({
    name: "held",
    logger: captureLogger("silent").logger,
    metrics: new Metrics(),
    services: [QrService],
    admission: bound,
    routes: (router) =>
      router.service(QrService, {
        getQrCode: async (req) => {
          ran.push(req.qrCodeId); // what a handler writes: the refused calls must never get here
          await new Promise<void>((resolve) => held.push(resolve));
          return { qrCode: { qrCodeId: req.qrCodeId } };
        },
      }),
    // As payment serves Daraja's callbacks and Stripe's webhooks: plain HTTP beside the RPCs.
    httpFilter: (req, res) => {
      if (req.method !== "POST" || !req.url?.startsWith("/daraja/")) return false;
      callbacks.push(req.url);
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"ResultCode":0}');
      return true;
    },
  });
  return { server, bound, ran, callbacks, release: () => held.splice(0).forEach((r) => r()) };
}

/** The refusal's code, reason, and retry hints as a Connect or a gRPC client reads them. */
function refusal(err: unknown) {
  const e = ConnectError.from(err);
  return {
    code: Code[e.code],
    reason: e.findDetails(DomainErrorInfoSchema)[0]?.reason,
    retryAfter: e.metadata.get("retry-after"),
    pushbackMs: e.metadata.get("grpc-retry-pushback-ms"),
  };
}

for (const [protocol, transport] of [
  ["gRPC", (url: string) => createGrpcTransport({ baseUrl: url })],
  ["Connect", (url: string) => createConnectTransport({ baseUrl: url, httpVersion: "1.1" })],
] as const) {
  test(`over ${protocol}: a call past the bound is refused UNAVAILABLE at once with a retry hint, runs nothing, and the held calls complete`, async () => {
    const { server, bound, ran, callbacks, release } = await heldServer();
    try {
      const client = createClient(QrService, transport(server.url));
      const held = [1, 2, 3].map((n) => client.getQrCode({ qrCodeId: id(n) }));
      await eventually("the bound's calls running", () => bound.inFlight === BOUND);

      // Refused while the held calls still run (they cannot end before release): at once, not after them.
      const refused = await client.getQrCode({ qrCodeId: id(4) }).then(() => "answered", refusal);
      assert.deepEqual(refused, { code: "Unavailable", reason: "OVERLOADED", retryAfter: "1", pushbackMs: "1000" });
      assert.deepEqual(ran, [id(1), id(2), id(3)], "the refused call's handler never ran");

      // Health and the providers' callbacks are never refused.
      const health = await createClient(Health, transport(server.url)).check({ service: "" });
      assert.equal(Status[health.status], "SERVING");
      const callback = await fetch(`${server.url}/daraja/stk/${"a".repeat(24)}`, { method: "POST", body: "{}" });
      assert.equal(callback.status, 200);
      assert.deepEqual(callbacks, [`/daraja/stk/${"a".repeat(24)}`]);

      release();
      assert.deepEqual((await Promise.all(held)).map((r) => r.qrCode?.qrCodeId), [id(1), id(2), id(3)]);
      await eventually("the held calls counted out", () => bound.inFlight === 0);
      // Room again: the next call is admitted (and held until released).
      const next = client.getQrCode({ qrCodeId: id(5) });
      await eventually("the next call running", () => ran.length === 4);
      release();
      assert.equal((await next).qrCode?.qrCodeId, id(5));
      assert.equal(bound.refused, 1);
    } finally {
      release();
      await server.close();
    }
  });
}

test("calls from this process (one-process runs) count against the same bound as those over the network", async () => {
  const { server, bound, ran, release } = await heldServer();
  try {
    const remote = createClient(QrService, createGrpcTransport({ baseUrl: server.url }));
    const local = createClient(QrService, localTransport(server.local));
    const held = [remote.getQrCode({ qrCodeId: id(1) }), local.getQrCode({ qrCodeId: id(2) }), remote.getQrCode({ qrCodeId: id(3) })];
    await eventually("the bound's calls running", () => bound.inFlight === BOUND);
    assert.equal(await local.getQrCode({ qrCodeId: id(4) }).then(() => "answered", (e: unknown) => refusal(e).code), "Unavailable");
    assert.equal(ran.length, BOUND);
    release();
    await Promise.all(held);
  } finally {
    release();
    await server.close();
  }
});

test("a handler that fails frees its place: failed calls are counted out as answered ones are", async () => {
  const bound = admission(1);
  const server = await startServer({
    name: "failing",
    logger: captureLogger("silent").logger,
    metrics: new Metrics(),
    services: [QrService],
    admission: bound,
    routes: (router) =>
      router.service(QrService, {
        getQrCode: async () => {
          throw new ConnectError("no such code", Code.NotFound);
        },
      }),
  });
  try {
    const client = createClient(QrService, createGrpcTransport({ baseUrl: server.url }));
    for (let n = 0; n < 3; n++) assert.equal(ConnectError.from(await client.getQrCode({ qrCodeId: id(n) }).catch((e) => e)).code, Code.NotFound);
    assert.equal(bound.inFlight, 0);
    assert.equal(bound.refused, 0);
  } finally {
    await server.close();
  }
});
