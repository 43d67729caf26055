// Item 9: an automatic payout pays out up to the withdrawal limits and tells
// the worker what is left for later, instead of failing on the whole balance.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { PayoutStatus, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { UserTier } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { callerHeaders, stepUpHeaders } from "@ttip/runtime";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";

let h: Harness;
before(async () => {
  h = await startHarness();
  // This harness only: a basic worker may withdraw KES 50 at a time.
  const admin = createClient(WalletAdminService, h.t.ctx.peers("wallet"));
  await admin.setTierLimits({ tier: UserTier.BASIC, perTransaction: KES(50), daily: KES(1_000), monthly: KES(10_000) }, { headers: { ...callerHeaders("admin-1", "admin"), ...stepUpHeaders() } });
});
after(() => h?.close());

test("item 9: a balance above the per-withdrawal limit is paid out up to the limit, and the worker is told what is left", async () => {
  const pay = h.t.client(PaymentService);
  const worker = randomUUID();
  const me = h.t.client(PaymentService, { subject: worker, roles: ["worker"] });
  const payoutPhone = phone();
  await me.updatePayoutSettings({ autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone });
  const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
  await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "tip succeeded");
  const payout = await eventually(async () => {
    const { payouts } = await me.listPayouts({});
    return payouts[0]?.status === PayoutStatus.SUCCEEDED && payouts[0];
  }, "a payout succeeded", 10_000);
  assert.equal(payout.amount!.amountMinor, 5_000n, "KES 50, the per-withdrawal limit, not the KES 95 balance");
  assert.match(payout.note, /KES 45 left/);
  assert.equal(await h.balance(worker), 4_500n);
});
