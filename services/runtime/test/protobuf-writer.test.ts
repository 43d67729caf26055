// The runtime's pooled protobuf writer (protobuf-writer.ts) encodes what the stock writer
// encodes, byte for byte, whatever the size and field kinds, and what it answers stays as it
// was while other messages are encoded after it. The stock writer is protobuf-es's CommonJS
// build: a module instance of its own, which the runtime does not patch.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import { create, fromBinary, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import { StructSchema, timestampFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { DeliveryUpdatedSchema, EventMetaSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { TipSchema, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { pooledProtobufWriter } from "../src/index.js";

const stock = createRequire(import.meta.url)("@bufbuild/protobuf") as { toBinary: typeof toBinary };

/** Messages of every size that matters: empty, under and over the first buffer (128 B) and a length prefix's byte (127 B), past the pool's slices (4 KiB). */
function samples(): [string, DescMessage, Message][] {
  const text = (n: number) => "é".repeat(n >> 1) + "x".repeat(n & 1);
  const list: [string, DescMessage, Message][] = [
    ["an empty message", TipSchema, create(TipSchema)],
    ["an event", DeliveryUpdatedSchema, create(DeliveryUpdatedSchema, { meta: create(EventMetaSchema, { id: "0190a3c2-1111-7222-8333-944445555668", occurredAt: timestampFromMs(1_764_600_000_123), producer: "notification" }), deliveryId: "d1", channel: "sms", status: "queued", attempt: 3 })],
    ["a tip with money and a negative int64", TipSchema, create(TipSchema, { tipId: "t1", amount: { amountMinor: -9_007_199_254_740_993n, currency: "KES" }, status: TipStatus.SUCCEEDED, rating: -1 })],
  ];
  for (const n of [60, 126, 127, 128, 129, 300, 4_090, 4_200, 70_000]) {
    list.push([`a struct with a ${n}-byte string and doubles`, StructSchema, create(StructSchema, { fields: { s: create(ValueSchema, { kind: { case: "stringValue", value: text(n) } }), d: create(ValueSchema, { kind: { case: "numberValue", value: -1.25e300 } }), n: create(ValueSchema, { kind: { case: "listValue", value: { values: [{ kind: { case: "numberValue", value: 0.1 } }] } } }) } })]);
  }
  return list;
}

describe("protobuf-es's writer with buffers from node's pool", () => {
  test("is installed with the protobuf-es this repository pins (a version whose writer differs leaves the stock one)", () => {
    assert.equal(pooledProtobufWriter, true);
  });

  test("encodes every sample byte for byte as the stock writer, and the bytes decode to the message", () => {
    for (const [name, schema, message] of samples()) {
      const bytes = toBinary(schema, message);
      assert.deepEqual(Buffer.from(bytes), Buffer.from(stock.toBinary(schema, message)), name);
      assert.ok(!Buffer.isBuffer(bytes) && bytes instanceof Uint8Array, `${name}: a plain Uint8Array, as before`);
      assert.deepEqual(toBinary(schema, fromBinary(schema, bytes)), bytes, name);
    }
  });

  test("what it answered is not overwritten by the messages encoded after it", () => {
    const kept = samples().map(([name, schema, message]) => ({ name, bytes: toBinary(schema, message), copy: Buffer.from(stock.toBinary(schema, message)) }));
    for (let i = 0; i < 200; i++) for (const [, schema, message] of samples()) toBinary(schema, message);
    for (const k of kept) assert.deepEqual(Buffer.from(k.bytes), k.copy, k.name);
  });
});
