// Partner webhooks end to end: signed subscription calls through the gateway,
// events from JetStream, deliveries to a real HTTP server on loopback.
import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { WebhookDeliveryStatus, WebhookEventType } from "@ttip/proto/ttip/auth/v1/partner_pb.js";
import { PayoutSucceededSchema, TipFailedSchema, TipReversalKind, TipReversedSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { captureLogger, failure, kesMinor, eventually } from "@ttip/runtime/testing";
import { loadAuthConfig } from "../src/config.js";
import { Sealer } from "../src/crypto.js";
import { checkWebhookUrl, retryDelayMs } from "../src/index.js";
import { pruneDeliveries, systemResolver } from "../src/partners/index.js";
import { WebhookSender } from "../src/partners/sender.js";
import { startPartnerHarness, WEBHOOK_ENV, type PartnerHarness, type PartnerKey, type Received } from "./partner-harness.js";


/** The signatures of a delivery: its t= and each v1= (one per secret that signs it). */
function signaturesOf(r: Received): { t: string; v1: string[] } | undefined {
  const header = String(r.headers["x-ttip-webhook-signature"] ?? "");
  const m = /^t=(\d+)((?:,v1=[0-9a-f]{64})+)$/.exec(header);
  return m ? { t: m[1], v1: m[2].split(",v1=").slice(1) } : undefined;
}

/** The documented check (the SDK's verifyWebhook does the same): HMAC-SHA256 of "<t>.<raw body>", any v1= matching. */
function verifies(secret: string, r: Received): boolean {
  const sig = signaturesOf(r);
  if (!sig) return false;
  const fresh = Math.abs(Date.now() / 1000 - Number(sig.t)) <= 300;
  return fresh && sig.v1.includes(createHmac("sha256", secret).update(`${sig.t}.${r.body}`).digest("hex"));
}

describe("partner webhooks", () => {
  let h: PartnerHarness;
  let pos: PartnerKey;
  let other: PartnerKey;
  let secret: string;
  let subscriptionId: string;

  before(async () => {
    h = await startPartnerHarness();
    pos = await h.issueKey("Savanna POS", ["webhooks:read", "webhooks:write"]);
    other = await h.issueKey("Other POS", ["webhooks:read", "webhooks:write"]);
    const created = await h.partner(pos).createWebhookSubscription({
      url: h.receiver.url,
      eventTypes: [WebhookEventType.TIP_SUCCEEDED, WebhookEventType.TIP_FAILED],
      idempotencyKey: `sub-${randomUUID()}`,
    });
    secret = created.signingSecret;
    subscriptionId = created.subscription!.subscriptionId;
    assert.match(secret, /^ttip_whsec_/);
  });

  after(async () => {
    await h.close();
  });

  beforeEach(() => {
    h.receiver.script = [];
    h.receiver.otherwise = 200;
  });

  /** A key's delivery log, as the admin console reads it (polling a partner's identical signed call would be a replay). */
  const logOf = async (key: PartnerKey, status = WebhookDeliveryStatus.UNSPECIFIED) =>
    (await h.admin.listAllWebhookDeliveries({ keyId: key.keyId, status })).deliveries;

  test("a tip event of the key's own tip is delivered once, signed, with a stable delivery id; other keys' tips are not", async () => {
    // Consumed in stream order: by the time the key's own tip arrives, the others were judged.
    await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(5000n), createdBy: other.keyId });
    await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(5000n), createdBy: "" });
    const tipId = randomUUID();
    const eventId = await h.publish(TipSucceededSchema, {
      tipId, workerId: randomUUID(), amount: kesMinor(10_000n), fee: kesMinor(300n), net: kesMinor(9_700n), mpesaReceipt: "SIM123ABC", createdBy: pos.keyId,
      customerPhoneMasked: "2547******78",
    });
    const [got] = await eventually("the delivery", () => h.receiver.forEvent(eventId).length > 0 && h.receiver.forEvent(eventId));
    assert.equal(h.receiver.received.length, 1, "only the key's own tip is sent");
    assert.ok(verifies(secret, got), "the signature verifies under the subscription's secret");
    assert.equal(verifies("ttip_whsec_wrong", got), false);
    const body = JSON.parse(got.body);
    assert.equal(got.headers["x-ttip-delivery-id"], body.deliveryId);
    assert.equal(got.headers["content-type"], "application/json");
    assert.equal(body.type, "WEBHOOK_EVENT_TYPE_TIP_SUCCEEDED");
    assert.deepEqual(body.tip, {
      tipId, workerId: body.tip.workerId, amount: { amountMinor: "10000", currency: "KES" }, fee: { amountMinor: "300", currency: "KES" },
      net: { amountMinor: "9700", currency: "KES" }, mpesaReceipt: "SIM123ABC",
    });
    // Not preceded by a hex digit or a hyphen: a random delivery id may hold "2547".
    assert.doesNotMatch(got.body, /(?<![0-9a-f-])2547/, "no phone number, even masked, leaves for a partner");

    await eventually("the log says delivered", async () => (await logOf(pos))[0]?.status === WebhookDeliveryStatus.DELIVERED);
    // The partner's own view of its log, through the gateway.
    const log = await h.partner(pos).listWebhookDeliveries({});
    assert.equal(log.deliveries.length, 1);
    assert.equal(log.deliveries[0].deliveryId, body.deliveryId);
    assert.equal(log.deliveries[0].attempts, 1);
    assert.equal(log.deliveries[0].lastResponseStatus, 200);
    // The other key sees none of it.
    assert.equal((await h.partner(other).listWebhookDeliveries({})).deliveries.length, 0);
  });

  test("a card tip's money going back reaches the key that created the tip as TIP_REVERSED: what was taken back, negative when a refund was refused", async () => {
    const key = await h.issueKey("Refunding POS", ["webhooks:read", "webhooks:write"]);
    const mine = await h.partner(key).createWebhookSubscription({ url: h.receiver.url, eventTypes: [WebhookEventType.TIP_REVERSED], idempotencyKey: `sub-${randomUUID()}` });
    const tipId = randomUUID();
    const usd = (amountMinor: bigint) => ({ currency: "USD", amountMinor });
    const reversed = (kind: TipReversalKind, sign: bigint, createdBy = key.keyId) => h.publish(TipReversedSchema, {
      tipId, workerId: randomUUID(), kind, reversalId: randomUUID(), amount: usd(sign * 400n), fee: usd(sign * 20n), net: kesMinor(sign * 46046n), createdBy,
    });
    // Another key's tip: not this key's to hear of (pos has no TIP_REVERSED subscription either).
    await reversed(TipReversalKind.CHARGEBACK, 1n, pos.keyId);
    const bodyOf = async (eventId: string) => JSON.parse((await eventually("the delivery", () => h.receiver.forEvent(eventId)[0]))!.body);
    const refund = await bodyOf(await reversed(TipReversalKind.REFUND, 1n));
    assert.equal(refund.type, "WEBHOOK_EVENT_TYPE_TIP_REVERSED");
    assert.deepEqual([refund.tip.tipId, refund.tip.resultCode, refund.tip.amount, refund.tip.fee, refund.tip.net], [
      tipId, "refund", { amountMinor: "400", currency: "USD" }, { amountMinor: "20", currency: "USD" }, { amountMinor: "46046", currency: "KES" },
    ]);
    const refused = await bodyOf(await reversed(TipReversalKind.REFUND_REFUSED, -1n));
    assert.deepEqual([refused.tip.resultCode, refused.tip.amount], ["refund_refused", { amountMinor: "-400", currency: "USD" }]);
    const log = await h.partner(key).listWebhookDeliveries({ subscriptionId: mine.subscription!.subscriptionId });
    assert.equal(log.deliveries.length, 2, "the other key's chargeback was not sent here");
  });

  test("answered 500, a delivery is retried with growing waits under the same delivery id until a 2xx", async () => {
    h.receiver.script = [500, 500];
    const eventId = await h.publish(TipFailedSchema, { tipId: randomUUID(), amount: kesMinor(5000n), resultCode: "1032", reason: "cancelled", createdBy: pos.keyId });
    const sent = await eventually("three attempts", () => h.receiver.forEvent(eventId).length >= 3 && h.receiver.forEvent(eventId), 20_000);
    assert.deepEqual(sent.map((r) => r.status), [500, 500, 200]);
    assert.equal(new Set(sent.map((r) => r.headers["x-ttip-delivery-id"])).size, 1, "one delivery id across attempts");
    assert.ok(sent.every((r) => verifies(secret, r)));
    // Waits: at least the jittered base, then at least the jittered double.
    const base = Number(WEBHOOK_ENV.AUTH_WEBHOOK_RETRY_BASE_MS);
    assert.ok(sent[1].at - sent[0].at >= 0.8 * base - 20, `first wait ${sent[1].at - sent[0].at} ms`);
    assert.ok(sent[2].at - sent[1].at >= 1.6 * base - 20, `second wait ${sent[2].at - sent[1].at} ms`);
    const d = await eventually("delivered in the log", async () => (await logOf(pos, WebhookDeliveryStatus.DELIVERED)).find((x) => x.eventId === eventId));
    assert.equal(d.attempts, 3);
    const attempts = await h.db.pool.query("SELECT attempt, response_status FROM auth.partner_webhook_attempts WHERE delivery_id = $1 ORDER BY attempt", [d.deliveryId]);
    assert.deepEqual(attempts.rows, [{ attempt: 1, response_status: 500 }, { attempt: 2, response_status: 500 }, { attempt: 3, response_status: 200 }]);
  });

  test("backoff doubles from the base up to the cap, with at most a fifth taken off", () => {
    const c = { retryBaseMs: 1000, retryCapMs: 60_000 };
    assert.deepEqual([1, 2, 3, 4, 7, 8, 30].map((n) => retryDelayMs(n, c, () => 0)), [1000, 2000, 4000, 8000, 60_000, 60_000, 60_000]);
    assert.equal(retryDelayMs(3, c, () => 1), 3200);
  });

  test("after the cap of attempts it is failed and left; an admin's replay sends it again under the same id", async () => {
    h.receiver.otherwise = 500;
    const eventId = await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(2000n), createdBy: pos.keyId });
    const failed = await eventually("failed in the log", async () => (await logOf(pos, WebhookDeliveryStatus.FAILED)).find((x) => x.eventId === eventId), 20_000);
    const max = Number(WEBHOOK_ENV.AUTH_WEBHOOK_MAX_ATTEMPTS);
    assert.equal(failed.attempts, max);
    assert.equal(failed.lastResponseStatus, 500);
    assert.match(failed.lastError, /^HTTP 500/);
    // Nothing more is sent on its own: an hour later (far past any backoff), a sending round finds nothing due.
    h.clock.advance(3_600_000);
    const config = loadAuthConfig(WEBHOOK_ENV);
    const round = new WebhookSender({ pool: h.db.pool, sealer: new Sealer(config.keyEncryptionSecret), config: config.webhooks, logger: captureLogger("silent").logger, resolve: systemResolver, clock: h.clock });
    assert.equal(await round.sendDue(), 0, "nothing due an hour later");
    assert.equal(h.receiver.forEvent(eventId).length, max);

    h.receiver.otherwise = 200;
    const replayed = await h.admin.replayWebhookDelivery({ deliveryId: failed.deliveryId, reason: "partner fixed their endpoint" });
    assert.equal(replayed.delivery!.status, WebhookDeliveryStatus.PENDING);
    const again = await eventually("the replay", () => h.receiver.forEvent(eventId).length === max + 1 && h.receiver.forEvent(eventId));
    assert.equal(again[max].status, 200);
    assert.equal(again[max].headers["x-ttip-delivery-id"], failed.deliveryId);
    assert.equal(again[max].body, again[0].body, "the same body, newly signed");
    assert.ok(verifies(secret, again[max]));
    await eventually("delivered after the replay", async () => {
      const all = await h.admin.listAllWebhookDeliveries({ keyId: pos.keyId, status: WebhookDeliveryStatus.DELIVERED });
      return all.deliveries.some((x) => x.deliveryId === failed.deliveryId && x.attempts === max + 1);
    });
    const logged = await h.db.pool.query("SELECT replay FROM auth.partner_webhook_attempts WHERE delivery_id = $1 ORDER BY attempt", [failed.deliveryId]);
    assert.deepEqual(logged.rows.map((r) => r.replay), [...Array(max).fill(false), true]);
    const audit = await h.db.pool.query("SELECT detail FROM auth.audit_events WHERE detail LIKE $1", [`delivery ${failed.deliveryId}:%`]);
    assert.equal(audit.rows.length, 1);
    assert.equal((await failure(h.admin.replayWebhookDelivery({ deliveryId: randomUUID(), reason: "typo" }))).code, Code.NotFound);

    // Replayed while a send holds its claim (claimed, its attempt not logged yet; due again when the lease ends): the
    // due time stays. Before, it became now, and a second round claimed and sent it beside the first.
    const dueOf = async () => (await h.db.pool.query("SELECT next_attempt_at FROM auth.partner_webhook_deliveries WHERE delivery_id = $1", [failed.deliveryId])).rows[0].next_attempt_at.getTime();
    const later = new Date(h.clock.now() + 3_600_000);
    await h.db.pool.query("UPDATE auth.partner_webhook_deliveries SET status = 'pending', attempts = attempts + 1, next_attempt_at = $2 WHERE delivery_id = $1", [failed.deliveryId, later]);
    await h.admin.replayWebhookDelivery({ deliveryId: failed.deliveryId, reason: "asked while it is sent" });
    assert.equal(await dueOf(), later.getTime());
    // Waiting out a backoff (its last attempt logged): due at once, as a replay is meant to be.
    await h.db.pool.query("UPDATE auth.partner_webhook_deliveries SET attempts = attempts - 1, next_attempt_at = $2 WHERE delivery_id = $1", [failed.deliveryId, later]);
    await h.admin.replayWebhookDelivery({ deliveryId: failed.deliveryId, reason: "the receiver is back" });
    assert.ok((await dueOf()) < later.getTime(), "not the backoff's hour");
  });

  test("an event JetStream delivers again (its ack lost after commit) is not sent twice", async () => {
    const tipId = randomUUID();
    const eventId = randomUUID();
    h.bus.loseAck.add(eventId);
    const { buildEvent } = await import("@ttip/runtime");
    const m = buildEvent("payment", TipSucceededSchema, { tipId, amount: kesMinor(700n), createdBy: pos.keyId });
    await h.bus.publish({ ...m, id: eventId });
    await eventually("redelivered by the server", () => (h.bus.deliveries.get(eventId) ?? []).includes(2));
    await eventually("sent", () => h.receiver.forEvent(eventId).length === 1);
    // The redelivery's handler has committed (a second delivery row would exist now) before counting.
    await eventually("the redelivery handled", () => (h.bus.handled.get(eventId) ?? []).includes(2));
    assert.equal(h.receiver.forEvent(eventId).length, 1);
    const rows = await h.db.pool.query("SELECT count(*)::int AS n FROM auth.partner_webhook_deliveries WHERE event_id = $1", [eventId]);
    assert.equal(rows.rows[0].n, 1);
  });

  test("a customer's tip (no key id) is acknowledged with no transaction or inbox row, redelivered too; a partner's tip still reaches it once", async () => {
    const { buildEvent } = await import("@ttip/runtime");
    const customerTip = randomUUID();
    h.bus.loseAck.add(customerTip);
    await h.bus.publish({ ...buildEvent("payment", TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(500n), createdBy: "" }), id: customerTip });
    const partnerTip = await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(500n), createdBy: pos.keyId });
    await eventually("the customer's tip delivered again (its ack lost) and handled", () => (h.bus.handled.get(customerTip) ?? []).includes(2));
    await eventually("the partner's tip sent", () => h.receiver.forEvent(partnerTip).length === 1);
    const inboxRows = async (id: string) => (await h.db.pool.query("SELECT count(*)::int AS n FROM auth.inbox WHERE event_id = $1", [id])).rows[0].n;
    assert.equal(await inboxRows(customerTip), 0, "nothing written for an event no partner is told");
    assert.equal(await inboxRows(partnerTip), 1);
    const rows = await h.db.pool.query("SELECT count(*)::int AS n FROM auth.partner_webhook_deliveries WHERE event_id = ANY($1::uuid[])", [[customerTip, partnerTip]]);
    assert.equal(rows.rows[0].n, 1, "one delivery: the partner's");
    assert.equal(h.receiver.forEvent(partnerTip).length, 1);
  });

  test("nothing is lost across a restart: a pending retry and an event published while auth was down are both delivered", async () => {
    h.receiver.otherwise = 503;
    const pendingEvent = await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(100n), createdBy: pos.keyId });
    await eventually("a first failed attempt", () => h.receiver.forEvent(pendingEvent).length >= 1);
    let whileDown = "";
    await h.restartAuth(async () => {
      whileDown = await h.publish(TipFailedSchema, { tipId: randomUUID(), amount: kesMinor(100n), createdBy: pos.keyId });
      h.receiver.otherwise = 200;
    });
    await eventually("the pending one delivered", () => h.receiver.forEvent(pendingEvent).some((r) => r.status === 200), 20_000);
    await eventually("the one published while down delivered", () => h.receiver.forEvent(whileDown).some((r) => r.status === 200), 20_000);
    assert.equal(h.receiver.forEvent(whileDown).length, 1);
  });

  test("subscriptions: validated, idempotent, capped per key, deleted only by their key, and a deleted one gets nothing", async () => {
    const bad = await failure(h.partner(pos).createWebhookSubscription({ url: "ftp://example.com/x", eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}` }));
    assert.equal(bad.code, Code.InvalidArgument);
    assert.match(bad.message, /^url: /);
    h.dns.set("pos.example.com", ["93.184.216.34"]);
    const remote = await failure(h.partner(pos).createWebhookSubscription({ url: "http://pos.example.com/x", eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}` }));
    assert.deepEqual(remote, { code: Code.InvalidArgument, message: "url: must be https://: pos.example.com is not on loopback" });
    const noTypes = await failure(h.partner(pos).createWebhookSubscription({ url: h.receiver.url, eventTypes: [], idempotencyKey: `sub-${randomUUID()}` }));
    assert.equal(noTypes.code, Code.InvalidArgument);
    assert.match(noTypes.message, /event_types/);

    // Payout events need what ListWorkerPayouts needs: before, a key without payouts:read was sent
    // every consenting worker's payouts by webhook.
    const payoutsUnread = await failure(h.partner(other).createWebhookSubscription({ url: h.receiver.url, eventTypes: [WebhookEventType.TIP_CREATED, WebhookEventType.PAYOUT_FAILED], idempotencyKey: `sub-${randomUUID()}` }));
    assert.deepEqual(payoutsUnread, { code: Code.PermissionDenied, message: "event_types: PAYOUT_FAILED needs the key's scope payouts:read, which this key does not have" });

    // A retry is answered as the first call was, though the host resolves elsewhere by now (before: refused as private).
    const { port } = new URL(h.receiver.url);
    h.dns.set("hooks.retry.test", ["127.0.0.1"]);
    const key = `sub-${randomUUID()}`;
    const req = { url: `http://hooks.retry.test:${port}/x`, eventTypes: [WebhookEventType.TIP_FAILED, WebhookEventType.TIP_CREATED], idempotencyKey: key };
    const a = await h.partner(other).createWebhookSubscription(req);
    h.dns.set("hooks.retry.test", ["10.0.0.7"]);
    const b = await h.partner(other).createWebhookSubscription({ ...req, eventTypes: [WebhookEventType.TIP_CREATED, WebhookEventType.TIP_FAILED] });
    assert.equal(b.subscription!.subscriptionId, a.subscription!.subscriptionId);
    assert.equal(b.signingSecret, a.signingSecret);
    assert.equal((await failure(h.partner(other).createWebhookSubscription({ ...req, url: `${h.receiver.url}/2` }))).code, Code.AlreadyExists);

    // Another key's subscription is not found, and stays.
    assert.equal((await failure(h.partner(other).deleteWebhookSubscription({ subscriptionId }))).code, Code.NotFound);
    const deleted = await h.partner(other).deleteWebhookSubscription({ subscriptionId: a.subscription!.subscriptionId });
    assert.ok(deleted.subscription!.deletedAt);
    const eventId = await h.publish(TipFailedSchema, { tipId: randomUUID(), amount: kesMinor(100n), createdBy: other.keyId });
    const mine = await h.publish(TipFailedSchema, { tipId: randomUUID(), amount: kesMinor(100n), createdBy: pos.keyId });
    await eventually("the later event delivered", () => h.receiver.forEvent(mine).length === 1);
    assert.equal(h.receiver.forEvent(eventId).length, 0);

    const list = await h.partner(other).listWebhookSubscriptions({ page: { pageSize: 1 } });
    assert.equal(list.subscriptions.length, 1);
    assert.equal(list.page!.nextPageToken, "");

    // One URL, one subscription per event type: before, a second one brought each event to it twice, under two delivery ids.
    const first = await h.partner(other).createWebhookSubscription({ url: h.receiver.url, eventTypes: [WebhookEventType.TIP_CREATED], idempotencyKey: `cap-0-${randomUUID()}` });
    assert.deepEqual(await failure(h.partner(other).createWebhookSubscription({ url: h.receiver.url, eventTypes: [WebhookEventType.TIP_FAILED, WebhookEventType.TIP_CREATED], idempotencyKey: `twice-${randomUUID()}` })), {
      code: Code.AlreadyExists,
      message: `url: subscription ${first.subscription!.subscriptionId} already sends TIP_CREATED to this URL; delete it first (or use another URL)`,
    });
    await h.partner(other).createWebhookSubscription({ url: h.receiver.url, eventTypes: [WebhookEventType.TIP_FAILED], idempotencyKey: `cap-1-${randomUUID()}` });
    for (let i = 2; i < 10; i++) {
      await h.partner(other).createWebhookSubscription({ url: `${h.receiver.url}/cap-${i}`, eventTypes: [WebhookEventType.TIP_CREATED], idempotencyKey: `cap-${i}-${randomUUID()}` });
    }
    const capped = await failure(h.partner(other).createWebhookSubscription({ url: `${h.receiver.url}/cap-x`, eventTypes: [WebhookEventType.TIP_CREATED], idempotencyKey: `cap-x-${randomUUID()}` }));
    assert.equal(capped.code, Code.ResourceExhausted);
  });

  test("a rotated secret signs beside the one it replaced until that one's time is up; a retry answers the same secret; unknown, deleted and over-long are refused naming the field", async () => {
    const key = await h.issueKey("Rotating POS", ["webhooks:read", "webhooks:write"]);
    const partner = h.partner(key);
    const created = await partner.createWebhookSubscription({ url: h.receiver.url, eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}` });
    const subscriptionId = created.subscription!.subscriptionId;
    const delivered = async () => {
      const eventId = await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(3000n), createdBy: key.keyId });
      const [got] = await eventually("the delivery", () => h.receiver.forEvent(eventId).length > 0 && h.receiver.forEvent(eventId));
      return got;
    };
    const first = created.signingSecret;
    const rotation = { subscriptionId, previousSecretValidSeconds: 3600, idempotencyKey: `rotate-${randomUUID()}` };
    const rotated = await partner.rotateWebhookSecret(rotation);
    const second = rotated.signingSecret;
    assert.match(second, /^ttip_whsec_/);
    assert.notEqual(second, first);
    const until = timestampDate(rotated.subscription!.previousSecretExpiresAt!).getTime();
    assert.ok(Math.abs(until - (h.clock.now() + 3_600_000)) < 60_000, "the old secret signs for the hour asked");
    assert.equal((await partner.rotateWebhookSecret(rotation)).signingSecret, second, "a retry answers the same secret");

    // Meanwhile both sign: a receiver still on the old secret and one moved to the new accept it.
    const during = await delivered();
    assert.equal(signaturesOf(during)?.v1.length, 2);
    assert.ok(verifies(second, during) && verifies(first, during));
    // Rotated again within the hour: the first secret, which a receiver not yet moved still holds (the second rotation
    // a retry under a new key after a lost answer), signs on until its hour is up; so does the second, which a
    // receiver moved to it holds. Before, one of them was dropped, and deliveries to its receiver failed.
    const again = await partner.rotateWebhookSecret({ ...rotation, previousSecretValidSeconds: 7200, idempotencyKey: `rotate-${randomUUID()}` });
    const secondUntil = timestampDate(again.subscription!.previousSecretExpiresAt!).getTime();
    assert.ok(Math.abs(secondUntil - (h.clock.now() + 7_200_000)) < 60_000, "the second secret signs for the two hours asked");
    const rotatedTwice = await delivered();
    assert.equal(signaturesOf(rotatedTwice)?.v1.length, 3);
    assert.ok(verifies(again.signingSecret, rotatedTwice) && verifies(first, rotatedTwice) && verifies(second, rotatedTwice));
    const latest = again.signingSecret;
    // The first's hour up, it signs nothing; the second signs to its own time.
    h.clock.advance(3_601_000);
    const afterHour = await delivered();
    assert.equal(signaturesOf(afterHour)?.v1.length, 2);
    assert.ok(verifies(latest, afterHour) && verifies(second, afterHour) && !verifies(first, afterHour));
    h.clock.advance(3_600_000);
    const after = await delivered();
    assert.equal(signaturesOf(after)?.v1.length, 1);
    assert.ok(verifies(latest, after) && !verifies(second, after));
    // A secret that leaked: replaced with no time for it.
    const third = (await partner.rotateWebhookSecret({ subscriptionId, previousSecretValidSeconds: 0, idempotencyKey: `rotate-${randomUUID()}` })).signingSecret;
    const now = await delivered();
    assert.ok(verifies(third, now) && !verifies(latest, now));

    const refused = async (req: Partial<typeof rotation>, code: Code, field: string) => {
      const e = await failure(partner.rotateWebhookSecret({ ...rotation, idempotencyKey: `rotate-${randomUUID()}`, ...req }));
      assert.equal(e.code, code, e.message);
      assert.match(e.message, new RegExp(field));
    };
    await refused({ previousSecretValidSeconds: 8 * 86_400 }, Code.InvalidArgument, "previous_secret_valid_seconds");
    await refused({ subscriptionId: randomUUID() }, Code.NotFound, "subscription_id");
    await partner.deleteWebhookSubscription({ subscriptionId });
    await refused({}, Code.FailedPrecondition, "subscription_id");
    // Another key's subscription is as unknown as a missing one.
    await assert.rejects(h.partner(pos).rotateWebhookSecret({ ...rotation, idempotencyKey: `rotate-${randomUUID()}` }), (e: ConnectError) => e.code === Code.NotFound);
  });

  test("the gateway holds webhook RPCs to their scopes", async () => {
    const readOnly = await h.issueKey("Read Only", ["webhooks:read"]);
    assert.equal((await h.partner(readOnly).listWebhookDeliveries({})).deliveries.length, 0);
    assert.deepEqual(
      await failure(h.partner(readOnly).createWebhookSubscription({ url: h.receiver.url, eventTypes: [WebhookEventType.TIP_CREATED], idempotencyKey: `sub-${randomUUID()}` })),
      { code: Code.PermissionDenied, message: "missing scope: ttip.auth.v1.PartnerService/CreateWebhookSubscription needs the scope webhooks:write, which this key does not have" },
    );
    assert.equal((await failure(h.partner(readOnly).rotateWebhookSecret({ subscriptionId, idempotencyKey: `rotate-${randomUUID()}` }))).code, Code.PermissionDenied);
  });

  test("payout events go only to keys the worker consented to, and stop when the consent is withdrawn", async () => {
    const payroll = await h.issueKey("Payroll App", ["webhooks:write", "payouts:read"]);
    const worker = await h.addWorker();
    await h.partner(payroll).createWebhookSubscription({ url: `${h.receiver.url}/payroll`, eventTypes: [WebhookEventType.PAYOUT_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}` });
    const payout = () => h.publish(PayoutSucceededSchema, { payoutId: randomUUID(), workerId: worker, amount: kesMinor(50_000n), mpesaReceipt: "SIMPAY1" });
    const before = await payout();
    // Judged before the grant: its inbox row is written with the decision.
    await eventually("the first payout consumed", async () => (await h.db.pool.query("SELECT 1 FROM auth.inbox WHERE event_id = $1", [before])).rowCount === 1);
    await h.consents(worker).grantPartnerConsent({ keyId: payroll.keyId, scopes: [1] });
    const during = await payout();
    await eventually("the consented payout sent", () => h.receiver.forEvent(during).length === 1);
    assert.equal(h.receiver.forEvent(before).length, 0, "before the consent: not sent");
    await h.consents(worker).revokePartnerConsent({ keyId: payroll.keyId });
    const afterRevoke = await payout();
    const marker = await h.publish(TipFailedSchema, { tipId: randomUUID(), amount: kesMinor(100n), createdBy: pos.keyId });
    await eventually("a later event delivered", () => h.receiver.forEvent(marker).length === 1);
    assert.equal(h.receiver.forEvent(afterRevoke).length, 0, "after the revocation: not sent");
  });

  test("destinations: private, link-local and (without the sandbox setting) loopback addresses are refused, by literal or by DNS", async () => {
    const sub = (url: string) => failure(h.partner(pos).createWebhookSubscription({ url, eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}` }));
    h.dns.set("internal.pos.example", ["93.184.216.34", "10.1.2.3"]);
    assert.deepEqual(await sub("https://internal.pos.example/hooks"), {
      code: Code.InvalidArgument,
      message: "url: internal.pos.example does not resolve to public addresses only: webhooks go to public addresses only",
    });
    assert.deepEqual(await sub("https://169.254.169.254/latest/meta-data"), {
      code: Code.InvalidArgument,
      message: "url: 169.254.169.254 is a private address: webhooks go to public addresses only",
    });
    assert.deepEqual(await sub("https://[fd00::1]/hooks"), { code: Code.InvalidArgument, message: "url: fd00::1 is a private address: webhooks go to public addresses only" });
    // A name is refused in the same words whether it does not resolve or resolves to a private address: before, the
    // answer named our internal addresses, and told the names that exist here from those that do not.
    assert.deepEqual(await sub("https://nowhere.invalid/hooks"), { code: Code.InvalidArgument, message: "url: nowhere.invalid does not resolve to public addresses only: webhooks go to public addresses only" });

    // Without AUTH_WEBHOOK_ALLOW_LOOPBACK (everywhere but the sandbox and tests), loopback is refused too.
    const strict = { httpsOnly: false, allowLoopback: false };
    const resolver = async (host: string) => (host === "localhost" ? ["127.0.0.1", "::1"] : ["93.184.216.34"]);
    await assert.rejects(checkWebhookUrl("https://localhost:8443/hooks", strict, resolver), /^ConnectError: \[invalid_argument\] url: localhost does not resolve to public addresses only/);
    await assert.rejects(checkWebhookUrl("http://127.0.0.1:8080/hooks", strict, resolver), /url: must be https:\/\/ \(http:\/\/ only to loopback/);
    assert.equal(await checkWebhookUrl("https://hooks.pos.example/ttip", strict, resolver), "https://hooks.pos.example/ttip");
    assert.equal(await checkWebhookUrl("https://93.184.216.34/ttip", { httpsOnly: true, allowLoopback: false }, resolver), "https://93.184.216.34/ttip");
    // An IPv4-mapped IPv6 address is judged as the IPv4 address it hides.
    await assert.rejects(checkWebhookUrl("https://[::ffff:127.0.0.1]/ttip", strict, resolver), /::ffff:7f00:1 is a loopback address/);
    await assert.rejects(checkWebhookUrl("https://[::ffff:10.0.0.1]/ttip", strict, resolver), /::ffff:a00:1 is a private address/);
    // So is an address of NAT64's well-known prefix (64:ff9b::/96), which a NAT64 gateway sends to the IPv4 address in its last 32 bits.
    await assert.rejects(checkWebhookUrl("https://[64:ff9b::10.0.0.5]/ttip", strict, resolver), /64:ff9b::a00:5 is a private address/);
    await assert.rejects(checkWebhookUrl("https://[64:ff9b::a9fe:a9fe]/ttip", strict, resolver), /64:ff9b::a9fe:a9fe is a private address/);
    await assert.rejects(checkWebhookUrl("https://[64:ff9b::127.0.0.1]/ttip", strict, resolver), /64:ff9b::7f00:1 is a loopback address/);
    assert.equal(await checkWebhookUrl("https://[64:ff9b::5db8:d822]/ttip", strict, resolver), "https://[64:ff9b::5db8:d822]/ttip");
  });

  test("DNS rebinding: each delivery resolves the host again, connects only to what it checked, and is not sent when the answer turned private", async () => {
    const rebinder = await h.issueKey("Rebinding POS", ["webhooks:read", "webhooks:write"]);
    const host = "hooks.rebinding.test";
    h.dns.set(host, ["127.0.0.1"]);
    const url = h.receiver.url.replace("127.0.0.1", host);
    await h.partner(rebinder).createWebhookSubscription({ url, eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}` });
    // Only the scripted answer knows this host: a delivery arriving proves the request used it.
    const first = await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(5000n), createdBy: rebinder.keyId });
    await eventually("delivered through the checked address", () => h.receiver.forEvent(first).length === 1);

    h.dns.set(host, ["10.0.0.7"]);
    const second = await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(5000n), createdBy: rebinder.keyId });
    const refused = await eventually("the attempt logged", async () => (await logOf(rebinder)).find((d) => d.eventId === second && d.attempts >= 1 && d.lastError));
    assert.equal(refused.lastError, `not sent: ${host} does not resolve to public addresses only: webhooks go to public addresses only`);
    assert.equal(refused.lastResponseStatus, 0);
    assert.equal(refused.status, WebhookDeliveryStatus.PENDING, "retried later, in case the partner fixes its DNS");
    assert.equal(h.receiver.forEvent(second).length, 0, "nothing was sent");
  });

  test("a destination whose name server never answers: the send gives up on the lookup, logs why and retries, delivered once it answers", async () => {
    const key = await h.issueKey("Silent DNS POS", ["webhooks:read", "webhooks:write"]);
    const host = "hooks.silent-dns.test";
    h.dns.set(host, ["127.0.0.1"]);
    await h.partner(key).createWebhookSubscription({ url: h.receiver.url.replace("127.0.0.1", host), eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}` });
    h.dnsSilent.add(host);
    try {
      const eventId = await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(5000n), createdBy: key.keyId });
      // Before: the send waited on the lookup for good, holding its slot, and nothing was logged.
      const stuck = await eventually("the attempt logged", async () => (await logOf(key)).find((d) => d.eventId === eventId && d.lastError), 15_000);
      assert.equal(stuck.lastError, `not sent: cannot resolve ${host} right now (ETIMEOUT); retry shortly`);
      assert.equal(stuck.status, WebhookDeliveryStatus.PENDING);
      h.dnsSilent.delete(host);
      const delivered = await eventually("delivered once the name server answers", async () => (await logOf(key, WebhookDeliveryStatus.DELIVERED)).find((d) => d.eventId === eventId), 15_000);
      assert.equal(h.receiver.forEvent(eventId).length, 1);
      assert.ok(delivered.attempts >= 2);
    } finally {
      h.dnsSilent.delete(host);
    }
  });

  test("retention: final deliveries older than the period go with their attempts, in bounded batches; pending and recent ones stay", async () => {
    const archived = await h.issueKey("Archived POS", ["webhooks:read", "webhooks:write"]);
    await h.partner(archived).createWebhookSubscription({ url: `${h.receiver.url}/archive`, eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}` });
    const events: string[] = [];
    for (let i = 0; i < 7; i++) events.push(await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(5000n), createdBy: archived.keyId }));
    await eventually("all delivered", async () => (await logOf(archived, WebhookDeliveryStatus.DELIVERED)).length === 7);
    const ids = async () =>
      (await h.db.pool.query<{ delivery_id: string; event_id: string }>("SELECT delivery_id, event_id FROM auth.partner_webhook_deliveries WHERE key_id = $1", [archived.keyId])).rows;
    const byEvent = new Map((await ids()).map((r) => [r.event_id, r.delivery_id]));
    const [old1, old2, old3, old4, oldFailed, oldPending, recent] = events.map((e) => byEvent.get(e)!);
    const aged = "created_at = now() - interval '40 days', next_attempt_at = now() - interval '40 days'";
    await h.db.pool.query(`UPDATE auth.partner_webhook_deliveries SET ${aged}, delivered_at = now() - interval '40 days' WHERE delivery_id = ANY($1)`, [[old1, old2, old3, old4]]);
    await h.db.pool.query(`UPDATE auth.partner_webhook_deliveries SET ${aged}, status = 'failed', delivered_at = NULL WHERE delivery_id = $1`, [oldFailed]);
    // Waiting for its next retry (a day away): pending, however old.
    await h.db.pool.query(
      `UPDATE auth.partner_webhook_deliveries SET created_at = now() - interval '40 days', status = 'pending', delivered_at = NULL, next_attempt_at = now() + interval '1 day' WHERE delivery_id = $1`,
      [oldPending],
    );

    const config = { retentionDays: 30, pruneBatch: 2, pruneMaxBatches: 2, pruneIntervalMs: 60_000 };
    const attemptsOf = async (deliveries: string[]) =>
      (await h.db.pool.query("SELECT count(*)::int AS n FROM auth.partner_webhook_attempts WHERE delivery_id = ANY($1)", [deliveries])).rows[0].n;
    assert.equal(await attemptsOf([old1, old2, old3, old4, oldFailed]), 5);
    assert.equal(await pruneDeliveries(h.db.pool, { ...config, retentionDays: 0 }), 0, "0 keeps everything");
    assert.equal(await pruneDeliveries(h.db.pool, config), 4, "one pass deletes at most 2 batches of 2");
    assert.equal(await pruneDeliveries(h.db.pool, config), 1);
    assert.equal(await pruneDeliveries(h.db.pool, config), 0);
    assert.deepEqual((await ids()).map((r) => r.delivery_id).sort(), [oldPending, recent].sort());
    assert.equal(await attemptsOf([old1, old2, old3, old4, oldFailed]), 0, "their attempts went with them");
  });

  test("a receiver's answer is taken as it comes: a 2xx whose body never ends is delivered, a refusal with a NUL byte in its body is retried and given up on", async () => {
    // One receiver, two ways of answering: 200 with a body held open, 500 with a byte PostgreSQL's text cannot hold.
    const odd = createServer((req, res) => {
      req.resume();
      if (req.url === "/open") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("ok, and more to come");
      } else res.writeHead(500, { "content-type": "text/plain" }).end("bad\u0000answer");
    });
    await new Promise<void>((r) => odd.listen(0, "127.0.0.1", r));
    try {
      const base = `http://127.0.0.1:${(odd.address() as AddressInfo).port}`;
      const subscribed = async (path: string) => {
        const key = await h.issueKey(`Odd POS ${path}`, ["webhooks:read", "webhooks:write"]);
        await h.partner(key).createWebhookSubscription({ url: `${base}${path}`, eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}` });
        return key;
      };
      const [open, nul] = [await subscribed("/open"), await subscribed("/nul")];
      const openEvent = await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(5000n), createdBy: open.keyId });
      const nulEvent = await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(5000n), createdBy: nul.keyId });

      // Before: the answer waited for the body's end, so the 200 became "no answer" at the timeout and was sent again.
      const delivered = await eventually("the open answer delivered", async () => (await logOf(open)).find((x) => x.eventId === openEvent && x.status !== WebhookDeliveryStatus.PENDING), 20_000);
      assert.equal(delivered.status, WebhookDeliveryStatus.DELIVERED);
      assert.equal(delivered.attempts, 1);
      assert.equal(delivered.lastResponseStatus, 200);

      // Before: writing the answer's text failed its transaction, so the delivery was claimed again every lease, never given up on.
      const max = Number(WEBHOOK_ENV.AUTH_WEBHOOK_MAX_ATTEMPTS);
      const failed = await eventually("the refused one given up on", async () => (await logOf(nul, WebhookDeliveryStatus.FAILED)).find((x) => x.eventId === nulEvent), 20_000);
      assert.equal(failed.attempts, max);
      assert.equal(failed.lastError, "HTTP 500: bad\ufffdanswer");
      const logged = await h.db.pool.query("SELECT count(*)::int AS n FROM auth.partner_webhook_attempts WHERE delivery_id = $1", [failed.deliveryId]);
      assert.equal(logged.rows[0].n, max, "every attempt logged");
    } finally {
      odd.closeAllConnections();
      await new Promise((r) => odd.close(r));
    }
  });

  test("a receiver that never answers holds a few sending slots until its timeout, not everyone's deliveries: another key's event is sent meanwhile", async () => {
    // Another key's receivers take the requests and never answer (the sender gives up after AUTH_WEBHOOK_TIMEOUT_MS, 2 s).
    const held = { at: 0, closedAt: 0, count: 0 };
    const silent = createServer((req) => {
      held.at ||= Date.now();
      held.count++;
      req.socket.on("close", () => (held.closedAt ||= Date.now()));
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    try {
      // Ten subscriptions and two events: twenty hung deliveries, more than a process's sixteen slots. Before, they took them all.
      const slow = await h.issueKey("Slow POS", ["webhooks:read", "webhooks:write"]);
      for (let i = 0; i < 10; i++) {
        await h.partner(slow).createWebhookSubscription({
          url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/hooks/${i}`, eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}`,
        });
      }
      for (let i = 0; i < 2; i++) await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(5000n), createdBy: slow.keyId });
      await eventually("the silent receivers holding a key's share of the slots", () => held.count >= 4);
      const eventId = await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(7000n), createdBy: pos.keyId });
      const [got] = await eventually("the other key's delivery", () => h.receiver.forEvent(eventId).length > 0 && h.receiver.forEvent(eventId));
      assert.equal(held.closedAt, 0, "sent while the silent ones were still held (before: after their timeout freed slots)");
      assert.ok(got.at >= held.at);
      assert.equal(held.count, 4, "one key holds four slots at most");
    } finally {
      silent.closeAllConnections();
      await new Promise((r) => silent.close(r));
    }
  });
});

describe("partner webhooks to a receiver that does not answer", () => {
  let h: PartnerHarness;
  const TIMEOUT_MS = 300;

  before(async () => {
    // A minute's retry, so what waits for it is seen waiting.
    h = await startPartnerHarness({ env: { AUTH_WEBHOOK_RETRY_BASE_MS: "60000", AUTH_WEBHOOK_RETRY_CAP_MS: "60000", AUTH_WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS) } });
  });
  after(() => h?.close());

  test("it is tried by the deliveries in flight, not its whole backlog: the rest wait for its retry, the key's other subscription is sent meanwhile, and nothing is lost once it answers", async () => {
    const silent = { requests: 0, answers: false };
    const server = createServer((req, res) => {
      silent.requests++;
      if (silent.answers) req.resume().on("end", () => res.end());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const key = await h.issueKey("Hanging POS", ["webhooks:read", "webhooks:write"]);
      const subscribe = (url: string) =>
        h.partner(key).createWebhookSubscription({ url, eventTypes: [WebhookEventType.TIP_SUCCEEDED], idempotencyKey: `sub-${randomUUID()}` });
      const hanging = (await subscribe(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`)).subscription!.subscriptionId;
      await subscribe(h.receiver.url);
      const events: string[] = [];
      for (let i = 0; i < 8; i++) events.push(await h.publish(TipSucceededSchema, { tipId: randomUUID(), amount: kesMinor(5000n), createdBy: key.keyId }));
      await eventually("the answering subscription's eight", () => events.every((e) => h.receiver.forEvent(e).length === 1));
      const noAnswers = async () =>
        (await h.db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM auth.partner_webhook_attempts a JOIN auth.partner_webhook_deliveries d USING (delivery_id)
            WHERE d.subscription_id = $1 AND a.response_status = 0`, [hanging])).rows[0].n;
      await eventually("the first send given up at its timeout", async () => (await noAnswers()) > 0);
      // Five timeouts on: before, each freed slot took the next of its eight at once, all of them sent within two timeouts.
      await new Promise((r) => setTimeout(r, 5 * TIMEOUT_MS));
      assert.ok(silent.requests <= 4, `${silent.requests} sent to it: the ones in flight (a key's four at most) when the first got no answer`);
      const { rows: waiting } = await h.db.pool.query<{ attempts: number; wait_ms: number }>(
        `SELECT attempts, EXTRACT(EPOCH FROM next_attempt_at - now()) * 1000 AS wait_ms FROM auth.partner_webhook_deliveries
          WHERE subscription_id = $1 AND status = 'pending'`, [hanging]);
      assert.equal(waiting.length, 8, "all eight still pending");
      for (const w of waiting.filter((x) => x.attempts === 0)) assert.ok(w.wait_ms > 30_000, `an untried one waits for the retry (${w.wait_ms} ms)`);

      // It answers again: at the retry, each of the eight is delivered.
      silent.answers = true;
      h.clock.advance(61_000);
      await eventually("all eight delivered", async () => (await h.db.pool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM auth.partner_webhook_deliveries WHERE subscription_id = $1 AND status = 'delivered'", [hanging])).rows[0].n === 8);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
