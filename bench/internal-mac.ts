// The internal hop's signature (runtime internal-auth.ts) is computed twice
// per internal call (signed by the caller, verified by the service). This
// bench prices the ways to compute the same HMAC-SHA256 over the same message
// shape (the signed identity headers, ~100 bytes), as CPU microseconds per MAC
// of this process, and as a ratio to createHmac with a Buffer key (the
// yardstick, run in the same process, alternating each round):
//   createHmac(Buffer)     what every call did: the key's type checks, then hashing
//   createHmac(KeyObject)  the key made once
//   hash.copy() x2         the keyed inner/outer SHA-256 states made once, copied per message
//   crypto.hash x2         one-shot hashes over (key^ipad | message), then (key^opad | inner)
//   hmacSha256 (runtime)   what internal-auth.ts ships (a KeyObject made once per key Buffer)
//   node --import tsx bench/internal-mac.ts [ms per variant and round=300] [rounds=5]
import { createHash, createHmac, createSecretKey, hash as oneShotHash, randomBytes } from "node:crypto";
import { hmacSha256 } from "@ttip/runtime";
import { cpuMicrosPerCall } from "./process-cpu.js";

const msPerVariant = Number(process.argv[2] ?? 300);
const rounds = Number(process.argv[3] ?? 5);

const key = randomBytes(32);
const keyObject = createSecretKey(key);
const at = String(Math.floor(Date.now() / 1000));
const fields = ["9b2f6c1e-2d3a-4e5f-8a9b-0c1d2e3f4a5b", "worker,customer", "s-7f3e2d1c0b9a", "203.0.113.42"];
const message = `v1\n${at}\n${fields.join("\n")}`;

const BLOCK = 64;
const pad = (byte: number) => {
  const p = Buffer.alloc(BLOCK, byte);
  for (let i = 0; i < key.length; i++) p[i] ^= key[i];
  return p;
};
const ipad = pad(0x36);
const opad = pad(0x5c);
const inner = createHash("sha256").update(ipad);
const outer = createHash("sha256").update(opad);

const variants: Record<string, () => Buffer> = {
  "createHmac(Buffer)": () => createHmac("sha256", key).update(message).digest(),
  "createHmac(KeyObject)": () => createHmac("sha256", keyObject).update(message).digest(),
  "hash.copy() x2": () => outer.copy().update(inner.copy().update(message).digest()).digest(),
  "crypto.hash x2": () => {
    const first = Buffer.allocUnsafe(BLOCK + Buffer.byteLength(message));
    ipad.copy(first);
    first.write(message, BLOCK);
    const second = Buffer.allocUnsafe(BLOCK + 32);
    opad.copy(second);
    (oneShotHash("sha256", first, "buffer") as Buffer).copy(second, BLOCK);
    return oneShotHash("sha256", second, "buffer") as Buffer;
  },
  "hmacSha256 (runtime)": () => hmacSha256(key, message),
};

// Every variant must give the yardstick's bytes, or its price means nothing.
const expected = variants["createHmac(Buffer)"]();
for (const [name, f] of Object.entries(variants)) {
  if (!f().equals(expected)) throw new Error(`${name} computes a different MAC`);
}

const totals = new Map<string, number[]>();
for (const f of Object.values(variants)) cpuMicrosPerCall(f, msPerVariant); // warm up
for (let r = 0; r < rounds; r++) {
  for (const [name, f] of Object.entries(variants)) {
    const list = totals.get(name) ?? [];
    list.push(cpuMicrosPerCall(f, msPerVariant));
    totals.set(name, list);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const yardstick = median(totals.get("createHmac(Buffer)")!);
console.log(`node ${process.version}, message ${Buffer.byteLength(message)} bytes, ${rounds} rounds of ${msPerVariant} ms, median CPU per MAC`);
for (const [name, xs] of totals) {
  const us = median(xs);
  console.log(`  ${name.padEnd(22)} ${us.toFixed(2).padStart(6)} µs  ratio to createHmac(Buffer) ${(us / yardstick).toFixed(2)}`);
}
