// The bus reads a delivery's count from its reply subject (deliveryCount), not through nats.js's
// parsed info: it must read what nats.js's parseInfo reads, and leave any other shape to it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { AckPolicy, connect, type JsMsg, type NatsConnection } from "nats";
// nats.js's own reading of a reply subject, which m.info answers.
import { parseInfo } from "nats/lib/jetstream/jsmsg.js";
import { deliveryCount } from "../src/bus.js";
import { testEnv, uniqueName } from "../src/testing/index.js";

/** A delivered message with this reply subject; `parsed` counts the times its info was read. */
function delivered(reply: string, parsed: { n: number }): JsMsg {
  return {
    reply,
    get info() {
      parsed.n++;
      return parseInfo(reply);
    },
  } as unknown as JsMsg;
}

test("reads the count nats.js reads from either shape of reply subject, without its parse", () => {
  const replies = [
    "$JS.ACK.TTIP.payment_tips.1.42.40.1732990000000000000.0",
    "$JS.ACK.TTIP.payment_tips.17.42.40.1732990000000000000.3",
    "$JS.ACK.hub.ACCHASH.TTIP.payment_tips.2.42.40.1732990000000000000.0.rnd",
    "$JS.ACK._.ACCHASH.TTIP.c.123456789012345.1.1.1.0.x",
    "$JS.ACK.dom.hash.S.C.3.1.1.1.0",
    "$JS.ACK.S.C.007.1.1.1.0",
  ];
  for (const reply of replies) {
    const parsed = { n: 0 };
    assert.equal(deliveryCount(delivered(reply, parsed)), parseInfo(reply).deliveryCount, reply);
    assert.equal(parsed.n, 0, `${reply}: read without nats.js's parse`);
  }
});

test("any other reply subject is read by nats.js, which answers or refuses it as before", () => {
  const odd = ["$JS.ACK.S.C.+5.1.1.1.0", "$JS.ACK.S.C.5x.1.1.1.0", "$JS.ACK.S.C..1.1.1.0", "$JS.ACK.S.C.12345678901234567890.1.1.1.0"];
  for (const reply of odd) {
    const parsed = { n: 0 };
    assert.deepEqual(deliveryCount(delivered(reply, parsed)), parseInfo(reply).deliveryCount, reply);
    assert.equal(parsed.n, 1, reply);
  }
  for (const reply of ["$JS.ACK.S.C.1.1.1.0", "$JS.ACK.S.C.1.1.1.1.0.x", "_INBOX.abc.1", ""]) {
    assert.throws(() => deliveryCount(delivered(reply, { n: 0 })), /not js message/, reply);
  }
});

let nc: NatsConnection;
const stream = uniqueName("DC").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
const subject = `${uniqueName("dc").replace(/[^a-z0-9]/g, "")}.x`;
before(async () => {
  nc = await connect({ servers: testEnv().natsUrl });
  await (await nc.jetstreamManager()).streams.add({ name: stream, subjects: [subject] });
});
after(async () => {
  await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
  await nc.close();
});

test("a message JetStream delivers again is counted as nats.js counts it", async () => {
  await nc.jetstream().publish(subject, new Uint8Array([1]));
  await (await nc.jetstreamManager()).consumers.add(stream, { durable_name: "dc", ack_policy: AckPolicy.Explicit });
  const consumer = await nc.jetstream().consumers.get(stream, "dc");
  const counts: [number, number][] = [];
  for (let delivery = 1; delivery <= 3; delivery++) {
    const m = await consumer.next({ expires: 5_000 });
    assert.ok(m, `delivery ${delivery}`);
    counts.push([deliveryCount(m), m.info.deliveryCount]);
    if (delivery < 3) m.nak();
    else m.ack();
  }
  assert.deepEqual(counts, [[1, 1], [2, 2], [3, 3]]);
});
