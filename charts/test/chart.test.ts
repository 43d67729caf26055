import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { execGo, helmBinary, kubeScoreBinary } from "./helm.js";

const chart = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../ttip");
const KUBE = ["--kube-version", "1.33.0"];
/** The values without a default: where the deployment is reached, the SMS provider's account. */
const BASE = ["publicUrl=https://tips.example.co.ke", "notification.africastalking.username=ttip"];

type Doc = { kind: string; metadata: { name: string; labels: Record<string, string> }; spec: any };

/**
 * Each distinct render once per file (six tests render the defaults; parsing the output is most of this
 * process's CPU): the same arguments render the same objects, and each caller gets its own copy.
 */
const renders = new Map<string, Promise<Doc[]>>();

/** Renders with --set for each value, or as given for a flag (--set-json=…: --set keeps 0.05 a string). */
async function render(...set: string[]): Promise<Doc[]> {
  const key = JSON.stringify(set);
  if (!renders.has(key)) renders.set(key, renderOnce(set));
  return structuredClone(await renders.get(key)!);
}

async function renderOnce(set: string[]): Promise<Doc[]> {
  const { stdout } = await execGo(helmBinary(), ["template", "t", chart, ...KUBE, ...[...BASE, ...set].flatMap((s) => (s.startsWith("--") ? [s] : ["--set", s]))]);
  const docs = parseAllDocuments(stdout);
  for (const d of docs) assert.deepEqual(d.errors, [], "valid YAML without duplicate keys");
  return docs.map((d) => d.toJSON()).filter(Boolean);
}

const COMPONENTS = ["analytics", "auth", "gateway", "notification", "payment", "qr", "venue", "wallet"];

