import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";

const exec = promisify(execFile);
const chart = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../ttip");
const HELM_VERSION = "v3.16.3";

/** helm from PATH or Go's bin folder; `make test` installs it with `go install` (services/runtime/src/testing/install-test-tools.sh). */
function helmBinary(): string {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) if (existsSync(path.join(dir, "helm"))) return path.join(dir, "helm");
  let gopath = "";
  try {
    gopath = execFileSync("go", ["env", "GOPATH"]).toString().trim();
  } catch {
    // no Go either
  }
  const fromGo = path.join(gopath, "bin", "helm");
  if (gopath && existsSync(fromGo)) return fromGo;
  throw new Error(`helm not found: install it with \`go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION}\``);
}

type Doc = { kind: string; metadata: { name: string; labels: Record<string, string> }; spec: any };

async function render(...set: string[]): Promise<Doc[]> {
  const { stdout } = await exec(helmBinary(), ["template", "t", chart, "--kube-version", "1.29.0", ...set.flatMap((s) => ["--set", s])]);
  const docs = parseAllDocuments(stdout);
  for (const d of docs) assert.deepEqual(d.errors, [], "valid YAML without duplicate keys");
  return docs.map((d) => d.toJSON()).filter(Boolean);
}

const COMPONENTS = ["analytics", "auth", "gateway", "notification", "payment", "qr", "venue", "wallet"];

describe("helm chart", () => {
  test("lints clean with --strict", async () => {
    const { stdout } = await exec(helmBinary(), ["lint", chart, "--strict", "--kube-version", "1.29.0"]);
    assert.match(stdout, /0 chart\(s\) failed/);
  });

  test("one Deployment, Service, HPA, PDB and NetworkPolicy per component, probed over grpc.health.v1", async () => {
    const docs = await render();
    const of = (kind: string) => docs.filter((d) => d.kind === kind).map((d) => d.metadata.labels["app.kubernetes.io/component"]).sort();
    for (const kind of ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"]) {
      assert.deepEqual(of(kind), COMPONENTS, kind);
    }
    for (const d of docs.filter((x) => x.kind === "Deployment")) {
      const c = d.spec.template.spec.containers[0];
      assert.deepEqual(c.args, [d.metadata.labels["app.kubernetes.io/component"]]);
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) assert.equal(c[probe].grpc.port, 8080, `${d.metadata.name} ${probe}`);
      assert.equal(d.spec.replicas, undefined, "the HPA owns the replica count");
      assert.equal(d.spec.template.spec.terminationGracePeriodSeconds, 25, "drain timeout plus room to close");
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
  });

  test("each service gets the peer addresses its module says it calls, and no others", async () => {
    const { modules } = await import("../../platform/src/modules.js");
    const docs = await render();
    for (const m of modules) {
      const d = docs.find((x) => x.kind === "Deployment" && x.metadata.labels["app.kubernetes.io/component"] === m.name)!;
      const peers = d.spec.template.spec.containers[0].env
        .map((e: { name: string }) => e.name)
        .filter((n: string) => n.endsWith("_URL") && !["DATABASE_URL", "REDIS_URL", "NATS_URL"].includes(n));
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
  });

  test("values.schema.json refuses a bad value, naming it", async () => {
    await assert.rejects(render("image.pullPolicy=Sometimes"), /pullPolicy/);
    await assert.rejects(render("components.wallet.autoscaling.targetCPUUtilizationPercentage=150"), /targetCPUUtilizationPercentage/);
  });
});
