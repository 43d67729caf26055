// The chart installed into a real Kubernetes API server (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler; kwok plays the kubelets): strict
// server-side validation of every object, Deployments that get ReplicaSets
// and scheduled pods, the HPA scaling to its minimum, the migration Job
// before any Deployment, then helm upgrade and rollback.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { missingPrerequisite, startCluster, type Cluster } from "./kube/cluster.js";
import { execGo, helmBinary } from "./helm.js";

const chart = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../ttip");
const NS = "ttip";
// Each step waits on controllers on two busy cores: more than the suite's default per test.
const STEP_TIMEOUT_MS = 10 * 60_000;
const COMPONENTS = ["analytics", "auth", "gateway", "notification", "payment", "qr", "venue", "wallet"];
/** Every Deployment: the platform's components and the web app (its own image). */
const DEPLOYED = [...COMPONENTS, "web"].sort();
const imageOf = (component: string, tag: string) => `ghcr.io/ttip-platform/${component === "web" ? "ttip-web" : "ttip"}:${tag}`;

// CI must run this test; elsewhere it says why it cannot.
const missing = missingPrerequisite();
if (missing && process.env.TTIP_REQUIRE_KUBE) throw new Error(`the chart's cluster test cannot run: ${missing}`);

/** A production-shaped install: M-Pesa on, ingress with webhook routes, monitoring objects, sampled traces. */
const VALUES = {
  publicUrl: "https://tips.example.co.ke",
  mpesa: { enabled: true, shortcode: "600100", b2cShortcode: "600200", initiatorName: "ttip-api", initiatorCertificate: { existingSecret: "mpesa-initiator", key: "initiator.cer" } },
  admin: { allowedNetworks: ["10.20.0.0/16"] },
  notification: { africastalking: { username: "ttip" } },
  gateway: { ingress: { enabled: true, className: "nginx" } },
  metrics: { serviceMonitor: { enabled: true }, grafanaDashboard: { enabled: true }, prometheusRule: { enabled: true } },
  otel: { endpoint: "http://otel-collector.monitoring:4318", sampleRatio: 0.1 },
};

const SECRETS: Record<string, Record<string, string>> = {
  "ttip-connections": { DATABASE_URL: "postgres://ttip@db:5432/ttip", REDIS_URL: "redis://redis:6379", NATS_URL: "nats://nats:4222" },
  "ttip-secrets": Object.fromEntries(
    ["INTERNAL_SIGNING_KEY", "AUTH_KEY_ENCRYPTION_SECRET", "QR_SIGNING_KEY", "DARAJA_CONSUMER_KEY", "DARAJA_CONSUMER_SECRET", "DARAJA_PASSKEY", "DARAJA_INITIATOR_PASSWORD",
      "NOTIFICATION_AT_API_KEY", "NOTIFICATION_AT_CALLBACK_TOKEN"].map((k) => [k, `test-${k.toLowerCase()}-0123456789abcdef0123456789`]),
  ),
};

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: any }; spec?: any; status?: any };

