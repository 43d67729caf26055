// Random and boundary requests generated from a method's input descriptor,
// from a seeded generator so any failure can be replayed with its seed.
import { create, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)],
    chance: (p: number) => next() < p,
  };
}
export type Rng = ReturnType<typeof prng>;

const UUIDISH = ["00000000-0000-0000-0000-000000000000", "5f0c1a8e-8d0e-4c1e-9f3a-6b2d7c9e1a40", "not-a-uuid", "5f0c1a8e8d0e4c1e9f3a6b2d7c9e1a40"];
/** Strings at the edges: empty, too long, NUL and control characters, odd scripts, injection, ids, phones, codes. */
const STRINGS = [
  "",
  " ",
  "a",
  "KES",
  "kes",
  "X".repeat(129),
  "y".repeat(2049),
  "nul\u0000inside",
  "\u0000",
  "ctl\u0001\u0007\u001b[31m\u007f",
  "line\r\nbreak",
  "emoji 🎉 and 𝄞",
  "\ud800 lone surrogate",
  "'; DROP TABLE users; --",
  "../../etc/passwd",
  "<script>alert(1)</script>",
  "%00%ff",
  "254700005678",
  "+1 555 0100",
  "0798-810-913",
  "123456",
  "4826",
  "ABCD1234",
  "https://example.com/x?y=1",
  "2026-13-45T25:61:61Z",
  "-1",
  "1e309",
  ...UUIDISH,
];
const INT32 = [0, 1, -1, 2, 5, 100, 2147483647, -2147483648, 999];
const UINT32 = [0, 1, 2, 100, 4294967295];
const INT64 = [0n, 1n, -1n, 100n, 10_000n, 250_000_00n, 250_001_00n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n)];
const UINT64 = [0n, 1n, 100n, 2n ** 64n - 1n];
const DOUBLES = [0, -0, 1.5, -1, 1e308, -1e308, Number.MIN_VALUE];

function scalar(field: DescField & { fieldKind: "scalar" | "list" | "map" }, rng: Rng, kind: number): unknown {
  // ScalarType numbers (protobuf descriptor.proto): 1 double, 2 float, 3 int64, 4 uint64, 5 int32,
  // 6 fixed64, 7 fixed32, 8 bool, 9 string, 12 bytes, 13 uint32, 15 sfixed32, 16 sfixed64, 17 sint32, 18 sint64.
  switch (kind) {
    case 1:
    case 2:
      return rng.pick(DOUBLES);
    case 3:
    case 16:
    case 18:
      return rng.chance(0.2) ? BigInt(rng.int(1_000_000)) * 100n : rng.pick(INT64);
    case 4:
    case 6:
      return rng.pick(UINT64);
    case 5:
    case 15:
    case 17:
      return rng.pick(INT32);
    case 7:
    case 13:
      return rng.pick(UINT32);
    case 8:
      return rng.chance(0.5);
    case 9:
      return rng.chance(0.1) ? String.fromCharCode(...Array.from({ length: rng.int(40) }, () => rng.int(0x3000))) : rng.pick(STRINGS);
    case 12: {
      const n = rng.pick([0, 1, 16, 32, 33, 64, 5000]);
      return Uint8Array.from({ length: n }, () => rng.int(256));
    }
    default:
      void field;
      return undefined;
  }
}

function enumValue(values: readonly { number: number }[], rng: Rng): number {
  // Known values, the unspecified zero, and numbers the contract does not know.
  return rng.chance(0.7) ? rng.pick(values).number : rng.pick([0, -1, 999, 2147483647]);
}

function value(field: DescField, rng: Rng, depth: number): unknown {
  switch (field.fieldKind) {
    case "scalar":
      return scalar(field, rng, field.scalar);
    case "enum":
      return enumValue(field.enum.values, rng);
    case "message":
      return depth > 3 ? undefined : message(field.message, rng, depth + 1);
    case "list": {
      const n = rng.pick([0, 1, 2, 3, 40]);
      const items: unknown[] = [];
      for (let i = 0; i < n; i++) {
        const item =
          field.listKind === "scalar" ? scalar(field, rng, field.scalar)
          : field.listKind === "enum" ? enumValue(field.enum.values, rng)
          : depth > 3 ? undefined : message(field.message, rng, depth + 1);
        if (item !== undefined) items.push(item);
      }
      return items;
    }
    case "map": {
      const out: Record<string, unknown> = {};
      for (let i = 0, n = rng.int(3); i < n; i++) {
        const key = String(scalar(field, rng, field.mapKey) ?? i);
        const v =
          field.mapKind === "scalar" ? scalar(field, rng, field.scalar)
          : field.mapKind === "enum" ? enumValue(field.enum.values, rng)
          : depth > 3 ? undefined : message(field.message, rng, depth + 1);
        if (v !== undefined) out[key] = v;
      }
      return out;
    }
  }
}

/** A random message of `desc`: each field set or left out, oneofs given one case or none. */
export function message(desc: DescMessage, rng: Rng, depth = 0): Message {
  const init: Record<string, unknown> = {};
  const oneofsDone = new Set<string>();
  for (const field of desc.fields) {
    if (field.oneof) {
      if (oneofsDone.has(field.oneof.localName)) continue;
      oneofsDone.add(field.oneof.localName);
      if (rng.chance(0.2)) continue;
      const chosen = rng.pick(field.oneof.fields);
      const v = value(chosen, rng, depth);
      if (v !== undefined) init[field.oneof.localName] = { case: chosen.localName, value: v };
      continue;
    }
    if (rng.chance(0.25)) continue;
    const v = value(field, rng, depth);
    if (v !== undefined) init[field.localName] = v;
  }
  return create(desc, init as never);
}

/** Bytes that are not a valid message: garbage, truncated varints and lengths, deep nesting. */
export function brokenBinary(rng: Rng): Uint8Array {
  switch (rng.int(5)) {
    case 0:
      return Uint8Array.from({ length: 1 + rng.int(64) }, () => rng.int(256));
    case 1:
      return Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]); // a length far past the end
    case 2:
      return Uint8Array.from([0x08, 0x80, 0x80, 0x80]); // a varint cut short
    case 3:
      return Uint8Array.from([0x07]); // wire type 7 does not exist
    default:
      return DEEP_NESTING.slice();
  }
}

/** Levels of field 1 in DEEP_NESTING. */
const NESTED_LEVELS = 1500;

/**
 * NESTED_LEVELS levels of field 1, length-delimited, nested: deep for any recursive type. Built once,
 * each level's tag and length worked out from the inside and written from the outside: wrapping a
 * copy of the inner bytes level by level was quadratic, seconds of the fuzz file's CPU.
 */
const DEEP_NESTING: Uint8Array = (() => {
  const headers: number[][] = [];
  let length = 0;
  for (let i = 0; i < NESTED_LEVELS; i++) {
    const header = [0x0a, ...varint(length)];
    headers.push(header);
    length += header.length;
  }
  return Uint8Array.from(headers.reverse().flat());
})();

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
