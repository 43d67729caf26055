import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createQrModule } from "@ttip/qr";
import { callerHeaders, decimalMinor, stepUpHeaders } from "@ttip/runtime";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { AccountKind, type FeeSchedule } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { parseC2bPayment, tipReferenceValid } from "../src/c2b.js";
import { DEFAULT_C2B_PAYER } from "../src/daraja/c2b-simulator.js";
import { DarajaClient, DarajaError } from "../src/daraja/client.js";
import { Ledger } from "../src/ledger.js";
import { resultMessage } from "../src/messages.js";
import { payerFits } from "../src/receiptless.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";

const TOKEN = "c2b-test-path-token-0123456789";
/**
 * The payer of a payment naming nothing whose tie to a tip is not the point: its masked number (2541 ***** 000) fits no
 * test tip's (phone() gives 07...), so no tip an STK query reported paid takes it (receiptless.ts). A random one, the
 * simulator's, fits such a KES 100 tip of an earlier test now and then by its last three digits.
 */
const NO_TIP_PAYER = "254110000000";
const admin = { subject: randomUUID(), roles: ["admin" as const], stepUp: true };

/** Reads an EMVCo TLV string (top level, or a template's value) into a map. */
function tlv(s: string): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i + 4 <= s.length; ) {
    const id = s.slice(i, i + 2);
    const len = Number(s.slice(i + 2, i + 4));
    out.set(id, s.slice(i + 4, i + 4 + len));
    i += 4 + len;
  }
  return out;
}

