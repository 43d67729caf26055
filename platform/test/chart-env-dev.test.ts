// The dev/staging values (charts/ttip/values-dev.yaml) on a bare cluster, run as
// processes: every Deployment they render (the platform's roles from the development
// image's compiled bundle, the simulators role, the web app) with exactly its rendered
// environment, read from the rendered Secrets too. The in-cluster PostgreSQL, Redis and
// NATS the values bring are the harness's local servers (their Services' addresses
// become those servers', as a cluster's DNS would resolve them), and each in-cluster
// address http://t-ttip-<component>:<port> becomes that process's loopback port. Then a
// simulated tip: sign-up with the OTP read from the simulators' SMS API, a QR code, an
// STK push to the simulators' Daraja, its callback to payment, the credit in the wallet.
import assert from "node:assert/strict";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { createTestDatabase, eventually, freePort, PlatformProcess, startNats, startRedis, type TestDatabase, type TestServer, testPhone } from "@ttip/runtime/testing";
import { ensureWebBuild } from "@ttip/web";
import { builtPlatform } from "./built-platform.js";
import { CHART, RenderedProcess, renderChart, resolveEnv, startWebApp, stopPlatform, type RenderedChart } from "./chart-env-harness.js";

/** The dependencies the dev values bring into the cluster: stood in for by local servers. */
const BACKENDS = ["postgres", "redis", "nats"] as const;
/** Deployments that are not platform roles: started below as their own images run. */
const NOT_ROLES = new Set<string>([...BACKENDS, "simulators", "web"]);

