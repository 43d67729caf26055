import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { Metrics, startServer } from "../src/index.js";
import { captureLogger } from "../src/testing/index.js";

test("item 13: on shutdown the server says NOT_SERVING but keeps accepting calls for the drain delay, then stops", async () => {
  const server = await startServer({
    name: "drain",
    logger: captureLogger("silent").logger,
    metrics: new Metrics(),
    services: [],
    routes: () => undefined,
    // Long enough that the check below (a new connection, on a busy machine) lands inside it.
    drainDelayMs: 5_000,
  });
  // A new client (a new connection) each time, as a balancer's fresh connection would be.
  const check = () =>
    createClient(Health, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }))
      .check({ service: "" }, { timeoutMs: 4_000 })
      .then((r) => Status[r.status], (e) => `error: ${String(e)}`);
  assert.equal(await check(), "SERVING");
  const closed = server.close();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await check(), "NOT_SERVING", "200 ms into shutdown a new connection is still served");
  await closed;
  assert.match(await check(), /^error/, "after the delay and the drain the port is closed");
});
