import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, type Client } from "@connectrpc/connect";
import { createQrModule } from "@ttip/qr";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { PaymentAdminActionTakenSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { PaymentAdminService, PaymentInternalService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { MpesaReversalState, type SuspensePayment } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { AccountKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { asConnectError } from "@ttip/runtime";
import { DarajaClient } from "../src/daraja/client.js";
import { claimSuspenseReversal } from "../src/mpesa-reversals.js";
import { registerC2bUrls } from "../src/testing.js";
import { eventually, startHarness, type Harness } from "./setup.js";

describe("a paybill payment in suspense refunded by support is reversed on M-Pesa, its money out of suspense", () => {
  let h: Harness;
  let admin: Client<typeof PaymentAdminService>;
  let internal: Client<typeof PaymentInternalService>;

  before(async () => {
    // Paybill payments as M-Pesa confirms them, to URLs registered as production does; qr finds no code for them.
    h = await startHarness({}, [createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } })]);
    const pathToken = "suspense-refunds-path-token-0123";
    h.config.c2b = { pathToken, shortCodes: [h.sim.options.shortcode], registerVersion: "v2", responseType: "Completed", registerOnStart: false, validationBudgetMs: 3_000 };
    await registerC2bUrls(h.sim, `${h.config.callbackBaseUrl}/c2b/${pathToken}`);
    admin = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["admin"], stepUp: true });
    internal = h.t.client(PaymentInternalService);
  });
  after(async () => {
    await h.close();
  });

  const reversalsOf = (receipt: string) => h.sim.transactions().filter((t) => t.kind === "reversal" && t.reversal === receipt);
  /** What the suspense account holds of this payment: its own entries, by their cause. */
  const inSuspense = async (receipt: string) => (await h.t.db.pool.query<{ n: bigint }>(
    `SELECT COALESCE(sum(p.amount_minor), 0)::int8 AS n FROM wallet.postings p JOIN wallet.entries e USING (entry_id) JOIN wallet.accounts a USING (account_id)
      WHERE a.kind = $1 AND e.cause_ref = $2`, [AccountKind.SUSPENSE, receipt])).rows[0].n;
  const listed = async (receipt: string): Promise<SuspensePayment> =>
    (await admin.listSuspensePayments({ includeResolved: true, page: { pageSize: 100 } })).payments.find((p) => p.receipt === receipt)!;
  /** Whether support's list (without the resolved) shows the payment. */
  const needsSupport = async (receipt: string) =>
    (await admin.listSuspensePayments({ includeResolved: false, page: { pageSize: 100 } })).payments.some((p) => p.receipt === receipt);
  const reversalNow = (receipt: string, state: MpesaReversalState) =>
    eventually(async () => (await listed(receipt)).mpesaReversal === state, `reversal ${MpesaReversalState[state]}`);
  /** A paybill payment of `amount` shillings naming no code: parked in suspense. */
  const parked = async (amount: number) => {
    const paid = await h.sim.c2b.pay({ billRefNumber: "NOSUCHCODE", amount, msisdn: "254700000000", skipValidation: true });
    await eventually(async () => (await inSuspense(paid.transId)) === BigInt(amount) * 100n, "parked in suspense");
    return paid.transId;
  };
  const refund = (receipt: string, note = "the customer asked for it back") => admin.resolveSuspensePayment({ receipt, action: { case: "refund", value: true }, note });

  test("refunded: the whole payment goes back to its payer once, out of suspense; the same refund again sends nothing", async () => {
    const receipt = await parked(250);
    const first = (await refund(receipt)).payment!;
    assert.equal(first.resolution, "refund");
    assert.notEqual(first.mpesaReversal, MpesaReversalState.NONE, "on its way to M-Pesa");
    await reversalNow(receipt, MpesaReversalState.REVERSED);
    assert.deepEqual(reversalsOf(receipt).map((t) => [t.amount, t.resultCode]), [[250, 0]], "one request, for the whole payment");
    assert.equal(await inSuspense(receipt), 0n, "its KES 250 out of suspense");
    const again = (await refund(receipt)).payment!;
    assert.deepEqual([again.resolution, again.mpesaReversal, reversalsOf(receipt).length, await needsSupport(receipt)], ["refund", MpesaReversalState.REVERSED, 1, false]);
    assert.ok(await h.trialBalanced(), "the ledger balances");
  });

  test("M-Pesa refuses: the money waits in suspense again and the payment says why; a refund again tries again", async () => {
    const receipt = await parked(263);
    h.sim.script({ amount: 263 }, { reversal: "refused" });
    try {
      await refund(receipt);
      await reversalNow(receipt, MpesaReversalState.FAILED);
      const failed = await listed(receipt);
      assert.match(failed.mpesaReversalResult, /^M-Pesa refused: 1 The balance is insufficient/, "M-Pesa's words kept for support");
      assert.equal(await inSuspense(receipt), 26300n, "back in suspense");
      assert.ok(await needsSupport(receipt), "on support's list again, though refunded");
    } finally {
      h.sim.script({ amount: 263 }, {});
    }
    await refund(receipt, "tried again after topping up the utility account");
    await reversalNow(receipt, MpesaReversalState.REVERSED);
    assert.deepEqual([reversalsOf(receipt).filter((t) => t.resultCode === 0).length, await inSuspense(receipt), await needsSupport(receipt)], [1, 0n, false], "reversed once, out of suspense, off the list");
    assert.ok(await h.trialBalanced());
  });

  test("a refund decided whose reversal never started (a crash after its commit): the reconciliation pass takes it out of suspense and sends it, once", async () => {
    const receipt = await parked(271);
    // What the refund's transaction leaves when the process dies right after it.
    const { rows: [row] } = await h.t.db.pool.query("UPDATE payment.c2b_payments SET resolution = 'refund', resolved_by = 'support-1' WHERE trans_id = $1 RETURNING *", [receipt]);
    await claimSuspenseReversal(h.t.db.pool, row, { requestedBy: "support-1", reason: "asked" });
    await h.t.db.pool.query("UPDATE payment.mpesa_reversals SET created_at = now() - interval '1 minute' WHERE suspense_receipt = $1", [receipt]);
    await Promise.all([1, 2].map(() => internal.reconcilePending({ limit: 100 })));
    await reversalNow(receipt, MpesaReversalState.REVERSED);
    assert.deepEqual([reversalsOf(receipt).length, await inSuspense(receipt)], [1, 0n], "sent once by two passes at once");
    assert.ok(await h.trialBalanced());
  });

  test("timed out in M-Pesa's queue: support is alerted, the money stays out of suspense until their word; not reversed puts it back and a refund again sends it", async () => {
    const receipt = await parked(283);
    h.sim.script({ amount: 283 }, { reversal: "queue_timeout" });
    try {
      await refund(receipt);
      await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM payment.fraud_alerts WHERE reason = 'CALLBACK_MISMATCH' AND position($1 in detail) > 0", [receipt])).rowCount === 1, "support alerted");
    } finally {
      h.sim.script({ amount: 283 }, {});
    }
    const { rows: [alert] } = await h.t.db.pool.query("SELECT tip_id, detail FROM payment.fraud_alerts WHERE reason = 'CALLBACK_MISMATCH' AND position($1 in detail) > 0", [receipt]);
    assert.equal(alert.tip_id, null);
    assert.match(alert.detail, new RegExp(`of paybill payment ${receipt}, .* is in doubt: it timed out in M-Pesa's queue`));
    assert.deepEqual([(await listed(receipt)).mpesaReversal, await inSuspense(receipt), await needsSupport(receipt)], [MpesaReversalState.PENDING, 0n, true]);

    const both = asConnectError(await admin.resolveMpesaReversal({ tipId: randomUUID(), suspenseReceipt: receipt, outcome: { case: "notReversed", value: true }, note: "statement" }).catch((e: unknown) => e));
    assert.deepEqual([Code[both.code], /^tip_id: /.test(both.rawMessage)], [Code[Code.InvalidArgument], true], "one payment named, not two");
    const neither = asConnectError(await admin.resolveMpesaReversal({ outcome: { case: "notReversed", value: true }, note: "statement" }).catch((e: unknown) => e));
    assert.deepEqual([Code[neither.code], /^tip_id: name the tip/.test(neither.rawMessage)], [Code[Code.InvalidArgument], true], "nothing named");
    const resolved = await admin.resolveMpesaReversal({ suspenseReceipt: receipt, outcome: { case: "notReversed", value: true }, note: "statement shows it still in" });
    assert.deepEqual([resolved.payment?.mpesaReversal, resolved.tip, await inSuspense(receipt)], [MpesaReversalState.FAILED, undefined, 28300n], "back in suspense");
    const { rows: audited } = await h.t.db.pool.query<{ payload: Uint8Array }>("SELECT payload FROM payment.outbox WHERE subject = 'ttip.payment.admin_action' ORDER BY seq");
    const actions = audited.map((r) => fromBinary(PaymentAdminActionTakenSchema, r.payload).action!).filter((a) => a.target === `receipt:${receipt}`);
    assert.deepEqual(actions.map((a) => AuditAction[a.action]), ["SUSPENSE_REFUNDED", "MPESA_REVERSAL_RESOLVED"], "both decisions audited under the receipt");

    // M-Pesa's result comes after all: reversed. The money, back in suspense, is taken out by a reversal again (M-Pesa
    // answers it "reversed already"), not left for support to move by hand; a refund after that sends nothing.
    const [first] = (await h.t.db.pool.query("SELECT callback_token FROM payment.mpesa_reversals WHERE suspense_receipt = $1", [receipt])).rows;
    const late = { Result: { ResultType: 0, ResultCode: 0, ResultDesc: "The service request is processed successfully.", OriginatorConversationID: randomUUID(), ConversationID: "AG_late", TransactionID: "SLATE67890" } };
    for (let i = 0; i < 2; i++) assert.equal((await h.post(`/daraja/reversal/result/${first.callback_token}`, late)).status, 200);
    await reversalNow(receipt, MpesaReversalState.REVERSED);
    assert.deepEqual([await inSuspense(receipt), reversalsOf(receipt).length], [0n, 2], "out of suspense once, by one more request");
    await refund(receipt, "sent again");
    assert.deepEqual([(await listed(receipt)).mpesaReversal, reversalsOf(receipt).length, await inSuspense(receipt)], [MpesaReversalState.REVERSED, 2, 0n]);
    assert.equal((await h.t.db.pool.query("SELECT 1 FROM payment.fraud_alerts WHERE reason = 'CALLBACK_MISMATCH' AND status = 'open' AND position($1 in detail) > 0", [receipt])).rowCount, 0,
      "nothing left for support: the in-doubt alert closed with the statement's word, no take-back asked");
    assert.ok(await h.trialBalanced());
  });

  test("refunded before refunds were reversed here (M-Pesa reversed it by hand, its money left in suspense): Reverse on M-Pesa sends it, M-Pesa answers reversed already, and the money leaves suspense", async () => {
    const receipt = await parked(290);
    const daraja = h.config.daraja;
    h.config.daraja = undefined;
    try {
      const byHand = (await refund(receipt, "reversed on the portal")).payment!;
      assert.deepEqual([byHand.resolution, byHand.mpesaReversal, await inSuspense(receipt)], ["refund", MpesaReversalState.NONE, 29000n], "as refunds were: closed, the money in suspense");
    } finally {
      h.config.daraja = daraja;
    }
    // Support's reversal on M-Pesa's portal, as M-Pesa records it.
    const nobody = `${h.config.callbackBaseUrl}/daraja/reversal/result/${"y".repeat(32)}`;
    await new DarajaClient(h.config.daraja!).reversal({ transactionId: receipt, amount: 290, resultUrl: nobody, queueTimeoutUrl: nobody, remarks: "by hand" });
    await eventually(async () => reversalsOf(receipt).some((t) => t.resultCode === 0), "reversed by hand");
    await refund(receipt, "clear the suspense account");
    await reversalNow(receipt, MpesaReversalState.REVERSED);
    const { rows: [ours] } = await h.t.db.pool.query("SELECT result_code FROM payment.mpesa_reversals WHERE suspense_receipt = $1", [receipt]);
    assert.deepEqual([ours.result_code, reversalsOf(receipt).length, await inSuspense(receipt)], ["R000001", 2, 0n], "M-Pesa's answer: reversed already; out of suspense");
    assert.ok(await h.trialBalanced());
  });

  test("a payment M-Pesa cannot have moved (below KES 1) is closed by its refund: nothing is sent", async () => {
    const paid = await h.sim.c2b.pay({ billRefNumber: "NOSUCHCODE", amount: 0.5, msisdn: "254700000000", skipValidation: true });
    await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1", [paid.transId])).rowCount === 1, "recorded");
    const closed = (await refund(paid.transId)).payment!;
    assert.deepEqual([closed.resolution, closed.mpesaReversal, reversalsOf(paid.transId).length], ["refund", MpesaReversalState.NONE, 0]);
  });
});
