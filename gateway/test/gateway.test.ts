import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@ttip/proto/grpc/reflection/v1/reflection_pb.js";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { wallet } from "@ttip/wallet";
import {
  createPeers,
  freePort,
  InProcessBus,
  markSessionRevoked,
  Metrics,
  RedisCache,
  startService,
  type RunningServer,
  type RunningService,
  type ServiceModule,
} from "@ttip/runtime";
import { captureLogger, createTestDatabase, eventually, testEnv, uniqueName, type TestDatabase } from "@ttip/runtime/testing";
import { CLIENT_ADDRESS_HEADER, PARTNER_HEADERS, PRINCIPAL_HEADERS, SESSION_HEADER, startGateway } from "../src/index.js";
import { sharedBudget } from "../src/rate-limit.js";

const exec = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const { logger } = captureLogger("silent");

/** A request the contract accepts, and one it refuses (the id is not a UUID). */
const VALID = { qrCodeId: randomUUID() };

/**
 * The qr contract with no method built, so these tests see UNIMPLEMENTED
 * relayed whatever the real qr service implements.
 */
const unimplementedQr: ServiceModule = {
  name: "qr",
  services: [QrService],
  routes: (router) => void router.service(QrService, {}),
};
const INVALID = { qrCodeId: "not-a-uuid" };

