import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { createQrModule } from "@ttip/qr";
import { callerHeaders } from "@ttip/runtime";
import { PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { AccountKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";

const asAdmin = { headers: callerHeaders("admin-1", "admin") };

// A customer scans a venue's table code: the tip lands in the venue's pool, once.
describe("tips to a venue's pool", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  let qr: Client<typeof QrService>;
  let walletAdmin: Client<typeof WalletAdminService>;

  before(async () => {
    h = await startHarness({}, [createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } })]);
    pay = h.t.client(PaymentService);
    qr = createClient(QrService, h.t.ctx.peers("qr"));
    walletAdmin = createClient(WalletAdminService, h.t.ctx.peers("wallet"));
  });
  after(async () => {
    await h.close();
  });

  const venueWithTable = async (name: string) => {
    const venue = randomUUID();
    const as = { headers: callerHeaders(randomUUID(), "venue_manager") };
    await qr.putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venue, displayName: name }, as);
    const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: venue, idempotencyKey: randomUUID(), parameters: { table: "T7" } }, as);
    return { venue, code: qrCode! };
  };
  const poolBalance = async (venue: string) => {
    const { accounts } = await walletAdmin.listAccounts({ kind: AccountKind.VENUE_POOL, ownerId: venue }, asAdmin);
    if (!accounts[0]) return 0n;
    const { balance } = await walletAdmin.getAccount({ accountId: accounts[0].accountId }, asAdmin);
    return balance!.ledger!.amountMinor;
  };
  const outboxCount = async (subject: string, tipId: string) =>
    Number((await h.t.db.pool.query("SELECT count(*) FROM payment.outbox o WHERE subject = $1 AND position($2 in encode(payload, 'escape')) > 0", [subject, tipId])).rows[0].count);

  test("the code resolves as a shared tip named after the venue", async () => {
    const { code } = await venueWithTable("Mama Oliech");
    const { target } = await qr.resolveQrCode({ code: { case: "shortCode", value: code.shortCode } });
    assert.equal(target!.shared, true);
    assert.equal(target!.workerId, "");
    assert.equal(target!.displayName, "Mama Oliech");
    assert.equal(target!.table, "T7");
  });

  test("a venue tip credits the pool net of the fee, once, though its callback comes three times", async () => {
    const { venue, code } = await venueWithTable("Java House");
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: code.shortCode }, amount: KES(100), payment: { case: "mpesaPhone", value: phone("0002") } });
    assert.equal(tip!.shared, true);
    assert.equal(tip!.workerId, "");
    assert.equal(tip!.venueId, venue);
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "succeeded");
    await h.sim.idle();
    const outcomes = (await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE tip_id = $1", [tip!.tipId])).rows.map((x) => x.outcome);
    assert.deepEqual(outcomes.sort(), ["credited", "duplicate", "duplicate"]);
    await eventually(async () => (await poolBalance(venue)) === 9500n, "pool credited");
    // Reconciliation passes after the fact post nothing more.
    await createClient(PaymentInternalService, h.t.ctx.peers("payment")).reconcilePending({ limit: 100 });
    assert.equal(await poolBalance(venue), 9500n);
    // The wallet posts before payment records the credit (and its event) in a transaction of its own.
    await eventually(async () => Boolean((await h.t.db.pool.query("SELECT credit_entry_id FROM payment.tips WHERE tip_id = $1", [tip!.tipId])).rows[0].credit_entry_id), "credit recorded");
    assert.equal(await outboxCount("ttip.payment.tip_succeeded", tip!.tipId), 1);
    assert.equal(await h.trialBalanced(), true);
  });

  test("a lost callback is recovered by STK query into the pool, once", async () => {
    const { venue, code } = await venueWithTable("Carnivore");
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "qrCode", value: code.shortCode }, amount: KES(200), payment: { case: "mpesaPhone", value: phone("0003") } });
    h.clock.advance(h.config.stkDeadlineMs + 100);
    const internal = createClient(PaymentInternalService, h.t.ctx.peers("payment"));
    await Promise.all([internal.reconcilePending({ limit: 100 }), internal.reconcilePending({ limit: 100 })]);
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "recovered");
    await eventually(async () => (await poolBalance(venue)) === 19000n, "pool credited");
    await internal.reconcilePending({ limit: 100 });
    assert.equal(await poolBalance(venue), 19000n);
  });
});
