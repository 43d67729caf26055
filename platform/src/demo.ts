// A walk through one tip against a running `make run`, over the public API
// only (Connect JSON through the gateway, as the web app calls it):
//   npm run demo -- <gateway url> <SMS simulator messages url>
// Both URLs are printed by `make run`.
import { randomInt, randomUUID } from "node:crypto";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { PaymentRail } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { formatMoney } from "@ttip/runtime";

const [gateway = "http://127.0.0.1:8080", smsMessages = ""] = process.argv.slice(2);
if (!smsMessages) {
  console.error("usage: npm run demo -- <gateway url> <SMS simulator messages url>   (both printed by `make run`)");
  process.exit(2);
}

const transport = createConnectTransport({ baseUrl: gateway, httpVersion: "1.1" });
function api<S extends DescService>(service: S, token?: string): Client<S> {
  return createClient(service, token
    ? createConnectTransport({ baseUrl: gateway, httpVersion: "1.1", interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] })
    : transport);
}
const kes = (minor: bigint) => formatMoney(minor, "KES");
const step = (text: string) => console.log(`\n▶ ${text}`);

const workerPhone = `07${String(randomInt(10_000_000, 99_999_999))}`;
step(`A worker signs up with ${workerPhone}: the OTP goes to the SMS simulator`);
const { challengeId } = await api(AuthService).startPhoneVerification({ phone: workerPhone });
const { messages } = (await (await fetch(smsMessages)).json()) as { messages: { to: string; message: string }[] };
const sms = messages.filter((m) => m.to.replace(/^\+/, "").endsWith(workerPhone.slice(1))).at(-1);
const otp = /\b(\d{6})\b/.exec(sms?.message ?? "")?.[1];
if (!otp) throw new Error(`no OTP SMS to ${workerPhone} at ${smsMessages}`);
console.log(`  SMS: "${sms!.message}"`);
const signup = await api(AuthService).verifyPhoneOtp({ challengeId, otp, role: Role.WORKER });
const token = signup.tokens!.accessToken;
const workerId = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub as string;
await api(AuthService, token).setPin({ pin: "4826" });
console.log(`  signed in as worker ${workerId}`);

step("The worker names the tip page and gets a QR code");
await api(QrService, token).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: workerId, displayName: "Wanjiku", currency: "KES", city: "Nairobi" });
const { qrCode } = await api(QrService, token).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: workerId, idempotencyKey: randomUUID() });
console.log(`  short code ${qrCode!.shortCode}, tip page ${qrCode!.url}`);

step("A customer scans it and sees what a KES 250 tip costs");
const { target } = await api(QrService).resolveQrCode({ code: { case: "shortCode", value: qrCode!.shortCode } });
const { quote } = await api(WalletService).quoteFees({ amount: { amountMinor: 25_000n, currency: "KES" }, rail: PaymentRail.MPESA, workerId });
console.log(`  tipping ${target!.displayName}: customer pays ${kes(quote!.customerPays!.amountMinor)}, platform fee ${kes(quote!.platformFee!.amountMinor)}, ${target!.displayName} receives ${kes(quote!.workerReceives!.amountMinor)}`);

const customerPhone = `07${String(randomInt(10_000_000, 99_999_999))}`;
step(`The customer pays by M-Pesa from ${customerPhone}: an STK push to the simulator, which calls back`);
const { tip } = await api(PaymentService).createTip({
  idempotencyKey: randomUUID(),
  recipient: { case: "qrCode", value: qrCode!.shortCode },
  amount: { amountMinor: 25_000n, currency: "KES" },
  payment: { case: "mpesaPhone", value: customerPhone },
});
for await (const m of api(PaymentService).watchTip({ tipId: tip!.tipId })) console.log(`  tip ${TipStatus[m.tip!.status]}${m.tip!.mpesaReceipt ? ` (M-Pesa ${m.tip!.mpesaReceipt})` : ""}: ${m.tip!.resultMessage}`);

step("The worker's wallet");
for (let i = 0; i < 50; i++) {
  const [b] = (await api(WalletService, token).getBalance({ currency: "KES" })).balances;
  if (b?.available?.amountMinor) {
    console.log(`  balance ${kes(b.ledger!.amountMinor)}, available ${kes(b.available.amountMinor)}`);
    for (const t of (await api(WalletService, token).listTransactions({})).transactions) console.log(`  ${t.description}: ${kes(t.amount!.amountMinor)}`);
    process.exit(0);
  }
  await new Promise((r) => setTimeout(r, 200));
}
throw new Error("the tip did not reach the wallet");
