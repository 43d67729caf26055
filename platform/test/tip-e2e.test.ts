// One tip's whole life over the public API only: every call goes through the
// gateway as a browser or the app would make it (Connect over HTTP/1.1 with a
// bearer token from auth), against all six services in this process on the
// real PostgreSQL, Redis and JetStream of `make test`. Only the outside world
// is simulated: the SMS API auth sends OTPs through, the notification
// providers, and M-Pesa (Daraja).
import assert from "node:assert/strict";
import { generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { analytics } from "@ttip/analytics";
import { createAuth } from "@ttip/auth";
import { startSmsSimulator, type SmsSimulator } from "@ttip/auth/testing";
import { createNotificationModule, DEFAULT_RETRY } from "@ttip/notification";
import { ProviderSimulator } from "@ttip/notification/testing";
import { createPaymentModule, type PaymentConfig } from "@ttip/payment";
import { simulatedPaymentConfig, startDarajaSimulator, type DarajaSimulator } from "@ttip/payment/testing";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService, AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { PayoutStatus, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind, QrCodeStatus } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { AccountKind, PaymentRail, TransactionKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { qr } from "@ttip/qr";
import { AdjustableClock, formatMoney, JetStreamBus, Metrics, nairobiMonthOf, RedisCache } from "@ttip/runtime";
import { captureLogger, createTestDatabase, KES, testEnv, type TestDatabase, uniqueName, eventually, testPhone } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { startPlatform, type Platform } from "../src/platform.js";

const subjectOf = (token: string): string => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub;

describe("a tip end to end through the gateway (all six services, real PostgreSQL, Redis, JetStream)", () => {
  let db: TestDatabase;
  let bus: JetStreamBus;
  let cache: RedisCache;
  let platform: Platform;
  /** The services' clock: moved past the OTP resend cool-down rather than slept through. */
  const clock = new AdjustableClock();
  let sms: SmsSimulator;
  let daraja: DarajaSimulator;
  const providers = new ProviderSimulator();
  const logs = captureLogger("warn");

  /** A client of `service` through the gateway, as the holder of `token` (anonymous without). */
  function api<S extends DescService>(service: S, token?: string): Client<S> {
    const headers: Interceptor = (next) => (req) => {
      if (token) req.header.set("authorization", `Bearer ${token}`);
      req.header.set("user-agent", "Mozilla/5.0 (ttip e2e)");
      return next(req);
    };
    return createClient(service, createConnectTransport({ baseUrl: platform.gatewayUrl, httpVersion: "1.1", interceptors: [headers] }));
  }

  before(async () => {
    sms = await startSmsSimulator({ apiKey: "e2e-sms-key" });
    await providers.start();
    daraja = await startDarajaSimulator({ callbackDelayMs: 20 });
    // callbackBaseUrl is learned once the payment service has its port (read per push).
    const payment: PaymentConfig = simulatedPaymentConfig(daraja);
    db = await createTestDatabase();
    bus = await JetStreamBus.connect({
      servers: testEnv().natsUrl,
      stream: uniqueName("E2E").toUpperCase(),
      subjectPrefix: uniqueName("ev"),
      logger: logs.logger,
      redeliveryDelayMs: 100,
    });
    cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
    // The same six modules as modules.ts, with their edges pointed at this test's simulators.
    platform = await startPlatform({
      ctx: { logger: logs.logger, pool: db.pool, bus, cache, metrics: new Metrics(), clock },
      modules: [
        createAuth({ env: { AUTH_SMS_URL: sms.url, AUTH_SMS_API_KEY: "e2e-sms-key", AUTH_OTP_RESEND_SECONDS: "1" } }),
        createPaymentModule({ config: () => payment }),
        qr,
        wallet,
        createNotificationModule({ config: { providers: providers.config(), retry: { ...DEFAULT_RETRY, baseDelayMs: 30 }, publicUrl: () => "" } }),
        analytics,
      ],
      gateway: { rateLimit: { points: 10_000, durationSeconds: 60 }, corsOrigins: ["*"], host: "127.0.0.1", port: 0 },
    });
    payment.callbackBaseUrl = platform.urls.get("payment")!;
  });

  after(async () => {
    if (process.env.TEST_LOGS) for (const l of logs.lines) console.error(l);
    await platform?.close();
    await bus?.close();
    await cache?.close();
    await db?.drop();
    await daraja?.close();
    await providers.close();
    await sms?.close();
  });

  /** Phone OTP sign-up as the app does it: the code is read from the SMS the simulator delivered. */
  async function verifyPhone(phone: string, role?: Role) {
    const auth = api(AuthService);
    let challengeId = "";
    for (let i = 0; !challengeId; i++) {
      const before = sms.messages.length;
      try {
        challengeId = (await auth.startPhoneVerification({ phone })).challengeId;
      } catch (err) {
        // One code per number per second (AUTH_OTP_RESEND_SECONDS=1 here): the clock moves past it.
        if (i > 5 || !String(err).includes("just sent")) throw err;
        clock.advance(1_050);
        continue;
      }
      assert.equal(sms.messages.length, before + 1, "one OTP SMS per verification");
    }
    const otp = /\b(\d{6})\b/.exec(sms.lastTo(phone)!.message)![1];
    return auth.verifyPhoneOtp({ challengeId, otp, role });
  }

  test("a worker an admin blocks takes no tips at their code and their payouts are held; unblocked, the code takes tips again and the hold stays for an admin to release", async () => {
    const signup = await verifyPhone(testPhone(), Role.WORKER);
    const workerToken = signup.tokens!.accessToken;
    const workerId = subjectOf(workerToken);
    await api(QrService, workerToken).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: workerId, displayName: "Otieno", currency: "KES", city: "Kisumu" });
    const { qrCode } = await api(QrService, workerToken).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: workerId, idempotencyKey: randomUUID() });
    const resolve = () => api(QrService).resolveQrCode({ code: { case: "shortCode", value: qrCode!.shortCode } });
    assert.equal((await resolve()).target!.workerId, workerId, "cached as taking tips before the block");
    const root = await verifyPhone(testPhone());
    await db.pool.query("UPDATE auth.users SET roles = ARRAY['admin'] WHERE user_id = $1", [subjectOf(root.tokens!.accessToken)]);
    const admin = api(AuthAdminService, (await api(AuthService).refreshSession({ refreshToken: root.tokens!.refreshToken })).tokens!.accessToken);

    await admin.blockUser({ userId: workerId, reason: "card fraud under review" });
    // Before, auth alone knew: the code took tips, and automatic payouts sent them on.
    await eventually("the code refusing tips", () => resolve().then(() => false, (e: Error) => /this worker is not taking tips/.test(e.message)));
    const hold = async () => (await db.pool.query("SELECT payouts_on_hold, hold_reason FROM payment.payout_settings WHERE worker_id = $1", [workerId])).rows[0];
    assert.deepEqual(await eventually("the payouts held", hold), { payouts_on_hold: true, hold_reason: "account blocked: card fraud under review" });

    await admin.unblockUser({ userId: workerId, reason: "cleared" });
    await eventually("the code taking tips again", () => resolve().then((r) => r.target!.workerId === workerId, () => false));
    assert.equal((await hold()).payouts_on_hold, true, "released by an admin, not by the unblock");
  });

  test("sign-up, QR code, STK tip, credit less fees, notification, withdrawal with device step-up, history, trial balance", async () => {
    // 1. The worker signs up by phone OTP and sets a PIN.
    const workerPhone = testPhone();
    const signup = await verifyPhone(workerPhone, Role.WORKER);
    assert.equal(signup.newUser, true);
    assert.equal(signup.pinRequired, false);
    const workerId = subjectOf(signup.tokens!.accessToken);
    await api(AuthService, signup.tokens!.accessToken).setPin({ pin: "4826" });
    // Logging in again goes OTP -> PIN; that PIN-proven session may register a device key.
    const login = await verifyPhone(workerPhone);
    assert.equal(login.newUser, false);
    assert.equal(login.pinRequired, true);
    const session = await api(AuthService).verifyPin({ pinSessionId: login.pinSessionId, pin: "4826" });
    const workerToken = session.tokens!.accessToken;
    const me = await api(AuthService, workerToken).getMe({});
    assert.equal(me.user!.userId, workerId);
    assert.deepEqual(me.user!.roles, [Role.WORKER]);

    // 2. An admin (the first one is bootstrapped in the database, as every deployment's first is;
    //    the rest goes through the gateway) sees the worker and their role.
    const root = await verifyPhone(testPhone());
    const rootId = subjectOf(root.tokens!.accessToken);
    await db.pool.query("UPDATE auth.users SET roles = ARRAY['admin'] WHERE user_id = $1", [rootId]);
    const adminToken = (await api(AuthService).refreshSession({ refreshToken: root.tokens!.refreshToken })).tokens!.accessToken;
    const seen = await api(AuthAdminService, adminToken).getUser({ userId: workerId });
    assert.deepEqual(seen.user!.roles, [Role.WORKER]);
    await assert.rejects(api(AuthAdminService, workerToken).getUser({ userId: workerId }), /needs the role admin/);

    // 3. The worker sets up the tip page's profile and gets a QR code.
    await api(QrService, workerToken).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: workerId, displayName: "Wanjiku", currency: "KES", city: "Nairobi" });
    const { qrCode } = await api(QrService, workerToken).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: workerId, idempotencyKey: randomUUID() });
    assert.equal(qrCode!.status, QrCodeStatus.ACTIVE);
    assert.equal(qrCode!.ownerId, workerId);
    const shortCode = qrCode!.shortCode;

    // 4. A customer (no account) scans it: resolve, record the scan.
    const customer = api(QrService);
    const resolved = await customer.resolveQrCode({ code: { case: "shortCode", value: shortCode.toLowerCase() } });
    assert.equal(resolved.target!.workerId, workerId);
    assert.equal(resolved.target!.qrCodeId, qrCode!.qrCodeId);
    assert.equal(resolved.target!.currency, "KES");
    assert.equal(resolved.target!.displayName, "Wanjiku");
    const scan = await customer.recordScan({ code: { case: "shortCode", value: shortCode }, deviceId: randomUUID(), referrer: "", userAgent: "Mozilla/5.0" });
    assert.ok(scan.scanId);
    assert.equal(scan.target!.workerId, workerId);
    const scanStats = async () => (
      await api(QrService, workerToken).getScanStats({
        qrCodeId: qrCode!.qrCodeId,
        from: timestampFromDate(new Date(Date.now() - 3_600_000)),
        to: timestampFromDate(new Date(Date.now() + 3_600_000)),
      })
    ).stats[0];
    assert.equal((await scanStats()).scans, 1n);
    assert.equal((await scanStats()).tips, 0n);

    // 5. The tip page quotes the fees, then the customer tips KES 250 by STK push.
    const { quote } = await api(WalletService).quoteFees({ amount: KES(250), rail: PaymentRail.MPESA, workerId });
    assert.equal(quote!.customerPays!.amountMinor, 25_000n);
    const feeMinor = quote!.platformFee!.amountMinor + quote!.processingFee!.amountMinor;
    // The default schedule (wallet's first migration): 5% platform fee, no processing fee on M-Pesa,
    // fees in whole shillings rounded down in the worker's favour: KES 12.50 -> KES 12.
    assert.equal(quote!.platformFee!.amountMinor, 1_200n);
    assert.equal(quote!.processingFee!.amountMinor, 0n);
    assert.equal(quote!.workerReceives!.amountMinor, 25_000n - feeMinor);
    const netMinor = quote!.workerReceives!.amountMinor;

    const customerPhone = testPhone({ format: "07" });
    const tipKey = randomUUID();
    // The callback waits for the test: on a busy machine 20 ms can pass before CreateTip answers, and the tip is then already paid.
    const stkCallbacks = daraja.hold("stk");
    const created = await api(PaymentService).createTip({
      idempotencyKey: tipKey,
      recipient: { case: "qrCode", value: shortCode },
      amount: KES(250),
      payment: { case: "mpesaPhone", value: customerPhone },
    });
    const tipId = created.tip!.tipId;
    assert.equal(created.tip!.status, TipStatus.PENDING);
    assert.equal(created.tip!.workerId, workerId);
    assert.equal(created.tip!.qrCodeId, qrCode!.qrCodeId);
    assert.equal(created.tip!.charged!.amountMinor, 25_000n);
    assert.equal(created.tip!.fee!.amountMinor, feeMinor, "the tip's fee is the quote's");
    // A retried CreateTip is the same tip, and one STK push only.
    const retried = await api(PaymentService).createTip({ idempotencyKey: tipKey, recipient: { case: "qrCode", value: shortCode }, amount: KES(250), payment: { case: "mpesaPhone", value: customerPhone } });
    assert.equal(retried.tip!.tipId, tipId);
    const pushes = daraja.transactions().filter((t) => t.kind === "stk" && t.phone === `254${customerPhone.slice(1)}`);
    assert.equal(pushes.length, 1);
    assert.equal(pushes[0].amount, 250);

    // 6. The simulator's callback arrives; the tip page watches it succeed.
    await stkCallbacks.release();
    let last = created.tip!;
    for await (const m of api(PaymentService).watchTip({ tipId })) last = m.tip!;
    assert.equal(last.status, TipStatus.SUCCEEDED);
    assert.equal(last.mpesaReceipt, pushes[0].receipt);
    // The simulator counts a callback once our answer to it has arrived.
    await eventually("the callback's answer", () => daraja.transactions().find((t) => t.id === pushes[0].id)!.callbacksSent === 1);

    // The qr service counts the tip against the scanned code (from payment's tip_succeeded).
    await eventually("the tip on the code's stats", async () => (await scanStats()).tips === 1n);
    assert.equal((await scanStats()).conversionBps, 10_000);

    // 7. The worker's balance is the tip less the fees, exactly as quoted.
    const walletApi = api(WalletService, workerToken);
    await eventually("the credit", async () => (await walletApi.getBalance({ currency: "KES" })).balances[0]?.available?.amountMinor === netMinor);
    const afterTip = (await walletApi.getBalance({ currency: "KES" })).balances[0];
    assert.equal(afterTip.ledger!.amountMinor, netMinor);
    assert.equal(afterTip.held!.amountMinor, 0n);

    // 8. The worker hears of it by SMS (the number auth holds) and in the app's inbox.
    const tipText = `You received a tip of ${formatMoney(25_000n, "KES")} from ${last.customerPhoneMasked}. ${formatMoney(netMinor, "KES")} is yours after fees.`;
    const tipSms = await eventually("the tip SMS", () => providers.sent.find((m) => m.to.replace(/^\+/, "") === workerPhone && m.body.startsWith("You received")));
    assert.equal(tipSms.body.trim(), tipText);
    const inbox = await eventually("the in-app tip", async () => {
      const r = await api(NotificationService, workerToken).listInAppNotifications({});
      return r.notifications.some((n) => n.templateKey === TemplateKey.TIP_RECEIVED) && r;
    });
    assert.equal(inbox.notifications.find((n) => n.templateKey === TemplateKey.TIP_RECEIVED)!.body.trim(), tipText);
    // The customer gets one receipt by SMS, naming the worker and M-Pesa's reference.
    const toCustomer = () => providers.sent.filter((m) => m.to.replace(/^\+/, "") === `254${customerPhone.slice(1)}`);
    const receipt = await eventually("the customer's receipt", () => toCustomer()[0]);
    assert.equal(receipt.body.trim(), `TTIP receipt: you tipped Wanjiku KES 250. Ref ${last.mpesaReceipt}. Thank you!`);
    assert.equal(toCustomer().length, 1);
    // Once sent it is no longer owed (its row deleted), so reconciliation does not send it again.
    await eventually("the receipt marked sent", async () =>
      (await db.pool.query("SELECT 1 FROM payment.receipts WHERE tip_id = $1", [tipId])).rows.length === 0);

    // 9. Withdrawal: the app's device key (kept behind the biometric prompt) signs a payout challenge.
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const authApi = api(AuthService, workerToken);
    const { device } = await authApi.registerDevice({ name: "e2e phone", publicKeyJwk: JSON.stringify(publicKey.export({ format: "jwk" })), pin: "4826" });
    const challenge = await authApi.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "payout" });
    const proof = await authApi.verifyDeviceChallenge({
      challengeId: challenge.challengeId,
      signature: sign("sha256", challenge.challenge, { key: privateKey, dsaEncoding: "ieee-p1363" }),
    });
    const payApi = api(PaymentService, workerToken);
    const payoutKey = randomUUID();
    const { payout } = await payApi.requestPayout({ idempotencyKey: payoutKey, amount: KES(200), mpesaPhone: workerPhone, stepUpToken: proof.stepUpToken });
    assert.equal(payout!.amount!.amountMinor, 20_000n);
    // The retry of a request whose answer was lost is the same payout, not a second one.
    const again = await payApi.requestPayout({ idempotencyKey: payoutKey, amount: KES(200), mpesaPhone: workerPhone, stepUpToken: proof.stepUpToken });
    assert.equal(again.payout!.payoutId, payout!.payoutId);
    // The step-up token is spent.
    await assert.rejects(payApi.requestPayout({ idempotencyKey: randomUUID(), amount: KES(50), mpesaPhone: workerPhone, stepUpToken: proof.stepUpToken }), /step_up_token/);

    // 10. B2C settles.
    const paid = await eventually("the payout", async () => {
      const p = (await payApi.getPayout({ payoutId: payout!.payoutId })).payout!;
      return p.status === PayoutStatus.SUCCEEDED && p;
    });
    const b2c = daraja.transactions().filter((t) => t.kind === "b2c" && t.phone === workerPhone);
    assert.equal(b2c.length, 1, "sent once");
    assert.equal(b2c[0].amount, 200);
    assert.equal(paid.mpesaReceipt, b2c[0].receipt);
    const remaining = netMinor - 20_000n;
    await eventually("the settled hold", async () => {
      const b = (await walletApi.getBalance({ currency: "KES" })).balances[0];
      return b.ledger!.amountMinor === remaining && b.held!.amountMinor === 0n;
    });
    assert.equal((await walletApi.getBalance({ currency: "KES" })).balances[0].available!.amountMinor, remaining);
    const payoutSms = await eventually("the payout SMS", () => providers.sent.find((m) => m.to.replace(/^\+/, "") === workerPhone && m.body.includes("has been sent to your M-Pesa")));
    assert.ok(payoutSms.body.startsWith(`${formatMoney(20_000n, "KES")} has been sent`), payoutSms.body);

    // 11. History: the tip (net of fees) and the payout, newest first, with running balances.
    const { transactions } = await walletApi.listTransactions({ currency: "KES" });
    assert.deepEqual(
      transactions.map((t) => [TransactionKind[t.kind], t.amount!.amountMinor, t.balanceAfter!.amountMinor]),
      [["PAYOUT", -20_000n, remaining], ["TIP", netMinor, netMinor]],
    );
    const tipEntry = transactions[1];
    assert.equal(tipEntry.cause!.cause.case, "mpesaReceipt");
    assert.equal(tipEntry.cause!.cause.value, last.mpesaReceipt);
    assert.equal(transactions[0].cause!.cause.value, payout!.payoutId);
    // The statement of the tip's own Nairobi month, not of "now" read after it: seconds before a month ends,
    // now (or the payout) may already be in the next one.
    const month = nairobiMonthOf(timestampDate(tipEntry.postedAt!));
    const inMonth = [tipEntry, transactions[0]]
      .filter((t) => nairobiMonthOf(timestampDate(t.postedAt!)).month === month.month)
      .map((t) => [t.amount!.amountMinor, t.balanceAfter!.amountMinor]);
    assert.deepEqual(inMonth[0], [netMinor, netMinor]);
    const statement = await walletApi.getStatement({ ...month, currency: "KES", format: 1 });
    assert.equal(statement.openingBalance!.amountMinor, 0n);
    assert.equal(statement.closingBalance!.amountMinor, inMonth.at(-1)![1]);
    assert.deepEqual(statement.rows.map((r) => [r.amount!.amountMinor, r.balanceAfter!.amountMinor]), inMonth);
    // The fee: the tip's journal entry (admin view) splits what the customer paid exactly as quoted.
    const adminWallet = api(WalletAdminService, adminToken);
    const { entry } = await adminWallet.getJournalEntry({ entryId: tipEntry.entryId });
    const { accounts } = await adminWallet.listAccounts({});
    const kindOf = new Map(accounts.map((a) => [a.accountId, AccountKind[a.kind]]));
    assert.deepEqual(
      entry!.postings.map((p) => [kindOf.get(p.accountId), p.amount!.amountMinor]).sort(),
      [["MPESA_CLEARING", -25_000n], ["PLATFORM_FEES", feeMinor], ["WORKER_WALLET", netMinor]].sort(),
    );

    // 12. The books balance: every currency nets to zero.
    const trial = await adminWallet.getTrialBalance({});
    assert.equal(trial.balanced, true);
    assert.ok(trial.lines.length >= 1);
    for (const line of trial.lines) {
      assert.equal(line.netMinor, 0n, line.currency);
      assert.equal(line.totalDebitsMinor, line.totalCreditsMinor, line.currency);
    }
    const kes = trial.lines.find((l) => l.currency === "KES")!;
    assert.ok(kes.totalCreditsMinor >= 25_000n + 20_000n, "the tip and the payout are in the books");
    await assert.rejects(api(WalletAdminService, workerToken).getTrialBalance({}), /needs the role admin/);
  });
});
