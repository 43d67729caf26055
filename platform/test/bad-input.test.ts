// Bad input from outside, through the gateway and straight at a service port:
// each is refused with the caller's mistake named, and nothing breaks for others.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PaymentRail } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createPool } from "@ttip/runtime";
import { startEmbeddedPostgres } from "@ttip/runtime/embedded";
import { eventually, initializedPgliteFolder } from "@ttip/runtime/testing";
import { startBoundaryPlatform, type BoundaryPlatform } from "./boundary-harness.js";

async function codeOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("the call was accepted");
}

describe("bad input through the gateway", () => {
  let p: BoundaryPlatform;
  let worker: Awaited<ReturnType<BoundaryPlatform["signUp"]>>;
  let shortCode: string;

  before(async () => {
    p = await startBoundaryPlatform();
    worker = await p.signUp("worker");
    await p.api(QrService, worker.accessToken).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.userId, displayName: "Akinyi", currency: "KES", city: "Nairobi" });
    shortCode = (await p.api(QrService, worker.accessToken).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker.userId, idempotencyKey: randomUUID() })).qrCode!.shortCode;
  });
  after(() => p?.close());

  test("item 3: a NUL byte in a string field is INVALID_ARGUMENT naming the field, and changes nothing", async () => {
    // Settled first: events from the set-up (sign-up, QR code) are still being consumed.
    const before = await p.settledRowCounts();
    const tip = await codeOf(
      p.api(PaymentService).createTip({
        idempotencyKey: randomUUID(),
        recipient: { case: "qrCode", value: shortCode },
        amount: { amountMinor: 10_000n, currency: "KES" },
        payment: { case: "mpesaPhone", value: "254700005678" },
        message: "asante\u0000sana",
      }),
    );
    assert.equal(tip.code, Code.InvalidArgument, tip.message);
    assert.match(tip.rawMessage, /^message: .*NUL/);
    const profile = await codeOf(
      p.api(QrService, worker.accessToken).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker.userId, displayName: "Aki\u0000nyi", currency: "KES" }),
    );
    assert.equal(profile.code, Code.InvalidArgument, profile.message);
    assert.match(profile.rawMessage, /^display_name: /);
    assert.deepEqual(await p.settledRowCounts(), before);
  });

  test("item 4: a malformed binary protobuf body is INVALID_ARGUMENT, in Connect and in gRPC-web", async () => {
    const url = `${p.platform.gatewayUrl}/ttip.payment.v1.PaymentService/CreateTip`;
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]);
    const connect = await fetch(url, { method: "POST", headers: { "content-type": "application/proto" }, body: garbage });
    assert.equal(connect.status, 400);
    assert.equal(((await connect.json()) as { code: string }).code, "invalid_argument");
    const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, garbage.length]), garbage]);
    const web = await fetch(url, { method: "POST", headers: { "content-type": "application/grpc-web+proto" }, body: framed });
    assert.equal(web.status, 200);
    const text = Buffer.from(await web.arrayBuffer()).toString("latin1");
    assert.match(text, /grpc-status:\s*3/, text);
    // A truncated envelope too (the length says more than was sent).
    const truncated = await fetch(url, { method: "POST", headers: { "content-type": "application/grpc-web+proto" }, body: Buffer.from([0, 0, 0, 0, 40, 1]) });
    assert.match(Buffer.from(await truncated.arrayBuffer()).toString("latin1"), /grpc-status:\s*3/);
  });

  test("item 5: public money inputs are bounded: QuoteFees at int64 max is INVALID_ARGUMENT naming amount, with or without the fee covered", async () => {
    const wallet = p.api(WalletService);
    const max = 2n ** 63n - 1n;
    for (const customerCoversFee of [true, false]) {
      for (const [rail, currency, amountMinor] of [
        [PaymentRail.MPESA, "KES", max],
        [PaymentRail.MPESA, "KES", 250_001_00n],
        [PaymentRail.CARD, "USD", max],
        [PaymentRail.CARD, "KES", 92_233_720_368_547_758n],
      ] as const) {
        const err = await codeOf(wallet.quoteFees({ amount: { amountMinor, currency }, rail, customerCoversFee, workerId: worker.userId }));
        assert.equal(err.code, Code.InvalidArgument, `${currency} ${amountMinor}: ${err.message}`);
        assert.match(err.rawMessage, /^amount/);
      }
    }
    // The largest M-Pesa tip still quotes, in whole shillings.
    const { quote } = await wallet.quoteFees({ amount: { amountMinor: 250_000_00n, currency: "KES" }, rail: PaymentRail.MPESA, customerCoversFee: true, workerId: worker.userId });
    assert.equal(quote!.workerReceives!.amountMinor, 250_000_00n);
    assert.equal(quote!.customerPays!.amountMinor % 100n, 0n);
  });

  test("item 7: a service's own port does not believe identity headers nobody signed; internal services need the internal key", async () => {
    const forged = createGrpcTransport({
      baseUrl: p.platform.urls.get("wallet")!,
      interceptors: [(next) => (req) => {
        req.header.set("x-ttip-subject", worker.userId);
        req.header.set("x-ttip-roles", "worker,admin");
        return next(req);
      }],
    });
    assert.equal((await codeOf(createClient(WalletService, forged).getBalance({ currency: "KES" }))).code, Code.Unauthenticated);
    assert.equal((await codeOf(createClient(WalletAdminService, forged).getTrialBalance({}))).code, Code.Unauthenticated);
    const bare = createGrpcTransport({ baseUrl: p.platform.urls.get("wallet")! });
    const internal = await codeOf(createClient(WalletInternalService, bare).ensureAccount({ ownerId: worker.userId, currency: "KES" } as never));
    assert.equal(internal.code, Code.Unauthenticated, internal.message);
    // A forged signature is no better than none.
    const badSignature = createGrpcTransport({
      baseUrl: p.platform.urls.get("wallet")!,
      interceptors: [(next) => (req) => {
        req.header.set("x-ttip-subject", worker.userId);
        req.header.set("x-ttip-roles", "admin");
        req.header.set("x-ttip-internal", `v1.${Math.floor(Date.now() / 1000)}.${"A".repeat(43)}`);
        return next(req);
      }],
    });
    assert.equal((await codeOf(createClient(WalletAdminService, badSignature).getTrialBalance({}))).code, Code.Unauthenticated);
    // Through the gateway, the same worker's call works.
    const { balances } = await p.api(WalletService, worker.accessToken).getBalance({ currency: "KES" });
    assert.ok(Array.isArray(balances));
  });

  test("item 6: a revoked session's access token is refused at the gateway within seconds, for every service", async () => {
    const other = await p.signUp("worker");
    const wallet = p.api(WalletService, other.accessToken);
    await wallet.getBalance({ currency: "KES" });
    const mine = { ownerKind: OwnerKind.WORKER, ownerId: other.userId };
    await p.api(QrService, other.accessToken).listQrCodes(mine);
    await p.api(AuthService, other.accessToken).revokeAllSessions({});
    const code = await eventually("wallet refusing the revoked session", () => wallet.getBalance({ currency: "KES" }).then(() => undefined, (e) => ConnectError.from(e).code), { timeoutMs: 15_000, everyMs: 100 });
    assert.equal(code, Code.Unauthenticated, "wallet still served the revoked session");
    assert.equal((await codeOf(p.api(QrService, other.accessToken).listQrCodes(mine))).code, Code.Unauthenticated);
    assert.equal((await codeOf(p.api(PaymentService, other.accessToken).listTips({}))).code, Code.Unauthenticated);
  });

  test("item 10: the customer's e-mail given with a tip gets the receipt by e-mail (and the number that paid by SMS)", async () => {
    const email = `customer-${randomUUID().slice(0, 8)}@example.com`;
    const { tip } = await p.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "qrCode", value: shortCode },
      amount: { amountMinor: 15_000n, currency: "KES" },
      payment: { case: "mpesaPhone", value: "254711115678" },
      customerEmail: email,
    });
    const mail = await eventually("the e-mail receipt", () => p.providers.sent.find((m) => m.provider === "sendgrid" && m.to === email), { timeoutMs: 15_000, everyMs: 100 });
    assert.ok(mail, `no e-mail receipt for tip ${tip!.tipId}`);
    assert.match(mail.body, /KES 150/);
    assert.match(mail.body, /Akinyi/);
  });

  test("item 2: a 10 MB body is refused unread with RESOURCE_EXHAUSTED, at the gateway and at a service's port; a webhook gets 413", async () => {
    const big = JSON.stringify({ idempotencyKey: randomUUID(), message: "x".repeat(10 * 1024 * 1024) });
    for (const base of [p.platform.gatewayUrl, p.platform.urls.get("payment")!]) {
      const res = await fetch(`${base}/ttip.payment.v1.PaymentService/CreateTip`, { method: "POST", headers: { "content-type": "application/json" }, body: big });
      const body = (await res.json()) as { code: string; message: string };
      assert.equal(body.code, "resource_exhausted", `${base}: ${body.message}`);
      assert.match(body.message, /larger than/);
    }
    const hook = await fetch(`${p.platform.urls.get("payment")}/mpesa/stk/${"a".repeat(32)}`, { method: "POST", headers: { "content-type": "application/json" }, body: big });
    assert.equal(hook.status, 413);
    const sms = await fetch(`${p.platform.urls.get("notification")}/webhooks/twilio/status`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: big });
    assert.equal(sms.status, 413);
  });
});

test("item 3: a statement PostgreSQL refuses does not break the one connection everybody shares (PGlite)", async () => {
  // Already through PGlite's initdb (4 s of CPU): what is tested is the one connection, not a first start.
  const data = await initializedPgliteFolder();
  const postgres = await startEmbeddedPostgres(data.dir);
  const pool = createPool(postgres.url, { max: 1 });
  try {
    await pool.query("CREATE TABLE notes (body text)");
    const others = Array.from({ length: 5 }, (_, i) => pool.query("SELECT $1::int AS n", [i]));
    await assert.rejects(pool.query("INSERT INTO notes VALUES ($1)", ["a\u0000b"]), /invalid byte sequence/);
    const after = Array.from({ length: 5 }, (_, i) => pool.query("SELECT $1::int AS n", [i]));
    const results = await Promise.all([...others, ...after]);
    assert.deepEqual(results.map((r) => r.rows[0].n), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
  } finally {
    await pool.end();
    await postgres.close();
    data.remove();
  }
});
