// The bus closed while a consumer's handler runs (a shutdown): nats.js takes the acknowledgement
// written after the close without throwing (its protocol buffers it, and the connection is gone),
// so the consumer's loop and stop() end without an error, the handler's success is not taken for a
// failure, and the message stays unacknowledged: JetStream delivers it again. This pins that: a
// nats.js whose ack throws on a closed connection would end the loop with an unhandled rejection.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { connect, type NatsConnection } from "nats";
import { JetStreamBus } from "../src/bus.js";
import { captureLogger, testEnv, uniqueName } from "../src/testing/index.js";

/** A promise and the function that resolves it. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

describe("the bus closed while a handler runs (JetStream)", () => {
  const stream = uniqueName("ST").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("st").replace(/[^a-z0-9]/g, "");
  let nc: NatsConnection;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  before(async () => {
    nc = await connect({ servers: testEnv().natsUrl });
    process.on("unhandledRejection", onUnhandled);
  });
  after(async () => {
    process.off("unhandledRejection", onUnhandled);
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
  });

  const open = (logger: ReturnType<typeof captureLogger>["logger"]) => JetStreamBus.connect({ servers: testEnv().natsUrl, stream, subjectPrefix: prefix, logger, redeliveryDelayMs: 50 });

  for (const kind of ["one at a time", "batches"] as const) {
    test(`${kind}: no error from stop() or elsewhere, no handler failure logged, the message left to come again`, async () => {
      const captured = captureLogger("warn");
      const bus = await open(captured.logger);
      const durable = kind === "batches" ? "settle-b" : "settle-s";
      const subject = `ttip.x.${durable}`;
      const inHandler = gate();
      const release = gate();
      const handle = async () => {
        inHandler.open();
        await release.opened;
      };
      const sub =
        kind === "batches"
          ? await bus.subscribeBatches({ durable, subject, maxBatch: 8, handler: handle })
          : await bus.subscribe({ durable, subject, handler: handle });
      await bus.publish({ id: randomUUID(), subject, data: new Uint8Array([1]) });
      await inHandler.opened;
      await bus.close();
      release.open();
      await sub.stop();
      // One turn more: an unhandled rejection is reported after the microtasks that made it.
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(unhandled, [], "no unhandled rejection");
      assert.ok(!captured.records().some((r) => r.msg === "event handler failed; will redeliver" || r.msg === "batch handler failed; will redeliver"), "the handler's success not taken for a failure");
      const info = await (await nc.jetstreamManager()).consumers.info(stream, durable);
      assert.equal(info.num_ack_pending, 1, "delivered, not acknowledged: it comes again");
    });
  }
});

