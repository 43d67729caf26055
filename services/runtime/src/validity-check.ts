// A quick, sure answer to "does this request keep every rule of its contract?"
// built once per message type from the same protovalidate rules. It answers
// true only when each rule that applies is known here and holds; for anything
// else (a broken rule, a rule kind not listed here, a CEL expression without a
// native twin below) it answers false and protovalidate decides and names the
// violations, so every refusal is still protovalidate's own (validation.ts).
// Most calls are valid, and protovalidate's generic walk (CEL, field paths,
// reflection) costs several times what these closures do.
import { getOption, isFieldSet, ScalarType, type DescEnum, type DescField, type DescMessage, type DescOneof, type Message } from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import {
  field as fieldRulesExt,
  FieldRulesSchema,
  MessageRulesSchema,
  Ignore,
  message as messageRulesExt,
  oneof as oneofRulesExt,
  type FieldRules,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { patternMatch } from "./pattern-match.js";
import { isUuid } from "./uuid.js";

/** True when the value certainly keeps the rules; false: ask protovalidate. */
type Check = (value: unknown) => boolean;
type MessageCheck = (msg: Message) => boolean;
const unsure: Check = () => false;
/** A field with nothing to check. */
const noRules: MessageCheck = () => true;
const sure: Check = () => true;

/**
 * CEL rules of the contracts' messages, each with the same test in TypeScript
 * (keyed by its exact expression). validity-check.test.ts checks each against
 * CEL on generated messages; an expression not here leaves its message to protovalidate.
 * A twin reads the message's fields by their generated names, so it is used only on a
 * message whose shape it was written for (`fits`): the same text on another shape (an
 * `amount` in a oneof, an `mpesa_phone` outside the `payment` oneof) would read nothing
 * and pass what CEL refuses.
 */
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const amountMinor = (m: Obj | undefined): bigint => BigInt(m?.amountMinor ?? 0n);
const currency = (m: Obj | undefined): string => m?.currency ?? "";
interface CelTwin {
  fits: (schema: DescMessage) => boolean;
  test: (m: Obj) => boolean;
}
export const NATIVE_CEL = new Map<string, CelTwin>([
  ["this.amount.amount_minor > 0", { fits: hasMoney, test: (m) => amountMinor(m.amount) > 0n }],
  [
    "!has(this.mpesa_phone) || (this.amount.currency == 'KES' && this.amount.amount_minor % 100 == 0)",
    {
      fits: (s) => hasMoney(s) && s.field.mpesaPhone?.oneof?.localName === "payment",
      test: (m) => m.payment?.case !== "mpesaPhone" || (currency(m.amount) === "KES" && amountMinor(m.amount) % 100n === 0n),
    },
  ],
  [
    "this.amount.amount_minor > 0 && this.amount.currency == 'KES' && this.amount.amount_minor % 100 == 0",
    { fits: hasMoney, test: (m) => amountMinor(m.amount) > 0n && currency(m.amount) === "KES" && amountMinor(m.amount) % 100n === 0n },
  ],
]);

/** Whether `amount` is a plain (not oneof) message field with an int64 `amount_minor` and a string `currency`, as the twins read it. */
function hasMoney(schema: DescMessage): boolean {
  const amount = schema.field.amount;
  if (amount?.fieldKind !== "message" || amount.oneof) return false;
  const { amountMinor: minor, currency: code } = amount.message.field;
  return minor?.fieldKind === "scalar" && minor.scalar === ScalarType.INT64 && !minor.oneof && code?.fieldKind === "scalar" && code.scalar === ScalarType.STRING && !code.oneof;
}

const cache = new Map<DescMessage, MessageCheck>();

/** The message type's quick check (built on first use, then kept: one per type the process validates). */
export function validityCheck(schema: DescMessage): MessageCheck {
  let check = cache.get(schema);
  if (check === undefined) {
    // A placeholder first: a type that contains itself refers to its own check.
    let built: MessageCheck = () => false;
    cache.set(schema, (msg) => built(msg));
    built = buildMessageCheck(schema, (msg) => built(msg));
    check = built;
    cache.set(schema, check);
  }
  return check;
}

function buildMessageCheck(schema: DescMessage, self: MessageCheck): MessageCheck {
  const rules = getOption(schema, messageRulesExt);
  const checks: MessageCheck[] = [];
  for (const f of schema.fields) {
    const c = fieldCheck(f, schema === f.message ? self : undefined);
    // A field with no rules and no message inside is left out of the loop over checks.
    if (c !== noRules) checks.push(c);
  }
  // Only CEL rules are judged here; a message oneof rule (at most one of some fields) is protovalidate's.
  if (rules.$unknown?.length || otherSetFields(rules, ["cel"])) return () => false;
  for (const rule of rules.cel) {
    const twin = NATIVE_CEL.get(rule.expression);
    checks.push(twin?.fits(schema) ? (m) => twin.test(m as Obj) : () => false);
  }
  for (const o of schema.oneofs) if (getOption(o, oneofRulesExt).required) checks.push(oneofSet(o));
  return (msg) => {
    for (const c of checks) if (!c(msg)) return false;
    return true;
  };
}

/** Whether MessageRules sets anything but `known` (a message oneof rule, CEL given by expression only: protovalidate's). */
function otherSetFields(rules: Message, known: string[]): boolean {
  return MessageRulesSchema.fields.some((rf) => !known.includes(rf.localName) && isFieldSet(rules, rf));
}

function oneofSet(o: DescOneof): MessageCheck {
  return (msg) => (msg as Obj)[o.localName]?.case !== undefined;
}

/** A field's value in a message, undefined when a oneof member is not the set case. */
function valueOf(msg: Obj, f: DescField): unknown {
  if (f.oneof) {
    const o = msg[f.oneof.localName];
    return o?.case === f.localName ? o.value : undefined;
  }
  return msg[f.localName];
}

function fieldCheck(f: DescField, self: MessageCheck | undefined): MessageCheck {
  const rules = getOption(f, fieldRulesExt);
  if (rules.ignore === Ignore.ALWAYS) return () => true;
  if (rules.ignore !== Ignore.UNSPECIFIED && rules.ignore !== Ignore.IF_ZERO_VALUE) return () => false;
  if (rules.cel.length || rules.$unknown?.length || hasOtherFieldRules(rules)) return () => false;
  if (!rules.required && rules.type.case === undefined && holdsNoMessage(f)) return noRules;
  const skipWhenUnset =
    rules.ignore === Ignore.IF_ZERO_VALUE || f.fieldKind === "message" || f.oneof !== undefined || ((f.fieldKind === "scalar" || f.fieldKind === "enum") && f.presence !== FeatureSet_FieldPresence.IMPLICIT);
  const value = valueCheck(f, rules, self);
  const required = rules.required;
  return (msg) => {
    const set = isFieldSet(msg, f);
    if (!set) {
      if (required) return false;
      if (skipWhenUnset) return true;
    }
    return value(valueOf(msg as Obj, f));
  };
}

/** A scalar or enum field, or a list or map of them: nothing inside with rules of its own. */
function holdsNoMessage(f: DescField): boolean {
  if (f.fieldKind === "list") return f.listKind !== "message";
  if (f.fieldKind === "map") return f.mapKind !== "message";
  return f.fieldKind !== "message";
}

/** FieldRules set beyond required, ignore, cel and the type's rules (cel_expression, or any added later): protovalidate's. */
function hasOtherFieldRules(rules: FieldRules): boolean {
  const known = new Set(["required", "ignore", "cel", "type"]);
  return FieldRulesSchema.fields.some((rf) => !known.has(rf.oneof ? rf.oneof.localName : rf.localName) && isFieldSet(rules, rf));
}

/** The check of one value of the field (its items or entries for a list or map). */
function valueCheck(f: DescField, rules: FieldRules | undefined, self: MessageCheck | undefined): Check {
  switch (f.fieldKind) {
    case "scalar":
      return scalarCheck(f.scalar, rules);
    case "enum":
      return enumCheck(f.enum.values.map((v) => v.number), rules);
    case "message":
      return messageValueCheck(f.message, rules, self);
    case "list":
      return listCheck(f, rules, self);
    case "map":
      return mapCheck(f, rules);
  }
}

function messageValueCheck(desc: DescMessage, rules: FieldRules | undefined, self: MessageCheck | undefined): Check {
  if (rules?.type.case !== undefined) return unsure;
  if (desc.typeName.startsWith("google.protobuf.")) return hasRulesInside(desc) ? unsure : sure;
  const inner = self ?? validityCheck(desc);
  return (v) => inner(v as Message);
}

/** Whether a well-known type carries rules of its own (none do; kept honest rather than assumed). */
function hasRulesInside(desc: DescMessage): boolean {
  return desc.fields.some((f) => getOption(f, fieldRulesExt).type.case !== undefined) || getOption(desc, messageRulesExt).cel.length > 0;
}

function listCheck(f: DescField & { fieldKind: "list" }, rules: FieldRules | undefined, self: MessageCheck | undefined): Check {
  const t = rules?.type;
  if (t?.case !== undefined && t.case !== "repeated") return unsure;
  const r = t?.value;
  if (r && (r.$unknown?.length || !onlyKnown(r, ["minItems", "maxItems", "items", "unique"]))) return unsure;
  const min = r && isFieldSet(r, fieldOf(r, "minItems")) ? Number(r.minItems) : 0;
  const max = r && isFieldSet(r, fieldOf(r, "maxItems")) ? Number(r.maxItems) : Infinity;
  // Unique items by value: strings, integers (a bigint by its value too), bools and enums; floats (NaN) and bytes are protovalidate's.
  const unique = !!r?.unique;
  if (unique && (f.listKind === "message" || (f.listKind === "scalar" && !UNIQUE_BY_VALUE.has(f.scalar)))) return unsure;
  const item = itemCheck(kindOf(f.listKind, f), r?.items, self);
  return (v) => {
    const list = v as unknown[];
    if (list.length < min || list.length > max) return false;
    if (unique && new Set(list).size !== list.length) return false;
    for (const x of list) if (!item(x)) return false;
    return true;
  };
}

/** Scalar types whose equal values are one in a Set (SameValueZero), as protovalidate's `unique` compares them. */
const UNIQUE_BY_VALUE = new Set<ScalarType>([
  ScalarType.STRING, ScalarType.BOOL, ScalarType.INT32, ScalarType.INT64, ScalarType.UINT32, ScalarType.UINT64, ScalarType.SINT32,
  ScalarType.SINT64, ScalarType.FIXED32, ScalarType.FIXED64, ScalarType.SFIXED32, ScalarType.SFIXED64,
]);

/** What a list's item or a map's value is. */
type ItemKind = { kind: "scalar"; scalar: ScalarType } | { kind: "enum"; desc: DescEnum } | { kind: "message"; desc: DescMessage };

function kindOf(kind: "scalar" | "enum" | "message", f: { scalar?: ScalarType; enum?: DescEnum; message?: DescMessage }): ItemKind {
  if (kind === "scalar") return { kind, scalar: f.scalar! };
  if (kind === "enum") return { kind, desc: f.enum! };
  return { kind, desc: f.message! };
}

/** The check of one item of a list, or one key or value of a map, under its own FieldRules (`items`, `keys`, `values`). */
function itemCheck(kind: ItemKind, rules: FieldRules | undefined, self: MessageCheck | undefined): Check {
  // An item's own CEL (cel or cel_expression) or any rule but its type's is protovalidate's.
  if (rules && (rules.cel.length || rules.required || rules.$unknown?.length || hasOtherFieldRules(rules) || (rules.ignore !== Ignore.UNSPECIFIED && rules.ignore !== Ignore.ALWAYS))) return unsure;
  if (rules?.ignore === Ignore.ALWAYS) return sure;
  if (kind.kind === "scalar") return scalarCheck(kind.scalar, rules);
  if (kind.kind === "enum") return enumCheck(kind.desc.values.map((v) => v.number), rules);
  return messageValueCheck(kind.desc, rules, self);
}

/**
 * A map's entries: their count, each key by its rules (string keys only: a JS object holds
 * any other kind's as text) and each value by its own.
 */
function mapCheck(f: DescField & { fieldKind: "map" }, rules: FieldRules | undefined): Check {
  const t = rules?.type;
  if (t?.case !== undefined && t.case !== "map") return unsure;
  const r = t?.value;
  // No rules and values without rules of their own: nothing to check.
  if (!r && f.mapKind !== "message") return sure;
  if (r && (r.$unknown?.length || !onlyKnown(r, ["minPairs", "maxPairs", "keys", "values"]))) return unsure;
  if (r?.keys && f.mapKey !== ScalarType.STRING) return unsure;
  const min = r && isFieldSet(r, fieldOf(r, "minPairs")) ? Number(r.minPairs) : 0;
  const max = r && isFieldSet(r, fieldOf(r, "maxPairs")) ? Number(r.maxPairs) : Infinity;
  const key = r?.keys ? itemCheck({ kind: "scalar", scalar: ScalarType.STRING }, r.keys, undefined) : sure;
  const value = itemCheck(kindOf(f.mapKind, f), r?.values, undefined);
  return (v) => {
    const entries = v as Obj;
    let n = 0;
    for (const k in entries) {
      n++;
      if (!key(k) || !value(entries[k])) return false;
    }
    return n >= min && n <= max;
  };
}

/** The rules message's field named `localName` (for presence, which the TS types do not carry). */
function fieldOf(rules: Message, localName: string): DescField {
  const desc = FieldRulesSchema.fields.find((rf) => rf.message?.typeName === rules.$typeName)?.message;
  const found = desc?.fields.find((rf) => rf.localName === localName);
  if (!found) throw new Error(`${rules.$typeName} has no field ${localName}`);
  return found;
}

/** The names of a rules message's fields that are set (oneof members by their own name). */
function setRuleNames(rules: Message): string[] {
  const desc = FieldRulesSchema.fields.find((rf) => rf.message?.typeName === rules.$typeName)?.message;
  if (!desc) return ["?"];
  return desc.fields.filter((rf) => isFieldSet(rules, rf)).map((rf) => rf.localName);
}

function ruleValue(rules: Obj, name: string): unknown {
  if (name in rules) return rules[name];
  for (const v of Object.values(rules)) if (v && typeof v === "object" && "case" in v && v.case === name) return v.value;
  return undefined;
}

function scalarCheck(scalar: ScalarType, rules: FieldRules | undefined): Check {
  const t = rules?.type;
  if (t?.case === undefined) return sure;
  if (t.value.$unknown?.length) return unsure;
  if (t.case === "string" && scalar === ScalarType.STRING) return stringCheck(t.value as Obj);
  if (t.case === "bool" && scalar === ScalarType.BOOL) return boolCheck(t.value as Obj);
  if (t.case === "bytes" && scalar === ScalarType.BYTES) return bytesCheck(t.value as Obj);
  // Rules of another integer type than the field's (uint64 on an int32) are a contract protovalidate refuses to run.
  if (INTEGER_RULES.get(t.case) === scalar) return integerCheck(t.value as Obj);
  return unsure;
}

/** Each integer rules kind with the one scalar type it applies to. */
const INTEGER_RULES = new Map<string, ScalarType>([
  ["int32", ScalarType.INT32],
  ["int64", ScalarType.INT64],
  ["uint32", ScalarType.UINT32],
  ["uint64", ScalarType.UINT64],
  ["sint32", ScalarType.SINT32],
  ["sint64", ScalarType.SINT64],
  ["fixed32", ScalarType.FIXED32],
  ["fixed64", ScalarType.FIXED64],
  ["sfixed32", ScalarType.SFIXED32],
  ["sfixed64", ScalarType.SFIXED64],
]);

/** Every set rule must be one of `known`, else the whole value is left to protovalidate. */
function onlyKnown(rules: Message, known: readonly string[]): boolean {
  return setRuleNames(rules).every((n) => known.includes(n));
}

const STRING_RULES = ["const", "len", "minLen", "maxLen", "lenBytes", "minBytes", "maxBytes", "pattern", "prefix", "suffix", "contains", "notContains", "in", "notIn", "uuid", "tuuid"] as const;
const TUUID = /^[0-9a-fA-F]{32}$/;

function stringCheck(r: Obj): Check {
  if (!onlyKnown(r as Message, STRING_RULES)) return unsure;
  const set = new Set(setRuleNames(r as Message));
  // The rules' values are read once here, not per call.
  const rule = <T>(n: string) => (set.has(n) ? (ruleValue(r, n) as T) : undefined);
  const tests: ((s: string) => boolean)[] = [];
  const lengths = lengthTest(rule<bigint>("len"), rule<bigint>("minLen"), rule<bigint>("maxLen"), codePoints);
  const bytes = lengthTest(rule<bigint>("lenBytes"), rule<bigint>("minBytes"), rule<bigint>("maxBytes"), utf8Length);
  if (lengths) tests.push(lengths);
  if (bytes) tests.push(bytes);
  const exact = rule<string>("const");
  if (exact !== undefined) tests.push((s) => s === exact);
  const pattern = rule<string>("pattern");
  // A pattern RE2 refuses is protovalidate's to report (it probes each pattern as it plans, as here).
  if (pattern !== undefined && !compiles(pattern)) return unsure;
  if (pattern !== undefined) tests.push((s) => patternMatch(pattern, s));
  const prefix = rule<string>("prefix");
  if (prefix !== undefined) tests.push((s) => s.startsWith(prefix));
  const suffix = rule<string>("suffix");
  if (suffix !== undefined) tests.push((s) => s.endsWith(suffix));
  const contains = rule<string>("contains");
  if (contains !== undefined) tests.push((s) => s.includes(contains));
  const notContains = rule<string>("notContains");
  if (notContains !== undefined) tests.push((s) => !s.includes(notContains));
  const within = rule<string[]>("in");
  if (within?.length) tests.push((s) => within.includes(s));
  const without = rule<string[]>("notIn");
  if (without?.length) tests.push((s) => !without.includes(s));
  const uuid = rule<boolean>("uuid");
  const tuuid = rule<boolean>("tuuid");
  if (uuid === false || tuuid === false) return unsure;
  if (uuid) tests.push(isUuid);
  if (tuuid) tests.push((s) => TUUID.test(s));
  return (x) => {
    if (typeof x !== "string") return false;
    for (const t of tests) if (!t(x)) return false;
    return true;
  };
}

function compiles(pattern: string): boolean {
  try {
    patternMatch(pattern, "");
    return true;
  } catch {
    return false;
  }
}

/** A length's rules (each as protovalidate checks it), undefined when none is set. */
function lengthTest(len: bigint | undefined, min: bigint | undefined, max: bigint | undefined, measure: (s: string) => number): ((s: string) => boolean) | undefined {
  if (len === undefined && min === undefined && max === undefined) return undefined;
  const exact = len === undefined ? undefined : Number(len);
  const lo = min === undefined ? 0 : Number(min);
  const hi = max === undefined ? Infinity : Number(max);
  return (s) => {
    const n = measure(s);
    return (exact === undefined || n === exact) && n >= lo && n <= hi;
  };
}

function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++, n++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) i++;
    }
  }
  return n;
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

