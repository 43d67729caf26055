// Every role as its own process with exactly the environment the Helm chart
// renders for it (NODE_ENV=production, secrets filled with test values,
// nothing inherited from the test runner), on local PostgreSQL, Redis and NATS
// JetStream, behind a small ingress that routes as the chart's Ingress does.
// Each runs the image's compiled bundle (platform/build.ts) with plain node, the
// migration Job's role first. Only what a single machine forces is changed: each in-cluster address
// (http://t-ttip-<role>:<its Service's port>) becomes the role's loopback port, and the public
// https address becomes the local ingress. Then a tip goes end to end: worker
// sign-up by SMS OTP (auth -> notification -> the SMS provider), a QR code, an
// STK push, Daraja's callback through the ingress, the credit in the wallet;
// every process exports its spans to a loopback OTLP collector (otel.endpoint).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { ProviderSimulator } from "@ttip/notification/testing";
import { startDarajaSimulator, type DarajaSimulator } from "@ttip/payment/testing";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { createTestDatabase, eventually, freePort, PlatformProcess, startNats, startOtlpReceiver, startRedis, type TestDatabase, type TestServer, testPhone } from "@ttip/runtime/testing";
import { RenderedProcess, renderChart, resolveEnv, startIngress, startWebApp, stopPlatform, type EnvVar } from "./chart-env-harness.js";
import { ensureWebBuild } from "@ttip/web";
import { builtPlatform } from "./built-platform.js";

const PUBLIC = "https://tips.example.co.ke";
const COLLECTOR = "http://otel-collector.monitoring:4318";
/** Every Deployment the chart renders (a new service joins the test by joining the chart). */
const ROLES: string[] = [];
type RoleName = string;

