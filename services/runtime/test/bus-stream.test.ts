import assert from "node:assert/strict";
import { statfs } from "node:fs/promises";
import os from "node:os";
import { test } from "node:test";
import { connect } from "nats";
import { InProcessBus, JetStreamBus } from "../src/bus.js";
import { captureLogger, eventually, testEnv, uniqueName } from "../src/testing/index.js";

test("the stream gets the configured limits, and a restart keeps what an operator set since", async () => {
  const { natsUrl } = testEnv();
  const stream = uniqueName("LIMITS").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("lim").replace(/[^a-z0-9]/g, "");
  const logger = captureLogger("silent").logger;
  const nc = await connect({ servers: natsUrl });
  const jsm = await nc.jetstreamManager();
  try {
    const first = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger, limits: { maxAgeMs: 3_600_000, maxBytes: 1 << 20 } });
    await first.close();
    let info = await jsm.streams.info(stream);
    assert.equal(info.config.max_age, 3_600_000 * 1_000_000, "max age in nanoseconds");
    assert.equal(info.config.max_bytes, 1 << 20);

    // An operator caps the message count; the next start must not undo it.
    await jsm.streams.update(stream, { ...info.config, max_msgs: 5_000 });
    const second = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger });
    await second.close();
    info = await jsm.streams.info(stream);
    assert.equal(info.config.max_msgs, 5_000, "the operator's limit kept");
    assert.equal(info.config.max_bytes, 1 << 20, "unset limits leave the stream's own");
    assert.equal(info.config.num_replicas, 1);
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
});

test("replicas starting at once on a server without the stream all connect: the stream made by one is there for the others", async () => {
  const { natsUrl } = testEnv();
  const stream = uniqueName("TOGETHER").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("tog").replace(/[^a-z0-9]/g, "");
  const logger = captureLogger("silent").logger;
  const nc = await connect({ servers: natsUrl });
  try {
    // Before, one of them was refused "subjects overlap with an existing stream" and the service did not start.
    const started = await Promise.allSettled(Array.from({ length: 6 }, () => JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger })));
    for (const s of started) if (s.status === "fulfilled") await s.value.close();
    assert.deepEqual(started.map((s) => (s.status === "rejected" ? String(s.reason) : "ok")), Array(6).fill("ok"));
  } finally {
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
});

test("a message reports delivery 1 when first delivered and 2 when delivered again", async () => {
  const { natsUrl } = testEnv();
  const stream = uniqueName("DELIVERY").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("dc").replace(/[^a-z0-9]/g, "");
  const bus = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger: captureLogger("silent").logger, redeliveryDelayMs: 50 });
  const seen: number[] = [];
  let settled!: () => void;
  const done = new Promise<void>((r) => (settled = r));
  try {
    await bus.publish({ id: "00000000-0000-4000-8000-000000000001", subject: "ttip.x.y", data: new Uint8Array([1]) });
    const sub = await bus.subscribe({
      durable: "dc1",
      subject: "ttip.x.y",
      handler: async (m) => {
        seen.push(m.deliveryCount);
        if (seen.length === 1) throw new Error("test: fail the first delivery");
        settled();
      },
    });
    await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
    await sub.stop();
    assert.deepEqual(seen, [1, 2]);
  } finally {
    const nc = await connect({ servers: natsUrl });
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
    await bus.close();
  }
});

test("a publish resolves once the stream stored the message, a repeated id is stored once, and a publish no stream takes fails", async () => {
  const { natsUrl } = testEnv();
  const stream = uniqueName("ACKED").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("ack").replace(/[^a-z0-9]/g, "");
  const bus = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger: captureLogger("silent").logger });
  const nc = await connect({ servers: natsUrl });
  const jsm = await nc.jetstreamManager();
  try {
    const ids = ["00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b", "00000000-0000-4000-8000-00000000000a"];
    // Published together, as the outbox relay does; each resolves only with the stream's acknowledgement.
    await Promise.all(ids.map((id) => bus.publish({ id, subject: "ttip.x.y", data: new Uint8Array([1]) })));
    assert.equal((await jsm.streams.info(stream)).state.messages, 2, "both ids stored, the repeated one once");

    await jsm.streams.delete(stream);
    await assert.rejects(bus.publish({ id: "00000000-0000-4000-8000-00000000000c", subject: "ttip.x.y", data: new Uint8Array([1]) }), "nothing stored it: the publish fails");
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
    await bus.close();
  }
});

