import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  DeliveryUpdatedSchema,
  DeviceRegisteredSchema,
  FraudAlertSchema,
  PaymentMethod,
  PayoutFailedSchema,
  PayoutNumberChangedSchema,
  PayoutSucceededSchema,
  TipReversalKind,
  TipReversedSchema,
  TipSucceededSchema,
  VenueManagerChangedSchema,
  VenueMemberChangedSchema,
  VenueShareAllocatedSchema,
} from "@ttip/proto/ttip/events/v1/events_pb.js";
import { Channel, DeliveryStatus, SmsEncoding, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import {
  NotificationAdminService,
  NotificationInternalService,
  NotificationService,
  SendNotificationRequestSchema,
} from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { AdjustableClock, callerHeaders, createPeers, InProcessBus, JetStreamBus, MemoryCache, Metrics, migrate, normalisePhone, requestFingerprint, scrubText, startService, startTracing, withTransaction, type EventBus, type Pool, type PoolClient } from "@ttip/runtime";
import { captureLogger, crashBeforeFirstAck, createTestDatabase, heapWalRecords, keptPlans, kesMinor, startOtlpReceiver, holdingTimer, startTestService, testEnv, type TestService, uniqueName, eventually, testPhone } from "@ttip/runtime/testing";
import { applyStatusReport, declareInDoubt, DELIVERY_DETAIL_RETENTION_MS, deliveryRace, Dispatcher, eraseOldDeliveries, dispatchShardOf, dispatchSubject, enqueue, enqueueClaiming, enqueueMany, expireUnmatchedReports, inAppSignals, quietUntil, redispatchStranded, RetryLater, strandedLookWindow, UNMATCHED_REPORT_RETENTION_MS } from "../src/delivery.js";
import type { NotificationHandlerContext } from "../src/handlers/context.js";
import { internalHandlers } from "../src/handlers/internal.js";
import { createNotificationModule, DEFAULT_RETRY, type NotificationConfig } from "../src/index.js";
import { ProviderSimulator } from "../src/testing.js";
import { shortRef } from "../src/triggers.js";
import { MAX_PUSH_TOKENS_PER_USER } from "../src/stores/push-tokens.js";
import { createQrModule } from "@ttip/qr";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createProviders, type OutgoingMessage, type Provider, type SendOutcome } from "../src/providers.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A pool whose database can stop answering (a partition): once `down` is set, every statement and
 * connection waits for ever, and `waiting` counts them.
 */
function partitionable(target: Pool): { pool: Pool; down: boolean; waiting: number } {
  const db = { pool: target, down: false, waiting: 0 };
  const hang = () => (db.waiting++, new Promise<never>(() => undefined));
  db.pool = new Proxy(target, {
    get(inner, prop) {
      if (db.down && (prop === "query" || prop === "connect")) return hang;
      const value = Reflect.get(inner, prop);
      return typeof value === "function" ? value.bind(inner) : value;
    },
  });
  return db;
}

async function publish<D extends DescMessage>(bus: EventBus, subject: string, schema: D, init: Omit<MessageInitShape<D>, "meta" | "$typeName">, eventId = randomUUID(), busId = eventId) {
  const message = create(schema, { ...init, meta: { id: eventId, producer: "payment", occurredAt: timestampNow() } } as unknown as MessageInitShape<D>);
  await bus.publish({ id: busId, subject, data: toBinary(schema, message) });
  return eventId;
}


function testConfig(sim: ProviderSimulator, url: () => string): NotificationConfig {
  return {
    providers: sim.config("africastalking", "at-callback-secret"),
    retry: { ...DEFAULT_RETRY, attemptsPerProvider: 2, baseDelayMs: 30, maxDelayMs: 100, sendLeaseMs: 15_000, httpTimeoutMs: 3_000 },
    publicUrl: url,
  };
}

/** The dispatchers' work written in this transaction (at its now()): delivery, status and subject of each, sorted. */
async function dispatchWork(client: { query: (text: string) => Promise<{ rows: { subject: string; payload: Buffer }[] }> }): Promise<string[]> {
  const { rows } = await client.query("SELECT subject, payload FROM notification.outbox WHERE created_at = now() AND subject LIKE 'ttip.notification.dispatch.%'");
  return rows.map((r) => {
    const e = fromBinary(DeliveryUpdatedSchema, r.payload);
    return `${e.deliveryId}:${e.status}:${r.subject}`;
  }).sort();
}

