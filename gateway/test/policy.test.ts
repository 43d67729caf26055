import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { create, createFileRegistry, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createRouterTransport, createClient, type Interceptor } from "@connectrpc/connect";
import { Health } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { AnalyticsAdminService, AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { AuthAdminService, AuthInternalService, AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PaymentAdminService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { WalletAdminService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { principalKey } from "../src/auth.js";
import { partnerKey } from "../src/partner.js";
import { adminNetworkList, inNetworks, policyInterceptor, type PolicyOptions, ruleFor, STEP_UP_HEADER, stepUpVerifiedKey, undeclaredMethods } from "../src/policy.js";
import { clientAddressKey } from "../src/rate-limit.js";

/** Every service in the generated contracts (proto/gen/ttip/**​/*_service_pb.ts). */
async function contractServices(): Promise<DescService[]> {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../proto/gen/ttip");
  const files = readdirSync(root, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith("_service_pb.ts"));
  const services: DescService[] = [];
  for (const f of files) {
    const mod = (await import(path.join(root, f))) as Record<string, unknown>;
    for (const v of Object.values(mod)) if ((v as DescService | undefined)?.kind === "service") services.push(v as DescService);
  }
  return services;
}

/** A service whose contract declares no access at all, as a new one might be written. */
function undeclaredService(): DescService {
  const file = create(FileDescriptorProtoSchema, {
    name: "ttip/test/v1/undeclared.proto",
    package: "ttip.test.v1",
    syntax: "proto3",
    messageType: [{ name: "Ping" }],
    service: [{ name: "UndeclaredService", method: [{ name: "Ping", inputType: ".ttip.test.v1.Ping", outputType: ".ttip.test.v1.Ping" }] }],
  });
  return createFileRegistry(file, () => undefined).getService("ttip.test.v1.UndeclaredService")!;
}

describe("gateway per-RPC policy", () => {
  test("rules come from the contracts: login RPCs are anonymous, the rest of AuthService needs a token, admin services need admin roles, internal ones never pass", () => {
    assert.deepEqual(ruleFor(AuthService.method.startPhoneVerification), { access: "anonymous" });
    assert.deepEqual(ruleFor(AuthService.method.refreshSession), { access: "anonymous" });
    assert.deepEqual(ruleFor(AuthService.method.getMe), { access: "signed_in" });
    // An admin RPC declaring no roles of its own: admin only. Reads are open to support and finance; money moves to finance.
    assert.deepEqual(ruleFor(AuthAdminService.method.unlockUser), { access: "admin", roles: ["admin"] });
    // Granting a role grants its powers: with the device.
    assert.deepEqual(ruleFor(AuthAdminService.method.setUserRoles), { access: "admin", roles: ["admin"], stepUp: true });
    assert.deepEqual(ruleFor(AuthAdminService.method.searchUsers), { access: "admin", roles: ["admin", "support", "finance"] });
    assert.deepEqual(ruleFor(WalletAdminService.method.listAccounts), { access: "admin", roles: ["admin", "finance"] });
    assert.deepEqual(ruleFor(WalletAdminService.method.reverseEntry), { access: "admin", roles: ["admin", "finance"], stepUp: true });
    assert.deepEqual(ruleFor(PaymentAdminService.method.holdPayouts), { access: "admin", roles: ["admin", "finance"] });
    // PaymentAdminService's own default: what it adds moves money, with the device.
    assert.deepEqual(ruleFor(PaymentAdminService.method.refundTip), { access: "admin", roles: ["admin", "finance"], stepUp: true });
    assert.deepEqual(ruleFor(AuthService.method.claimFirstAdmin), { access: "signed_in", adminNetwork: true });
    assert.deepEqual(ruleFor(AuthInternalService.method.getUserById), { access: "internal" });
    // Anonymous at the gateway: the service looks at the caller (own codes), and enforces the same declaration.
    assert.deepEqual(ruleFor(QrService.method.getQrCode), { access: "anonymous", partnerScope: "qr:read" });
    assert.deepEqual(ruleFor(QrService.method.resolveQrCode), { access: "anonymous" });
    // Analytics: a worker's, manager's or admin's token; platform figures are admin roles only.
    assert.deepEqual(ruleFor(AnalyticsService.method.getWorkerEarnings), { access: "signed_in", roles: ["worker", "venue_manager", "admin"] });
    assert.deepEqual(ruleFor(AnalyticsAdminService.method.getPlatformSummary), { access: "admin", roles: ["admin", "finance"] });
    assert.deepEqual(ruleFor(VenueService.method.confirmDistribution), { access: "signed_in", roles: ["worker", "venue_manager", "admin"] });
    assert.deepEqual(ruleFor(WalletService.method.getBalance), { access: "signed_in", roles: ["worker"] });
    // Roles live in the contract only; the services enforce the same declaration (runtime's accessInterceptor).
    assert.deepEqual(ruleFor(PaymentService.method.requestPayout), { access: "signed_in", roles: ["worker"] });
    assert.deepEqual(ruleFor(PaymentService.method.getPayout), { access: "signed_in", roles: ["worker", "admin", "support", "finance"] });
    assert.deepEqual(ruleFor(QrService.method.createQrCode), { access: "signed_in", roles: ["worker", "venue_manager", "admin"], partnerScope: "qr:write" });
    // Partner scopes live on the RPCs they open.
    assert.deepEqual(ruleFor(PaymentService.method.createTip), { access: "anonymous", partnerScope: "tips:create" });
    assert.deepEqual(ruleFor(WalletService.method.quoteFees), { access: "anonymous", partnerScope: "fees:read" });
    // The server's own health and reflection: open, as probes need.
    assert.deepEqual(ruleFor(Health.method.check), { access: "anonymous" });
  });

  test("every RPC of every contract declares its access; no admin or internal RPC is open to partners", async () => {
    const services = await contractServices();
    assert.ok(services.length >= 17, `found ${services.length} services`);
    assert.deepEqual(undeclaredMethods(services), []);
    const rpcs = services.flatMap((s) => s.methods);
    const scoped = rpcs.filter((m) => ruleFor(m)!.partnerScope);
    assert.deepEqual(scoped.filter((m) => /(Admin|Internal)Service$/.test(m.parent.typeName)), []);
    // The partner scopes the gateway opened before the contracts declared them (9), and the
    // partner service's own (webhooks and their secret's rotation, consented reads), and a key's own
    // links (ListPartnerLinks): none lost, none added unnoticed.
    assert.equal(scoped.length, 17);
    // Every …AdminService RPC is an admin RPC, every …InternalService RPC internal.
    for (const m of rpcs) {
      if (m.parent.typeName.endsWith("AdminService")) assert.equal(ruleFor(m)!.access, "admin", `${m.parent.typeName}/${m.name}`);
      if (m.parent.typeName.endsWith("InternalService")) assert.equal(ruleFor(m)!.access, "internal", `${m.parent.typeName}/${m.name}`);
    }
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
  /** The interceptors a test's router runs: `principal` from `address` (and a partner key's `scopes`), then the policy. */
  const asCaller = (principal: { subject: string; roles: string[] } | undefined, address: string, policy: PolicyOptions, scopes?: string[]): Interceptor[] => [
    (next) => (req) => {
      req.contextValues.set(principalKey, principal);
      req.contextValues.set(clientAddressKey, address);
      if (scopes) req.contextValues.set(partnerKey, { keyId: "k1", partnerName: "pos", scopes });
      return next(req);
    },
    policyInterceptor(policy),
  ];

  function call(principal: { subject: string; roles: string[] } | undefined, address: string, partnerScopes?: string[]) {
    const undeclared = undeclaredService();
    const transport = createRouterTransport(
      (router) => {
        router.service(undeclared, { ping: () => ({}) } as never);
        router.service(PaymentAdminService, { holdPayouts: () => ({}), listFraudAlerts: () => ({}) });
        router.service(AuthAdminService, { getUser: () => ({}), unlockUser: () => ({}) });
        router.service(AuthService, { getMe: () => ({}), startPhoneVerification: () => ({}) });
        router.service(AuthInternalService, { getUserById: () => ({}) });
        router.service(QrService, { getQrCode: () => ({}) });
      },
      {
        router: {
          interceptors: asCaller(principal, address, { adminNetworks: ["10.8.0.0/16"] }, partnerScopes),
        },
      },
    );
    const outcome = (p: Promise<unknown>) => p.then(() => "ok", (e: ConnectError) => `${Code[e.code]}${e.rawMessage.includes("declares no access") ? " (undeclared)" : ""}`);
    const uuid = "3f0e2a52-6a43-4a8b-9a55-0d7c1f0e2b11";
    return {
      start: () => outcome(createClient(AuthService, transport).startPhoneVerification({ phone: "254712345678" })),
      me: () => outcome(createClient(AuthService, transport).getMe({})),
      adminGet: () => outcome(createClient(AuthAdminService, transport).getUser({ userId: uuid })),
      internal: () => outcome(createClient(AuthInternalService, transport).getUserById({ userId: uuid })),
      qr: () => outcome(createClient(QrService, transport).getQrCode({ qrCodeId: uuid })),
      undeclared: () => outcome((createClient(undeclared, transport) as unknown as { ping(r: object): Promise<unknown> }).ping({})),
      unlock: () => outcome(createClient(AuthAdminService, transport).unlockUser({ userId: uuid, reason: "locked out" })),
      holdPayouts: () => outcome(createClient(PaymentAdminService, transport).holdPayouts({})),
      fraudAlerts: () => outcome(createClient(PaymentAdminService, transport).listFraudAlerts({})),
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

  test("fails closed: an RPC whose contract declares no access is refused to everyone, and listed at start-up", async () => {
    assert.equal(ruleFor(undeclaredService().methods[0]), undefined);
    assert.deepEqual(undeclaredMethods([undeclaredService()]), ["ttip.test.v1.UndeclaredService/Ping"]);
    assert.equal(await call(undefined, "127.0.0.1").undeclared(), "PermissionDenied (undeclared)");
    assert.equal(await call({ subject: "a1", roles: ["admin", "worker"] }, "10.8.0.9").undeclared(), "PermissionDenied (undeclared)");
    assert.equal(await call(undefined, "127.0.0.1", ["tips:create", "qr:read"]).undeclared(), "PermissionDenied");
  });

  test("admin roles: support reads, finance also moves money, admin does the rest; partner keys by scope only", async () => {
    const support = call({ subject: "s1", roles: ["support"] }, "10.8.0.9");
    assert.equal(await support.adminGet(), "ok");
    assert.equal(await support.fraudAlerts(), "ok");
    assert.equal(await support.holdPayouts(), "PermissionDenied");
    assert.equal(await support.unlock(), "PermissionDenied");
    const finance = call({ subject: "f1", roles: ["finance"] }, "10.8.0.9");
    assert.equal(await finance.holdPayouts(), "ok");
    assert.equal(await finance.unlock(), "PermissionDenied");
    assert.equal(await call({ subject: "f1", roles: ["finance"] }, "203.0.113.7").holdPayouts(), "PermissionDenied");
    assert.equal(await call({ subject: "a1", roles: ["admin"] }, "10.8.0.9").unlock(), "ok");
    const partner = call(undefined, "203.0.113.7", ["qr:read"]);
    assert.equal(await partner.qr(), "ok");
    assert.equal(await partner.start(), "PermissionDenied");
    assert.equal(await partner.adminGet(), "PermissionDenied");
  });

  // The admin console's roles on the money RPCs, with a step-up verifier that knows one good token.
  function consoleCall(roles: string[], address = "10.8.0.9") {
    const spent = new Set<string>();
    let seenByService: string | null | undefined;
    let verifiedAt: number | undefined;
    const transport = createRouterTransport(
      (router) => {
        router.service(PaymentAdminService, {
          listFraudAlerts: () => ({}),
          reviewTip: (_req, ctx) => ((seenByService = ctx.requestHeader.get(STEP_UP_HEADER)), (verifiedAt = ctx.values.get(stepUpVerifiedKey)), {}),
          holdPayouts: () => ({}),
        });
        router.service(WalletAdminService, { getTrialBalance: () => ({}) });
        router.service(AuthAdminService, { searchUsers: () => ({}), blockUser: () => ({}) });
      },
      {
        router: {
          interceptors: asCaller({ subject: "u1", roles }, address, {
            adminNetworks: ["10.8.0.0/16"],
            verifyStepUp: async (token, userId) => {
              if (token !== "su_good" || userId !== "u1" || spent.has(token)) throw new ConnectError("step-up token is invalid, expired or already spent", Code.PermissionDenied);
              spent.add(token);
            },
          }),
        },
      },
    );
    const outcome = (p: Promise<unknown>) => p.then(() => "ok", (e: ConnectError) => Code[e.code]);
    const tipId = "3f0e2a52-6a43-4a8b-9a55-0d7c1f0e2b11";
    const payment = createClient(PaymentAdminService, transport);
    return {
      alerts: () => outcome(payment.listFraudAlerts({})),
      review: (stepUp?: string) => outcome(payment.reviewTip({ tipId, approve: true, note: "ok" }, { headers: stepUp ? { [STEP_UP_HEADER]: stepUp } : {} })),
      hold: () => outcome(payment.holdPayouts({ workerId: tipId, reason: "check", idempotencyKey: `hold-${tipId}` })),
      trial: () => outcome(createClient(WalletAdminService, transport).getTrialBalance({})),
      search: () => outcome(createClient(AuthAdminService, transport).searchUsers({ query: "0712" })),
      block: () => outcome(createClient(AuthAdminService, transport).blockUser({ userId: tipId, reason: "fraud" })),
      seenByService: () => seenByService,
      verifiedAt: () => verifiedAt,
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
    assert.ok(Math.abs(Date.now() - finance.verifiedAt()!) < 10_000, "when it was verified is, for the forwarded signed header");
    assert.equal(await finance.review("su_good"), "PermissionDenied", "a step-up token is spent once");
    assert.equal(await finance.block(), "PermissionDenied");

    assert.equal(await consoleCall(["admin"]).block(), "ok");
    assert.equal(await consoleCall(["admin"], "203.0.113.7").search(), "PermissionDenied", "outside the admin networks");
    assert.equal(await consoleCall(["worker"]).alerts(), "PermissionDenied");
  });

  test("staff roles count only from the admin networks, on signed-in RPCs too: a stolen admin token cannot run a venue's split from anywhere", async () => {
    let seen: string[] | undefined;
    const venueCall = (roles: string[], address: string) => {
      const transport = createRouterTransport(
        (router) => router.service(VenueService, { confirmDistribution: (_req, ctx) => ((seen = ctx.values.get(principalKey)?.roles), {}) }),
        { router: { interceptors: asCaller({ subject: "u1", roles }, address, { adminNetworks: ["10.8.0.0/16"] }) } },
      );
      seen = undefined;
      return createClient(VenueService, transport).confirmDistribution({ venueId: "3f0e2a52-6a43-4a8b-9a55-0d7c1f0e2b11" }).then(() => "ok", (e: ConnectError) => `${Code[e.code]}: ${e.rawMessage}`);
    };
    assert.equal(await venueCall(["admin"], "10.8.0.9"), "ok");
    assert.deepEqual(seen, ["admin"]);
    // Before, ok: VenueService is open to admins, and only admin-audience RPCs checked the network.
    assert.equal(await venueCall(["admin"], "203.0.113.7"), "PermissionDenied: admin calls are only accepted from allow-listed networks");
    // An admin who also manages a venue is its manager from outside: the service sees no admin role.
    assert.equal(await venueCall(["venue_manager", "admin", "finance"], "203.0.113.7"), "ok");
    assert.deepEqual(seen, ["venue_manager"]);
  });

  test("an admin's step-up on a signed-in RPC (a venue they do not manage) is verified, spent and its time forwarded; a forged or spent one refused; another role's is dropped unverified", async () => {
    const spent = new Set<string>();
    const verified: string[] = [];
    let forwarded: { verifiedAt?: number; header: string | null } | undefined;
    const venueCall = (roles: string[], stepUp?: string) => {
      const transport = createRouterTransport(
        (router) => router.service(VenueService, { removeManager: (_req, ctx) => ((forwarded = { verifiedAt: ctx.values.get(stepUpVerifiedKey), header: ctx.requestHeader.get(STEP_UP_HEADER) }), {}) }),
        {
          router: {
            interceptors: asCaller({ subject: "u1", roles }, "10.8.0.9", {
              adminNetworks: ["10.8.0.0/16"],
              verifyStepUp: async (token) => {
                verified.push(token);
                if (token !== "su_good" || spent.has(token)) throw new ConnectError("step-up token is invalid, expired or already spent", Code.PermissionDenied);
                spent.add(token);
              },
            }),
          },
        },
      );
      forwarded = undefined;
      const venueId = "3f0e2a52-6a43-4a8b-9a55-0d7c1f0e2b11";
      return createClient(VenueService, transport).removeManager({ venueId, userId: venueId }, { headers: stepUp ? { [STEP_UP_HEADER]: stepUp } : {} }).then(() => "ok", (e: ConnectError) => Code[e.code]);
    };
    assert.equal(await venueCall(["admin"]), "ok", "none offered: the service decides whether it needed one");
    assert.equal(forwarded?.verifiedAt, undefined);
    assert.equal(await venueCall(["admin"], "su_forged"), "PermissionDenied");
    assert.equal(await venueCall(["admin"], "su_good"), "ok");
    assert.ok(Math.abs(Date.now() - forwarded!.verifiedAt!) < 10_000, "when it was verified is forwarded");
    assert.equal(forwarded!.header, null, "the spent token is not passed on");
    assert.equal(await venueCall(["admin"], "su_good"), "PermissionDenied", "spent once");
    assert.equal(await venueCall(["venue_manager"], "su_other"), "ok");
    assert.deepEqual([forwarded!.verifiedAt, forwarded!.header], [undefined, null], "a manager's header is dropped, never verified");
    assert.deepEqual(verified, ["su_forged", "su_good", "su_good"]);
  });

  test("on RPCs open to all too: a stolen admin token from anywhere reaches qr's codes and profiles as the worker it also is, not as an admin", async () => {
    let seen: string[] | undefined;
    const profileCall = (principal: { subject: string; roles: string[] } | undefined, address: string) => {
      const transport = createRouterTransport(
        (router) => router.service(QrService, { putProfile: (_req, ctx) => ((seen = ctx.values.get(principalKey)?.roles), {}) }),
        { router: { interceptors: asCaller(principal, address, { adminNetworks: ["10.8.0.0/16"] }) } },
      );
      seen = undefined;
      return createClient(QrService, transport).putProfile({}).then(() => "ok", (e: ConnectError) => `${Code[e.code]}: ${e.rawMessage}`);
    };
    assert.equal(await profileCall({ subject: "u1", roles: ["worker", "admin"] }, "10.8.0.9"), "ok");
    assert.deepEqual(seen, ["worker", "admin"]);
    // Before, ["worker", "admin"]: qr lets an admin deactivate any worker, rename a venue, revoke or rotate any card.
    assert.equal(await profileCall({ subject: "u1", roles: ["worker", "admin"] }, "203.0.113.7"), "ok");
    assert.deepEqual(seen, ["worker"]);
    assert.equal(await profileCall(undefined, "203.0.113.7"), "ok", "signed out: open to all still");
    assert.equal(seen, undefined);
  });
});
