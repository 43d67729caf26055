// The whole platform as a cluster runs it, for tests: each of the seven services
// and the gateway in its own OS process (platform/src/main.ts <role>, or an image's bundle)
// on PostgreSQL, Redis and NATS servers the caller gives, with the Daraja
// simulator in the test process standing in for Safaricom. Any role can be
// killed (SIGKILL), stopped (SIGTERM) and started again on the same port.
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { callerHeaders, signingInterceptor, type Role } from "@ttip/runtime";
import { freePort, PlatformProcess, testEnv, uniqueName } from "@ttip/runtime/testing";
import { PLATFORM_MAIN } from "../src/entry.js";
import { startDarajaSimulator, type DarajaSimulator, type SimulatorOptions } from "@ttip/payment/testing";
import { modules } from "../src/modules.js";


export const SERVICE_ROLES = ["auth", "payment", "qr", "wallet", "notification", "analytics", "venue"] as const;
export type ServiceRole = (typeof SERVICE_ROLES)[number];
export type ClusterRole = ServiceRole | "gateway";

/**
 * `main.ts replicas`' environment on the test's servers: every service's defaults and a free port each
 * (replicas share fixed ports), a stream of the test's own, and the logs the tests read (each replica's
 * "shutdown complete", the primary's lines) at info.
 */
export async function replicasEnv(sim: DarajaSimulator, databaseUrl: string, env: { REPLICAS: string; DATABASE_POOL_MAX: string }): Promise<Record<string, string>> {
  const { redisUrl, natsUrl } = testEnv();
  const ports = new Map<string, number>();
  for (const m of modules) ports.set(m.name, await freePort());
  const paymentUrl = `http://127.0.0.1:${ports.get("payment")}`;
  return {
    ...Object.assign({}, ...SERVICE_ROLES.map((role) => roleDefaults(role, sim, paymentUrl))),
    ...Object.fromEntries([...ports].map(([name, port]) => [`${name.toUpperCase()}_PORT`, String(port)])),
    ...env,
    DATABASE_URL: databaseUrl,
    NATS_URL: natsUrl,
    ...ownStream(),
    REDIS_URL: redisUrl,
    INTERNAL_SIGNING_KEY: randomBytes(32).toString("base64url"),
    DRAIN_DELAY_MS: "0",
    DRAIN_TIMEOUT_MS: "3000",
    LOG_LEVEL: "info",
  };
}

/** Which peers each service calls (its <NAME>_URL variables): what each module declares. */
/** Shared by every process of the cluster, as the chart passes it from one Secret. */
const INTERNAL_SIGNING_KEY = randomBytes(32).toString("base64url");
const peersOf = (role: ServiceRole) => (modules.find((m) => m.name === role)?.calls ?? []) as ServiceRole[];

/**
 * A JetStream stream and subject prefix of one test's own (the processes'
 * NATS_STREAM and NATS_SUBJECT_PREFIX): on a NATS server tests share, the
 * default stream would hand one test's events to another's consumers.
 */
export function ownStream(): { NATS_STREAM: string; NATS_SUBJECT_PREFIX: string } {
  return { NATS_STREAM: uniqueName("CLUSTER").toUpperCase(), NATS_SUBJECT_PREFIX: uniqueName("cluster") };
}

export interface ClusterServers {
  databaseUrl: string;
  natsUrl: string;
  redisUrl: string;
}

export interface ClusterOptions {
  /** Extra environment per role (overrides the defaults below). */
  env?: Partial<Record<ClusterRole, Record<string, string>>>;
  /** Options of the Daraja simulator (callback delays...). */
  simulator?: SimulatorOptions;
  /**
   * Roles not started (the gateway gets a closed port for them): a test that
   * does not use them starts fewer processes on the two cores it shares.
   */
  without?: ServiceRole[];
  /** Per-process start timeout (default 60 s: eight tsx processes starting on two cores). */
  startTimeoutMs?: number;
  /**
   * The script every process runs with its role: the platform's source entry (main.ts) by default,
   * or an image's compiled bundle (builtPlatform's developmentEntry), which starts on about a third
   * of the CPU (no loader resolving and reading some 1,000 source modules).
   */
  entry?: string;
}

