import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createQrModule } from "@ttip/qr";
import { callerHeaders } from "@ttip/runtime";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { AccountKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { claimApproval, payApproval, settleOlderApproval } from "../src/approvals.js";
import { DarajaClient } from "../src/daraja/client.js";
import { Ledger } from "../src/ledger.js";
import { claimRejection } from "../src/rejections.js";
import { REVIEW_CLAIM_GRACE_MS } from "../src/review-resumer.js";
import { approvedSplit, type Deps } from "../src/tips.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";

const admin = { subject: randomUUID(), roles: ["admin" as const], stepUp: true };

/**
 * A held M-Pesa tip's approval moves its money in the wallet between two short transactions of
 * payment's: no row lock and no connection of payment's is held while the wallet is called.
 */
describe("held tips' approvals, against the Daraja simulator, the real qr service and wallet", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  let internal: Client<typeof PaymentInternalService>;
  let adminClient: Client<typeof PaymentAdminService>;
  let qr: Client<typeof QrService>;

  before(async () => {
    h = await startHarness({}, [createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } })]);
    h.config.c2b = { pathToken: "c2b-test-path-token-0123456789", shortCodes: [h.sim.options.shortcode], registerVersion: "v2", responseType: "Completed", registerOnStart: false, validationBudgetMs: 3_000 };
    pay = h.t.client(PaymentService);
    internal = h.t.client(PaymentInternalService);
    adminClient = h.t.client(PaymentAdminService, admin);
    qr = createClient(QrService, h.t.ctx.peers("qr"));
    const base = `${h.config.callbackBaseUrl}/c2b/c2b-test-path-token-0123456789`;
    await new DarajaClient(h.config.daraja!).registerC2bUrls({ version: "v2", shortCode: h.sim.options.shortcode, responseType: "Completed", confirmationUrl: `${base}/confirmation`, validationUrl: `${base}/validation` });
  });
  after(async () => {
    await h.close();
  });

  const worker = async () => {
    const id = randomUUID();
    const as = { headers: callerHeaders(id, "worker") };
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: id, displayName: "Achieng" }, as);
    const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: id, idempotencyKey: randomUUID() }, as);
    return { id, code: qrCode! };
  };
  const c2bRow = async (transId: string) => (await h.t.db.pool.query("SELECT * FROM payment.c2b_payments WHERE trans_id = $1", [transId])).rows[0];
  const tipRow = async (tipId: string) => (await h.t.db.pool.query("SELECT * FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0];
  const succeededEvents = async (tipId: string) =>
    (await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.outbox WHERE subject = 'ttip.payment.tip_succeeded' AND position($1 in encode(payload, 'escape')) > 0", [tipId])).rows[0].n;
  /** The statuses of the alerts telling support to recover a payment an approval paid twice (after its record). */
  const recoverFlags = async (tipId: string) =>
    (await h.t.db.pool.query("SELECT status FROM payment.fraud_alerts WHERE tip_id = $1 AND detail LIKE 'approved as posted%'", [tipId])).rows.map((r) => r.status as string);
  const paidTwiceFlags = async (tipId: string) =>
    (await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.fraud_alerts WHERE tip_id = $1 AND detail LIKE '%the payment was paid twice%'", [tipId])).rows[0].n;

  /** A push whose callback is lost (M-Pesa charged; the receipt known only to the simulator). */
  const lostCallbackPush = async (w: { id: string }) => {
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: phone("0003") } });
    const sim = await eventually(async () => h.sim.transactions().find((t) => t.checkoutRequestId && t.accountReference === tip!.paybillAccountReference), "the push");
    return { tipId: tip!.tipId, receipt: sim.receipt!, payer: sim.phone, sim };
  };
  /** The push's STK callback, late: success with `receipt`, 100 KES from `payer`. */
  const lateSuccess = (row: { merchant_request_id: string; checkout_request_id: string }, receipt: string, payer: string) => ({ Body: { stkCallback: {
    MerchantRequestID: row.merchant_request_id, CheckoutRequestID: row.checkout_request_id, ResultCode: 0, ResultDesc: "ok",
    CallbackMetadata: { Item: [{ Name: "Amount", Value: 100 }, { Name: "MpesaReceiptNumber", Value: receipt }, { Name: "TransactionDate", Value: 20260101120000 }, { Name: "PhoneNumber", Value: Number(payer) }] } } } });
  /**
   * A tip held from clearing for an STK query's success (no receipt) because the only parked payment of its number
   * and amount was refunded by support: its late callback may name that very payment (`refunded`).
   */
  const heldBesideRefund = async (w: { id: string }) => {
    const push = await lostCallbackPush(w);
    const other = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(other.transId)).suspense_entry_id !== null, "parked in suspense");
    await adminClient.resolveSuspensePayment({ receipt: other.transId, action: { case: "refund", value: true }, note: "the customer called" });
    h.clock.advance(h.config.stkDeadlineMs + 20);
    await internal.reconcilePending({ limit: 100 });
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    return { ...push, refunded: other.transId };
  };
  /** A tip held for review, funded by its own payment, which C2B parked in suspense before its STK callback came. */
  const heldFromParked = async (w: { id: string }) => {
    const push = await lostCallbackPush(w);
    await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, transId: push.receipt, skipValidation: true });
    await eventually(async () => (await c2bRow(push.receipt)).suspense_entry_id !== null, "parked in suspense");
    const row = await tipRow(push.tipId);
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, push.receipt, push.sim.phone))).status, 200);
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    return push;
  };

  /**
   * The wallet stalled on the approvals' entries: a transaction of the test's own, left open, holds an
   * uncommitted entry under each approval's key, so wallet's post of that key waits for it (and posts
   * once it rolls back). Nothing else of the wallet's waits.
   */
  const stallApprovals = async (tipIds: string[]) => stallKeys(await Promise.all(tipIds.map(async (id) => `${(await tipRow(id)).credit_key}:approved`)));
  /** The wallet stalled on the entries of `keys` (stallApprovals). */
  const stallKeys = async (keys: string[]) => {
    const holder = await h.t.db.pool.connect();
    await holder.query("BEGIN");
    for (const key of keys) {
      await holder.query("INSERT INTO wallet.entries (entry_id, idempotency_key, request_hash, cause_kind, cause_ref) VALUES ($1, $2, 'stall', 'stall', 'stall')", [randomUUID(), key]);
    }
    const pid = (await holder.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
    let released = false;
    const blocked = async () => (await h.t.db.pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", [pid])).rows[0].n as number;
    return {
      /** How many of wallet's posts wait for the test's transaction. */
      blocked,
      /** Until `n` of wallet's posts wait for the test's transaction. */
      waiting: (n: number) => eventually(async () => (await blocked()) >= n, `${n} of wallet's posts waiting`),
      /** Backends waiting for a lock that is not the test's transaction's. */
      otherLockWaits: async () => (await h.t.db.pool.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND NOT ($1 = ANY(pg_blocking_pids(pid)))", [pid])).rows[0].n as number,
      /**
       * Transactions open and idle (waiting for their client) while holding one of the tips `tipIds`: the row's
       * xmax is the id of the transaction that locked or updated it, held (ExclusiveLock) by that transaction while
       * open. Only these tips' own: a lock on payment.tips alone is no sign, as every test database on the server
       * is a copy of one template (the same OID for payment.tips), and another file's transaction would count.
       */
      openOn: async (tipIds: string[]) => (await h.t.db.pool.query(
        `SELECT count(DISTINCT a.pid)::int AS n FROM payment.tips t
           JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = t.xmax AND l.mode = 'ExclusiveLock' AND l.granted
           JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE t.tip_id = ANY($2::uuid[]) AND a.state LIKE 'idle in transaction%' AND a.pid <> $1`, [pid, tipIds])).rows[0].n as number,
      release: async () => {
        if (released) return;
        released = true;
        await holder.query("ROLLBACK");
        holder.release();
      },
    };
  };
  /** A promise's answer (or error) once settled; undefined while it is not. */
  const settledValue = <T>(p: Promise<T>) => {
    let value: { v: T | unknown } | undefined;
    p.then((v) => { value = { v }; }, (e: unknown) => { value = { v: e }; });
    return () => value;
  };
  /** Payment's steps called directly, as a replica stopped after one of them would leave the tip. */
  const directDeps = () => ({ ctx: h.t.ctx, ledger: new Ledger(h.t.ctx), background: new Set(), config: () => h.config }) as unknown as Deps;
  const reviewer = { admin: admin.subject, note: "stopped after its claim", record: async () => undefined };
  /**
   * The commit of the transaction that ends `tipId` as `status` fails (a deferred trigger refuses it), as when the
   * connection is lost or the process stops at that moment: the wallet calls before it posted, nothing after it did.
   */
  const failCommitOf = async (tipId: string, status: "failed" | "succeeded") => {
    const name = `fail_commit_${randomUUID().replaceAll("-", "")}`;
    await h.t.db.pool.query(`CREATE FUNCTION payment.${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the commit failed'; END $$`);
    await h.t.db.pool.query(`CREATE CONSTRAINT TRIGGER ${name} AFTER UPDATE ON payment.tips DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
      WHEN (NEW.tip_id = '${tipId}' AND NEW.status = '${status}') EXECUTE FUNCTION payment.${name}()`);
    return async () => {
      await h.t.db.pool.query(`DROP TRIGGER ${name} ON payment.tips`);
      await h.t.db.pool.query(`DROP FUNCTION payment.${name}()`);
    };
  };
  /** A platform account's KES balance, summed from its postings (wallet keeps none on system accounts). */
  const systemBalance = async (kind: AccountKind) => BigInt((await h.t.db.pool.query(
    `SELECT COALESCE(sum(p.amount_minor), 0)::text AS b FROM wallet.postings p JOIN wallet.accounts a USING (account_id)
      WHERE a.kind = $1 AND a.owner_id = '' AND a.currency = 'KES'`, [kind])).rows[0].b);
  /**
   * Receiptless tips of earlier tests forgotten: a paybill payment naming nothing, of their amount and a number their
   * masked MSISDN fits (every test's payer ends the same), would be tied to one of them instead of parked.
   */
  const forgetEarlierTies = () => h.t.db.pool.query("DELETE FROM payment.receiptless_tips");
  const entriesUnder = async (key: string) => (await h.t.db.pool.query("SELECT count(*)::int AS n FROM wallet.entries WHERE idempotency_key = $1", [key])).rows[0].n as number;
  const reject = (tipId: string, note = "not this payment") => adminClient.reviewTip({ tipId, approve: false, note }).then((r) => r.tip!, (e: unknown) => e as ConnectError);
  const approve = (tipId: string, note = "looks fine") => adminClient.reviewTip({ tipId, approve: true, note }).then((r) => r.tip!, (e: unknown) => e as ConnectError);

  test("an approval waiting on the wallet holds no lock of the tip: the tip's late callback, naming the payment support refunded, is decided at once, not after the approval; flagged as paid twice, the tip credited once", async () => {
    const w = await worker();
    const held = await heldBesideRefund(w);
    const row = await tipRow(held.tipId);
    const wallet = await stallApprovals([held.tipId]);
    let approval: Promise<unknown> | undefined;
    try {
      approval = approve(held.tipId);
      await wallet.waiting(1);
      const callback = settledValue(h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, held.refunded, held.payer)));
      // Before, the approval held the tip's row lock across the wallet's call: the callback waited for it.
      const outcome = await eventually(async () => callback() ?? ((await wallet.otherLockWaits()) > 0 ? "waiting for a lock" : undefined), "the callback decided, or waiting");
      assert.deepEqual(outcome, { v: { status: 200, body: (outcome as { v: { body: string } }).v?.body } }, "the late callback is decided while the approval waits on the wallet");
    } finally {
      await wallet.release();
    }
    const approved = await approval;
    assert.ok(!(approved instanceof Error), `approved: ${String(approved)}`);
    assert.equal((approved as { status: TipStatus }).status, TipStatus.SUCCEEDED, "its approval was decided first: it goes through");
    assert.equal(await paidTwiceFlags(held.tipId), 1, "flagged for support: that payment was refunded and is now credited too");
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id), await succeededEvents(held.tipId)], [9500n, 1, 1]);
    assert.ok(await h.trialBalanced());
  });

  test("a burst of approvals waiting on the wallet keeps no transaction of payment open: each tip is credited once when the wallet answers", async () => {
    const workers = [await worker(), await worker(), await worker()];
    const tips = [];
    for (const w of workers) tips.push(await heldFromParked(w));
    const wallet = await stallApprovals(tips.map((t) => t.tipId));
    let approvals: Promise<unknown>[] = [];
    try {
      approvals = tips.map((t) => approve(t.tipId, "paid once, reported twice"));
      await wallet.waiting(tips.length);
      // Before, each held the tip's row lock and a pool connection until the wallet answered: a burst drained the pool.
      assert.equal(await wallet.openOn(tips.map((t) => t.tipId)), 0, "no transaction of payment is open across the wallet's call");
    } finally {
      await wallet.release();
    }
    for (const a of approvals) assert.equal(((await a) as { status: TipStatus }).status, TipStatus.SUCCEEDED, String(await a));
    for (const w of workers) assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1]);
    assert.ok(await h.trialBalanced());
  });

  test("an approval asked again after its answer was lost answers the approved tip; the other decision is still refused", async () => {
    const w = await worker();
    const held = await heldFromParked(w);
    assert.equal((await approve(held.tipId) as { status: TipStatus }).status, TipStatus.SUCCEEDED);
    // Before, "the tip is not held for review": read as a colleague's refusal, the admin might refund it by hand.
    const again = await approve(held.tipId);
    assert.ok(!(again instanceof Error), String(again));
    assert.equal((again as { status: TipStatus; tipId: string }).tipId, held.tipId);
    assert.equal((again as { status: TipStatus }).status, TipStatus.SUCCEEDED);
    const otherDecision = await reject(held.tipId);
    assert.ok(otherDecision instanceof ConnectError && otherDecision.code === Code.FailedPrecondition && /not held for review/.test(otherDecision.rawMessage), String(otherDecision));
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id), await succeededEvents(held.tipId)], [9500n, 1, 1]);
  });

  test("two admins approving the same tip at once pay it once: one is answered succeeded, the other that it was reviewed meanwhile", async () => {
    const w = await worker();
    const held = await heldFromParked(w);
    const wallet = await stallApprovals([held.tipId]);
    let both: Promise<unknown>[] = [];
    try {
      both = [approve(held.tipId, "first"), approve(held.tipId, "second")];
      await wallet.waiting(1);
      // The second is in the wallet too, or waiting behind the first for a lock.
      await eventually(async () => (await h.t.db.pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0].n >= 2, "both approvals under way");
    } finally {
      await wallet.release();
    }
    const answers = await Promise.all(both);
    const ok = answers.filter((a) => !(a instanceof Error)) as { status: TipStatus }[];
    const refused = answers.filter((a) => a instanceof ConnectError) as ConnectError[];
    assert.equal(ok.length, 1, String(answers));
    assert.equal(ok[0].status, TipStatus.SUCCEEDED);
    assert.ok(refused.length === 1 && refused[0].code === Code.FailedPrecondition && /reviewed meanwhile/.test(refused[0].rawMessage), String(refused[0]));
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id), await succeededEvents(held.tipId)], [9500n, 1, 1]);
    assert.ok(await h.trialBalanced());
  });

  test("an approval whose wallet answer was lost (posted after its deadline), then the tip's late callback naming the payment support refunded: approving again finishes it, flagged as paid twice, never left held with the worker paid", async () => {
    const w = await worker();
    const held = await heldBesideRefund(w);
    const row = await tipRow(held.tipId);
    const wallet = await stallApprovals([held.tipId]);
    const deadline = h.config.walletPostEntryTimeoutMs;
    try {
      h.config.walletPostEntryTimeoutMs = 300;
      const lost = await approve(held.tipId);
      assert.ok(lost instanceof ConnectError && lost.code === Code.DeadlineExceeded, String(lost));
    } finally {
      h.config.walletPostEntryTimeoutMs = deadline;
      await wallet.release();
    }
    await eventually(async () => (await h.walletEntries(w.id)) === 1, "wallet posted the approval after its caller's deadline");
    assert.equal((await pay.getTip({ tipId: held.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, held.refunded, held.payer))).status, 200);
    // Before, the approval's check refused it now (the refunded receipt), and a rejection was refused (the approval was posted): held for good.
    const finished = await approve(held.tipId, "again");
    assert.ok(!(finished instanceof Error), `approved: ${String(finished)}`);
    assert.equal((finished as { status: TipStatus }).status, TipStatus.SUCCEEDED);
    assert.equal(await paidTwiceFlags(held.tipId), 1, "flagged for support");
    // The callback's flag is closed by the record, as approved: one left open to recover the payment.
    assert.deepEqual(await recoverFlags(held.tipId), ["open"]);
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id), await succeededEvents(held.tipId)], [9500n, 1, 1]);
    assert.ok(await h.trialBalanced());
  });

  test("an approval claimed and then stopped before the wallet (the process died), then the tip's late callback naming the payment support refunded: approving again is refused and closes the approval's key, nothing is paid, the rejection goes through", async () => {
    const w = await worker();
    const held = await heldBesideRefund(w);
    const row = await tipRow(held.tipId);
    // What the approval's first step leaves when nothing follows it: the tip claimed, the entry it will post named.
    await h.t.db.pool.query("UPDATE payment.tips SET approval_receipt = credit_key WHERE tip_id = $1", [held.tipId]);
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, held.refunded, held.payer))).status, 200);
    const refused = await approve(held.tipId, "again");
    assert.ok(refused instanceof ConnectError && refused.code === Code.FailedPrecondition && /refunded to the customer by support/.test(refused.rawMessage), String(refused));
    assert.equal((await pay.getTip({ tipId: held.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    const rejected = (await adminClient.reviewTip({ tipId: held.tipId, approve: false, note: "refunded already" })).tip!;
    assert.equal(rejected.status, TipStatus.FAILED);
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id), await succeededEvents(held.tipId)], [0n, 0, 0]);
    assert.ok(await h.trialBalanced());
  });
  test("an approval claimed, then the tip rejected by another admin before its wallet calls (its paybill payment reopened into the next round): the approval is refused and leaves the next round's match key open, so support can match the payment to its code", async () => {
    const w = await worker();
    const held = await heldFromParked(w);
    // The approval's first step, then another admin's rejection, before the approval reaches the wallet.
    const deps = directDeps();
    const claimed = (await claimApproval(deps, held.tipId, reviewer))!;
    assert.equal((await adminClient.reviewTip({ tipId: held.tipId, approve: false, note: "two payments" })).tip!.status, TipStatus.FAILED);
    assert.deepEqual([(await c2bRow(held.receipt)).resolution, (await c2bRow(held.receipt)).match_round], ["open", 1]);
    await assert.rejects(payApproval(deps, claimed), (e: Error) => /reviewed meanwhile/.test(e.message));
    // Before, the approval read the payment's round after the rejection had moved it on, and closed round 1's key: the match was refused.
    await adminClient.resolveSuspensePayment({ receipt: held.receipt, action: { case: "matchAccountReference", value: w.code.shortCode }, note: "it was the tip" });
    assert.equal((await c2bRow(held.receipt)).resolution, "matched");
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1]);
    assert.ok(await h.trialBalanced());
  });

  /** An older replica's record of its approval (in a rollout: no claim), after its wallet release: endHeldTip as it was. */
  const oldReplicaRecord = (tipId: string) => h.t.db.pool.query(
    `UPDATE payment.tips SET status = $2, result_code = CASE WHEN $3 THEN result_code ELSE 'review_rejected' END,
       result_message = $4, worker_receives_minor = CASE WHEN $3 THEN $5 ELSE worker_receives_minor END
      WHERE tip_id = $1 AND status = 'held_for_review' RETURNING *`,
    [tipId, "succeeded", true, "Paid", 9500n]);
  const olderReplicaAlerts = async (tipId: string) =>
    (await h.t.db.pool.query("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1 AND detail LIKE 'an approval by an older replica%'", [tipId])).rows.map((r) => r.detail as string);

  test("an older replica's approval (in a rollout) of a tip whose late callback named a payment support credited as another tip, which its checks miss, is not recorded: the tip stays held, no tip_succeeded, support told which wallet key to check", async () => {
    const [w, coded] = [await worker(), await worker()];
    const push = await lostCallbackPush(w);
    const other = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(other.transId)).suspense_entry_id !== null, "parked in suspense");
    await adminClient.resolveSuspensePayment({ receipt: other.transId, action: { case: "matchAccountReference", value: coded.code.shortCode }, note: "meant for the other worker" });
    h.clock.advance(h.config.stkDeadlineMs + 20);
    await internal.reconcilePending({ limit: 100 });
    const row = await tipRow(push.tipId);
    assert.equal(row.status, "held_for_review");
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, other.transId, push.payer))).status, 200);
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, null, "the match's tip holds the receipt: only spent_receipt_flags knows it");
    const recorded = await oldReplicaRecord(push.tipId);
    assert.equal(recorded.rowCount, 0, "not recorded");
    assert.equal((await tipRow(push.tipId)).status, "held_for_review");
    const told = await olderReplicaAlerts(push.tipId);
    assert.ok(told.length === 1 && told[0].includes(`${row.credit_key}:approved`) && /credited as another tip/.test(told[0]), String(told));
    assert.equal(await succeededEvents(push.tipId), 0);
  });

  test("an older replica's approval (in a rollout) of a tip funded by a paybill payment in a later match round (it closes round 0's key only) is not recorded; one that nothing refuses is recorded as before", async () => {
    const [w, plain] = [await worker(), await worker()];
    const held = await heldFromParked(w);
    // Reopened by a rejection of another tip, then taken by this one's callback: the payment's round moved on.
    await h.t.db.pool.query("UPDATE payment.c2b_payments SET match_round = 1 WHERE trans_id = $1", [held.receipt]);
    assert.equal((await oldReplicaRecord(held.tipId)).rowCount, 0, "not recorded");
    assert.equal((await tipRow(held.tipId)).status, "held_for_review");
    assert.match((await olderReplicaAlerts(held.tipId))[0] ?? "", /later match round/);
    const other = await heldFromParked(plain);
    assert.equal((await oldReplicaRecord(other.tipId)).rowCount, 1, "recorded: its checks were enough");
    assert.deepEqual([(await tipRow(other.tipId)).status, (await olderReplicaAlerts(other.tipId)).length], ["succeeded", 0]);
  });

  /** A held tip's late callback naming the spent payment `receipt` (its money refunded, or credited as another tip). */
  const lateSpentCallback = async (tipId: string, receipt: string, payer: string) => {
    const row = await tipRow(tipId);
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, receipt, payer))).status, 200);
    return row;
  };

  test("a rejection reversing a spent hold keeps no transaction of payment open while the wallet posts the reversal: no lock of the tip held across it", async () => {
    await forgetEarlierTies();
    const w = await worker();
    const held = await heldBesideRefund(w);
    const row = await lateSpentCallback(held.tipId, held.refunded, held.payer);
    const wallet = await stallKeys([`${row.credit_key}:spent`]);
    let rejection: Promise<unknown> | undefined;
    try {
      rejection = reject(held.tipId, "refunded already");
      await wallet.waiting(1);
      // Before, the reversal was posted inside the rejection's transaction, which held the tip's row lock meanwhile.
      assert.equal(await wallet.openOn([held.tipId]), 0, "no transaction of payment is open across the wallet's call");
    } finally {
      await wallet.release();
    }
    const rejected = await rejection;
    assert.ok(!(rejected instanceof Error), String(rejected));
    assert.deepEqual([(rejected as { status: TipStatus }).status, (rejected as { resultCode: string }).resultCode], [TipStatus.FAILED, "refunded"]);
    assert.deepEqual([await h.balance(w.id), await entriesUnder(`${row.credit_key}:spent`)], [0n, 1]);
    assert.ok(await h.trialBalanced());
  });

  test("a rejection whose record fails after the wallet reversed the spent hold, then the payment reopened and an approval: the approval is refused, the payment matched once, the rejection finished: nothing paid twice, suspense back where it was", async () => {
    await forgetEarlierTies();
    const [w, other] = [await worker(), await worker()];
    const push = await lostCallbackPush(w);
    const refunded = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(refunded.transId)).suspense_entry_id !== null, "parked in suspense");
    await adminClient.resolveSuspensePayment({ receipt: refunded.transId, action: { case: "refund", value: true }, note: "the customer called" });
    const suspenseBefore = await systemBalance(AccountKind.SUSPENSE);
    h.clock.advance(h.config.stkDeadlineMs + 20);
    await internal.reconcilePending({ limit: 100 });
    assert.equal((await tipRow(push.tipId)).status, "held_for_review", "held from clearing beside the refunded payment");
    // Another push, held for a paybill payment parked before its late callback named it; the first tip's callback names it too.
    const second = await lostCallbackPush(other);
    // From a number that fits neither push's (the first tip, receiptless, would take it as its own).
    const paid = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, skipValidation: true });
    await eventually(async () => (await c2bRow(paid.transId)).suspense_entry_id !== null, "parked in suspense");
    await lateSpentCallback(second.tipId, paid.transId, second.payer);
    assert.deepEqual([(await tipRow(second.tipId)).status, (await c2bRow(paid.transId)).tip_id], ["held_for_review", second.tipId]);
    const row = await lateSpentCallback(push.tipId, paid.transId, push.payer);
    const restore = await failCommitOf(push.tipId, "failed");
    try {
      const failed = await reject(push.tipId, "the same payment");
      assert.ok(failed instanceof ConnectError, `the record failed: ${String(failed)}`);
    } finally {
      await restore();
    }
    assert.deepEqual([(await tipRow(push.tipId)).status, await entriesUnder(`${row.credit_key}:spent`)], ["held_for_review", 1], "the reversal posted, the tip still held");
    // The payment reopened (the tip it funded rejected): the first tip's receipt no longer reads as spent.
    assert.equal((await adminClient.reviewTip({ tipId: second.tipId, approve: false, note: "two pushes" })).tip!.status, TipStatus.FAILED);
    assert.equal((await c2bRow(paid.transId)).resolution, "open");
    const approval = await approve(push.tipId, "the payment is open again");
    assert.ok(approval instanceof ConnectError && approval.code === Code.FailedPrecondition && /rejection/.test(approval.rawMessage), String(approval));
    await adminClient.resolveSuspensePayment({ receipt: paid.transId, action: { case: "matchAccountReference", value: w.code.shortCode }, note: "it was this tip" });
    const rejected = await reject(push.tipId, "again");
    assert.ok(!(rejected instanceof Error), String(rejected));
    assert.deepEqual([rejected.status, rejected.resultCode], [TipStatus.FAILED, "paid_elsewhere"]);
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id), await h.balance(other.id)], [9500n, 1, 0n], "the payment credited once, by its match");
    assert.equal(await entriesUnder(`${row.credit_key}:spent`), 1, "reversed once");
    assert.equal(await systemBalance(AccountKind.SUSPENSE), suspenseBefore, "the hold reversed, the payment in and out: suspense as before the hold");
    assert.ok(await h.trialBalanced());
  });

  test("a rejection whose record failed, then the tip's late callback recording its receipt: rejecting again finishes it (the close of the approval's key is the same), never read as an approval posted", async () => {
    await forgetEarlierTies();
    const w = await worker();
    const held = await heldBesideRefund(w);
    const restore = await failCommitOf(held.tipId, "failed");
    try {
      assert.ok((await reject(held.tipId)) instanceof ConnectError, "the record failed");
    } finally {
      await restore();
    }
    const row = await tipRow(held.tipId);
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, held.receipt, held.payer))).status, 200);
    assert.equal((await tipRow(held.tipId)).mpesa_receipt, held.receipt, "its receipt learned between the two rejections");
    // Before, the second close named the receipt, the first the tip's key: refused, as if an approval had been posted.
    const rejected = await reject(held.tipId, "again");
    assert.ok(!(rejected instanceof Error), String(rejected));
    assert.equal(rejected.status, TipStatus.FAILED);
    assert.deepEqual([await h.balance(w.id), await entriesUnder(`${row.credit_key}:approved`)], [0n, 1]);
    assert.ok(await h.trialBalanced());
  });

  test("reviews left part way by a stopped process are finished by reconciliation once their grace has passed: a rejection claimed before its wallet calls, an approval whose record failed after the wallet paid", async () => {
    const [rw, aw] = [await worker(), await worker()];
    const [toReject, toApprove] = [await heldFromParked(rw), await heldFromParked(aw)];
    const deps = directDeps();
    assert.ok(await claimRejection(deps, (await tipRow(toReject.tipId)), reviewer), "claimed, then the process stopped");
    const restore = await failCommitOf(toApprove.tipId, "succeeded");
    try {
      assert.ok((await approve(toApprove.tipId)) instanceof ConnectError, "the record failed");
    } finally {
      await restore();
    }
    assert.deepEqual([await h.balance(aw.id), (await tipRow(toApprove.tipId)).status], [9500n, "held_for_review"], "paid, not recorded");
    await internal.reconcilePending({ limit: 100 });
    assert.deepEqual([(await tipRow(toReject.tipId)).status, (await tipRow(toApprove.tipId)).status], ["held_for_review", "held_for_review"], "within their grace: left to the reviews under way");
    h.clock.advance(REVIEW_CLAIM_GRACE_MS + 1);
    await internal.reconcilePending({ limit: 100 });
    const [rejected, approved] = [await tipRow(toReject.tipId), await tipRow(toApprove.tipId)];
    assert.deepEqual([rejected.status, rejected.result_code, (await c2bRow(toReject.receipt)).resolution], ["failed", "review_rejected_reopened", "open"]);
    assert.equal(approved.status, "succeeded");
    assert.deepEqual([await h.balance(aw.id), await h.walletEntries(aw.id), await succeededEvents(toApprove.tipId)], [9500n, 1, 1], "paid once, announced once");
    assert.deepEqual([await h.balance(rw.id), await entriesUnder(`${(await tipRow(toReject.tipId)).credit_key}:approved`)], [0n, 1], "nothing paid; the approval's key closed");
    // Finished: a pass again touches neither.
    await internal.reconcilePending({ limit: 100 });
    assert.deepEqual([await h.walletEntries(aw.id), await succeededEvents(toApprove.tipId)], [1, 1]);
    assert.ok(await h.trialBalanced());
  });

  test("an older replica's approval (in a rollout) whose release was posted before the trigger refused its record: the rejection is refused (the worker has the money), approving again settles the tip as approved without paying again, flagged for support", async () => {
    await forgetEarlierTies();
    const [w, coded] = [await worker(), await worker()];
    const push = await lostCallbackPush(w);
    const other = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(other.transId)).suspense_entry_id !== null, "parked in suspense");
    await adminClient.resolveSuspensePayment({ receipt: other.transId, action: { case: "matchAccountReference", value: coded.code.shortCode }, note: "meant for the other worker" });
    h.clock.advance(h.config.stkDeadlineMs + 20);
    await internal.reconcilePending({ limit: 100 });
    assert.equal((await tipRow(push.tipId)).status, "held_for_review");
    const row = await lateSpentCallback(push.tipId, other.transId, push.payer);
    // The older replica's approval: its wallet release (the entry as it built it), then its record, which the trigger refuses.
    const split = approvedSplit({ charged_minor: BigInt(row.charged_minor), worker_receives_minor: BigInt(row.worker_receives_minor), received_minor: row.received_minor === null ? null : BigInt(row.received_minor) });
    await new Ledger(h.t.ctx).releaseFromSuspense({ key: `${row.credit_key}:approved`, receipt: row.mpesa_receipt ?? row.credit_key, recipient: { workerId: w.id }, ...split });
    assert.equal((await oldReplicaRecord(push.tipId)).rowCount, 0, "not recorded");
    assert.equal(await h.balance(w.id), 9500n, "the older replica's release posted");
    const rejected = await reject(push.tipId, "matched already");
    assert.ok(rejected instanceof ConnectError && rejected.code === Code.FailedPrecondition && /approve it again/.test(rejected.rawMessage), String(rejected));
    // Before, refused too (its receipt's money spent): the tip held for good, settled by hand.
    const settled = await approve(push.tipId, "the older replica paid it");
    assert.ok(!(settled instanceof Error), String(settled));
    assert.equal(settled.status, TipStatus.SUCCEEDED);
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id), await succeededEvents(push.tipId), await h.balance(coded.id)], [9500n, 1, 1, 9500n], "recorded as paid, never paid again");
    assert.deepEqual(await recoverFlags(push.tipId), ["open"], "support told to recover the payment paid twice");
    assert.ok(await h.trialBalanced());
  });

  test("an older replica's approval settled as posted, the process stopped between that claim and its record, then the spent payment reopened: approving again finishes it as posted: paid once, nothing posted again, flagged for support", async () => {
    await forgetEarlierTies();
    const [w, other] = [await worker(), await worker()];
    const push = await lostCallbackPush(w);
    const refunded = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(refunded.transId)).suspense_entry_id !== null, "parked in suspense");
    await adminClient.resolveSuspensePayment({ receipt: refunded.transId, action: { case: "refund", value: true }, note: "the customer called" });
    h.clock.advance(h.config.stkDeadlineMs + 20);
    await internal.reconcilePending({ limit: 100 });
    assert.equal((await tipRow(push.tipId)).status, "held_for_review", "held from clearing beside the refunded payment");
    // Another push, held for a paybill payment parked before its late callback named it; the first tip's callback names it too.
    const second = await lostCallbackPush(other);
    const paid = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, skipValidation: true });
    await eventually(async () => (await c2bRow(paid.transId)).suspense_entry_id !== null, "parked in suspense");
    await lateSpentCallback(second.tipId, paid.transId, second.payer);
    assert.deepEqual([(await tipRow(second.tipId)).status, (await c2bRow(paid.transId)).tip_id], ["held_for_review", second.tipId]);
    const row = await lateSpentCallback(push.tipId, paid.transId, push.payer);
    // The older replica's approval: its wallet release, then its record, which the trigger refuses.
    const split = approvedSplit({ charged_minor: BigInt(row.charged_minor), worker_receives_minor: BigInt(row.worker_receives_minor), received_minor: row.received_minor === null ? null : BigInt(row.received_minor) });
    await new Ledger(h.t.ctx).releaseFromSuspense({ key: `${row.credit_key}:approved`, receipt: row.mpesa_receipt ?? row.credit_key, recipient: { workerId: w.id }, ...split });
    assert.equal((await oldReplicaRecord(push.tipId)).rowCount, 0, "not recorded");
    // An approval settling it: refused as a first claim (spent), claimed as posted; then the process stopped.
    const deps = directDeps();
    const refusal = await claimApproval(deps, push.tipId, reviewer).then(() => assert.fail("a first claim of a spent receipt's tip"), (e: unknown) => e);
    assert.ok(await settleOlderApproval(deps, push.tipId, reviewer, refusal), "claimed as posted, not recorded");
    // The payment reopened (the tip it funded rejected): the tip's receipt no longer reads as spent.
    assert.equal((await adminClient.reviewTip({ tipId: second.tipId, approve: false, note: "two pushes" })).tip!.status, TipStatus.FAILED);
    assert.equal((await c2bRow(paid.transId)).resolution, "open");
    // Before, only the stopped try knew the release was found posted: this one read the receipt unspent, asked to post again
    // under the key (refused had the older replica's entry differed) and flagged nothing, though the reopened payment
    // can be paid out again.
    const approved = await approve(push.tipId, "finish it");
    assert.ok(!(approved instanceof Error), String(approved));
    assert.equal(approved.status, TipStatus.SUCCEEDED);
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id), await entriesUnder(`${row.credit_key}:approved`), await succeededEvents(push.tipId)], [9500n, 1, 1, 1], "paid once, announced once");
    assert.deepEqual(await recoverFlags(push.tipId), ["open"], "support told to recover the payment paid twice");
    assert.ok(await h.trialBalanced());
  });

  test("two admins at once, one approving and one rejecting the same tip, the wallet stalled on the approval's key: one decision wins, the money moves once or not at all, the other is refused", async () => {
    await forgetEarlierTies();
    const w = await worker();
    const held = await heldBesideRefund(w);
    const row = await tipRow(held.tipId);
    const wallet = await stallApprovals([held.tipId]);
    let both: Promise<unknown>[] = [];
    try {
      both = [approve(held.tipId, "two payments"), reject(held.tipId, "the same payment")];
      const answered = both.map(settledValue);
      // Both wait for the wallet (the approval's release, the rejection's close of the same key), or the approval was
      // refused at once (the rejection claimed first) and the rejection waits.
      await eventually(async () => (await wallet.blocked()) + answered.filter((a) => a()).length >= 2, "both under way or answered");
    } finally {
      await wallet.release();
    }
    const [approval, rejection] = await Promise.all(both);
    const refused = [approval, rejection].filter((a) => a instanceof ConnectError) as ConnectError[];
    assert.ok(refused.length === 1 && refused[0].code === Code.FailedPrecondition, String([approval, rejection]));
    const status = (await tipRow(held.tipId)).status;
    assert.equal(status, approval instanceof ConnectError ? "failed" : "succeeded", "the tip as the answer that went through says");
    assert.deepEqual([await h.balance(w.id), await entriesUnder(`${row.credit_key}:approved`)], [status === "succeeded" ? 9500n : 0n, 1]);
    assert.equal(await succeededEvents(held.tipId), status === "succeeded" ? 1 : 0);
    assert.ok(await h.trialBalanced());
  });

  test("two admins rejecting a tip at once, the wallet stalled on its spent hold's reversal: reversed once, recorded failed once, the other told it was reviewed meanwhile", async () => {
    await forgetEarlierTies();
    const w = await worker();
    const held = await heldBesideRefund(w);
    const row = await lateSpentCallback(held.tipId, held.refunded, held.payer);
    const clearingBefore = await systemBalance(AccountKind.MPESA_CLEARING);
    const wallet = await stallKeys([`${row.credit_key}:spent`]);
    let both: Promise<unknown>[] = [];
    try {
      both = [reject(held.tipId, "first"), reject(held.tipId, "second")];
      await wallet.waiting(2);
    } finally {
      await wallet.release();
    }
    const answers = await Promise.all(both);
    const ok = answers.filter((a) => !(a instanceof Error)) as { status: TipStatus; resultCode: string }[];
    const refused = answers.filter((a) => a instanceof ConnectError) as ConnectError[];
    assert.deepEqual(ok.map((t) => [t.status, t.resultCode]), [[TipStatus.FAILED, "refunded"]], String(answers));
    assert.ok(refused.length === 1 && refused[0].code === Code.FailedPrecondition && /reviewed meanwhile/.test(refused[0].rawMessage), String(refused[0]));
    assert.equal(await entriesUnder(`${row.credit_key}:spent`), 1);
    assert.equal(await systemBalance(AccountKind.MPESA_CLEARING), clearingBefore + 10000n, "the hold's amount back in clearing, once");
    assert.deepEqual([await h.balance(w.id), await succeededEvents(held.tipId)], [0n, 0]);
    assert.ok(await h.trialBalanced());
  });
  test("a rejection claimed before the tip's late callback named the payment support refunded: finished, its hold is reversed once and the customer told it was refunded, as if the callback had come first", async () => {
    await forgetEarlierTies();
    const w = await worker();
    const held = await heldBesideRefund(w);
    const clearingBefore = await systemBalance(AccountKind.MPESA_CLEARING);
    const claimed = await claimRejection(directDeps(), await tipRow(held.tipId), reviewer);
    assert.equal(claimed?.rejection_claim, "plain", "claimed, nothing spent known yet; then the process stopped");
    const row = await lateSpentCallback(held.tipId, held.refunded, held.payer);
    assert.equal((await tipRow(held.tipId)).mpesa_receipt, held.refunded, "the refunded payment's receipt learned after the claim");
    // Before, the finish went by the claim's reading alone: recorded "review_rejected", the hold's money left in suspense.
    const rejected = await reject(held.tipId, "again");
    assert.ok(!(rejected instanceof Error), String(rejected));
    assert.deepEqual([rejected.status, rejected.resultCode], [TipStatus.FAILED, "refunded"]);
    assert.equal(await entriesUnder(`${row.credit_key}:spent`), 1, "the hold reversed");
    assert.equal(await systemBalance(AccountKind.MPESA_CLEARING), clearingBefore + 10000n, "the hold's amount back in clearing, once");
    assert.deepEqual([await h.balance(w.id), await succeededEvents(held.tipId)], [0n, 0]);
    assert.ok(await h.trialBalanced());
  });
});
