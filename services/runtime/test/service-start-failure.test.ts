// A service whose start fails part way (its background work refuses to start,
// or its port is taken) leaves nothing of itself running: no outbox relay
// polling and publishing, no background work, so the caller can clean up the
// rest and the process can exit.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import type { BusMessage, EventBus } from "../src/bus.js";
import { MemoryCache } from "../src/cache.js";
import { withTransaction } from "../src/db.js";
import { Metrics } from "../src/metrics.js";
import { writeOutbox } from "../src/outbox.js";
import { createPeers } from "../src/peers.js";
import { startService, type ServiceContext, type ServiceModule } from "../src/service.js";
import { captureLogger, createTestDatabase, type TestDatabase } from "../src/testing/index.js";

/** Longer than the relay's longest idle wait (2 s): a relay left running has published by then. */
const RELAY_WOULD_HAVE_PUBLISHED_MS = 3_000;

describe("a service that fails to start", () => {
  let db: TestDatabase;
  const published: string[] = [];
  let ctx: ServiceContext;

  before(async () => {
    db = await createTestDatabase();
    const bus = { publish: async (m: BusMessage) => void published.push(m.id), close: async () => undefined } as unknown as EventBus;
    const peers = createPeers(() => undefined);
    ctx = { logger: captureLogger("silent").logger, pool: db.pool, bus, cache: new MemoryCache(), metrics: new Metrics(), peers };
  });
  after(() => db.drop());

  const module = (name: string, start: ServiceModule["start"]): ServiceModule => ({ name, services: [], routes: () => undefined, start });

  test("whose background work refuses to start leaves no outbox relay publishing", async () => {
    const failing = module("start_refused", async () => {
      throw new Error("background work could not start");
    });
    await assert.rejects(startService(failing, ctx), /background work could not start/);
    const id = randomUUID();
    await withTransaction(db.pool, (tx) => writeOutbox(tx, "start_refused", { id, subject: "ttip.test.happened", data: new Uint8Array([1]) }));
    await new Promise((r) => setTimeout(r, RELAY_WOULD_HAVE_PUBLISHED_MS));
    assert.deepEqual(published, [], "nothing relayed for a service that never started");
  });

  test("whose HTTP filter throws as it is made stops the background work it had started", async () => {
    let stopped = 0;
    const refusing: ServiceModule = {
      ...module("filter_refused", async () => async () => void stopped++),
      http: () => {
        throw new Error("webhook settings refused");
      },
    };
    await assert.rejects(startService(refusing, ctx), /webhook settings refused/);
    assert.equal(stopped, 1, "its background work was stopped once");
  });

  test("whose port is taken stops the background work it had started", async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    let stopped = 0;
    try {
      const port = (taken.address() as net.AddressInfo).port;
      const busy = module("port_taken", async () => async () => void stopped++);
      await assert.rejects(startService(busy, ctx, { host: "127.0.0.1", port }), /EADDRINUSE|in use/);
      assert.equal(stopped, 1, "its background work was stopped once");
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