describe("the dev values: every rendered Deployment as a process takes a simulated tip end to end", { timeout: 5 * 60_000 }, () => {
  let db: TestDatabase;
  let redis: TestServer;
  let nats: TestServer;
  let chart: RenderedChart;
  const roles: string[] = [];
  const procs = new Map<string, PlatformProcess>();
  let simulators: RenderedProcess | undefined;
  let web: RenderedProcess | undefined;
  /** Loopback port of each in-cluster "<component>:<port>". */
  const ports = new Map<string, number>();
  const local = (component: string, port = 8080) => `http://127.0.0.1:${ports.get(`${component}:${port}`)}`;

  function api<S extends DescService>(service: S, token?: string): Client<S> {
    const auth: Interceptor = (next) => (req) => {
      if (token) req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    // The dev values render no Ingress: the gateway's Service, as a port-forward reaches it.
    return createClient(service, createConnectTransport({ baseUrl: local("gateway"), httpVersion: "1.1", interceptors: [auth] }));
  }

  before(async () => {
    const [built] = await Promise.all([
      builtPlatform(),
      ensureWebBuild(),
      (async () => ([redis, nats, db] = await Promise.all([startRedis(), startNats(), createTestDatabase()])))(),
      (async () => (chart = await renderChart(["-f", path.join(CHART, "values-dev.yaml")])))(),
    ]);
    for (const b of BACKENDS) {
      assert.ok(chart.deployments.has(b), `the dev values bring ${b} into the cluster`);
      assert.ok(chart.docs.some((d) => d.kind === "Service" && d.metadata.name === `t-ttip-${b}`), `${b}'s Service`);
    }
    assert.ok(chart.deployments.has("simulators") && chart.deployments.has("web"));
    roles.push(...[...chart.deployments.keys()].filter((c) => !NOT_ROLES.has(c)).sort());
    assert.ok(roles.includes("gateway") && roles.includes("payment") && roles.length >= 7, `rendered roles: ${roles}`);
    for (const [component, c] of chart.deployments) for (const p of c.ports) ports.set(`${component}:${p}`, await freePort());

    // In-cluster names to loopback: the components' Services, and the dependencies' (the rendered
    // connections Secret's URLs, with the chart's user and database) to the local servers.
    const servers: Record<(typeof BACKENDS)[number], string> = { postgres: db.url, redis: redis.url, nats: nats.url };
    const toLocal = (value: string) => {
      const backend = /^[a-z]+:\/\/(?:[^@/]*@)?t-ttip-(postgres|redis|nats):\d+(?:\/[^/]*)?$/.exec(value)?.[1] as keyof typeof servers | undefined;
      if (backend) return servers[backend];
      return value.replace(/http:\/\/t-ttip-([a-z]+):(\d+)/g, (whole, c: string, p: string) => {
        const target = chart.servicePorts.get(`${c}:${p}`);
        assert.ok(target !== undefined && ports.has(`${c}:${target}`), `${whole}: no Service port of a Deployment there`);
        return local(c, target);
      });
    };
    const envOf = (component: string) => resolveEnv(component, chart.deployments.get(component)!.env, toLocal, (ref) => {
      const value = chart.secrets.get(ref.name)?.[ref.key];
      return value === undefined ? undefined : toLocal(value);
    });

    // The simulators role first (payment reaches Daraja at start); on loopback, on the ports chosen above.
    const sim = chart.deployments.get("simulators")!;
    assert.deepEqual(sim.ports, [8080, 8081]);
    const simEnv = { ...envOf("simulators"), HOST: "127.0.0.1", PORT: String(ports.get("simulators:8080")), SMS_SIMULATOR_PORT: String(ports.get("simulators:8081")) };
    simulators = await RenderedProcess.start("the simulators", ["--enable-source-maps", built.developmentEntry, ...sim.args], simEnv, async () => {
      const [daraja, sms] = await Promise.all([fetch(`${local("simulators")}/__sim/transactions`), fetch(`${local("simulators", 8081)}/simulator/messages`)]);
      return daraja.status === 200 && sms.status === 200;
    });

    for (const role of roles) procs.set(role, PlatformProcess.onPort(built.developmentEntry, role, ports.get(`${role}:8080`)!, envOf(role), { cleanEnv: true }));
    // No migration Job in the dev values: the services migrate at start, together (under one lock per schema).
    await Promise.all(roles.filter((r) => r !== "gateway").map((r) => procs.get(r)!.start(90_000)));
    await procs.get("gateway")!.start(90_000);

    web = await startWebApp(envOf("web"), ports.get("web:8080")!);
  }, { timeout: 4 * 60_000 });

  after(async () => {
    await stopPlatform(web, procs);
    await simulators?.stop();
    await db?.drop();
    await Promise.allSettled([redis?.stop(), nats?.stop()]);
  });

  test("the dev values render development roles: in-cluster dependencies, simulators, no migration Job", () => {
    const env = (c: string) => Object.fromEntries(chart.deployments.get(c)!.env.map((v) => [v.name, v.value ?? v.valueFrom?.secretKeyRef?.key]));
    for (const role of roles) assert.equal(env(role).NODE_ENV, "development", role);
    assert.equal(chart.job, undefined, "migrations at start: the in-cluster PostgreSQL starts after pre-install hooks would run");
    assert.equal(chart.secrets.get("ttip-connections")?.DATABASE_URL, "postgres://ttip:ttip-dev@t-ttip-postgres:5432/ttip");
    assert.equal(env("notification").NOTIFICATION_PROVIDERS, "simulator");
    assert.equal(env("payment").DARAJA_BASE_URL, "http://t-ttip-simulators:8080");
    assert.equal(env("payment").PAYMENT_CALLBACK_BASE_URL, "http://t-ttip-payment:8080");
    assert.deepEqual([env("auth").AUTH_OTP_SENDER, env("auth").AUTH_SMS_URL], ["sms", "http://t-ttip-simulators:8081"]);
  });

  test("a worker signs up with the OTP from the simulators' SMS API, and a customer's simulated STK tip is credited", async () => {
    const phone = testPhone();
    const { challengeId } = await api(AuthService).startPhoneVerification({ phone });
    // What a person on a dev cluster reads: GET /simulator/messages on the simulators' Service.
    const sms = await eventually("the OTP at the simulators' SMS API", async () => {
      const { messages } = (await (await fetch(`${local("simulators", 8081)}/simulator/messages`)).json()) as { messages: { to: string; message: string }[] };
      return messages.find((m) => m.to.replace(/^\+/, "") === phone);
    });
    const otp = /\b(\d{6})\b/.exec(sms.message)![1];
    const token = (await api(AuthService).verifyPhoneOtp({ challengeId, otp, role: Role.WORKER })).tokens!.accessToken;
    const workerId = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub as string;

    await api(QrService, token).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: workerId, displayName: "Wanjiru", currency: "KES", city: "Nairobi" });
    const { qrCode } = await api(QrService, token).createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: workerId, idempotencyKey: randomUUID() });
    assert.ok(qrCode!.url.startsWith("http://ttip.localtest.me/t/"), `the dev values' public address: ${qrCode!.url}`);
    // The web Deployment's tip page for that code, rendered from the gateway's in-cluster address.
    const page = await fetch(`${local("web")}${new URL(qrCode!.url).pathname}`);
    const html = await page.text();
    assert.equal(page.status, 200, html.slice(0, 300) + web!.output);
    assert.match(html, /Wanjiru/);

    const created = await api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "qrCode", value: qrCode!.shortCode },
      amount: { currency: "KES", amountMinor: 25_000n },
      payment: { case: "mpesaPhone", value: testPhone({ format: "07" }) },
    });
    let last = created.tip!;
    for await (const m of api(PaymentService).watchTip({ tipId: last.tipId })) last = m.tip!;
    assert.equal(last.status, TipStatus.SUCCEEDED, `tip ended ${TipStatus[last.status]}`);
    // The simulators' Daraja took the push and called payment back at its in-cluster address.
    const { transactions } = (await (await fetch(`${local("simulators")}/__sim/transactions`)).json()) as { transactions: { kind: string; callbackUrl?: string }[] };
    const push = transactions.find((t) => t.kind === "stk");
    assert.ok(push?.callbackUrl?.startsWith(`${local("payment")}/daraja/stk/`), `callback to payment's Service: ${push?.callbackUrl}`);

    const credited = await eventually("the worker's credit", async () => {
      const [b] = (await api(WalletService, token).getBalance({ currency: "KES" })).balances;
      return b && b.ledger!.amountMinor > 0n ? b : undefined;
    }, { timeoutMs: 30_000 });
    assert.equal(credited.ledger!.amountMinor, 25_000n - created.tip!.fee!.amountMinor, "the tip less the quoted fee");
  });
});
