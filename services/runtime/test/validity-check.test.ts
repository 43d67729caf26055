// The quick check answers "valid" only where protovalidate does: every message
// type of the contracts, filled with generated values around its rules' bounds
// (lengths, patterns, ranges, enums, oneofs, nested and repeated messages),
// then judged by both. And the runtime's validator refuses each exactly as
// protovalidate's default one: same fields, rule ids and messages.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, createFileRegistry, getOption, ScalarType, setExtension, toJson, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";
import { FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorProtoSchema, MessageOptionsSchema } from "@bufbuild/protobuf/wkt";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { createValidator, violationsToProto, type Validator } from "@bufbuild/protovalidate";
import { field as fieldRulesExt, message as messageRulesExt, MessageRulesSchema, ViolationsSchema, type MessageRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { SendNotificationRequestSchema } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { CreateTipRequestSchema } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { parseSubset } from "../src/regex-subset.js";
import { NATIVE_CEL, validityCheck } from "../src/validity-check.js";
import { requestValidator } from "../src/index.js";
import { contractMessages, POOL, random, sample } from "./fixtures/contracts.js";

const messages = await contractMessages();
const rnd = random(20);
const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)];

/** Numbers a field's rules name (bounds, const, in), with their neighbours. */
function ruleNumbers(f: DescField): bigint[] {
  const t = getOption(f, fieldRulesExt).type;
  const out: bigint[] = [0n, 1n, -1n, 5n, 100n, 150n, -100n, -150n, 15_000n, 15_050n];
  if (!t.case || typeof t.value !== "object") return out;
  for (const v of Object.values(t.value as Record<string, unknown>)) {
    const found = v && typeof v === "object" && "value" in v ? (v as { value: unknown }).value : v;
    for (const n of Array.isArray(found) ? found : [found]) {
      if (typeof n === "bigint" || typeof n === "number") out.push(BigInt(n) - 1n, BigInt(n), BigInt(n) + 1n);
    }
  }
  return out;
}

/** The string rules of a field, of its items, or of its map's keys (`key`) or values. */
function stringRules(f: DescField, key: boolean): Record<string, unknown> | undefined {
  const t = getOption(f, fieldRulesExt).type;
  if (t.case === "string") return t.value as never;
  if (t.case === "repeated" && t.value.items?.type.case === "string") return t.value.items.type.value as never;
  const entry = t.case === "map" ? (key ? t.value.keys : t.value.values) : undefined;
  return entry?.type.case === "string" ? (entry.type.value as never) : undefined;
}