/** Payment settings short enough for a test to see reconciliation work; override through `env.payment`. */
export const FAST_PAYMENT_ENV: Record<string, string> = {
  STK_DEADLINE_MS: "2000",
  STK_EXPIRE_AFTER_MS: "120000",
  PAYOUT_RESULT_WAIT_MS: "1500",
  RECONCILE_INTERVAL_MS: "300",
  // A payment process killed mid-pass leaves its leased rows to the next one after this.
  RECONCILE_LEASE_MS: "8000",
  DARAJA_TIMEOUT_MS: "3000",
  FRAUD_PHONE_PER_10MIN: "1000",
  FRAUD_WORKER_PER_10MIN: "100000",
};

export class Cluster {
  private constructor(
    readonly sim: DarajaSimulator,
    /** This cluster's own stream and subject prefix, shared by its processes. */
    readonly stream: ReturnType<typeof ownStream>,
    private readonly procs: Map<ClusterRole, PlatformProcess>,
    private readonly startTimeoutMs: number,
  ) {}

  /** Starts the simulator, the seven services (in parallel) and then the gateway; all SERVING when it returns. */
  static async start(servers: ClusterServers, options: ClusterOptions = {}): Promise<Cluster> {
    const sim = await startDarajaSimulator({ callbackDelayMs: 100, lateDelayMs: 2500, ...options.simulator });
    const procs = new Map<ClusterRole, PlatformProcess>();
    const cluster = new Cluster(sim, ownStream(), procs, options.startTimeoutMs ?? 60_000);
    try {
      // Ports first, so every peer URL is known before anything starts.
      const ports = new Map<ServiceRole, number>();
      for (const role of SERVICE_ROLES) ports.set(role, await freePort());
      const url = (role: ServiceRole) => `http://127.0.0.1:${ports.get(role)}`;
      const roles = SERVICE_ROLES.filter((role) => !options.without?.includes(role));
      for (const role of roles) {
        const env: Record<string, string> = {
          DATABASE_URL: servers.databaseUrl,
          DATABASE_POOL_MAX: "8",
          NATS_URL: servers.natsUrl,
          ...cluster.stream,
          REDIS_URL: servers.redisUrl,
          DRAIN_TIMEOUT_MS: "3000",
          DRAIN_DELAY_MS: "0",
          INTERNAL_SIGNING_KEY,
          ...Object.fromEntries(peersOf(role).map((peer) => [`${peer.toUpperCase()}_URL`, url(peer)])),
          ...roleDefaults(role, sim, url(role)),
          ...options.env?.[role],
        };
        procs.set(role, PlatformProcess.onPort(options.entry ?? PLATFORM_MAIN, role, ports.get(role)!, env));
      }
      const gatewayEnv: Record<string, string> = {
        ...Object.fromEntries(SERVICE_ROLES.map((role) => [`${role.toUpperCase()}_URL`, url(role)])),
        REDIS_URL: servers.redisUrl,
        JWKS_URL: `${url("auth")}/.well-known/jwks.json`,
        RATE_LIMIT_POINTS: "1000000",
        DRAIN_TIMEOUT_MS: "3000",
        DRAIN_DELAY_MS: "0",
        INTERNAL_SIGNING_KEY,
        ...options.env?.gateway,
      };
      procs.set("gateway", await PlatformProcess.create(options.entry ?? PLATFORM_MAIN, "gateway", gatewayEnv));
      // Migrations take an advisory lock per schema, so the services may start together.
      await Promise.all(roles.map((role) => procs.get(role)!.start(cluster.startTimeoutMs)));
      await procs.get("gateway")!.start(cluster.startTimeoutMs);
      return cluster;
    } catch (err) {
      await cluster.close();
      throw err;
    }
  }

  get gatewayUrl(): string {
    return this.process("gateway").url;
  }

