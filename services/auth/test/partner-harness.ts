// Partner webhooks and consents on real PostgreSQL, Redis and JetStream: the
// auth service (restartable on the same database and stream), the real
// gateway in front verifying partner signatures, and a receiving HTTP server
// on loopback that answers as each test scripts it.
import { randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AuthAdminService, AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PartnerAdminService, PartnerConsentService, PartnerService } from "@ttip/proto/ttip/auth/v1/partner_service_pb.js";
import { startGateway } from "@ttip/gateway";
import {
  AdjustableClock,
  buildEvent,
  callerHeaders,
  stepUpHeaders,
  createPeers,
  JetStreamBus,
  Metrics,
  RedisCache,
  signingInterceptor,
  startService,
  type BusMessage,
  type EventBus,
  type RunningServer,
  type RunningService,
  type ServiceContext,
  type ServiceModule,
} from "@ttip/runtime";
import { captureLogger, createTestDatabase, testEnv, uniqueName, type TestDatabase, testPhone } from "@ttip/runtime/testing";
import { createAuth } from "../src/index.js";
import { systemResolver } from "../src/partners/index.js";
import { partnerCallSigner, type PartnerKey } from "../src/testing.js";

export type { PartnerKey };

/** Fast retries, so backoff is seen within a test. */
export const WEBHOOK_ENV = {
  AUTH_WEBHOOK_RETRY_BASE_MS: "150",
  AUTH_WEBHOOK_RETRY_CAP_MS: "600",
  AUTH_WEBHOOK_MAX_ATTEMPTS: "4",
  AUTH_WEBHOOK_TIMEOUT_MS: "2000",
  AUTH_WEBHOOK_POLL_MS: "50",
  // The receiver is on loopback.
  AUTH_WEBHOOK_ALLOW_LOOPBACK: "true",
};

export interface Received {
  at: number;
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

/** An HTTP receiver on loopback: records every request, answers from a script (default 200). */
export class Receiver {
  readonly received: Received[] = [];
  /** Statuses to answer with, in order; when empty, `otherwise`. */
  script: number[] = [];
  otherwise = 200;
  private constructor(private readonly server: Server, readonly url: string) {}

