import assert from "node:assert/strict";
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from "node:crypto";
import { test } from "node:test";
import { Sealer } from "../src/crypto.js";
import { partnerStringToSign, signPartnerRequest } from "../src/partner.js";
import { webhookSignature } from "../src/partners/sender.js";

const secret = "s".repeat(16) + randomBytes(16).toString("hex");
// The sealed format as written before the key was kept as a KeyObject: AES-256-GCM under HKDF(secret).
const keyBytes = Buffer.from(hkdfSync("sha256", secret, "ttip-auth", "seal-v1", 32));
function sealTheOldWay(plain: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", keyBytes, iv);
  const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
  return ["v1", iv.toString("base64url"), cipher.getAuthTag().toString("base64url"), body.toString("base64url")].join(".");
}
function openTheOldWay(sealed: string): string {
  const [, iv, tag, body] = sealed.split(".");
  const decipher = createDecipheriv("aes-256-gcm", keyBytes, Buffer.from(iv, "base64url"));
  decipher.setAuthTag(Buffer.from(tag, "base64url"));
  return Buffer.concat([decipher.update(Buffer.from(body, "base64url")), decipher.final()]).toString("utf8");
}

test("Sealer: opens what was sealed before, seals what opens as before; another secret or a changed byte does not open", () => {
  const sealer = new Sealer(secret);
  for (const plain of ["", "ps_" + randomBytes(32).toString("base64url"), JSON.stringify({ kty: "OKP", d: randomBytes(32).toString("base64url") }), "ü€𝄞"]) {
    assert.equal(sealer.open(sealTheOldWay(plain)), plain);
    assert.equal(openTheOldWay(sealer.seal(plain)), plain);
    const sealed = sealer.seal(plain);
    assert.throws(() => new Sealer(secret + "x").open(sealed), "another secret");
    const [v, iv, tag, body] = sealed.split(".");
    const flipped = Buffer.from(tag, "base64url");
    flipped[0] ^= 1;
    assert.throws(() => sealer.open([v, iv, flipped.toString("base64url"), body].join(".")), "a changed tag");
  }
});

test("partner request and webhook signatures: hex HMAC-SHA256 over the documented strings, as before; another secret differs", () => {
  const partnerSecret = "ps_" + randomBytes(32).toString("base64url");
  const bodySha256 = randomBytes(32);
  const layout = partnerStringToSign("POST", "/ttip.payment.v1.PaymentService/CreateTip", 1700000000, bodySha256, "n-1");
  assert.equal(layout, `POST\n/ttip.payment.v1.PaymentService/CreateTip\n1700000000\n${bodySha256.toString("hex")}\nn-1`);
  const expected = createHmac("sha256", partnerSecret).update(layout).digest("hex");
  assert.equal(signPartnerRequest(partnerSecret, "post", "/ttip.payment.v1.PaymentService/CreateTip", 1700000000n, bodySha256, "n-1"), expected);
  assert.notEqual(signPartnerRequest(partnerSecret + "x", "POST", "/ttip.payment.v1.PaymentService/CreateTip", 1700000000, bodySha256, "n-1"), expected);
  const body = JSON.stringify({ type: "tip.succeeded", amount: "ü" });
  assert.equal(webhookSignature(partnerSecret, body, 1700000000), `t=1700000000,v1=${createHmac("sha256", partnerSecret).update(`1700000000.${body}`).digest("hex")}`);
  assert.notEqual(webhookSignature(partnerSecret.slice(1), body, 1700000000), webhookSignature(partnerSecret, body, 1700000000));
});
