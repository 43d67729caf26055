// Partner webhooks: how fast tip events become signed deliveries at a
// partner's receiver, through the whole path (JetStream, the inbox and fan-out
// transaction, the sender's claim, the signed POST, the outcome and its log).
//   node --import tsx bench/partner-webhooks.ts [events=2000] [subscriptions=2]
// Yardstick in the same process: the same number of POSTs of the same size,
// signed the same way, sent 16 at a time (the sender's limit) straight to the
// same receiver: the HTTP and HMAC cost alone.
import { createHmac, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createAuth } from "@ttip/auth";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { WebhookEventType } from "@ttip/proto/ttip/auth/v1/partner_pb.js";
import { PartnerService } from "@ttip/proto/ttip/auth/v1/partner_service_pb.js";
import { TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, callerHeaders, createLogger, createPeers, createPool, JetStreamBus, MemoryCache, Metrics, signingInterceptor, startService, stepUpHeaders } from "@ttip/runtime";
import { startNats, startPostgres } from "@ttip/runtime/testing";

const events = Number(process.argv[2] ?? 2_000);
const subscriptions = Number(process.argv[3] ?? 2);
const logger = createLogger({ level: "warn" });
const [pg, nats] = await Promise.all([startPostgres(), startNats()]);
const pool = createPool(pg.url, { max: 20 });
for (let i = 0; ; i++) {
  try {
    await pool.query("SELECT 1");
    break;
  } catch (err) {
    if (i > 100) throw err;
    await new Promise((r) => setTimeout(r, 100));
  }
}
let received = 0;
let bytes = 0;
const receiver = createServer((req, res) => {
  req.on("data", (c: Buffer) => (bytes += c.length));
  req.on("end", () => {
    received++;
    res.writeHead(200).end();
  });
});
await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
const bus = await JetStreamBus.connect({ servers: nats.url, logger });
const peers = createPeers(() => undefined);
const auth = await startService(createAuth({ env: { AUTH_WEBHOOK_POLL_MS: "20", AUTH_WEBHOOK_ALLOW_LOOPBACK: "true" }, otpSender: { send: async () => undefined } as never }), {
  logger, pool, bus, cache: new MemoryCache(), metrics: new Metrics(), peers,
});
const as = (subject: string, role: "admin" | "partner") =>
  createGrpcTransport({
    baseUrl: auth.server.url,
    interceptors: [(next) => (req) => {
      for (const [k, v] of Object.entries({ ...callerHeaders(subject, role), ...(role === "admin" ? stepUpHeaders() : {}) })) req.header.set(k, v);
      return next(req);
    }, signingInterceptor()],
  });
try {
  const key = await createClient(AuthAdminService, as(randomUUID(), "admin")).issuePartnerApiKey({ partnerName: "Bench POS", scopes: ["webhooks:write"], idempotencyKey: randomUUID() });
  const keyId = key.key!.keyId;
  for (let i = 0; i < subscriptions; i++) {
    // One URL per subscription: the same one twice is refused (each event would arrive there twice).
    await createClient(PartnerService, as(keyId, "partner")).createWebhookSubscription({ url: `${url}/${i}`, eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: randomUUID() });
  }
  const expected = events * subscriptions;

  // The platform's path.
  const t0 = performance.now();
  for (let i = 0; i < events; i++) {
    await bus.publish(buildEvent("payment", TipSucceededSchema, { tipId: randomUUID(), workerId: randomUUID(), amount: { currency: "KES", amountMinor: 10_000n }, createdBy: keyId }));
  }
  while (received < expected) await new Promise((r) => setTimeout(r, 10));
  const platformMs = performance.now() - t0;
  const avgBody = Math.round(bytes / received);

  // Yardstick: the same POSTs, signed, 16 in flight, no database or bus.
  received = 0;
  const body = "x".repeat(avgBody);
  const t1 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < expected) {
      next++;
      const t = Math.floor(Date.now() / 1000);
      const sig = createHmac("sha256", "secret").update(`${t}.${body}`).digest("hex");
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "x-ttip-webhook-signature": `t=${t},v1=${sig}` }, body });
      await res.text();
    }
  }));
  const yardstickMs = performance.now() - t1;

  const rate = (ms: number) => Math.round((expected / ms) * 1000);
  console.log(`partner webhooks: ${events} tip events x ${subscriptions} subscriptions = ${expected} deliveries of ~${avgBody} bytes`);
  console.log(`  platform (bus, inbox + fan-out, claim, signed POST, outcome + log): ${platformMs.toFixed(0)} ms, ${rate(platformMs)} deliveries/s`);
  console.log(`  yardstick (the signed POSTs alone, 16 in flight):                  ${yardstickMs.toFixed(0)} ms, ${rate(yardstickMs)} deliveries/s`);
  console.log(`  ratio platform/yardstick time: ${(platformMs / yardstickMs).toFixed(2)}`);
  const attempts = await pool.query("SELECT count(*)::int AS n FROM auth.partner_webhook_attempts");
  console.log(`  attempts logged: ${attempts.rows[0].n} (one per delivery: ${attempts.rows[0].n === expected})`);
} finally {
  await auth.close();
  peers.close();
  await bus.close();
  await pool.end();
  receiver.closeAllConnections();
  receiver.close();
  await Promise.all([pg.stop(), nats.stop()]);
}
