import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { test } from "node:test";
import { connect, type NatsConnection } from "nats";
import { JetStreamBus } from "../src/bus.js";
import { captureLogger, testEnv, uniqueName } from "../src/testing/index.js";

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;

const PUBLISH = Buffer.from("HPUB ");

/**
 * Counts the writes to a bus's NATS socket from now on that carry a publish. Not the others:
 * nats.js answers nats-server's PINGs (the first comes a second or two after connecting) with a
 * PONG written at once, which under load can land in the counted turn.
 */
function countWrites(bus: JetStreamBus): () => number {
  const nc = (bus as unknown as { nc: NatsConnection }).nc;
  const socket = (nc as unknown as { protocol: { transport: { socket: Socket } } }).protocol.transport.socket;
  let writes = 0;
  const write = socket.write;
  socket.write = function (this: Socket, ...args: unknown[]) {
    if (Buffer.from(args[0] as Uint8Array).includes(PUBLISH)) writes++;
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof socket.write;
  return () => writes;
}

/**
 * Publishes `count` messages, each from a task of its own (as each consumer's or relay's work ends
 * in a task of its own), all in one turn of the event loop; resolves once all are stored. Immediates
 * queued together run in the same turn; timers do not always (a 0 ms timer made a millisecond later,
 * the process paused between two, waits for the next turn), so the test did see two writes under load.
 */
async function publishFromTasks(bus: JetStreamBus, first: number, count: number): Promise<void> {
  const published: Promise<void>[] = [];
  await new Promise<void>((resolve) => {
    for (let i = 0; i < count; i++) {
      setImmediate(() => {
        published.push(bus.publish({ id: id(first + i), subject: "ttip.writes.made", data: new Uint8Array([i]) }));
        if (published.length === count) resolve();
      });
    }
  });
  await Promise.all(published);
}

test("what the bus sends during one turn of the event loop goes in one socket write, in order; nats.js alone writes once per task", async () => {
  const { natsUrl } = testEnv();
  const stream = uniqueName("WRITES").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const subjectPrefix = uniqueName("wr").replace(/[^a-z0-9]/g, "");
  const logger = captureLogger("silent").logger;
  const coalescing = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix, logger });
  const perTask = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix, logger, writeOncePerTurn: false });
  const nc = await connect({ servers: natsUrl });
  try {
    // The first publish subscribes to the acknowledgements: out of the count.
    await coalescing.publish({ id: id(1000), subject: "ttip.writes.made", data: new Uint8Array([0]) });
    await perTask.publish({ id: id(2000), subject: "ttip.writes.made", data: new Uint8Array([0]) });
    const writesPerTask = countWrites(perTask);
    await publishFromTasks(perTask, 2001, 8);
    assert.equal(writesPerTask(), 8, "nats.js alone: a write for each task's publish");
    const writesCoalesced = countWrites(coalescing);
    await publishFromTasks(coalescing, 1001, 8);
    assert.equal(writesCoalesced(), 1, "one write for the eight publishes of the turn");

    // Stored in the order they were made, each once.
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(stream);
    assert.equal(info.state.messages, 18);
    const ids: string[] = [];
    for (let seq = info.state.last_seq - 7; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      ids.push(m.header.get("Nats-Msg-Id"));
    }
    assert.deepEqual(ids, Array.from({ length: 8 }, (_, i) => id(1001 + i)));
  } finally {
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
    await coalescing.close();
    await perTask.close();
  }
});
