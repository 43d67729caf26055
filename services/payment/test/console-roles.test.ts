// The admin console's roles, enforced by the payment service itself (the
// gateway checks them too): support reads the queues and moves no money.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { PaymentAdminService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { AlertStatus, FraudAction } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { createClient } from "@connectrpc/connect";
import { callerHeaders, stepUpHeaders } from "@ttip/runtime";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate, timestampNow } from "@bufbuild/protobuf/wkt";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { EventMetaSchema, PaymentAdminActionTakenSchema, UserBlockChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";

/** The admin actions payment recorded in its outbox, oldest first. */
async function adminActions(h: Harness) {
  const { rows } = await h.t.db.pool.query("SELECT payload FROM payment.outbox WHERE subject = 'ttip.payment.admin_action' ORDER BY seq");
  return rows.map((r) => fromBinary(PaymentAdminActionTakenSchema, r.payload).action!);
}

/** A fresh idempotency key: each call here is a new request, unless a test says it is a retry. */
const key = () => `k-${randomUUID()}`;

/** Auth's UserBlockChanged for `userId`, as auth publishes it. */
async function blockChanged(h: Harness, userId: string, blocked: boolean, at: Date, by: string) {
  const id = randomUUID();
  await h.t.ctx.bus.publish({
    id,
    subject: "ttip.auth.user_block_changed",
    data: toBinary(UserBlockChangedSchema, create(UserBlockChangedSchema, {
      meta: create(EventMetaSchema, { id, occurredAt: timestampNow(), producer: "auth" }),
      userId, blocked, reason: blocked ? "card fraud" : "cleared", changedBy: by, changedAt: timestampFromDate(at),
    })),
  });
}
const outcome = (p: Promise<unknown>) => p.then(() => "ok", (e) => Code[ConnectError.from(e).code]);

describe("payment admin RPCs by console role", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h?.close());

  test("support: reads alerts and suspense; PERMISSION_DENIED on every money action, and nothing changes", async () => {
    const support = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["support"] });
    const worker = randomUUID();
    assert.equal(await outcome(support.listFraudAlerts({})), "ok");
    assert.equal(await outcome(support.listSuspensePayments({})), "ok");
    assert.equal(await outcome(support.listUnmatchedCallbacks({})), "ok");
    assert.equal(await outcome(support.getPayoutHold({ workerId: worker })), "ok");
    for (const [name, call] of [
      ["HoldPayouts", () => support.holdPayouts({ workerId: worker, reason: "check", idempotencyKey: key() })],
      ["ReleasePayouts", () => support.releasePayouts({ workerId: worker, idempotencyKey: key() })],
      ["ReviewTip", () => support.reviewTip({ tipId: randomUUID(), approve: true, note: "looks fine" })],
      ["RefundTip", () => support.refundTip({ tipId: randomUUID(), idempotencyKey: `r-${randomUUID()}`, reason: "asked" })],
      ["BlockPhoneNumber", () => support.blockPhoneNumber({ phone: "254712345678", reason: "fraud" })],
      ["ResolveSuspensePayment", () => support.resolveSuspensePayment({ receipt: "AAAAAAAAAA", action: { case: "refund", value: true }, note: "customer asked" })],
      ["ResolveHeldPayout", () => support.resolveHeldPayout({ payoutId: randomUUID(), idempotencyKey: key(), outcome: { case: "notPaid", value: true }, note: "statement checked" })],
    ] as const) {
      assert.equal(await outcome(call()), "PermissionDenied", name);
    }
    const { rows } = await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.payout_settings WHERE payouts_on_hold");
    assert.equal(rows[0].n, 0, "no hold was placed");
    assert.deepEqual(await adminActions(h), [], "nothing audited: nothing happened");
    const wallet = createClient(WalletAdminService, h.t.ctx.peers("wallet"));
    assert.equal(await outcome(wallet.getTrialBalance({}, { headers: callerHeaders(randomUUID(), "support") })), "PermissionDenied");
  });

  test("finance: holds and releases payouts; reads the ledger", async () => {
    const financeId = randomUUID();
    const finance = h.t.client(PaymentAdminService, { subject: financeId, roles: ["finance"], stepUp: true });
    const worker = randomUUID();
    const held = async () => (await h.t.db.pool.query("SELECT payouts_on_hold FROM payment.payout_settings WHERE worker_id = $1", [worker])).rows[0]?.payouts_on_hold;
    const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e) => ConnectError.from(e));
    const releasedUnheld = await refusal(finance.releasePayouts({ workerId: worker, note: "nothing held", idempotencyKey: key() }));
    assert.equal(releasedUnheld?.code, Code.FailedPrecondition, "releasing what is not held");
    assert.equal(releasedUnheld!.rawMessage, "worker_id: the worker's payouts are not on hold");
    assert.equal((await finance.getPayoutHold({ workerId: worker })).hold, undefined, "no hold to show");
    assert.equal(await outcome(finance.holdPayouts({ workerId: worker, reason: "check", idempotencyKey: key() })), "ok");
    assert.equal(await held(), true);
    // The hold as the console shows it: since when, by whom, why; support reads it too.
    const { hold } = await h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["support"] }).getPayoutHold({ workerId: worker });
    assert.equal(hold?.heldByUserId, financeId);
    assert.equal(hold?.reason, "check");
    assert.ok(Math.abs(Number(hold!.heldAt!.seconds) * 1000 - Date.now()) < 60_000, "held now");
    const heldAgain = await refusal(finance.holdPayouts({ workerId: worker, reason: "another reason", idempotencyKey: key() }));
    assert.equal(heldAgain?.code, Code.FailedPrecondition, "holding what is held");
    assert.equal(heldAgain!.rawMessage, "worker_id: the worker's payouts are on hold already");
    assert.equal((await finance.getPayoutHold({ workerId: worker })).hold?.reason, "check", "the first hold's reason stays");
    // The held worker, staff too, releases no hold of their own.
    const own = h.t.client(PaymentAdminService, { subject: worker, roles: ["worker", "finance"], stepUp: true });
    const ownRelease = await refusal(own.releasePayouts({ workerId: worker, note: "mine", idempotencyKey: key() }));
    assert.deepEqual([ownRelease?.code, ownRelease?.rawMessage], [Code.PermissionDenied, "worker_id: this is your own account's; another admin must decide it"]);
    assert.equal(await held(), true);
    assert.equal(await outcome(finance.releasePayouts({ workerId: worker, note: "customer's bank confirmed", idempotencyKey: key() })), "ok");
    assert.equal(await held(), false);
    assert.equal((await finance.getPayoutHold({ workerId: worker })).hold, undefined, "released");
    assert.equal(await outcome(finance.blockPhoneNumber({ phone: "0712345678", reason: "card testing" })), "ok");
    assert.equal(await outcome(finance.blockPhoneNumber({ phone: "0712345678", reason: "card testing" })), "ok", "a retry after a lost answer");
    // Each action's audit record is in payment's outbox, written with it, the release's note
    // like the hold's reason; the refused hold and releases changed nothing and recorded nothing, nor did the
    // block's retry (before, a second PAYER_BLOCKED).
    const actions = await adminActions(h);
    assert.deepEqual(actions.map((a) => [AuditAction[a.action], a.target, a.actorUserId === financeId, a.detail]), [
      ["PAYOUTS_HELD", `worker:${worker}`, true, "check"],
      ["PAYOUTS_RELEASED", `worker:${worker}`, true, "customer's bank confirmed"],
      ["PAYER_BLOCKED", "phone:2547******78", true, "card testing"],
    ]);
    const wallet = createClient(WalletAdminService, h.t.ctx.peers("wallet"));
    assert.equal((await wallet.getTrialBalance({}, { headers: callerHeaders(randomUUID(), "finance") })).balanced, true);
  });

  test("a block landing on a hold already placed takes the hold over: the console shows the block to whoever would release it", async () => {
    const financeId = randomUUID();
    const blockerId = randomUUID();
    const finance = h.t.client(PaymentAdminService, { subject: financeId, roles: ["finance"], stepUp: true });
    const worker = randomUUID();
    await finance.holdPayouts({ workerId: worker, reason: "checking receipts", idempotencyKey: key() });
    const changed = (blocked: boolean, at: Date, userId = worker) => blockChanged(h, userId, blocked, at, blockerId);
    const blockedAt = new Date();
    await changed(true, blockedAt);
    // Before, the block found the payouts held and left the hold as it was: "checking receipts", by finance, whose
    // release once the receipts checked out paid the blocked account.
    const hold = await eventually(async () => {
      const { hold } = await finance.getPayoutHold({ workerId: worker });
      return hold?.heldByUserId === blockerId ? hold : undefined;
    }, "the block taking the hold over");
    assert.equal(hold.reason, "account blocked: card fraud; held before: checking receipts");
    // Finance, from a screen still showing its own hold, releases it: refused while the account is blocked. Before,
    // the release took the block's hold with it, and the blocked account was paid.
    const release = () => finance.releasePayouts({ workerId: worker, note: "receipts check out", idempotencyKey: key() });
    const refused = await release().then(() => undefined, (e) => ConnectError.from(e));
    assert.deepEqual([refused?.code, refused?.rawMessage], [Code.FailedPrecondition, "worker_id: the worker's account is blocked: unblock it first, then release its payouts"]);
    assert.equal((await finance.getPayoutHold({ workerId: worker })).hold?.heldByUserId, blockerId, "still held");
    // Unblocked by auth: the hold stays for an admin to release, who now may.
    await changed(false, new Date(blockedAt.getTime() + 1000));
    await eventually(async () => (await outcome(release())) === "ok" || undefined, "released once the account is unblocked");
    assert.equal((await finance.getPayoutHold({ workerId: worker })).hold, undefined);

    // Out of order, for a worker payment has no settings for: the unblock read before the block it came after.
    // Before, the unblock found no row and was dropped; the block then held the payouts of an unblocked account,
    // and every release was refused for good.
    const other = randomUUID();
    await changed(false, new Date(blockedAt.getTime() + 1000), other);
    await changed(true, blockedAt, other);
    const marker = randomUUID();
    await changed(true, new Date(), marker);
    await eventually(async () => (await finance.getPayoutHold({ workerId: marker })).hold, "the marker after both read");
    assert.equal((await finance.getPayoutHold({ workerId: other })).hold, undefined, "the late block changed nothing");
  });

  test("a worker auth blocked takes no tips by id, as their codes take none; unblocked, they do again", async () => {
    const worker = randomUUID();
    const pay = h.t.client(PaymentService);
    const tipBy = () => pay.createTip({ idempotencyKey: key(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
    const changed = (blocked: boolean, at: Date) => blockChanged(h, worker, blocked, at, randomUUID());
    const finance = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["finance"] });
    const blockedAt = new Date();
    await changed(true, blockedAt);
    await eventually(async () => (await finance.getPayoutHold({ workerId: worker })).hold, "the block read (it holds the payouts)");
    const pushes = h.sim.transactions().length;
    const refused = await tipBy().then(() => undefined, (e) => ConnectError.from(e));
    assert.deepEqual([refused?.code, refused?.rawMessage], [Code.FailedPrecondition, "worker_id: this worker is not taking tips"]);
    assert.equal(h.sim.transactions().length, pushes, "no prompt sent");
    // A partner's link is checked first: one not linked (here: not checkable, qr is not running) learns nothing of the block.
    const partner = h.t.client(PaymentService, { subject: randomUUID(), roles: ["partner"] });
    const asked = await partner.createTip({ idempotencyKey: key(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } })
      .then(() => undefined, (e) => ConnectError.from(e));
    assert.deepEqual([asked?.code, asked?.rawMessage], [Code.Unavailable, "cannot check the partner key's link right now; retry shortly"]);
    await changed(false, new Date(blockedAt.getTime() + 1000));
    await eventually(async () => (await outcome(tipBy())) === "ok" || undefined, "tips taken once unblocked");
  });

  test("a direct call without the device step-up: the service itself refuses every declared money action, and nothing changes", async () => {
    const subject = randomUUID();
    const direct = h.t.client(PaymentAdminService, { subject, roles: ["finance"] });
    const worker = randomUUID();
    const steppedUp = h.t.client(PaymentAdminService, { subject, roles: ["finance"], stepUp: true });
    assert.equal(await outcome(steppedUp.holdPayouts({ workerId: worker, reason: "check", idempotencyKey: key() })), "ok", "holding stops money: no step-up declared");
    for (const [name, call] of [
      ["ReleasePayouts", () => direct.releasePayouts({ workerId: worker, idempotencyKey: key() })],
      ["ReviewTip", () => direct.reviewTip({ tipId: randomUUID(), approve: true, note: "looks fine" })],
      ["RefundTip", () => direct.refundTip({ tipId: randomUUID(), idempotencyKey: `r-${randomUUID()}`, reason: "asked" })],
      ["ResolveSuspensePayment", () => direct.resolveSuspensePayment({ receipt: "AAAAAAAAAA", action: { case: "refund", value: true }, note: "customer asked" })],
      ["ResolveHeldPayout", () => direct.resolveHeldPayout({ payoutId: randomUUID(), idempotencyKey: key(), outcome: { case: "notPaid", value: true }, note: "statement checked" })],
    ] as const) {
      const err = await call().then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(err?.code, Code.PermissionDenied, name);
      assert.match(err!.rawMessage, new RegExp(`PaymentAdminService/${name} moves money or grants access and needs the admin's device step-up: the caller's identity carries no device step-up`), name);
    }
    const held = await h.t.db.pool.query("SELECT payouts_on_hold FROM payment.payout_settings WHERE worker_id = $1", [worker]);
    assert.equal(held.rows[0].payouts_on_hold, true, "the release did not run");
    // A step-up the gateway verified too long ago does not count either.
    const stale = await direct.releasePayouts({ workerId: worker, idempotencyKey: key() }, { headers: stepUpHeaders(Date.now() - 120_000) }).then(() => undefined, (e) => ConnectError.from(e));
    assert.equal(stale?.code, Code.PermissionDenied);
    assert.match(stale!.rawMessage, /s old \(at most 60 s\)/);
    // The same caller with a fresh step-up goes through.
    assert.equal(await outcome(steppedUp.releasePayouts({ workerId: worker, idempotencyKey: key() })), "ok");
  });

  test("a retried Hold or Release (its answer lost) gets its first answer; another Hold of the held worker, or Release of one not held, is still refused", async () => {
    const financeId = randomUUID();
    const finance = h.t.client(PaymentAdminService, { subject: financeId, roles: ["finance"], stepUp: true });
    const worker = randomUUID();
    const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e) => ConnectError.from(e));
    const hold = { workerId: worker, reason: "check", idempotencyKey: key() };
    assert.equal(await outcome(finance.holdPayouts(hold)), "ok");
    assert.equal(await outcome(finance.holdPayouts(hold)), "ok", "the same hold retried: its first answer");
    assert.equal((await refusal(finance.holdPayouts({ ...hold, idempotencyKey: key() })))?.code, Code.FailedPrecondition, "another hold of the held worker");
    assert.equal((await refusal(finance.holdPayouts({ ...hold, reason: "another reason" })))?.code, Code.AlreadyExists, "another request under the hold's key");
    assert.equal((await finance.getPayoutHold({ workerId: worker })).hold?.reason, "check");
    const release = { workerId: worker, note: "bank confirmed", idempotencyKey: key() };
    assert.equal(await outcome(finance.releasePayouts(release)), "ok");
    assert.equal(await outcome(finance.releasePayouts(release)), "ok", "the same release retried: its first answer");
    assert.equal((await refusal(finance.releasePayouts({ ...release, idempotencyKey: key() })))?.code, Code.FailedPrecondition, "another release of a worker not held");
    assert.equal((await finance.getPayoutHold({ workerId: worker })).hold, undefined, "released, not held again");
    // One hold and one release happened: one audit record each, the retries recorded nothing.
    const actions = (await adminActions(h)).filter((a) => a.target === `worker:${worker}`);
    assert.deepEqual(actions.map((a) => [AuditAction[a.action], a.detail]), [["PAYOUTS_HELD", "check"], ["PAYOUTS_RELEASED", "bank confirmed"]]);
  });

  test("support closes an alert that holds nothing (a flag) with a note, once, audited; a hold is refused, as it closes with its decision", async () => {
    const support = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["support"] });
    // A reversal result for no reversal: stored, and flagged for someone to look at.
    const late = { Result: { ResultType: 0, ResultCode: 0, ResultDesc: "done", OriginatorConversationID: randomUUID(), ConversationID: `AG_${randomUUID()}`, TransactionID: "SXXXXXXXXX" } };
    assert.equal((await h.post(`/daraja/reversal/result/${"z".repeat(32)}`, late)).status, 200);
    const open = async () => (await support.listFraudAlerts({ status: AlertStatus.OPEN, page: { pageSize: 100 } })).alerts;
    const flag = (await open()).find((a) => a.detail.includes(late.Result.OriginatorConversationID))!;
    assert.equal(FraudAction[flag.action], "FLAG");

    const closed = (await support.closeFraudAlert({ alertId: flag.alertId, note: "a test call from Safaricom's sandbox" })).alert!;
    assert.deepEqual([AlertStatus[closed.status], closed.detail.endsWith(" | closed: a test call from Safaricom's sandbox")], ["CLOSED", true]);
    assert.ok(!(await open()).some((a) => a.alertId === flag.alertId), "out of the open queue");
    const again = (await support.closeFraudAlert({ alertId: flag.alertId, note: "again" })).alert!;
    assert.equal(again.detail, closed.detail, "closed once: the same answer, the note not added twice");
    const audited = (await adminActions(h)).filter((a) => a.target === `alert:${flag.alertId}`);
    assert.deepEqual(audited.map((a) => AuditAction[a.action]), ["FRAUD_ALERT_CLOSED"]);

    const held = randomUUID();
    await h.t.db.pool.query("INSERT INTO payment.fraud_alerts (alert_id, reason, action, detail) VALUES ($1, 'SELF_TIP', 'hold', 'held for review')", [held]);
    const refused = await support.closeFraudAlert({ alertId: held, note: "looked at it" }).then(() => undefined, (e) => ConnectError.from(e));
    assert.deepEqual([refused?.code, /^alert_id: it holds money/.test(refused?.rawMessage ?? "")], [Code.FailedPrecondition, true]);
    const missing = await support.closeFraudAlert({ alertId: randomUUID(), note: "looked at it" }).then(() => undefined, (e) => ConnectError.from(e));
    assert.equal(missing?.code, Code.NotFound);
    const { rows } = await h.t.db.pool.query("SELECT status FROM payment.fraud_alerts WHERE alert_id = $1", [held]);
    assert.equal(rows[0].status, "open", "the hold untouched");
  });
});
