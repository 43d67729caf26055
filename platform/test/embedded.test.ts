import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { readFileSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { randomUUID } from "node:crypto";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { eventually, initializedPgliteFolder, type PgliteFolder } from "@ttip/runtime/testing";
import { startEmbedded, type EmbeddedPlatform } from "../src/embedded.js";
import { modules, publicServices } from "../src/modules.js";

// `make run` as a user gets it: PGlite, in-process bus and cache, one process.
// Payment registers in the background and, after a failed try, waits 5 s before the next (for
// about a minute in all): on a busy machine the first tries can miss, so wait as long as it tries.
function eventuallyRegistered(url: string): Promise<Array<{ confirmationUrl: string }>> {
  return eventually("the C2B URLs registered", async () => {
    const { registrations } = (await (await fetch(url)).json()) as { registrations: Array<{ confirmationUrl: string }> };
    return registrations.length > 0 && registrations;
  }, { timeoutMs: 60_000, everyMs: 100 });
}

describe("embedded platform (make run)", () => {
  let platform: EmbeddedPlatform;
  let data: PgliteFolder;
  before(async () => {
    // A copy of a data folder PGlite initialized once: this file tests the platform, not PGlite's first start.
    data = await initializedPgliteFolder();
    // Warnings stay on: a background step that keeps failing (the paybill URLs' registration
    // retries, logging each failure) then leaves its reason in the test's output.
    platform = await startEmbedded({ DATA_DIR: data.dir, PORT: "0", LOG_LEVEL: "warn" });
  });
  after(async () => {
    await platform?.close();
    data?.remove();
  });

  test("every public service of all seven answers SERVING through the gateway, by Connect and by gRPC", async () => {
    assert.deepEqual(platform.services.map((s) => s.name).sort(), ["analytics", "auth", "notification", "payment", "qr", "venue", "wallet"]);
    const names = modules.flatMap((m) => publicServices(m).map((s) => s.typeName));
    assert.ok(names.length >= 6);
    for (const transport of [
      createConnectTransport({ baseUrl: platform.gatewayUrl, httpVersion: "1.1" }),
      createGrpcTransport({ baseUrl: platform.gatewayUrl }),
    ]) {
      const health = createClient(Health, transport);
      for (const service of names) assert.equal((await health.check({ service })).status, Status.SERVING, service);
    }
  });

  test("PORT=0 takes a port below the kernel's ephemeral range, which the services binding port 0 after it cannot be given", async () => {
    const firstEphemeral = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    const port = Number(new URL(platform.gatewayUrl).port);
    // Before, listen(0): an ephemeral port, released, then handed to a service or simulator before the gateway took it.
    assert.ok(port >= 10_000 && port < firstEphemeral, `the gateway on ${port}, the ephemeral range from ${firstEphemeral}`);
    for (const s of platform.services) assert.ok(Number(new URL(s.server.url).port) >= firstEphemeral, `${s.name} on ${s.server.url}`);
  });

  test("the simulators a person reads are listed and answer", async () => {
    const urls = Object.values(platform.simulators);
    assert.equal(urls.length, 5, "M-Pesa, its paybill URLs, SMS, Stripe and PayPal");
    for (const url of urls) assert.equal((await fetch(url)).status, 200, url);
    // The paybill's C2B URLs were registered at start, and the USSD menu answers a dial.
    const registered = await eventuallyRegistered(platform.simulators["M-Pesa paybill URLs (C2B)"]);
    assert.match(registered[0].confirmationUrl, /\/c2b\/[^/]+\/confirmation$/);
    const dial = await fetch(platform.offline!.ussdUrl, { method: "POST", body: new URLSearchParams({ sessionId: "embedded-test-1", serviceCode: "*483*123#", phoneNumber: "+254712345678", text: "" }) });
    assert.match(await dial.text(), /^CON Welcome/);
  });

  test("the admin console at /admin on the same port, and a first-admin setup token while no admin exists", async () => {
    const page = await fetch(`${platform.gatewayUrl}/admin/users`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-security-policy") ?? "", /frame-ancestors 'none'/);
    const script = /src="(\/admin\/assets\/app-[^"]+\.js)"/.exec(await page.text())?.[1];
    assert.ok(script, "the page loads the bundle");
    assert.equal((await fetch(`${platform.gatewayUrl}${script}`)).status, 200);
    assert.equal((await fetch(`${platform.gatewayUrl}/admin/assets/nothing.js`)).status, 404);
    // A broken escape is a path like any other: before, decoding it threw outside any handler and ended the process.
    for (const broken of ["/admin/%", "/admin/%E0%A4", "/admin/assets/%zz.js"]) {
      assert.equal((await fetch(`${platform.gatewayUrl}${broken}`)).status, 200, broken);
    }
    assert.match(platform.setupToken ?? "", /^ttip_setup/);
  });

  test("the gateway serves /metrics with gRPC server metrics", async () => {
    const res = await fetch(`${platform.gatewayUrl}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /grpc_server_handled_total\{[^}]*grpc_service="grpc.health.v1.Health"/);
  });

  test("a card tip through the gateway is paid on the Stripe simulator (as Stripe.js would) and succeeds", async () => {
    const pay = createClient(PaymentService, createConnectTransport({ baseUrl: platform.gatewayUrl, httpVersion: "1.1" }));
    const created = await pay.createTip({
      idempotencyKey: randomUUID(), recipient: { case: "workerId", value: randomUUID() }, amount: { currency: "EUR", amountMinor: 500n },
      payment: { case: "card", value: true },
    });
    assert.match(created.stripePublishableKey, /^pk_test_/);
    const stripeApi = new URL(platform.config.STRIPE_API_BASE!);
    const js = await fetch(`${stripeApi.origin}/v3/`);
    assert.match(await js.text(), /window\.Stripe = function/);
    const pi = created.stripeClientSecret.split("_secret_")[0];
    const confirmed = await fetch(`${stripeApi.origin}/v1/payment_intents/${pi}/confirm`, {
      method: "POST", headers: { authorization: `Bearer ${created.stripePublishableKey}` },
      body: new URLSearchParams({ payment_method: "pm_card_visa", client_secret: created.stripeClientSecret }),
    });
    assert.equal(confirmed.status, 200);
    for await (const m of pay.watchTip({ tipId: created.tip!.tipId })) if (m.tip!.status === TipStatus.SUCCEEDED) break;
    const { tip } = await pay.getTip({ tipId: created.tip!.tipId });
    assert.equal(tip!.status, TipStatus.SUCCEEDED);
    assert.equal(tip!.workerReceives!.currency, "KES");
    assert.equal(tip!.fxRate, "140.10000000");
  });
});
