import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { InProcessBus } from "../src/bus.js";
import { AdjustableClock } from "../src/clock.js";
import { captureLogger, eventually } from "../src/testing/index.js";

/** A UUID made from a label (the bus terminates messages whose id is not one), the label as the data. */
const idOf = (label: string) => createHash("md5").update(label).digest("hex").replace(/^(.{8})(.{4})(.{4})(.{4})/, "$1-$2-$3-$4-");
const message = (label: string) => ({ id: idOf(label), subject: "ttip.test.happened", data: new TextEncoder().encode(label) });
const labelOf = (m: { data: Uint8Array }) => new TextDecoder().decode(m.data);

test("the in-process bus holds at most maxMessages and forgets ids after the duplicate window", async () => {
  const { logger, records } = captureLogger();
  const clock = new AdjustableClock();
  const bus = new InProcessBus(logger, 10, { maxMessages: 100, duplicateWindowMs: 50, maxIds: 1_000 }, clock);
  const read: string[] = [];
  const sub = await bus.subscribe({ subject: "ttip.test.>", durable: "reader", handler: async (m) => void read.push(labelOf(m)) });
  for (let i = 0; i < 250; i++) await bus.publish(message(`m${i}`));
  assert.ok(bus.held.messages <= 100, `held ${bus.held.messages}`);
  await eventually("the last message read", () => read.includes("m249"));
  assert.deepEqual(read.filter((id, i) => read.indexOf(id) !== i), [], "nothing read twice");
  for (let i = 1; i < read.length; i++) assert.ok(Number(read[i].slice(1)) > Number(read[i - 1].slice(1)), "in order");
  if (read.length < 250) assert.ok(records().some((r) => r.msg === "in-process bus dropped messages a consumer had not read (maxMessages)"));

  // Within the window a re-publish is dropped; after it the id is forgotten (memory stays bounded).
  await bus.publish(message("m249"));
  assert.equal(read.filter((id) => id === "m249").length, 1);
  clock.advance(60); // past the window, no sleep
  await bus.publish(message("fresh"));
  assert.ok(bus.held.ids <= 2, `ids held ${bus.held.ids}`);
  await sub.stop();
  await bus.close();
});

test("ids are capped by count too", async () => {
  const bus = new InProcessBus(captureLogger("silent").logger, 10, { maxMessages: 10, maxIds: 20, duplicateWindowMs: 60_000 });
  for (let i = 0; i < 100; i++) await bus.publish(message(`n${i}`));
  assert.ok(bus.held.ids <= 20, `ids held ${bus.held.ids}`);
  assert.equal(bus.held.messages, 10);
  await bus.close();
});

test("batches: what is stored and matches, up to maxBatch per call; a failed batch comes again as it was, counted", async () => {
  const bus = new InProcessBus(captureLogger("silent").logger, 10);
  const other = (id: string) => ({ ...message(id), subject: "ttip.other.happened" });
  for (const m of [message("a1"), other("x1"), message("a2"), message("a3"), other("x2"), message("a4"), message("a5")]) await bus.publish(m);
  const calls: Array<{ ids: string[]; counts: number[] }> = [];
  let failOnce = true;
  const sub = await bus.subscribeBatches({
    subject: "ttip.test.>",
    durable: "batches",
    maxBatch: 3,
    handler: async (batch) => {
      calls.push({ ids: batch.map(labelOf), counts: batch.map((m) => m.deliveryCount) });
      if (failOnce) {
        failOnce = false;
        // Published while the batch fails: not added to it when it comes again.
        await bus.publish(message("a6"));
        throw new Error("database down");
      }
    },
  });
  await eventually("every message read", () => calls.some((c) => c.ids.includes("a6")));
  await sub.stop();
  assert.deepEqual(calls, [
    { ids: ["a1", "a2", "a3"], counts: [1, 1, 1] },
    { ids: ["a1", "a2", "a3"], counts: [2, 2, 2] },
    { ids: ["a4", "a5", "a6"], counts: [1, 1, 1] },
  ]);
  await bus.close();
});

test("a message is stored as a copy of its bytes: a Buffer published (the outbox relay hands over pg's) is neither shared nor pinned", async () => {
  const bus = new InProcessBus(captureLogger("silent").logger, 10);
  // A small Buffer sits in node's shared pool slab, as pg's bytea values do.
  const data = Buffer.from(new TextEncoder().encode("before"));
  await bus.publish({ id: idOf("copied"), subject: "ttip.test.happened", data });
  data.write("AFTER!");
  const stored: { data: Uint8Array }[] = [];
  await bus.readStored({ subject: "ttip.test.>", since: new Date(0), handler: async (m) => void stored.push(m) });
  assert.equal(labelOf(stored[0]), "before", "what the publisher does with its buffer afterwards is not the stored message's");
  assert.equal(stored[0].data.buffer.byteLength, "before".length, "the stored bytes hold no larger buffer alive");
  await bus.close();
});