describe("notification service against Postgres, JetStream and the provider simulators", () => {
  const sim = new ProviderSimulator();
  /** The service's clock: quiet hours end when the test moves it, not after a wait. */
  const clock = new AdjustableClock();
  let t: TestService;
  let serviceUrl = "";
  let config: NotificationConfig;
  const adminId = randomUUID();
  const admin = () => t.client(NotificationAdminService, { subject: adminId, roles: ["admin"] });
  const internal = () => t.client(NotificationInternalService);
  const asUser = (id: string) => t.client(NotificationService, { subject: id, roles: ["worker"] });
  /** A payout-sent push to `workerId`'s phones, under a fresh key. */
  const payoutPush = (workerId: string, reference: string) =>
    internal().sendNotification({
      idempotencyKey: `push-${randomUUID()}`,
      recipient: { case: "userId", value: workerId },
      templateKey: TemplateKey.PAYOUT_SENT,
      channels: [Channel.PUSH],
      variables: { amount: "KES 20", phone: "2547******00", reference },
    });
  const smsTo = (phone: string) => sim.sent.filter((m) => (m.provider === "africastalking" || m.provider === "twilio") && m.to === phone);
  /** Texts Africa's Talking took for these deliveries' numbers: the service's own sends in the background, which a count of all the provider's calls would take in, are left out. */
  const textsFor = async (ids: string[]) => {
    const { rows } = await t.db.pool.query<{ address: string }>("SELECT address FROM notification.deliveries WHERE id = ANY($1::uuid[])", [ids]);
    const numbers = new Set(rows.map((r) => r.address.replace(/^\+/, "")));
    return sim.sent.filter((m) => m.provider === "africastalking" && numbers.has(m.to.replace(/^\+/, ""))).length;
  };
  const delivery = async (id: string) => (await admin().getDelivery({ deliveryId: id })).delivery!;
  /** The delivery once it has reached `status` (its attempts run in the background). */
  const deliveryIn = (id: string, status: DeliveryStatus) =>
    eventually(`status ${DeliveryStatus[status].toLowerCase()}`, async () => {
      const x = await delivery(id);
      return x.status === status && x;
    });
  /** A receipt SMS to `phone` under a new idempotency key. */
  const sendReceipt = (phone: string, variables: Record<string, string>) =>
    internal().sendNotification({ idempotencyKey: `receipt-${randomUUID()}`, recipient: { case: "phone", value: phone }, templateKey: TemplateKey.RECEIPT, variables });
  /** A queued SMS written straight to the table, `attempts` already counted, as a crash can leave one. */
  const queuedSms = async (attempts = 0, templateKey = TemplateKey.RECEIPT) => {
    const id = randomUUID();
    const phone = testPhone();
    await t.db.pool.query(
      `INSERT INTO notification.deliveries (id, source_key, recipient_key, channel, address, address_masked, template_key, template_version, locale, body, status, attempts)
       VALUES ($1, $2, $3, $4, $5, 'masked', $6, 1, 'en', 'hello', 'queued', $7)`,
      [id, `rpc:${id}`, `phone:${phone}`, Channel.SMS, phone, templateKey, attempts],
    );
    return id;
  };
  /** The real Africa's Talking client, which runs `after` on each answer before handing it back. */
  const answeringAfter = (after: (m: OutgoingMessage, r: SendOutcome) => Promise<void>): Provider => {
    const at = createProviders(config.providers, 3_000).sms[0];
    return {
      name: at.name,
      send: async (m) => {
        const r = await at.send(m);
        await after(m, r);
        return r;
      },
    };
  };
  /** The dispatch messages written for a delivery (the test databases keep published outbox rows). */
  const dispatchMessages = async (id: string) =>
    (await t.db.pool.query("SELECT count(*)::int AS n FROM notification.outbox WHERE subject LIKE 'ttip.notification.dispatch.%' AND position($1 in encode(payload, 'escape')) > 0", [id])).rows[0].n;
  /** The states a delivery's public delivery_updated facts report, in order. */
  const factsOf = async (id: string) =>
    (await t.db.pool.query<{ payload: Buffer }>(
      "SELECT payload FROM notification.outbox WHERE subject = 'ttip.notification.delivery_updated' AND position($1 in encode(payload, 'escape')) > 0 ORDER BY seq",
      [id],
    )).rows.map((r) => fromBinary(DeliveryUpdatedSchema, r.payload).status);
  /** What `fn` returns, with the statements the service's pool ran meanwhile. */
  const withStatements = async <T>(fn: () => Promise<T>): Promise<{ result: T; statements: string[] }> => {
    const statements: string[] = [];
    const query = t.db.pool.query.bind(t.db.pool);
    t.db.pool.query = ((text: string | { text: string }, ...rest: unknown[]) => {
      statements.push(typeof text === "string" ? text : text.text);
      return (query as (...args: unknown[]) => unknown)(text, ...rest);
    }) as typeof t.db.pool.query;
    try {
      return { result: await fn(), statements };
    } finally {
      t.db.pool.query = query;
    }
  };
  /** A dispatcher of its own over the service's database, with the providers given. */
  const dispatcherWith = (providers: ConstructorParameters<typeof Dispatcher>[0]["providers"]) =>
    new Dispatcher({ pool: t.db.pool, providers, retry: config.retry, logger: captureLogger("silent").logger, publicUrl: () => "" });

  before(async () => {
    await sim.start();
    config = testConfig(sim, () => serviceUrl);
    // qr keeps who manages a venue (told of its pool's reversals).
    t = await startTestService(createNotificationModule({ config, sweepIntervalMs: 100 }), { clock, with: [createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } })] });
    serviceUrl = t.service.server.url;
    sim.atDeliveryReportUrl = `${serviceUrl}/webhooks/africastalking/delivery?token=at-callback-secret`;
    sim.sendgridEventWebhookUrl = `${serviceUrl}/webhooks/sendgrid/events`;
  });
  after(async () => {
    await t?.close();
    await sim.close();
  });

  test("a provider whose credentials are not set (switched off) is never tried: its messages go to no company the operator did not sign up with", () => {
    const names = (p: Provider[]) => p.map((x) => x.name);
    const all = createProviders(config.providers, 3_000);
    assert.deepEqual([names(all.sms), names(all.email), names(all.push)], [["africastalking", "twilio"], ["sendgrid"], ["fcm"]]);
    const { twilio, sendgrid, fcm } = config.providers;
    const off = { ...config.providers, twilio: { ...twilio, authToken: "" }, sendgrid: { ...sendgrid, apiKey: "" }, fcm: { ...fcm, privateKey: "" } };
    // Before, Twilio was tried after Africa's Talking with empty credentials: the number and the text (a sign-in code) sent.
    for (const smsPrimary of ["africastalking", "twilio"] as const) {
      const some = createProviders({ ...off, smsPrimary }, 3_000);
      assert.deepEqual([names(some.sms), names(some.email), names(some.push)], [["africastalking"], [], []], smsPrimary);
    }
  });

  test("an SMS waiting on its second provider, since switched off, is sent by the first, not failed", async () => {
    const id = await queuedSms();
    await t.db.pool.query("UPDATE notification.deliveries SET status = 'retrying', provider_index = 1 WHERE id = $1", [id]);
    const { twilio } = config.providers;
    const providers = createProviders({ ...config.providers, twilio: { ...twilio, authToken: "" } }, 3_000);
    await dispatcherWith(providers).run(id);
    // Before, failed at once: "no provider for this channel".
    assert.equal((await delivery(id)).status, DeliveryStatus.SENT);
    const { rows } = await t.db.pool.query("SELECT provider FROM notification.delivery_attempts WHERE delivery_id = $1", [id]);
    assert.deepEqual(rows.map((r) => r.provider), ["africastalking"]);
  });

  test("renders every template in English and Swahili, falls back to English, counts SMS segments", async () => {
    const vars: Record<TemplateKey, Record<string, string>> = {
      [TemplateKey.UNSPECIFIED]: {},
      [TemplateKey.OTP]: { code: "482913", minutes: "5" },
      [TemplateKey.TIP_RECEIVED]: { amount: "KES 150", net: "KES 142", from: "2547******78", message: "" },
      [TemplateKey.RECEIPT]: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" },
      [TemplateKey.PAYOUT_SENT]: { amount: "KES 1,000", phone: "2547******78", reference: "QK99XYZ" },
      [TemplateKey.PAYOUT_FAILED]: { amount: "KES 1,000", reason: "M-Pesa is unavailable" },
      [TemplateKey.FRAUD_HOLD]: { reference: "AB12CD34EF", reason: "velocity phone" },
      [TemplateKey.WEEKLY_SUMMARY]: { week: "17-23 Nov", count: "12", total: "KES 2,400" },
      [TemplateKey.STAFF_INVITE]: { venue: "Java House Kimathi", link: "https://ttip.example/join/4f9c2a1b7d3e8f60a5b1" },
      [TemplateKey.POOL_SHARE]: { amount: "KES 1,250", venue: "Java House Kimathi", period: "24 Nov", rule: "by hours, rule v3" },
      [TemplateKey.POOL_SHARE_REVERSED]: { amount: "KES 1,250", venue: "Java House Kimathi", reason: "counted twice" },
      [TemplateKey.ADMIN_TIP_HELD]: { amount: "KES 15,000", worker: "Amina Wanjiru", reason: "amount outlier", link: "https://tips.example.co.ke/admin" },
      [TemplateKey.PAYOUT_NUMBER_CHANGED]: { phone: "2547******78" },
      [TemplateKey.DEVICE_ADDED]: {},
      [TemplateKey.TIP_REVERSED]: { amount: "KES 1,151.17", reference: "7E3F9A2C4B" },
      [TemplateKey.TIP_REVERSAL_UNDONE]: { amount: "KES 1,151.17", reference: "7E3F9A2C4B" },
      [TemplateKey.POOL_TIP_REVERSED]: { amount: "KES 1,151.17", reference: "7E3F9A2C4B", venue: "Java House Kimathi" },
      [TemplateKey.POOL_TIP_REVERSAL_UNDONE]: { amount: "KES 1,151.17", reference: "7E3F9A2C4B", venue: "Java House Kimathi" },
      // A token as venue's invitations make them (24 random bytes, base64url).
      [TemplateKey.MANAGER_INVITE]: { venue: "Java House Kimathi", link: "https://ttip.example/join/manage/Xk2v9QpL0aB7cD4eF1gH3iJ5kL6mN8oP" },
      [TemplateKey.MANAGER_JOINED]: { name: "Njeri Wambui Kamau", venue: "Java House Kimathi" },
      [TemplateKey.MANAGER_REMOVED]: { name: "Njeri Wambui Kamau", venue: "Java House Kimathi" },
      [TemplateKey.REMOVED_AS_MANAGER]: { venue: "Java House Kimathi" },
      [TemplateKey.STAFF_JOINED]: { name: "Wanjiru Kamau", venue: "Java House Kimathi" },
      [TemplateKey.REMOVED_FROM_STAFF]: { venue: "Java House Kimathi" },
      [TemplateKey.MPESA_TIP_REVERSED]: { amount: "KES 15,000", reference: "7E3F9A2C4B" },
      [TemplateKey.MPESA_TIP_REVERSAL_UNDONE]: { amount: "KES 15,000", reference: "7E3F9A2C4B" },
      [TemplateKey.POOL_MPESA_TIP_REVERSED]: { amount: "KES 15,000", reference: "7E3F9A2C4B", venue: "Java House Kimathi" },
      [TemplateKey.POOL_MPESA_TIP_REVERSAL_UNDONE]: { amount: "KES 15,000", reference: "7E3F9A2C4B", venue: "Java House Kimathi" },
    };
    const bodies = new Set<string>();
    for (const key of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27] as TemplateKey[]) {
      for (const locale of ["en", "sw"]) {
        const r = await admin().renderTemplate({ key, locale, channel: Channel.SMS, variables: vars[key] });
        assert.equal(r.locale, locale);
        assert.doesNotMatch(r.body, /\{\{/);
        assert.equal(r.smsEncoding, SmsEncoding.GSM7);
        assert.equal(r.smsSegments, 1);
        bodies.add(r.body);
      }
    }
    assert.equal(bodies.size, 54, "each kind reads differently in each language");
    const sw = await admin().renderTemplate({ key: TemplateKey.OTP, locale: "sw", channel: Channel.SMS, variables: vars[TemplateKey.OTP] });
    assert.equal(sw.body, "Nambari yako ya TTIP ni 482913. Itaisha baada ya dakika 5. Usimpe mtu yeyote.");
    const en = await admin().renderTemplate({ key: TemplateKey.RECEIPT, locale: "en", channel: Channel.EMAIL, variables: vars[TemplateKey.RECEIPT] });
    assert.equal(en.subject, "Your TTIP receipt");
    assert.match(en.body, /you tipped Amina KES 150\. Ref QK12ABC/);
    const fr = await admin().renderTemplate({ key: TemplateKey.PAYOUT_SENT, locale: "fr", channel: Channel.PUSH, variables: vars[TemplateKey.PAYOUT_SENT] });
    assert.equal(fr.locale, "en");
    assert.equal(fr.subject, "Withdrawal sent");
    await assert.rejects(admin().renderTemplate({ key: TemplateKey.OTP, locale: "en", channel: Channel.SMS, variables: { minutes: "1" } }), (e: ConnectError) => e.code === Code.InvalidArgument && /missing code/.test(e.message));
    // Auth sends the code alone; the validity defaults to its 5 minutes.
    const codeOnly = await admin().renderTemplate({ key: TemplateKey.OTP, locale: "en", channel: Channel.SMS, variables: { code: "123456" } });
    assert.equal(codeOnly.body, "Your TTIP code is 123456. It expires in 5 minutes. Never share it.");
  });

  test("an OTP by phone goes out once per idempotency key, in Swahili, and its text is not kept", async () => {
    const phone = testPhone({ format: "+254" });
    const req = { idempotencyKey: `otp-${randomUUID()}`, recipient: { case: "phone" as const, value: phone }, templateKey: TemplateKey.OTP, locale: "sw", variables: { code: "739201", minutes: "5" } };
    const first = await internal().sendNotification(req);
    const again = await internal().sendNotification(req);
    assert.equal(first.deliveryIds.length, 1);
    assert.deepEqual(again.deliveryIds, first.deliveryIds);
    await assert.rejects(internal().sendNotification({ ...req, variables: { code: "111111", minutes: "5" } }), (e: ConnectError) => e.code === Code.AlreadyExists && /idempotency_key/.test(e.message), "another message under the key is refused");
    const [sms] = await eventually("the OTP SMS", () => smsTo(phone).length === 1 && smsTo(phone));
    assert.equal(sms.provider, "africastalking");
    assert.equal(sms.body, "Nambari yako ya TTIP ni 739201. Itaisha baada ya dakika 5. Usimpe mtu yeyote.");
    const d = await deliveryIn(first.deliveryIds[0], DeliveryStatus.SENT);
    assert.equal(d.recipientMasked, "2547******" + phone.slice(-2));
    assert.equal(d.attempts[0].providerMessageId, sms.id);
    const stored = await t.db.pool.query("SELECT body FROM notification.deliveries WHERE id = $1", [d.deliveryId]);
    assert.equal(stored.rows[0].body, null);
    // Each send is committed as an attempt before its HTTP call, and a sent delivery is never claimed again: one attempt, one SMS.
    const attempts = await t.db.pool.query("SELECT count(*)::int AS n FROM notification.delivery_attempts WHERE delivery_id = $1", [d.deliveryId]);
    assert.equal(attempts.rows[0].n, 1);
    assert.equal(smsTo(phone).length, 1);
    assert.equal(await dispatchMessages(d.deliveryId), 0, "claimed by the statement that wrote it and sent by the call: no dispatch message");
    await assert.rejects(
      internal().sendNotification({ ...req, idempotencyKey: `otp-${randomUUID()}`, variables: { minutes: "5" } }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /missing code/.test(e.message),
    );
  });

  test("a one-channel receipt (its key claimed by the delivery's own statement) goes out once per key; another message under the key is refused", async () => {
    const phone = testPhone({ format: "+254" });
    const req = { idempotencyKey: `receipt-${randomUUID()}`, recipient: { case: "phone" as const, value: phone }, templateKey: TemplateKey.RECEIPT, channels: [Channel.SMS],
      variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" } };
    const [first, racing] = await Promise.all([internal().sendNotification(req), internal().sendNotification(req)]);
    const again = await internal().sendNotification(req);
    assert.equal(first.deliveryIds.length, 1);
    assert.deepEqual(racing.deliveryIds, first.deliveryIds, "a concurrent repeat answers with the same delivery");
    assert.deepEqual(again.deliveryIds, first.deliveryIds);
    // Another number under the same key: refused, and nothing is written for it (no SMS goes there).
    const other = testPhone({ format: "+254" });
    await assert.rejects(internal().sendNotification({ ...req, recipient: { case: "phone", value: other } }), (e: ConnectError) => e.code === Code.AlreadyExists && /idempotency_key/.test(e.message));
    await eventually("the receipt SMS", () => smsTo(phone).length === 1);
    // Each send is committed as an attempt before its HTTP call, and a sent delivery is never claimed again: one attempt, one SMS.
    await eventually("the receipt's send recorded", async () => [DeliveryStatus.SENT, DeliveryStatus.DELIVERED].includes((await delivery(first.deliveryIds[0])).status));
    const attempts = await t.db.pool.query("SELECT count(*)::int AS n FROM notification.delivery_attempts WHERE delivery_id = $1", [first.deliveryIds[0]]);
    assert.equal(attempts.rows[0].n, 1);
    assert.equal(smsTo(phone).length, 1, "one SMS for the key");
    assert.equal(smsTo(other).length, 0, "none to the refused number");
    const written = await t.db.pool.query("SELECT count(*)::int AS n FROM notification.deliveries WHERE source_key = $1", [`rpc:${req.idempotencyKey}`]);
    assert.equal(written.rows[0].n, 1);
  });

  test("a batch of receipts is written with its keys' claims in one statement; each request is answered alone, and a repeated batch sends nothing twice", async () => {
    const [a, b, c, d, e, f, stopped] = [testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" })];
    await t.db.pool.query("INSERT INTO notification.sms_opt_outs (phone, provider) VALUES ($1, 'africastalking')", [normalisePhone(stopped)]);
    const variables = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
    const receipt = (phone: string, key = `receipt:${randomUUID()}`) =>
      ({ idempotencyKey: key, recipient: { case: "phone" as const, value: phone }, templateKey: TemplateKey.RECEIPT, channels: [Channel.SMS], variables });
    const used = receipt(d);
    const before = await internal().sendNotification(used);
    const [toA, toB, toC, toStopped] = [receipt(a), receipt(b), receipt(c), receipt(stopped)];
    const missing = { ...receipt(e), variables: { amount: "KES 150", worker: "Amina" } };
    const first = [toA, toB, toStopped, missing, { ...used, variables: { ...variables, worker: "your server" } }];
    const { result: { results }, statements } = await withStatements(() => internal().sendNotifications({ requests: first }));
    assert.equal(statements.filter((s) => /INSERT INTO "?notification"?\.idempotent_requests/.test(s)).length, 1, "one statement claims every key and writes every delivery");
    assert.equal(statements.filter((s) => s.includes("FROM notification.idempotent_requests")).length, 1, "one more reads the keys used before");
    assert.equal(results.length, first.length, "one result per request");
    const [ra, rb, rStopped, rMissing, rUsedOther] = results;
    for (const r of [ra, rb, rStopped]) assert.deepEqual([r.code, r.deliveryIds.length], [0, 1], r.message);
    assert.equal(rUsedOther.code, Code.AlreadyExists, "another message under a key used before is refused, that request only");
    assert.match(rUsedOther.message, /idempotency_key/);
    assert.equal(rMissing.code, Code.InvalidArgument);
    assert.match(rMissing.message, /variables.*reference/);
    assert.equal((await delivery(rStopped.deliveryIds[0])).status, DeliveryStatus.FAILED, "a number that texted STOP gets no SMS");
    // The refused request claimed nothing: sent again right, it goes out.
    const fixed = await internal().sendNotifications({ requests: [{ ...missing, variables }] });
    assert.equal(fixed.results[0].code, 0);

    // A key twice in one batch: the same message is one delivery, another is refused; a key sent before (alone) answers with its delivery.
    const second = [toC, toC, { ...toC, recipient: { case: "phone" as const, value: f } }, used, toA];
    const answers = (await internal().sendNotifications({ requests: second })).results;
    assert.deepEqual([answers[0].code, answers[0].deliveryIds.length], [0, 1]);
    assert.deepEqual(answers[1], answers[0]);
    assert.equal(answers[2].code, Code.AlreadyExists);
    assert.deepEqual(answers[3].deliveryIds, before.deliveryIds);
    assert.deepEqual(answers[4], ra);

    // The batches again (a pass repeated after its answer was lost): the same answers, nothing new.
    const again = (await internal().sendNotifications({ requests: [...first, ...second] })).results;
    assert.deepEqual(again, [...results, ...answers]);
    const sentIds = [ra, rb, answers[0], answers[3], fixed.results[0]].map((r) => r.deliveryIds[0]);
    await eventually("the receipts' sends recorded", async () => {
      for (const id of sentIds) if (![DeliveryStatus.SENT, DeliveryStatus.DELIVERED].includes((await delivery(id)).status)) return false;
      return true;
    });
    assert.deepEqual([a, b, c, d, e, f, stopped].map((p) => smsTo(p).length), [1, 1, 1, 1, 1, 0, 0], "one SMS per key; none for a refused request or to a number that texted STOP");
    const keys = [toA, toB, toC, toStopped, used, missing].map((r) => `rpc:${r.idempotencyKey}`);
    const written = await t.db.pool.query("SELECT count(*)::int AS n FROM notification.deliveries WHERE source_key = ANY($1::text[])", [keys]);
    assert.equal(written.rows[0].n, keys.length, "one delivery per key");
  });

  test("a malformed request in a batch is refused in its own result, naming the field; the others are queued and sent", async () => {
    const [good, alsoGood, badNumber] = [testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" })];
    const variables = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
    const receipt = (phone: string, key = `receipt:${randomUUID()}`) =>
      ({ idempotencyKey: key, recipient: { case: "phone" as const, value: phone }, templateKey: TemplateKey.RECEIPT, channels: [Channel.SMS], variables });
    const requests = [
      receipt(good),
      receipt(badNumber, "short"),
      { ...receipt(badNumber), recipient: { case: "phone" as const, value: "07-not-a-number" } },
      { ...receipt(badNumber), recipient: { case: undefined } },
      receipt(alsoGood),
    ];
    await assert.rejects(internal().sendNotification(requests[1]), (e: ConnectError) => e.code === Code.InvalidArgument && /idempotency_key/.test(e.message), "alone, it is refused by the contract's rules");
    const { results } = await internal().sendNotifications({ requests });
    assert.equal(results.length, requests.length, "one result per request");
    const [rGood, rShortKey, rBadPhone, rNoRecipient, rAlsoGood] = results;
    for (const r of [rGood, rAlsoGood]) assert.deepEqual([r.code, r.deliveryIds.length], [0, 1], r.message);
    assert.deepEqual([rShortKey.code, rShortKey.deliveryIds], [Code.InvalidArgument, []]);
    assert.match(rShortKey.message, /^idempotency_key: /);
    assert.deepEqual([rBadPhone.code, rBadPhone.deliveryIds], [Code.InvalidArgument, []]);
    assert.match(rBadPhone.message, /^phone: /);
    assert.deepEqual([rNoRecipient.code, rNoRecipient.deliveryIds], [Code.InvalidArgument, []]);
    assert.match(rNoRecipient.message, /recipient/);
    await eventually("the well-formed receipts sent", () => smsTo(good).length === 1 && smsTo(alsoGood).length === 1);
    const claimed = await t.db.pool.query("SELECT count(*)::int AS n FROM notification.idempotent_requests WHERE key = ANY($1::text[])", [requests.map((r) => r.idempotencyKey)]);
    assert.equal(claimed.rows[0].n, 2, "the refused requests claimed no key");
    assert.equal(smsTo(badNumber).length, 0);
  });

  test("a receipt's own statement claims its first attempt and the call sends it at once, with no dispatch message; a retry is handed to the bus", async () => {
    const variables = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
    const receipt = (phone: string) =>
      ({ idempotencyKey: `receipt:${randomUUID()}`, recipient: { case: "phone" as const, value: phone }, templateKey: TemplateKey.RECEIPT, channels: [Channel.SMS], variables });
    const [quick, alone, retried] = [testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" })];
    const { result: ids, statements } = await withStatements(async () => {
      const sent = [...(await internal().sendNotifications({ requests: [receipt(quick)] })).results[0].deliveryIds, ...(await internal().sendNotification(receipt(alone))).deliveryIds];
      await eventually("both sends recorded", async () => {
        for (const id of sent) if ((await delivery(id)).status !== DeliveryStatus.SENT) return false;
        return true;
      });
      return sent;
    });
    assert.equal(ids.length, 2);
    assert.equal(statements.filter((q) => q.startsWith("WITH read AS")).length, 0, "no dispatcher read them");
    for (const id of ids) {
      const d = await delivery(id);
      assert.deepEqual(d.attempts.map((a) => [a.provider, a.status]), [["africastalking", DeliveryStatus.SENT]], "one attempt, claimed by the statement that wrote the delivery");
      assert.equal(await dispatchMessages(id), 0, "no dispatch message");
    }
    assert.deepEqual([smsTo(quick).length, smsTo(alone).length], [1, 1]);

    // A transient failure: the attempt's record hands the retry to the bus, which sends it (after a failover here).
    sim.outage.add("africastalking");
    try {
      const { deliveryIds } = await internal().sendNotification(receipt(retried));
      const [sms] = await eventually("the SMS through Twilio", () => smsTo(retried).length > 0 && smsTo(retried));
      assert.equal(sms.provider, "twilio");
      const d = await deliveryIn(deliveryIds[0], DeliveryStatus.SENT);
      assert.deepEqual(d.attempts.map((a) => [a.provider, a.status]), [
        ["africastalking", DeliveryStatus.FAILED],
        ["africastalking", DeliveryStatus.FAILED],
        ["twilio", DeliveryStatus.SENT],
      ]);
      assert.equal(await dispatchMessages(deliveryIds[0]), 1, "one dispatch message, written with the first retry; the bus redelivers it");
      assert.equal(smsTo(retried).length, 1);
    } finally {
      sim.outage.delete("africastalking");
    }
  });

  test("Twilio answering 201 with a body that cannot be read has the message: the delivery is sent, not failed over to send it again", async () => {
    const phone = testPhone({ format: "+254" });
    sim.outage.add("africastalking");
    sim.garbledAnswers.add("twilio");
    try {
      const { deliveryIds } = await sendReceipt(phone, { amount: "KES 200", worker: "Juma", reference: "QK3" });
      const d = await deliveryIn(deliveryIds[0], DeliveryStatus.SENT);
      assert.deepEqual(d.attempts.map((a) => [a.provider, a.status]), [
        ["africastalking", DeliveryStatus.FAILED],
        ["africastalking", DeliveryStatus.FAILED],
        ["twilio", DeliveryStatus.SENT],
      ]);
    } finally {
      sim.outage.delete("africastalking");
      sim.garbledAnswers.delete("twilio");
    }
    // Before, the unread answer was Twilio's failure: the next round sent it again through Africa's Talking.
    assert.deepEqual(smsTo(phone).map((m) => m.provider), ["twilio"]);
  });

  test("Africa's Talking answering 201 with a body that cannot be read may have the message: the delivery is in doubt, not sent again", async () => {
    const phone = testPhone({ format: "+254" });
    sim.garbledAnswers.add("africastalking");
    try {
      const { deliveryIds } = await sendReceipt(phone, { amount: "KES 200", worker: "Juma", reference: "QK4" });
      const d = await deliveryIn(deliveryIds[0], DeliveryStatus.FAILED);
      assert.deepEqual(d.attempts.map((a) => a.provider), ["africastalking"]);
      assert.match(d.attempts[0].error, /unreadable 201 answer/);
    } finally {
      sim.garbledAnswers.delete("africastalking");
    }
    // Before, the unread answer was a transient failure: sent again, three times, then through Twilio.
    assert.deepEqual(smsTo(phone).map((m) => m.provider), ["africastalking"]);
  });

  test("a provider's edge answering 504 to a send the provider may have taken: the delivery is in doubt, not sent again", async () => {
    const phone = testPhone({ format: "+254" });
    sim.gatewayTimeouts.add("africastalking");
    try {
      const { deliveryIds } = await sendReceipt(phone, { amount: "KES 300", worker: "Juma", reference: "QK5" });
      const d = await deliveryIn(deliveryIds[0], DeliveryStatus.FAILED);
      assert.deepEqual(d.attempts.map((a) => a.provider), ["africastalking"]);
      assert.match(d.attempts[0].error, /HTTP 504/);
    } finally {
      sim.gatewayTimeouts.delete("africastalking");
    }
    // Before, a 504 was a transient failure: sent again, then through Twilio, and the receipt arrived twice or more.
    assert.deepEqual(smsTo(phone).map((m) => m.provider), ["africastalking"]);
  });

  test("with tracing on, a delivery's work (queued by the call) and its sent fact (by the dispatcher or by the call itself) carry the caller's trace; the provider's report its own", async () => {
    const receiver = await startOtlpReceiver();
    const tracing = await startTracing({ endpoint: receiver.url, serviceName: "notification-test", exportDelayMs: 50 });
    /** The delivery_updated facts' trace contexts, in order. */
    const factTraces = async (id: string) =>
      (await t.db.pool.query<{ traceparent: string | null }>(
        "SELECT traceparent FROM notification.outbox WHERE position($1 in encode(payload, 'escape')) > 0 AND subject = 'ttip.notification.delivery_updated' ORDER BY seq",
        [id],
      )).rows.map((r) => r.traceparent ?? "");
    /** The trace context of the delivery's first dispatch message (its work, written by the call). */
    const workTrace = async (id: string) =>
      (await t.db.pool.query<{ traceparent: string | null }>(
        "SELECT traceparent FROM notification.outbox WHERE position($1 in encode(payload, 'escape')) > 0 AND subject LIKE 'ttip.notification.dispatch.%' ORDER BY seq LIMIT 1",
        [id],
      )).rows[0]?.traceparent ?? "";
    try {
      const traceId = randomUUID().replaceAll("-", "");
      const phone = testPhone({ format: "+254" });
      // To a user: sent by a dispatcher, from the bus.
      const userId = randomUUID();
      await internal().upsertContact({ userId, phone });
      const variables = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
      const { deliveryIds } = await internal().sendNotification(
        { idempotencyKey: `trace-${randomUUID()}`, recipient: { case: "userId", value: userId }, templateKey: TemplateKey.RECEIPT, channels: [Channel.SMS], locale: "en", variables },
        { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } },
      );
      const id = deliveryIds[0];
      const [sms] = await eventually("the SMS", () => smsTo(phone).length > 0 && smsTo(phone));
      await deliveryIn(id, DeliveryStatus.SENT);
      assert.equal(await sim.reportDelivery(sms.id, "delivered"), 200);
      const facts = await factTraces(id);
      assert.equal(facts.length, 2, "sent, delivered (waiting is no public fact)");
      const [sent, delivered] = facts;
      const queued = await workTrace(id);
      assert.match(queued, new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`), "the work is written in the call's trace");
      const dispatch = await eventually("the dispatcher's span, continuing the work's", async () => {
        await tracing.flush();
        return receiver.spans.find((s) => s.traceId === traceId && s.name.startsWith("dispatch ") && `00-${traceId}-${s.parentSpanId}-01` === queued);
      });
      assert.equal(sent, `00-${traceId}-${dispatch.spanId}-01`, "the send (one statement, no transaction) is written in the dispatcher's span");
      assert.match(delivered, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, "the delivery report (a webhook) starts a trace of its own");
      assert.ok(!delivered.includes(traceId));

      // To a number: claimed by its own statement and sent by the call, both facts in the call's trace.
      const direct = (await internal().sendNotification(
        { idempotencyKey: `trace-${randomUUID()}`, recipient: { case: "phone", value: testPhone({ format: "+254" }) }, templateKey: TemplateKey.RECEIPT, locale: "en", variables },
        { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } },
      )).deliveryIds[0];
      await deliveryIn(direct, DeliveryStatus.SENT);
      const [directSent, ...more] = await factTraces(direct);
      assert.deepEqual(more, [], "sent only");
      assert.match(directSent, new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    } finally {
      await tracing.stop();
      await receiver.close();
    }
  });

  test("a tip tells the worker by SMS, push and in-app in their language; a re-published copy sends nothing more", async () => {
    const workerId = randomUUID();
    const phone = testPhone({ format: "+254" });
    await internal().upsertContact({ userId: workerId, phone, locale: "sw" });
    await asUser(workerId).registerPushToken({ token: `fcm-token-${workerId}`, platform: "android" });
    const tip = { tipId: randomUUID(), workerId, amount: kesMinor(15000n), fee: kesMinor(750n), net: kesMinor(14250n), customerPhoneMasked: "2547******11", message: "Asante sana!" };
    const eventId = await publish(t.ctx.bus, "ttip.payment.tip_succeeded", TipSucceededSchema, tip);
    const [sms] = await eventually("the tip SMS", () => smsTo(phone).length > 0 && smsTo(phone));
    assert.equal(sms.body, 'Umepokea bakshishi ya KES 150 kutoka kwa 2547******11. Unapata KES 142.50 baada ya ada. "Asante sana!"');
    const push = await eventually("the push", () => sim.sentBy("fcm").find((m) => m.to === `fcm-token-${workerId}`));
    assert.equal(push.subject, "Umepokea bakshishi");
    const inbox = await asUser(workerId).listInAppNotifications({});
    assert.equal(inbox.unreadCount, 1);
    assert.equal(inbox.notifications[0].title, "Umepokea bakshishi");

    // The same event under a new bus message id passes the inbox; the unique key stops it.
    await publish(t.ctx.bus, "ttip.payment.tip_succeeded", TipSucceededSchema, tip, eventId, randomUUID());
    await eventually("the copy to be consumed", async () => {
      const r = await t.db.pool.query("SELECT count(*)::int AS n FROM notification.inbox WHERE consumer = 'notification-tip-succeeded'");
      return r.rows[0].n >= 2;
    });
    // The copy's transaction has committed: a delivery it made would be in the rows counted below.
    assert.equal(smsTo(phone).length, 1);
    assert.equal(sim.sentBy("fcm").filter((m) => m.to === `fcm-token-${workerId}`).length, 1);
    assert.equal((await asUser(workerId).listInAppNotifications({})).unreadCount, 1);
    const rows = await t.db.pool.query<{ id: string; channel: Channel }>("SELECT id, channel FROM notification.deliveries WHERE source_key = $1 ORDER BY channel", [`event:${eventId}`]);
    assert.deepEqual(rows.rows.map((r) => r.channel), [Channel.SMS, Channel.PUSH, Channel.IN_APP]);
    // The SMS was claimed by the trigger's own statement and sent once its batch committed; the push went through the bus.
    const [bySms, byPush] = rows.rows;
    assert.equal(await dispatchMessages(bySms.id), 0, "no dispatch message for the SMS");
    assert.deepEqual((await deliveryIn(bySms.id, DeliveryStatus.SENT)).attempts.map((a) => [a.provider, a.status]), [["africastalking", DeliveryStatus.SENT]]);
    assert.equal(await dispatchMessages(byPush.id), 1, "the push's dispatch message");
  });

  test("a card tip's money going back tells its worker what left their balance, and a refund refused that it is back; a pool's tells its venue's managers", async () => {
    const workerId = randomUUID();
    const phone = testPhone({ format: "+254" });
    await internal().upsertContact({ userId: workerId, phone, locale: "en" });
    await asUser(workerId).registerPushToken({ token: `fcm-token-${workerId}`, platform: "android" });
    // A venue with two managers in qr, one reading Swahili: its creator, and one written beside (as AddVenueManager writes it).
    const venueId = randomUUID();
    const managers = [{ id: randomUUID(), phone: testPhone({ format: "+254" }), locale: "en" }, { id: randomUUID(), phone: testPhone({ format: "+254" }), locale: "sw" }];
    await createClient(QrService, t.ctx.peers("qr")).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Java House" }, { headers: callerHeaders(managers[0].id, "venue_manager") });
    await t.db.pool.query("INSERT INTO qr.venue_managers (venue_id, manager_id) VALUES ($1, $2)", [venueId, managers[1].id]);
    for (const m of managers) await internal().upsertContact({ userId: m.id, phone: m.phone, locale: m.locale });
    const tipId = randomUUID();
    const usd = (amountMinor: bigint) => ({ currency: "USD", amountMinor });
    const reversal = (kind: TipReversalKind, sign: bigint, workerOf: string = workerId) => ({
      tipId, workerId: workerOf, venueId, kind, reversalId: randomUUID(), amount: usd(sign * 400n), fee: usd(sign * 20n), net: kesMinor(sign * 46046n),
    });
    const events = [
      await publish(t.ctx.bus, "ttip.payment.tip_reversed", TipReversedSchema, reversal(TipReversalKind.REFUND, 1n)),
      await publish(t.ctx.bus, "ttip.payment.tip_reversed", TipReversedSchema, reversal(TipReversalKind.REFUND_REFUSED, -1n)),
    ];
    // A venue's pool tip (no worker): the pool's money, so its managers are told.
    const pooled = [
      await publish(t.ctx.bus, "ttip.payment.tip_reversed", TipReversedSchema, reversal(TipReversalKind.CHARGEBACK, 1n, "")),
      await publish(t.ctx.bus, "ttip.payment.tip_reversed", TipReversedSchema, reversal(TipReversalKind.REFUND_REFUSED, -1n, "")),
    ];
    const texts = await eventually("both SMS", () => smsTo(phone).length >= 2 && smsTo(phone).map((m) => m.body).sort());
    const ref = shortRef(tipId);
    assert.deepEqual(texts, [
      `KES 460.46 of a card tip (ref ${ref}) went back to the customer's card and was taken from your TTIP balance.`,
      `The refund of KES 460.46 of a card tip (ref ${ref}) was not made: the money is back in your TTIP balance.`,
    ]);
    const managerTexts = await eventually("each manager's two SMS", () => managers.every((m) => smsTo(m.phone).length >= 2) && managers.map((m) => smsTo(m.phone).map((s) => s.body).sort()));
    assert.deepEqual(managerTexts, [
      [
        `KES 460.46 of a card tip to Java House's pool (ref ${ref}) went back to the customer's card and was taken from the pool.`,
        `The refund of KES 460.46 of a card tip to Java House's pool (ref ${ref}) was not made: the money is back in the pool.`,
      ],
      [
        `KES 460.46 ya bakshishi ya kadi kwa mfuko wa Java House (kumb. ${ref}) imerudishwa kwa kadi ya mteja na kutolewa kwenye mfuko.`,
        `Marejesho ya KES 460.46 ya bakshishi ya kadi kwa mfuko wa Java House (kumb. ${ref}) hayakufanyika: pesa imerudi kwenye mfuko.`,
      ].sort(),
    ]);
    await eventually("each event applied by both consumers", async () => (await t.db.pool.query(
      "SELECT count(*)::int AS n FROM notification.inbox WHERE consumer IN ('notification-tip-reversed', 'notification-tip-reversed-venue') AND event_id = ANY($1::uuid[])",
      [[...events, ...pooled]])).rows[0].n === 8);
    const { rows } = await t.db.pool.query<{ source_key: string; n: number; users: string[] }>(
      "SELECT source_key, count(*)::int AS n, array_agg(DISTINCT user_id::text ORDER BY user_id::text) AS users FROM notification.deliveries WHERE source_key = ANY($1) GROUP BY source_key",
      [[...events, ...pooled].map((e) => `event:${e}`)]);
    const byKey = new Map(rows.map((r) => [r.source_key, [r.n, r.users]]));
    for (const e of events) assert.deepEqual(byKey.get(`event:${e}`), [3, [workerId]], "the worker's by SMS, push and in-app; no manager's");
    // SMS and in-app each (no push token registered), to each manager; none to the worker.
    for (const e of pooled) assert.deepEqual(byKey.get(`event:${e}`), [4, managers.map((m) => m.id).sort()], "the managers'");
  });

  test("an M-Pesa tip reversed tells its worker it went back to the customer's M-Pesa (not a card), in their language; a reversal refused, that it is back", async () => {
    const tipId = randomUUID();
    const workers = ["en", "sw"].map((locale) => ({ id: randomUUID(), phone: testPhone({ format: "+254" }), locale }));
    for (const w of workers) {
      await internal().upsertContact({ userId: w.id, phone: w.phone, locale: w.locale });
      for (const [kind, sign] of [[TipReversalKind.REFUND, 1n], [TipReversalKind.REFUND_REFUSED, -1n]] as const) {
        await publish(t.ctx.bus, "ttip.payment.tip_reversed", TipReversedSchema, {
          tipId, workerId: w.id, method: PaymentMethod.MPESA, kind, reversalId: randomUUID(), amount: kesMinor(sign * 10000n), fee: kesMinor(sign * 500n), net: kesMinor(sign * 9500n),
        });
      }
    }
    const ref = shortRef(tipId);
    const texts = await eventually("each worker's two SMS", () => workers.every((w) => smsTo(w.phone).length >= 2) && workers.map((w) => smsTo(w.phone).map((m) => m.body).sort()));
    assert.deepEqual(texts, [
      [
        `KES 95 of an M-Pesa tip (ref ${ref}) went back to the customer's M-Pesa and was taken from your TTIP balance.`,
        `The reversal of KES 95 of an M-Pesa tip (ref ${ref}) was not made: the money is back in your TTIP balance.`,
      ],
      [
        `KES 95 ya bakshishi ya M-Pesa (kumb. ${ref}) imerudishwa kwa M-Pesa ya mteja na kutolewa kwenye salio lako la TTIP.`,
        `Urejeshaji wa KES 95 ya bakshishi ya M-Pesa (kumb. ${ref}) haukufanyika: pesa imerudi kwenye salio lako la TTIP.`,
      ],
    ]);
  });

  test("a venue's managers are told who joined or left them, never the one who did it; a manager removed by another is told", async () => {
    const venueId = randomUUID();
    const [amina, baraka, chebet] = ["en", "sw", "en"].map((locale) => ({ id: randomUUID(), phone: testPhone({ format: "+254" }), locale }));
    await createClient(QrService, t.ctx.peers("qr")).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Java House" }, { headers: callerHeaders(amina.id, "venue_manager") });
    for (const m of [amina, baraka, chebet]) await internal().upsertContact({ userId: m.id, phone: m.phone, locale: m.locale });
    const manages = (m: { id: string }) => t.db.pool.query("INSERT INTO qr.venue_managers (venue_id, manager_id) VALUES ($1, $2)", [venueId, m.id]);
    const managesNoMore = (m: { id: string }) => t.db.pool.query("DELETE FROM qr.venue_managers WHERE venue_id = $1 AND manager_id = $2", [venueId, m.id]);
    const changed = (userId: string, change: string, actorId: string) => publish(t.ctx.bus, "ttip.venue.manager_changed", VenueManagerChangedSchema, { venueId, userId, displayName: "Chebet", change, actorId });
    /** Who an event's messages went to, by user. */
    const recipients = async (eventId: string) => (await t.db.pool.query<{ user_id: string }>(
      "SELECT DISTINCT user_id::text FROM notification.deliveries WHERE source_key = $1 ORDER BY 1", [`event:${eventId}`])).rows.map((r) => r.user_id);

    // Chebet accepts an invitation: the managers before them are told, Chebet is not.
    await manages(baraka);
    await manages(chebet);
    const joined = await changed(chebet.id, "joined", chebet.id);
    assert.deepEqual(await eventually("both told of the new manager", () => smsTo(amina.phone).length >= 1 && smsTo(baraka.phone).length >= 1 && [smsTo(amina.phone)[0].body, smsTo(baraka.phone)[0].body]), [
      "Chebet now manages Java House on TTIP. If you did not expect this, remove them on the venue's Managers page.",
      "Chebet sasa anasimamia Java House kwenye TTIP. Kama hukutarajia hili, mwondoe kwenye ukurasa wa Mameneja.",
    ]);
    assert.deepEqual(await recipients(joined), [amina.id, baraka.id].sort());

    // Amina removes Chebet: Baraka and Chebet are told, Amina is not.
    await managesNoMore(chebet);
    const removed = await changed(chebet.id, "removed", amina.id);
    assert.equal(await eventually("Chebet told", () => smsTo(chebet.phone)[0]?.body), "You no longer manage Java House on TTIP: another manager removed you. Ask them if you did not expect this.");
    assert.equal(await eventually("Baraka told", () => smsTo(baraka.phone)[1]?.body), "Chebet hasimamii tena Java House kwenye TTIP.");
    assert.deepEqual(await recipients(removed), [baraka.id, chebet.id].sort());

    // Baraka steps down (removed by themself): Amina is told, Baraka gets no "removed you".
    await managesNoMore(baraka);
    const steppedDown = await changed(baraka.id, "removed", baraka.id);
    await eventually("Amina told", () => smsTo(amina.phone).length >= 2);
    assert.deepEqual(await recipients(steppedDown), [amina.id]);
    assert.equal(smsTo(baraka.phone).length, 2, "no message to Baraka of their own stepping down");
  });

  test("a venue's managers are told who accepted their staff invitation (in the app); a worker whose place a manager ended is told; invitations and withdrawn ones tell no one", async () => {
    const venueId = randomUUID();
    const [amina, baraka, wanjiru] = ["en", "sw", "en"].map((locale) => ({ id: randomUUID(), phone: testPhone({ format: "+254" }), locale }));
    await createClient(QrService, t.ctx.peers("qr")).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Mama Oliech" }, { headers: callerHeaders(amina.id, "venue_manager") });
    await t.db.pool.query("INSERT INTO qr.venue_managers (venue_id, manager_id) VALUES ($1, $2)", [venueId, baraka.id]);
    for (const u of [amina, baraka, wanjiru]) await internal().upsertContact({ userId: u.id, phone: u.phone, locale: u.locale });
    const changed = (change: string, workerId: string) =>
      publish(t.ctx.bus, "ttip.venue.member_changed", VenueMemberChangedSchema, { venueId, memberId: randomUUID(), workerId, change, displayName: "Wanjiru", roleId: "bar" });
    const told = async (eventId: string) => (await t.db.pool.query<{ user_id: string; template_key: number; channel: number }>(
      "SELECT user_id::text, template_key, channel FROM notification.deliveries WHERE source_key = $1 ORDER BY 1, 3", [`event:${eventId}`])).rows;
    const consumed = (ids: string[]) => eventually("the events consumed", async () => (await t.db.pool.query(
      "SELECT count(*)::int AS n FROM notification.inbox WHERE consumer = 'notification-venue-member-changed' AND event_id = ANY($1::uuid[])", [ids])).rows[0].n === ids.length);

    const quiet = [await changed("invited", ""), await changed("left", ""), await changed("updated", wanjiru.id)];
    const joined = await changed("joined", wanjiru.id);
    await consumed([...quiet, joined]);
    for (const e of quiet) assert.deepEqual(await told(e), [], "an invitation, a withdrawn one, a role changed: no one told");
    // In the app only (no push token registered): no SMS per hire.
    assert.deepEqual(await told(joined), [amina, baraka].map((m) => ({ user_id: m.id, template_key: TemplateKey.STAFF_JOINED, channel: Channel.IN_APP })).sort((a, b) => a.user_id.localeCompare(b.user_id)));
    const { notifications } = await t.client(NotificationService, { subject: baraka.id, roles: ["venue_manager"] }).listInAppNotifications({});
    assert.equal(notifications[0]?.body, "Wanjiru amekubali mwaliko wako na sasa yuko kwenye wafanyakazi wa Mama Oliech kwenye TTIP.");

    const left = await changed("left", wanjiru.id);
    assert.equal(await eventually("Wanjiru told", () => smsTo(wanjiru.phone)[0]?.body),
      "Mama Oliech ended your place on its staff on TTIP: its codes no longer tip you. Shares paid stay yours; tips to your own code still reach you.");
    assert.deepEqual([...new Set((await told(left)).map((r) => r.user_id))], [wanjiru.id], "the worker only");
    assert.equal(smsTo(amina.phone).length + smsTo(baraka.phone).length, 0, "no SMS to the managers");
  });

  test("a tip held by two rules, and held again when its callback disagrees, tells its worker once", async () => {
    const workerId = randomUUID();
    const phone = testPhone({ format: "+254" });
    await internal().upsertContact({ userId: workerId, phone });
    const tipId = randomUUID();
    const eventIds: string[] = [];
    for (const reasonCode of ["SELF_TIP", "AMOUNT_OUTLIER", "CALLBACK_MISMATCH"]) {
      eventIds.push(await publish(t.ctx.bus, "ttip.payment.fraud_alert", FraudAlertSchema, { alertId: randomUUID(), reasonCode, tipId, workerId, action: "held" }));
    }
    await eventually("the three alerts consumed", async () => {
      const r = await t.db.pool.query("SELECT count(*)::int AS n FROM notification.inbox WHERE consumer = 'notification-fraud-alert' AND event_id = ANY($1::uuid[])", [eventIds]);
      return r.rows[0].n === 3;
    });
    await eventually("the hold SMS", () => smsTo(phone).length > 0);
    // Before, one SMS and one in-app notice per alert: three for one paused tip.
    const { rows } = await t.db.pool.query("SELECT channel FROM notification.deliveries WHERE user_id = $1 AND template_key = $2", [workerId, TemplateKey.FRAUD_HOLD]);
    assert.deepEqual(rows.map((r) => r.channel).sort(), [Channel.SMS, Channel.IN_APP].sort());
    assert.equal(smsTo(phone).length, 1);
  });

  test("an Africa's Talking outage fails over to Twilio after the allowed retries", async () => {
    sim.outage.add("africastalking");
    try {
      const before = sim.calls.africastalking;
      const phone = testPhone({ format: "+254" });
      const { deliveryIds } = await sendReceipt(phone, { amount: "KES 200", worker: "Juma", reference: "QK1" });
      const [sms] = await eventually("the SMS through Twilio", () => smsTo(phone).length > 0 && smsTo(phone));
      assert.equal(sms.provider, "twilio");
      assert.equal(sms.body, "TTIP receipt: you tipped Juma KES 200. Ref QK1. Thank you!");
      assert.equal(sms.callbackUrl, `${serviceUrl}/webhooks/twilio/status`);
      assert.equal(sim.calls.africastalking - before, 2);
      const d = await deliveryIn(deliveryIds[0], DeliveryStatus.SENT);
      assert.deepEqual(d.attempts.map((a) => [a.provider, a.status]), [
        ["africastalking", DeliveryStatus.FAILED],
        ["africastalking", DeliveryStatus.FAILED],
        ["twilio", DeliveryStatus.SENT],
      ]);
      assert.match(d.attempts[0].error, /HTTP 500/);

      // The signed status callback settles it; a forged one is refused and changes nothing.
      const forged = await fetch(`${serviceUrl}/webhooks/twilio/status`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": "AAAA" },
        body: new URLSearchParams({ MessageSid: sms.id, MessageStatus: "failed" }),
      });
      assert.equal(forged.status, 403);
      assert.equal((await delivery(deliveryIds[0])).status, DeliveryStatus.SENT);
      assert.equal(await sim.reportDelivery(sms.id, "delivered"), 204);
      assert.equal((await delivery(deliveryIds[0])).status, DeliveryStatus.DELIVERED);
    } finally {
      sim.outage.delete("africastalking");
    }
  });

  test("with both SMS providers down the delivery waits after every attempt, and goes once they are back; provider health counts the failures with the last error", async () => {
    const health = async () => {
      const r = await t.client(NotificationAdminService, { subject: randomUUID(), roles: ["support"] }).getProviderHealth({});
      assert.equal(r.windowHours, 24);
      return new Map(r.providers.filter((p) => p.channel === Channel.SMS).map((p) => [p.provider, p]));
    };
    const before = await health();
    sim.outage.add("africastalking");
    sim.outage.add("twilio");
    try {
      const phone = testPhone({ format: "+254" });
      const { deliveryIds } = await sendReceipt(phone, { amount: "KES 200", worker: "Juma", reference: "QK2" });
      // Every attempt on both made: before, failed for good; now it waits for the next round, from the first provider.
      const d = await eventually("every provider tried", async () => {
        const x = await delivery(deliveryIds[0]);
        return x.attempts.length === 4 && x.attempts.every((a) => a.status === DeliveryStatus.FAILED) && x;
      });
      assert.deepEqual(d.attempts.map((a) => a.provider), ["africastalking", "africastalking", "twilio", "twilio"]);
      assert.equal(DeliveryStatus[d.status], DeliveryStatus[DeliveryStatus.RETRYING]);
      assert.equal(smsTo(phone).length, 0);
      const listed = await admin().listDeliveries({ status: DeliveryStatus.RETRYING, channel: Channel.SMS });
      assert.ok(listed.deliveries.some((x) => x.deliveryId === deliveryIds[0]));
      const after = await health();
      for (const provider of ["africastalking", "twilio"]) {
        const [was, now] = [before.get(provider), after.get(provider)!];
        assert.equal(now.failed - (was?.failed ?? 0n), 2n, `${provider}: two more failed attempts`);
        assert.equal(now.sent, was?.sent ?? 0n, `${provider}: nothing more sent`);
        assert.match(now.lastError, /^HTTP 50\d/, "the simulated outage");
        assert.ok(Date.now() - timestampDate(now.lastErrorAt!).getTime() < 60_000, "the last error is this one");
      }
      assert.ok((before.get("twilio")?.sent ?? 0n) >= 1n, "the failover test's SMS went out through Twilio");
      // Back up after the pause (the service's clock moved on): the next round sends it, once.
      sim.outage.delete("africastalking");
      sim.outage.delete("twilio");
      clock.advance(config.retry.roundPauseMs);
      await deliveryIn(deliveryIds[0], DeliveryStatus.SENT);
      assert.equal(smsTo(phone).length, 1);
    } finally {
      sim.outage.delete("africastalking");
      sim.outage.delete("twilio");
    }
  });

  test("a number or push token nobody can reach fails at once, without failover, and a dead token is dropped", async () => {
    const phone = testPhone({ format: "+254" });
    sim.invalidNumbers.add(phone);
    const twilioCalls = sim.calls.twilio;
    const { deliveryIds } = await sendReceipt(phone, { amount: "KES 20", worker: "Otieno", reference: "QK4" });
    const d = await deliveryIn(deliveryIds[0], DeliveryStatus.FAILED);
    assert.equal(d.attempts.length, 1);
    assert.equal(d.attempts[0].error, "403 InvalidPhoneNumber");
    assert.equal(sim.calls.twilio, twilioCalls);

    const workerId = randomUUID();
    const dead = `fcm-dead-${workerId}`;
    sim.deadPushTokens.add(dead);
    await asUser(workerId).registerPushToken({ token: dead, platform: "ios" });
    const push = await payoutPush(workerId, "QK5");
    await eventually("push failed", async () => (await delivery(push.deliveryIds[0])).status === DeliveryStatus.FAILED);
    const tokens = await t.db.pool.query("SELECT 1 FROM notification.push_tokens WHERE user_id = $1", [workerId]);
    assert.equal(tokens.rowCount, 0);
  });

  test("a push FCM answers 200 with a body that is not its own is in doubt at once: recorded so, not resent", async () => {
    const workerId = randomUUID();
    const token = `fcm-garbled-${workerId}`;
    await asUser(workerId).registerPushToken({ token, platform: "android" });
    sim.garbled.add("fcm");
    try {
      const push = await payoutPush(workerId, "QK6");
      // Before, the send threw: left 'sending' for its lease (a minute), then sent again.
      const d = await deliveryIn(push.deliveryIds[0], DeliveryStatus.FAILED);
      assert.deepEqual(d.attempts.map((a) => a.error), ["in doubt: unreadable 200 answer"]);
    } finally {
      sim.garbled.delete("fcm");
    }
    assert.equal(sim.sent.filter((m) => m.to === token).length, 1, "sent once");
  });

  test("a user keeps at most MAX_PUSH_TOKENS_PER_USER push tokens: the oldest go, and a push goes to the ones kept", async () => {
    const workerId = randomUUID();
    const tokens = Array.from({ length: MAX_PUSH_TOKENS_PER_USER + 2 }, (_, i) => `fcm-many-${i}-${workerId}`);
    for (const token of tokens) await asUser(workerId).registerPushToken({ token, platform: "android" });
    const { rows } = await t.db.pool.query<{ token: string }>("SELECT token FROM notification.push_tokens WHERE user_id = $1", [workerId]);
    // Before, every one was kept, and each push went to all of them at once.
    assert.deepEqual(rows.map((r) => r.token).sort(), tokens.slice(2).sort());
    const push = await payoutPush(workerId, "QK5");
    await deliveryIn(push.deliveryIds[0], DeliveryStatus.SENT);
    assert.deepEqual(sim.sentBy("fcm").filter((m) => m.to.endsWith(workerId)).map((m) => m.to).sort(), tokens.slice(2).sort());
  });

  test("a provider's words holding a NUL are stored with U+FFFD: a refusal fails its delivery once (not sent again for ever), a delivery report is applied (not answered 500 for ever)", async () => {
    const phone = testPhone({ format: "+254" });
    sim.refusalWords.set(phone, "Invalid\u0000PhoneNumber");
    const calls = sim.calls.africastalking;
    const { deliveryIds } = await sendReceipt(phone, { amount: "KES 20", worker: "Otieno", reference: "QK4" });
    const d = await deliveryIn(deliveryIds[0], DeliveryStatus.FAILED);
    assert.deepEqual(d.attempts.map((a) => a.error), ["403 Invalid\ufffdPhoneNumber"]);
    assert.equal(sim.calls.africastalking - calls, 1, "asked once");

    const reported = testPhone({ format: "+254" });
    const sms = await sendReceipt(reported, { amount: "KES 50", worker: "Wanjiru", reference: "QK3" });
    const [sent] = await eventually("the SMS", () => smsTo(reported).length > 0 && smsTo(reported));
    await deliveryIn(sms.deliveryIds[0], DeliveryStatus.SENT);
    const report = await fetch(`${serviceUrl}/webhooks/africastalking/delivery?token=at-callback-secret`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ id: sent.id, status: "Rejected", failureReason: "Blacklisted\u0000", "network\u0000Code": "63902" }),
    });
    assert.equal(report.status, 200);
    assert.equal((await delivery(sms.deliveryIds[0])).status, DeliveryStatus.FAILED);
    const { rows: [kept] } = await t.db.pool.query<{ last_error: string }>("SELECT last_error FROM notification.deliveries WHERE id = $1", [sms.deliveryIds[0]]);
    assert.equal(kept.last_error, "Blacklisted\ufffd");
  });

  test("a retried send to a user answers what the first made: an e-mail address added in between gets nothing", async () => {
    const workerId = randomUUID();
    await internal().upsertContact({ userId: workerId, phone: testPhone({ format: "+254" }) });
    const req = { idempotencyKey: `weekly-${randomUUID()}`, recipient: { case: "userId" as const, value: workerId }, templateKey: TemplateKey.WEEKLY_SUMMARY, variables: { week: "17-23 Nov", count: "12", total: "KES 2,400" } };
    const first = await internal().sendNotification(req);
    const email = `w-${workerId}@example.com`;
    await asUser(workerId).updatePreferences({ preferences: { email } });
    const again = await internal().sendNotification(req);
    // Before, the retry planned the message again by the settings of now: a new e-mail delivery, sent.
    assert.deepEqual([...again.deliveryIds].sort(), [...first.deliveryIds].sort());
    const { rows } = await t.db.pool.query("SELECT count(*)::int AS n FROM notification.deliveries WHERE source_key = $1", [`rpc:${req.idempotencyKey}`]);
    assert.equal(rows[0].n, first.deliveryIds.length);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sim.sentBy("sendgrid").filter((m) => m.to === email).length, 0);
  });

  test("delivery reports from Africa's Talking (token) and SendGrid (signed) update the state", async () => {
    const phone = testPhone({ format: "+254" });
    const sms = await sendReceipt(phone, { amount: "KES 50", worker: "Wanjiru", reference: "QK3" });
    const [sent] = await eventually("the SMS", () => smsTo(phone).length > 0 && smsTo(phone));
    await deliveryIn(sms.deliveryIds[0], DeliveryStatus.SENT);
    const wrongToken = await fetch(`${serviceUrl}/webhooks/africastalking/delivery?token=guess`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ id: sent.id, status: "Failed" }),
    });
    assert.equal(wrongToken.status, 403);
    assert.equal((await delivery(sms.deliveryIds[0])).status, DeliveryStatus.SENT);
    assert.equal(await sim.reportDelivery(sent.id, "delivered"), 200);
    assert.equal((await delivery(sms.deliveryIds[0])).status, DeliveryStatus.DELIVERED);

    const email = `customer-${randomUUID().slice(0, 8)}@example.com`;
    const mail = await internal().sendNotification({
      idempotencyKey: `receipt-${randomUUID()}`,
      recipient: { case: "email", value: email },
      templateKey: TemplateKey.RECEIPT,
      locale: "sw",
      variables: { amount: "KES 50", worker: "Wanjiru", reference: "QK3" },
    });
    const message = await eventually("the e-mail", () => sim.sentBy("sendgrid").find((m) => m.to === email));
    assert.equal(message.subject, "Risiti yako ya TTIP");
    assert.match(message.body, /^Habari,\n\nRisiti ya TTIP: umetoa bakshishi ya KES 50 kwa Wanjiru/);
    await deliveryIn(mail.deliveryIds[0], DeliveryStatus.SENT);
    const unsigned = await fetch(`${serviceUrl}/webhooks/sendgrid/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([{ event: "delivered", sg_message_id: `${message.id}.x` }]),
    });
    assert.equal(unsigned.status, 403);
    // Signed, but eleven minutes ago: a captured batch sent again is refused, and changes nothing.
    assert.equal(await sim.reportDelivery(message.id, "failed", new Date(Date.now() - 11 * 60_000)), 403);
    assert.equal((await delivery(mail.deliveryIds[0])).status, DeliveryStatus.SENT);
    // Behind entries that are no event (before, each read threw: the batch refused, sent again for ever, never applied).
    assert.equal(await sim.reportDelivery(message.id, "failed", new Date(), [null, "x", 7]), 200);
    assert.equal((await delivery(mail.deliveryIds[0])).status, DeliveryStatus.FAILED);
  });

  test("STOP by SMS (any case, with its punctuation) opts a number out of everything but OTPs; START alone opts it back in", async () => {
    const workerId = randomUUID();
    const phone = testPhone({ format: "+254" });
    await internal().upsertContact({ userId: workerId, phone, locale: "en" });
    const inbound = `${serviceUrl}/webhooks/africastalking/inbound?token=at-callback-secret`;
    // Before, a word with its punctuation ("Stop.") opted nobody out.
    assert.equal(await sim.inboundSms("africastalking", inbound, phone, "Stop."), 200);
    await publish(t.ctx.bus, "ttip.payment.payout_succeeded", PayoutSucceededSchema, {
      payoutId: randomUUID(), workerId, amount: kesMinor(100000n), mpesaReceipt: "QK7HX1", recipientPhoneMasked: "2547******00",
    });
    const failed = await eventually("the refused SMS delivery", async () => {
      const r = await t.db.pool.query("SELECT status, last_error FROM notification.deliveries WHERE user_id = $1 AND channel = $2", [workerId, Channel.SMS]);
      return r.rows[0];
    });
    assert.deepEqual(failed, { status: "failed", last_error: "recipient texted STOP" });
    const inApp = await asUser(workerId).listInAppNotifications({});
    assert.equal(inApp.notifications[0].body, "KES 1,000 has been sent to your M-Pesa 2547******00. Ref QK7HX1.");
    await internal().sendNotification({ idempotencyKey: `otp-${randomUUID()}`, recipient: { case: "userId", value: workerId }, templateKey: TemplateKey.OTP, variables: { code: "111222", minutes: "5" } });
    await eventually("the OTP despite STOP", () => smsTo(phone).some((m) => m.body.includes("111222")));

    const twilioInbound = `${serviceUrl}/webhooks/twilio/inbound`;
    const forged = await fetch(twilioInbound, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ From: phone, Body: "START" }) });
    assert.equal(forged.status, 403);
    // "Yes, thanks." or "Yes thanks" (to a sign-in code, say) is no opt-in: only the word alone.
    assert.equal(await sim.inboundSms("twilio", twilioInbound, phone, "Yes, thanks."), 200);
    assert.equal(await sim.inboundSms("twilio", twilioInbound, phone, "Yes thanks"), 200);
    assert.equal((await t.db.pool.query("SELECT count(*)::int AS n FROM notification.sms_opt_outs WHERE phone = $1", [phone.replace(/^\+/, "")])).rows[0].n, 1, "still opted out");
    assert.equal(await sim.inboundSms("twilio", twilioInbound, phone, "START"), 200);
    await publish(t.ctx.bus, "ttip.payment.payout_failed", PayoutFailedSchema, { payoutId: randomUUID(), workerId, amount: kesMinor(100000n), resultCode: "2001", reason: "wrong M-Pesa PIN" });
    const sms = await eventually("the SMS after START", () => smsTo(phone).find((m) => m.body.startsWith("Your withdrawal")));
    assert.equal(sms.body, "Your withdrawal of KES 1,000 failed: wrong M-Pesa PIN. The money has not left your TTIP account.");
  });

  test("an SMS to a number that texted STOP is written failed at once, and its event says so (and no work for the dispatcher)", async () => {
    const phone = normalisePhone(testPhone({ format: "+254" }));
    await t.db.pool.query("INSERT INTO notification.sms_opt_outs (phone, provider) VALUES ($1, 'africastalking')", [phone]);
    const client = await t.db.pool.connect();
    try {
      // Rolled back at the end: the dispatcher never sees these rows, so only enqueue decided;
      // now() is this transaction's start, so the outbox rows it wrote are those with that time.
      await client.query("BEGIN");
      const variables = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
      const [refused] = await enqueue(client, { sourceKey: `test:${randomUUID()}`, to: { phone }, templateKey: TemplateKey.RECEIPT, variables });
      const [otp] = await enqueue(client, { sourceKey: `test:${randomUUID()}`, to: { phone }, templateKey: TemplateKey.OTP, variables: { code: "1234", minutes: "5" } });
      const rows = await client.query("SELECT id, status, last_error FROM notification.deliveries WHERE id = ANY($1::uuid[]) ORDER BY status", [[refused, otp]]);
      assert.deepEqual(rows.rows, [{ id: refused, status: "failed", last_error: "recipient texted STOP" }, { id: otp, status: "queued", last_error: null }]);
      const events = await client.query<{ event_id: string; payload: Buffer }>(
        "SELECT event_id, payload FROM notification.outbox WHERE created_at = now() AND subject = 'ttip.notification.delivery_updated'",
      );
      const said = events.rows.map((r) => {
        const e = fromBinary(DeliveryUpdatedSchema, r.payload);
        assert.equal(e.meta?.id, r.event_id, "the row's event id is its payload's");
        return [e.deliveryId, e.status];
      });
      assert.deepEqual(said, [[refused, "failed"]], "the refused SMS's outcome; the queued OTP's waiting is no fact");
      assert.deepEqual(await dispatchWork(client), [`${otp}:queued:${dispatchSubject(dispatchShardOf(otp))}`], "only the queued OTP goes to a dispatcher");
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  });

  /** A delivery as the former version wrote it, ten minutes ago: the delivery and its public fact, no dispatch message. */
  const stranded = async (phone: string) => {
    const client = await t.db.pool.connect();
    try {
      await client.query("BEGIN");
      const [id] = await enqueue(client, { sourceKey: `test:${randomUUID()}`, to: { phone }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" } });
      await client.query("DELETE FROM notification.outbox WHERE created_at = now() AND subject LIKE 'ttip.notification.dispatch.%'");
      await client.query("UPDATE notification.deliveries SET created_at = now() - interval '10 minutes', updated_at = now() - interval '10 minutes' WHERE id = $1", [id]);
      await client.query("COMMIT");
      return id;
    } finally {
      client.release();
    }
  };

  /** The replica's look again after a rollout: a delay no other timer of the test uses, as holdingTimer needs. */
  const REDISPATCH_AGAIN_MS = 987_654;

  test("a delivery queued without a dispatch message (by the version before them) is given one by a replica starting, and again later; sent once", async () => {
    const [first, second] = [testPhone({ format: "+254" }), testPhone({ format: "+254" })];
    const id = await stranded(first);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await t.db.pool.query("SELECT status FROM notification.deliveries WHERE id = $1", [id])).rows[0].status, "queued", "no dispatcher reads the public fact");
    // Another replica starts (sharing the durables): it looks at start, and again once the rollout is
    // over, on a timer the test holds: it fires after the rollout's last stranded delivery, however
    // slow the first receipt was (its own delay is the product's; the order is the test's).
    const { started: replica, timer: afterRollout } = await holdingTimer(REDISPATCH_AGAIN_MS, () =>
      startService(createNotificationModule({ config, sweepIntervalMs: 100, redispatchAgainMs: REDISPATCH_AGAIN_MS }), t.ctx));
    try {
      await eventually("the first receipt", () => smsTo(first).length === 1);
      await deliveryIn(id, DeliveryStatus.SENT);
      const later = await stranded(second);
      afterRollout.fire();
      await eventually("the second receipt, from the look after the rollout", () => smsTo(second).length === 1);
      await deliveryIn(later, DeliveryStatus.SENT);
    } finally {
      await replica.close();
    }
    // Once more (another replica): nothing more is sent.
    await redispatchStranded(t.db.pool);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(smsTo(first).length + smsTo(second).length, 2);
  });

  test("a running replica's look widens by the time its looks failed (PostgreSQL out of reach), up to the hour the look at start reads", () => {
    const now = Date.now();
    const min = 60_000;
    assert.equal(strandedLookWindow(now, now), 15 * min, "the last look just done: the last quarter of an hour");
    // Before, 15 minutes whatever: a delivery stranded 40 minutes ago, before the outage, was never looked for again.
    assert.equal(strandedLookWindow(now - 40 * min, now), 55 * min);
    assert.equal(strandedLookWindow(now - 3 * 60 * min, now), 60 * min, "at most the hour the look at start reads");
  });

  test("a send claimed by its own statement and cut off by a crash before its call is found by the stranded look and sent then, late rather than never", async () => {
    const phone = testPhone({ format: "+254" });
    const dispatcher = dispatcherWith(createProviders(config.providers, 3_000));
    const variables = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
    const claim = { schema: "notification", operation: "test/crash", caller: "", key: `crash-${randomUUID()}`, fingerprint: "f" };
    // Written and claimed, then the process died: sendClaimed never ran.
    const { made, claimed } = await enqueueClaiming(t.db.pool, [{ sourceKey: `rpc:${claim.key}`, to: { phone }, templateKey: TemplateKey.RECEIPT, variables, claim }], new Date(), dispatcher.firstProviders());
    const [id] = (made[0] as { ids: string[] }).ids;
    assert.deepEqual(claimed.map((c) => [c.delivery.id, c.provider, c.delivery.attempts]), [[id, "africastalking", 1]]);
    assert.equal(await dispatchMessages(id), 0);
    // Past the lease and untouched for two minutes, as a restarted replica's look finds it.
    await t.db.pool.query("UPDATE notification.delivery_attempts SET started_at = now() - interval '1 minute' WHERE delivery_id = $1", [id]);
    await t.db.pool.query("UPDATE notification.deliveries SET updated_at = now() - interval '3 minutes' WHERE id = $1", [id]);
    assert.ok((await redispatchStranded(t.db.pool)) >= 1);
    const d = await deliveryIn(id, DeliveryStatus.SENT);
    const attempts = await t.db.pool.query("SELECT attempt, status, error FROM notification.delivery_attempts WHERE delivery_id = $1 ORDER BY attempt", [id]);
    assert.deepEqual(attempts.rows.map((a) => [a.attempt, a.status]), [[1, "in_doubt"], [2, "sent"]], "the attempt cut off kept as in doubt, then one more");
    assert.match(attempts.rows[0].error, /sent again/);
    assert.equal(d.attempts.length, 2);
    assert.equal(smsTo(phone).length, 1, "the receipt sent once the crash was found");
  });

  test("a running replica looks for stranded sends every few minutes: one claimed by a statement whose answer was lost is sent, with no replica starting", async () => {
    const phone = testPhone({ format: "+254" });
    const replica = await startService(createNotificationModule({ config, sweepIntervalMs: 100, strandedLookMs: 200, redispatchAgainMs: REDISPATCH_AGAIN_MS }), t.ctx);
    try {
      // Its look at start is over (it reads a few rows); what is stranded from now on only a running look finds.
      await new Promise((r) => setTimeout(r, 500));
      const claim = { schema: "notification", operation: "test/lost-answer", caller: "", key: `lost-${randomUUID()}`, fingerprint: "f" };
      const variables = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
      const { claimed } = await enqueueClaiming(t.db.pool, [{ sourceKey: `rpc:${claim.key}`, to: { phone }, templateKey: TemplateKey.RECEIPT, variables, claim }], new Date(), dispatcherWith(createProviders(config.providers, 3_000)).firstProviders());
      const [{ delivery: { id } }] = claimed;
      await t.db.pool.query("UPDATE notification.delivery_attempts SET started_at = now() - interval '1 minute' WHERE delivery_id = $1", [id]);
      await t.db.pool.query("UPDATE notification.deliveries SET updated_at = now() - interval '3 minutes' WHERE id = $1", [id]);
      // Before, only a replica starting (or its one look after the rollout) sent it: in a replica running on, never.
      await eventually("the receipt, from the running look", () => smsTo(phone).length === 1);
      await deliveryIn(id, DeliveryStatus.SENT);
    } finally {
      await replica.close();
    }
  });

  test("a send claimed by a batch that commits after stopping gave up (a trigger's batch cut off at the stop's deadline) is not made then: left 'sending', the look sends it once", async () => {
    const phone = testPhone({ format: "+254" });
    const { dispatcher, lines } = watchedDispatcher({});
    const claim = { schema: "notification", operation: "test/late-batch", caller: "", key: `late-${randomUUID()}`, fingerprint: "f" };
    const variables = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
    const { claimed } = await enqueueClaiming(t.db.pool, [{ sourceKey: `rpc:${claim.key}`, to: { phone }, templateKey: TemplateKey.RECEIPT, variables, claim }], new Date(), dispatcher.firstProviders());
    const [{ delivery: { id } }] = claimed;
    // The stop's drain returned (its trigger's batch, still committing, was not waited for past the deadline): the pool closes next.
    dispatcher.stopBy(Date.now() + 100);
    assert.equal(await dispatcher.drain(), 0);
    dispatcher.sendClaimed(claimed);
    await eventually("the late claim handled", async () => (dispatcher as unknown as { claimedSends: Set<unknown> }).claimedSends.size === 0);
    assert.equal(smsTo(phone).length, 0, "no text while the process stops: its record would be lost and the look would send it again");
    assert.deepEqual(await attemptsOf(id), ["sending"], "left as a crash before the call leaves it");
    assert.ok(lines.some((l) => l.includes("claimed after stopping gave up")));
    // As another replica's look finds it past its lease: sent once.
    await t.db.pool.query("UPDATE notification.delivery_attempts SET started_at = now() - interval '1 minute' WHERE delivery_id = $1", [id]);
    await t.db.pool.query("UPDATE notification.deliveries SET updated_at = now() - interval '3 minutes' WHERE id = $1", [id]);
    assert.ok((await redispatchStranded(t.db.pool)) >= 1);
    await deliveryIn(id, DeliveryStatus.SENT);
    assert.equal(smsTo(phone).length, 1, "the receipt sent once");
  });

  test("stopping waits for a call still writing its statement: the send it claims is made and recorded before drain() returns, not left 'sending'", async () => {
    // An in-process call (embedded mode) is not held by the server's drain, nor is one past its drain timeout.
    const dispatcher = dispatcherWith(createProviders(config.providers, 3_000));
    const handlers = internalHandlers({ pool: t.db.pool, logger: captureLogger("silent").logger } as unknown as NotificationHandlerContext, () => dispatcher);
    const phone = testPhone({ format: "+254" });
    const key = `drain-${randomUUID()}`;
    const request = create(SendNotificationRequestSchema, { idempotencyKey: key, recipient: { case: "phone", value: phone }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" } });
    // Another transaction holds the key (not committed): the call's statement waits for it.
    const blocker = await t.db.pool.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query("INSERT INTO notification.idempotent_requests (operation, caller, key, fingerprint, result_id) VALUES ($1, '', $2, 'other', $3)", [
        `${NotificationInternalService.typeName}/${NotificationInternalService.method.sendNotification.name}`, key, `rpc:${key}`,
      ]);
      const call = (handlers.sendNotification as (r: typeof request) => Promise<{ deliveryIds: string[] }>)(request);
      await eventually("the call's statement waiting for the key", async () =>
        (await t.db.pool.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%idempotent_requests%'")).rowCount! > 0);
      let drained = false;
      const draining = dispatcher.drain().then(() => (drained = true));
      await sleep(200);
      assert.equal(drained, false, "drain() waits for the call: it may yet claim a send");
      await blocker.query("ROLLBACK");
      const { deliveryIds } = await call;
      await draining;
      const d = await delivery(deliveryIds[0]);
      assert.equal(d.status, DeliveryStatus.SENT, "sent and recorded before drain() returned");
      assert.deepEqual(d.attempts.map((a) => [a.provider, a.status]), [["africastalking", DeliveryStatus.SENT]]);
      assert.equal(smsTo(phone).length, 1);
    } finally {
      await blocker.query("ROLLBACK").catch(() => undefined);
      blocker.release();
    }
  });

  test("a batch's receipt whose key a concurrent call is claiming: the statement waits, loses on the key, runs again once and answers the other call's delivery; made once, sent by neither twice", async () => {
    const handlers = internalHandlers({ pool: t.db.pool, logger: captureLogger("silent").logger } as unknown as NotificationHandlerContext);
    const phone = testPhone({ format: "+254" });
    const key = `raced-${randomUUID()}`;
    const request = create(SendNotificationRequestSchema, { idempotencyKey: key, recipient: { case: "phone", value: phone }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" } });
    // The concurrent call's statement: its claim of the key and its delivery, not committed yet.
    const other = await t.db.pool.connect();
    const theirs = randomUUID();
    try {
      await other.query("BEGIN");
      await other.query("INSERT INTO notification.idempotent_requests (operation, caller, key, fingerprint, result_id) VALUES ($1, '', $2, $3, $4)", [
        `${NotificationInternalService.typeName}/${NotificationInternalService.method.sendNotification.name}`, key, requestFingerprint(SendNotificationRequestSchema, request), `rpc:${key}`,
      ]);
      await other.query(
        `INSERT INTO notification.deliveries (id, source_key, recipient_key, channel, address, address_masked, template_key, template_version, locale, body, status, attempts)
         VALUES ($1, $2, $3, $4, $5, 'masked', $6, 1, 'en', 'hello', 'sent', 1)`,
        [theirs, `rpc:${key}`, `phone:${phone.replace("+", "")}`, Channel.SMS, phone.replace("+", ""), TemplateKey.RECEIPT],
      );
      const call = (handlers.sendNotifications as (r: { requests: (typeof request)[] }) => Promise<{ results: { code: number; deliveryIds: string[] }[] }>)({ requests: [request] });
      await eventually("the call's statement waiting for the key", async () =>
        (await t.db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%idempotent_requests%'")).rowCount! > 0);
      await other.query("COMMIT");
      const { results } = await call;
      assert.deepEqual(results.map((r) => [r.code, r.deliveryIds]), [[0, [theirs]]], "answered as a repeat, not refused (it lost on the key: 23505)");
    } finally {
      await other.query("ROLLBACK").catch(() => undefined);
      other.release();
    }
    const made = await t.db.pool.query<{ id: string }>("SELECT id FROM notification.deliveries WHERE source_key = $1", [`rpc:${key}`]);
    assert.deepEqual(made.rows.map((r) => r.id), [theirs], "made once");
    assert.equal(smsTo(phone).length, 0, "nothing sent by this call");
  });

  test("a claimed send whose turn comes after its lease ran out (a slow provider held every turn) is not sent beside the resend of the look that declared it in doubt", async () => {
    const at = createProviders(config.providers, 3_000).sms[0];
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    const held: Provider = { name: at.name, send: async (m) => (await gate, at.send(m)) };
    // One turn; a provider timeout of 0, so every send's turn is late and renews its lease.
    const dispatcher = new Dispatcher({ pool: t.db.pool, providers: { sms: [held], email: [], push: [] }, retry: { ...config.retry, httpTimeoutMs: 0 }, logger: captureLogger("silent").logger, publicUrl: () => "", claimedSendsMax: 1 });
    const variables = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
    const receipt = async (phone: string) => {
      const key = `late-turn-${randomUUID()}`;
      const claim = { schema: "notification", operation: "test/late-turn", caller: "", key, fingerprint: "f" };
      const { claimed } = await enqueueClaiming(t.db.pool, [{ sourceKey: `rpc:${key}`, to: { phone }, templateKey: TemplateKey.RECEIPT, variables, claim }], new Date(), dispatcher.firstProviders());
      dispatcher.sendClaimed(claimed);
      return claimed[0].delivery.id;
    };
    const [a, b] = [testPhone({ format: "+254" }), testPhone({ format: "+254" })];
    await receipt(a); // takes the one turn, held until the gate opens
    const waiting = await receipt(b);
    // Its lease runs out while it waits for a turn: the stranded look declares it in doubt and sends it.
    await t.db.pool.query("UPDATE notification.delivery_attempts SET started_at = now() - interval '1 hour' WHERE delivery_id = $1", [waiting]);
    await dispatcherWith(createProviders(config.providers, 3_000)).run(waiting);
    assert.equal(smsTo(b).length, 1, "resent by the look");
    open();
    await dispatcher.drain();
    assert.equal(smsTo(a).length, 1);
    assert.equal(smsTo(b).length, 1, "its own turn, come late, sends nothing more");
    const d = await delivery(waiting);
    assert.equal(d.status, DeliveryStatus.SENT);
    assert.deepEqual(d.attempts.map((x) => x.status), [DeliveryStatus.FAILED, DeliveryStatus.SENT]);
  });

  /** A dispatcher's run of a queued SMS whose sent record fails `failures` times first; how many failed, and how the run ended. */
  const recordFailing = async (failures: number, retry = config.retry) => {
    const id = await queuedSms();
    const query = t.db.pool.query.bind(t.db.pool);
    let failed = 0;
    t.db.pool.query = ((text: string, values?: unknown[][]) => {
      if (failed < failures && typeof text === "string" && text.includes("sent_in AS") && values?.[0]?.includes(id)) {
        failed++;
        return Promise.reject(new Error("connection terminated unexpectedly"));
      }
      return (query as (...args: unknown[]) => unknown)(text, values);
    }) as typeof t.db.pool.query;
    try {
      // Pauses of a millisecond and up between tries: the test waits for no failover.
      const dispatcher = new Dispatcher({ pool: t.db.pool, providers: createProviders(config.providers, 3_000), retry, logger: captureLogger("silent").logger, publicUrl: () => "", sentRecordRetryMs: 1 });
      const ran = await dispatcher.run(id).then(() => "ran", (err: unknown) => err);
      return { id, failed, ran };
    } finally {
      t.db.pool.query = query;
    }
  };

  test("a sent record that fails is written again while its lease lasts (a failover longer than a few tries), not left 'sending' for the look to resend after its lease", async () => {
    const { id, failed, ran } = await recordFailing(8);
    assert.equal(failed, 8);
    assert.equal(ran, "ran");
    const d = await delivery(id);
    assert.equal(d.status, DeliveryStatus.SENT);
    assert.deepEqual(d.attempts.map((a) => a.status), [DeliveryStatus.SENT]);
  });

  test("a sent record is not tried again past its send's lease: the look may have sent it again by then", async () => {
    const { id, failed, ran } = await recordFailing(8, { ...config.retry, sendLeaseMs: 0 });
    assert.equal(failed, 1, "no second try");
    assert.match(String(ran), /connection terminated/);
    assert.deepEqual((await t.db.pool.query("SELECT status FROM notification.delivery_attempts WHERE delivery_id = $1", [id])).rows, [{ status: "sending" }], "left to the look");
  });

  /** A dispatcher over the service's database whose metrics and warnings the test reads. */
  const watchedDispatcher = (o: Partial<ConstructorParameters<typeof Dispatcher>[0]> = {}) => {
    const metrics = new Metrics();
    const { logger, lines } = captureLogger("warn");
    const dispatcher = new Dispatcher({ pool: t.db.pool, providers: createProviders(config.providers, 3_000), retry: config.retry, logger, metrics, publicUrl: () => "", ...o });
    const refused = async () => (await metrics.registry.getSingleMetric("ttip_notification_sent_records_refused_total")?.get())?.values.map((v) => `${v.labels.sqlstate}:${v.value}`) ?? [];
    return { dispatcher, refused, lines };
  };
  const attemptsOf = async (id: string) => (await t.db.pool.query("SELECT status FROM notification.delivery_attempts WHERE delivery_id = $1 ORDER BY attempt", [id])).rows.map((r) => r.status);

  test("a sent record PostgreSQL refuses for a bad value (a NUL in the provider's message id) is not retried but written again without the id, logged and counted: sent, not left for the look to send again; the others of its group are recorded", async () => {
    const ids = [await queuedSms(), await queuedSms(), await queuedSms()];
    const [bad] = ids;
    const badPhone = `+${(await t.db.pool.query("SELECT address FROM notification.deliveries WHERE id = $1", [bad])).rows[0].address}`;
    sim.messageIds.set(badPhone, "ATXid_\u0000bad");
    // The three answers held until all are in, so their records go in one statement.
    let answered = 0;
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    const at = createProviders(config.providers, 3_000).sms[0];
    const together: Provider = { name: at.name, send: async (m) => {
      const r = await at.send(m);
      if (++answered === ids.length) open();
      await gate;
      return r;
    } };
    const { dispatcher, refused, lines } = watchedDispatcher({ providers: { sms: [together], email: [], push: [] } });
    try {
      await dispatcher.runMany(ids);
    } finally {
      sim.messageIds.delete(badPhone);
    }
    assert.deepEqual(await refused(), ["22021:1"], "counted once: not tried again");
    assert.deepEqual(lines.filter((l) => l.includes("trying again")), [], "not retried as a passing fault");
    // As the log shows the id: its scrubber takes some UUIDs' digit runs for a phone or card number.
    assert.equal(lines.filter((l) => l.includes("was refused and would be again") && l.includes(scrubText(bad))).length, 1);
    // Left 'sending', a look would send it again after its lease: the provider has it, a certain duplicate.
    assert.deepEqual(await attemptsOf(bad), ["sent"], "recorded: not left for the look to send again");
    const { rows: [row] } = await t.db.pool.query(
      "SELECT status, (SELECT count(*)::int FROM notification.provider_messages WHERE delivery_id = d.id) AS message_ids FROM notification.deliveries d WHERE id = $1",
      [bad],
    );
    assert.deepEqual(row, { status: "sent", message_ids: 0 }, "without the provider's message id");
    assert.equal(smsTo(badPhone).length, 1);
    for (const id of ids.slice(1)) assert.equal((await delivery(id)).status, DeliveryStatus.SENT, "the others of its group recorded");
  });

  test("a call's statement carrying a sent record PostgreSQL refuses for a bad value is written again without it: the call succeeds, the record alone is refused, then written without the provider's message id", async () => {
    // Records wait for a call's statement to carry them, not for their own.
    const { dispatcher, refused } = watchedDispatcher({ sentRecordWaitMs: 600_000 });
    const handlers = internalHandlers({ pool: t.db.pool, logger: captureLogger("silent").logger } as unknown as NotificationHandlerContext, () => dispatcher);
    const send = handlers.sendNotification as (r: MessageInitShape<typeof SendNotificationRequestSchema>) => Promise<{ deliveryIds: string[] }>;
    const receipt = (phone: string) => send(create(SendNotificationRequestSchema, {
      idempotencyKey: `carried-${randomUUID()}`, recipient: { case: "phone", value: phone }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" },
    }));
    const [badPhone, stopped] = [testPhone({ format: "+254" }), testPhone({ format: "+254" })];
    // The second call's delivery is written failed (its number texted STOP), so it claims no send whose record would wait too.
    await t.db.pool.query("INSERT INTO notification.sms_opt_outs (phone, provider) VALUES ($1, 'africastalking')", [normalisePhone(stopped)]);
    sim.messageIds.set(badPhone, "ATXid_\u0000bad");
    try {
      const { deliveryIds: [bad] } = await receipt(badPhone);
      await eventually("the bad send's record waiting for a statement to carry it", async () => (dispatcher as unknown as { unrecorded: unknown[] }).unrecorded.length === 1);
      const { deliveryIds: [other] } = await receipt(stopped);
      assert.equal((await delivery(other)).status, DeliveryStatus.FAILED, "the call's own delivery written");
      await dispatcher.drain();
      assert.deepEqual(await refused(), ["22021:1"], "the record alone refused once");
      assert.deepEqual(await attemptsOf(bad), ["sent"], "written without the provider's message id");
    } finally {
      sim.messageIds.delete(badPhone);
    }
  });

  test("stopping with the database refusing every record waits for sends in flight only until its deadline, not the lease: they are left 'sending' for the look, and their records stop trying", { timeout: 120_000 }, async () => {
    const { dispatcher, lines } = watchedDispatcher({ retry: { ...config.retry, sendLeaseMs: 600_000 }, sentRecordWaitMs: 0, sentRecordRetryMs: 1 });
    const phone = testPhone({ format: "+254" });
    const key = `stop-${randomUUID()}`;
    const claim = { schema: "notification", operation: "test/stop", caller: "", key, fingerprint: "f" };
    const { claimed } = await enqueueClaiming(t.db.pool, [{ sourceKey: `rpc:${key}`, to: { phone }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" }, claim }], new Date(), dispatcher.firstProviders());
    const [{ delivery: { id } }] = claimed;
    // The database out of reach for this send's record: every try fails as a lost connection does.
    const query = t.db.pool.query.bind(t.db.pool);
    let tries = 0;
    t.db.pool.query = ((text: string, values?: unknown[][]) => {
      if (typeof text === "string" && text.includes("sent_in AS") && values?.[0]?.includes(id)) {
        tries++;
        return Promise.reject(new Error("connection terminated unexpectedly"));
      }
      return (query as (...args: unknown[]) => unknown)(text, values);
    }) as typeof t.db.pool.query;
    try {
      dispatcher.sendClaimed(claimed);
      await eventually("the record tried again", async () => tries > 1);
      dispatcher.stopBy(Date.now() + 100);
      assert.equal(await dispatcher.drain(), 1, "one send still out when stopping gave up");
      assert.ok(lines.some((l) => l.includes("stopped with sends still out")));
      assert.deepEqual(await attemptsOf(id), ["sending"], "left to the look after its lease, as after a crash");
      await eventually("the send given up", async () => (dispatcher as unknown as { claimedSends: Set<unknown> }).claimedSends.size === 0);
      const triedByThen = tries;
      await sleep(50);
      assert.equal(tries, triedByThen, "no more tries once stopping gave up");
    } finally {
      t.db.pool.query = query;
    }
    assert.equal(smsTo(phone).length, 1);
  });

  test("with the database out of reach the sweeper runs one sweep at a time: a tick while the last still waits is skipped, not started beside it", { timeout: 60_000 }, async () => {
    const db = partitionable(t.db.pool);
    const pool = db.pool;
    const { logger } = captureLogger("warn");
    const bus = new InProcessBus(logger, 50);
    const module = createNotificationModule({ config: { ...config, stopSendsMs: 100 }, sweepIntervalMs: 10, contacts: async () => null, staff: { reviewers: async () => [], displayName: async () => "" } });
    const stop = await module.start!({ ...t.ctx, pool, bus, logger });
    try {
      db.down = true;
      // One sweep's three statements (and at most one of the look at start, which began before).
      await eventually("a sweep waiting", async () => db.waiting >= 3);
      await sleep(300);
      assert.ok(db.waiting <= 4, `${db.waiting} statements waiting after 300 ms of 10 ms ticks: sweeps piled up`);
    } finally {
      await stop();
      await bus.close();
    }
  });

  test("stopping with the database out of reach ends within its budget: a sweep and a trigger's batch waiting on PostgreSQL are not waited for past it", { timeout: 60_000 }, async () => {
    const db = partitionable(t.db.pool);
    const pool = db.pool;
    const { logger, lines } = captureLogger("warn");
    // A bus of its own: its consumers take no work from the service's.
    const bus = new InProcessBus(logger, 50);
    const module = createNotificationModule({ config: { ...config, stopSendsMs: 200 }, sweepIntervalMs: 10, contacts: async () => null, staff: { reviewers: async () => [], displayName: async () => "" } });
    const stop = await module.start!({ ...t.ctx, pool, bus, logger });
    try {
      db.down = true;
      await publish(bus, "ttip.payment.tip_succeeded", TipSucceededSchema, { tipId: randomUUID(), workerId: randomUUID(), amount: kesMinor(5000n), net: kesMinor(4750n) });
      // The trigger's batch and a sweep both wait on the database now.
      await eventually("a batch and a sweep waiting", async () => db.waiting >= 2);
      await stop();
      assert.ok(lines.some((l) => l.includes("still waiting on the database")), "the stop gave up on them at its deadline");
    } finally {
      await bus.close();
    }
  });

  test("a claimed send's lease counts from its transaction's start (a trigger batch's), not from its statement's answer: a turn that comes a provider timeout after it renews the lease", async () => {
    // A provider timeout of a second: the transaction below is a second old when its statement claims the send, so the
    // send's turn, at once after the claim, comes a provider timeout after its lease began.
    const httpTimeoutMs = 1_000;
    const dispatcher = new Dispatcher({ pool: t.db.pool, providers: createProviders(config.providers, 3_000), retry: { ...config.retry, httpTimeoutMs }, logger: captureLogger("silent").logger, publicUrl: () => "" });
    const phone = testPhone({ format: "+254" });
    const direct = { firstProviders: dispatcher.firstProviders(), claimed: [] as Parameters<Dispatcher["sendClaimed"]>[0][number][] };
    let begun = 0;
    const started = await withTransaction(t.db.pool, async (tx) => {
      // A batch's transaction begins (its inbox claim, its recipients) well before the statement that claims its sends.
      await tx.query(`SELECT pg_sleep(${httpTimeoutMs / 1000})`);
      // The transaction began before the sleep did: at least its length before its answer came.
      begun = Date.now() - httpTimeoutMs;
      const [[id]] = await enqueueMany(tx, [{ sourceKey: `event:${randomUUID()}`, to: { phone }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" } }], new Date(), direct);
      return (await tx.query("SELECT started_at::text FROM notification.delivery_attempts WHERE delivery_id = $1", [id])).rows[0].started_at as string;
    });
    assert.equal(direct.claimed.length, 1);
    // Its lease began with the transaction, not with the claiming statement a second later (1 ms: Date.now()'s rounding).
    assert.ok(direct.claimed[0].leasedFrom <= begun + 1, `leased from ${direct.claimed[0].leasedFrom - begun} ms after the transaction began at the latest`);
    dispatcher.sendClaimed(direct.claimed);
    await dispatcher.drain();
    const id = direct.claimed[0].delivery.id;
    const attempt = await t.db.pool.query("SELECT started_at::text, status FROM notification.delivery_attempts WHERE delivery_id = $1", [id]);
    assert.equal(attempt.rows[0].status, "sent");
    assert.notEqual(attempt.rows[0].started_at, started, "the lease renewed before the call");
    assert.equal(smsTo(phone).length, 1);
  });

  test("a look that read an attempt out of lease while a claimed send renewed it leaves it alone: the renewal wins, nothing is resent", async () => {
    const id = await queuedSms(1);
    await t.db.pool.query("INSERT INTO notification.delivery_attempts (delivery_id, attempt, provider, status, started_at) VALUES ($1, 1, 'africastalking', 'sending', now() - interval '1 hour')", [id]);
    const phone = (await t.db.pool.query("SELECT address FROM notification.deliveries WHERE id = $1", [id])).rows[0].address as string;
    // A claimed send's renewal (renewLease), not yet committed when the look reads the attempt.
    const renewal = await t.db.pool.connect();
    try {
      await renewal.query("BEGIN");
      await renewal.query("UPDATE notification.delivery_attempts SET started_at = now() WHERE delivery_id = $1 AND attempt = 1 AND status = 'sending'", [id]);
      const look = dispatcherWith(createProviders(config.providers, 3_000)).run(id).then(() => "ran", (err: unknown) => err);
      await eventually("the look waiting for the attempt's row", async () =>
        (await t.db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%in_doubt%'")).rowCount! > 0);
      await renewal.query("COMMIT");
      assert.ok((await look) instanceof RetryLater, "the look tries again later");
    } finally {
      await renewal.query("ROLLBACK").catch(() => undefined);
      renewal.release();
    }
    const attempts = await t.db.pool.query("SELECT status FROM notification.delivery_attempts WHERE delivery_id = $1", [id]);
    assert.deepEqual(attempts.rows.map((r) => r.status), ["sending"], "still the renewed send's");
    assert.equal(sim.sent.filter((m) => m.to === phone || m.to === `+${phone}`).length, 0, "not resent");
  });

  /**
   * A send of a queued SMS whose record comes late, when a look (claim()) holds its delivery's lock
   * and then declares its attempt in doubt (decide()'s compare-and-set): the look's two statements,
   * with the record started between them. What the run and the look saw, and any deadlock logged.
   */
  const lateRecordMeetsLook = async (outcome: SendOutcome) => {
    const id = await queuedSms();
    let called: () => void = () => undefined;
    const calling = new Promise<void>((r) => (called = r));
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    const provider: Provider = { name: "africastalking", send: async () => (called(), await gate, outcome) };
    const { logger, lines } = captureLogger("warn");
    const dispatcher = new Dispatcher({ pool: t.db.pool, providers: { sms: [provider], email: [], push: [] }, retry: config.retry, logger, publicUrl: () => "" });
    const run = dispatcher.run(id).then(() => "ran", (err: unknown) => err);
    await calling;
    const look = await t.db.pool.connect();
    try {
      await look.query("BEGIN");
      await look.query("SELECT 1 FROM notification.deliveries WHERE id = $1 FOR UPDATE", [id]);
      open();
      await eventually("the record waiting for the look", async () =>
        (await t.db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ~ 'UPDATE notification\\.deliver(y_attempt)?(ies|s) '")).rowCount! > 0);
      // The look's declaration (its lease taken as over), and nothing else: the delivery left as it was otherwise.
      const doubted = await declareInDoubt(look, id, 1, "no answer recorded (crash during send)", 0);
      await look.query("COMMIT");
      return { id, doubted, run: await run, deadlocks: lines.filter((l) => l.includes("deadlock")) };
    } finally {
      await look.query("ROLLBACK").catch(() => undefined);
      look.release();
    }
  };

  test("a late sent record and a look declaring its attempt in doubt take the delivery's lock first, both: no deadlock; the look's decision stands", async () => {
    const met = await lateRecordMeetsLook({ ok: true, messageId: `late-${randomUUID()}` });
    assert.deepEqual(met.deadlocks, [], "the record waited for the delivery without holding its attempt");
    assert.equal(met.doubted, true);
    assert.equal(met.run, "ran");
    const row = await t.db.pool.query("SELECT d.status, a.status AS attempt FROM notification.deliveries d JOIN notification.delivery_attempts a ON a.delivery_id = d.id WHERE d.id = $1", [met.id]);
    assert.deepEqual(row.rows, [{ status: "queued", attempt: "in_doubt" }], "the late record wrote nothing over the look's decision");
  });

  test("a late failed send's record and a look declaring its attempt in doubt take the delivery's lock first, both: no deadlock; the look's decision stands", async () => {
    const met = await lateRecordMeetsLook({ ok: false, kind: "transient", error: "503 from the provider" });
    assert.equal(met.run, "ran", "no deadlock aborted the record");
    assert.equal(met.doubted, true);
    const row = await t.db.pool.query("SELECT d.status, a.status AS attempt FROM notification.deliveries d JOIN notification.delivery_attempts a ON a.delivery_id = d.id WHERE d.id = $1", [met.id]);
    assert.deepEqual(row.rows, [{ status: "queued", attempt: "in_doubt" }]);
  });

  test("two batches making overlapping deliveries, one in the other order, do not deadlock: each delivery is made once", async () => {
    const request = (sourceKey: string) => ({ sourceKey, to: { phone: testPhone({ format: "+254" }) }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" } });
    const [low, high] = [request(`event:a-${randomUUID()}`), request(`event:b-${randomUUID()}`)];
    // One batch has made `low` and is about to make `high` (its open transaction stands for its statement midway).
    const first = await t.db.pool.connect();
    try {
      await first.query("BEGIN");
      const [[lowId]] = await enqueueMany(first, [low]);
      // The other names them high first: made in that order it would hold `high` while it waits for `low`.
      // Its failure taken at once: it may come before the COMMIT's answer below.
      const second = enqueueMany(t.db.pool, [high, low]).then(() => undefined, (err: unknown) => err);
      await eventually("the second batch waiting for the first", async () =>
        (await t.db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%planned AS%'")).rowCount! > 0);
      const [[highId]] = await enqueueMany(first, [high]); // a deadlock error here (or in the second) without the order
      await first.query("COMMIT");
      // The second's insert of `low` lost on the key (NOT EXISTS did not see it): it wrote nothing, and run again finds both.
      assert.ok(deliveryRace(await second), "the second lost on the key");
      assert.deepEqual(await enqueueMany(t.db.pool, [high, low]), [[highId], [lowId]], "the second, run again, finds both made by the first");
      const made = await t.db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM notification.deliveries WHERE source_key = ANY($1::text[])", [[low.sourceKey, high.sourceKey]]);
      assert.equal(made.rows[0].n, 2, "each made once");
    } finally {
      await first.query("ROLLBACK").catch(() => undefined);
      first.release();
    }
  });

  test("deliveries are written with one heap WAL record each (NOT EXISTS, no speculative insert to confirm); written again, none", async () => {
    await t.db.pool.query("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
    const requests = Array.from({ length: 5 }, () => ({ sourceKey: `event:${randomUUID()}`, to: { phone: testPhone({ format: "+254" }) }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" } }));
    // In a transaction of its own: the file's running service may write deliveries in the same WAL range.
    const inserts = (work: (tx: PoolClient) => Promise<unknown>) => heapWalRecords(t.db.pool, "notification.deliveries", { inTransaction: work });
    let ids: string[][] = [];
    assert.deepEqual(await inserts(async (tx) => (ids = await enqueueMany(tx, requests))), { INSERT: requests.length }, "ON CONFLICT DO NOTHING also wrote a HEAP_CONFIRM per delivery");
    let again: string[][] = [];
    assert.deepEqual(await inserts(async (tx) => (again = await enqueueMany(tx, requests))), {}, "nothing written for deliveries made before");
    assert.deepEqual(again, ids, "a repeat finds them");
  });

  test("deliveries and in-app notices get ids in time order (UUID version 7, the millisecond first): their keys go to the right end of their indexes", async () => {
    const userId = randomUUID();
    await internal().upsertContact({ userId, phone: testPhone({ format: "+254" }), locale: "en" });
    const tip = (n: number) => ({ sourceKey: `event:${randomUUID()}`, to: { userId }, templateKey: TemplateKey.TIP_RECEIVED, channels: [Channel.SMS, Channel.IN_APP], variables: { amount: `KES ${n}`, net: "KES 95", from: "2547******11", message: "" } });
    const from = Date.now();
    const first = (await enqueueMany(t.db.pool, [tip(100)]))[0];
    await sleep(2);
    const second = (await enqueueMany(t.db.pool, [tip(200)]))[0];
    const to = Date.now();
    const { rows } = await t.db.pool.query<{ id: string; notice: string | null }>(
      "SELECT d.id, n.id AS notice FROM notification.deliveries d LEFT JOIN notification.inapp_notifications n ON n.delivery_id = d.id WHERE d.id = ANY($1::uuid[])",
      [[...first, ...second]],
    );
    const ids = rows.flatMap((r) => (r.notice ? [r.id, r.notice] : [r.id]));
    assert.equal(ids.length, 6, "two SMS, two in-app deliveries and their notices");
    for (const id of ids) {
      assert.equal(id[14], "7", `${id} is a version 7 UUID`);
      const at = parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
      assert.ok(at >= from && at <= to, `${id}: made at ${at}, not within ${from}..${to}`);
    }
    assert.ok([...first].sort().at(-1)! < [...second].sort()[0], "a later request's deliveries sort after an earlier one's");
  });

  test("the deliveries' statements, as connections keep them (generic plans), find deliveries made before by index, on a grown table too: NOT EXISTS scans no table", async () => {
    // Thousands of deliveries the statistics have not seen (a young table's, then grown).
    await t.db.pool.query("ANALYZE notification.deliveries");
    await t.db.pool.query(
      `INSERT INTO notification.deliveries (id, source_key, recipient_key, channel, address, address_masked, template_key, template_version, locale, body, status, attempts)
       SELECT gen_random_uuid(), 'event:' || gen_random_uuid(), 'phone:2547' || i, 1, '2547' || i, 'masked', $1, 1, 'en', 'hello', 'sent', 1 FROM generate_series(1, 5000) AS i`,
      [TemplateKey.RECEIPT],
    );
    const receipt = () => ({ sourceKey: `rpc:${randomUUID()}`, to: { phone: testPhone({ format: "+254" }) }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" } });
    const claiming = () => ({ ...receipt(), claim: { schema: "notification", operation: "plan-test", caller: "", key: randomUUID(), fingerprint: "f" } });
    const plans = await keptPlans(t.db.pool, new Set(["deliveries"]), async (q) => {
      await enqueueMany(q, [receipt(), receipt()]);
      await enqueueClaiming(q, [claiming(), claiming()]);
    });
    const writes = plans.filter((p) => /^WITH (planned|claimed) AS/.test(p.statement));
    assert.equal(writes.length, 2, plans.map((p) => p.statement).join(" | "));
    for (const p of writes) {
      assert.ok(p.reads.length > 0 && p.reads.every((r) => r["Node Type"].startsWith("Index")), `${p.statement}: ${p.reads.map((r) => `${r["Node Type"]} ${r["Index Name"] ?? ""}`).join(", ")}`);
    }
  });

  test("a tip event whose SMS another replica is making at the same time (a re-published copy) waits, loses on the key, runs again at once and makes the rest: each delivery once", async () => {
    const workerId = randomUUID();
    const phone = testPhone({ format: "+254" });
    await internal().upsertContact({ userId: workerId, phone, locale: "en" });
    const eventId = randomUUID();
    // The other replica's transaction has made the event's SMS and is still open.
    const other = await t.db.pool.connect();
    const theirs = randomUUID();
    try {
      await other.query("BEGIN");
      await other.query(
        `INSERT INTO notification.deliveries (id, source_key, recipient_key, channel, user_id, address, address_masked, template_key, template_version, locale, body, status, attempts)
         VALUES ($1, $2, $3, $4, $5, $6, 'masked', $7, 1, 'en', 'hello', 'sent', 1)`,
        [theirs, `event:${eventId}`, workerId, Channel.SMS, workerId, phone.replace("+", ""), TemplateKey.TIP_RECEIVED],
      );
      await publish(t.ctx.bus, "ttip.payment.tip_succeeded", TipSucceededSchema, { tipId: randomUUID(), workerId, amount: kesMinor(15000n), fee: kesMinor(750n), net: kesMinor(14250n), customerPhoneMasked: "2547******11" }, eventId);
      await eventually("the trigger's statement waiting on the other's SMS", async () =>
        (await t.db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%planned AS%'")).rowCount! > 0);
      await other.query("COMMIT");
    } finally {
      await other.query("ROLLBACK").catch(() => undefined);
      other.release();
    }
    const made = await eventually("the event applied", async () => {
      const { rows } = await t.db.pool.query<{ id: string; channel: Channel }>("SELECT id, channel FROM notification.deliveries WHERE source_key = $1 ORDER BY channel", [`event:${eventId}`]);
      return rows.length === 2 && rows;
    });
    assert.deepEqual(made.map((r) => r.channel), [Channel.SMS, Channel.IN_APP], "the SMS once (the other's), the in-app notice made by this one");
    assert.equal(made[0].id, theirs);
    assert.equal((await asUser(workerId).listInAppNotifications({})).unreadCount, 1);
    assert.equal(smsTo(phone).length, 0, "no SMS of this replica's: the other's stands");
  });

  test("a trigger batch's deliveries' statement carries its transaction's COMMIT (no lone COMMIT): committed once it answers, and nothing may follow it", async () => {
    const phone = testPhone({ format: "+254" });
    const sourceKey = `event:${randomUUID()}`;
    const seenByOthers = await withTransaction(t.db.pool, async (tx) => {
      await tx.query("SELECT 1"); // the batch's inbox claim
      const [[id]] = await enqueueMany(tx, [{ sourceKey, to: { phone }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" } }], new Date(), undefined, true);
      await assert.rejects(tx.query("SELECT 1"), /commitWith/);
      return (await t.db.pool.query("SELECT id FROM notification.deliveries WHERE source_key = $1", [sourceKey])).rows.map((r) => r.id === id);
    });
    assert.deepEqual(seenByOthers, [true], "committed before the transaction's body returned");
    await eventually("the receipt", () => smsTo(phone).length === 1);
  });

  test("an attempt cut off by a crash whose number texted STOP meanwhile fails, and its note does not say it was sent again", async () => {
    const id = await queuedSms(1);
    await t.db.pool.query("INSERT INTO notification.delivery_attempts (delivery_id, attempt, provider, status, started_at) VALUES ($1, 1, 'africastalking', 'sending', now() - interval '1 hour')", [id]);
    await t.db.pool.query("INSERT INTO notification.sms_opt_outs (phone, provider) SELECT address, 'africastalking' FROM notification.deliveries WHERE id = $1", [id]);
    await dispatcherWith(createProviders(config.providers, 3_000)).run(id);
    const d = await t.db.pool.query("SELECT d.status, d.last_error, a.status AS attempt, a.error FROM notification.deliveries d JOIN notification.delivery_attempts a ON a.delivery_id = d.id WHERE d.id = $1", [id]);
    assert.deepEqual(d.rows, [{ status: "failed", last_error: "recipient texted STOP", attempt: "in_doubt", error: "no answer recorded (crash during send)" }]);
  });

  test("claimed sends call their provider a bounded number at once; the others wait their turn, and each is sent once", async () => {
    let calling = 0;
    let most = 0;
    const providers = createProviders(config.providers, 3_000);
    const at = providers.sms[0];
    const counting: Provider = {
      name: at.name,
      send: async (m) => {
        most = Math.max(most, ++calling);
        try {
          await sleep(20); // long enough for every send of the call to have started, were there no bound
          return await at.send(m);
        } finally {
          calling--;
        }
      },
    };
    const dispatcher = new Dispatcher({ pool: t.db.pool, providers: { ...providers, sms: [counting] }, retry: config.retry, logger: captureLogger("silent").logger, publicUrl: () => "", claimedSendsMax: 3 });
    const handlers = internalHandlers({ pool: t.db.pool, logger: captureLogger("silent").logger } as unknown as NotificationHandlerContext, () => dispatcher);
    const phones = Array.from({ length: 10 }, () => testPhone({ format: "+254" }));
    const requests = phones.map((phone) => create(SendNotificationRequestSchema, {
      idempotencyKey: `bounded-${randomUUID()}`, recipient: { case: "phone", value: phone }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" },
    }));
    const { results } = await (handlers.sendNotifications as (r: { requests: typeof requests }) => Promise<{ results: { code: number; deliveryIds: string[] }[] }>)({ requests });
    assert.deepEqual(results.map((r) => r.code), phones.map(() => 0));
    await dispatcher.drain();
    assert.equal(most, 3, "three at once, never more");
    for (const phone of phones) assert.equal(smsTo(phone).length, 1);
    for (const r of results) assert.equal((await delivery(r.deliveryIds[0])).status, DeliveryStatus.SENT);
  });

  test("a claimed send with no room to wait for a turn (a slow provider holds them all) gives its claim back: a dispatch consumer sends it once, a sign-in code too", async () => {
    const at = createProviders(config.providers, 3_000).sms[0];
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    const held: Provider = { name: at.name, send: async (m) => (await gate, at.send(m)) };
    // One turn and one place to wait for it.
    const dispatcher = new Dispatcher({ pool: t.db.pool, providers: { sms: [held], email: [], push: [] }, retry: config.retry, logger: captureLogger("silent").logger, publicUrl: () => "", claimedSendsMax: 1, claimedSendsWaitingMax: 1 });
    const send = async (phone: string, templateKey: TemplateKey, variables: Record<string, string>) => {
      const key = `no-room-${randomUUID()}`;
      const claim = { schema: "notification", operation: "test/no-room", caller: "", key, fingerprint: "f" };
      const { claimed } = await enqueueClaiming(t.db.pool, [{ sourceKey: `rpc:${key}`, to: { phone }, templateKey, variables, claim }], new Date(), dispatcher.firstProviders());
      dispatcher.sendClaimed(claimed);
      return claimed[0].delivery.id;
    };
    const receipt = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
    const [a, b, c] = [testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" })];
    await send(a, TemplateKey.RECEIPT, receipt); // calls, held at the gate
    await send(b, TemplateKey.RECEIPT, receipt); // waits for the turn
    const otp = await send(c, TemplateKey.OTP, { code: "123456", minutes: "5" }); // no room: given back
    // Sent by the service's dispatch consumers while the gate is still shut.
    const d = await deliveryIn(otp, DeliveryStatus.SENT);
    assert.deepEqual(d.attempts.map((x) => [x.attempt, x.status]), [[1, DeliveryStatus.SENT]], "its first attempt, claimed again by a dispatcher");
    assert.equal(await dispatchMessages(otp), 1);
    assert.equal(smsTo(a).length + smsTo(b).length, 0, "the gate is still shut");
    open();
    await dispatcher.drain();
    assert.deepEqual([a, b, c].map((p) => smsTo(p).length), [1, 1, 1]);
  });

  test("a claimed send's record is carried by the next statement a call writes: no statement of its own; a report that came first is applied", async () => {
    const [a, b] = [testPhone({ format: "+254" }), testPhone({ format: "+254" })];
    // Its records wait for a carrier as long as the test needs.
    const dispatcher = new Dispatcher({ pool: t.db.pool, providers: createProviders(config.providers, 3_000), retry: config.retry, logger: captureLogger("silent").logger, publicUrl: () => "", sentRecordWaitMs: 60_000 });
    const variables = { amount: "KES 150", worker: "Amina", reference: "QK12ABC" };
    const receipt = (phone: string) => {
      const key = `carry-${randomUUID()}`;
      return { sourceKey: `rpc:${key}`, to: { phone }, templateKey: TemplateKey.RECEIPT, variables, claim: { schema: "notification", operation: "test/carry", caller: "", key, fingerprint: "f" } };
    };
    const first = await enqueueClaiming(t.db.pool, [receipt(a)], new Date(), dispatcher.firstProviders());
    const [idA] = first.claimed.map((c) => c.delivery.id);
    dispatcher.sendClaimed(first.claimed);
    const [sms] = await eventually("the first SMS", () => smsTo(a).length === 1 && smsTo(a));
    // The provider's report beats the record: applied once the record is written.
    assert.equal(await sim.reportDelivery(sms.id, "delivered"), 200);
    await sleep(100);
    const attemptOf = async (id: string) => (await t.db.pool.query("SELECT status FROM notification.delivery_attempts WHERE delivery_id = $1", [id])).rows[0].status;
    assert.equal(await attemptOf(idA), "sending", "its record waits for a carrier");
    const taken = dispatcher.takeSentRecords()!;
    assert.deepEqual(taken.carried.sends.map((x) => x.d.id), [idA]);
    assert.equal(dispatcher.takeSentRecords(), undefined, "taken once");
    const { result: second, statements } = await withStatements(() => enqueueClaiming(t.db.pool, [receipt(b)], new Date(), dispatcher.firstProviders(), taken.carried));
    // The service's sweeper (every 100 ms) shares the pool: only the statements about these deliveries count.
    const theirs = statements.filter((text) => /planned AS|sent_in AS|idempotent_requests/.test(text));
    assert.equal(theirs.length, 1, "one statement wrote the second receipt and carried the first's record");
    assert.match(theirs[0], /sent_in AS[\s\S]*planned AS/);
    assert.deepEqual([...taken.carried.early!], [idA], "the first's report came before its record");
    await taken.settle();
    assert.equal((await delivery(idA)).status, DeliveryStatus.DELIVERED, "the report applied in order: sent, then delivered");
    assert.equal(await attemptOf(idA), "sent");
    dispatcher.sendClaimed(second.claimed);
    await eventually("the second SMS", () => smsTo(b).length === 1);
    // A call that writes no statement carries nothing: the second's record is then written alone.
    const [idB] = second.claimed.map((c) => c.delivery.id);
    // Its acceptance waits for a carrier once the dispatcher has read the provider's answer (after the simulator has the SMS).
    const again = await eventually("the second's record waiting for a carrier", () => dispatcher.takeSentRecords());
    const made = await enqueueClaiming(t.db.pool, [], new Date(), dispatcher.firstProviders(), again.carried);
    assert.deepEqual(made.made, []);
    assert.equal(again.carried.early, undefined, "no statement ran, so none carried it");
    await again.settle();
    await dispatcher.drain();
    assert.equal(await attemptOf(idB), "sent", "written alone");
    assert.equal((await delivery(idB)).status, DeliveryStatus.SENT);
  });

  test("stranded deliveries beyond one page are all given work, page after page, and each is sent once", async () => {
    const phones = [testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" }), testPhone({ format: "+254" })];
    const ids: string[] = [];
    for (const phone of phones) ids.push(await stranded(phone));
    // Pages of two: one page alone would leave three of these without work. (Earlier tests may leave some too.)
    assert.ok((await redispatchStranded(t.db.pool, undefined, 2)) >= phones.length);
    for (const id of ids) await deliveryIn(id, DeliveryStatus.SENT);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(phones.map((p) => smsTo(p).length), [1, 1, 1, 1, 1]);
  });

  test("a batch of requests is written in two statements (recipients with push devices, then every delivery), each as it would be alone", async () => {
    const known = randomUUID();
    const unknown = randomUUID();
    const knownPhone = normalisePhone(testPhone({ format: "+254" }));
    const stopped = normalisePhone(testPhone({ format: "+254" }));
    await internal().upsertContact({ userId: known, phone: knownPhone, locale: "sw" });
    await asUser(known).registerPushToken({ token: `fcm-token-${known}`, platform: "android" });
    await t.db.pool.query("INSERT INTO notification.sms_opt_outs (phone, provider) VALUES ($1, 'africastalking')", [stopped]);
    const client = await t.db.pool.connect();
    const statements: string[] = [];
    // Templates are cached by the process; what is counted is the statements per batch.
    const counted = {
      query: (text: string, values?: unknown[]) => {
        if (!text.includes("notification.templates")) statements.push(text);
        return client.query(text, values);
      },
    } as unknown as typeof client;
    try {
      // Rolled back at the end: the dispatcher never sees these rows.
      await client.query("BEGIN");
      const tip = { templateKey: TemplateKey.TIP_RECEIVED, variables: { amount: "KES 150", net: "KES 142.50", from: "TTIP", message: "" } };
      const toKnown = { ...tip, sourceKey: `event:${randomUUID()}`, to: { userId: known } };
      const toUnknown = { ...tip, sourceKey: `event:${randomUUID()}`, to: { userId: unknown } };
      const receipt = { sourceKey: `rpc:${randomUUID()}`, to: { phone: stopped }, templateKey: TemplateKey.RECEIPT, variables: { amount: "KES 150", worker: "Amina", reference: "QK12ABC" } };
      const ids = await enqueueMany(counted, [toKnown, toUnknown, receipt, toKnown]);
      assert.equal(statements.length, 2, "one statement reads the recipients, one writes the deliveries");
      assert.deepEqual(ids[3], ids[0], "the same request twice in a batch is one set of deliveries");
      const rows = await client.query("SELECT id, user_id, channel, address, status, last_error, locale FROM notification.deliveries WHERE id = ANY($1::uuid[])", [ids.flat()]);
      const byId = new Map(rows.rows.map((r) => [r.id, r]));
      const shape = (list: string[]) => list.map((id) => byId.get(id)).map((r) => [r.channel, r.status, r.address === "" ? "" : "address", r.locale, r.last_error]);
      assert.deepEqual(shape(ids[0]), [[Channel.SMS, "queued", "address", "sw", null], [Channel.PUSH, "queued", "address", "sw", null], [Channel.IN_APP, "delivered", "address", "sw", null]]);
      // Nothing stored: no push device, and an SMS whose number the dispatcher asks auth for.
      assert.deepEqual(shape(ids[1]), [[Channel.SMS, "queued", "", "en", null], [Channel.IN_APP, "delivered", "address", "en", null]]);
      assert.deepEqual(shape(ids[2]), [[Channel.SMS, "failed", "address", "en", "recipient texted STOP"]]);
      const events = await client.query<{ payload: Buffer }>("SELECT payload FROM notification.outbox WHERE created_at = now() AND subject = 'ttip.notification.delivery_updated'");
      const said = events.rows.map((r) => fromBinary(DeliveryUpdatedSchema, r.payload)).map((e) => `${e.deliveryId}:${e.status}`);
      const decided = [...ids[0], ...ids[1], ...ids[2]].filter((id) => byId.get(id).status !== "queued");
      assert.equal(decided.length, 3, "two in-app delivered, one SMS failed");
      assert.deepEqual(said.sort(), decided.map((id) => `${id}:${byId.get(id).status}`).sort(), "one fact per delivery with an outcome, saying it; none for a queued one");
      const queued = [...ids[0], ...ids[1], ...ids[2]].filter((id) => byId.get(id).status === "queued");
      assert.equal(queued.length, 3);
      assert.deepEqual(await dispatchWork(client), queued.map((id) => `${id}:queued:${dispatchSubject(dispatchShardOf(id))}`).sort(), "each queued delivery goes to its shard's dispatcher, once");
      const shown = await client.query("SELECT user_id FROM notification.inapp_notifications WHERE delivery_id = ANY($1::uuid[]) ORDER BY user_id", [ids.flat()]);
      assert.deepEqual(shown.rows.map((r) => r.user_id), [known, unknown].sort());

      // The batch again (a redelivery): the same ids, nothing new.
      statements.length = 0;
      assert.deepEqual(await enqueueMany(counted, [toKnown, toUnknown, receipt]), ids.slice(0, 3));
      assert.equal(statements.length, 2);
      const again = await client.query("SELECT count(*)::int AS n FROM notification.outbox WHERE created_at = now()");
      assert.equal(again.rows[0].n, events.rowCount! + queued.length, "a repeat announces nothing and queues no more work");
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  });

  test("an e-mail address is kept by an empty email and removed by remove_email; remove_email with an address is refused naming it, changing nothing", async () => {
    const workerId = randomUUID();
    await internal().upsertContact({ userId: workerId, phone: testPhone({ format: "+254" }) });
    const me = asUser(workerId);
    await me.updatePreferences({ preferences: { email: "wanjiru@example.com" } });
    assert.equal((await me.updatePreferences({ preferences: { quietHoursStart: "22:00", quietHoursEnd: "06:00" } })).preferences!.email, "wanjiru@example.com", "an empty email keeps it");
    await assert.rejects(
      me.updatePreferences({ preferences: { email: "other@example.com" }, removeEmail: true }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /^\[invalid_argument\] remove_email: /.test(e.message),
    );
    assert.equal((await me.getPreferences({})).preferences!.email, "wanjiru@example.com", "the refused call changed nothing");
    // A control character, or longer than an address can be (before, stored as given): refused naming the field.
    for (const email of ["a\u0007b@example.com", `${"a".repeat(250)}@example.com`]) {
      await assert.rejects(
        me.updatePreferences({ preferences: { email } }),
        (e: ConnectError) => e.code === Code.InvalidArgument && /^\[invalid_argument\] preferences\.email: /.test(e.message),
      );
    }
    const removed = await me.updatePreferences({ preferences: { quietHoursStart: "22:00", quietHoursEnd: "06:00" }, removeEmail: true });
    assert.equal(removed.preferences!.email, "");
    assert.equal((await me.getPreferences({})).preferences!.quietHoursStart, "22:00", "the rest as given");
  });

  test("preferences choose channels per kind; quiet hours hold SMS but not in-app, nor a payout number's change or a device added", async () => {
    const workerId = randomUUID();
    const phone = testPhone({ format: "+254" });
    await internal().upsertContact({ userId: workerId, phone });
    const me = asUser(workerId);
    await assert.rejects(
      me.updatePreferences({ preferences: { quietHoursStart: "25:00", quietHoursEnd: "06:00" } }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /quiet_hours_start/.test(e.message),
    );
    await assert.rejects(
      me.updatePreferences({ preferences: { kinds: [{ key: TemplateKey.OTP, channels: [Channel.EMAIL] }] } }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /kinds\[0\]/.test(e.message),
    );
    const updated = await me.updatePreferences({ preferences: { locale: "sw", kinds: [{ key: TemplateKey.TIP_RECEIVED, channels: [Channel.IN_APP] }] } });
    assert.deepEqual(updated.preferences!.kinds.find((k) => k.key === TemplateKey.TIP_RECEIVED)!.channels, [Channel.IN_APP]);
    assert.deepEqual(updated.preferences!.kinds.find((k) => k.key === TemplateKey.PAYOUT_SENT)!.channels, [Channel.SMS, Channel.PUSH, Channel.IN_APP]);
    assert.equal((await me.getPreferences({})).preferences!.locale, "sw");

    await publish(t.ctx.bus, "ttip.payment.tip_succeeded", TipSucceededSchema, { tipId: randomUUID(), workerId, amount: kesMinor(5000n), net: kesMinor(4750n) });
    await eventually("the in-app tip", async () => (await me.listInAppNotifications({})).unreadCount === 1);

    // Quiet from the hour before to two hours on (East Africa Time, the service's clock): at least an
    // hour left, so the hour turning while the test runs cannot end them early.
    const eat = (h: number) => `${String((new Date(clock.now()).getUTCHours() + 3 + h + 24) % 24).padStart(2, "0")}:00`;
    await me.updatePreferences({ preferences: { quietHoursStart: eat(-1), quietHoursEnd: eat(2) } });
    await publish(t.ctx.bus, "ttip.payment.fraud_alert", FraudAlertSchema, { alertId: randomUUID(), reasonCode: "VELOCITY_PHONE", payoutId: randomUUID(), workerId, action: "held" });
    await eventually("the in-app hold notice", async () => (await me.listInAppNotifications({})).unreadCount === 2);
    const held = await eventually("the SMS delivery parked", async () => {
      const r = await t.db.pool.query("SELECT status, parked, next_attempt_at FROM notification.deliveries WHERE user_id = $1 AND channel = $2", [workerId, Channel.SMS]);
      return r.rows[0]?.parked && r.rows[0];
    });
    assert.equal(held.status, "queued");
    assert.ok(held.next_attempt_at.getTime() > Date.now() + 60_000);
    // Parked is the dispatcher's decision not to send now (a parked delivery is never claimed).
    assert.equal(smsTo(phone).length, 0, "no SMS during quiet hours, and none for the tip the worker chose in-app for");

    // A security notice is not held: the payout number changed goes by SMS now, quiet hours or not.
    await publish(t.ctx.bus, "ttip.payment.payout_number_changed", PayoutNumberChangedSchema, { workerId, phoneMasked: "2547******99", previousPhoneMasked: "2547******12" });
    const notice = await eventually("the payout number notice", () => smsTo(phone)[0]);
    assert.equal(notice.body, "Pesa zako za TTIP sasa zitatumwa kwa M-Pesa 2547******99. Kama hukufanya badiliko hili, wasiliana na TTIP mara moja.");
    await publish(t.ctx.bus, "ttip.auth.device_registered", DeviceRegisteredSchema, { userId: workerId, deviceId: randomUUID(), name: "Pixel" });
    const device = await eventually("the new device notice", () => smsTo(phone).find((m) => m.body.startsWith("Kifaa kipya")));
    assert.equal(device.body, "Kifaa kipya sasa kinaweza kuidhinisha utoaji wa pesa kwenye akaunti yako ya TTIP. Kama hukukiongeza, wasiliana na TTIP mara moja.");
    await assert.rejects(
      me.updatePreferences({ preferences: { kinds: [{ key: TemplateKey.PAYOUT_NUMBER_CHANGED, channels: [Channel.IN_APP] }] } }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /kinds\[0\]\.key/.test(e.message),
      "the notice cannot be turned off",
    );

    // The quiet hours end (the service's clock three hours on): the sweeper queues it again and it goes out.
    clock.advance(3 * 3_600_000);
    const sms = await eventually("the held SMS", () => smsTo(phone).find((m) => m.body.startsWith("Kwa usalama")));
    assert.match(sms.body, /^Kwa usalama wako tumesimamisha [0-9A-F]{10} ili ukaguliwe \(velocity phone\)/);
  });

  test("a worker chooses the channels of pool-share messages: set to in-app, a share comes in the app and sends no SMS", async () => {
    const workerId = randomUUID();
    const phone = testPhone({ format: "+254" });
    await internal().upsertContact({ userId: workerId, phone });
    const me = asUser(workerId);
    // Before, refused: "preferences.kinds[0].key: must be a defined template key".
    const updated = await me.updatePreferences({ preferences: { kinds: [{ key: TemplateKey.POOL_SHARE, channels: [Channel.IN_APP] }] } });
    assert.deepEqual(updated.preferences!.kinds.find((k) => k.key === TemplateKey.POOL_SHARE)?.channels, [Channel.IN_APP]);
    await publish(t.ctx.bus, "ttip.venue.share_allocated", VenueShareAllocatedSchema, {
      venueId: randomUUID(), venueName: "Java House", distributionId: randomUUID(), memberId: randomUUID(), workerId, amount: kesMinor(125_000n), ruleVersion: 3, method: 1,
    });
    await eventually("the in-app pool share", async () => (await me.listInAppNotifications({})).unreadCount === 1);
    const sms = await t.db.pool.query("SELECT count(*)::int AS n FROM notification.deliveries WHERE user_id = $1 AND channel = $2", [workerId, Channel.SMS]);
    assert.equal(sms.rows[0].n, 0, "no SMS queued");
    assert.equal(smsTo(phone).length, 0);
  });

  test("an SMS held for quiet hours is not sent when they end if the worker has meanwhile turned SMS off for its kind", async () => {
    const workerId = randomUUID();
    const phone = testPhone({ format: "+254" });
    await internal().upsertContact({ userId: workerId, phone });
    const me = asUser(workerId);
    // Quiet from the hour before to two hours on (East Africa Time, the service's clock): at least an hour left.
    const eat = (h: number) => `${String((new Date(clock.now()).getUTCHours() + 3 + h + 24) % 24).padStart(2, "0")}:00`;
    await me.updatePreferences({ preferences: { quietHoursStart: eat(-1), quietHoursEnd: eat(2) } });
    await publish(t.ctx.bus, "ttip.payment.tip_succeeded", TipSucceededSchema, { tipId: randomUUID(), workerId, amount: kesMinor(5000n), net: kesMinor(4750n) });
    const sms = "SELECT status, parked, last_error FROM notification.deliveries WHERE user_id = $1 AND channel = $2";
    await eventually("the tip's SMS held", async () => (await t.db.pool.query(sms, [workerId, Channel.SMS])).rows[0]?.parked);
    await me.updatePreferences({ preferences: { kinds: [{ key: TemplateKey.TIP_RECEIVED, channels: [Channel.IN_APP] }] } });
    clock.advance(3 * 3_600_000);
    // Before, the SMS the worker had turned off went out at the end of the quiet hours.
    const ended = await eventually("the held SMS dropped", async () => {
      const r = (await t.db.pool.query(sms, [workerId, Channel.SMS])).rows[0];
      return !r.parked && r;
    });
    assert.equal(ended.status, "failed");
    assert.match(ended.last_error, /turned this channel off/);
    assert.equal(smsTo(phone).length, 0);
  });

  test("the in-app inbox streams new notifications live and counts unread ones", async () => {
    const workerId = randomUUID();
    const me = asUser(workerId);
    const abort = new AbortController();
    const stream = me.watchInAppNotifications({}, { signal: abort.signal });
    const first = (async () => {
      for await (const m of stream) return m.notification!;
      throw new Error("stream ended");
    })();
    await eventually("the live feed listening", () => inAppSignals.listenerCount(workerId) > 0);
    await publish(t.ctx.bus, "ttip.payment.payout_failed", PayoutFailedSchema, { payoutId: randomUUID(), workerId, amount: kesMinor(50000n), reason: "M-Pesa is unavailable" });
    const n = await Promise.race([first, sleep(10_000).then(() => assert.fail("no live notification"))]);
    abort.abort();
    assert.equal(n.title, "Withdrawal failed");
    assert.equal(n.templateKey, TemplateKey.PAYOUT_FAILED);
    assert.equal((await me.listInAppNotifications({ unreadOnly: true })).unreadCount, 1);
    await asUser(randomUUID()).markRead({ notificationIds: [n.notificationId] });
    assert.equal((await me.listInAppNotifications({})).unreadCount, 1, "someone else cannot mark it read");
    await me.markRead({ notificationIds: [n.notificationId] });
    const after = await me.listInAppNotifications({ unreadOnly: true });
    assert.equal(after.unreadCount, 0);
    assert.equal(after.notifications.length, 0);
  });

  test("the live feed keeps up with more than 100 notifications made at one moment (a trigger batch's rows share their time): every one arrives", async () => {
    const workerId = randomUUID();
    const abort = new AbortController();
    const got = new Set<string>();
    const reading = (async () => {
      for await (const m of asUser(workerId).watchInAppNotifications({}, { signal: abort.signal })) {
        got.add(m.notification!.notificationId);
        if (got.size === 150) return;
      }
    })().catch(() => undefined);
    await eventually("the live feed listening", () => inAppSignals.listenerCount(workerId) > 0);
    await t.db.pool.query(
      `WITH d AS (INSERT INTO notification.deliveries (id, source_key, recipient_key, channel, address, address_masked, template_key, template_version, locale, body, status)
                  SELECT gen_random_uuid(), 'test:' || gen_random_uuid(), 'user:' || $1, $2, '', '', $3, 1, 'en', 'b', 'delivered' FROM generate_series(1, 150) RETURNING id)
       INSERT INTO notification.inapp_notifications (id, user_id, delivery_id, template_key, title, body, created_at) SELECT gen_random_uuid(), $1::uuid, id, $3, 't', 'b', now() FROM d`,
      [workerId, Channel.IN_APP, TemplateKey.PAYOUT_FAILED],
    );
    // Before, the first 100 were read again on every wake: the other 50 never came.
    await eventually("all 150 streamed", () => got.size === 150);
    abort.abort();
    await reading;
  });

  test("an attempt cut off by a crash between send and record is sent again once (a sign-in code never): a second crash fails it", async () => {
    /** An attempt `attempt` of the delivery, 'sending' since an hour ago: a crash cut it off. */
    const cutOff = (id: string, attempt: number) =>
      t.db.pool.query(
        "INSERT INTO notification.delivery_attempts (delivery_id, attempt, provider, status, started_at) VALUES ($1, $2, 'africastalking', 'sending', now() - interval '1 hour')",
        [id, attempt],
      );
    const dispatcher = dispatcherWith(createProviders(config.providers, 3_000));
    const id = await queuedSms(1);
    await cutOff(id, 1);
    await dispatcher.run(id);
    assert.equal(await textsFor([id]), 1, "the provider called again, once");
    const d = await delivery(id);
    assert.equal(d.status, DeliveryStatus.SENT);
    assert.deepEqual(d.attempts.map((a) => a.status), [DeliveryStatus.FAILED, DeliveryStatus.SENT]);
    assert.match(d.attempts[0].error, /crash/);

    // The resend cut off too: that delivery fails in doubt, not sent a third time.
    const twice = await queuedSms(2);
    await t.db.pool.query("INSERT INTO notification.delivery_attempts (delivery_id, attempt, provider, status, error) VALUES ($1, 1, 'africastalking', 'in_doubt', 'no answer recorded (crash during send); sent again')", [twice]);
    await cutOff(twice, 2);
    // A sign-in code cut off is not sent again: by now it may have expired, and the user asks for another.
    const code = await queuedSms(1, TemplateKey.OTP);
    await cutOff(code, 1);
    for (const failed of [twice, code]) {
      await dispatcher.run(failed);
      const f = await delivery(failed);
      assert.equal(f.status, DeliveryStatus.FAILED);
      assert.match(f.attempts.at(-1)!.error, /crash/);
    }
    assert.equal(await textsFor([twice, code]), 0, "neither sent again");
  });

  test("dispatchers racing for one delivery (its claim a compare-and-set on the attempt count, without a transaction) send it once", async () => {
    const id = await queuedSms();
    const dispatchers = Array.from({ length: 4 }, () => dispatcherWith(createProviders(config.providers, 3_000)));
    // A loser finds the attempt in flight (not due again yet) or the delivery sent.
    await Promise.all(dispatchers.map((d) => d.run(id).catch((err) => assert.ok(err instanceof RetryLater, String(err)))));
    const d = await delivery(id);
    assert.equal(d.status, DeliveryStatus.SENT);
    assert.equal(d.attempts.length, 1, "one attempt recorded");
    assert.equal(await textsFor([id]), 1, "the provider called once");
  });

  test("dispatchers queued on a delivery's lock each see the attempt the one before them marked sending, and send it once", async () => {
    const id = await queuedSms();
    // Due half a millisecond after the dispatchers' clock: the batch claim (SQL, to the microsecond) finds it
    // not due, nextStep (to the millisecond) finds it due, so each dispatcher claims it under the row's lock.
    const at = Date.now() - 1_000;
    await t.db.pool.query("UPDATE notification.deliveries SET next_attempt_at = $2::timestamptz + interval '500 microseconds' WHERE id = $1", [id, new Date(at)]);
    const dispatchers = Array.from({ length: 3 }, () =>
      new Dispatcher({ pool: t.db.pool, providers: createProviders(config.providers, 3_000), retry: config.retry, logger: captureLogger("silent").logger, publicUrl: () => "", clock: { now: () => at } }),
    );
    const holder = await t.db.pool.connect();
    let runs: Promise<unknown>[] = [];
    try {
      // Each dispatcher's read starts while another transaction holds the row, so all of them wait for it.
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM notification.deliveries WHERE id = $1 FOR UPDATE", [id]);
      runs = dispatchers.map((d) => d.run(id).catch((err) => assert.ok(err instanceof RetryLater, String(err))));
      await eventually("all three dispatchers waiting for the row", async () => {
        // Not on the holder: a transaction sees pg_stat_activity as it was when it first looked.
        const { rows } = await t.db.pool.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'",
        );
        return rows[0].n === dispatchers.length;
      });
    } finally {
      await holder.query("COMMIT").catch(() => undefined);
      holder.release();
    }
    await Promise.all(runs);
    const d = await delivery(id);
    assert.equal(d.status, DeliveryStatus.SENT);
    assert.equal(d.attempts.length, 1, "one attempt recorded");
    assert.equal(await textsFor([id]), 1, "the provider called once");
  });

  test("a batch of deliveries is claimed together and each sent once, even by two dispatchers racing; one needing a decision goes alone", async () => {
    const fresh = await Promise.all([queuedSms(), queuedSms(), queuedSms()]);
    // Cut off by a crash mid-send: not for the batch's claim; decided alone, under the row's lock.
    const cutOff = await queuedSms(1);
    await t.db.pool.query(
      "INSERT INTO notification.delivery_attempts (delivery_id, attempt, provider, status, started_at) VALUES ($1, 1, 'africastalking', 'sending', now() - interval '1 hour')",
      [cutOff],
    );
    const sentBefore = await queuedSms();
    await dispatcherWith(createProviders(config.providers, 3_000)).run(sentBefore);
    const ids = [...fresh, cutOff, sentBefore];
    const dispatchers = Array.from({ length: 2 }, () => dispatcherWith(createProviders(config.providers, 3_000)));
    // A loser finds an attempt in flight (due again later) or the delivery sent.
    await Promise.all(dispatchers.map((d) => d.runMany(ids).catch((err) => assert.ok(err instanceof RetryLater, String(err)))));
    for (const id of fresh) {
      const d = await delivery(id);
      assert.equal(d.status, DeliveryStatus.SENT);
      assert.equal(d.attempts.length, 1, "one attempt recorded");
    }
    assert.equal(await textsFor(fresh), fresh.length, "the provider called once per fresh delivery");
    assert.equal(await textsFor([cutOff]), 1, "and once for the one cut off");
    assert.equal(await textsFor([sentBefore]), 1, "and not again for the one sent before");
    const doubted = await delivery(cutOff);
    assert.equal(doubted.status, DeliveryStatus.SENT, "the one cut off by a crash is sent again, once");
    assert.deepEqual(doubted.attempts.map((a) => a.status), [DeliveryStatus.FAILED, DeliveryStatus.SENT]);
    assert.match(doubted.attempts[0].error, /crash/);
    assert.equal((await delivery(sentBefore)).attempts.length, 1, "the one sent before is not sent again");
  });

  test("while auth cannot say a user's number, a dispatcher asks it less and less often, not once a second per delivery", async () => {
    const ids = Array.from({ length: 5 }, () => randomUUID());
    for (const id of ids) {
      await t.db.pool.query(
        `INSERT INTO notification.deliveries (id, source_key, recipient_key, channel, user_id, address, address_masked, template_key, template_version, locale, body, status)
         VALUES ($1, $2, $3::text, $4, $3::uuid, '', '', $5, 1, 'en', 'hello', 'queued')`,
        [id, `rpc:${id}`, randomUUID(), Channel.SMS, TemplateKey.RECEIPT],
      );
    }
    let asked = 0;
    const contacts = async () => {
      asked++;
      throw new ConnectError("auth is down", Code.Unavailable);
    };
    const dispatcher = new Dispatcher({ pool: t.db.pool, providers: createProviders(config.providers, 3_000), retry: config.retry, logger: captureLogger("silent").logger, publicUrl: () => "", contacts });
    // As the bus brings each back: every 100 ms for 2.5 s, each time told to retry later.
    for (const until = Date.now() + 2_500; Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
      for (const id of ids) await assert.rejects(dispatcher.run(id), RetryLater);
    }
    // Before, each delivery asked each time: about 125 calls. Now the first, then after 1 s, then after 2 s more.
    assert.ok(asked <= 3, `auth asked ${asked} times`);
    assert.ok(asked >= 2, "asked again after the pause");
    for (const id of ids) assert.equal((await delivery(id)).status, DeliveryStatus.QUEUED, "still waiting for a number, not failed");
  });

  test("two dispatchers that both find a user's number missing fail the delivery once, with one failed fact", async () => {
    const id = randomUUID();
    const userId = randomUUID();
    await t.db.pool.query(
      `INSERT INTO notification.deliveries (id, source_key, recipient_key, channel, user_id, address, address_masked, template_key, template_version, locale, body, status)
       VALUES ($1, $2, $3::text, $4, $3::uuid, '', '', $5, 1, 'en', 'hello', 'queued')`,
      [id, `rpc:${id}`, userId, Channel.SMS, TemplateKey.RECEIPT],
    );
    // Auth answers "no number" to both, once both have asked: each goes on to fail the delivery.
    let asked = 0;
    let answer: () => void = () => undefined;
    const bothAsked = new Promise<void>((r) => (answer = r));
    const contacts = async () => {
      if (++asked === 2) answer();
      await bothAsked;
      return null;
    };
    const dispatchers = Array.from({ length: 2 }, () =>
      new Dispatcher({ pool: t.db.pool, providers: createProviders(config.providers, 3_000), retry: config.retry, logger: captureLogger("silent").logger, publicUrl: () => "", contacts }),
    );
    await Promise.all(dispatchers.map((d) => d.run(id)));
    assert.equal(asked, 2, "both dispatchers looked the number up");
    const d = await delivery(id);
    assert.equal(d.status, DeliveryStatus.FAILED);
    const facts = await t.db.pool.query<{ payload: Buffer }>("SELECT payload FROM notification.outbox WHERE subject = 'ttip.notification.delivery_updated' ORDER BY seq DESC LIMIT 200");
    const said = facts.rows.map((r) => fromBinary(DeliveryUpdatedSchema, r.payload)).filter((e) => e.deliveryId === id).map((e) => e.status);
    assert.deepEqual(said, ["failed"], "one failed fact");
  });

  test("a provider that takes a send and never answers leaves it in doubt: no retry, no failover", async () => {
    const id = await queuedSms();
    sim.stalled.add("africastalking");
    try {
      const twilioCalls = sim.calls.twilio;
      const dispatcher = dispatcherWith(createProviders(config.providers, 200));
      await dispatcher.run(id);
      const d = await delivery(id);
      assert.equal(d.status, DeliveryStatus.FAILED);
      assert.equal(d.attempts.length, 1);
      assert.match(d.attempts[0].error, /in doubt: .*TimeoutError/);
      assert.equal(sim.calls.twilio, twilioCalls);
    } finally {
      sim.stalled.delete("africastalking");
    }
  });

  test("a delivery's public facts are its outcomes: waiting (queued, retrying) publishes none, and GetDelivery shows it", async () => {
    // Written and claimed by the call's statement, sent by the call at once: one fact, sent.
    const [direct] = (await sendReceipt(testPhone({ format: "+254" }), { amount: "KES 150", worker: "Amina", reference: "QK12ABC" })).deliveryIds;
    await deliveryIn(direct, DeliveryStatus.SENT);
    assert.deepEqual(await factsOf(direct), ["sent"]);

    // A provider that refuses: the delivery waits for the fallback (retrying), which sends it.
    const down: Provider = { name: "down", send: async () => ({ ok: false, kind: "provider", error: "HTTP 503" }) };
    const dispatcher = dispatcherWith({ sms: [down, answeringAfter(async () => {})], email: [], push: [] });
    const id = await queuedSms();
    await assert.rejects(dispatcher.run(id), RetryLater);
    const waiting = await delivery(id);
    assert.deepEqual([waiting.status, waiting.attempts.map((a) => a.status)], [DeliveryStatus.RETRYING, [DeliveryStatus.FAILED]], "GetDelivery shows the wait");
    assert.deepEqual(await factsOf(id), [], "no retrying fact");
    await dispatcher.run(id);
    assert.equal((await delivery(id)).status, DeliveryStatus.SENT);
    assert.deepEqual(await factsOf(id), ["sent"]);
  });

  test("every provider down: the delivery starts over from the first after a pause, until too long after its first attempt (a sign-in code after one round)", async () => {
    let up = false;
    const real = answeringAfter(async () => {});
    const flaky: Provider = { name: real.name, send: async (m) => (up ? real.send(m) : { ok: false, kind: "provider", error: "HTTP 503" }) };
    const down: Provider = { name: "down", send: async () => ({ ok: false, kind: "provider", error: "HTTP 503" }) };
    let now = Date.now() + 1_000; // the queued deliveries are due by it
    const dispatcher = new Dispatcher({ pool: t.db.pool, providers: { sms: [flaky, down], email: [], push: [] }, retry: config.retry, logger: captureLogger("silent").logger, publicUrl: () => "", clock: { now: () => now } });
    const id = await queuedSms();
    await assert.rejects(dispatcher.run(id), RetryLater); // the first refuses: the fallback's turn
    await assert.rejects(dispatcher.run(id), RetryLater); // the fallback refuses too
    // Before, failed for good here: an outage of seconds lost the receipt.
    const waiting = await delivery(id);
    assert.equal(DeliveryStatus[waiting.status], DeliveryStatus[DeliveryStatus.RETRYING]);
    const { rows: [due] } = await t.db.pool.query("SELECT provider_index, next_attempt_at FROM notification.deliveries WHERE id = $1", [id]);
    assert.equal(due.provider_index, 0, "from the first provider again");
    assert.ok(due.next_attempt_at.getTime() - now >= config.retry.roundPauseMs, "after a pause");
    up = true;
    now += config.retry.roundPauseMs;
    await dispatcher.run(id);
    assert.equal(DeliveryStatus[(await delivery(id)).status], DeliveryStatus[DeliveryStatus.SENT]);
    up = false;
    // First tried longer ago than the service keeps trying (made long before counts for nothing: quiet hours held it),
    // and a sign-in code whatever its age (the user asks for another): failed once both refuse.
    for (const [templateKey, age] of [[TemplateKey.RECEIPT, config.retry.giveUpAfterMs], [TemplateKey.OTP, 0]] as const) {
      const old = await queuedSms(0, templateKey);
      await t.db.pool.query("UPDATE notification.deliveries SET created_at = $2 WHERE id = $1", [old, new Date(now - 10 * config.retry.giveUpAfterMs)]);
      await assert.rejects(dispatcher.run(old), RetryLater);
      await t.db.pool.query("UPDATE notification.delivery_attempts SET started_at = $2 WHERE delivery_id = $1", [old, new Date(now - age)]);
      await dispatcher.run(old);
      const failed = await delivery(old);
      assert.equal(DeliveryStatus[failed.status], DeliveryStatus[DeliveryStatus.FAILED], TemplateKey[templateKey]);
      const { rows: [why] } = await t.db.pool.query("SELECT last_error FROM notification.deliveries WHERE id = $1", [old]);
      assert.equal(why.last_error, "HTTP 503 (every provider tried until it was too late to send)");
    }
    // Made 8 hours ago and held back for quiet hours, first tried now: its rounds count from now (before, failed at once).
    const held = await queuedSms();
    await t.db.pool.query("UPDATE notification.deliveries SET created_at = $2 WHERE id = $1", [held, new Date(now - 8 * 3_600_000)]);
    await assert.rejects(dispatcher.run(held), RetryLater);
    await assert.rejects(dispatcher.run(held), RetryLater);
    assert.equal(DeliveryStatus[(await delivery(held)).status], DeliveryStatus[DeliveryStatus.RETRYING]);
  });

  test("a retry that would fall in the user's quiet hours waits for their end; a sign-in code does not", async () => {
    const now = Date.now() + 1_000; // the queued deliveries are due by it
    const busy: Provider = { name: "busy", send: async () => ({ ok: false, kind: "transient", error: "HTTP 503" }) };
    const dispatcher = new Dispatcher({ pool: t.db.pool, providers: { sms: [busy], email: [], push: [] }, retry: config.retry, logger: captureLogger("silent").logger, publicUrl: () => "", clock: { now: () => now } });
    // Quiet from this hour to two hours on (East Africa Time, the dispatcher's clock): the retry's backoff ends inside.
    const eat = (h: number) => `${String((new Date(now).getUTCHours() + 3 + h + 24) % 24).padStart(2, "0")}:00`;
    const quietEnd = quietUntil(new Date(now), eat(0), eat(2))!;
    const dueOf = async (templateKey: TemplateKey) => {
      const userId = randomUUID();
      await t.db.pool.query("INSERT INTO notification.recipients (user_id, locale, kinds, quiet_start, quiet_end) VALUES ($1, 'en', '{}', $2, $3)", [userId, eat(0), eat(2)]);
      const id = await queuedSms(0, templateKey);
      await t.db.pool.query("UPDATE notification.deliveries SET user_id = $2 WHERE id = $1", [id, userId]);
      await assert.rejects(dispatcher.run(id), RetryLater);
      return (await t.db.pool.query("SELECT next_attempt_at FROM notification.deliveries WHERE id = $1", [id])).rows[0].next_attempt_at.getTime();
    };
    // Before, a receipt whose provider was down at 21:55 was sent at 01:10, when it came back.
    assert.equal(await dueOf(TemplateKey.RECEIPT), quietEnd.getTime());
    assert.ok(await dueOf(TemplateKey.OTP) < now + 60_000, "a sign-in code is tried again at once");
  });

  test("a failover is counted once committed: a rolled-back attempt counts nothing, a committed one counts one", async () => {
    const metrics = new Metrics();
    const down: Provider = { name: "down", send: async () => ({ ok: false, kind: "provider", error: "HTTP 503" }) };
    const dispatcher = new Dispatcher({
      pool: t.db.pool, providers: { sms: [down, answeringAfter(async () => {})], email: [], push: [] }, retry: config.retry,
      logger: captureLogger("silent").logger, publicUrl: () => "", metrics,
    });
    const failovers = async () => (await metrics.registry.getSingleMetric("ttip_notification_provider_failovers_total")?.get())?.values.reduce((n, v) => n + v.value, 0) ?? 0;

    const refused = await queuedSms();
    const name = `refuse_${refused.replaceAll("-", "")}`;
    // A check deferred to COMMIT: the failover is written, then the whole transaction rolls back.
    await t.db.pool.query(`CREATE FUNCTION notification.${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$`);
    await t.db.pool.query(
      `CREATE CONSTRAINT TRIGGER ${name} AFTER UPDATE ON notification.deliveries DEFERRABLE INITIALLY DEFERRED
         FOR EACH ROW WHEN (NEW.id = '${refused}' AND NEW.status = 'retrying') EXECUTE FUNCTION notification.${name}()`,
    );
    try {
      await assert.rejects(dispatcher.run(refused), /refused at commit/);
      assert.equal((await delivery(refused)).status, DeliveryStatus.QUEUED, "nothing of the attempt's record kept");
      assert.equal(await failovers(), 0, "a rolled-back failover is not counted");
    } finally {
      await t.db.pool.query(`DROP TRIGGER ${name} ON notification.deliveries; DROP FUNCTION notification.${name}()`);
    }

    const moved = await queuedSms();
    await assert.rejects(dispatcher.run(moved), RetryLater);
    assert.equal((await delivery(moved)).status, DeliveryStatus.RETRYING);
    assert.equal(await failovers(), 1, "one committed failover, one count");
  });

  test("a delivery report that beats our record of the send is kept and applied", async () => {
    const id = await queuedSms();
    // The real client, but the provider's report lands before send() returns.
    const racing = answeringAfter(async (_m, r) => {
      if (r.ok) assert.equal(await sim.reportDelivery(r.messageId, "delivered"), 200);
    });
    const dispatcher = dispatcherWith({ sms: [racing], email: [], push: [] });
    await dispatcher.run(id);
    assert.equal((await delivery(id)).status, DeliveryStatus.DELIVERED);
    const [attempt] = (await delivery(id)).attempts;
    assert.equal(await reportsKept(attempt.providerMessageId), 0, "applied, the report is not kept");
  });

  /** How many reports are kept for `messageId`, applied or not. */
  const reportsKept = async (messageId: string) =>
    (await t.db.pool.query("SELECT 1 FROM notification.provider_callbacks WHERE message_id = $1", [messageId])).rowCount ?? 0;

  test("a report applied at once, or by the sweeper once its send is recorded, is not kept; one no delivery carries yet is, untouched", async () => {
    const id = await queuedSms();
    await dispatcherWith(createProviders(config.providers, 3_000)).run(id);
    const [attempt] = (await delivery(id)).attempts;
    const report = (messageId: string) => ({ provider: "africastalking", kind: "delivery", messageId, status: "delivered" as const, payload: {} });
    assert.equal(await applyStatusReport(t.db.pool, report(attempt.providerMessageId)), "applied");
    assert.equal(await reportsKept(attempt.providerMessageId), 0, "an applied report is not kept");
    // Nothing to apply: not kept either.
    assert.equal(await applyStatusReport(t.db.pool, { ...report(attempt.providerMessageId), status: undefined }), "ignored");
    assert.equal(await reportsKept(attempt.providerMessageId), 0, "an ignored report is not kept");
    // No delivery carries it yet: kept, not applied, until a send's record or its expiry.
    const unmatched = `unmatched-${randomUUID()}`;
    assert.equal(await applyStatusReport(t.db.pool, report(unmatched)), "pending");
    const pending = async () => (await t.db.pool.query("SELECT status, applied FROM notification.provider_callbacks WHERE message_id = $1", [unmatched])).rows;
    assert.deepEqual(await pending(), [{ status: "delivered", applied: false }]);
    // Its send is recorded meanwhile (as a former version did, on the row): the sweeper applies it, and it goes.
    const later = await queuedSms();
    await t.db.pool.query("UPDATE notification.deliveries SET status = 'sent', provider = 'africastalking', provider_message_id = $2 WHERE id = $1", [later, unmatched]);
    await deliveryIn(later, DeliveryStatus.DELIVERED);
    await eventually("the applied report deleted", async () => (await reportsKept(unmatched)) === 0);
  });

  /** A report that comes in while `record` (a send's "sent" record, uncommitted) is written: it finds nothing, and the sweeper applies it. */
  const reportDuringRecord = async (record: string) => {
    const id = await queuedSms();
    const messageId = `race-${id}`;
    const recording = await t.db.pool.connect();
    try {
      await recording.query("BEGIN");
      // The "sent" record, not committed yet: its look for early reports has found none.
      await recording.query(record, [id, messageId]);
      const report = { provider: "africastalking", kind: "delivery", messageId, status: "delivered" as const, payload: {} };
      assert.equal(await applyStatusReport(t.db.pool, report), "pending", "the report finds no delivery with its message id yet");
      await recording.query("COMMIT");
    } finally {
      recording.release();
    }
    await deliveryIn(id, DeliveryStatus.DELIVERED);
  };

  test("a report that comes in while the send is being recorded (neither sees the other) is applied by the sweeper", async () => {
    await reportDuringRecord(
      `WITH sent AS (UPDATE notification.deliveries SET status = 'sent' WHERE id = $1)
       INSERT INTO notification.provider_messages (provider, message_id, delivery_id) VALUES ('africastalking', $2, $1)`,
    );
  });

  test("a report for a send the former version recorded (the message id on the delivery row, not in provider_messages) is applied, by the sweeper too", async () => {
    await reportDuringRecord("UPDATE notification.deliveries SET status = 'sent', provider = 'africastalking', provider_message_id = $2 WHERE id = $1");
    // And at once when the record was there first.
    const id = await queuedSms();
    await t.db.pool.query("UPDATE notification.deliveries SET status = 'sent', provider = 'africastalking', provider_message_id = $2 WHERE id = $1", [id, `former-${id}`]);
    const report = { provider: "africastalking", kind: "delivery", messageId: `former-${id}`, status: "delivered" as const, payload: {} };
    assert.equal(await applyStatusReport(t.db.pool, report), "applied");
    assert.equal((await delivery(id)).status, DeliveryStatus.DELIVERED);
  });

  test("a report whose delivery is found is not kept: neither written nor updated", async () => {
    const id = await queuedSms();
    await dispatcherWith(createProviders(config.providers, 3_000)).run(id);
    const messageId = (await delivery(id)).attempts[0].providerMessageId;
    // Every update of a kept report meanwhile, logged by a trigger.
    const name = uniqueName("report_updates");
    await t.db.pool.query(
      `CREATE TABLE notification.${name} (message_id text);
       CREATE FUNCTION notification.${name}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO notification.${name} VALUES (NEW.message_id); RETURN NEW; END $$;
       CREATE TRIGGER ${name} AFTER UPDATE ON notification.provider_callbacks FOR EACH ROW EXECUTE FUNCTION notification.${name}()`,
    );
    try {
      assert.equal(await sim.reportDelivery(messageId, "delivered"), 200);
      assert.equal((await delivery(id)).status, DeliveryStatus.DELIVERED);
      assert.equal(await reportsKept(messageId), 0, "an applied report is not kept");
      const updated = await t.db.pool.query(`SELECT 1 FROM notification.${name} WHERE message_id = $1`, [messageId]);
      assert.equal(updated.rowCount, 0, "no report was updated");
    } finally {
      await t.db.pool.query(`DROP TRIGGER ${name} ON notification.provider_callbacks; DROP FUNCTION notification.${name}(); DROP TABLE notification.${name}`);
    }
    assert.deepEqual(await factsOf(id), ["sent", "delivered"], "its sent fact, then its delivered one");
  });

  test("a send's record changes no column an index of deliveries reads (a HOT update, in the room fillfactor leaves), and the provider's reports still find the delivery", async () => {
    // Every column an index of deliveries has as a key, in an expression or in its predicate.
    const { rows: columns } = await t.db.pool.query<{ name: string }>(
      `SELECT a.attname AS name FROM pg_attribute a
        WHERE a.attrelid = 'notification.deliveries'::regclass AND a.attnum > 0 AND NOT a.attisdropped AND EXISTS (
          SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND (a.attnum = ANY(i.indkey)
             OR pg_get_expr(i.indpred, i.indrelid) ~ ('\\m' || a.attname || '\\M') OR pg_get_expr(i.indexprs, i.indrelid) ~ ('\\m' || a.attname || '\\M')))`,
    );
    const names = columns.map((c) => c.name);
    assert.ok(names.includes("provider_message_id") && names.includes("parked"), "a predicate's column is counted");
    const indexed = async (id: string) => (await t.db.pool.query(`SELECT ${names.join(", ")} FROM notification.deliveries WHERE id = $1`, [id])).rows[0];
    const id = await queuedSms();
    const written = await indexed(id);
    await dispatcherWith(createProviders(config.providers, 3_000)).run(id);
    const [attempt] = (await delivery(id)).attempts;
    assert.equal(attempt.status, DeliveryStatus.SENT);
    assert.deepEqual(await indexed(id), written, "claimed and recorded sent without changing an indexed column");
    assert.equal(await sim.reportDelivery(attempt.providerMessageId, "delivered"), 200);
    await deliveryIn(id, DeliveryStatus.DELIVERED);
  });

  test("the service's sweeper expires a report no delivery matched once its retention is over, and keeps a recent one", async () => {
    const stale = `stale-${randomUUID()}`;
    const recent = `recent-${randomUUID()}`;
    for (const [messageId, ageMs] of [[stale, UNMATCHED_REPORT_RETENTION_MS + 60_000], [recent, 0]] as const) {
      await t.db.pool.query(
        `INSERT INTO notification.provider_callbacks (provider, kind, message_id, status, payload, received_at)
         VALUES ('africastalking', 'delivery', $1, 'delivered', '{}', now() - make_interval(secs => $2::double precision / 1000))`,
        [messageId, ageMs],
      );
    }
    const kept = async (messageId: string) => (await t.db.pool.query("SELECT 1 FROM notification.provider_callbacks WHERE message_id = $1", [messageId])).rowCount === 1;
    await eventually("the stale report expired", async () => !(await kept(stale)));
    assert.ok(await kept(recent), "a recent report waits for its send's record");
  });

  test("the sends of a batch answered together are recorded in one statement; one whose report came first gets it applied", async () => {
    const ids = await Promise.all([queuedSms(), queuedSms(), queuedSms()]);
    const [reported] = ids;
    // The real client; for one delivery the provider's report lands before send() returns,
    // and the answers are handed back together, once all three are in.
    let answered = 0;
    let allAnswered: () => void = () => undefined;
    const together = new Promise<void>((r) => (allAnswered = r));
    const racing = answeringAfter(async (m, r) => {
      if (r.ok && m.deliveryId === reported) assert.equal(await sim.reportDelivery(r.messageId, "delivered"), 200);
      if (++answered === ids.length) allAnswered();
      await together;
    });
    const records: string[] = [];
    const pool = t.db.pool;
    const counting = new Proxy(pool, {
      get: (target, prop) =>
        prop === "query"
          ? (text: string, values?: unknown[]) => {
              if (/notification\.outbox/.test(text) && /'sent'/.test(text)) records.push(text);
              return target.query(text, values);
            }
          : (Reflect.get(target, prop) as unknown),
    });
    const dispatcher = new Dispatcher({ pool: counting, providers: { sms: [racing], email: [], push: [] }, retry: config.retry, logger: captureLogger("silent").logger, publicUrl: () => "" });
    await dispatcher.runMany(ids);
    assert.equal(records.length, 1, "one statement records the sends answered together");
    assert.equal((await delivery(reported)).status, DeliveryStatus.DELIVERED);
    for (const id of ids.slice(1)) assert.equal((await delivery(id)).status, DeliveryStatus.SENT);
    const facts = await t.db.pool.query<{ payload: Buffer }>("SELECT payload FROM notification.outbox WHERE subject = 'ttip.notification.delivery_updated' ORDER BY seq DESC LIMIT 50");
    const sent = facts.rows.map((r) => fromBinary(DeliveryUpdatedSchema, r.payload)).filter((e) => (ids as string[]).includes(e.deliveryId) && e.status === "sent");
    assert.deepEqual(sent.map((e) => e.deliveryId).sort(), [...ids].sort(), "one sent fact each");
  });

  test("a slow answer holds no other send of its batch: each is recorded sent as it is answered", async () => {
    const ids = await Promise.all([queuedSms(), queuedSms(), queuedSms()]);
    const [slowId, ...prompt] = ids;
    // The provider has the slow one's message, but its answer waits for the test.
    let answerSlow: () => void = () => undefined;
    const slowAnswered = new Promise<void>((r) => (answerSlow = r));
    const provider = answeringAfter(async (m) => {
      if (m.deliveryId === slowId) await slowAnswered;
    });
    const running = dispatcherWith({ sms: [provider], email: [], push: [] }).runMany(ids);
    try {
      for (const id of prompt) await deliveryIn(id, DeliveryStatus.SENT);
      assert.equal((await delivery(slowId)).status, DeliveryStatus.QUEUED, "the slow one is still in flight");
    } finally {
      answerSlow();
      await running;
    }
    assert.equal((await delivery(slowId)).status, DeliveryStatus.SENT);
    for (const id of ids) assert.equal((await delivery(id)).attempts.length, 1);
  });

  test("a send answered after another dispatcher declared it in doubt (its lease over) stays failed: the late answer changes nothing", async () => {
    // A sign-in code: one declared in doubt is not sent again (a receipt would be, once).
    const id = await queuedSms(0, TemplateKey.OTP);
    let answer: (r: { ok: true; messageId: string }) => void = () => undefined;
    const slow = { name: "africastalking", send: () => new Promise<{ ok: true; messageId: string }>((r) => (answer = r)) };
    const running = dispatcherWith({ sms: [slow], email: [], push: [] }).run(id);
    await eventually("the attempt in flight", async () => (await t.db.pool.query("SELECT 1 FROM notification.delivery_attempts WHERE delivery_id = $1 AND status = 'sending'", [id])).rowCount === 1);
    // Its lease runs out (as a crash would leave it): another dispatcher declares it in doubt.
    await t.db.pool.query("UPDATE notification.delivery_attempts SET started_at = now() - interval '1 hour' WHERE delivery_id = $1", [id]);
    await dispatcherWith(createProviders(config.providers, 3_000)).run(id);
    assert.equal((await delivery(id)).status, DeliveryStatus.FAILED);
    answer({ ok: true, messageId: `late-${id}` });
    await running;
    const d = await delivery(id);
    assert.equal(d.status, DeliveryStatus.FAILED, "what the other dispatcher decided stands");
    assert.match(d.attempts[0].error, /in doubt/);
    assert.equal(d.attempts.length, 1);
    const facts = await t.db.pool.query<{ payload: Buffer }>("SELECT payload FROM notification.outbox WHERE subject = 'ttip.notification.delivery_updated' ORDER BY seq DESC LIMIT 50");
    const said = facts.rows.map((r) => fromBinary(DeliveryUpdatedSchema, r.payload)).filter((e) => e.deliveryId === id).map((e) => e.status);
    assert.deepEqual(said, ["failed"], "no sent fact after the failed one");
  });

  test("a send lease that a send in flight could outlive is refused at start, naming the setting", async () => {
    /** What start() threw; a module that started is stopped again and fails the test. */
    const startError = async (options: Parameters<typeof createNotificationModule>[0]) => {
      try {
        const stop = await createNotificationModule(options).start!(t.ctx);
        await stop();
      } catch (err) {
        return err as Error;
      }
      assert.fail("the service started");
    };
    // Twice the 3 s provider timeout (a push fetches a token, then sends) and auth's 5 s lookup: 11 s.
    const short = await startError({ config: { ...config, retry: { ...config.retry, sendLeaseMs: 11_000 } } });
    assert.equal(short.name, "ConfigError");
    assert.match(short.message, /NOTIFICATION_SEND_LEASE_MS \(retry\.sendLeaseMs\): 11000 ms must be above .*NOTIFICATION_PROVIDER_TIMEOUT_MS .* above 11000 ms/);
    // From the environment: a longer provider timeout alone outgrows the default 60 s lease.
    const fromEnv = await startError({ env: { NOTIFICATION_PROVIDER_TIMEOUT_MS: "30000" } });
    assert.equal(fromEnv.name, "ConfigError");
    assert.match(fromEnv.message, /NOTIFICATION_SEND_LEASE_MS .*: 60000 ms must be above .* above 65000 ms/);
  });

  test("admins version templates; unknown variables and other roles are refused", async () => {
    await assert.rejects(
      admin().createTemplateVersion({ key: TemplateKey.OTP, locale: "en", channel: Channel.SMS, body: "Code {{code}} PIN {{pin}}" }),
      (e: ConnectError) => e.code === Code.InvalidArgument && /\{\{pin\}\}/.test(e.message),
    );
    const created = await admin().createTemplateVersion({ key: TemplateKey.WEEKLY_SUMMARY, locale: "sw", channel: Channel.SMS, body: "Wiki {{week}}: {{count}} / {{total}}" });
    assert.equal(created.template!.version, 2);
    assert.equal(created.template!.active, false);
    const vars = { week: "W47", count: "3", total: "KES 900" };
    const r1 = await admin().renderTemplate({ key: TemplateKey.WEEKLY_SUMMARY, locale: "sw", channel: Channel.SMS, variables: vars });
    assert.match(r1.body, /^Wiki yako ya TTIP/);
    const r2 = await admin().renderTemplate({ key: TemplateKey.WEEKLY_SUMMARY, locale: "sw", channel: Channel.SMS, version: 2, variables: vars });
    assert.equal(r2.body, "Wiki W47: 3 / KES 900");
    await admin().activateTemplateVersion({ key: TemplateKey.WEEKLY_SUMMARY, locale: "sw", channel: Channel.SMS, version: 2 });
    const r3 = await admin().renderTemplate({ key: TemplateKey.WEEKLY_SUMMARY, locale: "sw", channel: Channel.SMS, variables: vars });
    assert.equal(r3.body, "Wiki W47: 3 / KES 900");
    const listed = await admin().listTemplates({ key: TemplateKey.WEEKLY_SUMMARY, locale: "sw" });
    assert.deepEqual(listed.templates.filter((x) => x.channel === Channel.SMS).map((x) => [x.version, x.active]), [[1, false], [2, true]]);
    await assert.rejects(
      admin().activateTemplateVersion({ key: TemplateKey.WEEKLY_SUMMARY, locale: "sw", channel: Channel.SMS, version: 9 }),
      (e: ConnectError) => e.code === Code.NotFound,
    );
    // Two admins activating two versions of one slot at once: one is active after, neither answered INTERNAL.
    const slot = { key: TemplateKey.WEEKLY_SUMMARY, locale: "en", channel: Channel.SMS };
    const current = (await admin().listTemplates(slot)).templates.find((x) => x.channel === Channel.SMS && x.active)!;
    const [a, b] = [await admin().createTemplateVersion({ ...slot, body: current.body }), await admin().createTemplateVersion({ ...slot, body: current.body })];
    const held = await t.db.pool.connect();
    let activations: Promise<unknown[]> | undefined;
    try {
      await held.query("BEGIN");
      await held.query("SELECT 1 FROM notification.templates WHERE key = $1 AND locale = 'en' AND channel = $2 AND active FOR UPDATE", [current.key, current.channel]);
      activations = Promise.all([a, b].map((v) => admin().activateTemplateVersion({ ...slot, version: v.template!.version }).then((r) => r, (e: unknown) => e)));
      await eventually("both activations wait", async () => (await t.db.pool.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0].n >= 2);
    } finally {
      await held.query("ROLLBACK");
      held.release();
    }
    const answers = await activations!;
    assert.ok(answers.every((x) => !(x instanceof Error)), `both answered: ${answers.map(String).join(" / ")}`);
    assert.equal((await admin().listTemplates(slot)).templates.filter((x) => x.channel === Channel.SMS && x.active).length, 1);
    await assert.rejects(
      t.client(NotificationAdminService, { subject: randomUUID(), roles: ["worker"] }).listTemplates({}),
      (e: ConnectError) => e.code === Code.PermissionDenied,
    );
    await assert.rejects(t.client(NotificationService).getPreferences({}), (e: ConnectError) => e.code === Code.Unauthenticated);
  });

  // Last in this describe: it erases every delivery made before it.
  test("a delivery older than the retention keeps no full address, recipient key, text, subject nor an address its errors quoted: erased in id order from the last erased, once; a newer one is kept whole", async () => {
    const phone = testPhone({ format: "+254" });
    const old = await sendReceipt(phone, { amount: "KES 20", worker: "Otieno", reference: "QK4" });
    await deliveryIn(old.deliveryIds[0], DeliveryStatus.SENT);
    const boundary = Date.now() + 1;
    await new Promise((r) => setTimeout(r, 5));
    const kept = await sendReceipt(phone, { amount: "KES 30", worker: "Otieno", reference: "QK5" });
    await deliveryIn(kept.deliveryIds[0], DeliveryStatus.SENT);
    // A provider's report quoting an address (a bounce), and a subject, as an e-mail delivery keeps them.
    const bounce = "<jane.wanjiru@example.co.ke>: Recipient address rejected";
    await t.db.pool.query("UPDATE notification.deliveries SET last_error = $2, subject = 'Your tip from Otieno' WHERE id = $1", [old.deliveryIds[0], bounce]);
    await t.db.pool.query("UPDATE notification.delivery_attempts SET error = $2 WHERE delivery_id = $1", [old.deliveryIds[0], bounce]);
    const row = async (id: string) =>
      (await t.db.pool.query("SELECT address, address_masked, recipient_key, body, subject, last_error FROM notification.deliveries WHERE id = $1", [id])).rows[0];
    // Before, nothing was ever erased: every receipt's number and text, for good.
    assert.ok(await eraseOldDeliveries(t.db.pool, boundary + DELIVERY_DETAIL_RETENTION_MS) >= 1);
    const erased = await row(old.deliveryIds[0]);
    assert.deepEqual(erased, {
      address: erased.address_masked, address_masked: erased.address_masked, recipient_key: `erased:${old.deliveryIds[0]}`, body: null,
      // Before, kept: the bounced address and the subject outlived the erasure.
      subject: "", last_error: "<[address]>: Recipient address rejected",
    });
    const { rows: attempts } = await t.db.pool.query("SELECT error FROM notification.delivery_attempts WHERE delivery_id = $1", [old.deliveryIds[0]]);
    assert.ok(attempts.length && attempts.every((a) => a.error === "<[address]>: Recipient address rejected"), JSON.stringify(attempts));
    assert.notEqual(erased.address_masked, phone.replace(/^\+/, ""));
    const whole = await row(kept.deliveryIds[0]);
    assert.match(whole.body, /KES 30/);
    assert.match(whole.recipient_key, /^phone:/);
    assert.equal(await eraseOldDeliveries(t.db.pool, boundary + DELIVERY_DETAIL_RETENTION_MS), 0, "nothing again: the sweep starts after the last erased");
  });
});

describe("a tip event redelivered by JetStream after a crash", () => {
  test("sends the worker one SMS", async () => {
    const sim = new ProviderSimulator();
    await sim.start();
    const { logger } = captureLogger("silent");
    const db = await createTestDatabase();
    const jetstream = await JetStreamBus.connect({
      servers: testEnv().natsUrl,
      stream: uniqueName("S").toUpperCase(),
      subjectPrefix: uniqueName("ev"),
      logger,
      redeliveryDelayMs: 100,
    });
    const bus = crashBeforeFirstAck(jetstream, "notification-tip-succeeded");
    const peers = createPeers(() => undefined);
    const svc = await startService(createNotificationModule({ config: testConfig(sim, () => "") }), {
      logger, pool: db.pool, bus, cache: new MemoryCache(), metrics: new Metrics(), peers,
    });
    try {
      const workerId = randomUUID();
      const phone = testPhone({ format: "+254" });
      await db.pool.query("INSERT INTO notification.recipients (user_id, phone, locale) VALUES ($1, $2, 'en')", [workerId, phone.slice(1)]);
      await publish(bus, "ttip.payment.tip_succeeded", TipSucceededSchema, { tipId: randomUUID(), workerId, amount: kesMinor(10000n), net: kesMinor(9500n) });
      await eventually("the SMS", () => sim.sent.some((m) => m.to === phone));
      // Wait until the crashed delivery came back and was skipped.
      await eventually("the redelivery handled", () => bus.finished >= 2);
      assert.equal(sim.sent.filter((m) => m.to === phone).length, 1);
      const r = await db.pool.query("SELECT count(*)::int AS n FROM notification.deliveries WHERE user_id = $1 AND channel = $2", [workerId, Channel.SMS]);
      assert.equal(r.rows[0].n, 1);
    } finally {
      await svc.close();
      peers.close();
      await bus.close();
      await db.drop();
      await sim.close();
    }
  });
});

describe("delivery reports no delivery matches", () => {
  test("expire after their retention, oldest first and a bounded batch per sweep; recent and applied ones stay", async () => {
    const db = await createTestDatabase();
    try {
      await migrate(db.pool, "notification", fileURLToPath(new URL("../migrations", import.meta.url)));
      const report = (messageId: string, ageMs: number, applied = false) =>
        db.pool.query(
          `INSERT INTO notification.provider_callbacks (provider, kind, message_id, status, payload, applied, received_at)
           VALUES ('africastalking', 'delivery', $1, 'delivered', '{}', $2, now() - make_interval(secs => $3::double precision / 1000))`,
          [messageId, applied, ageMs],
        );
      const day = UNMATCHED_REPORT_RETENTION_MS;
      for (let i = 0; i < 5; i++) await report(`stale-${i}`, day + 60_000 * (5 - i));
      await report("recent", day - 60_000);
      await report("applied-long-ago", 3 * day, true);
      // Its send may still be being recorded: a report that beat it stays.
      await report("just-now", 0);
      assert.equal(await expireUnmatchedReports(db.pool, day, 3), 3);
      const left = async () => (await db.pool.query<{ message_id: string }>("SELECT message_id FROM notification.provider_callbacks ORDER BY seq")).rows.map((r) => r.message_id);
      assert.deepEqual(await left(), ["stale-3", "stale-4", "recent", "applied-long-ago", "just-now"], "the three oldest went first");
      assert.equal(await expireUnmatchedReports(db.pool, day, 3), 2);
      assert.equal(await expireUnmatchedReports(db.pool, day, 3), 0);
      assert.deepEqual(await left(), ["recent", "applied-long-ago", "just-now"]);
    } finally {
      await db.drop();
    }
  });

  test("an applied report enters no index (each is on reports not applied), and the expiry, as a connection keeps it, reads the table by index and row place only", async () => {
    const db = await createTestDatabase();
    try {
      await migrate(db.pool, "notification", fileURLToPath(new URL("../migrations", import.meta.url)));
      const { rows: indexes } = await db.pool.query<{ name: string; predicate: string | null }>(
        `SELECT c.relname AS name, pg_get_expr(i.indpred, i.indrelid) AS predicate FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = 'notification.provider_callbacks'::regclass ORDER BY 1`,
      );
      assert.deepEqual(indexes, [
        { name: "provider_callbacks_pending", predicate: "(NOT applied)" },
        { name: "provider_callbacks_unmatched_age", predicate: "(NOT applied)" },
      ]);
      // Many reports applied, a few long unmatched: the expiry must not read the applied ones.
      await db.pool.query(
        `INSERT INTO notification.provider_callbacks (provider, kind, message_id, status, payload, applied, received_at)
         SELECT 'africastalking', 'delivery', 'm-' || i, 'delivered', '{}', i > 5, now() - interval '3 days' FROM generate_series(1, 5000) AS i`,
      );
      await db.pool.query("ANALYZE notification.provider_callbacks");
      const plans = await keptPlans(db.pool, new Set(["provider_callbacks"]), (q) => expireUnmatchedReports(q, UNMATCHED_REPORT_RETENTION_MS, 3));
      assert.equal(plans.length, 1);
      const reads = plans[0].reads.map((r) => r["Node Type"]);
      assert.ok(reads.length === 2 && reads.every((t) => t === "Tid Scan" || t.startsWith("Index")), reads.join(", "));
      const left = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM notification.provider_callbacks WHERE NOT applied");
      assert.equal(left.rows[0].n, 2, "three of the five expired");
    } finally {
      await db.drop();
    }
  });
});
