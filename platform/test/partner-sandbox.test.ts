// The partner sandbox as a partner meets it: `make run` (PGlite, in-process bus,
// the M-Pesa simulator) gives a key; tips the key creates at checkout settle on
// the simulator's scripts and come back as signed webhooks to a loopback receiver.
import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { callerHeaders, signingInterceptor } from "@ttip/runtime";
import { after, before, describe, test } from "node:test";
import { eventually, initializedPgliteFolder, type PgliteFolder } from "@ttip/runtime/testing";
import { startDaraja, startEmbedded, type EmbeddedPlatform } from "../src/embedded.js";
import { allPartnerScopes, runSandbox, webhookVerifies, type ReceivedWebhook } from "../src/partner-sandbox.js";

describe("partner sandbox on the simulators", () => {
  let platform: EmbeddedPlatform;
  let data: PgliteFolder;
  before(async () => {
    // A copy of a data folder PGlite initialized once: PGlite's first start is not what this file tests.
    data = await initializedPgliteFolder();
    platform = await startEmbedded({ DATA_DIR: data.dir, PORT: "0", LOG_LEVEL: "silent", WEB: "off" });
  });
  after(async () => {
    await platform?.close();
    data?.remove();
  });

  /** Auth's admin RPCs on the running platform, called as an admin. */
  const authAdmin = () => {
    const asAdmin: Interceptor = (next) => (req) => {
      for (const [k, v] of Object.entries(callerHeaders(randomUUID(), "admin"))) req.header.set(k, v);
      return next(req);
    };
    const authUrl = platform.services.find((s) => s.name === "auth")!.server.url;
    return createClient(AuthAdminService, createGrpcTransport({ baseUrl: authUrl, interceptors: [asAdmin, signingInterceptor()] }));
  };

  test("make run issues a key with every partner scope the contracts declare", () => {
    assert.ok(platform.partnerSandbox);
    assert.ok(allPartnerScopes().includes("tips:create") && allPartnerScopes().includes("webhooks:write"));
  });

  test("a paid and a cancelled checkout each come back as verified webhooks: created, then succeeded or failed", async () => {
    const seen: ReceivedWebhook[] = [];
    const run = await runSandbox(platform.gatewayUrl, platform.partnerSandbox!, (w) => seen.push(w));
    try {
      const [paid, cancelled] = run.tips;
      const types = (tipId: string) => seen.filter((w) => w.event.tip?.tipId === tipId).map((w) => w.event.type);
      await eventually("both settled", () => types(paid.tipId).includes("WEBHOOK_EVENT_TYPE_TIP_SUCCEEDED") && types(cancelled.tipId).includes("WEBHOOK_EVENT_TYPE_TIP_FAILED"), 60_000);
      assert.ok(types(paid.tipId).includes("WEBHOOK_EVENT_TYPE_TIP_CREATED"));
      assert.ok(!types(paid.tipId).includes("WEBHOOK_EVENT_TYPE_TIP_FAILED"));
      assert.equal(seen.find((w) => w.event.tip?.tipId === cancelled.tipId && w.event.type === "WEBHOOK_EVENT_TYPE_TIP_FAILED")!.event.tip!.resultCode, "1032");
      assert.equal(new Set(seen.map((w) => w.deliveryId)).size, seen.length, "one delivery per event");
    } finally {
      await run.close();
    }
  });

  test("a sandbox key revoked in the console does not stop the next start: a live key follows it, the same on every start after", async () => {
    const revoked = platform.partnerSandbox!;
    await authAdmin().revokePartnerApiKey({ keyId: revoked.keyId });
    const restart = async () => {
      await platform.close();
      platform = await startEmbedded({ DATA_DIR: data.dir, PORT: "0", LOG_LEVEL: "silent", WEB: "off" });
      return platform.partnerSandbox!;
    };
    const next = await restart();
    assert.notEqual(next.keyId, revoked.keyId, "a fresh key (before: the start failed, the revoked key could not be linked)");
    const { keys } = await authAdmin().listPartnerApiKeys({ page: { pageSize: 100 } });
    assert.deepEqual(keys.filter((k) => k.keyId === next.keyId).map((k) => Boolean(k.revokedAt)), [false], "live");
    assert.deepEqual(await restart(), next, "found again on the start after");
  });

  test("with a real money provider configured there is no sandbox key, and partner webhooks may not point at loopback", async () => {
    // Daraja configured as for real: its simulator started apart, as if it were Safaricom's.
    const real: Record<string, string | undefined> = {};
    const daraja = (await startDaraja(real))!;
    const earlier = platform.partnerSandbox!;
    try {
      await platform.close();
      // PARTNER_SANDBOX=off, as a real provider's operator is told to set.
      platform = await startEmbedded({ ...real, DATA_DIR: data.dir, PORT: "0", LOG_LEVEL: "silent", WEB: "off", PARTNER_SANDBOX: "off" });
      assert.equal(platform.partnerSandbox, undefined);
      assert.equal(platform.config.AUTH_WEBHOOK_ALLOW_LOOPBACK, undefined);
      // Before, the key an earlier start printed stayed live, every scope, its tips real pushes to real phones.
      const { keys } = await authAdmin().listPartnerApiKeys({ page: { pageSize: 100 } });
      assert.ok(keys.find((k) => k.keyId === earlier.keyId)?.revokedAt, "the earlier start's key revoked");
    } finally {
      await platform.close();
      platform = await startEmbedded({ DATA_DIR: data.dir, PORT: "0", LOG_LEVEL: "silent", WEB: "off" });
      await daraja.close();
    }
    assert.ok(platform.partnerSandbox, "the simulators again: the key again");
  });

  test("the receiver's check refuses a body or a secret other than the signed ones", () => {
    const t = Math.floor(Date.now() / 1000);
    const header = `t=${t},v1=${createHmac("sha256", "s3cret").update(`${t}.{"a":1}`).digest("hex")}`;
    assert.equal(webhookVerifies("s3cret", header, '{"a":1}'), true);
    assert.equal(webhookVerifies("s3cret", header, '{"a":2}'), false);
    assert.equal(webhookVerifies("other", header, '{"a":1}'), false);
    assert.equal(webhookVerifies("s3cret", header.replace(`t=${t}`, `t=${t - 3600}`), '{"a":1}'), false);
  });
});
