// Differential test of the runtime's request validator against protovalidate's
// default one, over every request type of the contracts' services (found in the
// descriptors, not listed by hand). For each type a valid request is searched
// for (protovalidate as the oracle), then every field of it, and of the messages
// inside it, is set in turn to each value around its rules: lengths in code
// points and in bytes, Unicode, empty, integer edges, out-of-range enums,
// unset required fields, oneof members, lists and maps. The quick check may
// answer "valid" only where protovalidate does, and the runtime's answer
// (quick check, else protovalidate with RegExp patterns) must be protovalidate's:
// the same verdict and the same violations.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { clearField, clone, create, createFileRegistry, getOption, ScalarType, setExtension, toJson, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";
import { FieldDescriptorProto_Label, FieldDescriptorProto_Type, FieldOptionsSchema, FileDescriptorProtoSchema, MessageOptionsSchema } from "@bufbuild/protobuf/wkt";
import { createValidator, violationsToProto, type Validator } from "@bufbuild/protovalidate";
import { field as fieldRulesExt, FieldRulesSchema, message as messageRulesExt, MessageRulesSchema, ViolationsSchema, type FieldRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { parseSubset } from "../src/regex-subset.js";
import { validityCheck } from "../src/validity-check.js";
import { requestValidator } from "../src/index.js";
import { contractFiles, random, sample } from "./fixtures/contracts.js";

type Obj = Record<string, unknown>;
const rnd = random(2026);

const files = await contractFiles();
const requestTypes = [...new Set(files.flatMap((f) => f.services.flatMap((s) => s.methods.map((m) => m.input))))];

// Nesting the search and the mutations follow (contracts nest two or three deep; bounds the work of recursive types).
const MAX_DEPTH = 3;

const reference = createValidator();

function outcome(v: Validator, desc: DescMessage, msg: Message): unknown {
  const r = v.validate(desc, msg as never);
  if (r.kind === "valid") return "valid";
  if (r.kind === "error") return `error: ${r.error.message}`;
  return toJson(ViolationsSchema, violationsToProto(r.violations)[0]);
}

function violationCount(desc: DescMessage, msg: Message): number {
  const r = reference.validate(desc, msg as never);
  return r.kind === "valid" ? 0 : r.kind === "error" ? 1e6 : r.violations.length;
}

/** The rules of a value of the field: the field's own, or its items', keys' or values'. */
function rulesOf(f: DescField, place: "self" | "items" | "keys" | "values"): FieldRules | undefined {
  const rules = getOption(f, fieldRulesExt);
  if (place === "self") return rules;
  const t = rules.type;
  if (place === "items") return t.case === "repeated" ? t.value.items : undefined;
  return t.case === "map" ? (place === "keys" ? t.value.keys : t.value.values) : undefined;
}

/** Numbers a rules message names (bounds, const, in, lengths), each with its neighbours. */
function numbersIn(rules: FieldRules | undefined): bigint[] {
  const out: bigint[] = [];
  const t = rules?.type;
  if (!t?.case || typeof t.value !== "object") return out;
  const walk = (v: unknown) => {
    if (typeof v === "bigint" || typeof v === "number") out.push(BigInt(v) - 1n, BigInt(v), BigInt(v) + 1n);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object" && "case" in v) walk((v as unknown as { value: unknown }).value);
  };
  for (const v of Object.values(t.value as Obj)) walk(v);
  return out;
}

const NOW = BigInt(Math.floor(Date.now() / 1000));
const UUID = "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const CHARS = ["x", "é", "€", "\u{1F600}", "\ud800", "\u0301"];

/** Texts around a string's rules: every length bound in each width of character, patterns' matches and near misses, formats. */
function stringEdges(rules: FieldRules | undefined): string[] {
  const out = ["", " ", "a", "A", "0", "\0", "\n", "KES", "kes", "USD", "KE", "en", "sw", "+254712345678", "254712345678", "0712345678", "1234", "123456", "\u{1F600}", "\ud800", "\udc00a", "a\u2028", "٣٤٥٦", "１２３４"];
  out.push(UUID, UUID.toUpperCase(), `${UUID}\n`, `\n${UUID}`, UUID.slice(1), `{${UUID}}`, UUID.replaceAll("-", ""), UUID.replace("3", "٣"), UUID.replace("f", "g"));
  out.push("a@b.co", "not an email", "a@b", "https://example.com/x", "example.com", "QR-7KD2-PX9A", "x".repeat(300));
  const t = rules?.type;
  const r = (t?.case === "string" ? t.value : undefined) as Obj | undefined;
  if (!r) return out;
  for (const n of numbersIn(rules)) if (n >= 0n && n < 5000n) for (const c of CHARS) out.push(c.repeat(Number(n)));
  const pattern = typeof r.pattern === "string" && r.pattern ? r.pattern : undefined;
  const tree = pattern ? parseSubset(pattern) : undefined;
  for (let i = 0; tree && i < 6; i++) {
    const s = sample(tree, rnd);
    out.push(s, `${s}\n`, `\n${s}`, `${s}x`, `x${s}`, s.slice(1), s.slice(0, -1), s.toLowerCase(), s.toUpperCase(), `${s}\u{1F600}`, s.replace(/[0-9]/, "٣"));
  }
  for (const key of ["in", "notIn"]) if (Array.isArray(r[key])) for (const s of r[key] as string[]) out.push(s, `${s} `, s.toLowerCase());
  for (const key of ["const", "prefix", "suffix", "contains", "notContains"]) if (typeof r[key] === "string") out.push(r[key] as string, `${r[key]}x`, `x${r[key]}`);
  return out;
}

const INT_EDGES: Partial<Record<ScalarType, bigint[]>> = {
  [ScalarType.INT32]: [-(2n ** 31n), 2n ** 31n - 1n],
  [ScalarType.SINT32]: [-(2n ** 31n), 2n ** 31n - 1n],
  [ScalarType.SFIXED32]: [-(2n ** 31n), 2n ** 31n - 1n],
  [ScalarType.UINT32]: [0n, 2n ** 32n - 1n],
  [ScalarType.FIXED32]: [0n, 2n ** 32n - 1n],
  [ScalarType.INT64]: [-(2n ** 63n), 2n ** 63n - 1n],
  [ScalarType.SINT64]: [-(2n ** 63n), 2n ** 63n - 1n],
  [ScalarType.SFIXED64]: [-(2n ** 63n), 2n ** 63n - 1n],
  [ScalarType.UINT64]: [0n, 2n ** 64n - 1n],
  [ScalarType.FIXED64]: [0n, 2n ** 64n - 1n],
};
const is64 = (s: ScalarType) => [ScalarType.INT64, ScalarType.SINT64, ScalarType.SFIXED64, ScalarType.UINT64, ScalarType.FIXED64].includes(s);

/** Values of one scalar around its rules, each a value the type can hold. */
function scalarEdges(scalar: ScalarType, rules: FieldRules | undefined): unknown[] {
  switch (scalar) {
    case ScalarType.STRING:
      return stringEdges(rules);
    case ScalarType.BOOL:
      return [true, false];
    case ScalarType.BYTES:
      return [0, 1, 16, 31, 32, 33, 64, 65, ...numbersIn(rules).filter((n) => n >= 0n && n < 5000n).map(Number)].map((n) => new Uint8Array(n).fill(0xab));
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return [0, -0, 1.5, -1, NaN, Infinity, -Infinity];
    default: {
      const [lo, hi] = INT_EDGES[scalar]!;
      // Seconds around now (timestamps' rules: from before to, a range of a year at most).
      const times = [NOW - 86_400n, NOW - 3_600n, NOW, NOW + 3_600n, NOW + 86_400n];
      const all = [0n, 1n, -1n, 5n, 6n, 99n, 100n, 150n, 15_000n, 15_050n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, lo, hi, ...times, ...numbersIn(rules)];
      return [...new Set(all)].filter((n) => n >= lo && n <= hi).map((n) => (is64(scalar) ? n : Number(n)));
    }
  }
}

function enumEdges(f: DescField): number[] {
  const numbers = f.enum!.values.map((v) => v.number);
  return [...new Set([0, ...numbers, Math.max(...numbers) + 1, -1, 2 ** 31 - 1])];
}

/** A valid message of `desc` when the search finds one (protovalidate's verdict), else the closest found. */
const bases = new Map<DescMessage, Message>();
function baseOf(desc: DescMessage, depth: number): Message {
  const known = bases.get(desc);
  if (known) return known;
  let base: Message = create(desc);
  bases.set(desc, base); // a recursive type's inner copy stays empty
  if (depth > MAX_DEPTH) return base;
  let best = violationCount(desc, base);
  // Greedy: each field in turn takes the candidate with the fewest violations; three rounds, for rules across fields.
  for (let round = 0; round < 3 && best > 0; round++) {
    for (const f of desc.fields) {
      for (const v of candidates(f, depth)) {
        const trial: Message = clone(desc, base);
        assign(trial, f, v);
        const n = violationCount(desc, trial);
        if (n < best) [best, base] = [n, trial];
      }
    }
  }
  bases.set(desc, base);
  return base;
}

const UNSET = Symbol("unset");

/** Values a field can take in the search for a valid message (fewer than the mutations). */
function candidates(f: DescField, depth: number): unknown[] {
  switch (f.fieldKind) {
    case "message": {
      const inner = baseOf(f.message, depth + 1);
      return [UNSET, inner, ...(depth < MAX_DEPTH ? messageMutations(f.message, inner, depth + 1) : [])];
    }
    case "enum":
      return enumEdges(f);
    case "scalar":
      return scalarEdges(f.scalar, rulesOf(f, "self"));
    case "list":
      return [[], [itemBase(f, depth)]];
    case "map":
      return [{}];
  }
}

function itemBase(f: DescField & { fieldKind: "list" }, depth: number): unknown {
  if (f.listKind === "message") return baseOf(f.message, depth + 1);
  const edges = f.listKind === "enum" ? enumEdges(f) : scalarEdges(f.scalar, rulesOf(f, "items"));
  return edges.find((v) => v !== "" && v !== 0) ?? edges[0];
}

/** Sets (or clears) one field of a message, a oneof member as the oneof's case. */
function assign(msg: Message, f: DescField, v: unknown): void {
  if (v === UNSET) return clearField(msg, f);
  if (f.oneof) (msg as unknown as Obj)[f.oneof.localName] = { case: f.localName, value: v };
  else (msg as unknown as Obj)[f.localName] = v;
}

/** Every value a field is pushed to, around each of its rules; for a message, its own fields' mutations too. */
function mutations(f: DescField, base: Message, depth: number): unknown[] {
  switch (f.fieldKind) {
    case "scalar":
      return [UNSET, ...scalarEdges(f.scalar, rulesOf(f, "self"))];
    case "enum":
      return [UNSET, ...enumEdges(f)];
    case "message": {
      const inner = baseOf(f.message, depth + 1);
      return [UNSET, create(f.message), inner, ...(depth < MAX_DEPTH ? messageMutations(f.message, inner, depth + 1) : [])];
    }
    case "list": {
      const good = itemBase(f, depth);
      const counts = [0, 1, 2, ...numbersIn(rulesOf(f, "self")).filter((n) => n >= 0n && n < 200n).map(Number)];
      const items =
        f.listKind === "message"
          ? depth < MAX_DEPTH ? messageMutations(f.message, baseOf(f.message, depth + 1), depth + 1) : []
          : f.listKind === "enum" ? enumEdges(f) : scalarEdges(f.scalar, rulesOf(f, "items"));
      return [...counts.map((n) => Array.from({ length: n }, () => good)), ...items.map((x) => [good, x]), [good, good, good]];
    }
    case "map": {
      const keys = f.mapKey === ScalarType.STRING ? stringEdges(rulesOf(f, "keys")) : ["0", "1", "-1"];
      const values = f.mapKind === "message" ? [baseOf(f.message, depth + 1), create(f.message)] : f.mapKind === "enum" ? enumEdges(f) : scalarEdges(f.scalar, rulesOf(f, "values"));
      const maps: Obj[] = [{}];
      for (const k of keys) maps.push({ [k]: values[0] });
      for (const v of values) maps.push({ name: v });
      maps.push(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, values[0]])));
      return maps;
    }
  }
}

