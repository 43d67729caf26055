import { createCipheriv, createDecipheriv, createHash, hkdfSync, type KeyObject, randomBytes, randomInt, timingSafeEqual } from "node:crypto";
import { secretKeyOf } from "@ttip/runtime";

/** Seals and opens secrets at rest with AES-256-GCM under a key derived from the configured secret. */
export class Sealer {
  // A KeyObject: a Buffer key is imported again by every cipher (~9 µs of a
  // ~12 µs open on Node 24), and a partner's secret is opened on each of its calls.
  private readonly key: KeyObject;
  /** Keys OTP codes are HMAC'd with, separate from the sealing key. */
  readonly otpKey: Buffer;

  constructor(secret: string) {
    this.key = secretKeyOf(Buffer.from(hkdfSync("sha256", secret, "ttip-auth", "seal-v1", 32)));
    this.otpKey = Buffer.from(hkdfSync("sha256", secret, "ttip-auth", "otp-v1", 32));
  }

  seal(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
    return ["v1", iv.toString("base64url"), cipher.getAuthTag().toString("base64url"), body.toString("base64url")].join(".");
  }

  open(sealed: string): string {
    const [version, iv, tag, body] = sealed.split(".");
    if (version !== "v1") throw new Error("unknown sealed format");
    const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64url"));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(body, "base64url")), decipher.final()]).toString("utf8");
  }
}

export const sha256 = (value: string | Buffer): Buffer => createHash("sha256").update(value).digest();

export function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** An opaque bearer secret with a readable prefix, e.g. rt_… for refresh tokens. */
export function opaqueToken(prefix: string, bytes = 32): string {
  return `${prefix}_${randomBytes(bytes).toString("base64url")}`;
}

/** A uniformly random 6-digit code (leading zeros kept). */
export function sixDigitCode(): string {
  return String(randomInt(0, 1_000_000)).padStart(6, "0");
}