describe("gateway", () => {
  let db: TestDatabase;
  let cache: RedisCache;
  let services: RunningService[];
  let gateway: RunningServer;
  const seenByBackend: Array<string | null> = [];
  const sessionsSeen: Array<string | null> = [];
  const addressesSeen: Array<string | null> = [];
  let privateJwk: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
  let publicJwk: JWK;

  before(async () => {
    db = await createTestDatabase();
    cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
    const ctx = { logger, pool: db.pool, bus: new InProcessBus(logger), cache, metrics: new Metrics(), peers: createPeers(() => undefined) };
    const recordPrincipal = {
      interceptors: [
        (next: Parameters<import("@connectrpc/connect").Interceptor>[0]) =>
          async (req: Parameters<typeof next>[0]) => {
            seenByBackend.push(req.header.get(PRINCIPAL_HEADERS.subject));
            sessionsSeen.push(req.header.get(SESSION_HEADER));
            addressesSeen.push(req.header.get(CLIENT_ADDRESS_HEADER));
            return next(req);
          },
      ],
    };
    services = [await startService(unimplementedQr, ctx, recordPrincipal), await startService(wallet, ctx)];
    const keys = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    privateJwk = keys.privateKey;
    publicJwk = { ...(await exportJWK(keys.publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
    gateway = await startGateway({
      logger,
      metrics: new Metrics(),
      cache,
      backends: [
        { service: QrService, url: services[0].server.url },
        { service: WalletService, url: services[1].server.url },
      ],
      jwt: { jwks: { keys: [publicJwk] }, issuer: "ttip-auth", audience: "ttip" },
      rateLimit: { points: 1000, durationSeconds: 60 },
      corsOrigins: ["https://app.example"],
    });
  });

  after(async () => {
    await gateway.close();
    for (const s of services) await s.close();
    await cache.close();
    await db.drop();
  });

  const transports: Record<string, () => Transport> = {
    "Connect JSON": () => createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }),
    "Connect binary": () => createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true }),
    "gRPC-web": () => createGrpcWebTransport({ baseUrl: gateway.url, httpVersion: "1.1" }),
    gRPC: () => createGrpcTransport({ baseUrl: gateway.url }),
  };

  for (const [protocol, transport] of Object.entries(transports)) {
    test(`${protocol}: health, validation and UNIMPLEMENTED pass through the gateway`, async () => {
      const health = createClient(Health, transport());
      for (const service of ["ttip.qr.v1.QrService", "ttip.wallet.v1.WalletService"]) {
        assert.equal((await health.check({ service })).status, Status.SERVING);
      }
      await assert.rejects(health.check({ service: "ttip.nope.v1.NopeService" }), (e: ConnectError) => e.code === Code.NotFound);

      const client = createClient(QrService, transport());
      await assert.rejects(client.getQrCode(INVALID), (e: ConnectError) => {
        assert.equal(e.code, Code.InvalidArgument);
        const [violations] = e.findDetails(ViolationsSchema);
        assert.ok(violations, "violations detail");
        assert.equal(violations.violations[0].field?.elements[0].fieldName, "qr_code_id");
        return true;
      });
      let requestId: string | null = null;
      await assert.rejects(
        client.getQrCode(VALID, { headers: { "x-request-id": "req-12345678" }, onHeader: (h) => (requestId = h.get("x-request-id")) }),
        (e: ConnectError) => {
          assert.equal(e.code, Code.Unimplemented);
          requestId ??= e.metadata.get("x-request-id");
          return true;
        },
      );
      assert.equal(requestId, "req-12345678");
    });
  }

  test("a stock @grpc/grpc-js client works against the gateway and against a service directly", async () => {
    const def = protoLoader.loadSync(["grpc/health/v1/health.proto", "ttip/qr/v1/qr_service.proto"], {
      includeDirs: [path.join(root, "proto")],
      enums: String,
    });
    const pkg = grpc.loadPackageDefinition(def) as any;
    for (const target of [gateway.port, services[0].server.port]) {
      const health = new pkg.grpc.health.v1.Health(`127.0.0.1:${target}`, grpc.credentials.createInsecure());
      const status = await new Promise<string>((resolve, reject) =>
        health.check({ service: "ttip.qr.v1.QrService" }, (err: Error | null, res: { status: string }) => (err ? reject(err) : resolve(res.status))),
      );
      assert.equal(status, "SERVING");
      const client = new pkg.ttip.qr.v1.QrService(`127.0.0.1:${target}`, grpc.credentials.createInsecure());
      const code = await new Promise<number>((resolve) =>
        client.getQrCode({ qrCodeId: VALID.qrCodeId }, (err: grpc.ServiceError | null) => resolve(err ? err.code : grpc.status.OK)),
      );
      assert.equal(code, grpc.status.UNIMPLEMENTED);
      health.close();
      client.close();
    }
  });

  test("buf curl works against the gateway and a service directly, using reflection", async () => {
    const buf = path.join(root, "node_modules/.bin/buf");
    for (const url of [gateway.url, services[0].server.url]) {
      const { stdout } = await exec(buf, [
        "curl", "--http2-prior-knowledge", "--protocol", "grpc",
        "--data", JSON.stringify({ service: "ttip.qr.v1.QrService" }),
        `${url}/grpc.health.v1.Health/Check`,
      ]);
      assert.deepEqual(JSON.parse(stdout), { status: "SERVING" });
      const failed = await exec(buf, [
        "curl", "--http2-prior-knowledge", "--protocol", "grpc",
        "--data", JSON.stringify({ qr_code_id: VALID.qrCodeId }),
        `${url}/ttip.qr.v1.QrService/GetQrCode`,
      ]).then(() => undefined, (err: { stderr: string }) => err.stderr);
      assert.match(failed ?? "", /unimplemented/);
      const listed = await exec(buf, ["curl", "--http2-prior-knowledge", "--list-methods", url]);
      assert.match(listed.stdout, /ttip\.qr\.v1\.QrService\/GetQrCode/);
    }
  });

  test("bearer tokens: a valid one reaches the backend as the verified subject, bad ones are refused", async () => {
    const client = createClient(QrService, transports.gRPC());
    const sign = (claims: Record<string, unknown>, exp: string | number = "5m") =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: "EdDSA", kid: "k1" })
        .setIssuer("ttip-auth")
        .setAudience("ttip")
        .setSubject("worker-1")
        .setIssuedAt()
        .setExpirationTime(exp)
        .sign(privateJwk);
    const call = (token: string, extra: Record<string, string> = {}) =>
      client.getQrCode(VALID, { headers: { authorization: `Bearer ${token}`, ...extra } }).then(
        () => "ok" as const,
        (e: ConnectError) => e.code,
      );

    seenByBackend.length = 0;
    // A caller cannot claim a subject by header; the gateway sets it from the token.
    assert.equal(await call(await sign({ roles: ["worker"] }), { [PRINCIPAL_HEADERS.subject]: "admin-9" }), Code.Unimplemented);
    assert.deepEqual(seenByBackend, ["worker-1"]);

    const expired = await sign({}, Math.floor(Date.now() / 1000) - 60);
    assert.equal(await call(expired), Code.Unauthenticated);
    const other = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const resigned = await new SignJWT({})
      .setProtectedHeader({ alg: "EdDSA", kid: "k1" })
      .setIssuer("ttip-auth").setAudience("ttip").setSubject("worker-1").setExpirationTime("5m")
      .sign(other.privateKey);
    assert.equal(await call(resigned), Code.Unauthenticated);
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const unsigned = `${b64({ alg: "none" })}.${b64({ sub: "admin", iss: "ttip-auth", aud: "ttip", exp: 9999999999 })}.`;
    assert.equal(await call(unsigned), Code.Unauthenticated);
    assert.equal(seenByBackend.length, 1, "refused tokens never reach the backend");

    // The session id comes from the token's sid claim and the address from the connection, never from the caller.
    sessionsSeen.length = 0;
    addressesSeen.length = 0;
    const sid = randomUUID();
    await call(await sign({ roles: ["worker"], sid }), { [SESSION_HEADER]: randomUUID(), [CLIENT_ADDRESS_HEADER]: "10.99.0.1" });
    await call(await sign({ roles: ["worker"] }), { [SESSION_HEADER]: randomUUID() });
    assert.deepEqual(sessionsSeen, [sid, null]);
    assert.ok(addressesSeen.every((a) => a && /127\.0\.0\.1|::1/.test(a)), `addresses ${addressesSeen}`);

    seenByBackend.length = 0;
    await client.getQrCode(VALID, { headers: { [PRINCIPAL_HEADERS.subject]: "admin-9" } }).catch(() => undefined);
    assert.deepEqual(seenByBackend, [null], "anonymous calls carry no subject");
  });

  test("a verified token is remembered only until it expires: a second call passes, a call after its expiry is refused", async () => {
    const client = createClient(QrService, transports.gRPC());
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = await new SignJWT({ roles: ["worker"] })
      .setProtectedHeader({ alg: "EdDSA", kid: "k1" })
      .setIssuer("ttip-auth").setAudience("ttip").setSubject("worker-2").setExpirationTime(exp)
      .sign(privateJwk);
    const call = () => client.getQrCode(VALID, { headers: { authorization: `Bearer ${token}` } }).then(() => "ok" as const, (e: ConnectError) => e.code);
    seenByBackend.length = 0;
    assert.equal(await call(), Code.Unimplemented);
    assert.equal(await call(), Code.Unimplemented);
    assert.deepEqual(seenByBackend, ["worker-2", "worker-2"]);
    await new Promise((r) => setTimeout(r, exp * 1000 + 50 - Date.now()));
    assert.equal(await call(), Code.Unauthenticated);
    assert.equal(seenByBackend.length, 2, "the expired token never reaches the backend");
  });

  test("CORS: an allowed origin gets its headers and a preflight answer; others get none", async () => {
    const preflight = await fetch(`${gateway.url}/ttip.qr.v1.QrService/GetQrCode`, {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "POST", "access-control-request-headers": "content-type,authorization" },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "https://app.example");
    assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /Authorization/);
    const other = await fetch(`${gateway.url}/ttip.qr.v1.QrService/GetQrCode`, {
      method: "POST",
      headers: { origin: "https://evil.example", "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(other.headers.get("access-control-allow-origin"), null);
  });
});

