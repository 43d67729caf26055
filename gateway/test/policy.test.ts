import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code, ConnectError, createRouterTransport, createClient } from "@connectrpc/connect";
import { AuthAdminService, AuthInternalService, AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { principalKey } from "../src/auth.js";
import { adminNetworkList, DEFAULT_RULES, inNetworks, policyInterceptor, ruleFor, STEP_UP_HEADER } from "../src/policy.js";
import { clientAddressKey } from "../src/rate-limit.js";

describe("gateway per-RPC policy", () => {
  test("rules: login RPCs are anonymous, the rest of AuthService needs a token, admin services need admin, internal ones never pass", () => {
    assert.deepEqual(ruleFor(DEFAULT_RULES, "ttip.auth.v1.AuthService", "StartPhoneVerification"), { access: "anonymous" });
    assert.deepEqual(ruleFor(DEFAULT_RULES, "ttip.auth.v1.AuthService", "RefreshSession"), { access: "anonymous" });
    assert.deepEqual(ruleFor(DEFAULT_RULES, "ttip.auth.v1.AuthService", "GetMe"), { access: "signed_in" });
    assert.deepEqual(ruleFor(DEFAULT_RULES, "ttip.wallet.v1.WalletAdminService", "HoldPayout"), { access: "admin" });
    assert.equal(ruleFor(DEFAULT_RULES, "ttip.auth.v1.AuthInternalService", "GetUserById"), undefined);
    // Other services decide for themselves from the verified principal.
    assert.deepEqual(ruleFor(DEFAULT_RULES, "ttip.qr.v1.QrService", "GetQrCode"), { access: "anonymous" });
    // Analytics: a worker's, manager's or admin's token; platform figures are admin only.
    assert.deepEqual(ruleFor(DEFAULT_RULES, "ttip.analytics.v1.AnalyticsService", "GetWorkerEarnings"), { access: "signed_in", roles: ["worker", "venue_manager", "admin"] });
    assert.deepEqual(ruleFor(DEFAULT_RULES, "ttip.analytics.v1.AnalyticsAdminService", "GetPlatformSummary"), { access: "admin", roles: ["admin", "finance"] });
    assert.deepEqual(ruleFor(DEFAULT_RULES, "ttip.venue.v1.VenueService", "ConfirmDistribution"), { access: "signed_in", roles: ["worker", "venue_manager", "admin"] });
  });

  test("networks: IPv4 and IPv6 CIDRs, IPv4-mapped addresses, nothing else", () => {
    const list = adminNetworkList(["10.8.0.0/16", "fd00::/8"]);
    assert.equal(inNetworks(list, "10.8.3.4"), true);
    assert.equal(inNetworks(list, "::ffff:10.8.3.4"), true);
    assert.equal(inNetworks(list, "10.9.0.1"), false);
    assert.equal(inNetworks(list, "fd12::1"), true);
    assert.equal(inNetworks(list, "2001:db8::1"), false);
    assert.equal(inNetworks(list, "unknown"), false);
    assert.throws(() => adminNetworkList(["not-a-network"]), /CIDR/);
  });

  // The interceptor on a router transport: the principal and address are set as the gateway's HTTP layer would.
  function call(principal: { subject: string; roles: string[] } | undefined, address: string) {
    const transport = createRouterTransport(
      (router) => {
        router.service(AuthService, { getMe: () => ({}), startPhoneVerification: () => ({}) });
        router.service(AuthAdminService, { getUser: () => ({}) });
        router.service(AuthInternalService, { getUserById: () => ({}) });
        router.service(QrService, { getQrCode: () => ({}) });
      },
      {
        router: {
          interceptors: [
            (next) => (req) => {
              req.contextValues.set(principalKey, principal);
              req.contextValues.set(clientAddressKey, address);
              return next(req);
            },
            policyInterceptor({ adminNetworks: ["10.8.0.0/16"] }),
          ],
        },
      },
    );
    const outcome = (p: Promise<unknown>) => p.then(() => "ok", (e: ConnectError) => Code[e.code]);
    const uuid = "3f0e2a52-6a43-4a8b-9a55-0d7c1f0e2b11";
    return {
      start: () => outcome(createClient(AuthService, transport).startPhoneVerification({ phone: "254712345678" })),
      me: () => outcome(createClient(AuthService, transport).getMe({})),
      adminGet: () => outcome(createClient(AuthAdminService, transport).getUser({ userId: uuid })),
      internal: () => outcome(createClient(AuthInternalService, transport).getUserById({ userId: uuid })),
      qr: () => outcome(createClient(QrService, transport).getQrCode({ qrCodeId: uuid })),
    };
  }

  test("the interceptor: who gets through to which RPC", async () => {
    const anon = call(undefined, "203.0.113.7");
    assert.equal(await anon.start(), "ok");
    assert.equal(await anon.qr(), "ok");
    assert.equal(await anon.me(), "Unauthenticated");
    assert.equal(await anon.adminGet(), "Unauthenticated");

    const worker = call({ subject: "w1", roles: ["worker"] }, "10.8.0.9");
    assert.equal(await worker.me(), "ok");
    assert.equal(await worker.adminGet(), "PermissionDenied");
    assert.equal(await worker.internal(), "PermissionDenied");

    assert.equal(await call({ subject: "a1", roles: ["admin"] }, "10.8.0.9").adminGet(), "ok");
    assert.equal(await call({ subject: "a1", roles: ["admin"] }, "203.0.113.7").adminGet(), "PermissionDenied");
    assert.equal(await call({ subject: "a1", roles: ["admin"] }, "::ffff:10.8.200.1").adminGet(), "ok");
  });

  // The admin console's roles on the money RPCs, with a step-up verifier that knows one good token.
  function consoleCall(roles: string[], address = "10.8.0.9") {
    const spent = new Set<string>();
    let seenByService: string | null | undefined;
    const transport = createRouterTransport(
      (router) => {
        router.service(PaymentAdminService, {
          listFraudAlerts: () => ({}),
          reviewTip: (_req, ctx) => ((seenByService = ctx.requestHeader.get(STEP_UP_HEADER)), {}),
          holdPayouts: () => ({}),
        });
        router.service(WalletAdminService, { getTrialBalance: () => ({}) });
        router.service(AuthAdminService, { searchUsers: () => ({}), blockUser: () => ({}) });
      },
      {
        router: {
          interceptors: [
            (next) => (req) => {
              req.contextValues.set(principalKey, { subject: "u1", roles });
              req.contextValues.set(clientAddressKey, address);
              return next(req);
            },
            policyInterceptor({
              adminNetworks: ["10.8.0.0/16"],
              verifyStepUp: async (token, userId) => {
                if (token !== "su_good" || userId !== "u1" || spent.has(token)) throw new ConnectError("step-up token is invalid, expired or already spent", Code.PermissionDenied);
                spent.add(token);
              },
            }),
          ],
        },
      },
    );
    const outcome = (p: Promise<unknown>) => p.then(() => "ok", (e: ConnectError) => Code[e.code]);
    const tipId = "3f0e2a52-6a43-4a8b-9a55-0d7c1f0e2b11";
    const payment = createClient(PaymentAdminService, transport);
    return {
      alerts: () => outcome(payment.listFraudAlerts({})),
      review: (stepUp?: string) => outcome(payment.reviewTip({ tipId, approve: true, note: "ok" }, { headers: stepUp ? { [STEP_UP_HEADER]: stepUp } : {} })),
      hold: () => outcome(payment.holdPayouts({ workerId: tipId, reason: "check" })),
      trial: () => outcome(createClient(WalletAdminService, transport).getTrialBalance({})),
      search: () => outcome(createClient(AuthAdminService, transport).searchUsers({ query: "0712" })),
      block: () => outcome(createClient(AuthAdminService, transport).blockUser({ userId: tipId, reason: "fraud" })),
      seenByService: () => seenByService,
    };
  }

  test("support reads and is refused every money action; finance moves money with a step-up; only admin changes accounts", async () => {
    const support = consoleCall(["support"]);
    assert.equal(await support.alerts(), "ok");
    assert.equal(await support.search(), "ok");
    assert.equal(await support.review("su_good"), "PermissionDenied");
    assert.equal(await support.hold(), "PermissionDenied");
    assert.equal(await support.trial(), "PermissionDenied");
    assert.equal(await support.block(), "PermissionDenied");

    const finance = consoleCall(["finance"]);
    assert.equal(await finance.trial(), "ok");
    assert.equal(await finance.hold(), "ok");
    assert.equal(await finance.review(), "PermissionDenied", "no step-up token");
    assert.equal(await finance.review("su_forged"), "PermissionDenied");
    assert.equal(await finance.review("su_good"), "ok");
    assert.equal(finance.seenByService(), null, "the spent token is not passed on");
    assert.equal(await finance.review("su_good"), "PermissionDenied", "a step-up token is spent once");
    assert.equal(await finance.block(), "PermissionDenied");

    assert.equal(await consoleCall(["admin"]).block(), "ok");
    assert.equal(await consoleCall(["admin"], "203.0.113.7").search(), "PermissionDenied", "outside the admin networks");
    assert.equal(await consoleCall(["worker"]).alerts(), "PermissionDenied");
  });
});
