// A stored message without an event id (no Nats-Msg-Id, or one that is not a UUID) was not
// published by an outbox and no inbox can record it: the bus terminates it, logged as an error
// and counted, instead of handing it to a consumer whose inbox fails on it (it came back forever).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { connect, headers, type NatsConnection } from "nats";
import { InProcessBus, JetStreamBus } from "../src/bus.js";
import { migrate } from "../src/db.js";
import { Metrics } from "../src/metrics.js";
import { consumeEventBatches } from "../src/outbox.js";
import { captureLogger, createTestDatabase, eventually, testEnv, uniqueName, type TestDatabase } from "../src/testing/index.js";

describe("messages without an event id (JetStream)", () => {
  const captured = captureLogger("warn");
  const stream = uniqueName("ID").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("id").replace(/[^a-z0-9]/g, "");
  let db: TestDatabase;
  let bus: JetStreamBus;
  let nc: NatsConnection;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "ids", undefined);
    await db.pool.query("CREATE TABLE ids.applied (event_id uuid NOT NULL)");
    bus = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream, subjectPrefix: prefix, logger: captured.logger, redeliveryDelayMs: 50 });
    nc = await connect({ servers: testEnv().natsUrl });
  });
  after(async () => {
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
    await bus.close();
    await db.drop();
  });

  /** Stores on `event` (a subject under the test's prefix): one message with no Nats-Msg-Id, one whose id is no UUID, then a real event's. */
  async function publishThree(event: string): Promise<string> {
    const js = nc.jetstream();
    await js.publish(`${prefix}.x.${event}`, new Uint8Array([1]));
    const h = headers();
    h.set("Nats-Msg-Id", `not-a-uuid-${event}`);
    await js.publish(`${prefix}.x.${event}`, new Uint8Array([2]), { headers: h });
    const id = randomUUID();
    await bus.publish({ id, subject: `ttip.x.${event}`, data: new Uint8Array([3]) });
    return id;
  }

  /** The durable's deliveries still waiting for an acknowledgement and those delivered again, once nothing waits. */
  const settled = (durable: string) =>
    eventually(`${durable} has nothing unacknowledged`, async () => {
      const info = await (await nc.jetstreamManager()).consumers.info(stream, durable);
      return info.num_ack_pending === 0 && info.num_pending === 0 ? { redelivered: info.num_redelivered } : undefined;
    });

  const terminated = async (metrics: Metrics, durable: string) => {
    const text = await metrics.registry.metrics();
    return ["no_id", "id_not_uuid"].map((reason) => new RegExp(`ttip_bus_messages_terminated_total\\{consumer="${durable}",reason="${reason}"\\} 1\\b`).test(text));
  };

  test("an inbox consumer applies the real event and never sees the others, which are terminated, logged and counted, not delivered again", async () => {
    const id = await publishThree("b");
    const metrics = new Metrics();
    const seen: string[] = [];
    const sub = await consumeEventBatches({
      bus, pool: db.pool, schema: "ids", consumer: "ids-b", subject: "ttip.x.b", logger: captured.logger, metrics,
      handleBatch: async (messages, tx) => {
        seen.push(...messages.map((m) => m.id));
        await tx.query("INSERT INTO ids.applied SELECT unnest($1::uuid[])", [messages.map((m) => m.id)]);
      },
    });
    try {
      await eventually("the real event applied", async () => (await db.pool.query("SELECT 1 FROM ids.applied WHERE event_id = $1", [id])).rowCount === 1);
      assert.deepEqual(await settled("ids-b"), { redelivered: 0 }, "none of the three delivered again");
    } finally {
      await sub.stop();
    }
    assert.deepEqual(seen, [id], "the handler got the real event only");
    assert.deepEqual(await terminated(metrics, "ids-b"), [true, true], "each counted under its reason");
    const errors = captured.records().filter((r) => r.level === "error" && r.consumer === "ids-b");
    assert.deepEqual(errors.map((r) => r.msgId).sort(), ["", "not-a-uuid-b"], "each logged as an error");
  });

  test("so does a consumer of one message at a time", async () => {
    const id = await publishThree("s");
    const metrics = new Metrics();
    const seen: string[] = [];
    const sub = await bus.subscribe({ durable: "ids-s", subject: "ttip.x.s", metrics, handler: async (m) => void seen.push(m.id) });
    try {
      await eventually("the real event handled", () => seen.includes(id));
      assert.deepEqual(await settled("ids-s"), { redelivered: 0 });
    } finally {
      await sub.stop();
    }
    assert.deepEqual(seen, [id]);
    assert.deepEqual(await terminated(metrics, "ids-s"), [true, true]);
  });

  test("a replay (readStored) hands over the real event only, as the live consumers applied", async () => {
    const id = await publishThree("r");
    const read: string[] = [];
    const count = await bus.readStored({ subject: "ttip.x.r", since: new Date(Date.now() - 60_000), handler: async (m) => void read.push(m.id) });
    assert.deepEqual(read, [id]);
    assert.equal(count, 1);
  });
});

