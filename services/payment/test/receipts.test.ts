// Customer receipts: payment sends the owed ones to the real notification service (and asks
// the real qr service for the worker's name), in batches, against the SMS and e-mail simulators.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import type { Transport } from "@connectrpc/connect";
import { createClient } from "@connectrpc/connect";
import { createNotificationModule, DEFAULT_RETRY } from "@ttip/notification";
import { ProviderSimulator } from "@ttip/notification/testing";
import { TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createQrModule } from "@ttip/qr";
import { callerHeaders, migrate, normalisePhone, type ServiceContext } from "@ttip/runtime";
import { eventually, startTestService, type TestService, testPhone } from "@ttip/runtime/testing";
import { sendOwedReceipts, sendReceipts, type OwedReceipt } from "../src/receipts.js";
import type { Deps } from "../src/tips.js";

describe("customer receipts, sent in batches through the notification service", () => {
  const sim = new ProviderSimulator();
  let t: TestService;
  let deps: Deps;
  /** The calls payment made to its peers, by method, with each SendNotifications call's keys. */
  const calls: { method: string; keys: string[] }[] = [];
  const called = (method: string) => calls.filter((c) => c.method === method);
  const smsTo = (phone: string) => sim.sent.filter((m) => m.provider === "africastalking" && normalisePhone(m.to) === normalisePhone(phone));

  before(async () => {
    await sim.start();
    const config = { providers: sim.config("africastalking", "at-callback-secret"), retry: { ...DEFAULT_RETRY, baseDelayMs: 30, maxDelayMs: 100 }, publicUrl: () => "" };
    t = await startTestService(createNotificationModule({ config }), { with: [createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } })] });
    await migrate(t.db.pool, "payment", fileURLToPath(new URL("../migrations", import.meta.url)));
    // Each peer call waits for its answer, without the deadline payment gives it (notification 5 s, qr 2 s): on a
    // starved machine a deadline passed is a receipt left owed, and these tests count what one pass settles.
    const counting = (name: string): Transport => {
      const transport = t.ctx.peers(name);
      return {
        unary: (method, signal, _deadline, header, input, contextValues) => {
          const sent = input as { requests?: { idempotencyKey: string }[]; idempotencyKey?: string };
          calls.push({ method: method.name, keys: sent.requests?.map((r) => r.idempotencyKey) ?? (sent.idempotencyKey ? [sent.idempotencyKey] : []) });
          return transport.unary(method, signal, undefined, header, input, contextValues);
        },
        stream: (...args) => transport.stream(...args),
      };
    };
    const ctx: ServiceContext = { ...t.ctx, peers: counting };
    deps = { ctx } as unknown as Deps;
  });
  after(async () => {
    await t?.close();
    await sim.close();
  });

  /** Tips whose money reached the worker, each owed a receipt: to `workerId`, paid from `phone`. */
  async function owe(tips: { workerId: string; phone: string; email?: string; shillings?: number }[]): Promise<OwedReceipt[]> {
    const rows: OwedReceipt[] = [];
    for (const tip of tips) {
      const tipId = randomUUID();
      const receipt = `R${tipId.slice(0, 9).replace("-", "").toUpperCase()}`;
      const minor = BigInt((tip.shillings ?? 100) * 100);
      await t.db.pool.query(
        `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
           phone, phone_masked, status, callback_token, deadline_at, next_check_at, mpesa_receipt, credit_key, credit_kind, customer_email)
         VALUES ($1::uuid, $1::text, 'fp', $2, 'KES', $3, $3, $3, $4, 'x', 'succeeded', $1::text, now(), now(), $5, $5, 'worker', $6)`,
        [tipId, tip.workerId, minor, tip.phone, receipt, tip.email ?? ""],
      );
      await t.db.pool.query("INSERT INTO payment.receipts (tip_id) VALUES ($1)", [tipId]);
      rows.push({ tip_id: tipId, phone: tip.phone, currency: "KES", charged_minor: minor, credit_key: receipt, mpesa_receipt: receipt, worker_id: tip.workerId, venue_id: "", customer_email: tip.email ?? null });
    }
    return rows;
  }
  const owed = async (tipIds: string[]) =>
    (await t.db.pool.query<{ tip_id: string; attempts: number; last_error: string | null }>(
      "SELECT tip_id, attempts, last_error FROM payment.receipts WHERE tip_id = ANY($1::uuid[]) ORDER BY tip_id",
      [tipIds],
    )).rows;
  const deliveriesOf = async (tipIds: string[]) =>
    (await t.db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM notification.deliveries WHERE source_key = ANY($1::text[])",
      [tipIds.flatMap((id) => [`rpc:receipt:${id}`, `rpc:receipt-email:${id}`])])).rows[0].n;

  test("a pass sends its receipts in one notification call, asks qr once per owner, and a repeated pass sends nothing twice", async () => {
    const [named, unnamed] = [randomUUID(), randomUUID()];
    await createClient(QrService, t.ctx.peers("qr")).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: named, displayName: "Wanjiru" }, { headers: callerHeaders(named, "worker") });
    const phones = [testPhone(), testPhone(), testPhone(), testPhone(), testPhone()];
    const stopped = phones[4];
    await t.db.pool.query("INSERT INTO notification.sms_opt_outs (phone, provider) VALUES ($1, 'africastalking')", [normalisePhone(stopped)]);
    const email = `customer-${randomUUID().slice(0, 8)}@example.com`;
    const rows = await owe([
      { workerId: named, phone: phones[0], shillings: 250 },
      { workerId: named, phone: phones[1], email },
      { workerId: named, phone: phones[2] },
      { workerId: unnamed, phone: phones[3] },
      { workerId: unnamed, phone: stopped },
    ]);
    const tipIds = rows.map((r) => r.tip_id);
    calls.length = 0;
    assert.equal(await sendReceipts(deps, 100), 5, "every receipt settled (the opted-out number's written failed, without an SMS)");
    assert.equal(called("SendNotifications").length, 1, "one notification call for the pass");
    assert.equal(called("SendNotifications")[0].keys.length, 6, "five SMS and one e-mail");
    assert.equal(called("SendNotification").length, 0);
    assert.equal(called("GetProfile").length, 2, "one name asked per owner");
    assert.deepEqual(await owed(tipIds), [], "all marked sent");

    await eventually("the receipts' SMS", () => phones.slice(0, 4).every((p) => smsTo(p).length === 1));
    assert.equal(smsTo(phones[0])[0].body.trim(), `TTIP receipt: you tipped Wanjiru KES 250. Ref ${rows[0].mpesa_receipt}. Thank you!`);
    assert.match(smsTo(phones[3])[0].body, /you tipped your server KES 100\./, "a worker without a name is not named");
    await eventually("the e-mailed receipt", () => sim.sent.some((m) => m.provider === "sendgrid" && m.to === email));
    assert.equal(await deliveriesOf(tipIds), 6);

    // The marks lost (a crash after the sends): the pass again sends nothing twice.
    await t.db.pool.query("INSERT INTO payment.receipts (tip_id) SELECT unnest($1::uuid[])", [tipIds]);
    calls.length = 0;
    assert.equal(await sendOwedReceipts(deps, rows), 5);
    assert.equal(called("SendNotifications").length, 1);
    assert.equal(called("GetProfile").length, 0, "names known for a minute");
    assert.equal(await deliveriesOf(tipIds), 6, "no delivery made twice");
    assert.deepEqual(phones.map((p) => smsTo(p).length), [1, 1, 1, 1, 0], "one SMS per receipt; none to the number that texted STOP");
  });

  test("a card tip's receipt goes by e-mail alone, in the card's currency, its card payment the reference", async () => {
    const [worker, tipId] = [randomUUID(), randomUUID()];
    await createClient(QrService, t.ctx.peers("qr")).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker, displayName: "Achieng" }, { headers: callerHeaders(worker, "worker") });
    const email = `card-${randomUUID().slice(0, 8)}@example.com`;
    await t.db.pool.query(
      `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, charged_minor, worker_receives_minor,
         phone, phone_masked, status, callback_token, deadline_at, next_check_at, credit_key, credit_kind, customer_email, method, card_provider, provider_payment_id)
       VALUES ($1::uuid, $1::text, 'fp', $2, 'USD', 1000, 1000, 120000, '', '', 'succeeded', $1::text, now(), now(), 'card:pi_receipt1', 'worker', $3, 'card', 'stripe', 'pi_receipt1')`,
      [tipId, worker, email],
    );
    await t.db.pool.query("INSERT INTO payment.receipts (tip_id) VALUES ($1)", [tipId]);
    assert.equal(await sendReceipts(deps, 10, tipId), 1);
    const mail = await eventually("the e-mailed receipt", async () => sim.sent.find((m) => m.provider === "sendgrid" && m.to === email));
    // Before, a card tip's receipt said KES for a USD tip, and named the ledger's key.
    assert.match(mail.body, /you tipped Achieng USD 10(\.00)?\. Ref pi_receipt1\./);
    assert.equal(await deliveriesOf([tipId]), 1, "no SMS: a card tip has no paying number");
  });

  test("a receipt notification refuses stays owed and is retried alone; one whose key went out with other words counts as sent", async () => {
    const worker = randomUUID();
    const [good, malformed, earlier] = await owe([{ workerId: worker, phone: testPhone() }, { workerId: worker, phone: "12345" }, { workerId: worker, phone: testPhone() }]);
    // Sent before, worded otherwise (the name unknown then), its answer lost.
    await createClient(NotificationInternalService, t.ctx.peers("notification")).sendNotification({
      idempotencyKey: `receipt:${earlier.tip_id}`, recipient: { case: "phone", value: earlier.phone }, templateKey: TemplateKey.RECEIPT,
      variables: { amount: "KES 100", worker: "someone", reference: "X" },
    });
    calls.length = 0;
    assert.equal(await sendOwedReceipts(deps, [good, malformed, earlier]), 2);
    // A number notification cannot take is refused in its own result: one call for the three.
    assert.deepEqual(calls.filter((c) => c.method !== "GetProfile").map((c) => [c.method, c.keys.length]), [["SendNotifications", 3]]);
    const [left] = await owed([good.tip_id, malformed.tip_id, earlier.tip_id]);
    assert.equal(left.tip_id, malformed.tip_id, "only the refused receipt stays owed");
    assert.equal(left.attempts, 1);
    assert.match(left.last_error ?? "", /phone/, "its error names the field");
    assert.doesNotMatch(left.last_error ?? "", /12345/, "and not the number");

    calls.length = 0;
    await sendReceipts(deps, 100, malformed.tip_id);
    assert.deepEqual(calls.filter((c) => c.method !== "GetProfile").map((c) => c.keys), [[`receipt:${malformed.tip_id}`]], "the next pass sends it again");
    assert.equal((await owed([malformed.tip_id]))[0].attempts, 2);
    await eventually("the good and the earlier receipt's SMS", () => smsTo(good.phone).length === 1 && smsTo(earlier.phone).length === 1);
    assert.equal(await deliveriesOf([earlier.tip_id]), 1, "the earlier send's delivery only");
    assert.match(smsTo(earlier.phone)[0].body, /someone/, "the earlier wording went out, once");
  });

  test("a receipt that fails every time waits behind the others: passes of one receipt each send the others, then try it again", async () => {
    await t.db.pool.query("DELETE FROM payment.receipts"); // earlier tests' refused receipts: this test's queue alone
    const worker = randomUUID();
    const [poisoned, ...others] = await owe([{ workerId: worker, phone: "12345" }, { workerId: worker, phone: testPhone() }, { workerId: worker, phone: testPhone() }]);
    const pass = async () => {
      calls.length = 0;
      await sendReceipts(deps, 1);
      return called("SendNotifications").flatMap((c) => c.keys);
    };
    const tried = [await pass(), await pass(), await pass()];
    // Before, the oldest owed receipt came first on every pass: the refused one took each pass's place.
    assert.deepEqual(tried, [poisoned, ...others].map((r) => [`receipt:${r.tip_id}`]), "the refused receipt once, then each other");
    assert.deepEqual((await owed([poisoned, ...others].map((r) => r.tip_id))).map((r) => [r.tip_id, r.attempts]), [[poisoned.tip_id, 1]]);
    assert.deepEqual(await pass(), [`receipt:${poisoned.tip_id}`], "still owed: tried again once nothing else waits");
    await eventually("the others' SMS", () => others.every((r) => smsTo(r.phone).length === 1));
  });

  test("receipts credited at the same time go to notification together, each answered on its own", async () => {
    const worker = randomUUID();
    await createClient(QrService, t.ctx.peers("qr")).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker, displayName: "Baraka" }, { headers: callerHeaders(worker, "worker") });
    const rows = await owe(Array.from({ length: 6 }, () => ({ workerId: worker, phone: testPhone() })));
    await sendOwedReceipts(deps, rows.slice(0, 1));
    calls.length = 0;
    // As runAfterCredit does for each tip credited: one call each, at the same time.
    const sent = await Promise.all(rows.slice(1).map((r) => sendOwedReceipts(deps, [r])));
    assert.deepEqual(sent, [1, 1, 1, 1, 1]);
    assert.deepEqual(called("SendNotifications").map((c) => c.keys.length), [5], "one call carries the five");
    assert.deepEqual(await owed(rows.map((r) => r.tip_id)), []);
    await eventually("each one SMS", () => rows.every((r) => smsTo(r.phone).length === 1));
  });
});
