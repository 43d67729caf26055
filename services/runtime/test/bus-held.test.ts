// A JetStream consumer whose handler does not finish holds a bounded number of messages in the
// process: the bus asks JetStream for more only while few wait here, and asks again once its
// worker takes them. Every message is then applied once, in order, acknowledged after its handler.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { connect, type NatsConnection } from "nats";
import { JetStreamBus } from "../src/bus.js";
import { createLogger } from "../src/log.js";
import { eventually, testEnv, uniqueName } from "../src/testing/index.js";

const stream = uniqueName("HELD").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
const prefix = uniqueName("held").replace(/[^a-z0-9]/g, "");
const PUBLISHED = 600;
let bus: JetStreamBus;
let nc: NatsConnection;
before(async () => {
  bus = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream, subjectPrefix: prefix, logger: createLogger({ level: "error" }) });
  nc = await connect({ servers: testEnv().natsUrl });
});
after(async () => {
  await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
  await nc.close();
  await bus.close();
});

/** Publishes PUBLISHED events on ttip.held.<event>, answering their ids in order. */
async function publish(event: string): Promise<string[]> {
  const ids = Array.from({ length: PUBLISHED }, () => randomUUID());
  for (let i = 0; i < ids.length; i += 100) await Promise.all(ids.slice(i, i + 100).map((id) => bus.publish({ id, subject: `ttip.held.${event}`, data: new Uint8Array([1]) })));
  return ids;
}

const info = async (durable: string) => (await nc.jetstreamManager()).consumers.info(stream, durable);

/**
 * Once the durable has messages out, the bus holds at most `most` of them (delivered, not
 * acknowledged) while its handler does not finish, and the rest wait in the stream. Read again
 * for a while: a bus that asked for more as messages arrived would have had them all in a few
 * milliseconds (the bound is never passed, however slow the machine).
 */
async function staysHeld(durable: string, most: number): Promise<void> {
  await eventually(`${durable}: messages out`, async () => (await info(durable)).num_ack_pending > 0);
  for (let read = 0; read < 20; read++) {
    const i = await info(durable);
    assert.ok(i.num_ack_pending <= most, `${i.num_ack_pending} messages held (at most ${most})`);
    assert.ok(i.num_pending > 0, "the rest wait in the stream");
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("batches: a handler that does not finish holds at most two batches and one pull's messages; once it goes on, each message is applied once, in order", async () => {
  const ids = await publish("b");
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const applied: string[] = [];
  const sub = await bus.subscribeBatches({
    durable: "held-b",
    subject: "ttip.held.b",
    maxBatch: 10,
    handler: async (batch) => {
      await gate;
      applied.push(...batch.map((m) => m.id));
    },
  });
  try {
    // The batch in the handler (10), two batches queued (20), and what pull requests already sent brought (64).
    await staysHeld("held-b", 10 + 20 + 64);
    release();
    await eventually("every message acknowledged", async () => {
      const i = await info("held-b");
      return i.num_ack_pending === 0 && i.num_pending === 0;
    });
    assert.deepEqual(applied, ids);
    assert.equal((await info("held-b")).num_redelivered, 0);
  } finally {
    release();
    await sub.stop();
  }
});

test("one at a time: the same, at most 64 queued and one pull's messages", async () => {
  const ids = await publish("one");
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const applied: string[] = [];
  const sub = await bus.subscribe({
    durable: "held-one",
    subject: "ttip.held.one",
    handler: async (m) => {
      await gate;
      applied.push(m.id);
    },
  });
  try {
    await staysHeld("held-one", 1 + 64 + 64);
    release();
    await eventually("every message acknowledged", async () => {
      const i = await info("held-one");
      return i.num_ack_pending === 0 && i.num_pending === 0;
    });
    assert.deepEqual(applied, ids);
  } finally {
    release();
    await sub.stop();
  }
});
