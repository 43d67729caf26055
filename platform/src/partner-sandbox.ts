// The partner sandbox: `make run` (simulated M-Pesa, SMS, cards) with a
// partner key of its own, and a walk through what a partner does, over the
// public API only, signed like the SDKs sign:
//   npm run partner-sandbox -- <gateway url> <key id> <secret>
// (all three printed by `make run`). It subscribes a webhook receiver on
// loopback, creates tips at checkout with the simulator's scripted phone
// numbers, and prints each webhook as it arrives, its signature checked.
import { createHash, createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { DescService } from "@bufbuild/protobuf";
import { partnerCallSigner, type PartnerKey } from "@ttip/auth/testing";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { WebhookEventType } from "@ttip/proto/ttip/auth/v1/partner_pb.js";
import { PartnerService } from "@ttip/proto/ttip/auth/v1/partner_service_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { accessOf, callerHeaders, signingInterceptor, stepUpHeaders } from "@ttip/runtime";
import { modules, publicServices } from "./modules.js";

export type SandboxKey = PartnerKey;

/** Retried starts get the same key back (the data directory keeps it between runs). */
const SANDBOX_KEY_IDEMPOTENCY = "make-run-partner-sandbox-key-v1";
/** The name its keys are issued under, and found by to be revoked. */
const SANDBOX_PARTNER_NAME = "Sandbox partner (make run)";
/** Revoked sandbox keys followed one after another at a start: past this many something else is wrong. */
const MAX_REVOKED_SANDBOX_KEYS = 100;
/** Who issued it, in auth's audit log: the platform itself, not a person. */
const SANDBOX_ISSUER = "00000000-0000-4000-8000-000000000001";
/** The sandbox's worker, linked to the sandbox key: a key tips only for workers and venues linked to it. */
export const SANDBOX_WORKER = "00000000-0000-4000-8000-000000000002";

/** Every partner scope the contracts declare. */
export function allPartnerScopes(): string[] {
  const scopes = modules.flatMap((m) => publicServices(m).flatMap((s) => s.methods.map((m) => accessOf(m)?.partnerScope ?? "")));
  return [...new Set(scopes.filter(Boolean))].sort();
}

/**
 * Issues (or finds again) the sandbox's partner key with every scope, through
 * auth's own admin RPC, and links it to the sandbox worker through qr's, as
 * signed in-process calls. Development runs only.
 */
export async function issueSandboxKey(authUrl: string, qrUrl: string): Promise<SandboxKey> {
  const admin = createClient(AuthAdminService, asPlatform(authUrl));
  const scopes = allPartnerScopes();
  // The scopes name the key: contracts that add one get a key with it (the same key under another request is refused).
  let idempotencyKey = `${SANDBOX_KEY_IDEMPOTENCY}:${createHash("sha256").update(scopes.join(" ")).digest("hex").slice(0, 16)}`;
  let issued = await admin.issuePartnerApiKey({ partnerName: SANDBOX_PARTNER_NAME, scopes, idempotencyKey });
  // A key revoked (trying revocation in the console) is followed by one of its own, found again by the next start.
  for (let revoked = 0; issued.key!.revokedAt; revoked++) {
    if (revoked === MAX_REVOKED_SANDBOX_KEYS) throw new Error(`the partner sandbox's last ${revoked} keys are revoked; start with PARTNER_SANDBOX=off`);
    idempotencyKey = `${SANDBOX_KEY_IDEMPOTENCY}:after:${issued.key!.keyId}`;
    issued = await admin.issuePartnerApiKey({ partnerName: SANDBOX_PARTNER_NAME, scopes, idempotencyKey });
  }
  const qr = createClient(QrService, asPlatform(qrUrl));
  await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: SANDBOX_WORKER, displayName: "Sandbox worker" });
  await qr.linkPartner({ keyId: issued.key!.keyId, ownerKind: OwnerKind.WORKER, ownerId: SANDBOX_WORKER });
  return { keyId: issued.key!.keyId, secret: issued.secret };
}

/**
 * Revokes every sandbox key still live: started with a real money provider, a key issued by an earlier start (its
 * secret printed then) would make real pushes to real phones. Answers how many it revoked. Bounded: 50 pages of 100.
 */
export async function revokeSandboxKeys(authUrl: string): Promise<number> {
  const admin = createClient(AuthAdminService, asPlatform(authUrl));
  let revoked = 0;
  let pageToken = "";
  for (let pages = 0; pages < 50; pages++) {
    const { keys, page } = await admin.listPartnerApiKeys({ page: { pageSize: 100, pageToken } });
    for (const key of keys.filter((k) => k.partnerName === SANDBOX_PARTNER_NAME && !k.revokedAt)) {
      await admin.revokePartnerApiKey({ keyId: key.keyId });
      revoked++;
    }
    pageToken = page?.nextPageToken ?? "";
    if (!pageToken) break;
  }
  return revoked;
}

/** Signed in-process calls as the platform's admin, with the device step-up issuing and revoking keys takes. */
function asPlatform(baseUrl: string) {
  const interceptor: Interceptor = (next) => (req) => {
    for (const [k, v] of Object.entries({ ...callerHeaders(SANDBOX_ISSUER, "admin"), ...stepUpHeaders() })) req.header.set(k, v);
    return next(req);
  };
  return createGrpcTransport({ baseUrl, interceptors: [interceptor, signingInterceptor()] });
}