/** Copies of `base` with one field (or a field of a message inside it) pushed to each of its edges. */
function messageMutations(desc: DescMessage, base: Message, depth: number): Message[] {
  const out: Message[] = [];
  for (const f of desc.fields) {
    for (const v of mutations(f, base, depth)) {
      const m = clone(desc, base);
      assign(m, f, v);
      out.push(m);
    }
  }
  return out;
}

describe("request validation, differential against protovalidate", () => {
  test("the contracts' services have request types to check", () => {
    assert.ok(requestTypes.length > 100, `${requestTypes.length} request types`);
  });

  test("every request type: the quick check's 'valid' is protovalidate's, and the runtime's verdict and violations are protovalidate's", () => {
    let cases = 0;
    let quickValid = 0;
    let valid = 0;
    const noValidBase: string[] = [];
    for (const desc of requestTypes) {
      const base = baseOf(desc, 0);
      if (violationCount(desc, base) > 0) noValidBase.push(desc.typeName);
      for (const msg of [base, ...messageMutations(desc, base, 0)]) {
        cases++;
        const expected = outcome(reference, desc, msg);
        if (expected === "valid") valid++;
        const shown = () => `${desc.typeName} ${JSON.stringify(msg, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : typeof v === "string" && v.length > 80 ? `${v.slice(0, 80)}...` : v))}`;
        if (validityCheck(desc)(msg)) {
          quickValid++;
          assert.equal(expected, "valid", `quick check passed what protovalidate refuses: ${shown()}: ${JSON.stringify(expected)}`);
        }
        assert.deepEqual(outcome(requestValidator(), desc, msg), expected, shown());
      }
    }
    // The search must find valid requests for nearly every type, and the quick check must answer for
    // most of them, or this test proves little about it.
    assert.ok(noValidBase.length <= requestTypes.length / 20, `no valid request found for ${noValidBase.join(", ")}`);
    assert.ok(quickValid > valid / 2, `quick check passed ${quickValid} of ${valid} valid messages (${cases} cases)`);
    console.log(`${requestTypes.length} request types, ${cases} cases, ${valid} valid, ${quickValid} passed the quick check`);
  });
});

