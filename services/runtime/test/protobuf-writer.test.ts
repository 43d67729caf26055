// The runtime's pooled protobuf writer (protobuf-writer.ts) encodes what the stock writer
// encodes, byte for byte, whatever the size and field kinds, and what it answers stays as it
// was while other messages are encoded after it. The stock writer is protobuf-es's CommonJS
// build: a module instance of its own, which the runtime does not patch.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import { create, createFileRegistry, fromBinary, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import { FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorProtoSchema, StructSchema, timestampFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
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

/**
 * A message of every field shape protobuf-es writes (each scalar singular, packed and unpacked,
 * enums with an open value, a nested message, a map of messages, a oneof, the largest field number),
 * made from a descriptor here: the repository's own messages use few of them.
 */
function everyShape(): DescMessage {
  const { DOUBLE, FLOAT, INT64, UINT64, INT32, FIXED64, FIXED32, BOOL, STRING, BYTES, UINT32, SFIXED32, SFIXED64, SINT32, SINT64, ENUM, MESSAGE } = FieldDescriptorProto_Type;
  const { OPTIONAL, REPEATED } = FieldDescriptorProto_Label;
  const scalars = { d: DOUBLE, f: FLOAT, i64: INT64, u64: UINT64, i32: INT32, x64: FIXED64, x32: FIXED32, b: BOOL, s: STRING, by: BYTES, u32: UINT32, sx32: SFIXED32, sx64: SFIXED64, z32: SINT32, z64: SINT64, e: ENUM };
  const field: object[] = [];
  let number = 1;
  for (const [name, type] of Object.entries(scalars)) {
    const typeName = type === ENUM ? ".shapes.E" : undefined;
    field.push({ name, number: number++, type, typeName, label: OPTIONAL }, { name: `r${name}`, number: number++, type, typeName, label: REPEATED });
    if (type !== STRING && type !== BYTES) field.push({ name: `u${name}`, number: number++, type, typeName, label: REPEATED, options: { packed: false } });
  }
  field.push(
    { name: "child", number: number++, type: MESSAGE, typeName: ".shapes.M", label: OPTIONAL },
    { name: "kids", number: number++, type: MESSAGE, typeName: ".shapes.M", label: REPEATED },
    { name: "map", number: number++, type: MESSAGE, typeName: ".shapes.M.MapEntry", label: REPEATED },
    { name: "os", number: number++, type: STRING, label: OPTIONAL, oneofIndex: 0 },
    { name: "om", number: number++, type: MESSAGE, typeName: ".shapes.M", label: OPTIONAL, oneofIndex: 0 },
    { name: "last", number: 536_870_911, type: INT32, label: OPTIONAL },
  );
  const entry = { name: "MapEntry", options: { mapEntry: true }, field: [{ name: "key", number: 1, type: STRING, label: OPTIONAL }, { name: "value", number: 2, type: MESSAGE, typeName: ".shapes.M", label: OPTIONAL }] };
  const file = create(FileDescriptorProtoSchema, {
    name: "shapes.proto",
    package: "shapes",
    syntax: "proto3",
    enumType: [{ name: "E", value: [{ name: "E0", number: 0 }, { name: "E1", number: 1 }, { name: "EN", number: -5 }] }],
    messageType: [{ name: "M", field, oneofDecl: [{ name: "o" }], nestedType: [entry] }],
  } as never);
  return createFileRegistry(file, () => undefined).getMessage("shapes.M")!;
}

/** Values at the edges of each shape: zero (a default, not written), extremes, lone surrogates, long text. */
function shapeValues(seed: number): (name: string) => unknown {
  let state = seed;
  const pick = <T>(xs: readonly T[]): T => xs[(state = (state * 1_103_515_245 + 12_345) % 2_147_483_648) % xs.length];
  const text = () => pick(["", "a", "é€😀", "\ud800x", "\u0000", "x".repeat(32), "é".repeat(33), "€".repeat(127), "a".repeat(128), "😀".repeat(2_100)]);
  const values: Record<string, () => unknown> = {
    d: () => pick([0, -0, 1.5, Number.NaN, Infinity, -1e300, 5e-324]),
    f: () => pick([0, 1.5, -3.25, 3.4028234663852886e38]),
    i64: () => pick([0n, -1n, 127n, 128n, -(2n ** 63n), 2n ** 63n - 1n]),
    u64: () => pick([0n, 1n, 128n, 2n ** 32n, 2n ** 64n - 1n]),
    i32: () => pick([0, -1, 300, 2_147_483_647, -2_147_483_648]),
    u32: () => pick([0, 1, 128, 4_294_967_295]),
    b: () => pick([false, true]),
    s: text,
    by: () => Uint8Array.from({ length: pick([0, 1, 200, 5_000]) }, (_, i) => (i * 31 + seed) & 0xff),
    e: () => pick([0, 1, -5, 7]),
  };
  const alias: Record<string, string> = { x64: "u64", x32: "u32", sx32: "i32", sx64: "i64", z32: "i32", z64: "i64" };
  return (name) => {
    if (name === "count") return pick([0, 1, 3, 40]);
    return values[alias[name] ?? name]();
  };
}

function shapeMessage(schema: DescMessage, value: (name: string) => unknown, depth: number): Message {
  const init: Record<string, unknown> = {};
  for (const name of ["d", "f", "i64", "u64", "i32", "x64", "x32", "b", "s", "by", "u32", "sx32", "sx64", "z32", "z64", "e"]) {
    init[name] = value(name);
    init[`r${name}`] = Array.from({ length: value("count") as number }, () => value(name));
    if (name !== "s" && name !== "by") init[`u${name}`] = Array.from({ length: value("count") as number }, () => value(name));
  }
  if (depth < 2) {
    init.child = shapeMessage(schema, value, depth + 1);
    init.kids = [shapeMessage(schema, value, depth + 1), create(schema)];
    init.map = { [value("s") as string]: shapeMessage(schema, value, depth + 1), "": create(schema) };
    init.o = depth % 2 ? { case: "os", value: value("s") } : { case: "om", value: shapeMessage(schema, value, depth + 1) };
  }
  init.last = 7;
  const message = create(schema, init as never) as Message & { $unknown?: unknown };
  // Fields this schema does not know, as a newer sender's: written back as they came.
  message.$unknown = [
    { no: 1_000, wireType: 2, data: new Uint8Array([3, 1, 2, 3]) },
    { no: 1_001, wireType: 0, data: new Uint8Array([0x80, 0x80, 0x01]) },
  ];
  return message;
}

test("encodes every field shape (scalars singular, packed and not, maps, oneofs, unknown fields, defaults, 64-bit extremes, any UTF-16) as the stock writer", () => {
  const schema = everyShape();
  for (let seed = 1; seed <= 40; seed++) {
    const message = shapeMessage(schema, shapeValues(seed), 0);
    const bytes = toBinary(schema, message);
    assert.deepEqual(Buffer.from(bytes), Buffer.from(stock.toBinary(schema, message)), `seed ${seed}`);
    assert.deepEqual(toBinary(schema, fromBinary(schema, bytes)), bytes, `seed ${seed}: decodes to the same message`);
  }
});