describe("gateway: a revoked session's open streams", () => {
  let db: TestDatabase;
  let cache: RedisCache;
  let backend: RunningService;
  let gateway: RunningServer;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
  /** Streams the backend saw end, by subject. */
  const ended = new Set<string>();
  /** A notification service whose stream sends a message every 50 ms to subject "busy-*", one and then nothing to others. */
  const notifications: ServiceModule = {
    name: "notification",
    services: [NotificationService],
    routes: (router) =>
      void router.service(NotificationService, {
        async *watchInAppNotifications(_req, ctx) {
          const subject = ctx.requestHeader.get(PRINCIPAL_HEADERS.subject) ?? "";
          try {
            do {
              yield {};
              // Until the next message is due, or the call is cancelled.
              await new Promise<void>((r) => {
                const due = setTimeout(r, subject.startsWith("busy-") ? 50 : 3_600_000);
                ctx.signal.addEventListener("abort", () => (clearTimeout(due), r()), { once: true });
              });
            } while (!ctx.signal.aborted);
          } finally {
            ended.add(subject);
          }
        },
      }),
  };

  before(async () => {
    db = await createTestDatabase();
    cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
    const ctx = { logger, pool: db.pool, bus: new InProcessBus(logger), cache, metrics: new Metrics(), peers: createPeers(() => undefined) };
    backend = await startService(notifications, ctx);
    const keys = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    privateKey = keys.privateKey;
    const publicJwk = { ...(await exportJWK(keys.publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
    gateway = await startGateway({
      logger,
      metrics: new Metrics(),
      cache,
      backends: [{ service: NotificationService, url: backend.server.url }],
      jwt: { jwks: { keys: [publicJwk] }, issuer: "ttip-auth", audience: "ttip" },
      rateLimit: { points: 1000, durationSeconds: 60 },
      corsOrigins: [],
      streamRecheckMs: 200,
      maxLiveStreams: { signedIn: 2, perAddress: 8 },
    });
  });
  after(async () => {
    await gateway?.close();
    await backend?.close();
    await cache?.close();
    await db?.drop();
  });

  const protocols: Record<string, () => Transport> = {
    "Connect binary (forwarded as bytes)": () => createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true }),
    gRPC: () => createGrpcTransport({ baseUrl: gateway.url }),
  };
  const tokenOf = (subject: string, sessionId = randomUUID()) =>
    new SignJWT({ roles: ["worker"], sid: sessionId })
      .setProtectedHeader({ alg: "EdDSA", kid: "k1" })
      .setIssuer("ttip-auth")
      .setAudience("ttip")
      .setSubject(subject)
      .setIssuedAt()
      .setExpirationTime("15m")
      .sign(privateKey);
  test("reflection's two-way streams count toward the caller's live streams: one address cannot hold any number open", async () => {
    const headers = { authorization: `Bearer ${await tokenOf(`reflect-${randomUUID()}`)}` };
    const client = createClient(ServerReflection, protocols.gRPC());
    const aborts: AbortController[] = [];
    /** A reflection stream that asks once and stays open; its first answer, or the refusal. */
    const open = async () => {
      const abort = new AbortController();
      aborts.push(abort);
      async function* ask() {
        yield { messageRequest: { case: "listServices" as const, value: "" } };
        await new Promise((resolve) => abort.signal.addEventListener("abort", resolve));
      }
      const answers = client.serverReflectionInfo(ask(), { headers, signal: abort.signal, timeoutMs: 10_000 })[Symbol.asyncIterator]();
      return answers.next().then(() => "open", (e: unknown) => Code[ConnectError.from(e).code]);
    };
    try {
      assert.deepEqual([await open(), await open()], ["open", "open"]);
      // Before, counted nowhere: the live-stream bound skipped every kind but server streaming.
      assert.equal(await open(), "ResourceExhausted");
    } finally {
      for (const a of aborts) a.abort();
    }
  });

  for (const [protocol, transport] of Object.entries(protocols)) {
    test(`${protocol}: a caller holds at most its bound of live streams open at once; one closed frees its place`, async () => {
      const headers = { authorization: `Bearer ${await tokenOf(`idle-${randomUUID()}`)}` };
      const client = createClient(NotificationService, transport());
      const open = () => {
        const abort = new AbortController();
        return { abort, stream: client.watchInAppNotifications({}, { headers, signal: abort.signal, timeoutMs: 10_000 })[Symbol.asyncIterator]() };
      };
      const held = [open(), open()];
      for (const h of held) assert.equal((await h.stream.next()).done, false);
      try {
        // Before, no bound: each stream had its service read the database every second or two, for up to an hour.
        const third = open();
        const refused = await third.stream.next().then(() => undefined, (e: unknown) => ConnectError.from(e));
        assert.equal(refused?.code, Code.ResourceExhausted, String(refused));
        assert.match(refused.rawMessage, /^at most 2 live streams open at once/);
        held[0].abort.abort();
        await eventually("a closed stream's place is free", async () => {
          const next = open();
          try {
            return (await next.stream.next().then(() => true, () => false));
          } finally {
            next.abort.abort();
          }
        });
      } finally {
        for (const h of held) h.abort.abort();
      }
    });
    for (const kind of ["busy", "idle"]) {
      test(`${protocol}, ${kind}: the stream ends UNAUTHENTICATED once its session is revoked, and the service's stream with it`, async () => {
        const subject = `${kind}-${randomUUID()}`;
        const sessionId = randomUUID();
        const token = await tokenOf(subject, sessionId);
        const client = createClient(NotificationService, transport());
        // Bounded: a stream the gateway never ends fails the test at its deadline instead of running on.
        const stream = client.watchInAppNotifications({}, { headers: { authorization: `Bearer ${token}` }, timeoutMs: 10_000 })[Symbol.asyncIterator]();
        assert.equal((await stream.next()).done, false, "the first message arrives");
        // Still open past several checks while the session lives.
        await new Promise((r) => setTimeout(r, 700));
        assert.equal(ended.has(subject), false);
        await markSessionRevoked(cache, sessionId);
        const end = await (async () => {
          for (;;) if ((await stream.next()).done) return "ended without an error";
        })().catch((e: ConnectError) => e);
        assert.ok(end instanceof ConnectError, String(end));
        assert.deepEqual([Code[end.code], end.rawMessage], ["Unauthenticated", "this session was revoked: sign in again"]);
        await eventually("the service's stream cancelled", async () => ended.has(subject));
      });
    }
  }
});

describe("gateway rate limit (Redis)", () => {
  let backend: http.Server;
  let gateway: RunningServer;
  let cache: RedisCache;
  const prefix = `${uniqueName()}:`;
  before(async () => {
    cache = new RedisCache(testEnv().redisUrl, prefix);
    // The limit is checked before forwarding, so no backend needs to be up.
    backend = http.createServer();
    gateway = await startGateway({
      logger,
      metrics: new Metrics(),
      cache,
      backends: [{ service: QrService, url: "http://127.0.0.1:9" }],
      rateLimit: { points: 3, durationSeconds: 60 },
      corsOrigins: [],
    });
  });
  after(async () => {
    await gateway.close();
    await cache.close();
    backend.close();
  });

  test("the fourth call in the window is RESOURCE_EXHAUSTED with retry-after", async () => {
    const client = createClient(QrService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" }));
    const codes: Code[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 4; i++) {
      await client.getQrCode(VALID).catch((e: ConnectError) => {
        codes.push(e.code);
        if (e.code === Code.ResourceExhausted) retryAfter = e.metadata.get("retry-after");
      });
    }
    // Three reach the (absent) backend and fail UNAVAILABLE; the fourth is refused at the door.
    assert.deepEqual(codes.slice(0, 3).map((c) => c !== Code.ResourceExhausted), [true, true, true]);
    assert.equal(codes[3], Code.ResourceExhausted);
    assert.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= 60, `retry-after ${retryAfter}`);
    // The budget lives in Redis, shared by every gateway replica.
    const keys = await cache.redis.keys(`${prefix}rl:gateway*`);
    assert.equal(keys.length, 1);
  });

  test("an IPv6 client is budgeted by its /64: addresses rotated within it share one budget; another /64 has its own", async () => {
    const behindProxy = await startGateway({
      logger, metrics: new Metrics(), cache, backends: [{ service: QrService, url: "http://127.0.0.1:9" }],
      rateLimit: { points: 3, durationSeconds: 60 }, corsOrigins: [], trustedProxies: ["127.0.0.1/32", "::1/128"],
    });
    try {
      const client = createClient(QrService, createConnectTransport({ baseUrl: behindProxy.url, httpVersion: "1.1" }));
      const prefix = `2001:db8:${Math.floor(Math.random() * 0xffff).toString(16)}:7`;
      const from = (address: string) => client.getQrCode(VALID, { headers: { "x-forwarded-for": address } }).then(() => undefined, (e: ConnectError) => e.code);
      const codes = [];
      for (const host of ["::a", "::b", "::c", ":ffff:1:2:3"]) codes.push(await from(`${prefix}${host}`));
      // Before, each address had a budget of its own: a client rotating through its /64 was never refused.
      assert.deepEqual(codes.map((c) => c === Code.ResourceExhausted), [false, false, false, true]);
      assert.notEqual(await from(`2001:db8:ffff:8::a`), Code.ResourceExhausted, "another /64");
    } finally {
      await behindProxy.close();
    }
  });

  test("/metrics answers the cluster (a private peer, no proxy), not a request an ingress forwarded: that gets 404", async () => {
    const g = await startGateway({
      logger, metrics: new Metrics(), cache, backends: [{ service: QrService, url: "http://127.0.0.1:9" }],
      rateLimit: { points: 100, durationSeconds: 60 }, corsOrigins: ["*"], trustedProxies: ["127.0.0.1/32"],
    });
    try {
      const scrape = await fetch(`${g.url}/metrics`);
      assert.equal(scrape.status, 200);
      assert.match(await scrape.text(), /^# HELP /m);
      // Before, the ingress's catch-all route served the platform's call counts to anyone.
      const proxied: Record<string, string>[] = [{ "x-forwarded-for": "203.0.113.9" }, { "x-forwarded-for": "10.2.3.4" }, { forwarded: "for=198.51.100.7" }, { "x-forwarded-for": "203.0.113.9", origin: "https://ttip.example" }];
      for (const headers of proxied) {
        const res = await fetch(`${g.url}/metrics`, { headers });
        assert.equal(res.status, 404, JSON.stringify(headers));
        assert.doesNotMatch(await res.text(), /HELP/);
      }
      assert.equal((await fetch(`${g.url}/healthz`, { headers: { "x-forwarded-for": "203.0.113.9" } })).status, 200, "the health check still answers");
    } finally {
      await g.close();
    }
  });

  test("refused partner signatures are charged to the address, apart from its anonymous calls and bearer tokens: over that budget, a signature is refused before it is checked", async () => {
    let verifications = 0;
    const behindProxy = await startGateway({
      logger, metrics: new Metrics(), cache, backends: [{ service: QrService, url: "http://127.0.0.1:9" }],
      rateLimit: { points: 3, durationSeconds: 60 }, corsOrigins: [], trustedProxies: ["127.0.0.1/32", "::1/128"],
      partners: {
        verify: async () => {
          verifications++;
          throw new ConnectError("partner signature refused: unknown or revoked key", Code.Unauthenticated);
        },
      },
    });
    try {
      const client = createClient(QrService, createConnectTransport({ baseUrl: behindProxy.url, httpVersion: "1.1", useBinaryFormat: true }));
      const address = `203.0.113.${Math.floor(Math.random() * 250) + 1}`;
      const signed = () => ({
        [PARTNER_HEADERS.keyId]: randomUUID(), [PARTNER_HEADERS.timestamp]: String(Math.floor(Date.now() / 1000)), [PARTNER_HEADERS.signature]: "0".repeat(64),
      });
      const call = (headers: Record<string, string>, from = address) =>
        client.getQrCode(VALID, { headers: { ...headers, "x-forwarded-for": from } }).then(() => undefined, (e: ConnectError) => e.code);
      const codes = [];
      for (let i = 0; i < 5; i++) codes.push(await call(signed()));
      // Before, none was charged: every call was checked (a round trip to auth) and refused, without end.
      assert.deepEqual(codes, [Code.Unauthenticated, Code.Unauthenticated, Code.Unauthenticated, Code.ResourceExhausted, Code.ResourceExhausted]);
      assert.equal(verifications, 4, "the one that went over was checked, the next was not");
      // Bearer tokens are checked here whatever the address spent: behind one carrier address, other phones' expired
      // tokens spent the budget, and every valid token from there was refused unchecked.
      for (let i = 0; i < 4; i++) assert.equal(await call({ authorization: "Bearer not.a.token" }), Code.Unauthenticated, "checked, not refused over budget");
      assert.equal(await call(signed()), Code.ResourceExhausted, "bearer refusals spend none of it");
      assert.equal(await call(signed(), "203.0.113.255"), Code.Unauthenticated, "another address has its own");
      // Anonymous calls keep their own budget: behind one carrier address, a busy tip page used it up, and the next
      // expired token refused every signed-in call from there unchecked, valid tokens too.
      assert.equal(await call({}), Code.Unavailable, "the address's anonymous budget is not spent by refused credentials");
      const shared = "203.0.113.254";
      for (let i = 0; i < 3; i++) assert.equal(await call({}, shared), Code.Unavailable);
      assert.equal(await call({}, shared), Code.ResourceExhausted);
      assert.equal(await call({ authorization: "Bearer not.a.token" }, shared), Code.Unauthenticated, "checked, not refused over the anonymous budget");
    } finally {
      await behindProxy.close();
    }
  });

  test("two replicas share one budget: exactly the budget passes, one call at a time and in a burst, and Redis counts every call", async () => {
    const sharedPrefix = `${uniqueName()}:`;
    const shared = new RedisCache(testEnv().redisUrl, sharedPrefix);
    const replicas = await Promise.all(
      [0, 1].map(() =>
        startGateway({ logger, metrics: new Metrics(), cache: shared, backends: [{ service: QrService, url: "http://127.0.0.1:9" }], rateLimit: { points: 40, durationSeconds: 60 }, corsOrigins: [] }),
      ),
    );
    try {
      const clients = replicas.map((r) => createClient(QrService, createConnectTransport({ baseUrl: r.url, httpVersion: "1.1" })));
      const refused = async (call: Promise<unknown>) => call.then(() => false, (e: ConnectError) => e.code === Code.ResourceExhausted);
      // One at a time, alternating replicas: each knows the other's calls only from Redis's answers.
      const sequential: boolean[] = [];
      for (let i = 0; i < 30; i++) sequential.push(await refused(clients[i % 2].getQrCode(VALID)));
      // One more on each, its charge sent and answered before the next (a flush is 50 ms): each replica then knows
      // the store's count within the margin. Before, a replica's last answer could be a few of the other's calls old,
      // and past the margin by them it admitted those at once in the burst (as designed): 14 passed in one run.
      // Waited for in the store (a fixed 400 ms was short on a busy machine), then a moment for the answer to arrive.
      const stored = async () => Number(await shared.redis.get((await shared.redis.keys(`${sharedPrefix}rl:gateway*`))[0] ?? "none"));
      const charged = async (count: number) => {
        await eventually(`the store counts ${count}`, async () => (await stored()) === count, { timeoutMs: 10_000, everyMs: 20 });
        await new Promise((r) => setTimeout(r, 100));
      };
      for (const [i, client] of clients.entries()) {
        await charged(30 + i);
        sequential.push(await refused(client.getQrCode(VALID)));
      }
      await charged(32);
      assert.equal(sequential.filter(Boolean).length, 0);
      // Then 30 at once, on both: the 8 left pass, whatever the interleaving.
      const burst = await Promise.all(Array.from({ length: 30 }, (_, i) => refused(clients[i % 2].getQrCode(VALID))));
      assert.equal(burst.filter((r) => !r).length, 8, `passed ${burst.filter((r) => !r).length}`);
      const [key, ...others] = await shared.redis.keys(`${sharedPrefix}rl:gateway*`);
      assert.equal(others.length, 0);
      assert.equal(Number(await shared.redis.get(key)), 62);
    } finally {
      for (const r of replicas) await r.close();
      await shared.close();
    }
  });

  test("many clients' calls at once cost one round trip to Redis, and each client gets exactly its budget", async () => {
    let roundTrips = 0;
    const keyPrefix = uniqueName("clients");
    const budget = (points: number) =>
      sharedBudget({ charge: (charges) => (roundTrips++, cache.chargeBudgets(keyPrefix, 60, charges)) }, { points, margin: 10 });
    const passed = async (b: ReturnType<typeof sharedBudget>, keys: string[]) =>
      Promise.all(keys.map((key) => b.consume(key).then(() => key, () => undefined)));
    const counted = async (key: string) => Number(await cache.redis.get(`${prefix}rl:${keyPrefix}:${key}`));

    // New clients wait for Redis: 20 clients, 5 calls each, all at once: one script, 3 pass each.
    const clients = Array.from({ length: 20 }, (_, i) => `ip:10.0.0.${i}`);
    const tight = await passed(budget(3), clients.flatMap((c) => [c, c, c, c, c]));
    assert.equal(roundTrips, 1);
    for (const c of clients) assert.equal(tight.filter((k) => k === c).length, 3, c);
    assert.equal(await counted(clients[7]), 5, "every call is counted, refused ones too");

    // Far from the limit, known clients pass at once; their calls are charged together after.
    const roomy = budget(1_000);
    const others = clients.map((c) => `${c}:roomy`);
    await passed(roomy, others);
    roundTrips = 0;
    for (let wave = 0; wave < 5; wave++) assert.equal((await passed(roomy, others)).filter(Boolean).length, 20);
    // Their charges go within flushMs, with no call waiting: every call is counted then.
    await eventually("every call of the 20 clients counted", async () => (await Promise.all(others.map(counted))).every((n) => n === 6));
    assert.ok(roundTrips >= 1 && roundTrips <= 5, `${roundTrips} round trips for 100 calls of 20 clients`);
  });

  test("the charges of calls that passed wait for others' (one round trip, not one per turn): sent at once when a call waits or a quarter of the margin is held back, else within flushMs", async () => {
    const charges: Array<Array<{ key: string; points: number }>> = [];
    const counts = new Map<string, number>();
    let charged = () => {};
    const store = {
      charge: async (batch: readonly { key: string; points: number }[]) => {
        charges.push(batch.map((c) => ({ ...c })));
        charged();
        return batch.map((c) => ({ consumedPoints: counts.set(c.key, (counts.get(c.key) ?? 0) + c.points).get(c.key)!, msBeforeNext: 60_000 }));
      },
    };
    const nextTurn = () => new Promise((r) => setImmediate(r));
    // A flush interval no test waits for: only a waiting call or the held-back bound sends.
    const held = sharedBudget(store, { points: 1_000, margin: 40, flushMs: 3_600_000 });
    await held.consume("a"); // the store never answered: this one waits for it
    assert.equal(charges.length, 1);
    // Nine calls, each on a turn of its own, pass at once and nothing is sent for them.
    for (let i = 0; i < 9; i++) {
      await held.consume("a");
      await nextTurn();
    }
    assert.equal(charges.length, 1, "calls that passed are held back, not charged a round trip each");
    // A new key's second call waits for the store: everything held back goes with it.
    await held.consume("b");
    await Promise.all([held.consume("b"), nextTurn()]);
    assert.deepEqual(charges[1], [{ key: "a", points: 9 }, { key: "b", points: 2 }]);
    // A quarter of the margin (10 calls) of one key held back is sent without waiting for the interval.
    for (let i = 0; i < 10; i++) await held.consume("a");
    await nextTurn();
    await nextTurn();
    assert.deepEqual(charges[2], [{ key: "a", points: 10 }]);
    assert.equal(counts.get("a"), 20, "every call is charged");
    // Otherwise the calls that passed are charged within flushMs, with no other call to carry them.
    const soon = sharedBudget(store, { points: 1_000, margin: 40, flushMs: 1 });
    await soon.consume("c");
    const sent = new Promise<void>((r) => (charged = r));
    await soon.consume("c");
    await sent;
    assert.deepEqual(charges.at(-1), [{ key: "c", points: 1 }]);
  });

  test("when the store fails or answers for fewer keys than charged, the calls waiting fail with an Error and the next ones wait for it again", async () => {
    const keyPrefix = uniqueName("failing");
    let fault: "down" | "short" | undefined;
    let answeredShort: (() => void) | undefined;
    const budget = sharedBudget(
      {
        charge: async (charges) => {
          if (fault === "down") throw new Error("redis down");
          const counts = await cache.chargeBudgets(keyPrefix, 60, charges);
          if (fault !== "short") return counts;
          answeredShort?.();
          return counts.slice(1);
        },
      },
      { points: 1_000, margin: 10 },
    );
    const outcome = (key: string) => budget.consume(key).then(() => "passed", (e: unknown) => (e instanceof Error ? e.message : "over budget"));
    assert.deepEqual(await Promise.all([outcome("a"), outcome("b")]), ["passed", "passed"]);
    fault = "short";
    const shortAnswer = new Promise<void>((r) => (answeredShort = r));
    // Known keys far from the limit pass at once; the charge after them fails and drops what was known.
    assert.deepEqual(await Promise.all([outcome("a"), outcome("b")]), ["passed", "passed"]);
    // That charge goes within flushMs; its failure is settled in the microtasks after its answer.
    await shortAnswer;
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(await Promise.all([outcome("a"), outcome("b")]), ["budget store answered 1 counts for 2 keys", "budget store answered 1 counts for 2 keys"]);
    fault = "down";
    assert.deepEqual(await Promise.all([outcome("a")]), ["redis down"]);
    fault = undefined;
    assert.deepEqual(await Promise.all([outcome("a"), outcome("b")]), ["passed", "passed"]);
  });

  test("a client's first call does not wait for the store when the budget is roomier than the margin; its next calls, a tight budget's and those after a failure do", async () => {
    // A store whose answers are held until released: what passes before shows what waits for it.
    const counts = new Map<string, number>();
    const held: Array<() => void> = [];
    let down = false;
    const store = {
      charge: (charges: readonly { key: string; points: number }[]) =>
        new Promise<{ consumedPoints: number; msBeforeNext: number }[]>((resolve, reject) =>
          held.push(() => {
            if (down) return reject(new Error("redis down"));
            resolve(charges.map((c) => ({ consumedPoints: counts.set(c.key, (counts.get(c.key) ?? 0) + c.points).get(c.key)!, msBeforeNext: 60_000 })));
          }),
        ),
    };
    const release = async () => {
      await new Promise((r) => setImmediate(r));
      for (const answer of held.splice(0)) answer();
      await new Promise((r) => setImmediate(r));
    };
    const state = (p: Promise<unknown>) => Promise.race([p.then(() => "passed", (e: Error) => e.message), new Promise((r) => setImmediate(() => setImmediate(() => r("waiting"))))]);
    const roomy = sharedBudget(store, { points: 100, margin: 10 });
    // Before the store has ever answered, even a first call waits.
    const first = roomy.consume("a");
    assert.equal(await state(first), "waiting");
    await release();
    assert.equal(await state(first), "passed");
    // A new client: its first call passes at once; a second one, before the store's answer, waits for it.
    assert.equal(await state(roomy.consume("b")), "passed");
    const second = roomy.consume("b");
    assert.equal(await state(second), "waiting");
    await release();
    await release();
    assert.equal(await state(second), "passed");
    assert.equal(counts.get("b"), 2, "the call that passed at once is charged to the store");
    // A budget within the margin is exact: a new client's first call waits.
    const tight = sharedBudget(store, { points: 5, margin: 10 });
    const answered = tight.consume("a");
    await release();
    assert.equal(await state(answered), "passed");
    const tightFirst = tight.consume("c");
    assert.equal(await state(tightFirst), "waiting");
    await release();
    assert.equal(await state(tightFirst), "passed");
    // After the store failed, new clients wait for it (and fail with it) until it answers again.
    assert.equal(await state(roomy.consume("d")), "passed");
    // Its charge goes within the flush interval, with no call waiting to carry it.
    await eventually("the charge flushed with no call waiting", () => held.length > 0);
    down = true;
    await release();
    const afterFailure = roomy.consume("e");
    assert.equal(await state(afterFailure), "waiting");
    await release();
    assert.equal(await state(afterFailure), "redis down");
  });
});

describe("gateway: what auth's key set or the budget store failing answers", () => {
  let cache: RedisCache;
  const gateways: RunningServer[] = [];
  before(() => void (cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`)));
  after(async () => {
    for (const g of gateways) await g.close();
    await cache.close();
  });
  const started = async (options: Partial<Parameters<typeof startGateway>[0]>) => {
    const g = await startGateway({ logger, metrics: new Metrics(), cache, backends: [{ service: QrService, url: "http://127.0.0.1:9" }], rateLimit: { points: 100, durationSeconds: 60 }, corsOrigins: [], ...options });
    gateways.push(g);
    return createClient(QrService, createConnectTransport({ baseUrl: g.url, httpVersion: "1.1" }));
  };

  test("auth's key set out of reach: a signed token is UNAVAILABLE (retried), not 'invalid token' (which signs every user out)", async () => {
    const keys = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    // Nothing listens there: the key set cannot be fetched.
    const client = await started({ jwt: { jwksUrl: `http://127.0.0.1:${await freePort()}/.well-known/jwks.json`, issuer: "ttip-auth", audience: "ttip" } });
    const token = await new SignJWT({ roles: ["worker"] }).setProtectedHeader({ alg: "EdDSA", kid: "k1" }).setIssuer("ttip-auth").setAudience("ttip")
      .setSubject("worker-1").setIssuedAt().setExpirationTime("5m").sign(keys.privateKey);
    const refused = await client.getQrCode(VALID, { headers: { authorization: `Bearer ${token}` } }).then(() => undefined, (e) => ConnectError.from(e));
    // Before, UNAUTHENTICATED "invalid token".
    assert.equal(refused?.code, Code.Unavailable);
    assert.match(refused!.rawMessage, /cannot check the token right now/);
  });

  test("the budget store down: a call is UNAVAILABLE (retried), not INTERNAL", async () => {
    const failing = Object.assign(Object.create(cache) as RedisCache, { chargeBudgets: async () => Promise.reject(new Error("redis down")) });
    const client = await started({ cache: failing, rateLimit: { points: 3, durationSeconds: 60 } });
    const refused = await client.getQrCode(VALID).then(() => undefined, (e) => ConnectError.from(e));
    // Before, INTERNAL "internal error", logged as a bug.
    assert.equal(refused?.code, Code.Unavailable);
    assert.match(refused!.rawMessage, /cannot check the request budget right now/);
  });
});