describe("paybill and till payments (C2B), against the Daraja simulator, the real qr service and wallet", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  let internal: Client<typeof PaymentInternalService>;
  let adminClient: Client<typeof PaymentAdminService>;
  let qr: Client<typeof QrService>;

  before(async () => {
    h = await startHarness({}, [createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } })]);
    h.config.c2b = {
      pathToken: TOKEN,
      shortCodes: [h.sim.options.shortcode],
      registerVersion: "v2",
      responseType: "Completed",
      registerOnStart: false,
      validationBudgetMs: 3_000,
    };
    pay = h.t.client(PaymentService);
    internal = h.t.client(PaymentInternalService);
    adminClient = h.t.client(PaymentAdminService, admin);
    qr = createClient(QrService, h.t.ctx.peers("qr"));
    // Registration as production does it once: through the Daraja client, to the simulator.
    const client = new DarajaClient(h.config.daraja!);
    const base = `${h.config.callbackBaseUrl}/c2b/${TOKEN}`;
    await client.registerC2bUrls({ version: "v2", shortCode: h.sim.options.shortcode, responseType: "Completed", confirmationUrl: `${base}/confirmation`, validationUrl: `${base}/validation` });
  });
  after(async () => {
    await h.close();
  });

  const worker = async (name = "Achieng") => {
    const id = randomUUID();
    const as = { headers: callerHeaders(id, "worker") };
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: id, displayName: name }, as);
    const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: id, idempotencyKey: randomUUID() }, as);
    return { id, code: qrCode!, as };
  };
  const c2bRow = async (transId: string) => (await h.t.db.pool.query("SELECT * FROM payment.c2b_payments WHERE trans_id = $1", [transId])).rows[0];
  const tipRow = async (tipId: string) => (await h.t.db.pool.query("SELECT * FROM payment.tips WHERE tip_id = $1", [tipId])).rows[0];
  const alerts = async (tipId: string, reason: string) =>
    (await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.fraud_alerts WHERE tip_id = $1 AND reason = $2", [tipId, reason])).rows[0].n;

  test("the URLs are registered (v2) on paths without the words Safaricom refuses; a refused word never leaves", async () => {
    const reg = h.sim.c2b.registrations().find((r) => r.shortCode === h.sim.options.shortcode)!;
    assert.equal(reg.version, "v2");
    assert.match(reg.confirmationUrl, /\/c2b\/[^/]+\/confirmation$/);
    assert.doesNotMatch(reg.confirmationUrl + reg.validationUrl, /m-?pesa|safaricom|exe|cmd|sql|query/i);
    const client = new DarajaClient(h.config.daraja!);
    await assert.rejects(
      client.registerC2bUrls({ version: "v1", shortCode: h.sim.options.shortcode, responseType: "Completed", confirmationUrl: "https://tips.example/mpesa/confirm", validationUrl: "https://tips.example/v" }),
      (e: DarajaError) => e.kind === "rejected" && /mpesa/.test(e.message),
    );
    // The simulator refuses it too, as Safaricom does, when a client skips the check.
    const token = await client.accessToken();
    const res = await fetch(`${h.sim.url}/mpesa/c2b/v1/registerurl`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ ShortCode: h.sim.options.shortcode, ResponseType: "Completed", ConfirmationURL: "https://x.example/SQL/c", ValidationURL: "https://x.example/v" }),
    });
    assert.equal(res.status, 400);
  });

  test("a paybill payment to a worker's code is credited once, less the fee, however often it is confirmed", async () => {
    const w = await worker();
    const paid = await h.sim.c2b.pay({ billRefNumber: ` ${w.code.shortCode.toLowerCase().slice(0, 3)} ${w.code.shortCode.slice(3).toLowerCase()}`, amount: 200, confirmations: 3 });
    assert.deepEqual(paid.validation && "resultCode" in paid.validation && paid.validation.resultCode, "0");
    assert.equal(paid.confirmationsSent, 3);
    await eventually(async () => (await h.balance(w.id)) === 19000n, "worker credited KES 190 (KES 200 less the 5% fee)");
    const row = await c2bRow(paid.transId);
    assert.equal(row.outcome, "tip");
    const tip = await tipRow(row.tip_id);
    assert.equal(tip.channel, "paybill");
    assert.equal(tip.mpesa_receipt, paid.transId);
    assert.equal(tip.worker_id, w.id);
    assert.equal(tip.qr_code_id, w.code.qrCodeId);
    assert.equal(await h.walletEntries(w.id), 1);
    const events = await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.outbox WHERE subject = 'ttip.payment.tip_succeeded' AND position($1 in encode(payload, 'escape')) > 0", [row.tip_id]);
    assert.equal(events.rows[0].n, 1);
    // The payer's number is masked or hashed: no receipt SMS can be owed, and none is.
    assert.equal((await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.receipts WHERE tip_id = $1", [row.tip_id])).rows[0].n, 0);
    // The same receipt confirmed again later (M-Pesa duplicates) changes nothing.
    await h.sim.c2b.pay({ billRefNumber: w.code.shortCode, amount: 200, transId: paid.transId, skipValidation: true });
    assert.equal(await h.balance(w.id), 19000n);
    assert.ok(await h.trialBalanced());
  });

  test("a paybill payment whose account is the card's USSD digits (typed off the line beside the paybill's) is credited to that code's worker; a digit wrong is not", async () => {
    const w = await worker("Nyokabi");
    const { offline } = await qr.getOfflinePayload({ qrCodeId: w.code.qrCodeId }, w.as);
    const digits = /\*(\d{11})#$/.exec(offline!.ussdCode)![1];
    // Before, refused at validation as an unknown account (C2B00012): the customer was turned away.
    const paid = await h.sim.c2b.pay({ billRefNumber: digits, amount: 100 });
    assert.deepEqual(paid.validation && "resultCode" in paid.validation && paid.validation.resultCode, "0");
    await eventually(async () => (await c2bRow(paid.transId))?.outcome === "tip", "recorded as a tip");
    assert.equal((await tipRow((await c2bRow(paid.transId)).tip_id)).worker_id, w.id);
    const wrong = `${digits.slice(0, 10)}${(Number(digits[10]) + 1) % 10}`;
    const refused = await h.sim.c2b.pay({ billRefNumber: wrong, amount: 100 });
    assert.deepEqual(refused.validation && "resultCode" in refused.validation && refused.validation.resultCode, "C2B00012");
  });

  test("a paybill payment the fee would take whole (KES 1 under a KES 1 minimum fee) is refused at validation; confirmed anyway, it waits in suspense for a refund, told to support, never lost", async () => {
    const w = await worker();
    const refused = await h.sim.c2b.pay({ billRefNumber: w.code.shortCode, amount: 1 });
    assert.equal(refused.completed, false, "M-Pesa keeps the customer's shilling");
    assert.ok("resultCode" in refused.validation && refused.validation.resultCode === "C2B00013");
    // A short code without external validation: the money is taken, and recorded at once.
    const paid = await h.sim.c2b.pay({ billRefNumber: w.code.shortCode, amount: 1, skipValidation: true });
    const row = await c2bRow(paid.transId);
    assert.ok(row, "the payment recorded (before: nothing, retried by every pass)");
    assert.deepEqual([row.outcome, row.resolution, row.amount_minor], ["suspense", "open", 100n]);
    assert.match(row.reason, /^KES 1 does not cover the tip's fee: nothing would reach the worker; refund it$/);
    const told = await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.fraud_alerts WHERE position($1 in detail) > 0", [paid.transId]);
    assert.equal(told.rows[0].n, 1, "support is told");
    await eventually(async () => (await c2bRow(paid.transId)).suspense_entry_id !== null, "the shilling parked in suspense in the ledger");
    assert.equal(await h.balance(w.id), 0n);
    assert.ok(await h.trialBalanced());
  });

  test("a payment naming no payer comes from one number that fits no tip's, in v2 (masked) as in v1 (hashed): no earlier test's tip can take it", async () => {
    const payerOf = async (transId: string) => {
      const { rows } = await h.t.db.pool.query<{ raw_body: Buffer }>(
        "SELECT raw_body FROM payment.callbacks WHERE source = 'mpesa_c2b' AND position($1 in encode(raw_body, 'escape')) > 0", [transId]);
      return String((JSON.parse(rows[0].raw_body.toString()) as { MSISDN: unknown }).MSISDN);
    };
    const payers = [];
    for (let i = 0; i < 2; i++) payers.push(await payerOf((await h.sim.c2b.pay({ billRefNumber: "QQQQQQ1", amount: 100, skipValidation: true })).transId));
    // Before, a random 2547... number each time: "2547 ***** 123" fit every tip from a number ending in 123.
    assert.equal(payers[0], payers[1], "one number, not a random one");
    const tipNumbers = ["254700000000", "254712345000", "254100000000", "254112345000", `254${phone().slice(1)}`];
    for (const n of tipNumbers) assert.equal(payerFits(payers[0], n), false, `${payers[0]} fits ${n}`);
    const hashed = createHash("sha256").update(DEFAULT_C2B_PAYER).digest("hex");
    for (const n of tipNumbers) assert.equal(payerFits(hashed, n), false, "nor in v1");
  });

  test("a confirmation of a recorded receipt again with another amount applies nothing and is flagged for support; M-Pesa's own repeats are not", async () => {
    const w = await worker();
    const paid = await h.sim.c2b.pay({ billRefNumber: w.code.shortCode.toLowerCase(), amount: 200, confirmations: 2 });
    await eventually(async () => (await h.balance(w.id)) === 19000n, "credited once");
    const flagged = async () => (await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.fraud_alerts WHERE position($1 in detail) > 0", [paid.transId])).rows[0].n as number;
    assert.equal(await flagged(), 0, "M-Pesa's repeat (the reference as typed) is no alteration");
    // The same TransID again, its amount changed (a forged or corrupted confirmation; the reference as the code is written).
    const answered = await h.post(`/c2b/${TOKEN}/confirmation`, {
      TransactionType: "Pay Bill", TransID: paid.transId, TransTime: "20260101120000", TransAmount: "5000.00", BusinessShortCode: h.sim.options.shortcode,
      BillRefNumber: w.code.shortCode, MSISDN: "2547 ***** 126", FirstName: "X",
    });
    assert.equal(answered.status, 200);
    assert.equal(await h.balance(w.id), 19000n, "nothing more credited");
    assert.equal((await c2bRow(paid.transId)).amount_minor, 20000n, "the payment as first recorded");
    // Before, taken silently as a repeat.
    assert.equal(await flagged(), 1, "support is told");
    // Repeated, and altered otherwise (another reference): the receipt's alteration is told once, not at each repeat (before: 3 alerts).
    for (const reference of [w.code.shortCode, "QQQQQQ1"]) {
      assert.equal((await h.post(`/c2b/${TOKEN}/confirmation`, confirmation(paid.transId, reference, "5000.00"))).status, 200);
    }
    assert.equal(await flagged(), 1, "told once per receipt");
    assert.equal(await h.balance(w.id), 19000n, "nothing more credited");
    assert.ok(await h.trialBalanced());
  });

  /** Sends `bodies` (confirmations of one receipt) at once while the test holds the receipt's lock, then lets them go together. */
  const confirmTogether = async (transId: string, bodies: Record<string, string>[]) => {
    const hold = await h.t.db.pool.connect();
    try {
      await hold.query("BEGIN");
      await hold.query("SELECT payment.lock_receipt($1)", [transId]);
      const sent = bodies.map((b) => h.post(`/c2b/${TOKEN}/confirmation`, b));
      await eventually(async () => (await h.t.db.pool.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%lock_receipt%'")).rows[0].n === bodies.length, "both wait for the receipt");
      await hold.query("COMMIT");
      for (const answered of await Promise.all(sent)) assert.equal(answered.status, 200);
    } finally {
      hold.release();
    }
  };
  const confirmation = (transId: string, reference: string, amount: string) => ({
    TransactionType: "Pay Bill", TransID: transId, TransTime: "20260101120000", TransAmount: amount, BusinessShortCode: h.sim.options.shortcode,
    BillRefNumber: reference, MSISDN: "2547 ***** 126", FirstName: "X",
  });

  test("two confirmations of one receipt at once, one with another amount: one is applied, the other flagged for support (not taken silently as a repeat)", async () => {
    const w = await worker();
    const transId = `R${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    await confirmTogether(transId, [confirmation(transId, w.code.shortCode, "200.00"), confirmation(transId, w.code.shortCode, "5000.00")]);
    const recorded = await c2bRow(transId);
    assert.equal(recorded.outcome, "tip");
    const net = BigInt((await tipRow(recorded.tip_id)).worker_receives_minor);
    await eventually(async () => (await h.balance(w.id)) === net, "credited once");
    const flagged = await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.fraud_alerts WHERE reason = 'CALLBACK_MISMATCH' AND position($1 in detail) > 0", [transId]);
    assert.equal(flagged.rows[0].n, 1, "the altered one is flagged, whichever came second");
    assert.ok(await h.trialBalanced());
  });

  test("two confirmations of one receipt at once on a tip's reference: the payment is recorded as the tip's, never as a duplicate of itself", async () => {
    const w = await worker();
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(150), payment: { case: "mpesaPhone", value: phone("1037") } });
    const transId = `S${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    const body = confirmation(transId, tip!.paybillAccountReference, "150.00");
    await confirmTogether(transId, [body, body]);
    const recorded = await c2bRow(transId);
    assert.deepEqual([recorded.outcome, recorded.tip_id], ["tip", tip!.tipId]);
    assert.equal((await tipRow(tip!.tipId)).mpesa_receipt, transId);
    const net = BigInt((await tipRow(tip!.tipId)).worker_receives_minor);
    await eventually(async () => (await h.balance(w.id)) === net, "credited once");
    assert.ok(await h.trialBalanced());
  });

  test("a confirmation that cannot be read is refused and support is told (M-Pesa never sends it again); so is one on the secret path from outside the allow-list", async () => {
    const alerts = async (like: string) =>
      (await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.fraud_alerts WHERE reason = 'UNKNOWN_CALLBACK' AND detail LIKE $1", [like])).rows[0].n as number;
    const unreadable = () => alerts("paybill confirmation % could not be read%");
    const offList = () => alerts("paybill confirmation % from 127.0.0.2, outside the callback allow-list%");
    const counted = async () => (await h.t.ctx.metrics.registry.getSingleMetric("ttip_payment_c2b_total")!.get()).values
      .filter((v) => v.labels.kind === "confirmation" && v.labels.result === "rejected_address").reduce((n, v) => n + v.value, 0);
    const before = [await unreadable(), await offList(), await counted()];
    const body = { TransactionType: "Pay Bill", TransAmount: "100.00", BusinessShortCode: h.sim.options.shortcode, BillRefNumber: "ABC" }; // no TransID
    assert.equal((await h.post(`/c2b/${TOKEN}/confirmation`, body, "127.0.0.2")).status, 403);
    // Before, a warning in the log only: M-Pesa posting from an address the list lacks lost the payment unseen.
    assert.deepEqual([await unreadable(), await offList(), await counted()], [before[0], before[1] + 1, before[2] + 1], "support told, the alert's metric counted");
    assert.equal((await h.post(`/c2b/${TOKEN}/validation`, body, "127.0.0.2")).status, 403);
    assert.equal(await offList(), before[1] + 1, "a validation from there moved no money: nobody told");
    assert.equal((await h.post(`/c2b/${TOKEN}/validation`, body)).status, 200, "a validation is only answered");
    assert.equal(await unreadable(), before[0]);
    assert.equal((await h.post(`/c2b/${TOKEN}/confirmation`, body)).status, 400);
    // Before, stored as 'malformed' and nobody told.
    assert.equal(await unreadable(), before[0] + 1, "support is told");
    const { rows: [stored] } = await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE source = 'mpesa_c2b' ORDER BY received_at DESC, callback_id DESC LIMIT 1");
    assert.equal(stored.outcome, "malformed", "its raw body kept");
  });

  test("a confirmation stored but unread when the process stopped: reconciliation marks it and tells support in one transaction, once", async () => {
    const unreadable = async (id: string) =>
      (await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.fraud_alerts WHERE reason = 'UNKNOWN_CALLBACK' AND detail LIKE $1", [`paybill confirmation ${id} could not be read%`])).rows[0].n as number;
    const callbackId = randomUUID();
    await h.t.db.pool.query(
      "INSERT INTO payment.callbacks (callback_id, source, path, remote_address, raw_body, outcome, received_at) VALUES ($1, 'mpesa_c2b', '/c2b/[token]/confirmation', '127.0.0.1', $2, 'received', now() - interval '5 minutes')",
      [callbackId, Buffer.from('{"TransAmount": "100.00"')]);
    await h.t.client(PaymentInternalService).reconcilePending({ limit: 100 });
    await h.t.client(PaymentInternalService).reconcilePending({ limit: 100 });
    // Before, marked malformed and nobody told.
    assert.equal(await unreadable(callbackId), 1, "support told once");
    assert.equal((await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE callback_id = $1", [callbackId])).rows[0].outcome, "malformed");
  });

  test("a confirmation PostgreSQL refuses to store: the log keeps what names the payment (never the payer) and the metric its alert reads counts it", async () => {
    const unaccounted = async () => (await h.t.ctx.metrics.registry.getSingleMetric("ttip_payment_c2b_total")!.get()).values
      .filter((v) => v.labels.kind === "confirmation" && v.labels.result === "unrecorded").reduce((n, v) => n + v.value, 0);
    const before = await unaccounted();
    const payer = `254${phone().slice(1)}`;
    await h.t.db.pool.query("ALTER TABLE payment.callbacks ADD CONSTRAINT refuse_c2b CHECK (source <> 'mpesa_c2b') NOT VALID");
    try {
      const res = await h.post(`/c2b/${TOKEN}/confirmation`, { ...confirmation("RKL0000001", "12345678901", "250.00"), MSISDN: payer });
      assert.equal(res.status, 500);
    } finally {
      await h.t.db.pool.query("ALTER TABLE payment.callbacks DROP CONSTRAINT refuse_c2b");
    }
    assert.equal(await unaccounted(), before + 1);
    const line = h.errorLines.find((l) => l.includes("NOT stored"));
    assert.ok(line, "logged");
    const logged = JSON.parse(line) as Record<string, unknown>;
    assert.deepEqual([logged.transId, logged.amount, logged.reference], ["RKL0000001", "250.00", "12345678901"]);
    assert.ok(!line.includes(payer.slice(-6)), "the payer's number is not logged");
  });

  test("a confirmation whose account reference is typed long (a banking app's free text) waits in suspense, not unreadable", async () => {
    const transId = `R${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    const typed = `Tip for the waiter at table 4, thank you very much ${"!".repeat(20)}`;
    assert.equal((await h.post(`/c2b/${TOKEN}/confirmation`, confirmation(transId, typed, "100.00"))).status, 200);
    const row = await c2bRow(transId);
    assert.ok(row, "recorded (before: unreadable over 40 characters, and nowhere to place it)");
    assert.deepEqual([row.outcome, row.resolution, row.bill_ref_number], ["suspense", "open", typed]);
  });

  test("the simulator's pay endpoint, as make run prints it, names a wrong field and pays nothing", async () => {
    const w = await worker();
    const before = h.sim.transactions().length;
    const pay = async (body: unknown) => {
      const res = await fetch(`${h.sim.url}/__sim/c2b/pay`, { method: "POST", body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as { errorMessage?: string } };
    };
    const cents = await pay({ billRefNumber: w.code.shortCode, amount: "100.50" });
    assert.equal(cents.status, 400);
    assert.equal(cents.body.errorMessage, 'amount: a number of shillings, e.g. "amount": 100 (got "100.50")');
    assert.equal((await pay({ billRefNumber: w.code.shortCode })).body.errorMessage, 'amount: a number of shillings, e.g. "amount": 100 (got nothing)');
    assert.match((await pay({ billRefNumber: 12345, amount: 100 })).body.errorMessage ?? "", /^billRefNumber: the account reference as text/);
    assert.equal(h.sim.transactions().length, before);
    assert.equal(await h.balance(w.id), 0n);
  });

  test("a KE-QR scanned by a banking app arrives as a paybill payment to the code's reference and is credited", async () => {
    const w = await worker("Otieno");
    const { offline } = await qr.getOfflinePayload({ qrCodeId: w.code.qrCodeId }, w.as);
    const top = tlv(offline!.emvcoPayload);
    const paybill = tlv(top.get("28")!).get("01")!;
    const reference = tlv(top.get("62")!).get("05")!;
    assert.equal(paybill, offline!.paybillOrTill);
    const paid = await h.sim.c2b.pay({ shortCode: paybill, billRefNumber: reference, amount: 100 });
    assert.equal(paid.completed, true);
    await eventually(async () => (await h.balance(w.id)) === 9500n, "worker credited KES 95");
  });

  for (const [suffix, order] of [["0007", "before"], ["0008", "after"], ["0009", "instead of"]] as const) {
    test(`an STK tip also reported by C2B ${order} its callback is credited once`, async () => {
      const w = await worker();
      const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: phone(suffix) } });
      assert.match(tip!.paybillAccountReference, /^T\d+$/);
      assert.ok(tipReferenceValid(tip!.paybillAccountReference));
      assert.equal(tip!.paybillNumber, h.sim.options.shortcode);
      const done = await eventually(async () => {
        const t = (await pay.getTip({ tipId: tip!.tipId })).tip!;
        return t.status === TipStatus.SUCCEEDED && t;
      }, "tip succeeded");
      await eventually(async () => (await c2bRow(done.mpesaReceipt))?.tip_id === tip!.tipId, "the C2B confirmation matched to the tip");
      await h.sim.idle();
      // Reconciliation asks M-Pesa too (the query says success): still one credit.
      h.clock.advance(h.config.stkDeadlineMs + 20);
      await internal.reconcilePending({ limit: 100 });
      await eventually(async () => (await h.balance(w.id)) === 9500n, "credited once");
      assert.equal(await h.walletEntries(w.id), 1);
      const sim = h.sim.transactions().find((t) => t.receipt === done.mpesaReceipt)!;
      assert.equal(sim.accountReference, tip!.paybillAccountReference, "the push carried the tip's reference");
    });
  }

  test("a payment parked in suspense by C2B, then called back by STK for a tip, is held for review and credited from suspense, never twice", async () => {
    const w = await worker();
    // A push whose callback is lost: M-Pesa charged, receipt known only to the simulator.
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: phone("0003") } });
    const sim = await eventually(async () => h.sim.transactions().find((t) => t.checkoutRequestId && t.accountReference === tip!.paybillAccountReference), "the push");
    // Its C2B confirmation arrives first with a reference that names nothing (as pushes before per-tip references did).
    await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, transId: sim.receipt!, skipValidation: true, msisdn: NO_TIP_PAYER });
    assert.equal((await c2bRow(sim.receipt!)).outcome, "suspense");
    // Then the STK callback, as Daraja sends it.
    const row = await tipRow(tip!.tipId);
    const callback = { Body: { stkCallback: { MerchantRequestID: sim.merchantRequestId, CheckoutRequestID: sim.checkoutRequestId, ResultCode: 0, ResultDesc: "ok",
      CallbackMetadata: { Item: [{ Name: "Amount", Value: 100 }, { Name: "MpesaReceiptNumber", Value: sim.receipt }, { Name: "TransactionDate", Value: 20260101120000 }, { Name: "PhoneNumber", Value: Number(sim.phone) }] } } } };
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, callback)).status, 200);
    const held = (await pay.getTip({ tipId: tip!.tipId })).tip!;
    assert.equal(held.status, TipStatus.HELD_FOR_REVIEW);
    assert.equal((await c2bRow(sim.receipt!)).resolution, "matched");
    assert.equal(await h.balance(w.id), 0n, "nothing credited from clearing a second time");
    // The parking's alert gave way to the tip's: before, it stayed open for good, neither closable nor in Suspense.
    const open = async () => (await h.t.db.pool.query<{ tip_id: string | null }>("SELECT tip_id FROM payment.fraud_alerts WHERE status = 'open' AND (tip_id = $1 OR starts_with(detail, 'paybill payment ' || $2 || ' '))", [tip!.tipId, sim.receipt])).rows;
    assert.deepEqual((await open()).map((a) => a.tip_id), [tip!.tipId]);
    await adminClient.reviewTip({ tipId: tip!.tipId, approve: true, note: "paid once, reported twice" });
    assert.deepEqual(await open(), [], "the queue holds nothing of this payment once the tip is approved");
    await eventually(async () => (await h.balance(w.id)) === 9500n, "credited from suspense");
    // Reconciliation asks M-Pesa about the push (success): still one credit.
    h.clock.advance(h.config.stkDeadlineMs + 20);
    await internal.reconcilePending({ limit: 100 });
    assert.equal(await h.balance(w.id), 9500n);
    assert.ok(await h.trialBalanced());
  });

  /** A push whose callback is lost (M-Pesa charged; the receipt known only to the simulator). */
  const lostCallbackPush = async (w: { id: string }) => {
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: phone("0003") } });
    const sim = await eventually(async () => h.sim.transactions().find((t) => t.checkoutRequestId && t.accountReference === tip!.paybillAccountReference), "the push");
    return { tipId: tip!.tipId, receipt: sim.receipt!, payer: sim.phone };
  };
  /** A push whose callback is lost, reported paid by STK query: succeeded and credited from clearing, no receipt yet. */
  const paidByQueryFirst = async () => {
    const w = await worker();
    const push = await lostCallbackPush(w);
    await queryPushes();
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.SUCCEEDED);
    await eventually(async () => (await h.balance(w.id)) === 9500n, "credited from clearing");
    return { w, push };
  };
  /** The push's STK callback, late: success with `receipt`, 100 KES from `payer`. */
  const lateSuccess = (row: { merchant_request_id: string; checkout_request_id: string }, receipt: string, payer: string) => ({ Body: { stkCallback: {
    MerchantRequestID: row.merchant_request_id, CheckoutRequestID: row.checkout_request_id, ResultCode: 0, ResultDesc: "ok",
    CallbackMetadata: { Item: [{ Name: "Amount", Value: 100 }, { Name: "MpesaReceiptNumber", Value: receipt }, { Name: "TransactionDate", Value: 20260101120000 }, { Name: "PhoneNumber", Value: Number(payer) }] } } } });
  /** Another payment of 100 KES from `payer` naming nothing, parked in suspense. */
  const parkedPaymentFrom = async (payer: string) => {
    const other = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, msisdn: payer, skipValidation: true });
    await eventually(async () => (await c2bRow(other.transId)).suspense_entry_id !== null, "parked in suspense");
    return other;
  };
  /** Reconciliation past the deadline: M-Pesa asked about the pushes answers success, without a receipt. */
  const queryPushes = async () => {
    h.clock.advance(h.config.stkDeadlineMs + 20);
    await internal.reconcilePending({ limit: 100 });
  };

  test("a push whose callback is lost and whose payment C2B parked in suspense (naming nothing), then reported paid by STK query (no receipt): the tip is held, funded by the parked payment, and credited once", async () => {
    const w = await worker();
    const push = await lostCallbackPush(w);
    await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, transId: push.receipt, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(push.receipt)).suspense_entry_id !== null, "parked in suspense");
    await queryPushes();
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW, "not credited from clearing: its money is the parked payment's");
    const tied = await c2bRow(push.receipt);
    assert.deepEqual([tied.resolution, tied.tip_id, tied.resolved_by], ["matched", push.tipId, "stk-query"]);
    assert.equal(await h.balance(w.id), 0n);
    await assert.rejects(adminClient.resolveSuspensePayment({ receipt: push.receipt, action: { case: "refund", value: true }, note: "customer asked" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /already resolved \(matched/.test(e.rawMessage), "support cannot refund what the tip holds");
    await adminClient.reviewTip({ tipId: push.tipId, approve: true, note: "one payment, reported twice" });
    await eventually(async () => (await h.balance(w.id)) === 9500n, "credited from suspense");
    await queryPushes();
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1], "credited once");
    assert.ok(await h.trialBalanced());
  });

  test("a push whose callback is lost, reported paid by STK query first (credited from clearing, no receipt), then its C2B confirmation naming nothing: recorded as the tip's payment, not parked, never paid twice; another number's payment is parked", async () => {
    const { w, push } = await paidByQueryFirst();
    await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, transId: push.receipt, msisdn: push.payer, skipValidation: true });
    const recorded = await c2bRow(push.receipt);
    assert.deepEqual([recorded.outcome, recorded.tip_id, recorded.resolution, recorded.suspense_entry_id], ["duplicate", push.tipId, "none", null], "not parked in suspense");
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, push.receipt, "the tip has its receipt now");
    assert.equal(await alerts(push.tipId, "CALLBACK_MISMATCH"), 1, "support is told of the tie");
    await assert.rejects(adminClient.resolveSuspensePayment({ receipt: push.receipt, action: { case: "refund", value: true }, note: "customer asked" }), (e: ConnectError) => e.code === Code.NotFound);
    // The same amount from another number, naming nothing, at the same time: a payment of its own, parked.
    const other = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, msisdn: "254711000999", skipValidation: true });
    assert.equal((await c2bRow(other.transId)).outcome, "suspense");
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1]);
    assert.ok(await h.trialBalanced());
  });

  test("a push reported paid by STK query first (no receipt), then a paybill payment of the same amount from the same number to another worker's revoked code: parked in suspense for support, not taken as the tip's payment", async () => {
    const { w, push } = await paidByQueryFirst();
    const other = await worker();
    await qr.revokeQrCode({ qrCodeId: other.code.qrCodeId, reason: "card lost" }, other.as);
    const paid = await h.sim.c2b.pay({ billRefNumber: other.code.shortCode, amount: 100, msisdn: push.payer, skipValidation: true });
    const row = await c2bRow(paid.transId);
    // Before: recorded as a duplicate of the tip, which took its receipt; nothing in suspense for support to match or refund.
    assert.deepEqual([row.outcome, row.resolution], ["suspense", "open"]);
    assert.match(row.reason, /revoked/);
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, null);
    assert.deepEqual([await h.balance(w.id), await h.balance(other.id)], [9500n, 0n]);
    // The tip's own confirmation still finds it (and no receiptless tip of this number is left for later tests' payments).
    const { account_reference: reference } = await tipRow(push.tipId);
    await h.sim.c2b.pay({ billRefNumber: reference, amount: 100, transId: push.receipt, msisdn: push.payer, skipValidation: true });
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, push.receipt);
    assert.ok(await h.trialBalanced());
  });

  test("a push whose callback is lost, reported paid by STK query first (credited from clearing, no receipt), then its C2B confirmation naming the tip's reference: recorded as the tip's payment, which takes its receipt; credited once", async () => {
    const { w, push } = await paidByQueryFirst();
    const { account_reference: reference } = await tipRow(push.tipId);
    await h.sim.c2b.pay({ billRefNumber: reference, amount: 100, transId: push.receipt, msisdn: push.payer, skipValidation: true });
    // Before, nothing recorded it: the tip's row as read before it took the receipt had none, and the payment was answered as a repeat.
    const recorded = await c2bRow(push.receipt);
    assert.deepEqual([recorded?.outcome, recorded?.tip_id, recorded?.suspense_entry_id], ["duplicate", push.tipId, null], "recorded as the tip's payment");
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, push.receipt, "the tip has its receipt now");
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1], "credited once");
    assert.ok(await h.trialBalanced());
  });

  /** A push paid by STK query first (no receipt), then a paybill payment naming its reference under another receipt: taken for the tip's (it could be). */
  const paybillTakenForQueriedTip = async () => {
    const { w, push } = await paidByQueryFirst();
    const row = await tipRow(push.tipId);
    const second = await h.sim.c2b.pay({ billRefNumber: row.account_reference, amount: 100, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(second.transId))?.outcome === "duplicate", "taken for the tip's payment");
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, second.transId);
    return { w, push, row, second };
  };

  test("a push reported paid by STK query first (no receipt), then a paybill payment naming the tip's reference under another receipt, then the push's late callback: the paybill one was a second payment, parked in suspense for support; the tip takes the push's receipt; credited once", async () => {
    const { w, push, row, second } = await paybillTakenForQueriedTip();
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, push.receipt, push.payer))).status, 200);
    // Before, the paybill payment stayed the tip's 'duplicate': in clearing, credited to no one, nothing for support to refund.
    const parked = await c2bRow(second.transId);
    assert.deepEqual([parked.outcome, parked.resolution, parked.tip_id], ["suspense", "open", null]);
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, push.receipt, "the tip has its push's receipt");
    await internal.reconcilePending({ limit: 100 });
    await eventually(async () => (await c2bRow(second.transId)).suspense_entry_id !== null, "moved from clearing to suspense");
    assert.equal(await alerts(push.tipId, "CALLBACK_MISMATCH"), 1, "support is told");
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1], "credited once");
    assert.ok(await h.trialBalanced());
  });

  test("as above, but the push's own paybill confirmation came before its callback (parked as a second payment for the tip): nothing moves again, the tip keeps the paybill payment, credited once", async () => {
    const { w, push, row, second } = await paybillTakenForQueriedTip();
    await h.sim.c2b.pay({ billRefNumber: row.account_reference, amount: 100, transId: push.receipt, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(push.receipt))?.outcome === "suspense", "the push's payment parked as a second one");
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, push.receipt, push.payer))).status, 200);
    // Parking the paybill payment too would leave two payments in suspense and one credit: three postings for two payments.
    assert.deepEqual([(await c2bRow(second.transId)).outcome, (await tipRow(push.tipId)).mpesa_receipt], ["duplicate", second.transId]);
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1], "credited once");
    assert.ok(await h.trialBalanced());
  });

  test("a push slow to arrive, its tip paid by the paybill under the tip's reference first, then the push paid too: its callback's payment is parked in suspense for support, the tip keeps the paybill payment, credited once; the callback again parks nothing more", async () => {
    const w = await worker();
    const push = await lostCallbackPush(w);
    const row = await tipRow(push.tipId);
    const paybill = await h.sim.c2b.pay({ billRefNumber: row.account_reference, amount: 100, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(paybill.transId))?.outcome === "tip", "the paybill payment paid the tip");
    await eventually(async () => (await h.balance(w.id)) === 9500n, "credited");
    for (let i = 0; i < 2; i++) assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, push.receipt, push.payer))).status, 200);
    // Before, only flagged: the push's payment stayed in clearing, in no suspense list, nothing for support to refund or place.
    const parked = await c2bRow(push.receipt);
    assert.deepEqual([parked.outcome, parked.resolution, parked.tip_id, parked.amount_minor, parked.bill_ref_number], ["suspense", "open", null, 10000n, row.account_reference]);
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, paybill.transId, "the tip keeps the payment that paid it");
    await internal.reconcilePending({ limit: 100 });
    await eventually(async () => (await c2bRow(push.receipt)).suspense_entry_id !== null, "moved from clearing to suspense");
    const told = await h.t.db.pool.query("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1 AND reason = 'CALLBACK_MISMATCH' ORDER BY created_at", [push.tipId]);
    assert.match(told.rows[0].detail, new RegExp(`^the push's callback names ${push.receipt}, a second payment for this tip, paid by ${paybill.transId} first`));
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1], "credited once");
    assert.ok(await h.trialBalanced());
  });

  test("a push paid and credited by its callback, its payment confirmed by C2B too, then a callback naming another receipt: one push, one payment; nothing is parked, the tip keeps its receipt, flagged", async () => {
    const w = await worker();
    const payer = phone();
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: payer } });
    await eventually(async () => (await h.balance(w.id)) === 9500n, "credited by its callback");
    const row = await tipRow(tip!.tipId);
    await h.sim.c2b.pay({ billRefNumber: row.account_reference, amount: 100, transId: row.mpesa_receipt, msisdn: row.phone, skipValidation: true });
    await eventually(async () => (await c2bRow(row.mpesa_receipt))?.outcome === "duplicate", "its own payment confirmed");
    const other = `OTH${randomUUID().replace(/-/g, "").slice(0, 7).toUpperCase()}`;
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, lateSuccess(row, other, row.phone))).status, 200);
    // Parked, the push's own payment (or one that never was) would move from clearing to suspense beside its credit.
    assert.deepEqual([await c2bRow(other), (await c2bRow(row.mpesa_receipt)).outcome, (await tipRow(tip!.tipId)).mpesa_receipt], [undefined, "duplicate", row.mpesa_receipt]);
    assert.equal(await alerts(tip!.tipId, "CALLBACK_MISMATCH"), 1);
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1], "credited once");
  });

  test("a lost callback's C2B confirmation naming nothing and its STK query's success (no receipt), decided at the same time: the query waits for the parking and holds the tip from it, never credits from clearing beside a parked payment", async () => {
    const w = await worker();
    const push = await lostCallbackPush(w);
    const lockWaits = async (wait: string, words: string) => (await h.t.db.pool.query(
      "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = ANY($1::text[]) AND query LIKE $2",
      [wait.split(","), `${words}%`])).rows.length > 0;
    // A row of the receipt left uncommitted: the confirmation stops at its parking insert, after its look for a receiptless tip (none yet).
    const holder = await h.t.db.pool.connect();
    let queried: Promise<unknown> | undefined;
    try {
      await holder.query("BEGIN");
      await holder.query(`INSERT INTO payment.c2b_payments (trans_id, callback_id, transaction_type, business_short_code, bill_ref_number, amount_minor, trans_time, outcome)
        VALUES ($1, $2, 'x', 'x', 'x', 0, 'x', 'duplicate')`, [push.receipt, randomUUID()]);
      const confirmed = h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, transId: push.receipt, msisdn: push.payer, skipValidation: true });
      await eventually(() => lockWaits("transactionid", "INSERT INTO payment.c2b_payments"), "the confirmation parks, waiting at its insert");
      let settled = false;
      queried = queryPushes().then((r) => r, (e: unknown) => e).finally(() => { settled = true; });
      // Without a lock both take, the query decides here, unseen by the confirmation and not seeing its payment: credited from clearing.
      await eventually(async () => settled || (await lockWaits("advisory", "")), "the query decided, or waiting for the parking");
      await holder.query("ROLLBACK");
      await confirmed;
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      holder.release();
    }
    assert.equal(await queried, undefined);
    const parked = await c2bRow(push.receipt);
    assert.deepEqual([parked.outcome, parked.resolution, parked.tip_id], ["suspense", "matched", push.tipId], "the parked payment funds the tip: support can neither refund nor match it");
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW, "not credited from clearing too");
    await adminClient.reviewTip({ tipId: push.tipId, approve: true, note: "one payment, reported twice" });
    await eventually(async () => (await h.balance(w.id)) === 9500n, "credited from suspense");
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1], "credited once");
    assert.ok(await h.trialBalanced());
  });

  for (const fate of ["refunded", "matched to another worker's code"] as const) {
    test(`a push whose callback is lost, reported paid by STK query (no receipt), when the only parked payment of its number and amount was ${fate} by support: held for review, not failed (a second payment would be lost), never paid twice`, async () => {
      const [w, coded] = [await worker(), await worker("Wanjiru")];
      const push = await lostCallbackPush(w);
      // Another payment of the same number and amount, naming nothing, soon after the push: parked, then placed by support.
      const other = await parkedPaymentFrom(push.payer);
      const action = fate === "refunded" ? { case: "refund" as const, value: true } : { case: "matchAccountReference" as const, value: coded.code.shortCode };
      await adminClient.resolveSuspensePayment({ receipt: other.transId, action, note: "the customer called" });
      await queryPushes();
      const held = (await pay.getTip({ tipId: push.tipId })).tip!;
      assert.equal(held.status, TipStatus.HELD_FOR_REVIEW, "the placed payment may be a second one: an admin decides");
      const words = (await h.t.db.pool.query("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1 AND action = 'hold'", [push.tipId])).rows.map((r) => r.detail as string);
      assert.ok(words.some((d) => d.includes(other.transId) && /by support\. If it was this tip's payment, reject/.test(d)), "the alert names the placed payment");
      assert.equal((await c2bRow(other.transId)).resolution, fate === "refunded" ? "refund" : "matched", "the placed payment is left as support decided");
      // The tip's own payment confirmed by C2B, naming nothing: recorded as the tip's, not parked.
      await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, transId: push.receipt, msisdn: push.payer, skipValidation: true });
      assert.deepEqual([(await c2bRow(push.receipt)).outcome, (await tipRow(push.tipId)).mpesa_receipt], ["duplicate", push.receipt]);
      await adminClient.reviewTip({ tipId: push.tipId, approve: true, note: "two payments" });
      await eventually(async () => (await h.balance(w.id)) === 9500n, "credited from suspense");
      await queryPushes();
      const codedMinor = fate === "refunded" ? 0n : 9500n;
      assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id), await h.balance(coded.id)], [9500n, 1, codedMinor], "two payments, each paid once");
      assert.ok(await h.trialBalanced());
    });
  }

  test("a tip held because the only parked payment fitting its STK query's success was refunded, whose callback then arrives late naming that very payment: its approval is refused, never refunded and credited", async () => {
    const w = await worker();
    const push = await lostCallbackPush(w);
    const other = await parkedPaymentFrom(push.payer);
    await adminClient.resolveSuspensePayment({ receipt: other.transId, action: { case: "refund", value: true }, note: "the customer called" });
    await queryPushes();
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    // The push's callback, late: its receipt is the refunded payment's (it was this tip's payment after all).
    const row = await tipRow(push.tipId);
    const callback = lateSuccess(row, other.transId, push.payer);
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, callback)).status, 200);
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, other.transId);
    await assert.rejects(adminClient.reviewTip({ tipId: push.tipId, approve: true, note: "looks fine" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /refunded to the customer by support: approving would pay it twice/.test(e.rawMessage));
    const rejected = (await adminClient.reviewTip({ tipId: push.tipId, approve: false, note: "refunded already" })).tip!;
    assert.deepEqual([rejected.status, rejected.resultCode], [TipStatus.FAILED, "refunded"], "the customer reads that the payment was refunded, not that it will be");
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [0n, 0]);
    assert.ok(await h.trialBalanced());
  });

  test("a tip held because the only parked payment fitting its STK query's success was matched to a code by support, whose callback then arrives late naming that very payment (held by the match's tip, so not recorded on it): its approval is refused, never credited twice", async () => {
    const [w, coded] = [await worker(), await worker("Wanjiru")];
    const push = await lostCallbackPush(w);
    const other = await parkedPaymentFrom(push.payer);
    const match = { receipt: other.transId, action: { case: "matchAccountReference" as const, value: coded.code.shortCode }, note: "meant for Wanjiru" };
    // The code's worker, staff too, matches no payment to their own code.
    await assert.rejects(h.t.client(PaymentAdminService, { subject: coded.id, roles: ["worker", "admin"], stepUp: true }).resolveSuspensePayment(match),
      (e: ConnectError) => e.code === Code.PermissionDenied && e.rawMessage === "match_account_reference: this is your own account's; another admin must decide it");
    await adminClient.resolveSuspensePayment(match);
    await eventually(async () => (await h.balance(coded.id)) === 9500n, "the match credited its code's worker");
    await queryPushes();
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    const row = await tipRow(push.tipId);
    const callback = lateSuccess(row, other.transId, push.payer);
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, callback)).status, 200);
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, null, "the match's tip holds the receipt");
    await assert.rejects(adminClient.reviewTip({ tipId: push.tipId, approve: true, note: "looks fine" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /credited as another tip: approving would pay it twice/.test(e.rawMessage));
    const rejected = (await adminClient.reviewTip({ tipId: push.tipId, approve: false, note: "matched already" })).tip!;
    assert.deepEqual([rejected.status, rejected.resultCode], [TipStatus.FAILED, "paid_elsewhere"]);
    assert.deepEqual([await h.balance(w.id), await h.balance(coded.id)], [0n, 9500n]);
    // The rejected tip takes no later payment of its number and amount: it is parked for support, not lost.
    const next = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(next.transId)).suspense_entry_id !== null, "parked in suspense");
    assert.ok(await h.trialBalanced());
  });

  /** A platform account's KES balance, summed from its postings (wallet keeps none on system accounts). */
  const systemBalance = async (kind: AccountKind) => BigInt((await h.t.db.pool.query(
    `SELECT COALESCE(sum(p.amount_minor), 0)::text AS b FROM wallet.postings p JOIN wallet.accounts a USING (account_id)
      WHERE a.kind = $1 AND a.owner_id = '' AND a.currency = 'KES'`, [kind])).rows[0].b);
  const clearingAndSuspense = async () => [await systemBalance(AccountKind.MPESA_CLEARING), await systemBalance(AccountKind.SUSPENSE)];

  for (const fate of ["refunded", "paid_elsewhere"] as const) {
    test(`a tip held from clearing because the only parked payment fitting its STK query's success was ${fate === "refunded" ? "refunded" : "matched"} by support, rejected once its late callback names that payment: the hold's suspense money goes back to clearing, once`, async () => {
      const [w, coded] = [await worker(), await worker("Wanjiru")];
      const push = await lostCallbackPush(w);
      const other = await parkedPaymentFrom(push.payer);
      const action = fate === "refunded" ? { case: "refund" as const, value: true } : { case: "matchAccountReference" as const, value: coded.code.shortCode };
      await adminClient.resolveSuspensePayment({ receipt: other.transId, action, note: "the customer called" });
      if (fate === "paid_elsewhere") await eventually(async () => (await h.balance(coded.id)) === 9500n, "the match credited its code's worker");
      const beforeHold = await clearingAndSuspense();
      await queryPushes();
      await eventually(async () => (await tipRow(push.tipId)).credit_entry_id !== null, "the hold posted");
      const held = await clearingAndSuspense();
      assert.deepEqual([held[0] - beforeHold[0], held[1] - beforeHold[1]], [-10000n, 10000n], "held from clearing into suspense");
      const row = await tipRow(push.tipId);
      const callback = lateSuccess(row, other.transId, push.payer);
      assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, callback)).status, 200);
      const rejected = (await adminClient.reviewTip({ tipId: push.tipId, approve: false, note: "the same payment" })).tip!;
      assert.deepEqual([rejected.status, rejected.resultCode], [TipStatus.FAILED, fate]);
      assert.deepEqual(await clearingAndSuspense(), beforeHold, "clearing and suspense back where they were before the hold");
      // Retried (its answer lost, say): the rejected tip again, and the reversal under the tip's key posts nothing more.
      assert.deepEqual((await adminClient.reviewTip({ tipId: push.tipId, approve: false, note: "again" })).tip!.status, TipStatus.FAILED);
      const ledger = new Ledger(h.t.ctx);
      await ledger.suspenseToClearing({ key: `${row.credit_key}:spent`, receipt: row.credit_key, amountMinor: 10000n, description: `Tip ${push.tipId} rejected: its hold was the payment support had already placed` });
      assert.deepEqual(await clearingAndSuspense(), beforeHold, "posted once");
      assert.equal((await h.t.db.pool.query("SELECT count(*)::int AS n FROM wallet.entries WHERE idempotency_key = $1", [`${row.credit_key}:spent`])).rows[0].n, 1);
      assert.deepEqual([await h.balance(w.id), await h.balance(coded.id)], [0n, fate === "refunded" ? 0n : 9500n]);
      assert.ok(await h.trialBalanced());
    });
  }

  test("a held tip approved as two payments, whose callback then arrives late naming the payment support refunded: flagged as paid twice, for support", async () => {
    const w = await worker();
    const push = await lostCallbackPush(w);
    const other = await parkedPaymentFrom(push.payer);
    await adminClient.resolveSuspensePayment({ receipt: other.transId, action: { case: "refund", value: true }, note: "the customer called" });
    await queryPushes();
    await adminClient.reviewTip({ tipId: push.tipId, approve: true, note: "two payments, I think" });
    await eventually(async () => (await h.balance(w.id)) === 9500n, "credited from suspense");
    const row = await tipRow(push.tipId);
    const callback = lateSuccess(row, other.transId, push.payer);
    for (let i = 0; i < 2; i++) assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, callback)).status, 200);
    const flags = (await h.t.db.pool.query("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1 AND detail LIKE '%the payment was paid twice'", [push.tipId])).rows;
    assert.equal(flags.length, 1, "flagged, once");
    assert.equal(await h.balance(w.id), 9500n);
  });

  test("a held tip's approval racing its late callback that names the refunded payment: the callback's write committed while the approval waits is seen, never refunded and credited", async () => {
    const w = await worker();
    const push = await lostCallbackPush(w);
    const other = await parkedPaymentFrom(push.payer);
    await adminClient.resolveSuspensePayment({ receipt: other.transId, action: { case: "refund", value: true }, note: "the customer called" });
    await queryPushes();
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    // The late callback's transaction, holding the tip's row as it records the receipt; the approval starts meanwhile.
    const callback = await h.t.db.pool.connect();
    let approval: Promise<unknown> | undefined;
    try {
      await callback.query("BEGIN");
      await callback.query("SELECT 1 FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [push.tipId]);
      const pid = (await callback.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
      approval = adminClient.reviewTip({ tipId: push.tipId, approve: true, note: "looks fine" }).then(() => undefined, (e: unknown) => e);
      await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", [pid])).rows.length > 0, "the approval waits for the callback");
      await callback.query("UPDATE payment.tips SET mpesa_receipt = $2 WHERE tip_id = $1", [push.tipId, other.transId]);
      await callback.query("COMMIT");
      const refused = await approval;
      assert.ok(refused instanceof ConnectError && refused.code === Code.FailedPrecondition && /refunded to the customer by support/.test(refused.rawMessage), `refused: ${String(refused)}`);
    } finally {
      await callback.query("ROLLBACK").catch(() => undefined);
      callback.release();
      await approval;
    }
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [0n, 0]);
    assert.ok(await h.trialBalanced());
  });

  test("a push whose callback is lost, reported paid by STK query (no receipt): an open parked payment of its number and amount is tied before an earlier one support refunded", async () => {
    const w = await worker();
    const push = await lostCallbackPush(w);
    const refunded = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(refunded.transId)).suspense_entry_id !== null, "parked in suspense");
    await adminClient.resolveSuspensePayment({ receipt: refunded.transId, action: { case: "refund", value: true }, note: "the customer called" });
    await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, transId: push.receipt, msisdn: push.payer, skipValidation: true });
    await eventually(async () => (await c2bRow(push.receipt)).suspense_entry_id !== null, "parked in suspense");
    await queryPushes();
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    const tied = await c2bRow(push.receipt);
    assert.deepEqual([tied.resolution, tied.tip_id, tied.resolved_by], ["matched", push.tipId, "stk-query"], "funded by the open payment");
    await adminClient.reviewTip({ tipId: push.tipId, approve: true, note: "one payment, reported twice" });
    await eventually(async () => (await h.balance(w.id)) === 9500n, "credited from suspense");
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1]);
    assert.ok(await h.trialBalanced());
  });

  test("an STK query's success (no receipt) whose fitting parked payments are each taken by another tip while it decides, every time it tries: held for review, not left pending to expire, never paid twice", async () => {
    const w = await worker();
    const push = await lostCallbackPush(w);
    // The tip their callbacks will name: any other tip (a paybill one here, so that no query decides it).
    const paid = await h.sim.c2b.pay({ billRefNumber: w.code.shortCode, amount: 50 });
    const taker = (await c2bRow(paid.transId)).tip_id as string;
    const parked: string[] = [];
    for (let i = 0; i < 3; i++) {
      const p = await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, msisdn: push.payer, skipValidation: true });
      await eventually(async () => (await c2bRow(p.transId)).suspense_entry_id !== null, "parked in suspense");
      parked.push(p.transId);
    }
    // Each payment's STK callback deciding it for the other tip, uncommitted: the query reads all three open and waits for each in turn.
    const holders = await Promise.all(parked.map(() => h.t.db.pool.connect()));
    let queried: Promise<unknown> | undefined;
    try {
      const pids: number[] = [];
      for (const [i, c] of holders.entries()) {
        await c.query("BEGIN");
        await c.query("SELECT payment.lock_receipt($1)", [parked[i]]);
        await c.query("UPDATE payment.c2b_payments SET resolution = 'matched', tip_id = $2, resolved_by = 'stk-callback', resolved_at = now() WHERE trans_id = $1", [parked[i], taker]);
        pids.push((await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
      }
      queried = queryPushes().then((r) => r, (e: unknown) => e);
      for (const [i, c] of holders.entries()) {
        await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", [pids[i]])).rows.length > 0,
          `the query waits for payment ${i + 1}'s callback`);
        await c.query("COMMIT");
      }
      assert.equal(await queried, undefined);
    } finally {
      for (const c of holders) {
        await c.query("ROLLBACK").catch(() => undefined);
        c.release();
      }
    }
    assert.equal((await pay.getTip({ tipId: push.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW, "M-Pesa said paid: decided, for an admin");
    const words = (await h.t.db.pool.query("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1 AND action = 'hold'", [push.tipId])).rows.map((r) => r.detail as string);
    assert.ok(words.some((d) => d.includes(`was taken by tip ${taker} meanwhile`)), "the alert says the payment went to another tip");
    assert.equal((await tipRow(push.tipId)).mpesa_receipt, null, "tied to none of them");
    const before = await h.balance(w.id);
    await adminClient.reviewTip({ tipId: push.tipId, approve: true, note: "its own payment" });
    await eventually(async () => (await h.balance(w.id)) === before + 9500n, "credited from suspense");
    await queryPushes();
    assert.equal(await h.balance(w.id), before + 9500n, "once");
    assert.ok(await h.trialBalanced());
  });

  test("a payment parked in suspense whose admin match was posted (its answer lost), then called back by STK for a tip: the held tip's approval is refused, never credited twice", async () => {
    const [w, coded] = [await worker(), await worker("Wanjiru")];
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: phone("0003") } });
    const sim = await eventually(async () => h.sim.transactions().find((t) => t.checkoutRequestId && t.accountReference === tip!.paybillAccountReference), "the push");
    await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, transId: sim.receipt!, skipValidation: true, msisdn: NO_TIP_PAYER });
    await eventually(async () => (await c2bRow(sim.receipt!)).suspense_entry_id !== null, "parked in suspense");
    // What an admin's match to another worker's code leaves when wallet posts it after the call's deadline: that worker credited, the payment still open.
    await new Ledger(h.t.ctx).releaseFromSuspense({ key: `c2b:${sim.receipt}:matched`, receipt: sim.receipt!, recipient: { workerId: coded.id }, chargedMinor: 10000n, workerMinor: 9500n });
    const row = await tipRow(tip!.tipId);
    const callback = { Body: { stkCallback: { MerchantRequestID: sim.merchantRequestId, CheckoutRequestID: sim.checkoutRequestId, ResultCode: 0, ResultDesc: "ok",
      CallbackMetadata: { Item: [{ Name: "Amount", Value: 100 }, { Name: "MpesaReceiptNumber", Value: sim.receipt }, { Name: "TransactionDate", Value: 20260101120000 }, { Name: "PhoneNumber", Value: Number(sim.phone) }] } } } };
    assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, callback)).status, 200);
    assert.equal((await pay.getTip({ tipId: tip!.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    await assert.rejects(adminClient.reviewTip({ tipId: tip!.tipId, approve: true, note: "paid once, reported twice" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /^tip_id: an admin's match of its paybill payment \w+ was posted/.test(e.rawMessage));
    assert.deepEqual([await h.balance(w.id), await h.balance(coded.id)], [0n, 9500n], "the payment's money credited once, by the match");
    const rejected = await adminClient.reviewTip({ tipId: tip!.tipId, approve: false, note: "the match paid it" });
    assert.equal(rejected.tip!.status, TipStatus.FAILED);
    assert.deepEqual([await h.balance(w.id), await h.balance(coded.id)], [0n, 9500n]);
    assert.ok(await h.trialBalanced());
  });

  /**
   * A pushed tip whose callback is lost and whose payment's C2B confirmation, naming nothing, was parked in suspense; and its STK callback to send.
   * `posted`: false when the wallet refuses the parking's move into suspense (walletRefusesSuspense).
   */
  const parkedPush = async (w: { id: string }, { posted = true } = {}) => {
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: phone("0003") } });
    const sim = await eventually(async () => h.sim.transactions().find((t) => t.checkoutRequestId && t.accountReference === tip!.paybillAccountReference), "the push");
    await h.sim.c2b.pay({ billRefNumber: "TTIP", amount: 100, transId: sim.receipt!, skipValidation: true, msisdn: NO_TIP_PAYER });
    await eventually(async () => (await c2bRow(sim.receipt!))?.suspense_entry_id !== (posted ? null : undefined), "parked in suspense");
    const row = await tipRow(tip!.tipId);
    const callback = { Body: { stkCallback: { MerchantRequestID: sim.merchantRequestId, CheckoutRequestID: sim.checkoutRequestId, ResultCode: 0, ResultDesc: "ok",
      CallbackMetadata: { Item: [{ Name: "Amount", Value: 100 }, { Name: "MpesaReceiptNumber", Value: sim.receipt }, { Name: "TransactionDate", Value: 20260101120000 }, { Name: "PhoneNumber", Value: Number(sim.phone) }] } } } };
    const cancelled = { Body: { stkCallback: { MerchantRequestID: sim.merchantRequestId, CheckoutRequestID: sim.checkoutRequestId, ResultCode: 1032, ResultDesc: "Request cancelled by user" } } };
    return { tipId: tip!.tipId, receipt: sim.receipt!, callBack: async (body: object = callback) => assert.equal((await h.post(`/mpesa/stk/${row.callback_token}`, body)).status, 200), cancelled };
  };
  /** The callback lost: reconciliation's query (success, no receipt) credits the tip from clearing; the parked payment fits no tip. */
  const creditedByQuery = (tipId: string) => eventually(async () => {
    h.clock.advance(h.config.stkDeadlineMs + 20);
    await internal.reconcilePending({ limit: 100 });
    return (await tipRow(tipId)).credit_entry_id;
  }, "credited by the query");
  const events = async (subject: string, tipId: string) =>
    (await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.outbox WHERE subject = $1 AND position($2 in encode(payload, 'escape')) > 0", [subject, tipId])).rows[0].n;

  test("a tip credited by its STK query while its payment waited in suspense, tied to no tip, then called back naming that payment: support is told, and the payment can be neither refunded nor matched (the worker has its money)", async () => {
    const [w, coded] = [await worker(), await worker("Wairimu")];
    const p = await parkedPush(w);
    await creditedByQuery(p.tipId);
    await eventually(async () => (await h.balance(w.id)) === 9500n, "the worker credited");
    for (let i = 0; i < 2; i++) await p.callBack();
    assert.equal((await tipRow(p.tipId)).mpesa_receipt, p.receipt);
    const flagged = await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.fraud_alerts WHERE tip_id = $1 AND position($2 in detail) > 0", [p.tipId, `receipt ${p.receipt} is this tip's payment`]);
    assert.equal(flagged.rows[0].n, 1, "told once");
    // Before, a refund gave the customer back money the worker had, and a match failed INTERNAL after crediting the code's worker.
    for (const action of [{ case: "refund" as const, value: true }, { case: "matchAccountReference" as const, value: coded.code.shortCode }]) {
      const refused = await adminClient.resolveSuspensePayment({ receipt: p.receipt, action, note: "the customer called" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
      assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
      assert.match(refused.rawMessage, new RegExp(`^receipt: ${p.receipt} is tip ${p.tipId}'s payment`));
    }
    assert.deepEqual([await h.balance(w.id), await h.balance(coded.id)], [9500n, 0n]);
    assert.equal((await c2bRow(p.receipt)).resolution, "open");
  });

  for (const decision of ["match", "refund"] as const) {
    test(`a ${decision} of a parked payment racing the late callback that names it for the tip a query credited: decided under the receipt's lock, never INTERNAL${decision === "refund" ? ", never refunded beside the credit" : ""}`, async () => {
      const [w, coded] = [await worker(), await worker("Wairimu")];
      const p = await parkedPush(w);
      await creditedByQuery(p.tipId);
      const waitingOn = async (event: string) => (await h.t.db.pool.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = $1", [event])).rows.length > 0;
      // The wallet stalled, so the decision stops at its wallet call, after its first check of the receipt.
      const wallet = await h.t.db.pool.connect();
      let decided: Promise<unknown> | undefined;
      try {
        await wallet.query("BEGIN");
        await wallet.query("LOCK TABLE wallet.entries IN SHARE MODE");
        const action = decision === "match" ? { case: "matchAccountReference" as const, value: coded.code.shortCode } : { case: "refund" as const, value: true };
        decided = adminClient.resolveSuspensePayment({ receipt: p.receipt, action, note: "the customer called" }).then((r) => r, (e: unknown) => ConnectError.from(e));
        await eventually(() => waitingOn("relation"), "the decision waits for the wallet");
        let calledBack = false;
        const answered = p.callBack().finally(() => { calledBack = true; });
        await eventually(async () => calledBack || (await waitingOn("advisory")), "the callback done, or waiting for the receipt");
        await wallet.query("ROLLBACK");
        await answered;
      } finally {
        await wallet.query("ROLLBACK").catch(() => undefined);
        wallet.release();
      }
      const answer = await decided;
      if (decision === "match") {
        // Before, the callback gave the query's tip the receipt during the wallet call: the paybill tip was refused it (INTERNAL) after the code's worker was paid.
        assert.ok(!(answer instanceof ConnectError), `matched: ${String(answer)}`);
        assert.deepEqual([(await c2bRow(p.receipt)).resolution, await h.balance(coded.id)], ["matched", 9500n]);
        const told = (await h.t.db.pool.query<{ detail: string }>("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1", [p.tipId])).rows.map((r) => r.detail);
        assert.ok(told.some((d) => d.includes(p.receipt) && /paid twice/.test(d)), `support told the payment was paid twice: ${told.join(" / ")}`);
      } else {
        // Before, the refund committed after the callback had recorded the receipt on the credited tip: the customer had it back too.
        assert.ok(answer instanceof ConnectError && answer.code === Code.FailedPrecondition, `refused: ${String(answer)}`);
        assert.match(answer.rawMessage, new RegExp(`^receipt: ${p.receipt} is tip ${p.tipId}'s payment`));
        assert.equal((await c2bRow(p.receipt)).resolution, "open");
      }
      assert.equal(await h.balance(w.id), 9500n);
      assert.ok(await h.trialBalanced());
    });
  }


  for (const [decision, code, words] of [["refunded", "refunded", /refunded to you/], ["matched to another worker's code", "paid_elsewhere", /already credited as another tip/]] as const) {
    test(`a payment parked in suspense and ${decision} by support, then called back by STK for its tip: the tip fails saying why, nothing is credited, even when M-Pesa is asked again`, async () => {
      const [w, coded] = [await worker(), await worker("Wanjiru")];
      const p = await parkedPush(w);
      const action = code === "refunded" ? { case: "refund" as const, value: true } : { case: "matchAccountReference" as const, value: coded.code.shortCode };
      await adminClient.resolveSuspensePayment({ receipt: p.receipt, action, note: "the customer called" });
      const codedMinor = code === "refunded" ? 0n : 9500n;
      await eventually(async () => (await h.balance(coded.id)) === codedMinor, "the support's decision applied");
      await p.callBack();
      const failed = (await pay.getTip({ tipId: p.tipId })).tip!;
      assert.equal(failed.status, TipStatus.FAILED);
      assert.equal(failed.resultCode, code);
      assert.match(failed.resultMessage, words, "the customer's tip page says why");
      assert.equal(await events("ttip.payment.tip_failed", p.tipId), 1);
      // Delivered again, and M-Pesa asked about the push (it says success, without a receipt): still nothing credited.
      await p.callBack();
      h.clock.advance(h.config.stkDeadlineMs + 20);
      await internal.reconcilePending({ limit: 100 });
      assert.equal((await pay.getTip({ tipId: p.tipId })).tip!.status, TipStatus.FAILED);
      assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id), await h.balance(coded.id)], [0n, 0, codedMinor], "one payment paid once");
      assert.equal(await events("ttip.payment.tip_failed", p.tipId), 1, "failed once");
      assert.equal(await events("ttip.payment.tip_succeeded", p.tipId), 0);
      assert.equal(await alerts(p.tipId, "CALLBACK_MISMATCH"), 1, "flagged once however often the callback comes");
      assert.ok(await h.trialBalanced());
    });
  }

  test("a success whose receipt support refunded, for a tip already failed, is flagged once even when another alert about the tip begins with the same words", async () => {
    const w = await worker();
    const p = await parkedPush(w);
    await adminClient.resolveSuspensePayment({ receipt: p.receipt, action: { case: "refund", value: true }, note: "the customer called" });
    await p.callBack(p.cancelled);
    assert.equal((await pay.getTip({ tipId: p.tipId })).tip!.status, TipStatus.FAILED);
    const spentWords = async () => (await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.fraud_alerts WHERE tip_id = $1 AND detail LIKE $2", [p.tipId, `%was refunded to the customer%`])).rows[0].n;
    // Another alert about the tip whose words happen to begin as the spent receipt's flag does.
    await h.t.db.pool.query("INSERT INTO payment.fraud_alerts (alert_id, reason, action, tip_id, detail) VALUES ($1, 'CALLBACK_MISMATCH', 'flag', $2, $3)",
      [randomUUID(), p.tipId, `receipt ${p.receipt} was read out by the customer on a call`]);
    await p.callBack();
    await p.callBack();
    assert.equal(await spentWords(), 1, "flagged, once");
    assert.deepEqual([(await pay.getTip({ tipId: p.tipId })).tip!.status, await h.balance(w.id)], [TipStatus.FAILED, 0n]);
  });

  /** Until the returned function is called, the wallet refuses to post any paybill payment's move into suspense (as when it is down). */
  const walletRefusesSuspense = async () => {
    await h.t.db.pool.query("CREATE FUNCTION wallet.test_refuse_suspense() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'wallet down'; END $$");
    await h.t.db.pool.query(`CREATE TRIGGER test_refuse_suspense BEFORE INSERT ON wallet.entries FOR EACH ROW
      WHEN (NEW.description LIKE 'Paybill payment % in suspense') EXECUTE FUNCTION wallet.test_refuse_suspense()`);
    return async () => {
      await h.t.db.pool.query("DROP TRIGGER test_refuse_suspense ON wallet.entries");
      await h.t.db.pool.query("DROP FUNCTION wallet.test_refuse_suspense()");
    };
  };

  test("a held tip funded by a parked payment whose move into suspense the wallet has not posted yet: its approval posts it first, or is refused while it cannot; suspense never goes below zero", async () => {
    const w = await worker();
    const before = await clearingAndSuspense();
    const walletBack = await walletRefusesSuspense();
    let p: Awaited<ReturnType<typeof parkedPush>>;
    try {
      p = await parkedPush(w, { posted: false });
      await p.callBack();
      assert.equal((await pay.getTip({ tipId: p.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
      // Before, approved at once out of a suspense that did not hold the payment yet: suspense KES 100 below zero.
      const refused = await adminClient.reviewTip({ tipId: p.tipId, approve: true, note: "paid once, reported twice" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
      assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
      assert.match(refused.rawMessage, new RegExp(`^tip_id: its money was to come from paybill payment ${p.receipt}, whose KES 100 is not in suspense yet .*try again shortly$`));
      assert.deepEqual([await h.balance(w.id), ...(await clearingAndSuspense())], [0n, ...before], "nothing moved");
      assert.equal((await pay.getTip({ tipId: p.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW, "still held for a decision");
    } finally {
      await walletBack();
    }
    // The wallet back, before reconciliation's pass: the approval moves the payment into suspense, then out to the worker.
    assert.equal((await c2bRow(p.receipt)).suspense_entry_id, null);
    await adminClient.reviewTip({ tipId: p.tipId, approve: true, note: "paid once, reported twice" });
    await eventually(async () => (await h.balance(w.id)) === 9500n, "credited from suspense");
    assert.ok((await c2bRow(p.receipt)).suspense_entry_id, "posted by the approval");
    const after = await clearingAndSuspense();
    assert.deepEqual([after[0] - before[0], after[1]], [-10000n, before[1]], "suspense took the payment in from clearing and paid it out, no more");
    assert.ok(await h.trialBalanced());
  });

  test("rejecting a held tip funded by a payment parked in suspense puts the payment back on support's open list, where a refund closes it; the tip stays failed, nothing is credited", async () => {
    const w = await worker();
    const p = await parkedPush(w);
    await p.callBack();
    assert.equal((await pay.getTip({ tipId: p.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    const rejected = await adminClient.reviewTip({ tipId: p.tipId, approve: false, note: "not this tip's money" });
    assert.equal(rejected.tip!.status, TipStatus.FAILED);
    const reopened = await c2bRow(p.receipt);
    assert.deepEqual([reopened.resolution, reopened.tip_id], ["open", null]);
    assert.match(reopened.reason, /reopened: tip .* rejected after review/);
    const { payments } = await adminClient.listSuspensePayments({ page: { pageSize: 100 } });
    assert.ok(payments.some((x) => x.receipt === p.receipt && x.resolution === "open"), "listed for support to place");
    // The callback delivered again changes nothing: the rejected tip keeps its decision and does not take the receipt back.
    await p.callBack();
    assert.equal((await tipRow(p.tipId)).mpesa_receipt, null);
    const refunded = await adminClient.resolveSuspensePayment({ receipt: p.receipt, action: { case: "refund", value: true }, note: "customer asked" });
    assert.equal(refunded.payment!.resolution, "refund");
    assert.equal((await pay.getTip({ tipId: p.tipId })).tip!.status, TipStatus.FAILED);
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [0n, 0]);
    assert.ok(await h.trialBalanced());
  });

  test("a new paybill payment to a tip rejected after review (its funding payment reopened) waits in suspense for support, not taken for the tip's duplicate", async () => {
    const w = await worker();
    const p = await parkedPush(w);
    await p.callBack();
    await adminClient.reviewTip({ tipId: p.tipId, approve: false, note: "not this tip's money" });
    const { tip } = await pay.getTip({ tipId: p.tipId });
    const transId = `N${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    assert.equal((await h.post(`/c2b/${TOKEN}/confirmation`, confirmation(transId, tip!.paybillAccountReference, "100.00"))).status, 200);
    // Before, recorded as the tip's duplicate: its money left in clearing, in no list support reads, with no way to refund it.
    const parked = await c2bRow(transId);
    assert.deepEqual([parked.outcome, parked.resolution], ["suspense", "open"]);
    assert.match(parked.reason, /a second payment for tip reference .*, rejected after review/);
    await eventually(async () => (await c2bRow(transId)).suspense_entry_id, "its money posted to suspense");
    assert.equal(await h.balance(w.id), 0n, "nothing credited");
    assert.ok(await h.trialBalanced());
  });

  test("after an approval refused because an admin's match of the parked payment was posted (its answer lost), the rejection reopens the payment: a refund is refused, the match to that code records its paybill tip once", async () => {
    const [w, coded] = [await worker(), await worker("Wanjiru")];
    const p = await parkedPush(w);
    await new Ledger(h.t.ctx).releaseFromSuspense({ key: `c2b:${p.receipt}:matched`, receipt: p.receipt, recipient: { workerId: coded.id }, chargedMinor: 10000n, workerMinor: 9500n });
    await p.callBack();
    await assert.rejects(adminClient.reviewTip({ tipId: p.tipId, approve: true, note: "paid once, reported twice" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /reject this tip, then match the payment again to that code/.test(e.rawMessage));
    await adminClient.reviewTip({ tipId: p.tipId, approve: false, note: "the match paid it" });
    assert.equal((await c2bRow(p.receipt)).resolution, "open");
    await assert.rejects(adminClient.resolveSuspensePayment({ receipt: p.receipt, action: { case: "refund", value: true }, note: "customer asked" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /match of this payment was posted/.test(e.rawMessage));
    const asked = { receipt: p.receipt, action: { case: "matchAccountReference" as const, value: coded.code.shortCode }, note: "as posted" };
    const matched = await adminClient.resolveSuspensePayment(asked);
    assert.equal(matched.payment!.resolution, "matched");
    const recorded = await tipRow(matched.tip!.tipId);
    assert.deepEqual([recorded.channel, recorded.status, recorded.worker_id, recorded.mpesa_receipt], ["paybill", "succeeded", coded.id, p.receipt]);
    const again = await adminClient.resolveSuspensePayment({ ...asked, note: "clicked twice" });
    assert.equal(again.tip!.tipId, matched.tip!.tipId);
    assert.equal(await events("ttip.payment.tip_succeeded", matched.tip!.tipId), 1, "recorded as a tip once");
    assert.equal(await events("ttip.payment.tip_succeeded", p.tipId), 0);
    assert.deepEqual([await h.balance(w.id), await h.balance(coded.id), await h.walletEntries(coded.id)], [0n, 9500n, 1], "the payment's money credited once, by the match");
    assert.ok(await h.trialBalanced());
  });

  test("a held tip's approval that failed part way (its payment's match key closed, the release refused), then rejected: the reopened payment can still be matched, once, and the customer is told support decides", async () => {
    const [w, coded] = [await worker(), await worker("Wanjiru")];
    const p = await parkedPush(w);
    await p.callBack();
    // What a rejection that closed the approval's key first leaves an approval: the payment's match key closed, then the release refused.
    await new Ledger(h.t.ctx).closeApproval(`c2b:${p.receipt}:approved`, { cause: { case: "mpesaReceipt", value: p.receipt } });
    await assert.rejects(adminClient.reviewTip({ tipId: p.tipId, approve: true, note: "paid once, reported twice" }), (e: ConnectError) => e.code === Code.FailedPrecondition);
    const rejected = (await adminClient.reviewTip({ tipId: p.tipId, approve: false, note: "not this tip's money" })).tip!;
    assert.deepEqual([rejected.status, rejected.resultCode], [TipStatus.FAILED, "review_rejected_reopened"]);
    assert.match(rejected.resultMessage, /with support, who will either refund it or pass it on/, "no refund promised: the payment may be matched");
    assert.notEqual(resultMessage("review_rejected_reopened", "sw"), resultMessage("review_rejected", "sw"));
    const reopened = await c2bRow(p.receipt);
    assert.deepEqual([reopened.resolution, reopened.match_round], ["open", 1], "matched from now on under a key nothing holds");
    // An older replica (in a rollout) answering the redelivered callback writes the receipt back as if learned late: the tip keeps none.
    await h.t.db.pool.query("UPDATE payment.tips SET mpesa_receipt = $2 WHERE tip_id = $1 AND NOT EXISTS (SELECT 1 FROM payment.tips WHERE mpesa_receipt = $2)", [p.tipId, p.receipt]);
    assert.equal((await tipRow(p.tipId)).mpesa_receipt, null, "the receipt stays with the reopened payment");
    const asked = { receipt: p.receipt, action: { case: "matchAccountReference" as const, value: coded.code.shortCode }, note: "meant for Wanjiru" };
    const matched = await adminClient.resolveSuspensePayment(asked);
    assert.equal(matched.payment!.resolution, "matched");
    assert.equal((await adminClient.resolveSuspensePayment({ ...asked, note: "clicked twice" })).tip!.tipId, matched.tip!.tipId);
    await assert.rejects(adminClient.resolveSuspensePayment({ receipt: p.receipt, action: { case: "refund", value: true }, note: "customer asked" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /already resolved \(matched/.test(e.rawMessage));
    await eventually(async () => (await h.balance(coded.id)) === 9500n, "the match credited its code's worker");
    assert.deepEqual([await h.balance(w.id), await h.balance(coded.id), await h.walletEntries(coded.id)], [0n, 9500n, 1], "the payment's money credited once, by the match");
    assert.ok(await h.trialBalanced());
  });

  test("a payment reopened into a later match round: an older replica's refund (in a rollout: it closes round 0's key only) is not written, so another admin's match in the new round pays once, never beside a refund", async () => {
    const [w, coded] = [await worker(), await worker("Wanjiru")];
    const p = await parkedPush(w);
    await p.callBack();
    await adminClient.reviewTip({ tipId: p.tipId, approve: false, note: "not this tip's money" });
    assert.deepEqual([(await c2bRow(p.receipt)).resolution, (await c2bRow(p.receipt)).match_round], ["open", 1]);
    // The older replica's refund: round 0's key closed (it was, before the reopening), then its statement, which names no round.
    const old = await h.t.db.pool.query(
      "UPDATE payment.c2b_payments SET resolution = 'refund', resolved_by = $2, resolved_at = now(), reason = reason || ' | refund: ' || $3 WHERE trans_id = $1 AND resolution = 'open' RETURNING *",
      [p.receipt, "old-replica-admin", "customer asked"]);
    assert.equal(old.rowCount, 0, "not written: its key is not the payment's round's");
    const matched = await adminClient.resolveSuspensePayment({ receipt: p.receipt, action: { case: "matchAccountReference", value: coded.code.shortCode }, note: "meant for Wanjiru" });
    assert.equal(matched.payment!.resolution, "matched");
    await eventually(async () => (await h.balance(coded.id)) === 9500n, "the match credited its code's worker");
    assert.deepEqual([await h.balance(w.id), await h.balance(coded.id), (await c2bRow(p.receipt)).resolution], [0n, 9500n, "matched"], "matched, not refunded as well");
    assert.ok(await h.trialBalanced());
  });

  test("a refund of a parked payment committed while its STK callback is deciding (its first read saw the payment open) waits for the callback's receipt lock: the tip is held and the refund refused, never refunded and credited", async () => {
    const w = await worker();
    const p = await parkedPush(w);
    const backendWaiting = async (wait: string, words: string) => (await h.t.db.pool.query(
      "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = ANY($1::text[]) AND query LIKE $2",
      [wait.split(","), `${words}%`])).rows.length > 0;
    // The tip's row held, so the callback's decision stops just after its first read (payment open, receipt's lock taken).
    const holder = await h.t.db.pool.connect();
    let refund: Promise<unknown> | undefined;
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [p.tipId]);
      const answered = p.callBack();
      // The decision's locking read (lockTipForOutcome; its text is longer than pg_stat_activity keeps, so known by its start).
      await eventually(() => backendWaiting("transactionid,tuple", "SELECT t.tip_id, "), "the callback has read the payment open and waits for the tip");
      let settled = false;
      refund = adminClient.resolveSuspensePayment({ receipt: p.receipt, action: { case: "refund", value: true }, note: "customer asked" })
        .then((r) => r, (e: unknown) => e).finally(() => { settled = true; });
      // Without the receipt's lock the refund commits here, before the callback decides.
      await eventually(async () => settled || (await backendWaiting("advisory", "SELECT payment.lock_receipt(")), "the refund done, or waiting for the receipt");
      await holder.query("ROLLBACK");
      await answered;
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      holder.release();
    }
    const refused = await refund;
    assert.deepEqual([(await c2bRow(p.receipt)).resolution, (await pay.getTip({ tipId: p.tipId })).tip!.status, await h.balance(w.id)],
      ["matched", TipStatus.HELD_FOR_REVIEW, 0n], "held for review from suspense: not refunded to the customer and credited from clearing too");
    assert.ok(refused instanceof ConnectError && refused.code === Code.FailedPrecondition && /already resolved \(matched by stk-callback\)/.test(refused.rawMessage),
      `the refund lost to the callback: ${String(refused)}`);
    // The approval credits it from suspense once: the refund's closing of the match's key does not stand in its way.
    await adminClient.reviewTip({ tipId: p.tipId, approve: true, note: "paid once" });
    assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [9500n, 1]);
    assert.ok(await h.trialBalanced());
  });

  test("a refund committed without the receipt's lock (an older replica's, in a rollout) while an STK callback is deciding: the callback's hold reads it refunded and fails the tip, never credits it from clearing", async () => {
    const w = await worker();
    const p = await parkedPush(w);
    const holder = await h.t.db.pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM payment.tips WHERE tip_id = $1 FOR UPDATE", [p.tipId]);
      const answered = p.callBack();
      // The decision's locking read (lockTipForOutcome; known by its start, as pg_stat_activity cuts its text) saw the payment open.
      await eventually(async () => (await h.t.db.pool.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple') AND query LIKE 'SELECT t.tip_id, %'")).rows.length > 0,
        "the callback has read the payment open and waits for the tip");
      // The older replica's refund: its update alone, no receipt lock.
      await h.t.db.pool.query("UPDATE payment.c2b_payments SET resolution = 'refund', resolved_by = 'older replica', resolved_at = now() WHERE trans_id = $1 AND resolution = 'open'", [p.receipt]);
      await holder.query("ROLLBACK");
      await answered;
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      holder.release();
    }
    const failed = (await pay.getTip({ tipId: p.tipId })).tip!;
    assert.deepEqual([failed.status, failed.resultCode, await h.balance(w.id), await h.walletEntries(w.id)], [TipStatus.FAILED, "refunded", 0n, 0], "refunded, so not credited");
    assert.equal(await events("ttip.payment.tip_failed", p.tipId), 1);
    assert.equal((await c2bRow(p.receipt)).resolution, "refund");
    assert.ok(await h.trialBalanced());
  });

  test("an STK callback arriving while a paybill confirmation of its receipt is parking it in suspense waits for it, then is held, never credited twice", async () => {
    const w = await worker();
    // A push whose own callback is lost: the test sends it.
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: phone("0003") } });
    const sim = await eventually(async () => h.sim.transactions().find((t) => t.checkoutRequestId && t.accountReference === tip!.paybillAccountReference), "the push");
    const row = await eventually(async () => {
      const r = await tipRow(tip!.tipId);
      return r.checkout_request_id && r;
    }, "push answered");
    const callback = { Body: { stkCallback: { MerchantRequestID: sim.merchantRequestId, CheckoutRequestID: sim.checkoutRequestId, ResultCode: 0, ResultDesc: "ok",
      CallbackMetadata: { Item: [{ Name: "Amount", Value: 100 }, { Name: "MpesaReceiptNumber", Value: sim.receipt }, { Name: "TransactionDate", Value: 20260101120000 }, { Name: "PhoneNumber", Value: Number(sim.phone) }] } } } };
    // The confirmation's transaction as parkInSuspense runs it, caught between its insert and its commit.
    const confirmation = await h.t.db.pool.connect();
    try {
      await confirmation.query("BEGIN");
      await confirmation.query("SELECT payment.lock_receipt($1)", [sim.receipt]);
      await confirmation.query(
        `INSERT INTO payment.c2b_payments (trans_id, callback_id, transaction_type, business_short_code, bill_ref_number, amount_minor, trans_time, outcome, resolution)
         VALUES ($1, $2, 'Pay Bill', $3, 'TTIP', 10000, '20260101120000', 'suspense', 'open')`,
        [sim.receipt, randomUUID(), h.sim.options.shortcode],
      );
      const answered = h.post(`/mpesa/stk/${row.callback_token}`, callback);
      // The callback's statement has begun (its snapshot taken) and waits for the receipt.
      await eventually(async () => (await h.t.db.pool.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'")).rows.length > 0, "the callback waits for the receipt");
      await confirmation.query("COMMIT");
      assert.equal((await answered).status, 200);
    } finally {
      await confirmation.query("ROLLBACK").catch(() => undefined); // a no-op once committed
      confirmation.release();
    }
    assert.equal((await pay.getTip({ tipId: tip!.tipId })).tip!.status, TipStatus.HELD_FOR_REVIEW);
    assert.equal((await c2bRow(sim.receipt!)).resolution, "matched");
    assert.equal(await h.balance(w.id), 0n, "nothing credited from clearing a second time");
    assert.equal(await h.walletEntries(w.id), 0);
  });

  test("the 'prompt never arrived' fallback: paying the tip's reference from the menu pays that very tip", async () => {
    const w = await worker();
    // The push is lost (never answered, no callback): the customer pays the paybill instead.
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(150), payment: { case: "mpesaPhone", value: phone("1037") } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.FAILED, "push timed out");
    const paid = await h.sim.c2b.pay({ billRefNumber: tip!.paybillAccountReference.toLowerCase(), amount: 150 });
    assert.equal(paid.completed, true);
    const after = await eventually(async () => {
      const t = (await pay.getTip({ tipId: tip!.tipId })).tip!;
      return t.status === TipStatus.SUCCEEDED && t;
    }, "the same tip succeeded");
    assert.equal(after.mpesaReceipt, paid.transId);
    const net = BigInt((await tipRow(tip!.tipId)).worker_receives_minor);
    assert.ok(net > 14000n && net < 15000n, "KES 150 less the quoted fee");
    await eventually(async () => (await h.balance(w.id)) === net, "credited once, less the fee");
    // A second payment to a paid tip's reference is refused at validation, and where validation is off
    // (or did not answer) it is not credited again: it waits in suspense.
    const refused = await h.sim.c2b.pay({ billRefNumber: tip!.paybillAccountReference, amount: 150 });
    assert.equal(refused.completed, false);
    assert.ok("resultCode" in refused.validation && refused.validation.resultCode === "C2B00012");
    const again = await h.sim.c2b.pay({ billRefNumber: tip!.paybillAccountReference, amount: 150, skipValidation: true });
    assert.equal((await c2bRow(again.transId)).outcome, "suspense");
    assert.match((await c2bRow(again.transId)).reason, /second payment/);
    assert.equal(await h.balance(w.id), net);
  });

  test("a failed push's reference is refused at validation once its worker is blocked, and taken again once unblocked", async () => {
    const w = await worker();
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(150), payment: { case: "mpesaPhone", value: phone("1037") } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.FAILED, "push timed out");
    // Auth blocks the worker (payment's copy, as its consumer records it), before the customer pays from the menu.
    await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, payouts_on_hold, account_blocked, block_changed_at) VALUES ($1, true, true, now())", [w.id]);
    const refused = await h.sim.c2b.pay({ billRefNumber: tip!.paybillAccountReference, amount: 150 });
    // Before, accepted: the failed tip turned succeeded and credited the worker blocked since, as no code of theirs would be.
    assert.equal(refused.completed, false);
    assert.ok("resultCode" in refused.validation && refused.validation.resultCode === "C2B00012");
    assert.equal((await tipRow(tip!.tipId)).status, "failed");
    assert.equal(await h.balance(w.id), 0n);
    await h.t.db.pool.query("UPDATE payment.payout_settings SET account_blocked = false WHERE worker_id = $1", [w.id]);
    const paid = await h.sim.c2b.pay({ billRefNumber: tip!.paybillAccountReference, amount: 150 });
    assert.equal(paid.completed, true);
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.SUCCEEDED, "the tip paid once unblocked");
  });

  test("a confirmation of KES 0 naming a tip's reference applies nothing to the tip: parked with nothing posted; the tip's real payment then pays it", async () => {
    const w = await worker();
    // The push is lost (never answered, no callback): the customer pays the paybill instead.
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(150), payment: { case: "mpesaPhone", value: phone("1037") } });
    await eventually(async () => (await pay.getTip({ tipId: tip!.tipId })).tip!.status === TipStatus.FAILED, "push timed out");
    // A confirmation no M-Pesa payment makes (a broken relay's, a replayed test's): no money, the tip's reference.
    const zero = `Z${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    const answered = await h.post(`/c2b/${TOKEN}/confirmation`, {
      TransactionType: "Pay Bill", TransID: zero, TransTime: "20260101120000", TransAmount: "0.00", BusinessShortCode: h.sim.options.shortcode,
      BillRefNumber: tip!.paybillAccountReference, MSISDN: "2547 ***** 126", FirstName: "X",
    });
    assert.equal(answered.status, 200);
    const parked = await c2bRow(zero);
    // Before, decided as the tip's payment: held for review with nothing received, and the receipt taken from its real payment.
    assert.deepEqual([parked.outcome, parked.amount_minor, parked.suspense_entry_id], ["suspense", 0n, null], "parked, nothing posted");
    assert.match(parked.reason, /below KES 1/);
    const still = await tipRow(tip!.tipId);
    assert.deepEqual([still.status, still.mpesa_receipt, still.credit_key], ["failed", null, null], "the tip left as it was");
    const paid = await h.sim.c2b.pay({ billRefNumber: tip!.paybillAccountReference, amount: 150 });
    const after = await eventually(async () => {
      const t = (await pay.getTip({ tipId: tip!.tipId })).tip!;
      return t.status === TipStatus.SUCCEEDED && t;
    }, "the tip paid by its real payment");
    assert.equal(after.mpesaReceipt, paid.transId);
    const net = BigInt((await tipRow(tip!.tipId)).worker_receives_minor);
    await eventually(async () => (await h.balance(w.id)) === net, "credited once, less the fee");
    assert.ok(await h.trialBalanced());
  });

  test("a paybill payment to a venue's own code goes to the venue's pool, once", async () => {
    const venueId = randomUUID();
    const manager = { headers: callerHeaders(randomUUID(), "venue_manager") };
    await qr.putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Java House" }, manager);
    const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.VENUE, ownerId: venueId, idempotencyKey: randomUUID() }, manager);
    const paid = await h.sim.c2b.pay({ billRefNumber: qrCode!.shortCode, amount: 100, confirmations: 2 });
    assert.equal(paid.completed, true);
    const row = await c2bRow(paid.transId);
    assert.equal(row.outcome, "tip");
    const tip = await eventually(async () => {
      const t = await tipRow(row.tip_id);
      return t.credit_entry_id && t;
    }, "pool credit posted");
    assert.equal(tip.worker_id, null);
    assert.equal(tip.venue_id, venueId);
    assert.equal(tip.credit_kind, "venue");
    const entries = await h.t.db.pool.query("SELECT count(*)::int AS n FROM wallet.entries WHERE cause_ref = $1", [paid.transId]);
    assert.equal(entries.rows[0].n, 1, "one wallet entry for the receipt");
  });

  test("unknown, mistyped, revoked and over-limit references land in suspense with nothing credited; a slip is suggested, never applied", async () => {
    const w = await worker();
    const code = w.code.shortCode;
    const slip = (code[0] === "A" ? "B" : "A") + code.slice(1);
    const revoked = await worker();
    await qr.revokeQrCode({ qrCodeId: revoked.code.qrCodeId, reason: "card lost" }, revoked.as);
    // A short code without external validation: everything reaches confirmation.
    const cases = [
      { ref: "QQQQQQ9", amount: 100, why: /no code has the reference/ },
      { ref: slip, amount: 100, why: new RegExp(`close to ${code}`) },
      { ref: revoked.code.shortCode, amount: 100, why: /revoked/ },
      { ref: code, amount: 30_000, why: /over the tip limit/ },
      { ref: "", amount: 100, why: /no account reference/ },
    ];
    for (const c of cases) {
      const paid = await h.sim.c2b.pay({ billRefNumber: c.ref, amount: c.amount, skipValidation: true, msisdn: NO_TIP_PAYER });
      const row = await c2bRow(paid.transId);
      assert.equal(row.outcome, "suspense", c.ref);
      assert.match(row.reason, c.why);
      assert.equal(row.resolution, "open");
      assert.ok(row.suspense_entry_id, "the money is recorded in the suspense account");
      if (c.ref === slip) assert.deepEqual(row.suggestions, [code]);
    }
    assert.equal(await h.balance(w.id), 0n);
    assert.equal(await h.balance(revoked.id), 0n);
    assert.ok(await h.trialBalanced());
    const { payments } = await adminClient.listSuspensePayments({ page: { pageSize: 100 } });
    const mine = payments.filter((p) => cases.some((c) => c.ref && p.accountReference === c.ref));
    assert.equal(mine.length, 4);
    assert.deepEqual(mine.find((p) => p.accountReference === slip)!.suggestions, [code]);
    // An admin's match naming nothing once read as a reference is their mistake, named, not an outage (UNAVAILABLE).
    const open = mine.find((p) => p.accountReference === "QQQQQQ9")!;
    for (const typed of [" - ", "--"]) {
      const e = await adminClient.resolveSuspensePayment({ receipt: open.receipt, action: { case: "matchAccountReference", value: typed }, note: "meant for someone" }).then(
        () => assert.fail("accepted"), (err: unknown) => ConnectError.from(err));
      assert.equal(Code[e.code], Code[Code.InvalidArgument], typed);
      assert.match(e.rawMessage, /^match_account_reference: /);
    }
    assert.equal((await c2bRow(open.receipt)).resolution, "open");
  });

  test("a code that takes no tips (its worker switched off, or the code expired) is refused at validation and parked in suspense when confirmed: nothing credited", async () => {
    const off = await worker("Switched Off");
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: off.id, displayName: "Switched Off", active: false }, { headers: callerHeaders(admin.subject, "admin") });
    const expired = await worker("Expired Card");
    await h.t.db.pool.query("UPDATE qr.qr_codes SET expires_at = now() - interval '1 minute' WHERE qr_code_id = $1", [expired.code.qrCodeId]);
    for (const [w, why] of [[off, /its worker is not taking tips/], [expired, /the code has expired/]] as const) {
      const refused = await h.sim.c2b.pay({ billRefNumber: w.code.shortCode, amount: 100, msisdn: NO_TIP_PAYER });
      assert.ok("resultCode" in refused.validation && refused.validation.resultCode === "C2B00012", `validation of ${w.code.shortCode}`);
      // Before, both were credited: a paybill tip to a code the tip page refuses.
      const paid = await h.sim.c2b.pay({ billRefNumber: w.code.shortCode, amount: 100, skipValidation: true, msisdn: NO_TIP_PAYER });
      const row = await c2bRow(paid.transId);
      assert.deepEqual([row.outcome, row.resolution], ["suspense", "open"]);
      assert.match(row.reason, why);
      assert.equal(await h.balance(w.id), 0n);
    }
    assert.ok(await h.trialBalanced());
  });

  test("a worker's code that is T and five digits (T23456) is a code, not a tip's reference: paid by paybill, it is credited", async () => {
    const w = await worker("Tabitha");
    await h.t.db.pool.query("UPDATE qr.qr_codes SET short_code = 'T23456', account_reference = 'T23456' WHERE qr_code_id = $1", [w.code.qrCodeId]);
    const paid = await h.sim.c2b.pay({ billRefNumber: "T23456", amount: 200 });
    // Before, it was looked up as a tip's reference: refused at validation, or parked in suspense when confirmed.
    assert.ok("resultCode" in paid.validation && paid.validation.resultCode === "0", JSON.stringify(paid.validation));
    const row = await c2bRow(paid.transId);
    assert.equal(row.outcome, "tip", row.reason);
    await eventually(async () => (await h.balance(w.id)) === 19000n, "worker credited KES 190");
  });

  test("a suspense payment whose posting fails every pass waits behind the others: passes of one each post the rest", async () => {
    const [stuck, next] = [await h.sim.c2b.pay({ billRefNumber: "QQQQQQ8", amount: 100, skipValidation: true, msisdn: NO_TIP_PAYER }), await h.sim.c2b.pay({ billRefNumber: "QQQQQQ8", amount: 200, skipValidation: true, msisdn: NO_TIP_PAYER })];
    // Both unposted and older than any other: stuck's amount no longer what the wallet holds under its key (refused every
    // time, ALREADY_EXISTS); next's entry is there, so posting it again answers it.
    await h.t.db.pool.query("UPDATE payment.c2b_payments SET suspense_entry_id = NULL, received_at = '2001-01-01T00:00:00Z', amount_minor = 300 WHERE trans_id = $1", [stuck.transId]);
    await h.t.db.pool.query("UPDATE payment.c2b_payments SET suspense_entry_id = NULL, received_at = '2001-01-01T00:00:01Z' WHERE trans_id = $1", [next.transId]);
    for (let pass = 0; pass < 3; pass++) await internal.reconcilePending({ limit: 1 });
    assert.equal((await c2bRow(stuck.transId)).suspense_entry_id, null);
    assert.ok((await c2bRow(next.transId)).suspense_entry_id, "posted by a pass after the failing one's");
    assert.ok((await c2bRow(stuck.transId)).attempts >= 1);
    await h.t.db.pool.query("UPDATE payment.c2b_payments SET suspense_entry_id = 'set-aside' WHERE trans_id = $1", [stuck.transId]);
  });

  test("a parked confirmation of no money (KES 0) is not taken for an unposted suspense entry: passes of one each post the others", async () => {
    // KES 0 to a reference naming nothing: parked, with nothing to post (a broken relay's, a replayed one).
    const zero = `Z${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    const answered = await h.post(`/c2b/${TOKEN}/confirmation`, {
      TransactionType: "Pay Bill", TransID: zero, TransTime: "20260101120000", TransAmount: "0.00", BusinessShortCode: h.sim.options.shortcode,
      BillRefNumber: "QQQQQQ7", MSISDN: "2547 ***** 126", FirstName: "X",
    });
    assert.equal(answered.status, 200);
    const real = await h.sim.c2b.pay({ billRefNumber: "QQQQQQ7", amount: 100, skipValidation: true, msisdn: NO_TIP_PAYER });
    assert.deepEqual([(await c2bRow(zero)).outcome, (await c2bRow(real.transId)).outcome], ["suspense", "suspense"]);
    // Both unposted and older than any other, the empty one first; the real one's entry is there, so posting it again answers it.
    await h.t.db.pool.query("UPDATE payment.c2b_payments SET received_at = '2001-01-01T00:00:00Z' WHERE trans_id = $1", [zero]);
    await h.t.db.pool.query("UPDATE payment.c2b_payments SET suspense_entry_id = NULL, attempts = 0, received_at = '2001-01-01T00:00:01Z' WHERE trans_id = $1", [real.transId]);
    for (let pass = 0; pass < 3; pass++) await internal.reconcilePending({ limit: 1 });
    // Before, each pass took the empty one (nothing posted, its attempts never counted), ahead of every other for good.
    assert.ok((await c2bRow(real.transId)).suspense_entry_id, "posted by a pass");
    assert.equal((await c2bRow(zero)).suspense_entry_id, null, "nothing posted for no money");
    // Support cannot match it to a code: refused as such, not "try again shortly" (its entry will never be posted).
    const w = await worker();
    const refused = await adminClient.resolveSuspensePayment({ receipt: zero, action: { case: "matchAccountReference", value: w.code.shortCode }, note: "no money" })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
    assert.match(refused.rawMessage, /^receipt: .*no money/);
    assert.equal((await c2bRow(zero)).resolution, "open", "left for refund");
  });

  test("a confirmation above M-Pesa's KES 250,000 per transaction is parked as such, never posted nor matched; support is told and sees why", async () => {
    const w = await worker();
    // Above the cap no customer can pay: to a worker's code (over the tip limit too) and to a tip's reference, whose amount is not the tip's.
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(150), payment: { case: "mpesaPhone", value: phone("1037") } });
    for (const [reference, amount] of [[w.code.shortCode, "999999999999.00"], [tip!.paybillAccountReference, "250001"]]) {
      const transId = `Y${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
      const answered = await h.post(`/c2b/${TOKEN}/confirmation`, {
        TransactionType: "Pay Bill", TransID: transId, TransTime: "20260101120000", TransAmount: amount, BusinessShortCode: h.sim.options.shortcode,
        BillRefNumber: reference, MSISDN: "2547 ***** 126", FirstName: "X",
      });
      assert.equal(answered.status, 200);
      await internal.reconcilePending({ limit: 100 });
      const parked = await c2bRow(transId);
      assert.deepEqual([parked.outcome, parked.resolution, parked.tip_id, parked.suspense_entry_id], ["suspense", "open", null, null], `${reference}: parked, nothing posted to suspense`);
      const { payments } = await adminClient.listSuspensePayments({ page: { pageSize: 500 } });
      assert.match(payments.find((x) => x.receipt === transId)!.reason, /^OVER M-PESA'S CAP: KES [\d,.]+ is over the KES 250,000 a customer can pay in one transaction/, "support's list says why");
      const told = await h.t.db.pool.query("SELECT count(*)::int AS n FROM payment.fraud_alerts WHERE position($1 in detail) > 0 AND detail LIKE '%OVER M-PESA''S CAP%'", [transId]);
      assert.equal(told.rows[0].n, 1, "support is alerted");
      const refused = await adminClient.resolveSuspensePayment({ receipt: transId, action: { case: "matchAccountReference", value: w.code.shortCode }, note: "big" })
        .then(() => undefined, (e: unknown) => ConnectError.from(e));
      assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
      assert.match(refused.rawMessage, /^receipt: its amount \(KES [\d,.]+\) is over M-Pesa's KES 250,000 per transaction/);
      assert.equal((await c2bRow(transId)).resolution, "open", "left for support to check and close");
    }
    assert.equal((await tipRow(tip!.tipId)).mpesa_receipt, null, "the tip took no receipt");
    assert.equal(await h.balance(w.id), 0n);
    assert.ok(await h.trialBalanced());
  });

  /**
   * A pushed tip whose callback is lost, whose receipt a paybill confirmation of `amount`, which M-Pesa cannot move (over its cap by default), reported
   * (parked, nothing posted); and its STK success to send.
   */
  const neverMoneyTwin = async (w: { id: string }, amount = "250000.01") => {
    const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: phone("0003") } });
    const sim = await eventually(async () => h.sim.transactions().find((t) => t.checkoutRequestId && t.accountReference === tip!.paybillAccountReference), "the push");
    const answered = await h.post(`/c2b/${TOKEN}/confirmation`, {
      TransactionType: "Pay Bill", TransID: sim.receipt, TransTime: "20260101120000", TransAmount: amount, BusinessShortCode: h.sim.options.shortcode,
      BillRefNumber: tip!.paybillAccountReference, MSISDN: "2547 ***** 126", FirstName: "X",
    });
    assert.equal(answered.status, 200);
    const parked = await c2bRow(sim.receipt!);
    assert.deepEqual([parked.outcome, parked.resolution, parked.suspense_entry_id], ["suspense", "open", null], "parked as no money, nothing posted");
    const callback = { Body: { stkCallback: { MerchantRequestID: sim.merchantRequestId, CheckoutRequestID: sim.checkoutRequestId, ResultCode: 0, ResultDesc: "ok",
      CallbackMetadata: { Item: [{ Name: "Amount", Value: 100 }, { Name: "MpesaReceiptNumber", Value: sim.receipt }, { Name: "TransactionDate", Value: 20260101120000 }, { Name: "PhoneNumber", Value: Number(sim.phone) }] } } } };
    const token = (await tipRow(tip!.tipId)).callback_token;
    return { tipId: tip!.tipId, receipt: sim.receipt!, callBack: async () => assert.equal((await h.post(`/mpesa/stk/${token}`, callback)).status, 200) };
  };

  for (const c of [
    { parked: "over M-Pesa's cap", amount: "250000.01", reason: "OVER M-PESA'S CAP: ", words: "KES 250,000.01, over M-Pesa's KES 250,000 per transaction" },
    { parked: "below KES 1", amount: "0.50", reason: "an amount of 50 cents is below KES 1", words: "KES 0.50, below the KES 1 M-Pesa moves at least" },
  ]) {
    test(`an STK success naming the receipt of a confirmation parked ${c.parked}: held on its own amount from clearing, never from suspense; support sees why; approved once the parked one is closed, suspense as before`, async () => {
      const w = await worker();
      const before = await clearingAndSuspense();
      const p = await neverMoneyTwin(w, c.amount);
      await p.callBack();
      const held = await tipRow(p.tipId);
      // Before: held "from suspense" (credit key c2b:<receipt>) on the parked amount, which suspense never held.
      assert.deepEqual([held.status, held.credit_kind, held.credit_key, held.received_minor], ["held_for_review", "suspense", p.receipt, null], "held on the callback's KES 100");
      await eventually(async () => (await tipRow(p.tipId)).credit_entry_id !== null, "the hold posted");
      const hold = await clearingAndSuspense();
      assert.deepEqual([hold[0] - before[0], hold[1] - before[1]], [-10000n, 10000n], "KES 100 held from clearing into suspense");
      const parked = await c2bRow(p.receipt);
      assert.deepEqual([parked.resolution, parked.tip_id, parked.suspense_entry_id], ["open", null, null], "still support's to check and close");
      assert.ok(parked.reason.startsWith(c.reason), parked.reason);
      assert.match(parked.reason, new RegExp(` its receipt was named by tip ${p.tipId}'s STK success, held for review`));
      const why = await h.t.db.pool.query("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1 AND action = 'hold'", [p.tipId]);
      assert.match(why.rows.map((r) => r.detail).join("\n"), new RegExp(`receipt ${p.receipt} was also reported by a paybill confirmation of ${c.words} .*Held on this STK success \\(KES 100\\)`));
      // Support closes the parked confirmation (checked with Safaricom): it refunded nothing, so the tip's approval goes through.
      await adminClient.resolveSuspensePayment({ receipt: p.receipt, action: { case: "refund", value: true }, note: "Safaricom: corrupted amount" });
      await adminClient.reviewTip({ tipId: p.tipId, approve: true, note: "its own payment" });
      await eventually(async () => (await h.balance(w.id)) === 9500n, "credited KES 95 (KES 100 less the fee)");
      const after = await clearingAndSuspense();
      assert.deepEqual([after[0] - before[0], after[1]], [-10000n, before[1]], "suspense paid out what it took in from clearing, no more");
      assert.ok(await h.trialBalanced());
    });
  }

  test("a held tip funded by a payment parked over M-Pesa's cap (held so before such a payment was told apart): its approval is refused, nothing leaves suspense; rejected, the payment is support's again", async () => {
    const w = await worker();
    const p = await neverMoneyTwin(w);
    // What an STK success naming the parked receipt did before: the tip held from suspense on the parked amount, the payment taken for it.
    await h.t.db.pool.query("UPDATE payment.c2b_payments SET resolution = 'matched', tip_id = $2, resolved_by = 'stk-callback', resolved_at = now() WHERE trans_id = $1", [p.receipt, p.tipId]);
    await h.t.db.pool.query(`UPDATE payment.tips SET status = 'held_for_review', result_code = '0', mpesa_receipt = $1, credit_key = 'c2b:' || $1, credit_kind = 'suspense',
        credit_entry_id = 'c2b:' || $1, credited_at = now(), completed_at = now(), received_minor = 25000001 WHERE tip_id = $2`, [p.receipt, p.tipId]);
    const suspenseBefore = await systemBalance(AccountKind.SUSPENSE);
    const refused = await adminClient.reviewTip({ tipId: p.tipId, approve: true, note: "looks paid" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
    assert.match(refused.rawMessage, new RegExp(`^tip_id: its money was to come from paybill payment ${p.receipt}, whose KES 250,000.01 is over M-Pesa's KES 250,000 per transaction`));
    assert.deepEqual([await h.balance(w.id), await systemBalance(AccountKind.SUSPENSE)], [0n, suspenseBefore], "nothing paid out of suspense");
    assert.equal((await adminClient.reviewTip({ tipId: p.tipId, approve: false, note: "no such payment" })).tip!.status, TipStatus.FAILED);
    assert.deepEqual([(await c2bRow(p.receipt)).resolution, await systemBalance(AccountKind.SUSPENSE)], ["open", suspenseBefore]);
    assert.ok(await h.trialBalanced());
  });

  test("a confirmation on a tip's reference with cents, or at M-Pesa's cap, holds the tip on exactly what was paid, to the cent; approved, the worker gets that less the fee", async () => {
    const w = await worker();
    const held = async (paid: string) => {
      const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: phone("0003") } });
      const transId = `Y${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
      const answered = await h.post(`/c2b/${TOKEN}/confirmation`, {
        TransactionType: "Pay Bill", TransID: transId, TransTime: "20260101120000", TransAmount: paid, BusinessShortCode: h.sim.options.shortcode,
        BillRefNumber: tip!.paybillAccountReference, MSISDN: "2547 ***** 126", FirstName: "X",
      });
      assert.equal(answered.status, 200);
      const row = await tipRow(tip!.tipId);
      const said = await h.t.db.pool.query("SELECT detail FROM payment.fraud_alerts WHERE tip_id = $1 AND action = 'hold'", [tip!.tipId]);
      return { tipId: tip!.tipId, status: row.status, receivedMinor: row.received_minor as bigint, said: said.rows.map((r) => r.detail).join("\n") };
    };
    const cents = await held("99.99");
    assert.deepEqual([cents.status, cents.receivedMinor], ["held_for_review", 9999n]);
    assert.match(cents.said, /amount 99\.99 instead of 100/);
    const atCap = await held("250000.00");
    assert.deepEqual([atCap.status, atCap.receivedMinor], ["held_for_review", 25000000n]);
    assert.match(atCap.said, /amount 250000 instead of 100/);
    await adminClient.reviewTip({ tipId: cents.tipId, approve: true, note: "paid a cent short" });
    await eventually(async () => (await h.balance(w.id)) === 9499n, "KES 99.99 less the KES 5 fee quoted");
    assert.ok(await h.trialBalanced());
  });

  for (const c of [
    { what: "over M-Pesa's cap", amount: "250000.01", shown: "KES 250,000.01", reason: "OVER M-PESA'S CAP: KES 250,000.01 is over the KES 250,000" },
    { what: "of another amount", amount: "5000.00", shown: "KES 5,000", reason: "ANOTHER AMOUNT: KES 5,000, while the tip's payment with this receipt was KES 100" },
  ]) {
    test(`a confirmation ${c.what} of a receipt its tip's STK success already paid: recorded as a duplicate, nothing applied, and support is alerted once`, async () => {
      const w = await worker();
      const { tip } = await pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: w.id }, amount: KES(100), payment: { case: "mpesaPhone", value: phone() } });
      const paid = await eventually(async () => {
        const t = (await pay.getTip({ tipId: tip!.tipId })).tip!;
        return t.status === TipStatus.SUCCEEDED && t;
      }, "the tip paid by its STK success");
      await eventually(async () => (await h.balance(w.id)) === 9500n, "credited KES 95");
      const body = confirmation(paid.mpesaReceipt, tip!.paybillAccountReference, c.amount);
      for (let delivery = 0; delivery < 2; delivery++) assert.equal((await h.post(`/c2b/${TOKEN}/confirmation`, body)).status, 200);
      const row = await c2bRow(paid.mpesaReceipt);
      assert.deepEqual([row.outcome, row.tip_id, row.suspense_entry_id], ["duplicate", tip!.tipId, null], "a duplicate of the tip's payment, nothing posted");
      assert.ok(row.reason.startsWith(c.reason), row.reason);
      // Before, no alert at all: the amount M-Pesa cannot have reported was taken silently for the tip's repeat.
      const told = await h.t.db.pool.query("SELECT tip_id, detail FROM payment.fraud_alerts WHERE position($1 in detail) > 0", [paid.mpesaReceipt]);
      assert.equal(told.rows.length, 1, "support is alerted, once");
      assert.equal(told.rows[0].tip_id, tip!.tipId);
      assert.ok(told.rows[0].detail.startsWith(`paybill payment ${paid.mpesaReceipt} (${c.shown}, reference "${tip!.paybillAccountReference}") ` +
        `recorded as a duplicate of tip ${tip!.tipId}'s payment, nothing applied: ${c.reason}`), told.rows[0].detail);
      assert.equal(await h.balance(w.id), 9500n, "nothing more credited");
      assert.ok(await h.trialBalanced());
    });
  }

  test("a parked confirmation of 1 to 99 cents (M-Pesa moves whole shillings) is never money: nothing posted to suspense, by reconciliation either; a match is refused", async () => {
    const transId = `Z${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    assert.equal((await h.post(`/c2b/${TOKEN}/confirmation`, confirmation(transId, "QQQQQQ6", "0.99"))).status, 200);
    await h.t.db.pool.query("UPDATE payment.c2b_payments SET received_at = '2001-01-01T00:00:00Z' WHERE trans_id = $1", [transId]);
    const suspenseBefore = await systemBalance(AccountKind.SUSPENSE);
    await internal.reconcilePending({ limit: 100 });
    const parked = await c2bRow(transId);
    // Before, 99 cents moved from M-Pesa clearing into suspense, and matching it credited a worker with money no payment brought.
    assert.deepEqual([parked.outcome, parked.amount_minor, parked.suspense_entry_id, parked.attempts], ["suspense", 99n, null, 0], "parked, nothing posted, never tried");
    assert.match(parked.reason, /below KES 1/);
    const w = await worker();
    const refused = await adminClient.resolveSuspensePayment({ receipt: transId, action: { case: "matchAccountReference", value: w.code.shortCode }, note: "cents" })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(refused?.code, Code.FailedPrecondition, String(refused));
    assert.match(refused.rawMessage, /^receipt: the payment carries no money \(KES 0\.99, below the KES 1 M-Pesa moves at least\)/);
    assert.deepEqual([(await c2bRow(transId)).resolution, await h.balance(w.id), await systemBalance(AccountKind.SUSPENSE)], ["open", 0n, suspenseBefore], "left for support to close");
    assert.ok(await h.trialBalanced());
  });

  test("a stored raw confirmation that cannot be applied on any pass waits behind the others: passes of one each apply the rest", async () => {
    const [stuck, next] = [await h.sim.c2b.pay({ billRefNumber: "QQQQQQ9", amount: 100, skipValidation: true, msisdn: NO_TIP_PAYER }), await h.sim.c2b.pay({ billRefNumber: "QQQQQQ9", amount: 200, skipValidation: true, msisdn: NO_TIP_PAYER })];
    const callbackOf = async (transId: string) => (await h.t.db.pool.query<{ callback_id: string; outcome: string; attempts: number }>(
      "SELECT callback_id, outcome, attempts FROM payment.callbacks WHERE source = 'mpesa_c2b' AND position($1 in convert_from(raw_body, 'UTF8')) > 0", [transId])).rows[0];
    const [stuckId, nextId] = [(await callbackOf(stuck.transId)).callback_id, (await callbackOf(next.transId)).callback_id];
    // Both stored but never applied (as if the process had died) and older than any other; stuck's recording refused every time.
    await h.t.db.pool.query("UPDATE payment.callbacks SET outcome = 'received', attempts = 0, received_at = '2001-01-01T00:00:00Z' WHERE callback_id = $1", [stuckId]);
    await h.t.db.pool.query("UPDATE payment.callbacks SET outcome = 'received', attempts = 0, received_at = '2001-01-01T00:00:01Z' WHERE callback_id = $1", [nextId]);
    const trigger = `c2b_test_refuse_${stuckId.replaceAll("-", "")}`;
    await h.t.db.pool.query(`CREATE FUNCTION payment.${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'recording refused'; END $$`);
    await h.t.db.pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE OF outcome ON payment.callbacks FOR EACH ROW
      WHEN (NEW.callback_id = '${stuckId}'::uuid AND NEW.outcome <> 'received') EXECUTE FUNCTION payment.${trigger}()`);
    try {
      for (let pass = 0; pass < 3; pass++) await internal.reconcilePending({ limit: 1 });
      assert.equal((await callbackOf(stuck.transId)).outcome, "received");
      assert.ok((await callbackOf(stuck.transId)).attempts >= 1);
      assert.notEqual((await callbackOf(next.transId)).outcome, "received", "applied by a pass after the failing one's");
    } finally {
      await h.t.db.pool.query(`DROP TRIGGER ${trigger} ON payment.callbacks`);
      await h.t.db.pool.query(`DROP FUNCTION payment.${trigger}()`);
    }
    // Once PostgreSQL takes it, a pass applies it too.
    await internal.reconcilePending({ limit: 100 });
    assert.notEqual((await callbackOf(stuck.transId)).outcome, "received");
  });

  test("an admin matches a suspense payment to a worker (credited from suspense, once) or leaves it for refund", async () => {
    const w = await worker();
    const first = await h.sim.c2b.pay({ billRefNumber: "ZZZZZZ", amount: 300, skipValidation: true });
    const second = await h.sim.c2b.pay({ billRefNumber: "ZZZZZY", amount: 50, skipValidation: true });
    const matched = await adminClient.resolveSuspensePayment({ receipt: first.transId, action: { case: "matchAccountReference", value: w.code.shortCode }, note: "customer called, typo" });
    assert.equal(matched.payment!.resolution, "matched");
    assert.equal(matched.tip!.workerId, w.id);
    assert.equal(matched.tip!.channel, "paybill");
    await eventually(async () => (await h.balance(w.id)) === 28500n, "KES 285 credited");
    const again = await adminClient.resolveSuspensePayment({ receipt: first.transId, action: { case: "matchAccountReference", value: w.code.shortCode }, note: "clicked twice" });
    assert.equal(again.tip!.tipId, matched.tip!.tipId);
    assert.equal(await h.balance(w.id), 28500n);
    await assert.rejects(adminClient.resolveSuspensePayment({ receipt: first.transId, action: { case: "refund", value: true }, note: "changed mind" }), (e: ConnectError) => e.code === Code.FailedPrecondition);
    const refunded = await adminClient.resolveSuspensePayment({ receipt: second.transId, action: { case: "refund", value: true }, note: "customer asked" });
    assert.equal(refunded.payment!.resolution, "refund");
    await assert.rejects(adminClient.resolveSuspensePayment({ receipt: "AAAAAAAAAA", action: { case: "refund", value: true }, note: "none" }), (e: ConnectError) => e.code === Code.NotFound && /receipt/.test(e.message));
    await assert.rejects(h.t.client(PaymentAdminService).listSuspensePayments({}), (e: ConnectError) => e.code === Code.Unauthenticated || e.code === Code.PermissionDenied);
    assert.ok(await h.trialBalanced());
  });

  test("a match of a suspense payment already matched to another code is refused as already resolved, not answered as done; nothing more is credited", async () => {
    const [first, other] = [await worker(), await worker("Wanjiru")];
    const paid = await h.sim.c2b.pay({ billRefNumber: "ZZZZZU", amount: 300, skipValidation: true });
    const matched = await adminClient.resolveSuspensePayment({ receipt: paid.transId, action: { case: "matchAccountReference", value: first.code.shortCode }, note: "customer called" });
    assert.equal(matched.tip!.workerId, first.id);
    await assert.rejects(adminClient.resolveSuspensePayment({ receipt: paid.transId, action: { case: "matchAccountReference", value: other.code.shortCode }, note: "another admin, another code" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /^receipt: already resolved \(matched by /.test(e.rawMessage), "another code is another decision");
    const again = await adminClient.resolveSuspensePayment({ receipt: paid.transId, action: { case: "matchAccountReference", value: first.code.shortCode }, note: "clicked twice" });
    assert.equal(again.tip!.tipId, matched.tip!.tipId, "the same code answers the match made");
    await eventually(async () => (await h.balance(first.id)) === 28500n, "KES 285 credited to the code matched");
    assert.equal(await h.balance(other.id), 0n, "nothing to the other code");
    assert.ok(await h.trialBalanced());
  });

  test("a refund of a suspense payment whose match was posted (its answer lost) is refused, the match finishes once; a refund closes the match's key", async () => {
    const w = await worker();
    const lost = await h.sim.c2b.pay({ billRefNumber: "ZZZZZX", amount: 300, skipValidation: true });
    await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1 AND suspense_entry_id IS NOT NULL", [lost.transId])).rowCount === 1, "parked in suspense");
    // What a match leaves when wallet posts its entry after the call's deadline: the worker credited, the payment still open.
    const match = { key: `c2b:${lost.transId}:matched`, receipt: lost.transId, recipient: { workerId: w.id }, chargedMinor: 30000n, workerMinor: 28500n };
    await new Ledger(h.t.ctx).releaseFromSuspense(match);
    assert.equal(await h.balance(w.id), 28500n);
    await assert.rejects(adminClient.resolveSuspensePayment({ receipt: lost.transId, action: { case: "refund", value: true }, note: "customer asked" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /match of this payment was posted/.test(e.message));
    const matched = await adminClient.resolveSuspensePayment({ receipt: lost.transId, action: { case: "matchAccountReference", value: w.code.shortCode }, note: "again" });
    assert.equal(matched.payment!.resolution, "matched");
    assert.equal(await h.balance(w.id), 28500n, "credited once");

    const refundedOne = await h.sim.c2b.pay({ billRefNumber: "ZZZZZW", amount: 300, skipValidation: true });
    await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1 AND suspense_entry_id IS NOT NULL", [refundedOne.transId])).rowCount === 1, "parked in suspense");
    const refunded = await adminClient.resolveSuspensePayment({ receipt: refundedOne.transId, action: { case: "refund", value: true }, note: "customer asked" });
    assert.equal(refunded.payment!.resolution, "refund");
    // A match still on its way to wallet can no longer post.
    await assert.rejects(new Ledger(h.t.ctx).releaseFromSuspense({ ...match, key: `c2b:${refundedOne.transId}:matched`, receipt: refundedOne.transId }), (e: ConnectError) => e.code === Code.AlreadyExists);
    assert.equal(await h.balance(w.id), 28500n);
    assert.ok(await h.trialBalanced());
  });

  test("a match losing to a refund of the same suspense payment (which closed the match's key first) is refused saying another decision reached the wallet first, not wallet's bare ALREADY_EXISTS; nothing is credited", async () => {
    const w = await worker();
    const paid = await h.sim.c2b.pay({ billRefNumber: "ZZZZZV", amount: 300, skipValidation: true });
    await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1 AND suspense_entry_id IS NOT NULL", [paid.transId])).rowCount === 1, "parked in suspense");
    // Where a concurrent refund is when the match reaches wallet: the match's key closed, the payment not yet marked.
    await new Ledger(h.t.ctx).closeApproval(`c2b:${paid.transId}:matched`, { cause: { case: "mpesaReceipt", value: paid.transId } });
    await assert.rejects(adminClient.resolveSuspensePayment({ receipt: paid.transId, action: { case: "matchAccountReference", value: w.code.shortCode }, note: "customer called" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /^receipt: another decision on this payment reached the wallet first: .*this match credited nothing$/.test(e.rawMessage));
    assert.equal(await h.balance(w.id), 0n);
    const refunded = await adminClient.resolveSuspensePayment({ receipt: paid.transId, action: { case: "refund", value: true }, note: "customer asked" });
    assert.equal(refunded.payment!.resolution, "refund");
    assert.ok(await h.trialBalanced());
  });

  test("a match to another code after an earlier match whose answer was lost is refused saying that match's worker was credited and only it finishes the payment, not that nothing was credited", async () => {
    const [first, other] = [await worker(), await worker("Wanjiru")];
    const lost = await h.sim.c2b.pay({ billRefNumber: "ZZZZZT", amount: 300, skipValidation: true });
    await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1 AND suspense_entry_id IS NOT NULL", [lost.transId])).rowCount === 1, "parked in suspense");
    // What a match to the first worker's code leaves when wallet posts its entry after the call's deadline.
    await new Ledger(h.t.ctx).releaseFromSuspense({ key: `c2b:${lost.transId}:matched`, receipt: lost.transId, recipient: { workerId: first.id }, chargedMinor: 30000n, workerMinor: 28500n });
    await assert.rejects(adminClient.resolveSuspensePayment({ receipt: lost.transId, action: { case: "matchAccountReference", value: other.code.shortCode }, note: "the customer meant Wanjiru" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && /an earlier match whose answer was lost \(its code's owner was credited: match that code again to finish it\); this match credited nothing$/.test(e.rawMessage));
    assert.deepEqual([await h.balance(first.id), await h.balance(other.id)], [28500n, 0n]);
    const matched = await adminClient.resolveSuspensePayment({ receipt: lost.transId, action: { case: "matchAccountReference", value: first.code.shortCode }, note: "as posted" });
    assert.equal(matched.tip!.workerId, first.id);
    assert.equal(await h.balance(first.id), 28500n, "credited once");
    assert.ok(await h.trialBalanced());
  });

  test("a match whose answer was lost, matched again after the fee schedule changed, posts the very entry the first did: the payment is matched, the worker credited once, a refund refused", async () => {
    const w = await worker();
    const lost = await h.sim.c2b.pay({ billRefNumber: "ZZZZZS", amount: 300, skipValidation: true });
    await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM payment.c2b_payments WHERE trans_id = $1 AND suspense_entry_id IS NOT NULL", [lost.transId])).rowCount === 1, "parked in suspense");
    // The match's recording refused by PostgreSQL after wallet posted its entry: the admin hears a failure, the worker has the money.
    const trigger = `c2b_test_refuse_${lost.transId.toLowerCase()}`;
    await h.t.db.pool.query(`CREATE FUNCTION payment.${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'recording refused'; END $$`);
    await h.t.db.pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE OF resolution ON payment.c2b_payments FOR EACH ROW
      WHEN (NEW.trans_id = '${lost.transId}' AND NEW.resolution = 'matched') EXECUTE FUNCTION payment.${trigger}()`);
    const asked = { receipt: lost.transId, action: { case: "matchAccountReference" as const, value: w.code.shortCode }, note: "customer called" };
    try {
      await assert.rejects(adminClient.resolveSuspensePayment(asked), (e: ConnectError) => e.code === Code.Internal);
    } finally {
      await h.t.db.pool.query(`DROP TRIGGER ${trigger} ON payment.c2b_payments`);
      await h.t.db.pool.query(`DROP FUNCTION payment.${trigger}()`);
    }
    assert.equal((await c2bRow(lost.transId)).resolution, "open");
    assert.equal(await h.balance(w.id), 28500n, "wallet posted the match: KES 300 less 5%");

    // The platform fee doubled meanwhile, in force at once and in payment's copy: a match quoted now would pay KES 270.
    const walletAdmin = createClient(WalletAdminService, h.t.ctx.peers("wallet"));
    const adminHeaders = () => ({ ...callerHeaders(randomUUID(), "admin"), ...stepUpHeaders() });
    const newVersion = async (change: (s: FeeSchedule) => Partial<FeeSchedule>) => {
      const current = (await walletAdmin.listFeeSchedules({ currency: "KES" }, { headers: adminHeaders() })).schedules.at(-1)!;
      const { schedule } = await walletAdmin.createFeeSchedule({ idempotencyKey: `fees-${randomUUID()}`, schedule: { ...current, ...change(current), effectiveFrom: undefined } }, { headers: adminHeaders() });
      await eventually(async () => (await h.copiedFeeScheduleVersion("KES")) === schedule!.version, "payment's copy has the new version");
      return { before: current, now: schedule! };
    };
    const raised = await newVersion((s) => ({ platformFeeBps: s.platformFeeBps * 2 }));
    try {
      const matched = await adminClient.resolveSuspensePayment({ ...asked, note: "again" });
      assert.equal(matched.payment!.resolution, "matched");
      const tip = await tipRow(matched.tip!.tipId);
      assert.deepEqual([tip.worker_receives_minor, tip.fee_schedule_version], [28500n, raised.before.version], "the first match's quote, not the new schedule's");
      assert.deepEqual([await h.balance(w.id), await h.walletEntries(w.id)], [28500n, 1], "credited once");
      await assert.rejects(adminClient.resolveSuspensePayment({ receipt: lost.transId, action: { case: "refund", value: true }, note: "customer asked" }),
        (e: ConnectError) => e.code === Code.FailedPrecondition && /^receipt: already resolved \(matched by /.test(e.rawMessage));
      assert.ok(await h.trialBalanced());
    } finally {
      // The other tests' figures assume the seeded fee.
      await newVersion(() => ({ platformFeeBps: raised.before.platformFeeBps }));
    }
  });

  test("validation refuses within its budget with the documented codes, and a refused payment never reaches confirmation", async () => {
    const w = await worker();
    const refused = [
      { ref: "QQQQQQ9", amount: 100, code: "C2B00012" },
      { ref: w.code.shortCode, amount: 30_000, code: "C2B00013" },
    ];
    for (const r of refused) {
      const paid = await h.sim.c2b.pay({ billRefNumber: r.ref, amount: r.amount });
      assert.ok("resultCode" in paid.validation);
      assert.equal(paid.validation.resultCode, r.code);
      assert.ok(paid.validation.ms < 3_000, `answered in ${paid.validation.ms} ms`);
      assert.equal(paid.completed, false);
      assert.equal(await c2bRow(paid.transId), undefined, "nothing recorded as paid");
    }
    // Another business's short code, posted as M-Pesa would.
    const url = new URL(`/c2b/${TOKEN}/validation`, h.config.callbackBaseUrl);
    const body = JSON.stringify({ TransactionType: "Pay Bill", TransID: "TAB1234567", TransTime: "20260101120000", TransAmount: "100.00", BusinessShortCode: "600999", BillRefNumber: w.code.shortCode, MSISDN: "2547 ***** 126" });
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST", localAddress: "127.0.0.1", headers: { "content-type": "application/json" } }, (res) => {
        let t = "";
        res.on("data", (c) => (t += c));
        res.on("end", () => resolve({ status: res.statusCode!, body: t }));
      });
      req.on("error", reject);
      req.end(body);
    });
    assert.equal(answer.status, 200);
    assert.equal(JSON.parse(answer.body).ResultCode, "C2B00015");
    // From outside the allow-list, or on a guessed path: refused, stored raw.
    assert.equal((await h.post(`/c2b/${TOKEN}/confirmation`, JSON.parse(body), "127.0.0.2")).status, 403);
    assert.equal((await h.post(`/c2b/not-the-real-token-000/confirmation`, JSON.parse(body))).status, 404);
    const stored = await h.t.db.pool.query("SELECT outcome FROM payment.callbacks WHERE source LIKE 'mpesa_c2b%' AND outcome IN ('rejected_address', 'unknown_path')");
    assert.ok(stored.rowCount! >= 2);
    const metrics = await (await fetch(`${h.config.callbackBaseUrl}/metrics`)).text();
    assert.match(metrics, /ttip_payment_c2b_total\{kind="validation",result="C2B00012"\} [1-9]/);
    assert.match(metrics, /ttip_payment_c2b_total\{kind="confirmation",result="suspense"\} [1-9]/);
    assert.match(metrics, /ttip_payment_c2b_validation_seconds_count [1-9]/);
  });

  test("a caller's tip may not take the key of a paybill payment or a USSD session (before, a tip under c2b:<receipt> left that payment never credited)", async () => {
    const w = await worker();
    const transId = `K${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    for (const key of [`c2b:${transId}`, "ussd:ATUid_0000000001", "partner:someone:INV-1"]) {
      const refused = await pay.createTip({ idempotencyKey: key, recipient: { case: "workerId", value: w.id }, amount: KES(150), payment: { case: "mpesaPhone", value: phone("1041") } })
        .then(() => assert.fail("accepted"), (e: unknown) => ConnectError.from(e));
      assert.equal(refused.code, Code.InvalidArgument);
      assert.equal(refused.rawMessage, `idempotency_key: must not begin with "${key.slice(0, key.indexOf(":") + 1)}"`);
    }
    assert.equal((await h.post(`/c2b/${TOKEN}/confirmation`, confirmation(transId, w.code.shortCode, "200.00"))).status, 200);
    assert.equal((await c2bRow(transId)).outcome, "tip");
  });

  test("a confirmation on a guessed path or from outside the allow-list is stored refused by the statement that stores it: reconciliation never credits it", async () => {
    const w = await worker();
    const transId = `F${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
    const pool = h.t.db.pool;
    // The statement after the insert fails (a crash, the pool timed out under a flood of forged posts). Before, the
    // refusal was that later statement: the row stayed 'received', and reconciliation applied it a minute later.
    await pool.query("CREATE FUNCTION payment.test_outcome_update_fails() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the statement after the insert fails'; END $$");
    await pool.query(`CREATE TRIGGER test_outcome_update_fails BEFORE UPDATE ON payment.callbacks FOR EACH ROW
      WHEN (NEW.outcome IN ('unknown_path', 'rejected_address')) EXECUTE FUNCTION payment.test_outcome_update_fails()`);
    const forged = confirmation(transId, w.code.shortCode, "5000.00");
    try {
      assert.equal((await h.post("/c2b/not-the-real-token-000/confirmation", forged)).status, 404);
      assert.equal((await h.post(`/c2b/${TOKEN}/confirmation`, forged, "127.0.0.2")).status, 403);
    } finally {
      await pool.query("DROP TRIGGER test_outcome_update_fails ON payment.callbacks; DROP FUNCTION payment.test_outcome_update_fails()");
    }
    const mine = "source = 'mpesa_c2b' AND position(convert_to($1, 'UTF8') in raw_body) > 0";
    await pool.query(`UPDATE payment.callbacks SET received_at = now() - interval '2 minutes' WHERE ${mine}`, [transId]);
    await internal.reconcilePending({ limit: 100 });
    const { rows } = await pool.query(`SELECT outcome FROM payment.callbacks WHERE ${mine} ORDER BY outcome`, [transId]);
    assert.deepEqual(rows.map((r) => r.outcome), ["rejected_address", "unknown_path"]);
    assert.equal(await c2bRow(transId), undefined, "never taken as a payment");
    assert.equal(await h.balance(w.id), 0n, "nothing credited");
  });

  test("a C2B payer (masked in v2, hashed in v1) fits only the tip's own number", () => {
    const number = "254712345678";
    assert.ok(payerFits("2547 ***** 678", number));
    assert.ok(payerFits(createHash("sha256").update(number).digest("hex").toUpperCase(), number));
    assert.ok(payerFits(number, number), "in clear, as C2B sent it before masking");
    for (const other of ["2547 ***** 679", "2541 ***** 678", createHash("sha256").update("254712345679").digest("hex"), "", "254712345679", "*****"]) {
      assert.equal(payerFits(other, number), false, other);
    }
  });

  test("amounts are read exactly from strings; malformed bodies are refused", () => {
    assert.equal(decimalMinor("100.00"), 10000n);
    assert.equal(decimalMinor("100.5"), 10050n);
    assert.equal(decimalMinor(250), 25000n);
    assert.equal(decimalMinor(100.5), 10050n);
    assert.equal(decimalMinor("1e3"), undefined);
    assert.equal(decimalMinor("-5"), undefined);
    assert.equal(decimalMinor(-5), undefined);
    // A JSON number with a third decimal is not an amount M-Pesa moves: refused, never rounded to cents.
    assert.equal(decimalMinor(100.499), undefined);
    assert.equal(decimalMinor(100.004), undefined);
    assert.equal(decimalMinor(Number.NaN), undefined);
    assert.equal(parseC2bPayment({ TransID: "short", TransAmount: "1", BusinessShortCode: "174379" }), undefined);
    assert.equal(parseC2bPayment({ TransID: "TAB1234567", BusinessShortCode: "174379", BillRefNumber: "X" }), undefined, "no amount");
    assert.equal(parseC2bPayment({ TransID: "TAB1234567", TransAmount: "10.00", BusinessShortCode: 174379, BillRefNumber: "ABC" })?.businessShortCode, "174379");
    const valid = [..."0123456789"].filter((d) => tipReferenceValid(`T1000001${d}`));
    assert.equal(valid.length, 1, "exactly one check digit fits: any single mistyped digit is caught");
  });
});
