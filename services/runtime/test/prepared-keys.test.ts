import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, randomBytes, randomInt, sign, verify } from "node:crypto";
import { test } from "node:test";
import { hmac, hmacSha256, secretKeyOf, spkiPublicKeyOf } from "../src/prepared-keys.js";

// Any UTF-16 text but lone surrogates (header values are ASCII; the MAC must hold for all text).
function randomText(length: number): string {
  let s = "";
  for (let i = 0; i < length; i++) {
    const r = randomInt(4);
    s += r === 0 ? String.fromCodePoint(randomInt(0x20, 0x7f)) : r === 1 ? String.fromCodePoint(randomInt(0x80, 0xd800)) : r === 2 ? String.fromCodePoint(randomInt(0x10000, 0x10ffff)) : "\n";
  }
  return s;
}

const flipOneBit = (b: Buffer) => {
  const c = Buffer.from(b);
  c[randomInt(c.length)] ^= 1 << randomInt(8);
  return c;
};

test("hmacSha256: createHmac's bytes over random keys and messages, the key imported once per Buffer", () => {
  const keys = Array.from({ length: 40 }, (_, i) => randomBytes(i === 0 ? 0 : randomInt(1, 140))); // empty, short, and longer than SHA-256's 64-byte block
  for (let i = 0; i < 1_000; i++) {
    const key = keys[i % keys.length]; // each key seen many times: the cached KeyObject answers
    const message = randomText(randomInt(0, 300));
    const expected = createHmac("sha256", key).update(message, "utf8").digest();
    assert.deepEqual(hmacSha256(key, message), expected, `key of ${key.length} bytes, message of ${message.length} units`);
    if (key.length > 0) assert.notDeepEqual(hmacSha256(flipOneBit(key), message), expected, "a key one bit off");
    assert.notDeepEqual(hmacSha256(key, message + " "), expected, "a message one byte longer");
  }
});

test("hmac: createHmac's bytes for text keys (UTF-8, as createHmac reads a string), SHA-1 and SHA-256, text and byte messages", () => {
  const keys = Array.from({ length: 30 }, (_, i) => randomText(i === 0 ? 0 : randomInt(1, 90)));
  for (let i = 0; i < 1_000; i++) {
    const key = keys[i % keys.length];
    const algorithm = i % 2 === 0 ? "sha256" : "sha1";
    const message = i % 3 === 0 ? randomBytes(randomInt(0, 300)) : randomText(randomInt(0, 300));
    const expected = createHmac(algorithm, key).update(message).digest();
    assert.deepEqual(hmac(algorithm, key, message), expected, `${algorithm}, key of ${key.length} units`);
    if (key.length > 0) assert.notDeepEqual(hmac(algorithm, key.slice(1), message), expected, "a key one character short");
    assert.notDeepEqual(hmac(algorithm === "sha1" ? "sha256" : "sha1", key, message), expected, "the other algorithm");
    const encoding = (["hex", "base64", "base64url"] as const)[i % 3];
    assert.equal(hmac(algorithm, key, message, encoding), expected.toString(encoding), `as ${encoding}`);
  }
});

test("prepared keys follow a changed key: a new Buffer or a rotated text is a new key, the same Buffer the same KeyObject", () => {
  const bytes = randomBytes(32);
  const copy = Buffer.from(bytes);
  assert.equal(secretKeyOf(bytes), secretKeyOf(bytes), "imported once");
  assert.notEqual(secretKeyOf(copy), secretKeyOf(bytes), "each Buffer its own KeyObject");
  assert.deepEqual(hmacSha256(copy, "m"), hmacSha256(bytes, "m"), "two Buffers of the same bytes");
  const rotated = randomBytes(32);
  assert.deepEqual(hmacSha256(rotated, "m"), createHmac("sha256", rotated).update("m").digest());
  assert.notDeepEqual(hmacSha256(rotated, "m"), hmacSha256(bytes, "m"));
  const before = "whsec_" + randomBytes(24).toString("base64");
  const after = "whsec_" + randomBytes(24).toString("base64");
  assert.deepEqual(hmacSha256(before, "1.{}"), createHmac("sha256", before).update("1.{}").digest());
  assert.deepEqual(hmacSha256(after, "1.{}"), createHmac("sha256", after).update("1.{}").digest());
  assert.notDeepEqual(hmacSha256(after, "1.{}"), hmacSha256(before, "1.{}"));
});

test("spkiPublicKeyOf: verify with the key imported once gives verify's verdicts; a wrong key, message or signature fails", () => {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const other = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const der = (k: typeof publicKey) => k.export({ format: "der", type: "spki" }).toString("base64");
  const message = Buffer.from(`1700000000${randomText(200)}`);
  const signature = sign("sha256", message, privateKey);
  const raw = { key: Buffer.from(der(publicKey), "base64"), format: "der" as const, type: "spki" as const };
  assert.equal(verify("sha256", message, spkiPublicKeyOf(der(publicKey)), signature), true);
  assert.equal(verify("sha256", message, raw, signature), true, "as with the raw DER");
  assert.equal(spkiPublicKeyOf(der(publicKey)), spkiPublicKeyOf(der(publicKey)), "imported once");
  assert.equal(verify("sha256", message, spkiPublicKeyOf(der(other.publicKey)), signature), false, "another key");
  assert.equal(verify("sha256", Buffer.concat([message, Buffer.from(" ")]), spkiPublicKeyOf(der(publicKey)), signature), false, "another message");
  assert.equal(verify("sha256", message, spkiPublicKeyOf(der(publicKey)), sign("sha256", message, other.privateKey)), false, "signed by another key");
  assert.throws(() => spkiPublicKeyOf("bm90IGEga2V5"), "a text that is not a key");
  // A rotated key (a reloaded config) is imported anew; more keys than the memo holds still answer right.
  const keys = Array.from({ length: 300 }, () => generateKeyPairSync("ec", { namedCurve: "P-256" }));
  for (const k of keys) assert.equal(verify("sha256", message, spkiPublicKeyOf(der(k.publicKey)), sign("sha256", message, k.privateKey)), true);
  assert.equal(verify("sha256", message, spkiPublicKeyOf(der(keys[0].publicKey)), signature), false);
});