test("the test server takes a stream whose limit is more than the free disk, as the chart's 10 GiB is on a small machine", async () => {
  const { natsUrl } = testEnv();
  const { bavail, bsize } = await statfs(os.tmpdir());
  const stream = uniqueName("BIG").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const bus = await JetStreamBus.connect({
    servers: natsUrl, stream, subjectPrefix: uniqueName("big").replace(/[^a-z0-9]/g, ""),
    logger: captureLogger("silent").logger, limits: { maxBytes: Math.min(2 * bavail * bsize, 2 ** 39) }, // at most half the server's 1 TB
  });
  await bus.close();
  const nc = await connect({ servers: natsUrl });
  try {
    await (await nc.jetstreamManager()).streams.delete(stream); // its reservation would count against the next one's
  } finally {
    await nc.close();
  }
});

test("storedWholeSince: nothing while a stream has dropped nothing, then the oldest message it holds, then now once it holds none", async () => {
  const { natsUrl } = testEnv();
  const stream = uniqueName("WHOLE").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("wh").replace(/[^a-z0-9]/g, "");
  const nc = await connect({ servers: natsUrl });
  const jsm = await nc.jetstreamManager();
  const bus = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger: captureLogger("silent").logger });
  const publish = (n: number) => bus.publish({ id: `00000000-0000-4000-8000-00000000000${n}`, subject: "ttip.x.y", data: new Uint8Array([n]) });
  try {
    assert.equal(await bus.storedWholeSince(), undefined, "an empty stream");
    await publish(1);
    await publish(2);
    assert.equal(await bus.storedWholeSince(), undefined, "nothing dropped");
    const beforeThird = Date.now();
    await publish(3);
    const afterThird = Date.now();
    // An operator's count limit drops the two oldest, as an age limit would.
    await jsm.streams.update(stream, { ...(await jsm.streams.info(stream)).config, max_msgs: 1 });
    const since = await bus.storedWholeSince();
    assert.ok(since, "messages dropped");
    assert.ok(since.getTime() >= beforeThird - 1_000 && since.getTime() <= afterThird + 1_000, `the third message's stored time, got ${since.toISOString()}`);
    await jsm.streams.purge(stream);
    const purgedAt = Date.now();
    const empty = await bus.storedWholeSince();
    assert.ok(empty && Math.abs(empty.getTime() - purgedAt) < 5_000, "holding none: from now on");
  } finally {
    await bus.close();
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
});

test("storedWholeSince on the in-process bus: nothing until maxMessages drops one, then the oldest held", async () => {
  const bus = new InProcessBus(captureLogger("silent").logger, 50, { maxMessages: 2 });
  try {
    const times: number[] = [];
    for (let n = 1; n <= 3; n++) {
      if (n === 3) assert.equal(await bus.storedWholeSince(), undefined, "two held, none dropped");
      times.push(Date.now());
      await bus.publish({ id: `00000000-0000-4000-8000-00000000000${n}`, subject: "ttip.x.y", data: new Uint8Array([n]) });
    }
    const since = await bus.storedWholeSince();
    assert.ok(since && since.getTime() >= times[1] && since.getTime() <= Date.now(), "the second message's stored time");
  } finally {
    await bus.close();
  }
});

