import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { startGateway } from "@ttip/gateway";
import { AccountKind, EntryCauseSchema, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { Metrics, type RunningServer } from "@ttip/runtime";
import { startTestService, type TestService } from "@ttip/runtime/testing";
import { wallet } from "../src/index.js";

describe("wallet through the gateway, as a browser calls it", () => {
  let t: TestService;
  let gateway: RunningServer;
  let token: (sub: string, roles: string[]) => Promise<string>;

  before(async () => {
    t = await startTestService(wallet, { bus: "in-process" });
    const keys = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const jwk = { ...(await exportJWK(keys.publicKey)), kid: "k1", alg: "EdDSA" };
    token = (sub, roles) =>
      new SignJWT({ roles }).setProtectedHeader({ alg: "EdDSA", kid: "k1" }).setIssuer("ttip-auth").setAudience("ttip").setSubject(sub).setExpirationTime("5m").sign(keys.privateKey);
    gateway = await startGateway({
      logger: t.ctx.logger,
      metrics: new Metrics(),
      cache: t.ctx.cache,
      backends: [WalletService, WalletAdminService].map((service) => ({ service, url: t.service.server.url })),
      jwt: { jwks: { keys: [jwk] }, issuer: "ttip-auth", audience: "ttip" },
      rateLimit: { points: 1000, durationSeconds: 60 },
      corsOrigins: [],
    });
  });
  after(async () => {
    await gateway.close();
    await t.close();
  });

  test("a signed-in worker reads their balance; an admin the trial balance; the internal service is not exposed", async () => {
    const internal = t.client(WalletInternalService);
    const workerId = randomUUID();
    const account = (await internal.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: workerId, currency: "KES" })).account!;
    const clearing = (await internal.ensureAccount({ kind: AccountKind.MPESA_CLEARING, ownerKind: OwnerKind.PLATFORM, currency: "KES" })).account!;
    await internal.postEntry({
      idempotencyKey: `mpesa:${randomUUID()}`,
      cause: create(EntryCauseSchema, { cause: { case: "mpesaReceipt", value: "RKT0000001" } }),
      postings: [
        { accountId: clearing.accountId, amount: { amountMinor: -25_000n, currency: "KES" } },
        { accountId: account.accountId, amount: { amountMinor: 25_000n, currency: "KES" } },
      ],
    });

    // Connect JSON, as a browser sends it: int64 travels as a string.
    const res = await fetch(`${gateway.url}/ttip.wallet.v1.WalletService/GetBalance`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${await token(workerId, ["worker"])}` },
      body: "{}",
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { balances: { available: unknown }[] };
    assert.deepEqual(body.balances[0].available, { amountMinor: "25000", currency: "KES" });

    const anonymous = await fetch(`${gateway.url}/ttip.wallet.v1.WalletService/GetBalance`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(anonymous.status, 401);
    // The gateway refuses a customer's token before the call reaches the wallet.
    const customer = await fetch(`${gateway.url}/ttip.wallet.v1.WalletService/GetBalance`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${await token(workerId, ["customer"])}` },
      body: "{}",
    });
    assert.equal(customer.status, 403);
    const quote = await fetch(`${gateway.url}/ttip.wallet.v1.WalletService/QuoteFees`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ amount: { amountMinor: "10000", currency: "KES" }, rail: "PAYMENT_RAIL_MPESA", workerId }),
    });
    assert.equal(quote.status, 200, "anyone may ask what a tip costs");

    const transport = createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" });
    const adminToken = await token(randomUUID(), ["admin"]);
    const tb = await createClient(WalletAdminService, transport).getTrialBalance({}, { headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(tb.balanced, true);
    await assert.rejects(
      createClient(WalletInternalService, transport).ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: workerId, currency: "KES" }),
      (e: ConnectError) => e.code === Code.Unimplemented || e.code === Code.NotFound,
    );
  });
});