/** The check every SDK's webhook verifier makes: HMAC-SHA256 of "<t>.<raw body>", a fresh t. */
export function webhookVerifies(secret: string, header: string, body: string, toleranceSeconds = 300): boolean {
  const t = /(?:^|,)t=(\d{1,12})(?:,|$)/.exec(header)?.[1];
  const given = [...header.matchAll(/(?:^|,)v1=([0-9a-f]{64})/g)].map((m) => m[1]);
  if (!t || !given.length || Math.abs(Date.now() / 1000 - Number(t)) > toleranceSeconds) return false;
  const expected = createHmac("sha256", secret).update(`${t}.${body}`).digest();
  return given.some((g) => timingSafeEqual(Buffer.from(g, "hex"), expected));
}

export interface ReceivedWebhook {
  deliveryId: string;
  verified: boolean;
  event: { type: string; tip?: { tipId: string; resultCode?: string }; payout?: { payoutId: string } };
}

/** A webhook receiver on loopback, as a partner would run one: verify, record, answer 200. */
export async function startReceiver(secretOf: () => string, onEvent: (w: ReceivedWebhook) => void): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const verified = webhookVerifies(secretOf(), String(req.headers["x-ttip-webhook-signature"] ?? ""), body);
      res.writeHead(verified ? 200 : 400).end();
      if (verified) onEvent({ deliveryId: String(req.headers["x-ttip-delivery-id"]), verified, event: JSON.parse(body) });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ttip/webhooks`, server };
}

export interface SandboxRun {
  subscriptionId: string;
  tips: Array<{ tipId: string; phone: string; outcome: string }>;
  close(): Promise<void>;
}

/**
 * Subscribes a loopback receiver to tip events, then creates one tip per
 * scripted phone number at "checkout", for the sandbox worker linked to the key (0712345678: paid; 0712341032: the
 * customer cancels). Webhooks arrive at `onEvent` as the simulator settles.
 */
export async function runSandbox(gatewayUrl: string, key: SandboxKey, onEvent: (w: ReceivedWebhook) => void, workerId = SANDBOX_WORKER): Promise<SandboxRun> {
  const transport: Transport = createConnectTransport({ baseUrl: gatewayUrl, httpVersion: "1.1", useBinaryFormat: true, interceptors: [partnerCallSigner(key)] });
  const api = <S extends DescService>(s: S): Client<S> => createClient(s, transport);
  let secret = "";
  const receiver = await startReceiver(() => secret, onEvent);
  const sub = await api(PartnerService).createWebhookSubscription({
    url: receiver.url,
    eventTypes: [WebhookEventType.TIP_CREATED, WebhookEventType.TIP_SUCCEEDED, WebhookEventType.TIP_FAILED],
    idempotencyKey: `sandbox-${randomUUID()}`,
  });
  secret = sub.signingSecret;
  const tips = [];
  for (const [phone, outcome] of [["0712345678", "paid"], ["0712341032", "cancelled by the customer"]]) {
    const created = await api(PaymentService).createTip({
      idempotencyKey: `checkout-${randomUUID()}`,
      recipient: { case: "workerId", value: workerId },
      amount: { currency: "KES", amountMinor: 25_000n },
      payment: { case: "mpesaPhone", value: phone },
    });
    tips.push({ tipId: created.tip!.tipId, phone, outcome });
  }
  return {
    subscriptionId: sub.subscription!.subscriptionId,
    tips,
    close: async () => {
      await api(PartnerService).deleteWebhookSubscription({ subscriptionId: sub.subscription!.subscriptionId });
      receiver.server.closeAllConnections();
      await new Promise((r) => receiver.server.close(r));
    },
  };
}

if (process.argv[1]?.endsWith("partner-sandbox.ts")) {
  const [gatewayUrl, keyId, secret] = process.argv.slice(2);
  if (!gatewayUrl || !keyId || !secret) {
    console.error("usage: npm run partner-sandbox -- <gateway url> <key id> <secret>   (all printed by `make run`)");
    process.exit(2);
  }
  const seen: ReceivedWebhook[] = [];
  const run = await runSandbox(gatewayUrl, { keyId, secret }, (w) => {
    seen.push(w);
    const tip = w.event.tip;
    console.log(`  webhook ${w.event.type.replace("WEBHOOK_EVENT_TYPE_", "").toLowerCase()} tip ${tip?.tipId}${tip?.resultCode ? ` (${tip.resultCode})` : ""}  delivery ${w.deliveryId}, signature verified`);
  });
  console.log(`▶ subscribed ${run.subscriptionId}; tips created at checkout:`);
  for (const t of run.tips) console.log(`  ${t.tipId}  ${t.phone}: the simulator's script says ${t.outcome}`);
  console.log("▶ waiting for the simulator to settle them (webhooks below); Ctrl-C to stop");
  const done = () => run.tips.every((t) => seen.some((w) => w.event.tip?.tipId === t.tipId && /SUCCEEDED|FAILED/.test(w.event.type)));
  for (let i = 0; i < 120 && !done(); i++) await new Promise((r) => setTimeout(r, 500));
  await run.close();
  console.log(done() ? "▶ both tips settled and reported. Delivery log: PartnerService.ListWebhookDeliveries" : "▶ not all settled within a minute: see the M-Pesa simulator's transactions");
  process.exit(done() ? 0 : 1);
}
