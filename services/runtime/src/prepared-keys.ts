// Keys for per-request MACs and signatures, prepared once. On Node 24,
// createHmac / createSign / verify given a key that is an object but not a
// KeyObject (a Buffer, DER bytes) check its type (KeyObject? CryptoKey?) and
// import it on every call: ~80% of a small MAC's CPU (bench/internal-mac.ts,
// bench/prepared-keys.ts). A string key skips those checks and costs what a
// KeyObject does, so it is passed as it is. The bytes computed are
// createHmac's / verify's own.
//
// Keys that change at run time (a rotation, a reloaded config, a partner's
// new secret) are followed because a key is found by what it is, not by who
// asks: a new Buffer or a new text is a new KeyObject; the old one goes with
// its Buffer, or when the memo of texts is full.
import { type BinaryToTextEncoding, createHmac, createPublicKey, createSecretKey, type KeyObject } from "node:crypto";
import { BoundedMap } from "./bounded-map.js";

// A key Buffer must not be written after it is first used: callers make it once.
const secretKeysByBuffer = new WeakMap<Buffer, KeyObject>();

/** Public keys remembered by their text at most, the oldest forgotten first (a forgotten key is simply imported again). */
const MAX_PUBLIC_KEYS = 256;
const publicKeysByText = new BoundedMap<string, KeyObject>(MAX_PUBLIC_KEYS);

/** The secret KeyObject of a key Buffer, made once per Buffer. */
export function secretKeyOf(key: Buffer): KeyObject {
  let made = secretKeysByBuffer.get(key);
  if (made === undefined) {
    made = createSecretKey(key);
    secretKeysByBuffer.set(key, made);
  }
  return made;
}

/** A public key given as base64 DER (SPKI), as providers' consoles show it, imported once per text; throws for one that does not parse. */
export function spkiPublicKeyOf(base64Der: string): KeyObject {
  let made = publicKeysByText.get(base64Der);
  if (made === undefined) {
    made = createPublicKey({ key: Buffer.from(base64Der, "base64"), format: "der", type: "spki" });
    publicKeysByText.set(base64Der, made);
  }
  return made;
}

/**
 * HMAC of `data` (a string is UTF-8) under `key` (a string is UTF-8, as
 * createHmac reads it): createHmac's bytes, a key Buffer imported once. With
 * an encoding, the digest as text (no Buffer made on the way).
 */
export function hmac(algorithm: "sha1" | "sha256", key: string | Buffer, data: string | Uint8Array): Buffer;
export function hmac(algorithm: "sha1" | "sha256", key: string | Buffer, data: string | Uint8Array, encoding: BinaryToTextEncoding): string;
export function hmac(algorithm: "sha1" | "sha256", key: string | Buffer, data: string | Uint8Array, encoding?: BinaryToTextEncoding): Buffer | string {
  const mac = createHmac(algorithm, typeof key === "string" ? key : secretKeyOf(key)).update(data);
  return encoding === undefined ? mac.digest() : mac.digest(encoding);
}

/** HMAC-SHA256 of `data` under `key`: createHmac's bytes (or text, with an encoding), a key Buffer imported once. */
export function hmacSha256(key: string | Buffer, data: string | Uint8Array): Buffer;
export function hmacSha256(key: string | Buffer, data: string | Uint8Array, encoding: BinaryToTextEncoding): string;
export function hmacSha256(key: string | Buffer, data: string | Uint8Array, encoding?: BinaryToTextEncoding): Buffer | string {
  return encoding === undefined ? hmac("sha256", key, data) : hmac("sha256", key, data, encoding);
}