  static async start(): Promise<Receiver> {
    let self: Receiver | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const status = self!.script.length ? self!.script.shift()! : self!.otherwise;
        self!.received.push({ at: Date.now(), headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), status });
        res.writeHead(status, { "content-type": "text/plain" });
        res.end(status < 300 ? "ok" : "not now");
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    self = new Receiver(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/ttip`);
    return self;
  }

  /** Requests carrying this platform event (by the body's eventId). */
  forEvent(eventId: string): Received[] {
    return this.received.filter((r) => (JSON.parse(r.body) as { eventId: string }).eventId === eventId);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/**
 * The bus as JetStream gives it, except that the acknowledgement of the
 * messages named in `loseAck` is lost once, after the handler committed: the
 * server then delivers them again, as after a crash between commit and ack.
 */
export class AckLosingBus implements EventBus {
  readonly loseAck = new Set<string>();
  /** Delivery counts seen per message id. */
  readonly deliveries = new Map<string, number[]>();
  /** Delivery counts whose handler finished (committed), per message id. */
  readonly handled = new Map<string, number[]>();
  constructor(private readonly inner: JetStreamBus) {}
  publish(m: BusMessage) {
    return this.inner.publish(m);
  }
  subscribe(o: Parameters<EventBus["subscribe"]>[0]) {
    return this.inner.subscribe({
      ...o,
      handler: async (m) => {
        this.deliveries.set(m.id, [...(this.deliveries.get(m.id) ?? []), m.deliveryCount]);
        await o.handler(m);
        this.handled.set(m.id, [...(this.handled.get(m.id) ?? []), m.deliveryCount]);
        if (this.loseAck.delete(m.id)) throw new Error("test: the acknowledgement was lost");
      },
    });
  }
  /** Wake-ups pass straight through: only acks are lost here. */
  notify(subject: string, data: Uint8Array) {
    this.inner.notify(subject, data);
  }
  listen(subject: string, handler: (data: Uint8Array) => void) {
    return this.inner.listen(subject, handler);
  }
  close() {
    return this.inner.close();
  }
}

export interface PartnerHarness {
  db: TestDatabase;
  ctx: ServiceContext;
  /** Auth's clock: move it past a retry's backoff rather than sleep. */
  clock: AdjustableClock;
  bus: AckLosingBus;
  gateway: RunningServer;
  receiver: Receiver;
  /** Stops auth (gracefully) and starts it again on the same database and stream. */
  restartAuth(between?: () => Promise<void>): Promise<void>;
  stopAuth(): Promise<void>;
  startAuth(): Promise<void>;
  issueKey(name: string, scopes: string[]): Promise<PartnerKey>;
  /** Scripted DNS answers for webhook hosts (what auth's resolver sees); other hosts go to the system resolver. */
  dns: Map<string, string[]>;
  dnsSilent: Set<string>;
  /** PartnerService through the gateway, each call signed with `key`. */
  partner(key: PartnerKey): Client<typeof PartnerService>;
  /** A worker's consent RPCs, as the gateway would pass a verified worker token. */
  consents(workerId: string): Client<typeof PartnerConsentService>;
  admin: Client<typeof PartnerAdminService>;
  /** A user in auth's table (consents refer to users). */
  addWorker(): Promise<string>;
  /** Publishes an event as payment's outbox relay would. */
  publish<D extends DescMessage>(schema: D, init: Omit<MessageInitShape<D>, "meta" | "$typeName">): Promise<string>;
  /** Points auth's calls to the service `name` at `url` (a port nothing listens on: the peer out of reach); returns where they went. */
  peerAt(name: string, url: string): string | undefined;
  close(): Promise<void>;
}

export async function startPartnerHarness(options: { env?: Record<string, string>; with?: ServiceModule[] } = {}): Promise<PartnerHarness> {
  const { logger } = captureLogger("silent");
  const db = await createTestDatabase();
  const jet = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream: uniqueName("S").toUpperCase(), subjectPrefix: uniqueName("ev"), logger, redeliveryDelayMs: 100 });
  const bus = new AckLosingBus(jet);
  const cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
  const urls = new Map<string, string>();
  const peers = createPeers((name) => urls.get(name));
  const clock = new AdjustableClock();
  const ctx: ServiceContext = { logger, pool: db.pool, bus, cache, metrics: new Metrics(), peers, clock };
  const others: RunningService[] = [];
  for (const m of options.with ?? []) {
    const s = await startService(m, ctx);
    urls.set(m.name, s.server.url);
    others.push(s);
  }
  const dns = new Map<string, string[]>();
  // A host in `dnsSilent` never answers, as a name server that drops the query.
  const dnsSilent = new Set<string>();
  const webhookResolver = async (host: string) => (dnsSilent.has(host) ? new Promise<string[]>(() => {}) : (dns.get(host) ?? systemResolver(host)));
  const authModule = createAuth({ env: { ...WEBHOOK_ENV, ...options.env }, otpSender: { send: async () => undefined } as never, webhookResolver });
  let auth: RunningService | undefined = await startService(authModule, ctx);
  // A fixed port, so the gateway's backend address survives restarts.
  const authPort = Number(new URL(auth.server.url).port);
  urls.set("auth", auth.server.url);

  const gateway = await startGateway({
    logger,
    metrics: new Metrics(),
    cache,
    backends: [PartnerService, PartnerConsentService, PartnerAdminService, AuthService].map((service) => ({ service, url: auth!.server.url })),
    rateLimit: { points: 100_000, durationSeconds: 60 },
    corsOrigins: [],
    partners: { authUrl: auth.server.url, rateLimit: { points: 10_000, durationSeconds: 60 } },
  });
  const receiver = await Receiver.start();
  const direct = (as: { subject: string; roles: string[] }) =>
    createConnectTransport({
      baseUrl: auth!.server.url,
      httpVersion: "1.1",
      interceptors: [(next) => (req) => {
        for (const [k, v] of Object.entries({ ...callerHeaders(as.subject, ...(as.roles as never[])), ...stepUpHeaders() })) req.header.set(k, v);
        return next(req);
      }, signingInterceptor()],
    });
  const adminId = randomUUID();

  const stopAuth = async () => {
    await auth?.close();
    auth = undefined;
  };
  const startAuth = async () => {
    auth = await startService(authModule, ctx, { port: authPort });
  };

  return {
    db,
    ctx,
    clock,
    peerAt: (name, url) => {
      const was = urls.get(name);
      urls.set(name, url);
      return was;
    },
    bus,
    gateway,
    receiver,
    stopAuth,
    startAuth,
    dns,
    dnsSilent,
    async restartAuth(between) {
      await stopAuth();
      await between?.();
      await startAuth();
    },
    async issueKey(name, scopes) {
      const r = await createClient(AuthAdminService, direct({ subject: adminId, roles: ["admin"] }))
        .issuePartnerApiKey({ partnerName: name, scopes, idempotencyKey: `issue-${randomUUID()}` });
      return { keyId: r.key!.keyId, secret: r.secret };
    },
    partner: (key) => createClient(PartnerService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: [partnerCallSigner(key)] })),
    consents: (workerId) => createClient(PartnerConsentService, direct({ subject: workerId, roles: ["worker"] })),
    get admin() {
      return createClient(PartnerAdminService, direct({ subject: adminId, roles: ["admin"] }));
    },
    async addWorker() {
      const id = randomUUID();
      const phone = testPhone();
      await db.pool.query("INSERT INTO auth.users (user_id, phone, roles) VALUES ($1, $2, '{worker}')", [id, phone]);
      return id;
    },
    async publish(schema, init) {
      const m = buildEvent("payment", schema, init as never);
      await bus.publish(m);
      return m.id;
    },
    async close() {
      await gateway.close();
      await receiver.close();
      await stopAuth();
      for (const s of others) await s.close();
      peers.close();
      await bus.close();
      await cache.close();
      await db.drop();
    },
  };
}
