import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, type Client } from "@connectrpc/connect";
import { TipReversalKind, TipReversedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { MpesaReversalState, TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { AccountKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { asConnectError, httpRequest } from "@ttip/runtime";
import { callbackUrl } from "../src/callback-paths.js";
import { Ledger } from "../src/ledger.js";
import { darajaRefusing, eventually, KES, phone, startHarness, type Harness } from "./setup.js";

describe("M-Pesa tips reversed (RefundTip): the worker's share back first, M-Pesa's result decides", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  let admin: Client<typeof PaymentAdminService>;
  let internal: Client<typeof PaymentInternalService>;

  before(async () => {
    h = await startHarness();
    pay = h.t.client(PaymentService);
    admin = h.t.client(PaymentAdminService, { subject: randomUUID(), roles: ["admin"], stepUp: true });
    internal = h.t.client(PaymentInternalService);
  });
  after(async () => {
    await h.close();
  });

  const msisdn = (p: string) => `254${p.slice(1)}`;
  const reversalsOf = (receipt: string) => h.sim.transactions().filter((t) => t.kind === "reversal" && t.reversal === receipt);
  const tipNow = async (tipId: string) => (await pay.getTip({ tipId })).tip!;
  const reversalNow = (tipId: string, state: MpesaReversalState) =>
    eventually(async () => (await tipNow(tipId)).mpesaReversal === state, `reversal ${MpesaReversalState[state]}`);
  const row = async (tipId: string) => (await h.t.db.pool.query("SELECT * FROM payment.mpesa_reversals WHERE tip_id = $1 ORDER BY created_at", [tipId])).rows;
  /** Kinds and sums (amount, fee, net) of what payment's outbox announced reversed of `tipId`. */
  const announced = async (tipId: string) => {
    const { rows } = await h.t.db.pool.query<{ payload: Uint8Array }>(
      "SELECT payload FROM payment.outbox WHERE subject = 'ttip.payment.tip_reversed' AND position($1 in encode(payload, 'escape')) > 0 ORDER BY seq", [tipId]);
    const events = rows.map((r) => fromBinary(TipReversedSchema, r.payload));
    const sum = (of: (e: (typeof events)[number]) => bigint | undefined) => events.reduce((n, e) => n + (of(e) ?? 0n), 0n);
    return { kinds: events.map((e) => e.kind), reversed: [sum((e) => e.amount?.amountMinor), sum((e) => e.fee?.amountMinor), sum((e) => e.net?.amountMinor)] };
  };

  /** A KES 100 M-Pesa tip credited to a new worker (KES 95 after the fee), from `payer`. */
  async function paidTip(payer = phone()): Promise<{ worker: string; tip: Tip }> {
    const worker = randomUUID();
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: payer } });
    // Its credit recorded on the tip too (before that, a reversal is ABORTED: "still being posted").
    await eventually(async () => (await tipNow(tip!.tipId)).status === TipStatus.SUCCEEDED && (await h.balance(worker)) === 9500n &&
      (await h.t.db.pool.query("SELECT 1 FROM payment.tips WHERE tip_id = $1 AND credit_entry_id IS NOT NULL", [tip!.tipId])).rowCount === 1, "tip credited");
    return { worker, tip: await tipNow(tip!.tipId) };
  }
  const reverse = (tipId: string, idempotencyKey = `reversal-${randomUUID()}`) => admin.refundTip({ tipId, idempotencyKey, reason: "tipped the wrong person" });

  test("a tip is reversed whole: the share leaves the wallet before M-Pesa is asked, once, whatever is retried; the payer gets it all back", async () => {
    const { worker, tip } = await paidTip();
    const key = `reversal-${randomUUID()}`;
    const first = await reverse(tip.tipId, key);
    assert.equal(first.tip!.mpesaReversal, MpesaReversalState.PENDING);
    assert.equal(await h.balance(worker), 0n, "the worker's KES 95 taken back at once");
    await reversalNow(tip.tipId, MpesaReversalState.REVERSED);
    const reversed = await tipNow(tip.tipId);
    assert.deepEqual([reversed.status, reversed.refunded?.amountMinor], [TipStatus.SUCCEEDED, 10000n], "the tip stays paid, its KES 100 given back");
    const sent = reversalsOf(tip.mpesaReceipt);
    assert.deepEqual(sent.map((t) => [t.amount, t.resultCode]), [[100, 0]], "one request to M-Pesa, for the whole payment");
    assert.equal((await row(tip.tipId))[0].reversal_receipt, sent[0].receipt, "M-Pesa's own id of the reversal kept");
    assert.deepEqual(await announced(tip.tipId), { kinds: [TipReversalKind.REFUND], reversed: [10000n, 500n, 9500n] });
    const { callbacks, reversalEntryKeys } = await admin.getPaymentDetail({ subject: { case: "tipId", value: tip.tipId } });
    assert.deepEqual(callbacks.map((c) => c.source).sort(), ["mpesa_reversal", "mpesa_stk"], "the reversal's result is on the tip's detail beside its payment's");
    const id = first.refundId;
    assert.deepEqual(reversalEntryKeys, [`mpesa-reversal:${id}`, `mpesa-reversal-undo:${id}`], "where the ledger holds what took the share back (and would give it back)");

    const again = await reverse(tip.tipId, key);
    assert.equal(again.refundId, first.refundId, "the same reversal under the same key");
    const other = await reverse(tip.tipId).catch(asConnectError);
    assert.equal(Code[(other as { code: Code }).code], Code[Code.FailedPrecondition]);
    assert.match((other as Error).message, /reversed already/);
    assert.deepEqual([reversalsOf(tip.mpesaReceipt).length, await h.balance(worker), (await announced(tip.tipId)).kinds.length], [1, 0n, 1], "nothing more sent, taken or announced");
    assert.ok(await h.trialBalanced(), "the ledger balances");
  });

  test("a held tip declined after review is given back from suspense, where its money waits: the worker never had it, nothing is announced", async () => {
    const worker = randomUUID();
    const { tip: held } = await h.t.client(PaymentService, { subject: worker, roles: ["worker"] }).createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: worker }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() },
    });
    // Held, and its money's entry into suspense posted (reviewed before that, it is "still being recorded").
    await eventually(async () => (await tipNow(held!.tipId)).status === TipStatus.HELD_FOR_REVIEW &&
      (await h.t.db.pool.query("SELECT 1 FROM payment.tips WHERE tip_id = $1 AND credit_entry_id IS NOT NULL", [held!.tipId])).rowCount === 1, "held: a worker tipping themself");
    const before = await reverse(held!.tipId).catch(asConnectError);
    assert.equal(Code[(before as { code: Code }).code], Code[Code.FailedPrecondition], "held: decided by review first");
    const declined = (await admin.reviewTip({ tipId: held!.tipId, approve: false, note: "tipped themself" })).tip!;
    assert.equal(declined.status, TipStatus.FAILED);
    await reverse(held!.tipId);
    await reversalNow(held!.tipId, MpesaReversalState.REVERSED);
    const tip = await tipNow(held!.tipId);
    assert.deepEqual([tip.status, tip.refunded?.amountMinor, reversalsOf(tip.mpesaReceipt).map((t) => t.amount)], [TipStatus.FAILED, 10000n, [100]]);
    assert.deepEqual([await h.balance(worker), (await row(tip.tipId))[0].wallet_minor], [0n, 0n], "nothing taken from the worker");
    assert.deepEqual((await announced(tip.tipId)).kinds, [], "its success was never announced, so no reversal is");
    assert.ok(await h.trialBalanced());
  });

  test("a part of the payment, or another currency, is INVALID_ARGUMENT naming amount; nothing is taken or sent", async () => {
    const { worker, tip } = await paidTip();
    for (const amount of [KES(50), { currency: "USD", amountMinor: 10000n }]) {
      const err = asConnectError(await admin.refundTip({ tipId: tip.tipId, idempotencyKey: `reversal-${randomUUID()}`, amount, reason: "asked" }).catch((e: unknown) => e));
      assert.equal(Code[err.code], Code[Code.InvalidArgument]);
      assert.match(err.rawMessage, /^amount: /);
    }
    assert.deepEqual([await h.balance(worker), reversalsOf(tip.mpesaReceipt).length, (await row(tip.tipId)).length], [9500n, 0, 0]);
  });

  test("a share already withdrawn: FAILED_PRECONDITION saying so, and M-Pesa is never asked", async () => {
    const { worker, tip } = await paidTip();
    // KES 90 leaves the wallet as a payout would (the simulator's B2C is not what this is about).
    const ledger = new Ledger(h.t.ctx);
    await ledger.postEntry({
      idempotencyKey: `withdrawn-${worker}`, cause: { cause: { case: "adjustmentTicket", value: `withdrawn-${worker}` } }, description: "withdrawn",
      postings: [
        { accountId: await ledger.account(AccountKind.WORKER_WALLET, worker), amount: KES(-90), memo: "withdrawn" },
        { accountId: await ledger.account(AccountKind.PAYOUT_CLEARING), amount: KES(90), memo: "withdrawn" },
      ],
    });
    const err = asConnectError(await reverse(tip.tipId).catch((e: unknown) => e));
    assert.equal(Code[err.code], Code[Code.FailedPrecondition]);
    assert.match(err.rawMessage, /worker's balance no longer covers this reversal/);
    assert.deepEqual([await h.balance(worker), reversalsOf(tip.mpesaReceipt).length, (await tipNow(tip.tipId)).mpesaReversal], [500n, 0, MpesaReversalState.NONE]);
    assert.deepEqual((await announced(tip.tipId)).kinds, [], "nothing announced");
  });

  test("M-Pesa refuses: the share goes back to the worker and the tip says so; a refusal repeated gives nothing more", async () => {
    const payer = phone();
    h.sim.script({ phone: msisdn(payer) }, { reversal: "refused" });
    const { worker, tip } = await paidTip(payer);
    await reverse(tip.tipId);
    await reversalNow(tip.tipId, MpesaReversalState.FAILED);
    assert.equal(await h.balance(worker), 9500n, "the KES 95 back");
    assert.equal((await tipNow(tip.tipId)).refunded, undefined, "nothing refunded");
    assert.deepEqual(await announced(tip.tipId), { kinds: [TipReversalKind.REFUND, TipReversalKind.REFUND_REFUSED], reversed: [0n, 0n, 0n] });
    const [r] = await row(tip.tipId);
    const refusal = { Result: { ResultType: 0, ResultCode: 1, ResultDesc: "The balance is insufficient for the transaction.", OriginatorConversationID: randomUUID(), ConversationID: r.conversation_id, TransactionID: "SXXXXXXXXX" } };
    assert.equal((await h.post(new URL(callbackUrl(h.config.callbackBaseUrl!, "reversal/result", r.callback_token)).pathname, refusal)).status, 200);
    assert.deepEqual([await h.balance(worker), (await announced(tip.tipId)).kinds.length], [9500n, 2], "given back once");
    assert.ok(await h.trialBalanced());
  });

  test("a refusal arriving after M-Pesa reversed the payment gives nothing back; a result for no reversal is stored as unknown", async () => {
    const { worker, tip } = await paidTip();
    await reverse(tip.tipId);
    await reversalNow(tip.tipId, MpesaReversalState.REVERSED);
    const [r] = await row(tip.tipId);
    const late = { Result: { ResultType: 0, ResultCode: "R000002", ResultDesc: "The OriginalTransactionID is invalid.", OriginatorConversationID: randomUUID(), ConversationID: r.conversation_id, TransactionID: "" } };
    await h.post(new URL(callbackUrl(h.config.callbackBaseUrl!, "reversal/result", r.callback_token)).pathname, late);
    assert.deepEqual([await h.balance(worker), (await tipNow(tip.tipId)).mpesaReversal], [0n, MpesaReversalState.REVERSED]);
    await h.post(new URL(callbackUrl(h.config.callbackBaseUrl!, "reversal/result", "x".repeat(32))).pathname, late);
    const { rows } = await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE source = 'mpesa_reversal' ORDER BY received_at DESC LIMIT 1");
    assert.equal(rows[0].outcome, "unknown");
  });

  test("Daraja refuses the request (400): the share goes back at once and the admin hears M-Pesa's words", async () => {
    const { worker, tip } = await paidTip();
    const daraja = h.config.daraja!;
    h.config.daraja = darajaRefusing(daraja, "/reversal/", "400.002.02", "Bad Request - Invalid TransactionID");
    try {
      const err = asConnectError(await reverse(tip.tipId).catch((e: unknown) => e));
      assert.equal(Code[err.code], Code[Code.FailedPrecondition]);
      assert.match(err.rawMessage, /M-Pesa refused the reversal \(.*Invalid TransactionID.*\); the worker's share was given back/);
    } finally {
      h.config.daraja = daraja;
    }
    assert.deepEqual([await h.balance(worker), (await tipNow(tip.tipId)).mpesaReversal, reversalsOf(tip.mpesaReceipt).length], [9500n, MpesaReversalState.FAILED, 0]);
    assert.ok(await h.trialBalanced());
  });

  test("M-Pesa not reached (it asks for fewer requests): nothing sent, UNAVAILABLE to retry; the reconciliation pass sends it later, once", async () => {
    const { worker, tip } = await paidTip();
    const daraja = h.config.daraja!;
    const slowDown = JSON.stringify({ requestId: "1234-5678", errorCode: "500.003.02", errorMessage: "Spike arrest violation" });
    h.config.daraja = { ...daraja, request: async (url, call) => url.pathname.includes("/reversal/")
      ? { status: 500, ok: false, statusText: "Internal Server Error", headers: { get: (n: string) => (n.toLowerCase() === "content-type" ? "application/json" : null) }, text: async () => slowDown }
      : httpRequest(url, call) };
    try {
      const err = asConnectError(await reverse(tip.tipId).catch((e: unknown) => e));
      assert.equal(Code[err.code], Code[Code.Unavailable]);
      assert.match(err.rawMessage, /nothing was sent: retry with the same idempotency key/);
    } finally {
      h.config.daraja = daraja;
    }
    assert.deepEqual([await h.balance(worker), (await row(tip.tipId))[0].status, reversalsOf(tip.mpesaReceipt).length], [0n, "debited", 0], "the share taken, nothing sent");
    // Past the time an admin's own retry has to send it first.
    await h.t.db.pool.query("UPDATE payment.mpesa_reversals SET created_at = now() - interval '1 minute' WHERE tip_id = $1", [tip.tipId]);
    await Promise.all([1, 2].map(() => internal.reconcilePending({ limit: 100 })));
    await reversalNow(tip.tipId, MpesaReversalState.REVERSED);
    assert.equal(reversalsOf(tip.mpesaReceipt).length, 1, "sent once by two passes at once");
    const { rows: [timed] } = await h.t.db.pool.query("SELECT sent_at > created_at + interval '50 seconds' AS late FROM payment.mpesa_reversals WHERE tip_id = $1", [tip.tipId]);
    assert.equal(timed.late, true, "its wait for a result counts from the send, not from the reversal's making");
    // An hour on with no result would tell support; this one has its result, so nothing is told.
    await h.t.db.pool.query("UPDATE payment.mpesa_reversals SET created_at = now() - interval '2 hours' WHERE tip_id = $1", [tip.tipId]);
    await internal.reconcilePending({ limit: 100 });
    assert.equal((await h.t.db.pool.query("SELECT 1 FROM payment.fraud_alerts WHERE tip_id = $1", [tip.tipId])).rowCount, 0);
  });

  test("timed out in M-Pesa's queue: in doubt, so the share stays taken back, nothing is sent again, and support is alerted", async () => {
    const payer = phone();
    h.sim.script({ phone: msisdn(payer) }, { reversal: "queue_timeout" });
    const { worker, tip } = await paidTip(payer);
    await reverse(tip.tipId);
    const alert = await eventually(async () => (await h.t.db.pool.query("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1", [tip.tipId])).rows[0], "support alerted");
    assert.match(alert.detail, /in doubt: it timed out in M-Pesa's queue/);
    assert.deepEqual([await h.balance(worker), (await tipNow(tip.tipId)).mpesaReversal, reversalsOf(tip.mpesaReceipt).length], [0n, MpesaReversalState.PENDING, 1]);
    // A pass an hour on neither sends it again nor tells support a second time.
    await h.t.db.pool.query("UPDATE payment.mpesa_reversals SET created_at = now() - interval '2 hours' WHERE tip_id = $1", [tip.tipId]);
    await internal.reconcilePending({ limit: 100 });
    assert.deepEqual([reversalsOf(tip.mpesaReceipt).length, (await h.t.db.pool.query("SELECT 1 FROM payment.fraud_alerts WHERE tip_id = $1", [tip.tipId])).rowCount], [1, 1]);
    // The tip's worker, staff too, does not decide it: "not reversed" would give their own share back.
    const own = asConnectError(await h.t.client(PaymentAdminService, { subject: worker, roles: ["worker", "finance"], stepUp: true })
      .resolveMpesaReversal({ tipId: tip.tipId, outcome: { case: "notReversed", value: true }, note: "mine, still in" }).catch((e: unknown) => e));
    assert.deepEqual([own.code, own.rawMessage, await h.balance(worker)], [Code.PermissionDenied, "tip_id: this is your own account's; another admin must decide it", 0n]);
    // Support reads M-Pesa's statement: nothing went back. The share returns, and the tip may be reversed again.
    const resolved = await admin.resolveMpesaReversal({ tipId: tip.tipId, outcome: { case: "notReversed", value: true }, note: "statement shows the payment still in" });
    assert.deepEqual([resolved.tip!.mpesaReversal, await h.balance(worker)], [MpesaReversalState.FAILED, 9500n]);
    const { rows: [inDoubt] } = await h.t.db.pool.query<{ status: string; detail: string }>("SELECT status, detail FROM payment.fraud_alerts WHERE tip_id = $1", [tip.tipId]);
    assert.equal(inDoubt.status, "closed", "the in-doubt alert ends with the reversal: nothing left for the Fraud queue");
    assert.match(inDoubt.detail, / \| closed: not reversed, by M-Pesa's statement: statement shows the payment still in$/);
    const again = await admin.resolveMpesaReversal({ tipId: tip.tipId, outcome: { case: "notReversed", value: true }, note: "statement shows the payment still in" });
    assert.deepEqual([again.tip!.mpesaReversal, await h.balance(worker)], [MpesaReversalState.FAILED, 9500n], "the same word again changes nothing");
    const other = asConnectError(await admin.resolveMpesaReversal({ tipId: tip.tipId, outcome: { case: "reversalReceipt", value: "SAB1234567" }, note: "x".repeat(5) }).catch((e: unknown) => e));
    assert.equal(Code[other.code], Code[Code.FailedPrecondition]);
    assert.deepEqual((await announced(tip.tipId)).kinds, [TipReversalKind.REFUND, TipReversalKind.REFUND_REFUSED]);
    assert.ok(await h.trialBalanced());

    // M-Pesa's word comes after all: reversed. The share already went back, so support is told (beside the in-doubt
    // alert sent before) to take it back by hand, once however often M-Pesa repeats it; nothing moves by itself.
    const [r] = await row(tip.tipId);
    const late = { Result: { ResultType: 0, ResultCode: 0, ResultDesc: "The service request is processed successfully.", OriginatorConversationID: randomUUID(), ConversationID: "AG_late", TransactionID: "SLATE12345" } };
    for (let i = 0; i < 2; i++) await h.post(new URL(callbackUrl(h.config.callbackBaseUrl!, "reversal/result", r.callback_token)).pathname, late);
    const { rows: alerts } = await h.t.db.pool.query<{ detail: string; status: string }>("SELECT detail, status FROM payment.fraud_alerts WHERE tip_id = $1 ORDER BY created_at", [tip.tipId]);
    assert.equal(alerts.length, 2, alerts.map((a) => a.detail).join(" | "));
    assert.equal(alerts[1].status, "open", "this one asks for money back: open");
    assert.match(alerts[1].detail, /reported it reversed after it was marked failed .*; take KES 95(\.00)? back by hand$/);
    assert.deepEqual([(await row(tip.tipId))[0].reversal_receipt, (await row(tip.tipId))[0].status, await h.balance(worker)], ["SLATE12345", "failed", 9500n]);
    // Another admin, seeing the reversal failed, refunds it again: refused, so the share is not taken twice.
    const twice = asConnectError(await reverse(tip.tipId).catch((e: unknown) => e));
    assert.equal(Code[twice.code], Code[Code.FailedPrecondition]);
    assert.match(twice.rawMessage, /reported this payment reversed \(receipt SLATE12345\) after its reversal was marked failed/);
    assert.deepEqual([await h.balance(worker), reversalsOf(tip.mpesaReceipt).length], [9500n, 1], "nothing taken, nothing sent");
  });

  test("a refund left unfinished (its wallet step never answered, never retried) is told to support once; the next reversal of the tip, under any key, finishes it", async () => {
    const { worker, tip } = await paidTip();
    // As a RefundTip leaves it when the wallet's answer is lost and the admin goes away: decided, nothing sent.
    const key = `reversal-${randomUUID()}`;
    await h.t.db.pool.query(
      `INSERT INTO payment.mpesa_reversals (reversal_id, tip_id, idempotency_key, receipt, amount_minor, wallet_minor, status, reason, requested_by, callback_token, created_at)
       VALUES ($1, $2, $3, $4, 10000, 9500, 'new', 'tipped the wrong person', 'admin-1', $5, now() - interval '2 hours')`,
      [randomUUID(), tip.tipId, key, tip.mpesaReceipt, randomUUID().replace(/-/g, "")]);
    await internal.reconcilePending({ limit: 100 });
    await internal.reconcilePending({ limit: 100 });
    const { rows } = await h.t.db.pool.query<{ detail: string }>("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1", [tip.tipId]);
    assert.equal(rows.length, 1, "told once");
    assert.match(rows[0].detail, /never finished: the wallet did not answer, nothing went to M-Pesa\. Reverse the tip again \(RefundTip, under any key\) to finish it$/);
    assert.deepEqual([await h.balance(worker), reversalsOf(tip.mpesaReceipt).length], [9500n, 0], "nothing moved by the pass");
    // Asked again from the console, under a key of its own (the first lived in a screen closed since): that reversal
    // finishes, once. Before, a new key was refused while it was live, and nothing could finish it.
    await reverse(tip.tipId);
    await reversalNow(tip.tipId, MpesaReversalState.REVERSED);
    assert.equal(await h.balance(worker), 0n);
    assert.equal(reversalsOf(tip.mpesaReceipt).length, 1, "one reversal sent");
    assert.deepEqual((await row(tip.tipId)).map((r) => r.idempotency_key), [key], "the first key's");
  });

  test("a reversal sent with no result for an hour is told to support once, who may say M-Pesa reversed it", async () => {
    const { worker, tip } = await paidTip();
    const held = h.sim.hold("reversal");
    try {
      await reverse(tip.tipId);
      // Made two hours ago (sent late: M-Pesa was unreachable), sent a minute ago: not silent yet.
      await h.t.db.pool.query("UPDATE payment.mpesa_reversals SET created_at = now() - interval '2 hours', sent_at = now() - interval '1 minute' WHERE tip_id = $1", [tip.tipId]);
      await internal.reconcilePending({ limit: 100 });
      assert.equal((await h.t.db.pool.query("SELECT 1 FROM payment.fraud_alerts WHERE tip_id = $1", [tip.tipId])).rowCount, 0, "a minute after its send, nothing to tell");
      await h.t.db.pool.query("UPDATE payment.mpesa_reversals SET sent_at = now() - interval '61 minutes' WHERE tip_id = $1", [tip.tipId]);
      await internal.reconcilePending({ limit: 100 });
      await internal.reconcilePending({ limit: 100 });
      const { rows } = await h.t.db.pool.query("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1", [tip.tipId]);
      assert.equal(rows.length, 1);
      assert.match(rows[0].detail, /in doubt: M-Pesa has sent no result for 60 minutes/);
      // Support reads the reversal on M-Pesa's statement; its result, when it comes at last, changes nothing more.
      const { tip: resolved } = await admin.resolveMpesaReversal({ tipId: tip.tipId, outcome: { case: "reversalReceipt", value: "SREV123456" }, note: "on the statement" });
      assert.deepEqual([resolved!.mpesaReversal, resolved!.refunded?.amountMinor, (await row(tip.tipId))[0].reversal_receipt], [MpesaReversalState.REVERSED, 10000n, "SREV123456"]);
    } finally {
      await held.release();
    }
    await h.sim.idle();
    assert.deepEqual([(await tipNow(tip.tipId)).mpesaReversal, (await row(tip.tipId))[0].reversal_receipt, await h.balance(worker)], [MpesaReversalState.REVERSED, "SREV123456", 0n]);
  });

  test("support's \"reversed\" for a reversal decided \"not reversed\" by another admin a moment before: refused, and support told to take the share back, not answered OK", async () => {
    const { worker, tip } = await paidTip();
    const held = h.sim.hold("reversal");
    const lockWaits = async () => (await h.t.db.pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0].n as number;
    const blocking = await h.t.db.pool.connect();
    try {
      await reverse(tip.tipId);
      await h.t.db.pool.query("UPDATE payment.mpesa_reversals SET created_at = now() - interval '2 hours', sent_at = now() - interval '61 minutes' WHERE tip_id = $1", [tip.tipId]);
      await internal.reconcilePending({ limit: 100 });
      // Both admins read the reversal in doubt; the "not reversed" takes its row first, then the "reversed".
      await blocking.query("BEGIN");
      await blocking.query("SELECT 1 FROM payment.mpesa_reversals WHERE tip_id = $1 FOR UPDATE", [tip.tipId]);
      const notReversed = admin.resolveMpesaReversal({ tipId: tip.tipId, outcome: { case: "notReversed", value: true }, note: "statement shows the payment still in" });
      await eventually(async () => (await lockWaits()) >= 1, "the first admin's decision waits");
      const reversed = admin.resolveMpesaReversal({ tipId: tip.tipId, outcome: { case: "reversalReceipt", value: "SREV777777" }, note: "on the statement" }).catch(asConnectError);
      await eventually(async () => (await lockWaits()) >= 2, "the second admin's decision waits");
      await blocking.query("COMMIT");
      assert.equal((await notReversed).tip!.mpesaReversal, MpesaReversalState.FAILED);
      // Before, answered OK with nothing done: the customer had the money back and the worker the share as well.
      const err = await reversed;
      assert.ok(err instanceof Error, "the second decision is not answered OK");
      assert.equal(Code[asConnectError(err).code], Code[Code.FailedPrecondition]);
      assert.match(asConnectError(err).rawMessage, /not reversed meanwhile/);
      const { rows: alerts } = await h.t.db.pool.query<{ detail: string; status: string }>("SELECT detail, status FROM payment.fraud_alerts WHERE tip_id = $1 AND status = 'open'", [tip.tipId]);
      assert.equal(alerts.length, 1, alerts.map((a) => a.detail).join(" | "));
      assert.match(alerts[0].detail, /take KES 95(\.00)? back by hand$/);
      assert.deepEqual([(await row(tip.tipId))[0].reversal_receipt, await h.balance(worker)], ["SREV777777", 9500n]);
    } finally {
      blocking.release();
      await held.release();
    }
  });

  test("a reversal still within M-Pesa's hour is not resolved by hand: FAILED_PRECONDITION, nothing changes", async () => {
    const { worker, tip } = await paidTip();
    const held = h.sim.hold("reversal");
    try {
      await reverse(tip.tipId);
      const err = asConnectError(await admin.resolveMpesaReversal({ tipId: tip.tipId, outcome: { case: "notReversed", value: true }, note: "impatient" }).catch((e: unknown) => e));
      assert.equal(Code[err.code], Code[Code.FailedPrecondition]);
      assert.match(err.rawMessage, /^tip_id: its reversal waits for M-Pesa's result/);
      assert.deepEqual([await h.balance(worker), (await tipNow(tip.tipId)).mpesaReversal], [0n, MpesaReversalState.PENDING]);
    } finally {
      await held.release();
    }
  });
});