describe("the chart on a real API server", { skip: missing ? `skipped: ${missing}` : false, timeout: 20 * 60_000 }, () => {
  let cluster: Cluster;
  let work: string;
  let valuesFile: string;
  let installJob = "";
  const helm = (...args: string[]) => execGo(helmBinary(), [...args, "--kubeconfig", cluster.kubeconfig, "-n", NS], { maxBuffer: 32 << 20, timeout: 5 * 60_000 });
  const list = async (apiPath: string): Promise<Obj[]> => {
    const r = await cluster.api("GET", apiPath);
    assert.equal(r.status, 200, `GET ${apiPath}: ${JSON.stringify(r.body).slice(0, 300)}`);
    return r.body.items;
  };
  const byComponent = (items: Obj[]) => items.map((o) => o.metadata.labels?.["app.kubernetes.io/component"]).sort();

  /** The collection URL of a kind, from the API server's discovery. */
  const resourcePaths = new Map<string, string>();
  async function collectionPath(o: Obj): Promise<string> {
    const groupPath = o.apiVersion.includes("/") ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
    if (!resourcePaths.has(`${o.apiVersion}/${o.kind}`)) {
      const r = await cluster.api("GET", groupPath);
      assert.equal(r.status, 200, `discovery of ${o.apiVersion}`);
      for (const res of r.body.resources) {
        if (!res.name.includes("/")) resourcePaths.set(`${o.apiVersion}/${res.kind}`, res.namespaced ? `${groupPath}/namespaces/${NS}/${res.name}` : `${groupPath}/${res.name}`);
      }
    }
    const p = resourcePaths.get(`${o.apiVersion}/${o.kind}`);
    assert.ok(p, `the API server serves ${o.apiVersion} ${o.kind}`);
    return p;
  }

  before(async () => {
    cluster = await startCluster({ nodes: 3 });
    work = await mkdtemp(path.join(os.tmpdir(), "ttip-chart-"));
    valuesFile = path.join(work, "values.json");
    await writeFile(valuesFile, JSON.stringify(VALUES));
    // The monitoring CRDs a Prometheus operator would have installed.
    for (const file of readdirSync(path.join(cluster.binDir, "crds"))) {
      const crd = parseAllDocuments(readFileSync(path.join(cluster.binDir, "crds", file), "utf8"))[0].toJSON();
      const r = await cluster.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
      assert.equal(r.status, 201, `CRD ${file}: ${JSON.stringify(r.body).slice(0, 300)}`);
      await cluster.until(`CRD ${crd.metadata.name} established`, async () => {
        const { body } = await cluster.api("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
        return body.status?.conditions?.some((c: any) => c.type === "Established" && c.status === "True") ? true : undefined;
      });
    }
    assert.equal((await cluster.api("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } })).status, 201);
    // Secrets are made outside the chart (an external-secrets operator, in production).
    for (const [name, stringData] of Object.entries(SECRETS)) {
      const r = await cluster.api("POST", `/api/v1/namespaces/${NS}/secrets`, { apiVersion: "v1", kind: "Secret", metadata: { name }, stringData });
      assert.equal(r.status, 201, `secret ${name}`);
    }
  }, { timeout: 45 * 60_000 });

  after(async () => {
    await cluster?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test("every rendered object passes the API server's strict validation (unknown fields refused)", { timeout: STEP_TIMEOUT_MS }, async () => {
    const { stdout } = await helm("template", "t", chart, "-f", valuesFile, "--kube-version", "1.37.2", "--api-versions", "monitoring.coreos.com/v1");
    const objects = parseAllDocuments(stdout).map((d) => d.toJSON() as Obj).filter(Boolean);
    // Hooks included: the migration Job must be valid too.
    assert.ok(objects.some((o) => o.kind === "Job"), "the migration Job is rendered");
    for (const kind of ["ServiceMonitor", "PrometheusRule", "Ingress", "NetworkPolicy", "HorizontalPodAutoscaler", "PodDisruptionBudget"]) {
      assert.ok(objects.some((o) => o.kind === kind), kind);
    }
    const refused: string[] = [];
    for (const o of objects) {
      const r = await cluster.api("POST", `${await collectionPath(o)}?dryRun=All&fieldValidation=Strict`, { ...o, metadata: { ...o.metadata, namespace: NS } });
      if (r.status !== 201) refused.push(`${o.kind}/${o.metadata.name}: ${r.status} ${r.body?.message ?? JSON.stringify(r.body)}`);
    }
    assert.deepEqual(refused, [], "objects refused by the API server");
    // The same check refuses what it should: a typo in a Deployment's spec.
    const deployment = objects.find((o) => o.kind === "Deployment")!;
    const typo = structuredClone(deployment);
    typo.spec.template.spec.containers[0].readinesProbe = typo.spec.template.spec.containers[0].readinessProbe;
    const r = await cluster.api("POST", `${await collectionPath(typo)}?dryRun=All&fieldValidation=Strict`, { ...typo, metadata: { ...typo.metadata, namespace: NS } });
    assert.equal(r.status, 400, "strict validation refuses an unknown field");
    assert.match(r.body.message, /unknown field "spec.template.spec.containers\[0\].readinesProbe"/);
  });

  test("the API server serves watches from resourceVersion 0, the kind kwok (every kubelet here) opens", { timeout: STEP_TIMEOUT_MS }, async () => {
    // A refused watch is not an HTTP error: the stream carries one ERROR event and ends.
    const r = await cluster.api("GET", `/api/v1/namespaces/${NS}/secrets?watch=true&resourceVersion=0&allowWatchBookmarks=true&timeoutSeconds=1`);
    assert.equal(r.status, 200);
    const events = String(typeof r.body === "string" ? r.body : JSON.stringify(r.body)).split("\n").filter(Boolean).map((l) => JSON.parse(l) as { type: string; object: Obj & { message?: string } });
    assert.deepEqual(events.filter((e) => e.type === "ERROR").map((e) => e.object.message), [], "the watch is refused");
    assert.deepEqual(events.map((e) => `${e.type} ${e.object.metadata.name}`).sort(), Object.keys(SECRETS).map((name) => `ADDED ${name}`), "the secrets, as ADDED events");
  });

  test("helm install: migrations first, then Deployments with ReplicaSets and pods scheduled over the nodes, HPA, PDB, NetworkPolicy, ServiceMonitor", { timeout: STEP_TIMEOUT_MS }, async () => {
    const { stdout } = await helm("install", "t", chart, "-f", valuesFile, "--wait", "--timeout", "4m");
    assert.match(stdout, /STATUS: deployed/);
    assert.match(stdout, /PostgreSQL connections at the HPA's maximum: 350/, "NOTES prints the pools' total");
    assert.match(stdout, /WARNING: that is more than database.maxConnections \(100\)/);
    assert.match(stdout, /WARNING: the event stream keeps the server's default number of copies \(one\)/, "production on one copy of the events");
    assert.match(stdout, /^Traces: OTLP\/HTTP to http:\/\/otel-collector\.monitoring:4318\/v1\/traces, 10% of new traces/m);

    const jobs = await list(`/apis/batch/v1/namespaces/${NS}/jobs`);
    assert.deepEqual(jobs.map((j) => j.metadata.name), ["t-ttip-migrate"], "one migration Job (pre-install hook)");
    installJob = jobs[0].metadata.uid!;
    assert.equal(jobs[0].status.succeeded, 1, "the migration Job completed");
    const migrated = Date.parse(jobs[0].status.completionTime);
    const deployments = await list(`/apis/apps/v1/namespaces/${NS}/deployments`);
    assert.deepEqual(byComponent(deployments), DEPLOYED);
    for (const d of deployments) {
      assert.ok(Date.parse(d.metadata.creationTimestamp) >= migrated, `${d.metadata.name} was created after the migrations finished`);
    }

    // The HPA (minReplicas 2) scales each Deployment up from the one pod it starts with.
    const hpas = await list(`/apis/autoscaling/v2/namespaces/${NS}/horizontalpodautoscalers`);
    assert.deepEqual(byComponent(hpas), DEPLOYED);
    await cluster.until("every Deployment scaled to 2 ready replicas by its HPA", async () => {
      const ds = await list(`/apis/apps/v1/namespaces/${NS}/deployments`);
      return ds.every((d) => d.spec.replicas === 2 && d.status.readyReplicas === 2) ? true : undefined;
    }, 120_000);

    const replicaSets = await list(`/apis/apps/v1/namespaces/${NS}/replicasets`);
    assert.deepEqual(byComponent(replicaSets), DEPLOYED, "one ReplicaSet per Deployment");
    const pods = (await list(`/api/v1/namespaces/${NS}/pods`)).filter((p) => p.metadata.labels?.["app.kubernetes.io/component"] !== "migrate");
    assert.equal(pods.length, 2 * DEPLOYED.length);
    for (const p of pods) {
      assert.ok(p.spec.nodeName?.startsWith("kwok-node-"), `${p.metadata.name} scheduled`);
      assert.equal(p.status.phase, "Running", p.metadata.name);
      assert.equal(p.spec.securityContext.runAsUser, 10001);
      assert.equal(p.spec.containers[0].image, imageOf(p.metadata.labels!["app.kubernetes.io/component"], "0.1.0"));
    }
    // Topology spread: no component has both replicas on one node.
    for (const c of DEPLOYED) {
      const nodes = pods.filter((p) => p.metadata.labels!["app.kubernetes.io/component"] === c).map((p) => p.spec.nodeName);
      assert.equal(new Set(nodes).size, 2, `${c} spread over two nodes: ${nodes}`);
    }

    const pdbs = await list(`/apis/policy/v1/namespaces/${NS}/poddisruptionbudgets`);
    assert.deepEqual(byComponent(pdbs), DEPLOYED);
    await cluster.until("each PDB allowing one disruption", async () => {
      const ps = await list(`/apis/policy/v1/namespaces/${NS}/poddisruptionbudgets`);
      return ps.every((p) => p.status?.currentHealthy === 2 && p.status?.disruptionsAllowed === 1) ? true : undefined;
    });
    const policies = await list(`/apis/networking.k8s.io/v1/namespaces/${NS}/networkpolicies`);
    assert.ok(policies.some((p) => p.metadata.name === "t-ttip-default-deny" && p.spec.policyTypes.includes("Egress")));
    assert.equal(policies.length, DEPLOYED.length + 2, "default deny, one per component and the web app, one for the migration Job");
    const monitors = await list(`/apis/monitoring.coreos.com/v1/namespaces/${NS}/servicemonitors`);
    assert.equal(monitors.length, 1);
    const ingress = (await list(`/apis/networking.k8s.io/v1/namespaces/${NS}/ingresses`))[0];
    const routes = ingress.spec.rules[0].http.paths.map((p: any) => `${p.path} ${p.backend.service.name}`);
    assert.deepEqual(routes, ["/t/ t-ttip-web", "/w t-ttip-web", "/v t-ttip-web", "/join t-ttip-web", "/lang t-ttip-web", "/_next/ t-ttip-web", "/photos/ t-ttip-web", "/ t-ttip-web", "/daraja/ t-ttip-payment", "/mpesa/ t-ttip-payment", "/c2b/ t-ttip-payment", "/ussd/ t-ttip-payment", "/stripe/ t-ttip-payment", "/paypal/ t-ttip-payment", "/webhooks/ t-ttip-notification", "/ t-ttip-gateway"]);
    assert.equal(ingress.spec.rules[0].host, "tips.example.co.ke");
  });

  test("helm upgrade runs the migrations again and rolls every Deployment; rollback returns to the first revision", { timeout: STEP_TIMEOUT_MS }, async () => {
    const image = (ds: Obj[]) => new Set(ds.map((d) => d.spec.template.spec.containers[0].image));
    await helm("upgrade", "t", chart, "-f", valuesFile, "--set", "image.tag=0.1.1", "--set", "web.image.tag=0.1.1", "--wait", "--timeout", "4m");
    const jobs = await list(`/apis/batch/v1/namespaces/${NS}/jobs`);
    assert.deepEqual(jobs.map((j) => j.metadata.name), ["t-ttip-migrate"]);
    assert.notEqual(jobs[0].metadata.uid, installJob, "the upgrade ran a new migration Job (the install's was replaced)");
    assert.equal(jobs[0].status.succeeded, 1);
    assert.equal(jobs[0].spec.template.spec.containers[0].image, "ghcr.io/ttip-platform/ttip:0.1.1", "with the new image's migrations");
    assert.deepEqual(image(await list(`/apis/apps/v1/namespaces/${NS}/deployments`)), new Set([imageOf("gateway", "0.1.1"), imageOf("web", "0.1.1")]));
    await cluster.until("every Deployment rolled out on its second ReplicaSet", async () => {
      const ds = await list(`/apis/apps/v1/namespaces/${NS}/deployments`);
      return ds.every((d) => d.status.updatedReplicas === 2 && d.status.readyReplicas === 2 && d.status.observedGeneration === d.metadata.generation)
        ? true
        : undefined;
    }, 120_000);
    const replicaSets = await list(`/apis/apps/v1/namespaces/${NS}/replicasets`);
    assert.equal(replicaSets.length, 2 * DEPLOYED.length, "two ReplicaSets per Deployment");

    await helm("rollback", "t", "1", "--wait", "--timeout", "4m");
    assert.deepEqual(image(await list(`/apis/apps/v1/namespaces/${NS}/deployments`)), new Set([imageOf("gateway", "0.1.0"), imageOf("web", "0.1.0")]));
    const { stdout } = await helm("history", "t", "-o", "json");
    const history = JSON.parse(stdout) as { revision: number; status: string; description: string }[];
    assert.deepEqual(history.map((h) => [h.revision, h.status]), [[1, "superseded"], [2, "superseded"], [3, "deployed"]]);
    assert.match(history[2].description, /Rollback to 1/);
  });
});