function boolCheck(r: Obj): Check {
  if (!onlyKnown(r as Message, ["const"])) return unsure;
  if (!setRuleNames(r as Message).length) return sure;
  return (x) => x === r.const;
}

function bytesCheck(r: Obj): Check {
  if (!onlyKnown(r as Message, ["len", "minLen", "maxLen"])) return unsure;
  const set = new Set(setRuleNames(r as Message));
  return (x) => {
    const n = (x as Uint8Array).length;
    if (set.has("len") && n !== Number(r.len)) return false;
    if (set.has("minLen") && n < Number(r.minLen)) return false;
    if (set.has("maxLen") && n > Number(r.maxLen)) return false;
    return true;
  };
}

function integerCheck(r: Obj): Check {
  if (!onlyKnown(r as Message, ["const", "lt", "lte", "gt", "gte", "in", "notIn"])) return unsure;
  type Int = number | bigint;
  const upper = r.lessThan?.case as "lt" | "lte" | undefined;
  const lower = r.greaterThan?.case as "gt" | "gte" | undefined;
  const hi = r.lessThan?.value as Int | undefined;
  const lo = r.greaterThan?.value as Int | undefined;
  // Both bounds with the lower above the upper mean "outside the range" in protovalidate: not here.
  if (hi !== undefined && lo !== undefined && lo >= hi) return unsure;
  const exact = setRuleNames(r as Message).includes("const") ? (r.const as Int) : undefined;
  const within = r.in as Int[];
  const without = r.notIn as Int[];
  // Relational operators and == compare a number with a bigint exactly, so int32 fields'
  // numbers and int64 fields' bigints need no conversion.
  return (x) => {
    if (typeof x !== "number" && typeof x !== "bigint") return false;
    if (exact !== undefined && !(x == exact)) return false; // eslint-disable-line eqeqeq
    if (upper === "lt" && !(x < hi!)) return false;
    if (upper === "lte" && !(x <= hi!)) return false;
    if (lower === "gt" && !(x > lo!)) return false;
    if (lower === "gte" && !(x >= lo!)) return false;
    if (within.length && !within.some((w) => w == x)) return false; // eslint-disable-line eqeqeq
    if (without.some((w) => w == x)) return false; // eslint-disable-line eqeqeq
    return true;
  };
}

function enumCheck(defined: number[], rules: FieldRules | undefined): Check {
  const t = rules?.type;
  if (t?.case === undefined) return sure;
  if (t.case !== "enum" || t.value.$unknown?.length || !onlyKnown(t.value, ["const", "definedOnly", "in", "notIn"])) return unsure;
  const r = t.value;
  const names = setRuleNames(r);
  const known = new Set(defined);
  return (x) => {
    const n = x as number;
    if (names.includes("const") && n !== r.const) return false;
    if (r.definedOnly && !known.has(n)) return false;
    if (r.in.length && !r.in.includes(n)) return false;
    if (r.notIn.includes(n)) return false;
    return true;
  };
}
