// payment's handler rules in the fast tier: payment, and the wallet and auth it
// calls, in this process behind the servers' own interceptors, reached through
// router transports on one real database; M-Pesa is the Daraja simulator over
// its real HTTP shape. Callbacks, payouts to the end and cards stay in the
// real-server tests.
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { PayoutStatus, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { AccountKind, EntryCauseSchema, LimitKind, OwnerKind, WithdrawalLimitSchema } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { PaymentAdminService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { callerHeaders, violationsOf, type Role } from "@ttip/runtime";
import { conflictingKeyOf, type InProcessService, kesMinor, reasonOf, refusal, startInProcessService, testPhone } from "@ttip/runtime/testing";
import { createAuth } from "@ttip/auth";
import { createWalletModule } from "@ttip/wallet";
import { createPaymentModule } from "../src/index.js";
import { simulatedPaymentConfig, startDarajaSimulator, type DarajaSimulator } from "../src/testing.js";

/** A fresh number ending in 0003: the simulator's customer pays but no callback comes (none is needed here). */
const quietPhone = () => testPhone({ format: "07", suffix: "0003" });
const admin = { subject: randomUUID(), roles: ["admin"] as Role[], stepUp: true };
const fieldsOf = (err: Parameters<typeof violationsOf>[0]) => violationsOf(err).map((v) => v.field);

describe("payment rules, in process (with wallet and auth)", () => {
  let s: InProcessService;
  let sim: DarajaSimulator;
  const pay = (as?: { subject: string; roles: Role[] }) => s.client(PaymentService, as);
  const tip = (workerId: string, amountMinor: bigint, idempotencyKey = `tip-${randomUUID()}`, mpesaPhone = quietPhone()) =>
    pay().createTip({ idempotencyKey, recipient: { case: "workerId", value: workerId }, amount: kesMinor(amountMinor), payment: { case: "mpesaPhone", value: mpesaPhone } });
  const pushesTo = (phone: string) => sim.transactions().filter((t) => t.kind === "stk" && t.phone === `254${phone.slice(1)}`).length;

  before(async () => {
    sim = await startDarajaSimulator({ callbackDelayMs: 30, lateDelayMs: 1500 });
    // Nothing is called back here (quiet numbers only); the address is never used.
    const config = simulatedPaymentConfig(sim, { daraja: { ...sim.clientConfig(), timeoutMs: 2_000 }, callbackBaseUrl: "http://127.0.0.1:9" });
    s = await startInProcessService(createPaymentModule({ config: () => config }), { with: [createWalletModule({ env: {} }), createAuth({ env: {} })] });
  });
  after(async () => {
    await s?.close();
    await sim?.close();
  });

  test("bad amounts and numbers are refused as INVALID_ARGUMENT naming the field, and push nothing", async () => {
    const worker = randomUUID();
    const phone = quietPhone();
    const cents = await refusal(tip(worker, 10_050n, undefined, phone));
    assert.equal(cents.code, Code.InvalidArgument);
    // Rules of the contract across fields: the violation names its rule, and the field in its message.
    assert.deepEqual(violationsOf(cents).map((v) => v.ruleId), ["create_tip.mpesa_whole_shillings"]);
    assert.match(cents.rawMessage, /amount must be in KES and a multiple of 100/);
    const overLimit = await refusal(tip(worker, 250_001_00n, undefined, phone));
    assert.deepEqual(violationsOf(overLimit).map((v) => [v.field, v.message]), [["amount", "M-Pesa allows at most KES 250,000 per transaction"]]);
    const notKenyan = await refusal(tip(worker, 100_00n, undefined, "+447700900123"));
    assert.equal(notKenyan.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(notKenyan), ["mpesa_phone"]);
    const payoutCents = await refusal(pay({ subject: worker, roles: ["worker"] }).requestPayout({ idempotencyKey: `po-${randomUUID()}`, amount: kesMinor(10_050n), mpesaPhone: phone, stepUpToken: "x".repeat(32) }));
    assert.deepEqual(violationsOf(payoutCents).map((v) => [v.ruleId, v.message]), [["request_payout.amount", "amount must be whole Kenya shillings greater than zero"]]);
    assert.equal(pushesTo(phone), 0, "no STK push for a refused tip");
  });

  test("a tip M-Pesa's limit allows whose covered fee takes the charge past it is refused naming the amount, before any push; uncovered it goes ahead", async () => {
    const worker = randomUUID();
    const phone = quietPhone();
    const covered = (idempotencyKey: string) =>
      pay().createTip({ idempotencyKey, recipient: { case: "workerId", value: worker }, amount: kesMinor(250_000_00n), payment: { case: "mpesaPhone", value: phone }, customerCoversFee: true });
    const key = `tip-${randomUUID()}`;
    const over = await refusal(covered(key));
    assert.equal(over.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(over), ["amount"]);
    assert.match(over.rawMessage, /KES 250,500, over its KES 250,000 per transaction/);
    assert.equal((await refusal(covered(key))).code, Code.InvalidArgument, "a retry under the same key is refused the same way");
    assert.equal(pushesTo(phone), 0, "nothing pushed that M-Pesa would refuse");
    const { tip: uncovered } = await tip(worker, 250_000_00n, undefined, phone);
    assert.equal(uncovered!.amount!.amountMinor, 250_000_00n, "without the fee covered the same amount is a tip");
  });

  test("access by role: payouts need a signed-in worker, the console an admin role, and a payout a step-up auth accepts", async () => {
    const request = { idempotencyKey: `po-${randomUUID()}`, amount: kesMinor(100_00n), mpesaPhone: quietPhone(), stepUpToken: "x".repeat(32) };
    assert.equal((await refusal(pay().requestPayout(request))).code, Code.Unauthenticated);
    assert.equal((await refusal(pay({ subject: randomUUID(), roles: ["customer"] }).requestPayout(request))).code, Code.PermissionDenied);
    const worker = { subject: randomUUID(), roles: ["worker"] as Role[] };
    assert.equal((await refusal(s.client(PaymentAdminService, worker).searchTips({}))).code, Code.PermissionDenied);
    const support = { subject: randomUUID(), roles: ["support"] as Role[] };
    assert.equal((await refusal(s.client(PaymentAdminService, support).holdPayouts({ workerId: worker.subject, reason: "fraud review", idempotencyKey: `hold-${worker.subject}` }))).code, Code.PermissionDenied);
    // Auth, in this process too, does not know the token: refused, and no payout exists.
    const unproved = await refusal(pay(worker).requestPayout(request));
    assert.equal(unproved.code, Code.PermissionDenied);
    assert.match(unproved.rawMessage, /^step_up_token: /);
    assert.equal((await pay(worker).listPayouts({})).payouts.length, 0);
  });

  test("a tip's key: the same request is the same tip, pushed once; another under the key is ALREADY_EXISTS naming the key", async () => {
    const worker = randomUUID();
    const phone = quietPhone();
    const key = `tip-${randomUUID()}`;
    const first = await tip(worker, 50_00n, key, phone);
    assert.equal(first.tip!.status, TipStatus.PENDING);
    const again = await tip(worker, 50_00n, key, phone);
    assert.equal(again.tip!.tipId, first.tip!.tipId);
    const conflict = await refusal(tip(worker, 60_00n, key, phone));
    assert.equal(conflict.code, Code.AlreadyExists);
    assert.equal(conflictingKeyOf(conflict), key);
    assert.equal(pushesTo(phone), 1, "one STK push for the key");
    assert.equal((await pay().getTip({ tipId: first.tip!.tipId })).tip!.charged!.amountMinor, 50_00n, "the first tip is unchanged");
  });

  /**
   * A worker known to auth with one device, `minor` in their wallet, and a fresh step-up token as
   * AuthService.VerifyDeviceChallenge issues it (that exchange is auth's own test; the proof is seeded).
   */
  async function fundedWorkerWithDevice(minor: bigint) {
    const worker = { subject: randomUUID(), roles: ["worker"] as Role[] };
    const device = randomUUID();
    const db = s.db.pool;
    await db.query("INSERT INTO auth.users (user_id, phone, roles) VALUES ($1, $2, ARRAY['worker'])", [worker.subject, testPhone()]);
    await db.query("INSERT INTO auth.devices (device_id, user_id, name, public_key_jwk) VALUES ($1, $2, 'test phone', '{}')", [device, worker.subject]);
    const wallet = createClient(WalletInternalService, s.ctx.peers("wallet"));
    const account = async (kind: AccountKind, ownerKind: OwnerKind, ownerId = "") => (await wallet.ensureAccount({ kind, ownerKind, ownerId, currency: "KES" })).account!.accountId;
    const clearing = await account(AccountKind.MPESA_CLEARING, OwnerKind.PLATFORM);
    const accountId = await account(AccountKind.WORKER_WALLET, OwnerKind.WORKER, worker.subject);
    const cause = create(EntryCauseSchema, { cause: { case: "tipAttemptId", value: randomUUID() } });
    await wallet.postEntry({ idempotencyKey: `mpesa:${randomUUID()}`, cause, postings: [{ accountId: clearing, amount: kesMinor(-minor) }, { accountId, amount: kesMinor(minor) }] });
    const stepUp = async () => {
      const token = `su_${randomBytes(24).toString("base64url")}`;
      await db.query("INSERT INTO auth.step_up_tokens (token_hash, user_id, device_id, purpose, expires_at) VALUES ($1, $2, $3, 'payout', now() + interval '5 minutes')", [
        createHash("sha256").update(token).digest(), worker.subject, device,
      ]);
      return token;
    };
    const held = async () => (await createClient(WalletAdminService, s.ctx.peers("wallet")).getAccount({ accountId }, { headers: callerHeaders(randomUUID(), "admin") })).balance!.held!.amountMinor;
    return { worker, stepUp, held };
  }

  test("a payout: beyond the balance or the per-withdrawal limit is refused by the wallet, holds and sends nothing; its key answers once", async () => {
    const { worker, stepUp, held } = await fundedWorkerWithDevice(3_000_000n); // KES 30,000
    const phone = quietPhone();
    const payout = async (amountMinor: bigint, idempotencyKey = `po-${randomUUID()}`) =>
      pay(worker).requestPayout({ idempotencyKey, amount: kesMinor(amountMinor), mpesaPhone: phone, stepUpToken: await stepUp() });
    const tooMuch = await refusal(payout(3_000_100n));
    assert.equal(tooMuch.code, Code.FailedPrecondition);
    assert.equal(reasonOf(tooMuch), "INSUFFICIENT_FUNDS");
    const overLimit = await refusal(payout(2_000_100n));
    assert.equal(overLimit.code, Code.ResourceExhausted);
    assert.equal(reasonOf(overLimit), "LIMIT_EXCEEDED");
    assert.equal(overLimit.findDetails(WithdrawalLimitSchema)[0]?.kind, LimitKind.PER_TRANSACTION);
    assert.equal(await held(), 0n, "nothing held");
    const b2c = () => sim.transactions().filter((t) => t.kind === "b2c" && t.phone === `254${phone.slice(1)}`).length;
    assert.equal(b2c(), 0, "nothing sent");

    const key = `po-${randomUUID()}`;
    const first = (await payout(100_000n, key)).payout!;
    assert.notEqual(first.status, PayoutStatus.FAILED);
    assert.equal((await payout(100_000n, key)).payout!.payoutId, first.payoutId, "the same request answers the same payout");
    const conflict = await refusal(payout(200_000n, key));
    assert.equal(conflict.code, Code.AlreadyExists);
    assert.equal(conflictingKeyOf(conflict), key);
    assert.equal(await held(), 100_000n, "held once");
    assert.equal(b2c(), 1, "sent once");
  });

  test("domain refusals: an unknown tip, a payout with no number registered, a payout while payouts are held", async () => {
    assert.equal((await refusal(pay().getTip({ tipId: randomUUID() }))).code, Code.NotFound);
    const worker = { subject: randomUUID(), roles: ["worker"] as Role[] };
    const request = { idempotencyKey: `po-${randomUUID()}`, amount: kesMinor(100_00n), stepUpToken: "x".repeat(32) };
    const noNumber = await refusal(pay(worker).requestPayout(request));
    assert.equal(noNumber.code, Code.FailedPrecondition);
    assert.equal(reasonOf(noNumber), "INVALID_STATE");
    assert.match(noNumber.rawMessage, /^mpesa_phone: no payout number registered/);
    await s.client(PaymentAdminService, admin).holdPayouts({ workerId: worker.subject, reason: "fraud review", idempotencyKey: `hold-${worker.subject}` });
    const held = await refusal(pay(worker).requestPayout({ ...request, mpesaPhone: quietPhone() }));
    assert.equal(held.code, Code.FailedPrecondition);
    assert.match(held.rawMessage, /payouts are on hold/);
    assert.equal((await pay(worker).listPayouts({})).payouts.length, 0);
  });
});
