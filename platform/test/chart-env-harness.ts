// What the chart-env tests share: the chart rendered as `helm template` does, each role's
// environment resolved from what its Deployment says (values as rendered, secrets from a
// test's values or the rendered Secrets), with only the addresses a single machine forces
// changed; a small ingress that routes as the rendered Ingress does; a rendered container
// (web, simulators) started as a plain process.
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import path from "node:path";
import { eventually, type PlatformProcess } from "@ttip/runtime/testing";
import { WEB_DIR } from "@ttip/web";
import { helmBinary } from "../../charts/test/helm.js";

const exec = promisify(execFile);
export const CHART = fileURLToPath(new URL("../../charts/ttip", import.meta.url));

export type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };

export type Route = { path: string; type: "Exact" | "Prefix"; port: () => number };

/** Kubernetes' Ingress matching: an Exact path first, then the longest Prefix matching whole path elements. */
export function matchRoute(routes: Route[], url: string): Route {
  const p = url.split("?")[0];
  const exact = routes.find((r) => r.type === "Exact" && r.path === p);
  if (exact) return exact;
  const elements = (x: string) => x.split("/").filter(Boolean);
  const matches = routes.filter((r) => r.type === "Prefix" && elements(r.path).every((e, i) => elements(p)[i] === e));
  return matches.sort((a, b) => elements(b.path).length - elements(a.path).length)[0];
}

/** The ingress controller: routes as the rendered Ingress says, adding X-Forwarded-For. */
export function startIngress(routes: Route[]): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const route = matchRoute(routes, req.url ?? "/");
    const xff = [req.headers["x-forwarded-for"], req.socket.remoteAddress].filter(Boolean).join(", ");
    const upstream = http.request(
      { host: "127.0.0.1", port: route.port(), path: req.url, method: req.method, headers: { ...req.headers, "x-forwarded-for": xff } },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on("error", () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
        close: () => {
          server.closeAllConnections();
          return new Promise((r) => server.close(() => r()));
        },
      }),
    ),
  );
}

export interface RenderedContainer {
  env: EnvVar[];
  args: string[];
  /** containerPort numbers, as declared. */
  ports: number[];
}

export interface RenderedChart {
  docs: any[];
  /** Each Deployment's container by its app.kubernetes.io/component label. */
  deployments: Map<string, RenderedContainer>;
  /** The migration Job's container, when rendered. */
  job?: RenderedContainer;
  /** The Ingress's paths, to the component each routes to. */
  routes: { path: string; type: "Exact" | "Prefix"; role: string }[];
  /** Every rendered Secret's stringData, by Secret name. */
  secrets: Map<string, Record<string, string>>;
  /**
   * Each Service's ports (`component:port`, as in-cluster URLs name them) to the containerPort they
   * send to: a URL naming a port its Service does not have reaches nothing in a cluster.
   */
  servicePorts: Map<string, number>;
}

const container = (c: any): RenderedContainer => ({ env: c.env ?? [], args: c.args ?? [], ports: (c.ports ?? []).map((p: any) => p.containerPort) });

/** `helm template t <chart> <args>`, release "t" (so in-cluster names are t-ttip-<component>). */
export async function renderChart(args: string[]): Promise<RenderedChart> {
  const { stdout } = await exec(helmBinary(), ["template", "t", CHART, "--kube-version", "1.33.0", ...args], { maxBuffer: 32 * 1024 * 1024 });
  const docs = parseAllDocuments(stdout).map((d) => d.toJSON()).filter(Boolean);
  const deployments = new Map<string, RenderedContainer>();
  for (const d of docs.filter((x: any) => x.kind === "Deployment")) deployments.set(d.metadata.labels["app.kubernetes.io/component"], container(d.spec.template.spec.containers[0]));
  const job = docs.find((x: any) => x.kind === "Job");
  const ing = docs.find((x: any) => x.kind === "Ingress");
  const routes = ing ? ing.spec.rules[0].http.paths.map((p: any) => ({ path: p.path, type: p.pathType, role: p.backend.service.name.replace(/^t-ttip-/, "") })) : [];
  const secrets = new Map<string, Record<string, string>>(docs.filter((x: any) => x.kind === "Secret").map((s: any) => [s.metadata.name, s.stringData ?? {}]));
  const servicePorts = new Map<string, number>();
  for (const svc of docs.filter((x: any) => x.kind === "Service")) {
    const pod = docs.find((x: any) => x.kind === "Deployment" && x.metadata.name === svc.metadata.name)?.spec.template.spec.containers[0].ports ?? [];
    for (const p of svc.spec.ports) {
      const target = typeof p.targetPort === "string" ? pod.find((c: any) => c.name === p.targetPort)?.containerPort : (p.targetPort ?? p.port);
      if (target !== undefined) servicePorts.set(`${svc.metadata.name.replace(/^t-ttip-/, "")}:${p.port}`, target);
    }
  }
  return { docs, deployments, job: job && container(job.spec.template.spec.containers[0]), routes, secrets, servicePorts };
}

/**
 * A role's environment as its Deployment renders it: each value through `local` (the
 * addresses a single machine forces), each secretKeyRef from `secret` (which must know it).
 */
export function resolveEnv(role: string, vars: EnvVar[], local: (value: string) => string, secret: (ref: { name: string; key: string }) => string | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const v of vars) {
    if (v.value !== undefined) env[v.name] = local(v.value);
    else {
      const ref = v.valueFrom!.secretKeyRef!;
      const value = secret(ref);
      assert.ok(value !== undefined, `${role} reads secret ${ref.name}/${ref.key}: it must exist`);
      env[v.name] = value;
    }
  }
  return env;
}

/** A rendered container run as a plain process (only `env` and PATH), ready when `ready` says so. */
export class RenderedProcess {
  output = "";
  private constructor(readonly child: ChildProcess) {
    const keep = (d: Buffer) => (this.output = (this.output + d.toString()).slice(-8000));
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
  }

  static async start(name: string, argv: string[], env: Record<string, string>, ready: () => Promise<boolean>): Promise<RenderedProcess> {
    const p = new RenderedProcess(spawn(process.execPath, argv, { env: { ...env, PATH: process.env.PATH ?? "" } as unknown as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] }));
    await eventually(`${name} ready`, async () => {
      if (p.child.exitCode !== null) throw new Error(`${name} exited ${p.child.exitCode}: ${p.output}`);
      return ready().catch(() => false);
    }, { timeoutMs: 60_000, retryErrors: false });
    return p;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGTERM");
    await exited;
  }
}

/** The web image's server (Next's standalone build, as apps/web/build.ts leaves it) on a loopback port. */
export function startWebApp(env: Record<string, string>, port: number): Promise<RenderedProcess> {
  const server = path.join(WEB_DIR, ".next/standalone/apps/web/server.js");
  return RenderedProcess.start("the web app", [server], { ...env, PORT: String(port), HOSTNAME: "127.0.0.1" }, async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200);
}

/** As a rollout's end would: the web app and the gateway first (no new calls), then the services. */
export async function stopPlatform(web: RenderedProcess | undefined, procs: Map<string, PlatformProcess>): Promise<void> {
  await web?.stop();
  await procs.get("gateway")?.stop();
  await Promise.allSettled([...procs.values()].map((p) => p.stop()));
}