/** Texts around a string field's rules: lengths at its bounds, its pattern's matches and misses, UUIDs, odd characters. */
function ruleTexts(f: DescField, key = false): string[] {
  const out = ["", "a", "KES", "USD", "+254712345678", "0712345678", "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "QR-7KD2-PX9A", "en", "sw"];
  const r = stringRules(f, key);
  if (!r) return out;
  for (const key of ["minLen", "maxLen", "len", "minBytes", "maxBytes"]) {
    const n = r[key];
    if (typeof n === "bigint" && n < 5000n) for (const d of [-1, 0, 1]) for (const c of ["x", "é", "\u{1F600}"]) out.push(c.repeat(Math.max(0, Number(n) + d)));
  }
  const pattern = typeof r.pattern === "string" && r.pattern ? r.pattern : undefined;
  const tree = pattern ? parseSubset(pattern) : undefined;
  if (tree) for (let i = 0; i < 4; i++) out.push(sample(tree, rnd));
  for (const key of ["in", "notIn"]) if (Array.isArray(r[key])) out.push(...(r[key] as string[]));
  if (typeof r.const === "string") out.push(r.const);
  out.push(String.fromCodePoint(pick(POOL.filter((cp) => cp < 0xd800 || cp > 0xdfff))));
  return out;
}

/** A value for one field (or one item of a list), undefined to leave it unset. */
function valueFor(f: DescField, kind: "scalar" | "enum" | "message", depth: number): unknown {
  if (kind === "message") {
    const desc = f.message!;
    return depth > 3 ? undefined : fill(desc, depth + 1).message;
  }
  if (kind === "enum") return pick([0, ...f.enum!.values.map((v) => v.number), 999]);
  const scalar = f.scalar!;
  switch (scalar) {
    case ScalarType.STRING:
      return pick(ruleTexts(f));
    case ScalarType.BOOL:
      return rnd() < 0.5;
    case ScalarType.BYTES:
      return new Uint8Array(pick([0, 1, 16, 32, 33]));
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return pick([0, 1.5, -1]);
    default: {
      const n = pick(ruleNumbers(f));
      const is64 = [ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64].includes(scalar);
      return is64 ? n : Number(n);
    }
  }
}

/** A message of `desc` with some fields set (each oneof to one member or none). */
function fill(desc: DescMessage, depth = 0): ReflectMessage {
  const msg = reflect(desc, create(desc));
  for (const f of desc.fields) {
    if (rnd() < 0.25) continue;
    if (f.oneof && msg.isSet(f) === false && desc.fields.some((g) => g !== f && g.oneof === f.oneof && msg.isSet(g))) continue;
    try {
      if (f.fieldKind === "list") {
        const n = pick([0, 1, 1, 2, 3]);
        for (let i = 0; i < n; i++) {
          const v = valueFor(f, f.listKind, depth);
          if (v !== undefined) msg.get(f).add(v as never);
        }
      } else if (f.fieldKind === "map") {
        // String keys only (the contracts' maps), around the keys' rules; a count past a small max_pairs now and then.
        if (f.mapKey !== ScalarType.STRING) continue;
        const t = getOption(f, fieldRulesExt).type;
        const maxPairs = t.case === "map" && t.value.maxPairs ? Number(t.value.maxPairs) : undefined;
        const n = pick([0, 1, 1, 2, 3, ...(maxPairs !== undefined && maxPairs < 100 ? [maxPairs + 1] : [])]);
        for (let i = 0; i < n; i++) {
          const v = valueFor(f, f.mapKind, depth);
          if (v !== undefined) msg.get(f).set(i >= 3 ? `k${"x".repeat(i % 30)}${"_".repeat(Math.floor(i / 30))}` : pick(ruleTexts(f, true)), v as never);
        }
      } else {
        const v = valueFor(f, f.fieldKind, depth);
        if (v !== undefined) msg.set(f, v as never);
      }
    } catch {
      // A value the field's type cannot hold (a negative count for a uint): leave it unset.
    }
  }
  return msg;
}

const outcome = (v: Validator, desc: DescMessage, msg: Message) => {
  const r = v.validate(desc, msg as never);
  if (r.kind === "valid") return "valid";
  if (r.kind === "error") return `error: ${r.error.message}`;
  return toJson(ViolationsSchema, violationsToProto(r.violations)[0]);
};

describe("quick validity check", () => {
  const reference = createValidator();

  test("every contract message: the quick check's 'valid' is protovalidate's, and refusals are protovalidate's own", () => {
    let quickValid = 0;
    let valid = 0;
    const typesQuick = new Set<string>();
    for (const desc of messages) {
      for (let i = 0; i < 50; i++) {
        const msg = fill(desc).message;
        const expected = outcome(reference, desc, msg);
        const quick = validityCheck(desc)(msg);
        if (expected === "valid") valid++;
        if (quick) {
          quickValid++;
          typesQuick.add(desc.typeName);
          assert.equal(expected, "valid", `${desc.typeName}: quick check passed ${JSON.stringify(toJson(desc, msg))}, protovalidate: ${JSON.stringify(expected)}`);
        }
        assert.deepEqual(outcome(requestValidator(), desc, msg), expected, desc.typeName);
      }
    }
    // The check must answer for most valid messages, or it saves nothing (and proves little here).
    assert.ok(quickValid > valid / 2, `quick check passed ${quickValid} of ${valid} valid messages`);
    assert.ok(typesQuick.size > 100, `quick check passed messages of only ${typesQuick.size} types`);
  });

  test("a valid tip request passes the quick check; breaking any one rule leaves it to protovalidate", () => {
    const ok = {
      idempotencyKey: "0b0c1e9a-9f53-4a5e-8a51-6a86d0b7a0c1",
      recipient: { case: "qrCode" as const, value: "QR-7KD2-PX9A" },
      amount: { currency: "KES", amountMinor: 15_000n },
      payment: { case: "mpesaPhone" as const, value: "+254712345678" },
      rating: 5,
      message: "asante sana",
    };
    const check = validityCheck(CreateTipRequestSchema);
    assert.equal(check(create(CreateTipRequestSchema, ok)), true);
    const broken = [
      { ...ok, idempotencyKey: "short" },
      { ...ok, recipient: { case: undefined } },
      { ...ok, recipient: { case: "workerId" as const, value: "not-a-uuid" } },
      { ...ok, amount: undefined },
      { ...ok, amount: { currency: "kes", amountMinor: 15_000n } },
      { ...ok, amount: { currency: "KES", amountMinor: 0n } },
      { ...ok, amount: { currency: "KES", amountMinor: 15_050n } },
      { ...ok, amount: { currency: "USD", amountMinor: 15_000n } },
      { ...ok, payment: { case: undefined } },
      { ...ok, payment: { case: "mpesaPhone" as const, value: "07 12" } },
      { ...ok, rating: 6 },
      { ...ok, message: "x".repeat(281) },
      { ...ok, customerEmail: "not an email" },
      { ...ok, cardProvider: 99 },
      { ...ok, customerCountry: "ke" },
    ];
    for (const b of broken) {
      const msg = create(CreateTipRequestSchema, b as never);
      assert.equal(check(msg), false, JSON.stringify(toJson(CreateTipRequestSchema, msg)));
      assert.equal(requestValidator().validate(CreateTipRequestSchema, msg).kind, "invalid");
    }
  });

  test("a valid receipt request (a map of variables, unique channels) passes the quick check; breaking any one rule leaves it to protovalidate", () => {
    const ok = {
      idempotencyKey: "receipt:0b0c1e9a-9f53-4a5e-8a51-6a86d0b7a0c1",
      recipient: { case: "phone" as const, value: "+254712345678" },
      templateKey: TemplateKey.RECEIPT,
      variables: { amount: "KES 150.00", worker: "Jane", reference: "QWE123RTY" },
      channels: [Channel.SMS],
    };
    const check = validityCheck(SendNotificationRequestSchema);
    assert.equal(check(create(SendNotificationRequestSchema, ok)), true);
    const tooMany = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`v${"x".repeat(i % 26)}${"_".repeat(Math.floor(i / 26))}`, "x"]));
    const broken = [
      { ...ok, variables: { ...ok.variables, "Not-A-Key": "x" } },
      { ...ok, variables: { ...ok.variables, "": "x" } },
      { ...ok, variables: tooMany },
      { ...ok, channels: [Channel.SMS, Channel.SMS] },
      { ...ok, channels: [Channel.SMS, 99] },
      { ...ok, recipient: { case: "phone" as const, value: "07 12" } },
    ];
    for (const b of broken) {
      const msg = create(SendNotificationRequestSchema, b as never);
      assert.equal(check(msg), false, JSON.stringify(toJson(SendNotificationRequestSchema, msg)));
      assert.equal(requestValidator().validate(SendNotificationRequestSchema, msg).kind, "invalid", JSON.stringify(toJson(SendNotificationRequestSchema, msg)));
    }
  });

  test("each native twin of a CEL rule is used by a contract message", () => {
    const used = new Set(messages.flatMap((m) => getOption(m, messageRulesExt).cel.map((r) => r.expression)));
    for (const expression of NATIVE_CEL.keys()) assert.ok(used.has(expression), expression);
  });
});

