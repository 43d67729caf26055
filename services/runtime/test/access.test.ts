// The service side of the declared access, in process (a router transport:
// no sockets), against the wallet's real contracts.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { WalletAdminService, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { accessInterceptor, declaredAccess, rolesNeeded } from "../src/access.js";
import { callerHeaders, type Role } from "../src/caller.js";
import { internalAuthInterceptor, signInternal } from "../src/internal-auth.js";
import { errorInterceptor } from "../src/interceptors.js";
import { createLogger } from "../src/log.js";

const key = randomBytes(32);
const ran: string[] = [];

const routes = (router: ConnectRouter) => {
    router.service(WalletService, {
      getBalance: () => (ran.push("getBalance"), {}),
      quoteFees: () => (ran.push("quoteFees"), {}),
    });
    router.service(WalletAdminService, {
      getTrialBalance: () => (ran.push("getTrialBalance"), {}),
      setTierLimits: () => (ran.push("setTierLimits"), {}),
    });
    router.service(WalletInternalService, { getSettlementMode: () => (ran.push("getSettlementMode"), {}) });
};
const serverSide = [errorInterceptor(createLogger({ level: "silent" })), internalAuthInterceptor(key), accessInterceptor()];

/** The wallet's RPCs in this process, called through `caller` (client side). */
const transportFor = (caller?: Interceptor) => createRouterTransport(routes, { transport: { interceptors: caller ? [caller] : [] }, router: { interceptors: serverSide } });

/** A caller as the gateway forwards one: identity headers signed with the internal key. */
function as(subject: string | undefined, ...roles: Role[]): Interceptor {
  return (next) => (req) => {
    if (subject) for (const [k, v] of Object.entries(callerHeaders(subject, ...roles))) req.header.set(k, v);
    signInternal(req.header, key);
    return next(req);
  };
}

async function codeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "OK";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
}

const clients = (caller: Interceptor) => {
  const transport = transportFor(caller);
  return { wallet: createClient(WalletService, transport), admin: createClient(WalletAdminService, transport), internal: createClient(WalletInternalService, transport) };
};

describe("accessInterceptor: each RPC's declared access, held by the service itself", () => {
  test("the roles come from the contract: a worker RPC refuses an admin, an admin RPC refuses a worker and support", async () => {
    assert.deepEqual(rolesNeeded(declaredAccess(WalletService.method.getBalance)!), ["worker"]);
    const worker = clients(as("w1", "worker"));
    const support = clients(as("s1", "support"));
    const finance = clients(as("f1", "finance"));
    const admin = clients(as("a1", "admin"));
    ran.length = 0;
    assert.equal(await codeOf(worker.wallet.getBalance({})), "OK");
    assert.equal(await codeOf(admin.wallet.getBalance({})), "PermissionDenied");
    assert.equal(await codeOf(worker.admin.getTrialBalance({})), "PermissionDenied");
    assert.equal(await codeOf(support.admin.getTrialBalance({})), "PermissionDenied");
    assert.equal(await codeOf(finance.admin.getTrialBalance({})), "OK");
    assert.equal(await codeOf(finance.admin.setTierLimits({})), "PermissionDenied", "setting limits is the admin's alone");
    assert.equal(await codeOf(admin.admin.setTierLimits({})), "OK");
    assert.deepEqual(ran, ["getBalance", "getTrialBalance", "setTierLimits"], "a refused call never reaches its handler");
  });

  test("no token: UNAUTHENTICATED with the gateway's words; an anonymous RPC runs; an internal one needs the internal signature", async () => {
    const nobody = clients(as(undefined));
    const err = await nobody.wallet.getBalance({}).catch((e: unknown) => ConnectError.from(e));
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.Unauthenticated);
    assert.equal(err.rawMessage, "sign in first: this call needs an access token");
    assert.equal(await codeOf(nobody.wallet.quoteFees({})), "OK");
    assert.equal(await codeOf(nobody.internal.getSettlementMode({})), "OK", "signed by a peer service");
    const unsigned = createClient(WalletInternalService, transportFor());
    assert.equal(await codeOf(unsigned.getSettlementMode({})), "Unauthenticated");
  });

  test("a partner key is a caller with the role partner: it passes no worker or admin RPC", async () => {
    const partner = clients(as("key-1", "partner"));
    assert.equal(await codeOf(partner.wallet.getBalance({})), "PermissionDenied");
    assert.equal(await codeOf(partner.admin.getTrialBalance({})), "PermissionDenied");
    assert.equal(await codeOf(partner.wallet.quoteFees({})), "OK");
  });
});