describe("messages without an event id (in-process bus)", () => {
  const real = () => ({ id: randomUUID(), subject: "ttip.x.e", data: new Uint8Array([3]) });
  const idless = [
    { id: "", subject: "ttip.x.e", data: new Uint8Array([1]) },
    { id: "not-a-uuid", subject: "ttip.x.e", data: new Uint8Array([2]) },
  ];

  test("are terminated: a consumer never sees them, each is logged as an error and counted once, even when the batch beside it fails", async () => {
    const captured = captureLogger("warn");
    const bus = new InProcessBus(captured.logger, 5);
    const first = real();
    for (const m of [first, ...idless]) await bus.publish(m);
    const second = real();
    await bus.publish(second);
    const metrics = new Metrics();
    const seen: string[][] = [];
    let failOnce = true;
    const sub = await bus.subscribeBatches({
      durable: "e", subject: "ttip.x.e", maxBatch: 10, metrics,
      handler: async (batch) => {
        seen.push(batch.map((m) => m.id));
        if (failOnce) {
          failOnce = false;
          throw new Error("database down");
        }
      },
    });
    await eventually("delivered again after the failure", () => seen.length === 2);
    await sub.stop();
    await bus.close();
    assert.deepEqual(seen, [[first.id, second.id], [first.id, second.id]]);
    const text = await metrics.registry.metrics();
    for (const reason of ["no_id", "id_not_uuid"]) assert.match(text, new RegExp(`ttip_bus_messages_terminated_total\\{consumer="e",reason="${reason}"\\} 1\\b`));
    const errors = captured.records().filter((r) => r.level === "error" || r.level === 50);
    assert.deepEqual(errors.map((r) => r.msgId).sort(), ["", "not-a-uuid"]);
  });

  test("one at a time: the same", async () => {
    const bus = new InProcessBus(captureLogger("silent").logger, 5);
    for (const m of idless) await bus.publish(m);
    const last = real();
    await bus.publish(last);
    const seen: string[] = [];
    const sub = await bus.subscribe({ durable: "s", subject: "ttip.x.e", handler: async (m) => void seen.push(m.id) });
    await eventually("the real event handled", () => seen.includes(last.id));
    await sub.stop();
    await bus.close();
    assert.deepEqual(seen, [last.id]);
  });

  test("a replay (readStored) skips them, as on JetStream", async () => {
    const bus = new InProcessBus(captureLogger("silent").logger, 5);
    const last = real();
    for (const m of [...idless, last]) await bus.publish(m);
    const read: string[] = [];
    const count = await bus.readStored({ subject: "ttip.x.e", since: new Date(Date.now() - 60_000), handler: async (m) => void read.push(m.id) });
    await bus.close();
    assert.deepEqual(read, [last.id]);
    assert.equal(count, 1);
  });
});
