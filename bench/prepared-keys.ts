// The per-request signatures, MACs and sealed secrets outside the internal hop, each priced
// the old way (createHmac / verify given the raw key on every call, as the code
// did) and the way it ships now (the key prepared once: runtime
// prepared-keys.ts), as this process's CPU microseconds per call, alternating
// each round, and the ratio new / old. Same key shapes and message sizes as
// the real paths; every pair is checked to compute the same bytes first.
// String keys were already cheap on Node 24 (they skip the key type checks
// that cost a Buffer key ~8 µs), so those paths are expected at ~1.0: the
// gain is on Buffer keys and parsed public keys.
//   node --import tsx bench/prepared-keys.ts [ms per variant and round=200] [rounds=5]
import { createDecipheriv, createHmac, generateKeyPairSync, hkdfSync, randomBytes, randomUUID, sign, timingSafeEqual, verify } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { DynamicParametersSchema } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { hmacSha256 } from "@ttip/runtime";
import { partnerStringToSign, signPartnerRequest, webhookSignature } from "@ttip/auth";
import { Sealer } from "../services/auth/src/crypto.js";
import { PayloadSigner } from "../services/qr/src/signing.js";
import { checkSendgridSignature, checkTwilioSignature, sameSecret, twilioSignature } from "../services/notification/src/signatures.js";
import { cpuMicrosPerCall } from "./process-cpu.js";

const msPerVariant = Number(process.argv[2] ?? 200);
const rounds = Number(process.argv[3] ?? 5);

const qrKey = "q".repeat(16) + randomBytes(16).toString("hex");
const signer = new PayloadSigner(qrKey);
const payload = signer.sign({ qrCodeId: randomUUID(), expiresAt: 2_000_000_000, parameters: create(DynamicParametersSchema, {}) });
const [payloadBody, payloadMac] = payload.split(".").map((p) => Buffer.from(p, "base64url"));
const deviceSalt = `device:${qrKey}`;
const who = randomUUID();
const partnerSecret = `ps_${randomBytes(32).toString("base64url")}`;
const bodySha256 = randomBytes(32);
const webhookBody = JSON.stringify({ type: "tip.succeeded", tip: { id: randomUUID(), amount: { minor: "10000", currency: "KES" }, worker: randomUUID() }, pad: "x".repeat(300) });
const otpKey = randomBytes(32);
const sealSecret = randomBytes(32).toString("hex");
const sealer = new Sealer(sealSecret);
const sealed = sealer.seal(partnerSecret);
const sealKey = Buffer.from(hkdfSync("sha256", sealSecret, "ttip-auth", "seal-v1", 32));
const twilioToken = randomBytes(16).toString("hex");
const twilioUrl = "https://api.ttip.example/webhooks/twilio/status";
const twilioParams = { MessageSid: `SM${randomBytes(16).toString("hex")}`, MessageStatus: "delivered", To: "+254712345678", AccountSid: `AC${randomBytes(16).toString("hex")}` };
const twilioGiven = twilioSignature(twilioToken, twilioUrl, twilioParams);
const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const sendgridKey = publicKey.export({ format: "der", type: "spki" }).toString("base64");
const sendgridBody = Buffer.from(webhookBody);
const sendgridSig = sign("sha256", Buffer.concat([Buffer.from("1700000000"), sendgridBody]), privateKey).toString("base64");

// The old code of each path, as it was, for the yardstick.
const oldQrVerify = () => {
  const expected = createHmac("sha256", Buffer.from(qrKey, "utf8")).update(payloadBody).digest();
  return expected.length === payloadMac.length && timingSafeEqual(expected, payloadMac);
};
const qrKeyBuffer = Buffer.from(qrKey, "utf8");
const oldOpen = () => {
  const [, iv, tag, body] = sealed.split(".");
  const decipher = createDecipheriv("aes-256-gcm", sealKey, Buffer.from(iv, "base64url"));
  decipher.setAuthTag(Buffer.from(tag, "base64url"));
  return Buffer.concat([decipher.update(Buffer.from(body, "base64url")), decipher.final()]).toString("utf8");
};
const oldTwilio = () => {
  const data = Object.keys(twilioParams).sort().reduce((acc, k) => acc + k + twilioParams[k as keyof typeof twilioParams], twilioUrl);
  const expected = Buffer.from(createHmac("sha1", twilioToken).update(data, "utf8").digest("base64"));
  const actual = Buffer.from(twilioGiven);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
};
const oldSameSecret = (expected: string, given: string) =>
  expected.length > 0 && timingSafeEqual(createHmac("sha256", "cmp").update(expected).digest(), createHmac("sha256", "cmp").update(given).digest());