describe("quick validity check: field rules no contract uses yet are left to protovalidate", () => {
  /** A message type `test.v1.Holder` with one field `v` of `type` (repeated when `list`), carrying `rules`. */
  function holder(type: FieldDescriptorProto_Type, list: boolean, rules: FieldRules): DescMessage {
    const options = create(FieldOptionsSchema);
    setExtension(options, fieldRulesExt, rules);
    const label = list ? FieldDescriptorProto_Label.REPEATED : FieldDescriptorProto_Label.OPTIONAL;
    const file = create(FileDescriptorProtoSchema, {
      name: "test/v1/holder.proto",
      package: "test.v1",
      syntax: "proto3",
      messageType: [{ name: "Holder", field: [{ name: "v", number: 1, type, label, jsonName: "v", options }] }],
    });
    return createFileRegistry(file, () => undefined).getMessage("test.v1.Holder")!;
  }

  test("a list's items with a CEL expression given as text (cel_expression): protovalidate refuses an item, so must the quick check", () => {
    const rules = create(FieldRulesSchema, { type: { case: "repeated", value: { items: { celExpression: ["this.size() < 3"] } } } });
    const desc = holder(FieldDescriptorProto_Type.STRING, true, rules);
    const msg = create(desc, { v: ["ab", "abcd"] } as never);
    assert.equal(reference.validate(desc, msg).kind, "invalid", "protovalidate refuses the long item");
    assert.equal(validityCheck(desc)(msg), false);
    assert.deepEqual(outcome(requestValidator(), desc, msg), outcome(reference, desc, msg));
  });

  test("integer rules of another integer type than the field's: protovalidate's answer, not the quick check's", () => {
    const rules = create(FieldRulesSchema, { type: { case: "uint64", value: { lessThan: { case: "lt", value: 10n } } } });
    const desc = holder(FieldDescriptorProto_Type.INT32, false, rules);
    const msg = create(desc, { v: 5 } as never);
    assert.notEqual(reference.validate(desc, msg).kind, "valid", "protovalidate does not take a uint64 rule on an int32");
    assert.equal(validityCheck(desc)(msg), false);
    assert.deepEqual(outcome(requestValidator(), desc, msg), outcome(reference, desc, msg));
  });
});