describe("helm chart", () => {
  test("lints clean with --strict", async () => {
    const { stdout } = await execGo(helmBinary(), ["lint", chart, "--strict", ...KUBE, ...BASE.flatMap((s) => ["--set", s])]);
    assert.match(stdout, /0 chart\(s\) failed/);
  });

  test("one Deployment, Service, HPA, PDB and NetworkPolicy per component, probed over grpc.health.v1", async () => {
    const docs = await render();
    const of = (kind: string) => docs.filter((d) => d.kind === kind).map((d) => d.metadata.labels["app.kubernetes.io/component"]).sort();
    for (const kind of ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount"]) {
      assert.deepEqual(of(kind), [...COMPONENTS, "web"].sort(), kind);
    }
    assert.deepEqual(of("NetworkPolicy"), [...[...COMPONENTS, "migrate", "web"].sort(), undefined], "one per component, the migration Job's, the web app's, and the default deny");
    for (const d of docs.filter((x) => x.kind === "Deployment" && x.metadata.labels["app.kubernetes.io/component"] !== "web")) {
      const c = d.spec.template.spec.containers[0];
      assert.deepEqual(c.args, [d.metadata.labels["app.kubernetes.io/component"]]);
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) assert.equal(c[probe].grpc.port, 8080, `${d.metadata.name} ${probe}`);
      // It migrates before it listens, waiting on the migration Job's lock: before, killed at 120 s into a 600 s migration.
      assert.ok(c.startupProbe.failureThreshold * c.startupProbe.periodSeconds >= 600, `${d.metadata.name}: starts within the migration's deadline`);
      assert.equal(d.spec.replicas, undefined, "the HPA owns the replica count");
      assert.equal(d.spec.template.spec.terminationGracePeriodSeconds, 30, "preStop, drain timeout, and room to close");
      assert.deepEqual(c.lifecycle.preStop, { sleep: { seconds: 5 } });
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      for (const key of ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "helm.sh/chart"]) {
        assert.ok(d.metadata.labels[key], `${d.metadata.name} label ${key}`);
      }
    }
  });

  test("wiring: the gateway knows every service and auth's JWKS; payment knows wallet; secrets stay in Secrets", async () => {
    const docs = await render();
    const env = (component: string) => {
      const d = docs.find((x) => x.kind === "Deployment" && x.metadata.labels["app.kubernetes.io/component"] === component)!;
      return Object.fromEntries(d.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
    };
    const gateway = env("gateway");
    for (const s of COMPONENTS.filter((c) => c !== "gateway")) assert.equal(gateway[`${s.toUpperCase()}_URL`], `http://t-ttip-${s}:8080`);
    assert.equal(gateway.JWKS_URL, "http://t-ttip-auth:8080/.well-known/jwks.json");
    assert.equal(gateway.DATABASE_URL, undefined, "the gateway has no database");
    const payment = env("payment");
    assert.equal(payment.WALLET_URL, "http://t-ttip-wallet:8080");
    assert.deepEqual(payment.DATABASE_URL, { secretKeyRef: { name: "ttip-connections", key: "DATABASE_URL" } });
    assert.equal(env("qr").WALLET_URL, undefined);
    assert.deepEqual(env("qr").QR_SIGNING_KEY, { secretKeyRef: { name: "ttip-secrets", key: "QR_SIGNING_KEY" } });
    assert.deepEqual(env("auth").AUTH_KEY_ENCRYPTION_SECRET, { secretKeyRef: { name: "ttip-secrets", key: "AUTH_KEY_ENCRYPTION_SECRET" } });
    assert.equal(env("payment").QR_SIGNING_KEY, undefined, "each component gets only its own secrets");
    // Daraja's allow-list is checked against the address the gateway's proxies name, not any private range's.
    assert.equal(payment.PAYMENT_CALLBACK_TRUSTED_PROXIES, gateway.TRUSTED_PROXIES);
    assert.equal(payment.PAYMENT_CALLBACK_TRUST_PROXY, undefined);
    const narrowed = await render("gateway.trustedProxies={10.42.0.0/16}");
    const paymentOf = (d: any[]) => d.find((x) => x.kind === "Deployment" && x.metadata.labels["app.kubernetes.io/component"] === "payment")!
      .spec.template.spec.containers[0].env.find((e: any) => e.name === "PAYMENT_CALLBACK_TRUSTED_PROXIES")?.value;
    assert.equal(paymentOf(narrowed), "10.42.0.0/16");
    assert.equal(paymentOf(await render("--set-json=gateway.trustedProxies=[]")), undefined, "none: the socket's address counts");
  });

  test("a gateway Service of type NodePort or LoadBalancer keeps the client's address (externalTrafficPolicy Local); ClusterIP has none to keep", async () => {
    const gatewayService = (docs: Doc[]) => docs.find((d) => d.kind === "Service" && d.metadata.labels["app.kubernetes.io/component"] === "gateway")!;
    for (const type of ["NodePort", "LoadBalancer"]) {
      const svc = gatewayService(await render(`gateway.service.type=${type}`));
      assert.equal(svc.spec.type, type);
      // Before, Cluster: every internet caller was a node's private address, inside trustedProxies (its X-Forwarded-For
      // believed, an admin network named), and /metrics answered it.
      assert.equal(svc.spec.externalTrafficPolicy, "Local", type);
    }
    assert.equal(gatewayService(await render()).spec.externalTrafficPolicy, undefined);
    // Chosen, for a balancer that cannot tell which nodes run a gateway pod: only with no proxy trusted, as every
    // client is then a node's address, and a trusted one believed each caller's own X-Forwarded-For.
    const cluster = ["gateway.service.type=NodePort", "gateway.service.externalTrafficPolicy=Cluster"];
    await assert.rejects(render(...cluster), /gateway.trustedProxies=\[\]/);
    assert.equal(gatewayService(await render(...cluster, "--set-json=gateway.trustedProxies=[]")).spec.externalTrafficPolicy, "Cluster");
  });

  test("otel: off by default; otel.endpoint gives every component the OTLP endpoint, its service name, the sampler (otel.sampleRatio) and egress to the collector", async () => {
    const envOf = (docs: any[], component: string) => {
      const d = docs.find((x) => x.kind === "Deployment" && x.metadata.labels["app.kubernetes.io/component"] === component)!;
      return Object.fromEntries(d.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
    };
    const egressPorts = (docs: any[], name: string) =>
      docs.find((d) => d.kind === "NetworkPolicy" && d.metadata.name === `t-ttip-${name}`)!.spec.egress.flatMap((r: any) => r.ports.map((p: any) => p.port));
    const off = await render();
    for (const c of COMPONENTS) assert.equal(envOf(off, c).OTEL_EXPORTER_OTLP_ENDPOINT, undefined, c);
    assert.ok(!egressPorts(off, "wallet").includes(4318));
    const on = await render("otel.endpoint=http://otel-collector.monitoring:4318");
    for (const c of COMPONENTS) {
      assert.equal(envOf(on, c).OTEL_EXPORTER_OTLP_ENDPOINT, "http://otel-collector.monitoring:4318", c);
      assert.equal(envOf(on, c).OTEL_SERVICE_NAME, `ttip-${c}`);
      assert.equal(envOf(on, c).OTEL_TRACES_SAMPLER, "parentbased_traceidratio");
      assert.equal(envOf(on, c).OTEL_TRACES_SAMPLER_ARG, "1", "every new trace by default");
      assert.ok(egressPorts(on, c).includes(4318), `${c} may reach the collector`);
    }
    const sampled = await render("otel.endpoint=http://otel-collector.monitoring:4318", "--set-json=otel.sampleRatio=0.05");
    for (const c of COMPONENTS) assert.equal(envOf(sampled, c).OTEL_TRACES_SAMPLER_ARG, "0.05", c);
    await assert.rejects(render("--set-json=otel.sampleRatio=1.5"), /otel.sampleRatio: Must be less than or equal to 1/);
    await assert.rejects(render("otel.endpoint=otel-collector:4318"), /otel.endpoint/);
    await assert.rejects(render("otel.endpiont=http://c:4318"), /otel: Additional property endpiont is not allowed/);
  });

  test("each service gets the peer addresses its module says it calls, and no others", async () => {
    const { modules } = await import("../../platform/src/modules.js");
    const docs = await render();
    for (const m of modules) {
      const d = docs.find((x) => x.kind === "Deployment" && x.metadata.labels["app.kubernetes.io/component"] === m.name)!;
      const peers = d.spec.template.spec.containers[0].env
        .filter((e: { value?: string }) => e.value?.startsWith("http://t-ttip-"))
        .map((e: { name: string }) => e.name);
      assert.deepEqual(peers.sort(), (m.calls ?? []).map((c) => `${c.toUpperCase()}_URL`).sort(), m.name);
    }
  });

  test("autoscaling off gives fixed replicas and no HPA; monitoring objects on request", async () => {
    const docs = await render("defaults.autoscaling.enabled=false", "components.gateway.autoscaling.enabled=false", "defaults.replicaCount=3",
      "metrics.serviceMonitor.enabled=true", "metrics.grafanaDashboard.enabled=true");
    assert.equal(docs.filter((d) => d.kind === "HorizontalPodAutoscaler").length, 0);
    assert.ok(docs.filter((d) => d.kind === "Deployment").every((d) => d.spec.replicas === 3));
    assert.equal(docs.filter((d) => d.kind === "ServiceMonitor").length, 1);
    const dashboard = docs.find((d) => d.kind === "ConfigMap" && d.metadata.name.endsWith("dashboards")) as unknown as { data: Record<string, string> };
    const panels = JSON.parse(dashboard.data["ttip-grpc.json"]).panels;
    assert.ok(panels.some((p: any) => p.targets[0].expr.includes("grpc_server_handling_seconds_bucket")));
    // A public RPC is counted by the gateway and by its service: never summed together.
    for (const p of panels) assert.match(p.targets[0].expr, /role(!?)="gateway"/, p.title);
  });

  test("values.schema.json refuses a bad value or an unknown key anywhere, naming it; cross-field rules too", async () => {
    await assert.rejects(render("image.pullPolicy=Sometimes"), /pullPolicy/);
    // A process has 5 s after its calls' drain before its hard deadline: notification's stop fits in it, with a second left to close its bus and pools.
    await assert.rejects(render("drain.sendsMs=4001"), /drain.sendsMs: Must be less than or equal to 4000/);
    await assert.rejects(render("components.wallet.autoscaling.targetCPUUtilizationPercentage=150"), /targetCPUUtilizationPercentage/);
    await assert.rejects(render("networkPolicy.enabeld=false"), /networkPolicy: Additional property enabeld is not allowed/);
    await assert.rejects(render("components.qr.probes.liveness.timeoutSecond=5"), /timeoutSecond is not allowed/);
    // Kubernetes refuses a startup or liveness probe's successThreshold other than 1: the Deployment refused at install.
    await assert.rejects(render("components.qr.probes.liveness.successThreshold=2"), /successThreshold: Must be less than or equal to 1/);
    await assert.rejects(render("web.probes.startup.successThreshold=3"), /successThreshold: Must be less than or equal to 1/);
    await assert.rejects(render("componets.qr.replicaCount=1"), /componets/);
    await assert.rejects(render("components.qr.autoscaling.minReplicas=12"), /components.qr.autoscaling: minReplicas \(12\) is above maxReplicas \(10\)/);
    // One replica left by the autoscaler, a drain takes it: payment refuses M-Pesa's paybill confirmations meanwhile, never sent again.
    await assert.rejects(render("components.payment.autoscaling.minReplicas=1"), /components.payment.autoscaling.minReplicas: at least 2 with its PodDisruptionBudget/);
    await assert.rejects(render("web.autoscaling.minReplicas=1"), /web.autoscaling.minReplicas: at least 2/);
    // Kubernetes before 1.33 refuses a preStop sleep of 0 s: every Deployment of an upgrade refused after its migration ran.
    await assert.rejects(render("drain.preStopSeconds=0"), /drain.preStopSeconds: Must be greater than or equal to 1/);
    await assert.rejects(render("podSecurityContext.runAsUser=1000"), /runAsUser/);
    await assert.rejects(render("publicUrl=http://tips.example.co.ke"), /publicUrl: must be https:\/\/ in production/);
    await assert.rejects(render("simulators.enabled=true"), /simulators/, "no simulators in production");
    await assert.rejects(render("mpesa.enabled=true"), /mpesa.shortcode/);
    await assert.rejects(render("cards.stripe.enabled=true"), /cards.stripe.publishableKey: is required with cards.stripe.enabled/);
    assert.ok(await render("cards.stripe.enabled=true", "cards.stripe.publishableKey=pk_live_1a2B"));
    await assert.rejects(render("notification.africastalking.enabled=false"), /smsPrimary is africastalking/);
    // notification refuses to start without its primary SMS provider's account (a pod crash-looping, sign-up OTPs unsent).
    await assert.rejects(render("notification.africastalking.username="), /notification.africastalking.username/);
    await assert.rejects(render("notification.smsPrimary=twilio", "notification.twilio.enabled=true", "notification.twilio.accountSid=AC1"), /notification.twilio.from/);
    await assert.rejects(render("notification.smsPrimary=twilio", "notification.twilio.enabled=true", "notification.twilio.from=TTIP"), /notification.twilio.accountSid/);
    assert.ok(await render("notification.smsPrimary=twilio", "notification.twilio.enabled=true", "notification.twilio.accountSid=AC1", "notification.twilio.from=TTIP"));
    // The hook would wait for a PostgreSQL that the release only creates after it.
    await assert.rejects(render("environment=staging", "devBackends.enabled=true", "secrets.create=true"), /migrations.enabled: the migration Job is a pre-install hook/);
    await assert.rejects(render("database.walCompression=gzip"), /walCompression/);
    await assert.rejects(execGo(helmBinary(), ["template", "t", chart, ...KUBE]), /publicUrl/, "publicUrl is required");
  });

  test("a component reads only the secret keys of the providers enabled", async () => {
    const keys = (docs: Doc[], component: string) =>
      docs
        .find((x) => x.kind === "Deployment" && x.metadata.labels["app.kubernetes.io/component"] === component)!
        .spec.template.spec.containers[0].env.filter((e: any) => e.valueFrom?.secretKeyRef?.name === "ttip-secrets")
        .map((e: any) => e.name);
    // Every component shares the internal hop's signing key.
    const shared = "INTERNAL_SIGNING_KEY";
    const plain = await render();
    for (const c of ["gateway", "auth", "payment", "qr", "wallet", "notification", "analytics"]) assert.ok(keys(plain, c).includes(shared), c);
    assert.deepEqual(keys(plain, "payment"), [shared], "M-Pesa off: no Daraja keys needed");
    assert.deepEqual(keys(plain, "notification"), [shared, "NOTIFICATION_AT_API_KEY", "NOTIFICATION_AT_CALLBACK_TOKEN"]);
    const full = await render("mpesa.enabled=true", "mpesa.shortcode=600100", "mpesa.b2cShortcode=600200", "mpesa.initiatorName=api", "mpesa.initiatorCertificate.existingSecret=mpesa-cert", "notification.sendgrid.enabled=true", "cards.stripe.enabled=true", "cards.stripe.publishableKey=pk_live_1a2B");
    assert.deepEqual(keys(full, "payment"), [shared, "DARAJA_CONSUMER_KEY", "DARAJA_CONSUMER_SECRET", "DARAJA_PASSKEY", "DARAJA_INITIATOR_PASSWORD", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"]);
    const offline = await render("mpesa.enabled=true", "mpesa.shortcode=600100", "mpesa.c2b.enabled=true", "mpesa.ussd.enabled=true");
    assert.deepEqual(keys(offline, "payment"), [shared, "DARAJA_CONSUMER_KEY", "DARAJA_CONSUMER_SECRET", "DARAJA_PASSKEY", "C2B_URL_TOKEN", "USSD_CALLBACK_TOKEN"]);
    assert.deepEqual(keys(full, "notification"), [shared, "NOTIFICATION_AT_API_KEY", "NOTIFICATION_AT_CALLBACK_TOKEN", "NOTIFICATION_SENDGRID_API_KEY"]);
    // OTPs by SMS: the API's key from the Secret, its username beside it (before: the sandbox's, and every OTP refused).
    assert.deepEqual(keys(plain, "auth"), [shared, "AUTH_KEY_ENCRYPTION_SECRET"]);
    const sms = await render("auth.otpSender=sms", "auth.otpSmsUrl=https://api.africastalking.com", "auth.otpSmsUsername=ttip");
    assert.deepEqual(keys(sms, "auth"), [shared, "AUTH_KEY_ENCRYPTION_SECRET", "AUTH_SMS_API_KEY"]);
    const authEnv = sms.find((x) => x.kind === "Deployment" && x.metadata.labels["app.kubernetes.io/component"] === "auth")!.spec.template.spec.containers[0].env;
    assert.equal(authEnv.find((e: any) => e.name === "AUTH_SMS_USERNAME")?.value, "ttip");
    await assert.rejects(render("auth.otpSender=sms", "auth.otpSmsUrl=https://api.africastalking.com"), /otpSmsUsername/, "no username: refused by the schema");
  });

  test("an M-Pesa shortcode is passed as written: a leading 0 kept (before, read as octal: 0123456 became 42798), a number whole", async () => {
    const envOf = (docs: Doc[], component: string) =>
      docs.find((x) => x.kind === "Deployment" && x.metadata.labels["app.kubernetes.io/component"] === component)!.spec.template.spec.containers[0].env as { name: string; value?: string }[];
    const valueOf = (docs: Doc[], component: string, name: string) => envOf(docs, component).find((e) => e.name === name)?.value;
    const written = await render("mpesa.enabled=true", "mpesa.c2b.enabled=true", "--set-string=mpesa.shortcode=0123456", "--set-string=mpesa.b2cShortcode=0600200", "mpesa.initiatorName=api", "mpesa.initiatorCertificate.existingSecret=mpesa-cert");
    assert.deepEqual([valueOf(written, "payment", "DARAJA_SHORTCODE"), valueOf(written, "payment", "DARAJA_B2C_SHORTCODE"), valueOf(written, "qr", "QR_MPESA_SHORTCODE")], ["0123456", "0600200", "0123456"]);
    const number = await render("mpesa.enabled=true", "mpesa.c2b.enabled=true", "mpesa.shortcode=600100");
    assert.deepEqual([valueOf(number, "payment", "DARAJA_SHORTCODE"), valueOf(number, "qr", "QR_MPESA_SHORTCODE")], ["600100", "600100"]);
    // A paybill of its own for the printed codes: payment takes its confirmations too (before, only mpesa.shortcode's:
    // a customer paying the card's paybill was never credited).
    const paybill = await render("mpesa.enabled=true", "mpesa.shortcode=600100", "mpesa.c2b.enabled=true", "--set-string=qr.mpesaShortcode=0600200");
    assert.deepEqual([valueOf(paybill, "qr", "QR_MPESA_SHORTCODE"), valueOf(paybill, "payment", "C2B_SHORTCODES")], ["0600200", "600100,0600200"]);
    assert.equal(valueOf(await render("mpesa.enabled=true", "mpesa.shortcode=600100", "mpesa.c2b.enabled=true"), "payment", "C2B_SHORTCODES"), "600100");
    // No paybill printed where nothing takes its confirmations (before: mpesa.shortcode's, or with M-Pesa off the sandbox's
    // 174379, on every card: a customer paying it from their own menu reached no worker, or a stranger).
    for (const noC2b of [await render("mpesa.enabled=true", "mpesa.shortcode=600100", "qr.mpesaShortcode=600200"), await render()]) {
      assert.equal(valueOf(noC2b, "qr", "QR_MPESA_SHORTCODE"), "");
    }
    // The simulator's paybill in development: the one qr prints and payment's pushes use.
    const simulated = await render("environment=development", "simulators.enabled=true", "mpesa.c2b.enabled=true");
    assert.deepEqual([valueOf(simulated, "payment", "DARAJA_SHORTCODE"), valueOf(simulated, "payment", "C2B_SHORTCODES")], ["174379", "174379"]);
  });

  test("B2C: the initiator certificate is a Secret mounted read-only into payment alone, named by DARAJA_CERTIFICATE_FILE; required with a B2C shortcode", async () => {
    const b2c = ["mpesa.enabled=true", "mpesa.shortcode=600100", "mpesa.b2cShortcode=600200", "mpesa.initiatorName=api"];
    const docs = await render(...b2c, "mpesa.initiatorCertificate.existingSecret=mpesa-initiator", "mpesa.initiatorCertificate.key=production.cer");
    const spec = (component: string) => docs.find((d) => d.kind === "Deployment" && d.metadata.labels["app.kubernetes.io/component"] === component)!.spec.template.spec;
    const payment = spec("payment");
    const volume = payment.volumes.find((v: any) => v.secret);
    assert.deepEqual(volume.secret, { secretName: "mpesa-initiator", items: [{ key: "production.cer", path: "production.cer" }], defaultMode: 0o444 });
    const mount = payment.containers[0].volumeMounts.find((m: any) => m.name === volume.name);
    assert.deepEqual(mount, { name: volume.name, mountPath: "/etc/ttip/mpesa", readOnly: true });
    const env = Object.fromEntries(payment.containers[0].env.map((e: any) => [e.name, e.value]));
    assert.equal(env.DARAJA_CERTIFICATE_FILE, "/etc/ttip/mpesa/production.cer", "the file payment reads is the one mounted");
    for (const c of COMPONENTS.filter((x) => x !== "payment")) assert.ok(!spec(c).volumes.some((v: any) => v.secret), `${c} does not get the certificate`);
    await assert.rejects(render(...b2c), /initiatorCertificate.existingSecret/, "B2C without the certificate is refused at install");
    // Without B2C nothing is mounted.
    const plain = await render("mpesa.enabled=true", "mpesa.shortcode=600100");
    const plainPayment = plain.find((d) => d.kind === "Deployment" && d.metadata.name === "t-ttip-payment")!.spec.template.spec;
    assert.equal(plainPayment.volumes.filter((v: any) => v.secret).length, 0, "no certificate volume without B2C");
    assert.equal(plainPayment.containers[0].env.filter((e: any) => e.name === "DARAJA_CERTIFICATE_FILE").length, 0);
  });

  test("settings reach the processes: public URL in QR codes and callbacks, admin networks, pools, image by digest", async () => {
    const digest = `sha256:${"ab".repeat(32)}`;
    const docs = await render("admin.allowedNetworks={10.8.0.0/16,192.168.0.0/24}", `image.digest=${digest}`, "components.wallet.databasePoolMax=8");
    const env = (component: string) => {
      const d = docs.find((x) => x.kind === "Deployment" && x.metadata.labels["app.kubernetes.io/component"] === component)!;
      return Object.fromEntries(d.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
    };
    assert.equal(env("qr").QR_TIP_BASE_URL, "https://tips.example.co.ke/t");
    assert.equal(env("venue").VENUE_JOIN_URL, "https://tips.example.co.ke/join", "staff invitations open the web app's /join page");
    assert.equal(env("payment").PAYMENT_CALLBACK_BASE_URL, "https://tips.example.co.ke");
    assert.equal(env("notification").NOTIFICATION_PUBLIC_URL, "https://tips.example.co.ke");
    assert.equal(env("notification").NOTIFICATION_PROVIDERS, "real");
    assert.equal(env("notification").NOTIFICATION_STOP_SENDS_MS, "3000", "notification's stop waits for sends within the process's hard deadline, inside the grace");
    assert.equal(env("auth").AUTH_OTP_SENDER, "notification", "OTPs through notification: no separate SMS API needed");
    assert.equal(env("gateway").ADMIN_ALLOWED_NETWORKS, "10.8.0.0/16,192.168.0.0/24");
    assert.equal(env("wallet").DATABASE_POOL_MAX, "8");
    assert.equal(env("qr").DATABASE_POOL_MAX, "5");
    for (const c of COMPONENTS) assert.equal(env(c).NODE_ENV, "production");
    const images = new Set(docs.filter((d) => (d.kind === "Deployment" || d.kind === "Job") && d.metadata.name !== "t-ttip-web").map((d) => d.spec.template.spec.containers[0].image));
    assert.deepEqual(images, new Set([`ghcr.io/ttip-platform/ttip@${digest}`]));
    // The web app has its own image (Next's server), from the same registry.
    assert.equal(docs.find((d) => d.kind === "Deployment" && d.metadata.name === "t-ttip-web")!.spec.template.spec.containers[0].image, "ghcr.io/ttip-platform/ttip-web:0.1.0");
  });

  test("NetworkPolicies: default deny; each service reachable only from its callers (and Prometheus); egress only to callees, DNS, backends, providers", async () => {
    const docs = await render();
    const policy = (name: string) => docs.find((d) => d.kind === "NetworkPolicy" && d.metadata.name === `t-ttip-${name}`)!.spec;
    const deny = policy("default-deny");
    assert.deepEqual(deny.policyTypes, ["Ingress", "Egress"]);
    assert.equal(deny.ingress, undefined);
    assert.equal(deny.egress, undefined);
    const components = (peers: any[]) => peers.flatMap((p: any) => p.podSelector?.matchLabels?.["app.kubernetes.io/component"] ?? []).sort();
    // wallet is called by auth (partners' consented reads), payment, venue and the gateway; notification by analytics, auth, payment, venue and the gateway.
    assert.deepEqual(components(policy("wallet").ingress[0].from), ["auth", "gateway", "payment", "venue"]);
    assert.deepEqual(components(policy("notification").ingress[0].from), ["analytics", "auth", "gateway", "payment", "venue"]);
    assert.deepEqual(components(policy("payment").egress[1].to), ["auth", "notification", "qr", "wallet"]);
    assert.equal(components(policy("wallet").egress.flatMap((e: any) => e.to ?? [])).length, 0, "wallet calls nobody");
    // The webhooks share payment's RPC port: with only the ingress controller named, it is all they let in.
    const fenced = await render("networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.ingress=yes");
    const webhooks = fenced.find((d) => d.kind === "NetworkPolicy" && d.metadata.name === "t-ttip-payment")!.spec.ingress[1];
    // Before, no `from`: any pod of the cluster called payment's RPCs past the gateway.
    assert.deepEqual(webhooks.from, [{ namespaceSelector: { matchLabels: { ingress: "yes" } } }]);
    assert.ok(fenced.filter((d) => d.kind === "NetworkPolicy").every((d) => d.spec.ingress?.every((r: any) => r.from?.length) ?? true), "no rule open to every pod");
    for (const c of COMPONENTS) {
      const scrape = policy(c).ingress.find((r: any) => r.from?.some((p: any) => p.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"] === "monitoring"));
      assert.ok(scrape, `${c}: Prometheus may scrape it`);
      assert.ok(policy(c).egress.some((e: any) => e.ports.some((p: any) => p.port === 53)), `${c}: DNS`);
    }
    const ports = (c: string) => policy(c).egress.flatMap((e: any) => e.ports.map((p: any) => p.port)).sort((a: number, b: number) => a - b);
    assert.deepEqual(ports("gateway"), [53, 53, 6379, 8080], "the gateway: DNS, Redis, the services");
    assert.ok(ports("payment").includes(443) && ports("notification").includes(443), "providers");
    assert.ok(ports("auth").includes(443), "auth: partners' webhook receivers");
    assert.ok(!ports("wallet").includes(443), "wallet talks to no provider");
    // Redis on another port (a managed one's TLS port): the gateway's one backend rule names it. A rule without
    // ports would allow every port to every address.
    const moved = await render("networkPolicy.egress.backends.ports={5432,6380,4222}", "networkPolicy.egress.backends.redisPort=6380");
    const movedGateway = moved.find((d) => d.kind === "NetworkPolicy" && d.metadata.name === "t-ttip-gateway")!.spec;
    assert.ok(movedGateway.egress.every((e: any) => e.ports?.length > 0), "every egress rule of the gateway names its ports");
    assert.deepEqual(movedGateway.egress.flatMap((e: any) => e.ports.map((p: any) => p.port)).sort((a: number, b: number) => a - b), [53, 53, 6380, 8080]);
    await assert.rejects(render("networkPolicy.egress.backends.ports={5432,6380,4222}"), /networkPolicy.egress.backends.redisPort \(6379\) is not one of/);
    await assert.rejects(render("networkPolicy.egress.providers.ports={}"), /networkPolicy.egress.providers.ports/);
    await assert.rejects(render("networkPolicy.egress.backends.ports=null"), /ports/);
  });

  test("the ingress sends Daraja callbacks to payment and provider webhooks to notification", async () => {
    const docs = await render("gateway.ingress.enabled=true", "gateway.ingress.className=nginx");
    const ingress = docs.find((d) => d.kind === "Ingress")!;
    assert.equal(ingress.spec.rules[0].host, "tips.example.co.ke");
    const routes = ingress.spec.rules[0].http.paths.map((p: any) => [p.path, p.backend.service.name]);
    assert.deepEqual(routes, [
      ["/t/", "t-ttip-web"], ["/w", "t-ttip-web"], ["/v", "t-ttip-web"], ["/join", "t-ttip-web"], ["/lang", "t-ttip-web"], ["/_next/", "t-ttip-web"], ["/photos/", "t-ttip-web"], ["/", "t-ttip-web"],
      ["/daraja/", "t-ttip-payment"], ["/mpesa/", "t-ttip-payment"], ["/c2b/", "t-ttip-payment"], ["/ussd/", "t-ttip-payment"], ["/stripe/", "t-ttip-payment"], ["/paypal/", "t-ttip-payment"], ["/webhooks/", "t-ttip-notification"], ["/", "t-ttip-gateway"],
    ]);
  });

  test("the web app: its own Deployment behind the same host, HTTP probes, HPA, PDB, its own image, calls only the gateway", async () => {
    const docs = await render("gateway.ingress.enabled=true", "web.image.digest=sha256:" + "b".repeat(64), "networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.ingress=yes");
    const web = (kind: string) => docs.find((d) => d.kind === kind && d.metadata.labels["app.kubernetes.io/component"] === "web")!;
    const c = web("Deployment").spec.template.spec.containers[0];
    assert.equal(c.image, `ghcr.io/ttip-platform/ttip-web@sha256:${"b".repeat(64)}`);
    assert.equal(c.args, undefined, "Next's standalone server, not a platform role");
    const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.value]));
    assert.equal(env.TTIP_API_URL, "http://t-ttip-gateway:80", "server-side rendering calls the gateway inside the cluster, on its Service's port");
    assert.equal(env.PORT, "8080");
    for (const probe of ["startupProbe", "readinessProbe"]) assert.deepEqual(c[probe].httpGet, { path: "/healthz", port: "http" }, probe);
    assert.deepEqual(c.livenessProbe.tcpSocket, { port: "http" }, "liveness differs from readiness: a slow render is not a restart");
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.ok(c.volumeMounts.some((m: any) => m.mountPath === "/app/apps/web/.next/cache"), "Next's cache is writable");
    assert.equal(web("HorizontalPodAutoscaler").spec.scaleTargetRef.name, "t-ttip-web");
    assert.equal(web("PodDisruptionBudget").spec.maxUnavailable, 1);
    // "0%" would refuse every eviction and hang each node drain: refused by the schema as 0 is.
    for (const zero of ["--set-string=defaults.pdb.maxUnavailable=0%", "--set-string=web.pdb.maxUnavailable=0%"]) await assert.rejects(render(zero), /maxUnavailable/, zero);
    const ingress = docs.find((d) => d.kind === "Ingress")!;
    const root = ingress.spec.rules[0].http.paths.filter((p: any) => p.path === "/");
    assert.deepEqual(root.map((p: any) => [p.pathType, p.backend.service.name]), [["Exact", "t-ttip-web"], ["Prefix", "t-ttip-gateway"]], "the home page to web, the API to the gateway");
    const policy = web("NetworkPolicy").spec;
    assert.deepEqual(policy.ingress[0].from, [{ namespaceSelector: { matchLabels: { ingress: "yes" } } }], "browsers through the ingress controller only");
    assert.deepEqual(policy.egress.map((e: any) => e.to?.map((t: any) => t.podSelector?.matchLabels?.["app.kubernetes.io/component"])), [[undefined], ["gateway"]], "DNS and the gateway, nothing else");
    const gateway = docs.find((d) => d.kind === "NetworkPolicy" && d.metadata.name === "t-ttip-gateway")!.spec;
    assert.ok(gateway.ingress.some((r: any) => r.from?.some((f: any) => f.podSelector?.matchLabels?.["app.kubernetes.io/component"] === "web")), "the gateway lets the web app in");
    // The gateway's Service on another port: the web app calls that one (its only port).
    const moved = await render("gateway.service.port=8443");
    const movedEnv = Object.fromEntries(moved.find((d) => d.kind === "Deployment" && d.metadata.name === "t-ttip-web")!.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value]));
    const gatewayService = moved.find((d) => d.kind === "Service" && d.metadata.name === "t-ttip-gateway")!;
    assert.deepEqual(gatewayService.spec.ports.map((p: any) => p.port), [8443]);
    assert.equal(movedEnv.TTIP_API_URL, "http://t-ttip-gateway:8443");
    // Off: nothing of it, with the operator's own routing (which may serve it from elsewhere). Not under this
    // ingress, which would send the QR codes' pages to the gateway: before, accepted, each scan a 404.
    const off = await render("web.enabled=false");
    assert.equal(off.filter((d) => d.metadata.labels?.["app.kubernetes.io/component"] === "web").length, 0);
    await assert.rejects(render("gateway.ingress.enabled=true", "web.enabled=false"), /web.enabled=false with gateway.ingress.enabled: the QR codes/);
    await assert.rejects(render("web.autoscaling.minReplicas=5", "web.autoscaling.maxReplicas=3"), /web.autoscaling: minReplicas \(5\) is above maxReplicas \(3\)/);
    await assert.rejects(render("web.enabeld=true"), /enabeld/);
  });

  test("kube-score: no critical but the two values.yaml justifies (no CPU limit, IfNotPresent pulls)", async () => {
    const { stdout: manifests } = await execGo(helmBinary(), ["template", "t", chart, ...KUBE, ...BASE.flatMap((s) => ["--set", s]), "--set", "gateway.ingress.enabled=true"]);
    const dir = mkdtempSync(path.join(os.tmpdir(), "ttip-kube-score-"));
    try {
      writeFileSync(path.join(dir, "chart.yaml"), manifests);
      // Exit 1 when anything is critical: the findings are read either way.
      const out = await execGo(kubeScoreBinary(), ["score", path.join(dir, "chart.yaml"), "--output-format", "ci"]).then((r) => r.stdout, (e: { stdout: string }) => e.stdout);
      const criticals = out.split("\n").filter((l) => l.startsWith("[CRITICAL]"));
      assert.ok(criticals.length > 0, "kube-score ran");
      const unjustified = criticals.filter((l) => !/ImagePullPolicy is not set to Always|CPU limit is not set/.test(l));
      assert.deepEqual(unjustified, []);
      const values = readFileSync(path.join(chart, "values.yaml"), "utf8");
      for (const reason of ["ImagePullPolicy is not set to Always", "CPU limit is not set"]) assert.ok(values.includes(reason), `values.yaml justifies "${reason}"`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the development values bring PostgreSQL, Redis, NATS and the Daraja simulator into the cluster", async () => {
    const { stdout } = await execGo(helmBinary(), ["template", "t", chart, ...KUBE, "-f", path.join(chart, "values-dev.yaml")]);
    const docs = parseAllDocuments(stdout).map((d) => d.toJSON()).filter(Boolean) as Doc[];
    const deployments = docs.filter((d) => d.kind === "Deployment").map((d) => d.metadata.name).sort();
    for (const extra of ["t-ttip-postgres", "t-ttip-redis", "t-ttip-nats", "t-ttip-simulators"]) assert.ok(deployments.includes(extra), extra);
    // The simulators are only in the development image (the production one leaves them out).
    const images = new Set(docs.filter((d) => d.kind === "Deployment" && !/postgres|redis|nats|web/.test(d.metadata.name)).map((d) => d.spec.template.spec.containers[0].image));
    assert.deepEqual(images, new Set(["ghcr.io/ttip-platform/ttip-dev:0.1.0"]));
    const payment = docs.find((d) => d.kind === "Deployment" && d.metadata.name === "t-ttip-payment")!;
    const env = Object.fromEntries(payment.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
    assert.equal(env.DARAJA_BASE_URL, "http://t-ttip-simulators:8080");
    assert.equal(env.PAYMENT_CALLBACK_BASE_URL, "http://t-ttip-payment:8080");
    const connections = docs.find((d) => d.kind === "Secret" && d.metadata.name === "ttip-connections") as unknown as { stringData: Record<string, string> };
    assert.equal(connections.stringData.NATS_URL, "nats://t-ttip-nats:4222");
    // The in-cluster PostgreSQL: full-page images compressed, durability settings left at PostgreSQL's (on).
    const postgres = docs.find((d) => d.kind === "Deployment" && d.metadata.name === "t-ttip-postgres")!;
    assert.deepEqual(postgres.spec.template.spec.containers[0].args, ["-c", "max_connections=100", "-c", "wal_compression=lz4"]);
  });
});
