// Item 12: one access-log line per call at the gateway, errors logged once
// where they happen, and one request id following a call across services.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createPeers, currentRequestId, Metrics, startServer, type RunningServer } from "@ttip/runtime";
import { captureLogger } from "@ttip/runtime/testing";
import { startBoundaryPlatform, type BoundaryPlatform } from "./boundary-harness.js";

describe("logging through the gateway", () => {
  const logs = captureLogger("info");
  let p: BoundaryPlatform;
  before(async () => {
    p = await startBoundaryPlatform({ logger: logs.logger });
  });
  after(() => p?.close());

  test("item 12: 40 NotFounds make 40 access lines at the gateway and no service log lines; a success is logged too", async () => {
    await new Promise((r) => setTimeout(r, 300));
    const from = logs.lines.length;
    const qr = p.api(QrService, undefined, { "x-request-id": "fuzz-req-0001" });
    for (let i = 0; i < 40; i++) {
      await assert.rejects(qr.resolveQrCode({ code: { case: "shortCode", value: `ZZZZ${String(i).padStart(4, "0")}` } }));
    }
    await p.api(Health).check({ service: "" });
    const lines = logs.records().slice(from);
    const calls = lines.filter((l) => l.msg === "call");
    const notFound = calls.filter((l) => l.rpc === "ttip.qr.v1.QrService/ResolveQrCode");
    assert.equal(notFound.length, 40, JSON.stringify(lines.slice(0, 5)));
    for (const l of notFound) {
      assert.equal(l.code, "NotFound");
      assert.equal(l.caller, "anonymous");
      assert.equal(l.requestId, "fuzz-req-0001");
      assert.equal(typeof l.ms, "number");
    }
    assert.ok(calls.some((l) => l.rpc === "grpc.health.v1.Health/Check" && l.code === "OK"), "successful calls are logged too");
    const others = lines.filter((l) => l.msg !== "call" && /ResolveQrCode/.test(JSON.stringify(l)));
    assert.deepEqual(others, [], "a client's mistake is not logged again by the service");
  });
});

test("item 12: a service's call to a peer carries the request id it is handling", async () => {
  const seen: Array<string | null> = [];
  const logger = captureLogger("silent").logger;
  const peer: RunningServer = await startServer({
    name: "peer",
    logger,
    metrics: new Metrics(),
    services: [],
    routes: () => undefined,
    interceptors: [(next) => (req) => {
      seen.push(req.header.get("x-request-id"));
      return next(req);
    }],
  });
  const peers = createPeers(() => peer.url);
  const front: RunningServer = await startServer({
    name: "front",
    logger,
    metrics: new Metrics(),
    services: [],
    routes: () => undefined,
    interceptors: [(next) => async (req) => {
      if (req.service.typeName === "grpc.health.v1.Health") {
        assert.equal(currentRequestId(), "trace-me-0042");
        await createClient(Health, peers("peer")).check({ service: "" });
      }
      return next(req);
    }],
  });
  try {
    await createClient(Health, createGrpcTransport({ baseUrl: front.url })).check({ service: "" }, { headers: { "x-request-id": "trace-me-0042" } });
    assert.deepEqual(seen, ["trace-me-0042"]);
  } finally {
    peers.close();
    await front.close();
    await peer.close();
  }
});