const oldSendgrid = () => {
  const key = { key: Buffer.from(sendgridKey, "base64"), format: "der" as const, type: "spki" as const };
  return verify("sha256", Buffer.concat([Buffer.from("1700000000"), sendgridBody]), key, Buffer.from(sendgridSig, "base64"));
};

const paths: { name: string; old: () => unknown; now: () => unknown }[] = [
  { name: "qr payload MAC (resolve, sign)", old: () => createHmac("sha256", qrKeyBuffer).update(payloadBody).digest(), now: () => hmacSha256(qrKeyBuffer, payloadBody) },
  { name: "qr payload verify (whole)", old: oldQrVerify, now: () => signer.verify(payload).qrCodeId.length > 0 },
  { name: "qr scan device hash", old: () => createHmac("sha256", deviceSalt).update(who).digest("base64url"), now: () => hmacSha256(deviceSalt, who).toString("base64url") },
  {
    name: "auth partner signature",
    old: () => createHmac("sha256", partnerSecret).update(partnerStringToSign("POST", "/ttip.payment.v1.PaymentService/CreateTip", 1700000000, bodySha256, "n-1")).digest("hex"),
    now: () => signPartnerRequest(partnerSecret, "POST", "/ttip.payment.v1.PaymentService/CreateTip", 1700000000, bodySha256, "n-1"),
  },
  { name: "auth webhook signature", old: () => `t=1700000000,v1=${createHmac("sha256", partnerSecret).update(`1700000000.${webhookBody}`).digest("hex")}`, now: () => webhookSignature(partnerSecret, webhookBody, 1700000000) },
  { name: "auth sealed secret open", old: oldOpen, now: () => sealer.open(sealed) },
  { name: "auth OTP digest", old: () => createHmac("sha256", otpKey).update(`${who}:123456`).digest(), now: () => hmacSha256(otpKey, `${who}:123456`) },
  { name: "notification Twilio check", old: oldTwilio, now: () => checkTwilioSignature(twilioToken, twilioUrl, twilioParams, twilioGiven) },
  { name: "notification token compare", old: () => oldSameSecret(twilioToken, twilioToken), now: () => sameSecret(twilioToken, twilioToken) },
  { name: "notification SendGrid ECDSA", old: oldSendgrid, now: () => checkSendgridSignature(sendgridKey, "1700000000", sendgridBody, sendgridSig) },
];

// Each pair must agree, or its price means nothing.
const same = (a: unknown, b: unknown) => (Buffer.isBuffer(a) && Buffer.isBuffer(b) ? a.equals(b) : a === b);
for (const p of paths) if (!same(p.old(), p.now())) throw new Error(`${p.name}: the new way computes something else`);
if (checkTwilioSignature(twilioToken + "x", twilioUrl, twilioParams, twilioGiven) || sameSecret(twilioToken, twilioToken + "x")) throw new Error("a wrong key passes");

const old = new Map<string, number[]>();
const now = new Map<string, number[]>();
for (const p of paths) cpuMicrosPerCall(p.old, msPerVariant / 4), cpuMicrosPerCall(p.now, msPerVariant / 4); // warm up
for (let r = 0; r < rounds; r++) {
  for (const p of paths) {
    // Which way goes first alternates, so neither always runs after the other.
    const ways = r % 2 === 0 ? ([[old, p.old], [now, p.now]] as const) : ([[now, p.now], [old, p.old]] as const);
    for (const [into, f] of ways) into.set(p.name, [...(into.get(p.name) ?? []), cpuMicrosPerCall(f, msPerVariant)]);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`node ${process.version}, ${rounds} rounds of ${msPerVariant} ms per way, median CPU per call`);
for (const p of paths) {
  const o = median(old.get(p.name)!);
  const n = median(now.get(p.name)!);
  console.log(`  ${p.name.padEnd(32)} old ${o.toFixed(2).padStart(7)} µs  now ${n.toFixed(2).padStart(7)} µs  ratio ${(n / o).toFixed(2)}`);
}