  process(role: ClusterRole): PlatformProcess {
    const p = this.procs.get(role);
    if (!p) throw new Error(`no ${role} process`);
    return p;
  }

  /** SIGKILL: a crash in the middle of whatever it was doing. */
  kill(role: ClusterRole): Promise<void> {
    return this.process(role).kill();
  }

  /** Starts a killed or stopped role again on its port; resolves when it is SERVING. */
  start(role: ClusterRole): Promise<void> {
    return this.process(role).start(this.startTimeoutMs);
  }

  /** Kill (default) or graceful stop, optionally some time down, then start again. */
  async restart(role: ClusterRole, options: { graceful?: boolean; downMs?: number } = {}): Promise<void> {
    await (options.graceful ? this.process(role).stop() : this.kill(role));
    if (options.downMs) await new Promise((r) => setTimeout(r, options.downMs));
    await this.start(role);
  }

  /** True when the role's process is running (not exited since its last start); false for a role not started. */
  running(role: ClusterRole): boolean {
    return this.procs.get(role)?.running ?? false;
  }

  /** The roles this cluster started (all but `without`), and the gateway. */
  roles(): ClusterRole[] {
    return [...this.procs.keys()];
  }

  /** A client of a public service through the gateway (Connect over HTTP/1.1, as a browser calls it), anonymous. */
  public<S extends DescService>(service: S): Client<S> {
    return createClient(service, createConnectTransport({ baseUrl: this.gatewayUrl, httpVersion: "1.1" }));
  }

  /**
   * A client straight to a service's own port (gRPC), as a peer service or the
   * gateway calls it: with `as`, the caller the gateway would have verified.
   */
  direct<S extends DescService>(role: ServiceRole, service: S, as?: { subject: string; roles: Role[] }): Client<S> {
    const headers = as ? callerHeaders(as.subject, ...as.roles) : {};
    return createClient(service, createGrpcTransport({ baseUrl: this.process(role).url, interceptors: [(next) => (req) => {
      for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
      return next(req);
    }, signingInterceptor(Buffer.from(INTERNAL_SIGNING_KEY))] }));
  }

  /** Output kept from each process (the last few kB), for a failing test's message. */
  logs(): string {
    return [...this.procs].map(([role, p]) => `--- ${role}\n${p.logs}`).join("\n");
  }

  /** Stops every process (gateway first) and the simulator; safe to call twice or after a failed start. */
  async close(): Promise<void> {
    const gateway = this.procs.get("gateway");
    if (gateway) await gateway.stop().catch(() => undefined);
    await Promise.allSettled(SERVICE_ROLES.map((role) => this.procs.get(role)?.stop()));
    await this.sim.close();
  }
}

/** What a role needs besides the shared servers and its peers: the simulator as M-Pesa, fast payment timings, fixed keys. */
export function roleDefaults(role: ServiceRole, sim: DarajaSimulator, ownUrl: string): Record<string, string> {
  switch (role) {
    case "payment":
      return {
        DARAJA_BASE_URL: sim.url,
        DARAJA_CONSUMER_KEY: sim.options.consumerKey,
        DARAJA_CONSUMER_SECRET: sim.options.consumerSecret,
        DARAJA_SHORTCODE: sim.options.shortcode,
        DARAJA_PASSKEY: sim.options.passkey,
        DARAJA_INITIATOR_NAME: sim.options.initiatorName,
        DARAJA_INITIATOR_PASSWORD: sim.options.initiatorPassword,
        DARAJA_CERTIFICATE_FILE: sim.certificateFile,
        // Daraja calls back the payment process's own port, from loopback.
        PAYMENT_CALLBACK_BASE_URL: ownUrl,
        MPESA_CALLBACK_ALLOWED_IPS: "127.0.0.1,::1",
        ...FAST_PAYMENT_ENV,
      };
    case "auth":
      return { AUTH_KEY_ENCRYPTION_SECRET: "cluster-test-key-encryption-secret-0123456789" };
    case "qr":
      return { QR_SIGNING_KEY: "cluster-test-qr-signing-key-0123456789abcdef" };
    default:
      return {};
  }
}