describe("every role with the environment the chart renders (NODE_ENV=production) takes a tip end to end", { timeout: 5 * 60_000 }, () => {
  let db: TestDatabase;
  let redis: TestServer;
  let nats: TestServer;
  let daraja: DarajaSimulator;
  let collector: Awaited<ReturnType<typeof startOtlpReceiver>>;
  let ingress: { url: string; close(): Promise<void> };
  const providers = new ProviderSimulator();
  const procs = new Map<RoleName, PlatformProcess>();
  const rendered = new Map<RoleName, EnvVar[]>();
  let routes: { path: string; type: "Exact" | "Prefix"; role: string }[] = [];
  let web: RenderedProcess | undefined;
  let webEnv: EnvVar[] = [];
  let migrateJob: { env: EnvVar[]; args: string[] };
  let migratedSchemas: string[] = [];

  function api<S extends DescService>(service: S, token?: string): Client<S> {
    const auth: Interceptor = (next) => (req) => {
      if (token) req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    // Through the ingress, as a browser reaches the public address.
    return createClient(service, createConnectTransport({ baseUrl: ingress.url, httpVersion: "1.1", interceptors: [auth] }));
  }

  before(async () => {
    // Its own NATS and Redis: the chart's stream (TTIP, ttip.>) and durable consumers must not meet other tests'.
    const [built] = await Promise.all([builtPlatform(), ensureWebBuild(), (async () => ([redis, nats, db] = await Promise.all([startRedis(), startNats(), createTestDatabase()])))()]);
    await providers.start();
    daraja = await startDarajaSimulator({ callbackDelayMs: 50 });
    collector = await startOtlpReceiver();
    const values = {
      otel: { endpoint: COLLECTOR },
      publicUrl: PUBLIC,
      mpesa: { enabled: true, baseUrl: daraja.url, shortcode: daraja.options.shortcode, callbackAllowedIps: ["127.0.0.1"] },
      notification: { africastalking: { baseUrl: providers.url, username: providers.at.username, senderId: "TTIP" } },
      admin: { allowedNetworks: ["127.0.0.1/32"] },
      // The local ingress is a trusted proxy here, so the gateway reads the client from X-Forwarded-For.
      gateway: { ingress: { enabled: true }, trustedProxies: ["127.0.0.1/32"] },
    };
    const chart = await renderChart(["--set-json", `${Object.entries(values).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(",")}`]);
    for (const [component, c] of chart.deployments) {
      // The web app is Next's server (its own image), started below; the rest are platform roles.
      if (component === "web") webEnv = c.env;
      else rendered.set(component, c.env);
    }
    assert.ok(webEnv.length, "the chart renders the web app's Deployment");
    migrateJob = { env: chart.job!.env, args: chart.job!.args };
    ROLES.push(...[...rendered.keys()].sort());
    assert.ok(ROLES.includes("gateway") && ROLES.includes("payment") && ROLES.length >= 7, `rendered roles: ${ROLES}`);
    routes = chart.routes;

    // What the Secrets hold in a real install, here test values (and the local servers).
    const secrets: Record<string, string> = {
      DATABASE_URL: db.url,
      REDIS_URL: redis.url,
      NATS_URL: nats.url,
      INTERNAL_SIGNING_KEY: "chart-env-test-internal-signing-key-0123456789abcdef",
      AUTH_KEY_ENCRYPTION_SECRET: "chart-env-test-key-encryption-secret-0123456789",
      QR_SIGNING_KEY: "chart-env-test-qr-signing-key-0123456789abcdef",
      DARAJA_CONSUMER_KEY: daraja.options.consumerKey,
      DARAJA_CONSUMER_SECRET: daraja.options.consumerSecret,
      DARAJA_PASSKEY: daraja.options.passkey,
      NOTIFICATION_AT_API_KEY: providers.at.apiKey,
      NOTIFICATION_AT_CALLBACK_TOKEN: "chart-env-test-callback-token",
    };
    const ports = new Map<RoleName, number>();
    for (const role of [...ROLES, "web"]) ports.set(role, await freePort());
    ingress = await startIngress(routes.map((r) => ({ path: r.path, type: r.type, port: () => ports.get(r.role as RoleName)! })));
    const local = (value: string) =>
      value.replace(/http:\/\/t-ttip-([a-z]+):(\d+)/g, (whole, role: RoleName, port: string) => {
        assert.ok(chart.servicePorts.has(`${role}:${port}`), `${whole}: its Service has no such port`);
        return `http://127.0.0.1:${ports.get(role)}`;
      }).replaceAll(PUBLIC, ingress.url).replaceAll(COLLECTOR, collector.url);
    // A real install's Secrets, here the test values above (whatever Secret the key is read from).
    const envOf = (role: string, vars: EnvVar[]) => resolveEnv(role, vars, local, (ref) => secrets[ref.key]);
    // The pre-install hook: the Job's arguments and environment, before any service starts.
    const migrated = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(process.execPath, [built.productionEntry, ...migrateJob.args], { env: envOf("migrate", migrateJob.env) as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (d) => (output += d));
      child.stderr.on("data", (d) => (output += d));
      child.on("exit", (code) => resolve({ code, output }));
    });
    assert.equal(migrated.code, 0, migrated.output);
    migratedSchemas = (await db.pool.query("SELECT table_schema FROM information_schema.tables WHERE table_name = 'schema_migrations' ORDER BY 1")).rows.map((r) => r.table_schema);
    for (const role of ROLES) procs.set(role, PlatformProcess.onPort(built.productionEntry, role, ports.get(role)!, envOf(role, rendered.get(role)!), { cleanEnv: true }));
    // Services together (migrations lock per schema), then the gateway.
    await Promise.all(ROLES.filter((r) => r !== "gateway").map((r) => procs.get(r)!.start(90_000)));
    await procs.get("gateway")!.start(90_000);

    // The web image's server with its rendered environment.
    web = await startWebApp(envOf("web", webEnv), ports.get("web")!);
  }, { timeout: 4 * 60_000 });

  after(async () => {
    await stopPlatform(web, procs);
    await ingress?.close();
    await daraja?.close();
    await collector?.close();
    await providers.close();
    await db?.drop();
    await Promise.allSettled([redis?.stop(), nats?.stop()]);
  });

  test("the migration Job's role, run by the compiled bundle, made every service's schema before any service started", () => {
    assert.deepEqual(migrateJob.args, ["migrate"]);
    for (const schema of ["analytics", "auth", "notification", "payment", "qr", "venue", "wallet"]) assert.ok(migratedSchemas.includes(schema), `${schema}: ${migratedSchemas}`);
  });

  test("the rendered environment is production's: NODE_ENV, real providers, no simulator switch, public addresses", () => {
    const env = (role: RoleName) => Object.fromEntries(rendered.get(role)!.map((v) => [v.name, v.value ?? v.valueFrom]));
    for (const role of ROLES) assert.equal(env(role).NODE_ENV, "production", role);
    assert.equal(env("notification").NOTIFICATION_PROVIDERS, "real");
    assert.equal(env("qr").QR_TIP_BASE_URL, `${PUBLIC}/t`);
    assert.equal(env("venue").VENUE_JOIN_URL, `${PUBLIC}/join`);
    assert.equal(env("qr").QR_ALLOW_DEV_SIGNING_KEY, undefined);
    assert.equal(env("auth").AUTH_SMS_URL, undefined, "OTPs go through notification: no second SMS integration");
    assert.deepEqual(routes.map((r) => `${r.path}${r.type === "Exact" ? "(exact)" : ""}->${r.role}`), ["/t/->web", "/w->web", "/v->web", "/join->web", "/lang->web", "/_next/->web", "/photos/->web", "/(exact)->web", "/daraja/->payment", "/mpesa/->payment", "/c2b/->payment", "/ussd/->payment", "/stripe/->payment", "/paypal/->payment", "/webhooks/->notification", "/->gateway"]);
  });

  test("the gateway serves the admin console at /admin to the admin networks only, from the image's build", async () => {
    const env = Object.fromEntries(rendered.get("gateway")!.map((v) => [v.name, v.value]));
    assert.equal(env.ADMIN_CONSOLE, "on");
    const page = await fetch(`${ingress.url}/admin/users`);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /<script[^>]+src="\/admin\/assets\/[^"]+\.js"/);
    const asset = /\/admin\/assets\/[^"]+\.js/.exec(html)![0];
    const script = await fetch(`${ingress.url}${asset}`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get("content-type") ?? "", /javascript/);
    await script.arrayBuffer();
    // A client outside 127.0.0.1/32 (admin.allowedNetworks), as the trusted ingress reports it.
    const outsider = await fetch(`${ingress.url}/admin/users`, { headers: { "x-forwarded-for": "203.0.113.9" } });
    assert.equal(outsider.status, 403);
    await outsider.arrayBuffer();
  });

  test("a worker signs up by SMS OTP, gets a QR code for the public address, and a customer's STK tip is credited", async () => {
    const phone = testPhone();
    const { challengeId } = await api(AuthService).startPhoneVerification({ phone });
    // auth -> notification -> the SMS provider (Africa's Talking's API, simulated).
    const sms = await eventually("the OTP SMS", () => providers.sent.find((m) => m.to.replace(/^\+/, "") === phone));
    const otp = /\b(\d{6})\b/.exec(sms.body)![1];
    const signup = await api(AuthService).verifyPhoneOtp({ challengeId, otp, role: Role.WORKER });
    const token = signup.tokens!.accessToken;
    const workerId = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub as string;

    await api(QrService, token).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: workerId, displayName: "Achieng", currency: "KES", city: "Nairobi" });
    const { qrCode } = await api(QrService, token).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: workerId, idempotencyKey: randomUUID() });
    // The public address (here the local ingress standing for it).
    assert.ok(qrCode!.url.startsWith(`${ingress.url}/t/`), `the code encodes the public address: ${qrCode!.url}`);

    // The QR's URL, through the ingress, is the web Deployment's tip page, rendered on the server
    // from the gateway at its in-cluster address (TTIP_API_URL as the chart renders it).
    const page = await fetch(qrCode!.url);
    assert.equal(page.status, 200, await page.clone().text().then((t) => t.slice(0, 300) + web!.output));
    const html = await page.text();
    assert.match(html, /Achieng/, "the worker's name is in the first HTML");
    const asset = /\/_next\/static\/[^"']+\.js/.exec(html)?.[0];
    assert.ok(asset, "the page loads the app's assets");
    const script = await fetch(`${ingress.url}${asset}`);
    assert.equal(script.status, 200, `${asset} through the ingress`);
    assert.match(script.headers.get("content-type") ?? "", /javascript/);
    await script.arrayBuffer();
    // The API stays on the gateway: a Connect call on the same host is answered by it.
    const rpc = await fetch(`${ingress.url}/ttip.qr.v1.QrService/ResolveQrCode`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(rpc.headers.get("content-type"), "application/json", "a Connect error, not a web page");
    await rpc.arrayBuffer();

    const customerPhone = testPhone({ format: "07" });
    const traceId = randomUUID().replaceAll("-", "");
    const created = await api(PaymentService).createTip(
      {
        idempotencyKey: randomUUID(),
        recipient: { case: "qrCode", value: qrCode!.shortCode },
        amount: { currency: "KES", amountMinor: 10_000n },
        payment: { case: "mpesaPhone", value: customerPhone },
      },
      { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } },
    );
    // Pending, or already succeeded: the simulator calls back 50 ms after the push, which on
    // busy cores can be applied before CreateTip's answer is read.
    assert.ok([TipStatus.PENDING, TipStatus.SUCCEEDED].includes(created.tip!.status), `created as ${TipStatus[created.tip!.status]}`);
    // Daraja calls back the public address: the ingress routes /daraja/ to payment,
    // which checks the source (127.0.0.1, through its trusted proxy) and applies it once.
    let last = created.tip!;
    for await (const m of api(PaymentService).watchTip({ tipId: last.tipId })) last = m.tip!;
    assert.equal(last.status, TipStatus.SUCCEEDED, `tip ended ${TipStatus[last.status]}`);
    const push = daraja.transactions().find((t) => t.kind === "stk" && t.checkoutRequestId);
    assert.ok(push?.callbackUrl?.startsWith(`${ingress.url}/daraja/stk/`), `callback through the public address: ${push?.callbackUrl}`);

    const credited = await eventually("the worker's credit", async () => {
      const [b] = (await api(WalletService, token).getBalance({ currency: "KES" })).balances;
      return b && b.ledger!.amountMinor > 0n ? b : undefined;
    });
    assert.equal(credited.ledger!.amountMinor, 10_000n - created.tip!.fee!.amountMinor, "the tip less the quoted fee");

    // What Prometheus scrapes (however it finds the pods): each process names its role itself, the label
    // the chart's SLO alerts and dashboards tell the gateway's count of a public call from the service's by.
    for (const role of ["gateway", "payment"]) {
      const scraped = await (await fetch(`${procs.get(role)!.url}/metrics`)).text();
      assert.match(scraped, new RegExp(`^grpc_server_handled_total\\{[^}]*grpc_service="ttip.payment.v1.PaymentService"[^}]*role="${role}"`, "m"), `${role}'s /metrics`);
    }

    // Traces, as otel.endpoint renders them, exported by the compiled bundle of each process: the
    // caller's trace through the gateway into payment (its statements as client spans); Daraja's
    // callback starts a trace of its own that reaches the wallet's credit and tip_succeeded's consumers.
    const SERVER = 2, CONSUMER = 5;
    // Each process exports its spans in batches of its own: payment's statements can arrive before its
    // server span, which ends with the call. So the wait is for the spans asserted below, not for any of each service's.
    const isCreateTip = (s: (typeof collector.spans)[number]) => s.service === "ttip-payment" && s.kind === SERVER && s.name === "ttip.payment.v1.PaymentService/CreateTip";
    const isStatement = (s: (typeof collector.spans)[number]) => s.service === "ttip-payment" && s.kind === 3 && s.name.startsWith("pg ");
    const spans = await eventually("the tip's trace from the gateway and payment", () => {
      const own = collector.spans.filter((s) => s.traceId === traceId);
      return own.some((s) => s.service === "ttip-gateway") && own.some(isCreateTip) && own.some(isStatement) && own;
    }, { timeoutMs: 30_000 });
    assert.ok(spans.some(isCreateTip));
    assert.ok(spans.some(isStatement), "payment's statements");
    const callback = await eventually("Daraja's callback's trace reaching the wallet and notification", () => {
      const hook = collector.spans.find((s) => s.service === "ttip-payment" && s.kind === SERVER && s.name === "POST /daraja");
      const own = hook ? collector.spans.filter((s) => s.traceId === hook.traceId) : [];
      return own.some((s) => s.service === "ttip-wallet" && s.kind === SERVER) && own.some((s) => s.service === "ttip-notification" && s.kind === CONSUMER) && hook;
    }, { timeoutMs: 30_000 });
    assert.ok(!callback.parentSpanId, "Safaricom sends no traceparent: a new trace");
  });
});