test("fromNow: a durable made now reads only what is stored after, on JetStream and in process; made again, it keeps its place", async () => {
  const { natsUrl } = testEnv();
  const logger = captureLogger("silent").logger;
  const jetStream = await JetStreamBus.connect({
    servers: natsUrl, stream: uniqueName("FROMNOW").toUpperCase().replace(/[^A-Z0-9_]/g, "_"), subjectPrefix: uniqueName("fn").replace(/[^a-z0-9]/g, ""), logger,
  });
  const inProcess = new InProcessBus(logger, 50);
  try {
    for (const bus of [jetStream, inProcess]) {
      const id = (n: number) => `00000000-0000-4000-8000-0000000000${String(n).padStart(2, "0")}`;
      await bus.publish({ id: id(1), subject: "ttip.x.n", data: new Uint8Array([1]) });
      const seen: string[] = [];
      const subscribe = () => bus.subscribeBatches({ durable: "fresh", subject: "ttip.x.n", fromNow: true, maxBatch: 10, handler: async (ms) => void seen.push(...ms.map((m) => m.id)) });
      let sub = await subscribe();
      await bus.publish({ id: id(2), subject: "ttip.x.n", data: new Uint8Array([2]) });
      await eventually("the message stored after", async () => seen.length === 1);
      await sub.stop();
      // Stored while it was stopped: read when it starts again (its place kept, not "now" again).
      await bus.publish({ id: id(3), subject: "ttip.x.n", data: new Uint8Array([3]) });
      sub = await subscribe();
      await eventually("the message stored while stopped", async () => seen.length === 2);
      await sub.stop();
      assert.deepEqual(seen, [id(2), id(3)], bus.constructor.name);
      await assert.rejects(bus.subscribeBatches({ durable: "both", subject: "ttip.x.n", fromNow: true, replaces: ["fresh"], maxBatch: 1, handler: async () => undefined }), /fromNow or replaces/);
    }
  } finally {
    await jetStream.close();
    await inProcess.close();
  }
});

test("a stream NATS lost is made again: the next publish after the refused one is stored, and every durable (one from now, one batched) reads it without a restart", async () => {
  const { natsUrl } = testEnv();
  const stream = uniqueName("LOST").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("lost").replace(/[^a-z0-9]/g, "");
  const bus = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger: captureLogger("silent").logger });
  const nc = await connect({ servers: natsUrl });
  const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
  const seen = { one: [] as string[], fromNow: [] as string[], batched: [] as string[] };
  const subscriptions = [
    await bus.subscribe({ durable: `${prefix}-one`, subject: "ttip.tip.>", handler: async (m) => void seen.one.push(m.id) }),
    await bus.subscribe({ durable: `${prefix}-now`, subject: "ttip.tip.>", fromNow: true, handler: async (m) => void seen.fromNow.push(m.id) }),
    await bus.subscribeBatches({ durable: `${prefix}-batch`, subject: "ttip.tip.>", maxBatch: 8, handler: async (ms) => void seen.batched.push(...ms.map((m) => m.id)) }),
  ];
  try {
    await bus.publish({ id: id(1), subject: "ttip.tip.made", data: new Uint8Array([1]) });
    await eventually("the first read by all", () => Object.values(seen).every((ids) => ids.includes(id(1))));
    // NATS loses its store: the stream and its durables are gone.
    await (await nc.jetstreamManager()).streams.delete(stream);
    await assert.rejects(bus.publish({ id: id(2), subject: "ttip.tip.made", data: new Uint8Array([2]) }), /no stream takes this subject/);
    // The relay's next pass: before, refused until a process restarted.
    await bus.publish({ id: id(2), subject: "ttip.tip.made", data: new Uint8Array([2]) });
    // Before, the durables were looked for without end and nothing more was read.
    // A durable NATS drops without a word is missed at its pull's expiry and heartbeats (about 30 s), not at once.
    await eventually("the second read by all", () => Object.values(seen).every((ids) => ids.includes(id(2))), { timeoutMs: 60_000 });
    assert.deepEqual(seen.fromNow.filter((x) => x === id(2)), [id(2)], "once");
    // The next start of the service subscribes again as it did: the durable made again from a moment is kept, not
    // refused for its other start (before, every later start of the service failed).
    for (const s of subscriptions.splice(0)) await s.stop();
    subscriptions.push(await bus.subscribe({ durable: `${prefix}-now`, subject: "ttip.tip.>", fromNow: true, handler: async (m) => void seen.fromNow.push(m.id) }));
    await bus.publish({ id: id(3), subject: "ttip.tip.made", data: new Uint8Array([3]) });
    await eventually("the third read after the restart", () => seen.fromNow.includes(id(3)));
  } finally {
    for (const s of subscriptions) await s.stop();
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
    await bus.close();
  }
});
