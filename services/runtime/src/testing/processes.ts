import { spawn, type ChildProcess } from "node:child_process";
import { freePort } from "./servers.js";
import { sourceLoaderFlags } from "./source-loader.js";

/**
 * The node flags the platform runs with: `npm start` and the image's ENTRYPOINT
 * (deploy/Dockerfile says why a 32 MB semi-space) pass the same; a process
 * started here without them would collect garbage more often than a pod does.
 */
export const PLATFORM_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=32"];

export interface ProcessOptions {
  /**
   * Only `env` (and HOST, PORT), nothing inherited from the test runner: a pod's
   * environment is exactly what its Deployment says (no NODE_ENV=test, no NODE_TEST_CONTEXT).
   */
  cleanEnv?: boolean;
  /** Told what the process writes (stdout and stderr), all of it: `logs` keeps the last 8 000 characters only. */
  onOutput?: (text: string) => void;
}

/**
 * One platform process (a service or the gateway) as a cluster runs it: its own OS process.
 * `entry` is the script that takes the role as its argument (the platform's main.ts); the
 * runtime does not know where the composition root lives, its caller does.
 */
export class PlatformProcess {
  private child: ChildProcess | undefined;
  private output = "";
  readonly url: string;

  private constructor(
    readonly entry: string,
    readonly role: string,
    readonly port: number,
    private readonly env: Record<string, string>,
    private readonly options: ProcessOptions = {},
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  /** Picks a free loopback port now, so peers can be told the address before it starts. */
  static async create(entry: string, role: string, env: Record<string, string>, options?: ProcessOptions): Promise<PlatformProcess> {
    return new PlatformProcess(entry, role, await freePort(), env, options);
  }

  /** On a port chosen beforehand (e.g. a whole cluster's, so every peer URL is known first). */
  static onPort(entry: string, role: string, port: number, env: Record<string, string>, options?: ProcessOptions): PlatformProcess {
    return new PlatformProcess(entry, role, port, env, options);
  }

  /** The OS process id while started (benches read its CPU time). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Started and not exited since. */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts it and waits until grpc.health.v1 says SERVING. */
  async start(timeoutMs = 60_000): Promise<void> {
    this.output = "";
    // A compiled entry (the image's bundle) runs as the image runs it; source as this process loads it.
    const compiled = /\.m?js$/.test(this.entry);
    const args = [...PLATFORM_NODE_FLAGS, ...(compiled ? [this.entry, this.role] : [...sourceLoaderFlags(), this.entry, this.role])];
    const env: Record<string, string | undefined> = this.options.cleanEnv
      ? { ...this.env, HOST: "127.0.0.1", PORT: String(this.port) }
      : { ...process.env, ...this.env, HOST: "127.0.0.1", PORT: String(this.port), LOG_LEVEL: this.env.LOG_LEVEL ?? "warn" };
    // The test loader's compile cache (source-hooks.ts passes it on to the sources it starts): the image has none.
    if (compiled) delete env.NODE_COMPILE_CACHE;
    const child = spawn(process.execPath, args, { env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const keep = (d: Buffer) => {
      this.output = (this.output + d.toString()).slice(-8000);
      this.options.onOutput?.(d.toString());
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    // Loaded here, not with the testing barrel: most test files never start a process.
    const [{ createClient }, { createGrpcTransport }, { Health, HealthCheckResponse_ServingStatus: Status }] = await Promise.all([
      import("@connectrpc/connect"),
      import("@connectrpc/connect-node"),
      import("@ttip/proto/grpc/health/v1/health_pb.js"),
    ]);
    const health = createClient(Health, createGrpcTransport({ baseUrl: this.url }));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`${this.role} exited with ${child.exitCode} while starting:\n${this.output}`);
      const ok = await health.check({ service: "" }, { timeoutMs: 1_000 }).then((r) => r.status === Status.SERVING, () => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`${this.role} did not report SERVING within ${timeoutMs} ms:\n${this.output}`);
  }

  /** SIGKILL: a crash, nothing drained. */
  async kill(): Promise<void> {
    await this.signal("SIGKILL");
  }

  /** SIGTERM: a graceful stop, as Kubernetes does it. */
  async stop(): Promise<void> {
    await this.signal("SIGTERM");
  }

  get logs(): string {
    return this.output;
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill(sig);
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  }
}
