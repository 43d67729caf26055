// gRPC keeps one HTTP/2 connection per backend address, and a Kubernetes
// Service balances connections, not calls: without an end to a connection's
// life, every call of a client stays on the pod it first reached, and pods the
// HPA adds get nothing. Here a TCP proxy plays the Service (kube-proxy picks a
// pod per new connection, here in turn) in front of two replicas.
import assert from "node:assert/strict";
import net from "node:net";
import { after, describe, test } from "node:test";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { Health } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { createPeers, Metrics, startServer, type RunningServer } from "../src/index.js";
import { captureLogger } from "../src/testing/index.js";

/** A Service-like front: each new TCP connection goes to the next backend. */
async function roundRobinProxy(ports: number[]): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let next = 0;
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    connections++;
    const upstream = net.connect(ports[next++ % ports.length], "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.once("close", () => upstream.destroy());
    upstream.once("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  return {
    port: (proxy.address() as net.AddressInfo).port,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => proxy.close(r));
    },
  };
}

async function replicas(maxConnectionAgeMs: number) {
  const served = [0, 0];
  const servers: RunningServer[] = [];
  for (const i of [0, 1]) {
    const count: Interceptor = (next) => async (req) => {
      served[i]++;
      return next(req);
    };
    servers.push(
      await startServer({ name: `replica-${i}`, logger: captureLogger("silent").logger, metrics: new Metrics(), services: [], routes: () => undefined, interceptors: [count], maxConnectionAgeMs }),
    );
  }
  const proxy = await roundRobinProxy(servers.map((s) => s.port));
  const peers = createPeers(() => `http://127.0.0.1:${proxy.port}`);
  const health = createClient(Health, peers("wallet"));
  return {
    served,
    proxy,
    /** `n` calls, one every few milliseconds, as a steady stream of traffic. */
    async call(n: number, gapMs: number) {
      for (let i = 0; i < n; i++) {
        await health.check({ service: "" });
        await new Promise((r) => setTimeout(r, gapMs));
      }
    },
    async close() {
      peers.close();
      await proxy.close();
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}

describe("gRPC connections end after a maximum age, so calls spread over replicas", () => {
  const open: { close(): Promise<void> }[] = [];
  after(async () => {
    for (const r of open) await r.close();
  });

  test("without a maximum age, 200 calls of one client all reach the first replica (the pinning)", async () => {
    const r = await replicas(0);
    open.push(r);
    await r.call(200, 2);
    assert.deepEqual(r.served, [200, 0]);
    assert.equal(r.proxy.connections(), 1);
  });

  test("with a 150 ms maximum age, the client reconnects through the Service and both replicas serve calls; none fails", async () => {
    const r = await replicas(150);
    open.push(r);
    await r.call(200, 2);
    assert.equal(r.served[0] + r.served[1], 200, "every call answered, none lost to a GOAWAY");
    assert.ok(r.proxy.connections() >= 2, `reconnected (${r.proxy.connections()} connections)`);
    assert.ok(r.served[0] >= 20 && r.served[1] >= 20, `both replicas got a share: ${r.served}`);
    console.log(`200 calls over ${r.proxy.connections()} connections: replicas served ${r.served.join(" and ")}`);
  });
});
