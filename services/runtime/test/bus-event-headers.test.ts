// The bus reads a delivered message's event id and trace context from its header block as it came
// (eventHeaders), not through nats.js's decoded headers: it must read what nats.js's get() reads.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AckPolicy, connect, headers, type JsMsg, type NatsConnection } from "nats";
import { eventHeaders, publishHeaders } from "../src/bus.js";
import { testEnv, uniqueName } from "../src/testing/index.js";

describe("publishHeaders", () => {
  test("encodes the bytes nats.js's headers encode with the same id and trace context set, and refuses a line break as they do", () => {
    const cases: [string, string | undefined][] = [
      ["6f1c2a0e-4b7d-4c8e-9a3b-2f5d6e7a8b9c", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
      ["6f1c2a0e-4b7d-4c8e-9a3b-2f5d6e7a8b9c", undefined],
      ["  padded  ", " padded "],
      ["", ""],
      ["ünïcode", "x"],
    ];
    for (const [id, traceparent] of cases) {
      const h = headers();
      h.set("Nats-Msg-Id", id);
      if (traceparent) h.set("traceparent", traceparent);
      // nats.js's publish sends what encode() answers (protocol.js), which its MsgHdrs type does not declare.
      const encoded = (x: unknown) => (x as { encode(): Uint8Array }).encode();
      assert.deepEqual(encoded(publishHeaders(id, traceparent)), encoded(h), JSON.stringify([id, traceparent]));
    }
    assert.throws(() => publishHeaders("a\r\nX-Injected: 1", undefined));
    assert.throws(() => publishHeaders("a", "b\nc"));
  });
});

describe("eventHeaders (JetStream)", () => {
  const stream = uniqueName("HDR").toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  const subject = `${uniqueName("hdr").replace(/[^a-z0-9]/g, "")}.x`;
  let nc: NatsConnection;
  before(async () => {
    nc = await connect({ servers: testEnv().natsUrl });
    await (await nc.jetstreamManager()).streams.add({ name: stream, subjects: [subject] });
  });
  after(async () => {
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
  });

  /** The header blocks: each a list of (key, value) appended in order; undefined: no headers at all. */
  const cases: ([string, string][] | undefined)[] = [
    [["Nats-Msg-Id", "6f1c2a0e-4b7d-4c8e-9a3b-2f5d6e7a8b9c"], ["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]],
    [["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], ["Nats-Msg-Id", "  padded-id  "]],
    [["Nats-Msg-Id", "first"], ["Nats-Msg-Id", "second"], ["traceparent", ""], ["traceparent", "later"]],
    [["Other", "a: b"], ["nats-msg-id", "other case"], ["Traceparent", "other case"]],
    [["Other", "x"]],
    [["Nats-Msg-Id", "ünïcode-ïd"]],
    undefined,
  ];

  test("reads the id and trace context nats.js's headers.get reads, whatever the block holds", async () => {
    const js = nc.jetstream();
    for (const [i, c] of cases.entries()) {
      let h: ReturnType<typeof headers> | undefined;
      if (c) {
        h = headers();
        for (const [k, v] of c) h.append(k, v);
      }
      await js.publish(subject, new Uint8Array([i]), h ? { headers: h } : undefined);
    }
    const jsm = await nc.jetstreamManager();
    await jsm.consumers.add(stream, { durable_name: "hdr", ack_policy: AckPolicy.Explicit });
    const consumer = await js.consumers.get(stream, "hdr");
    const got: JsMsg[] = [];
    for await (const m of await consumer.fetch({ max_messages: cases.length, expires: 5_000 })) {
      got.push(m);
      m.ack();
      if (got.length === cases.length) break;
    }
    assert.equal(got.length, cases.length);
    for (const m of got) {
      const raw = (m as unknown as { msg: { _rdata: unknown; _msg: { hdr: unknown } } }).msg;
      assert.ok(raw._rdata instanceof Uint8Array && typeof raw._msg.hdr === "number", "this nats.js keeps the block where eventHeaders reads it");
      const expected = { id: m.headers?.get("Nats-Msg-Id") ?? "", traceparent: m.headers?.get("traceparent") ?? "" };
      assert.deepEqual(eventHeaders(m), expected, `case ${m.data[0]}`);
    }
    assert.deepEqual(eventHeaders(got[0]), { id: "6f1c2a0e-4b7d-4c8e-9a3b-2f5d6e7a8b9c", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" });
    assert.deepEqual(eventHeaders(got[1]).id, "padded-id");
  });
});
