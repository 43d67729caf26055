import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { connect } from "nats";
import { JetStreamBus } from "../src/bus.js";
import { captureLogger, startNats, testEnv, uniqueName, type TestServer } from "../src/testing/index.js";

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;

/** Resolves once nothing accepts connections on the server's port. */
async function down(server: TestServer): Promise<void> {
  const { hostname, port } = new URL(server.url.replace("nats:", "http:"));
  for (let i = 0; i < 200; i++) {
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(Number(port), hostname, () => {
        s.destroy();
        resolve(false);
      });
      s.on("error", () => resolve(true));
    });
    if (refused) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("the server did not stop");
}

test("a publish waits for the stream's acknowledgement: one no stream answers fails at its timeout, not before", async () => {
  const { natsUrl } = testEnv();
  const stream = uniqueName("UNANSWERED").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("un").replace(/[^a-z0-9]/g, "");
  const bus = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger: captureLogger("silent").logger, publishTimeoutMs: 300 });
  const nc = await connect({ servers: natsUrl });
  // The stream takes "<prefix>.>", not "<prefix>" itself: a plain subscriber hears that one and never answers.
  const silent = nc.subscribe(prefix);
  await nc.flush();
  try {
    const startedAt = performance.now();
    await assert.rejects(bus.publish({ id: id(1), subject: "ttip", data: new Uint8Array([1]) }), /no acknowledgement of a publish to .* within 300 ms/);
    assert.ok(performance.now() - startedAt >= 290, "failed at its timeout");
    assert.equal(silent.getReceived(), 1, "the message went out");
    await bus.publish({ id: id(2), subject: "ttip.x", data: new Uint8Array([2]) });
  } finally {
    silent.unsubscribe();
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
    await bus.close();
  }
});

test("while NATS is down publishes fail at once, not at their timeout; once it is back they are stored, each id once", async () => {
  const server = await startNats();
  try {
    const bus = await JetStreamBus.connect({ servers: server.url, stream: "PUB", logger: captureLogger("silent").logger, publishTimeoutMs: 30_000 });
    try {
      await bus.publish({ id: id(1), subject: "ttip.x.y", data: new Uint8Array([1]) });
      const restarted = server.restart({ downMs: 1_000 });
      await down(server);
      const startedAt = performance.now();
      await assert.rejects(bus.publish({ id: id(2), subject: "ttip.x.y", data: new Uint8Array([2]) }), /NATS/);
      assert.ok(performance.now() - startedAt < 10_000, "failed long before its 30 s timeout");
      await restarted;
      // As the outbox relay does: the same ids again until the bus takes them.
      for (let attempt = 0; ; attempt++) {
        try {
          await Promise.all([id(1), id(2), id(3)].map((i) => bus.publish({ id: i, subject: "ttip.x.y", data: new Uint8Array([3]) })));
          break;
        } catch (err) {
          if (attempt >= 100) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const nc = await connect({ servers: server.url });
      try {
        assert.equal((await (await nc.jetstreamManager()).streams.info("PUB")).state.messages, 3, "ids 1-3 stored once each");
      } finally {
        await nc.close();
      }
    } finally {
      await bus.close();
    }
  } finally {
    await server.stop();
  }
});

test("a publish the stream refuses fails with the stream's reason", async () => {
  const { natsUrl } = testEnv();
  const stream = uniqueName("REFUSING").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("ref").replace(/[^a-z0-9]/g, "");
  const bus = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger: captureLogger("silent").logger });
  const nc = await connect({ servers: natsUrl });
  const jsm = await nc.jetstreamManager();
  try {
    const info = await jsm.streams.info(stream);
    // A stream that takes at most one message and refuses the next (discard new).
    await jsm.streams.update(stream, { ...info.config, max_msgs: 1, discard: "new" as never });
    await bus.publish({ id: id(1), subject: "ttip.a.b", data: new Uint8Array([1]) });
    await assert.rejects(bus.publish({ id: id(2), subject: "ttip.a.b", data: new Uint8Array([2]) }), /stream refused the publish: maximum messages exceeded/);
    await bus.publish({ id: id(1), subject: "ttip.a.b", data: new Uint8Array([1]) }); // a repeated id is not a refusal
    assert.equal((await jsm.streams.info(stream)).state.messages, 1);
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
    await bus.close();
  }
});