describe("quick validity check: a CEL twin is used only on the shape it was written for", () => {
  test("the M-Pesa amount rule on a message whose mpesa_phone is a plain field: protovalidate refuses USD, so must the quick check", () => {
    const expression = "!has(this.mpesa_phone) || (this.amount.currency == 'KES' && this.amount.amount_minor % 100 == 0)";
    const options = create(MessageOptionsSchema);
    setExtension(options, messageRulesExt, create(MessageRulesSchema, { cel: [{ id: "mpesa", expression }] }));
    const plain = (name: string, number: number, type: FieldDescriptorProto_Type, typeName?: string) => ({ name, number, type, typeName, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: name });
    const file = create(FileDescriptorProtoSchema, {
      name: "test/v1/tip.proto",
      package: "test.v1",
      syntax: "proto3",
      messageType: [
        { name: "Money", field: [plain("currency", 1, FieldDescriptorProto_Type.STRING), plain("amount_minor", 2, FieldDescriptorProto_Type.INT64)] },
        { name: "Tip", field: [plain("amount", 1, FieldDescriptorProto_Type.MESSAGE, ".test.v1.Money"), plain("mpesa_phone", 2, FieldDescriptorProto_Type.STRING)], options },
      ],
    });
    const desc = createFileRegistry(file, () => undefined).getMessage("test.v1.Tip")!;
    const msg = create(desc, { amount: { currency: "USD", amountMinor: 150n }, mpesaPhone: "+254712345678" } as never);
    assert.equal(reference.validate(desc, msg).kind, "invalid", "protovalidate refuses USD paid by M-Pesa");
    assert.equal(validityCheck(desc)(msg), false);
    assert.deepEqual(outcome(requestValidator(), desc, msg), outcome(reference, desc, msg));
  });
});
