import assert from "node:assert/strict";
import { test } from "node:test";
import { connect } from "nats";
import { InProcessBus, JetStreamBus } from "../src/bus.js";
import { captureLogger, eventually, testEnv, uniqueName } from "../src/testing/index.js";

const SUBJECT = "ttip.payment.watch_wake";
const text = (data: Uint8Array) => Buffer.from(data).toString("utf8");

test("a JetStream notification reaches every connection on its prefix, and the stream stores none of it", async () => {
  const { natsUrl } = testEnv();
  const logger = captureLogger("silent").logger;
  const stream = uniqueName("NOTIFY").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const prefix = uniqueName("nt").replace(/[^a-z0-9]/g, "");
  const a = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger });
  const b = await JetStreamBus.connect({ servers: natsUrl, stream, subjectPrefix: prefix, logger });
  const otherStream = `${stream}_X`;
  const other = await JetStreamBus.connect({ servers: natsUrl, stream: otherStream, subjectPrefix: `${prefix}x`, logger });
  const nc = await connect({ servers: natsUrl });
  try {
    const heard = { a: [] as string[], b: [] as string[], other: [] as string[] };
    const subs = [
      await a.listen(SUBJECT, (d) => heard.a.push(text(d))),
      await b.listen(SUBJECT, (d) => heard.b.push(text(d))),
      await other.listen(SUBJECT, (d) => heard.other.push(text(d))),
    ];
    a.notify(SUBJECT, Buffer.from("tip-1"));
    await eventually("both replicas heard it", async () => heard.a.length === 1 && heard.b.length === 1, 5_000);
    assert.deepEqual(heard, { a: ["tip-1"], b: ["tip-1"], other: [] }, "the sender too; another prefix not");
    const jsm = await nc.jetstreamManager();
    assert.equal((await jsm.streams.info(stream)).state.messages, 0, "nothing stored: a wake-up is not an event");
    for (const s of subs) await s.stop();
    a.notify(SUBJECT, Buffer.from("tip-2"));
    b.notify(SUBJECT, Buffer.from("tip-3"));
    await nc.flush();
    await a.close();
    await b.close();
    assert.deepEqual(heard.a, ["tip-1"], "a stopped listener hears nothing more");
    await jsm.streams.delete(stream).catch(() => undefined);
    await jsm.streams.delete(otherStream).catch(() => undefined);
  } finally {
    await other.close();
    await nc.close();
  }
});

test("an in-process notification reaches its subject's listeners on a later tick, until they stop", async () => {
  const bus = new InProcessBus(captureLogger("silent").logger, 10);
  const heard: string[] = [];
  const sub = await bus.listen(SUBJECT, (d) => heard.push(`1:${text(d)}`));
  await bus.listen(SUBJECT, (d) => heard.push(`2:${text(d)}`));
  await bus.listen("ttip.payment.other", (d) => heard.push(`other:${text(d)}`));
  bus.notify(SUBJECT, Buffer.from("tip-1"));
  assert.deepEqual(heard, [], "never inside notify()");
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(heard, ["1:tip-1", "2:tip-1"]);
  await sub.stop();
  bus.notify(SUBJECT, Buffer.from("tip-2"));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(heard, ["1:tip-1", "2:tip-1", "2:tip-2"]);
  assert.equal(bus.held.messages, 0, "nothing stored");
  await bus.close();
});
