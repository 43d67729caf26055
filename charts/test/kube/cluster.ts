// A real Kubernetes control plane on loopback for the chart's install test:
// etcd (Debian's etcd-server), kube-apiserver, kube-controller-manager and
// kube-scheduler (built from k8s.io/kubernetes by deploy/kube-harness/build.sh),
// and kwok, which plays the kubelets: it keeps fake nodes Ready and marks the
// pods scheduled to them running (and Job pods completed). Nothing runs a
// container: the API objects, controllers and scheduler are real, the
// workloads are not. Every process is stopped by its id.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { freePort } from "@ttip/runtime/testing";
import { GO_ENV } from "../helm.js";

const exec = promisify(execFile);
const repo = fileURLToPath(new URL("../../../", import.meta.url));
const BUILD_SCRIPT = path.join(repo, "deploy/kube-harness/build.sh");

/** Why the cluster cannot start here, or undefined when it can. */
export function missingPrerequisite(): string | undefined {
  if (!existsSync("/usr/bin/etcd") && !onPath("etcd")) return "etcd not found (Debian package etcd-server)";
  if (!onPath("go")) return "Go not found (it builds kube-apiserver, kube-controller-manager, kube-scheduler and kwok)";
  return undefined;
}

function onPath(bin: string): boolean {
  return (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, bin)));
}

/** The folder with the control-plane binaries and CRDs: built once per machine, then cached. */
export async function kubeBinaries(): Promise<string> {
  // The first build takes minutes (make test runs it before the suite); later calls print the cached folder.
  const { stdout } = await exec(BUILD_SCRIPT, [], { maxBuffer: 16 << 20, timeout: 40 * 60_000 });
  return stdout.trim().split("\n").at(-1)!;
}

interface Proc {
  name: string;
  child: ChildProcess;
  output: () => string;
}

export interface ApiResponse {
  status: number;
  body: any;
}

export interface Cluster {
  kubeconfig: string;
  /** Where the build put the binaries, kwok's stages and the monitoring CRDs. */
  binDir: string;
  /** One request to the API server as the cluster admin. */
  api(method: string, urlPath: string, body?: unknown, contentType?: string): Promise<ApiResponse>;
  /** Polls `check` until it returns a value (not undefined) or the time is up; the error names `what`. */
  until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs?: number): Promise<T>;
  /** The last lines each control-plane process wrote (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

function startProcess(name: string, bin: string, args: string[]): Proc {
  const child = spawn(bin, args, { env: GO_ENV, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-6000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  return { name, child, output: () => out };
}

async function stopProcess(p: Proc): Promise<void> {
  const { child } = p;
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise((r) => child.once("exit", r));
  process.kill(child.pid, "SIGTERM");
  const timer = setTimeout(() => child.exitCode === null && child.pid && process.kill(child.pid, "SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/**
 * The controllers whose work the chart's test reads: Deployments make ReplicaSets, which make pods;
 * the HPA scales to its minimum; the migration Job runs its pod; each PDB's status; the namespace's
 * default ServiceAccount, which the Job's pods run as; and the nodes' lifecycle, which takes the
 * not-ready taint off a new node once kwok reports it Ready. The others (garbage collector, endpoints,
 * quotas, …) only cost CPU here: the garbage collector alone watches every resource (without it the
 * pod of the migration Job an upgrade replaces stays; nothing reads it).
 */