describe("quick validity check: rules no contract uses yet", () => {
  /** A message type `test.v1.Pair` with two plain strings a and b, and `rules` as its (buf.validate.message) option. */
  function pairWithRules(rules: MessageRules): DescMessage {
    const options = create(MessageOptionsSchema);
    setExtension(options, messageRulesExt, rules);
    const string = (name: string, number: number) => ({ name, number, type: FieldDescriptorProto_Type.STRING, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: name });
    const file = create(FileDescriptorProtoSchema, {
      name: "test/v1/pair.proto",
      package: "test.v1",
      syntax: "proto3",
      messageType: [{ name: "Pair", field: [string("a", 1), string("b", 2)], options }],
    });
    return createFileRegistry(file, () => undefined).getMessage("test.v1.Pair")!;
  }

  test("a message oneof rule (at most one of its fields set) is left to protovalidate, which refuses both set", () => {
    const desc = pairWithRules(create(MessageRulesSchema, { oneof: [{ fields: ["a", "b"] }] }));
    const both = create(desc, { a: "x", b: "y" } as never);
    assert.equal(createValidator().validate(desc, both).kind, "invalid", "protovalidate refuses both set");
    assert.equal(validityCheck(desc)(both), false);
    assert.equal(requestValidator().validate(desc, both).kind, "invalid");
    const one = create(desc, { a: "x" } as never);
    assert.equal(requestValidator().validate(desc, one).kind, "valid");
  });
});