const CONTROLLERS = ["deployment", "replicaset", "horizontal-pod-autoscaler", "job", "disruption", "serviceaccount", "node-lifecycle"].map((c) => `${c}-controller`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startCluster(options: { nodes?: number } = {}): Promise<Cluster> {
  const bin = await kubeBinaries();
  const etcdBin = existsSync("/usr/bin/etcd") ? "/usr/bin/etcd" : "etcd";
  const dir = await mkdtemp(path.join(os.tmpdir(), "ttip-kube-"));
  const procs: Proc[] = [];
  const token = randomBytes(24).toString("hex");
  const [etcdPort, peerPort, apiPort, kcmPort, schedPort, kwokPort] = await Promise.all(Array.from({ length: 6 }, () => freePort()));

  const stop = async () => {
    for (const p of [...procs].reverse()) await stopProcess(p);
    await rm(dir, { recursive: true, force: true });
  };
  const logs = () => procs.map((p) => `--- ${p.name} (exit ${p.child.exitCode ?? "running"})\n${p.output().split("\n").slice(-25).join("\n")}`).join("\n");

  const api = (method: string, urlPath: string, body?: unknown, contentType = "application/json") =>
    new Promise<ApiResponse>((resolve, reject) => {
      const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
      const req = https.request(
        {
          host: "127.0.0.1",
          port: apiPort,
          path: urlPath,
          method,
          // The API server's certificate is self-signed for this run; the token is what matters here.
          rejectUnauthorized: false,
          headers: { authorization: `Bearer ${token}`, accept: "application/json", ...(payload ? { "content-type": contentType } : {}) },
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString();
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              // plain text (healthz)
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on("error", reject);
      req.on("timeout", () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
      if (payload) req.write(payload);
      req.end();
    });

  const until = async <T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      for (const p of procs) if (p.child.exitCode !== null) throw new Error(`${p.name} exited while waiting for ${what}\n${logs()}`);
      try {
        const v = await check();
        if (v !== undefined) return v;
      } catch (err) {
        lastError = err;
      }
      // Once a second, not four times: each check lists objects through the API server, and on busy
      // cores a rollout's waits last minutes.
      await sleep(1000);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ""}\n${logs()}`);
  };

  try {
    const pki = path.join(dir, "pki");
    await mkdir(pki);
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const saKey = path.join(pki, "sa.key");
    const saPub = path.join(pki, "sa.pub");
    await writeFile(saKey, privateKey.export({ type: "pkcs8", format: "pem" }));
    await writeFile(saPub, publicKey.export({ type: "spki", format: "pem" }));
    await writeFile(path.join(dir, "tokens.csv"), `${token},admin,admin,system:masters\n`);
    const kubeconfig = path.join(dir, "kubeconfig");
    await writeFile(
      kubeconfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "test", cluster: { server: `https://127.0.0.1:${apiPort}`, "insecure-skip-tls-verify": true } }],
        users: [{ name: "admin", user: { token } }],
        contexts: [{ name: "test", context: { cluster: "test", user: "admin" } }],
        "current-context": "test",
      }),
      { mode: 0o600 },
    );

    procs.push(
      startProcess("etcd", etcdBin, [
        "--name=default", `--data-dir=${path.join(dir, "etcd")}`,
        `--listen-client-urls=http://127.0.0.1:${etcdPort}`, `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`, `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${peerPort}`, "--log-level=warn",
      ]),
    );
    procs.push(
      startProcess("kube-apiserver", path.join(bin, "kube-apiserver"), [
        `--etcd-servers=http://127.0.0.1:${etcdPort}`,
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", `--secure-port=${apiPort}`, `--cert-dir=${pki}`,
        `--token-auth-file=${path.join(dir, "tokens.csv")}`, "--authorization-mode=AlwaysAllow",
        "--service-account-issuer=https://kubernetes.default.svc", `--service-account-key-file=${saPub}`,
        `--service-account-signing-key-file=${saKey}`, "--service-cluster-ip-range=10.96.0.0/16",
        "--endpoint-reconciler-type=none", "--profiling=false", "--v=1",
        // No garbage collector runs (below): the API server must not add the finalizers only it removes.
        "--enable-garbage-collector=false",
        // Debian's etcd (3.4.23) cannot request watch progress, which watch-list needs: with WatchList on
        // (its default since 1.34) the API server turns every watch from resourceVersion 0 into a
        // watch-list and refuses it. kwok's watches all start there, so kwok saw pods only when it
        // listed again, after a backoff growing to 30 s: the Jobs' pods waited 20-90 s to run and finish.
        "--feature-gates=WatchList=false",
      ]),
    );
    await until("the API server to be ready", async () => {
      const r = await api("GET", "/readyz");
      return r.status === 200 ? true : undefined;
    }, 90_000);

    for (const [name, port, args] of [
      ["kube-controller-manager", kcmPort, [`--service-account-private-key-file=${saKey}`, `--root-ca-file=${path.join(pki, "apiserver.crt")}`,
        "--use-service-account-credentials=false", "--horizontal-pod-autoscaler-sync-period=2s", "--enable-garbage-collector=false", `--controllers=${CONTROLLERS.join(",")}`]],
      ["kube-scheduler", schedPort, []],
    ] as const) {
      procs.push(
        startProcess(name, path.join(bin, name), [`--kubeconfig=${kubeconfig}`, "--leader-elect=false", "--bind-address=127.0.0.1", `--secure-port=${port}`, "--profiling=false", "--v=1", ...args]),
      );
    }
    procs.push(
      startProcess("kwok", path.join(bin, "kwok"), [
        `--kubeconfig=${kubeconfig}`, `--config=${path.join(bin, "kwok-stages.yaml")}`, "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--cidr=10.244.0.0/16", "--node-ip=10.0.0.1", `--server-address=127.0.0.1:${kwokPort}`,
      ]),
    );

    // Fake nodes in different zones, so topology spread has somewhere to spread.
    const nodeCount = options.nodes ?? 3;
    for (let i = 0; i < nodeCount; i++) {
      const name = `kwok-node-${i}`;
      const r = await until(`node ${name} to be created`, async () => {
        const res = await api("POST", "/api/v1/nodes", {
          apiVersion: "v1",
          kind: "Node",
          metadata: {
            name,
            annotations: { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" },
            labels: { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "topology.kubernetes.io/zone": `zone-${String.fromCharCode(97 + i)}`, type: "kwok" },
          },
          status: { allocatable: { cpu: "8", memory: "32Gi", pods: "110", "ephemeral-storage": "100Gi" }, capacity: { cpu: "8", memory: "32Gi", pods: "110", "ephemeral-storage": "100Gi" } },
        });
        return res.status === 201 || res.status === 409 ? res : undefined;
      });
      void r;
    }
    await until("the fake nodes to be Ready", async () => {
      const { body } = await api("GET", "/api/v1/nodes");
      const ready = (body.items ?? []).filter((n: any) => n.status?.conditions?.some((c: any) => c.type === "Ready" && c.status === "True"));
      return ready.length === nodeCount ? true : undefined;
    });
    return { kubeconfig, binDir: bin, api, until, logs, stop };
  } catch (err) {
    const message = `${(err as Error).message}`;
    await stop();
    throw new Error(message.includes("---") ? message : `${message}\n${logs()}`);
  }
}
