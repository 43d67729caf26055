// Binary protobuf calls forwarded as bytes (raw-forward.ts): the message
// reaches the service as the client sent it (inflated at the gateway when
// compressed), and every check of the gateway still stands, for Connect
// binary, gRPC and gRPC-web alike: a body over the read limit, compressed or
// not, stops at the gateway with the code the service itself would answer.
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { deflateSync, gzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { compressionGzip, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { GetQrCodeRequestSchema, GetQrCodeResponseSchema, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import {
  createPeers,
  InProcessBus,
  Metrics,
  PRINCIPAL_HEADERS,
  rawRequestBodyKey,
  readPartnerUsage,
  RedisCache,
  startService,
  type RunningServer,
  type RunningService,
  type ServiceModule,
} from "@ttip/runtime";
import { answeredCode, captureLogger, createTestDatabase, eventually, failure, postChunkedHttp1, postHttp2, testEnv, uniqueName, type TestDatabase } from "@ttip/runtime/testing";
import { PARTNER_HEADERS, startGateway, type GatewayOptions, type SignedCall } from "../src/index.js";

const { logger } = captureLogger("silent");

/** A qr code id the backend holds until the test lets it go (slowGate), for deadlines. */
const SLOW = "00000000-0000-4000-8000-000000000001";
/** A qr code id answered with a large message, which the service compresses for clients that accept gzip. */
const LARGE = "00000000-0000-4000-8000-000000000002";

/** Opened by the test: SLOW calls wait for it, so they are slower than any deadline however loaded the machine. */
const gate = () => {
  let open = () => undefined as void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
};
let slowGate = gate();

/** What the backend was sent, per call: the body bytes as they arrived and the caller the gateway vouched for. */
const seen: Array<{ rpc: string; body: Uint8Array | undefined; subject: string | null; encoding: string | null }> = [];

const recordingQr: ServiceModule = {
  name: "qr",
  services: [QrService],
  routes: (router) =>
    void router.service(QrService, {
      async getQrCode(req, ctx) {
        seen.push({ rpc: "GetQrCode", body: ctx.values.get(rawRequestBodyKey), subject: ctx.requestHeader.get(PRINCIPAL_HEADERS.subject), encoding: ctx.requestHeader.get("content-encoding") });
        if (req.qrCodeId === SLOW) await slowGate.opened;
        ctx.responseHeader.set("x-backend", "qr");
        return { qrCode: { qrCodeId: req.qrCodeId, shortCode: "K7M4QX", ownerId: req.qrCodeId === LARGE ? "w".repeat(20_000) : "" } };
      },
      createQrCode(_req, ctx) {
        seen.push({ rpc: "CreateQrCode", body: ctx.values.get(rawRequestBodyKey), subject: ctx.requestHeader.get(PRINCIPAL_HEADERS.subject), encoding: null });
        return {};
      },
    }),
};

/** qr_code_id = "x", in front of the message's own qr_code_id (the last one wins): an encoding only the client would make. */
const NON_CANONICAL = Buffer.from([0x0a, 0x01, 0x78]);
/** gzip, of the message with NON_CANONICAL in front: a re-encoding on the way would drop it. */
const gzipNonCanonical: Compression = { name: "gzip", compress: (bytes) => compressionGzip.compress(new Uint8Array(Buffer.concat([NON_CANONICAL, bytes]))), decompress: compressionGzip.decompress };
/** Compressions the services do not take, or bytes that do not inflate: refused at the gateway as the service refuses them. */
const misnamed = (name: string, compress: (bytes: Uint8Array) => Buffer): Compression => ({ name, compress: async (bytes) => new Uint8Array(compress(bytes)), decompress: compressionGzip.decompress });
const refusedCompressions: Array<[Compression, Code, RegExp]> = [
  [misnamed("gzip", () => Buffer.from("these bytes are not gzip")), Code.InvalidArgument, /does not decompress as gzip/],
  [misnamed("deflate", (bytes) => deflateSync(bytes)), Code.Unimplemented, /unknown compression "deflate": supported encodings are gzip,br/],
  [misnamed("GZIP", (bytes) => gzipSync(bytes)), Code.Unimplemented, /unknown compression "GZIP"/],
];

describe("binary calls forwarded as bytes", () => {
  let db: TestDatabase;
  let cache: RedisCache;
  let backend: RunningService;
  let gateway: RunningServer;
  let limited: RunningServer;
  let sign: (subject: string, roles: string[]) => Promise<string>;
  const verified: SignedCall[] = [];

  before(async () => {
    db = await createTestDatabase();
    cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
    backend = await startService(recordingQr, { logger, pool: db.pool, bus: new InProcessBus(logger), cache, metrics: new Metrics(), peers: createPeers(() => undefined) });
    const keys = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const publicJwk = { ...(await exportJWK(keys.publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
    sign = (subject, roles) =>
      new SignJWT({ roles }).setProtectedHeader({ alg: "EdDSA", kid: "k1" }).setIssuer("ttip-auth").setAudience("ttip").setSubject(subject).setExpirationTime("5m").sign(keys.privateKey);
    const options: GatewayOptions = {
      logger,
      metrics: new Metrics(),
      cache,
      backends: [{ service: QrService, url: backend.server.url }],
      jwt: { jwks: { keys: [publicJwk] }, issuer: "ttip-auth", audience: "ttip" },
      rateLimit: { points: 10_000, durationSeconds: 60 },
      corsOrigins: [],
      readMaxBytes: 512,
      // Any well-formed signature of a key passes, with the scope qr:read: what is tested here is that the check runs and the call is counted.
      partners: {
        verify: async (call) => {
          verified.push(call);
          return { partnerName: "Savanna POS", scopes: ["qr:read"] };
        },
      },
    };
    gateway = await startGateway(options);
    limited = await startGateway({ ...options, rateLimit: { points: 3, durationSeconds: 60 } });
  });

  after(async () => {
    await gateway.close();
    await limited.close();
    await backend.close();
    await cache.close();
    await db.drop();
  });

  // Every request compressed, however small.
  const gzip = { sendCompression: compressionGzip, compressMinBytes: 0 };
  type Compressing = { sendCompression?: Compression; compressMinBytes?: number };
  const transports: Record<string, (baseUrl: string, interceptors?: Interceptor[], compressing?: Compressing) => Transport> = {
    "Connect binary": (baseUrl, interceptors, compressing = gzip) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors, ...compressing }),
    gRPC: (baseUrl, interceptors, compressing = gzip) => createGrpcTransport({ baseUrl, interceptors, ...compressing }),
    "gRPC-web": (baseUrl, interceptors, compressing = gzip) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true, interceptors, ...compressing }),
    // Over HTTP/2 the gateway answers on the stream API: the same checks, the trailer frame in the body.
    "gRPC-web over HTTP/2": (baseUrl, interceptors, compressing = gzip) => createGrpcWebTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors, ...compressing }),
  };

  for (const [protocol, transport] of Object.entries(transports)) {
    const qr = (baseUrl = gateway.url, interceptors?: Interceptor[], compressing?: Compressing) => createClient(QrService, transport(baseUrl, interceptors, compressing));

    test(`${protocol}: the service gets the client's message bytes unchanged (inflated at the gateway), the client the service's answer and headers`, async () => {
      const before = seen.length;
      const qrCodeId = randomUUID();
      let backendHeader: string | null = null;
      let requestId: string | null = null;
      const client = qr(gateway.url, undefined, { sendCompression: gzipNonCanonical, compressMinBytes: 0 });
      const res = await client.getQrCode({ qrCodeId }, { headers: { "x-request-id": "raw-req-1234" }, onHeader: (h) => ((backendHeader = h.get("x-backend")), (requestId = h.get("x-request-id"))) });
      assert.equal(res.qrCode?.qrCodeId, qrCodeId);
      assert.equal(res.qrCode?.shortCode, "K7M4QX");
      assert.equal(backendHeader, "qr");
      assert.equal(requestId, "raw-req-1234");
      const [call] = seen.slice(before);
      assert.equal(call.encoding, null, "uncompressed on the gateway's leg");
      assert.deepEqual(Buffer.from(call.body!), Buffer.concat([NON_CANONICAL, toBinary(GetQrCodeRequestSchema, { $typeName: "ttip.qr.v1.GetQrCodeRequest", qrCodeId })]), "the client's bytes, never decoded and encoded again");
      assert.equal(call.subject, null, "anonymous");
    });

    test(`${protocol}: a small compressed body that inflates past the read limit is RESOURCE_EXHAUSTED at the gateway, as at the service`, async () => {
      const before = seen.length;
      // 100,000 zeros gzip to about 130 bytes, under the gateway's 512.
      const refused = await failure(qr().getQrCode({ qrCodeId: "0".repeat(100_000) }));
      assert.equal(refused.code, Code.ResourceExhausted);
      assert.equal(refused.message, "the request message is larger than the 512 bytes this server reads once decompressed");
      assert.equal(seen.length, before);
      // The service refuses the same way past its own 1 MiB (it said INVALID_ARGUMENT before they shared the code).
      const direct = await failure(qr(backend.server.url).getQrCode({ qrCodeId: "0".repeat(1_100_000) }));
      assert.equal(direct.code, Code.ResourceExhausted);
      assert.equal(direct.message, "the request message is larger than the 1048576 bytes this server reads once decompressed");
      assert.equal(seen.length, before);
    });

    test(`${protocol}: bytes that do not inflate are INVALID_ARGUMENT, an encoding the services do not take UNIMPLEMENTED; the gateway and the service answer alike`, async () => {
      const before = seen.length;
      for (const [compression, code, message] of refusedCompressions) {
        for (const baseUrl of [gateway.url, backend.server.url]) {
          const refused = await failure(qr(baseUrl, undefined, { sendCompression: compression, compressMinBytes: 0 }).getQrCode({ qrCodeId: randomUUID() }));
          assert.equal(refused.code, code, `${compression.name} at ${baseUrl === gateway.url ? "the gateway" : "the service"}`);
          assert.match(refused.message, message);
        }
      }
      assert.equal(seen.length, before);
    });

    test(`${protocol}: no token for a signed-in RPC is UNAUTHENTICATED, a bad one too; neither reaches the service`, async () => {
      const before = seen.length;
      assert.equal((await failure(qr().createQrCode({}))).code, Code.Unauthenticated);
      assert.equal((await failure(qr().createQrCode({}, { headers: { authorization: "Bearer not.a.token" } }))).code, Code.Unauthenticated);
      assert.equal(seen.length, before);
      const subject = randomUUID();
      await qr().createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: subject, idempotencyKey: `idem-${randomUUID()}` }, { headers: { authorization: `Bearer ${await sign(subject, ["worker"])}` } });
      assert.deepEqual(seen.slice(before).map((s) => [s.rpc, s.subject]), [["CreateQrCode", subject]], "a verified token passes, as its subject");
    });

    test(`${protocol}: the policy refuses a token without the RPC's role (PERMISSION_DENIED), before the service`, async () => {
      const before = seen.length;
      const refused = await failure(qr().createQrCode({}, { headers: { authorization: `Bearer ${await sign(randomUUID(), ["customer"])}` } }));
      assert.equal(refused.code, Code.PermissionDenied);
      assert.match(refused.message, /needs the role worker or venue_manager or admin/);
      assert.equal(seen.length, before);
    });

    test(`${protocol}: a body over the gateway's read limit, compressed or not, is RESOURCE_EXHAUSTED, unread by the service`, async () => {
      const before = seen.length;
      // Random hex does not compress below the limit.
      const qrCodeId = Buffer.from(Array.from({ length: 1_000 }, () => Math.floor(Math.random() * 256))).toString("hex");
      for (const compressing of [gzip, {}]) {
        const refused = await failure(qr(gateway.url, undefined, compressing).getQrCode({ qrCodeId }));
        assert.equal(refused.code, Code.ResourceExhausted);
        assert.equal(refused.message, "the request body is larger than the 512 bytes this server reads");
      }
      assert.equal(seen.length, before);
    });

    test(`${protocol}: the read limit is the message's, to the byte (a gRPC envelope's 5-byte header is not counted): 512 bytes reach the service, 513 stop at the gateway`, async () => {
      // A tag byte and a 2-byte length in front of the string.
      const edge = "x".repeat(509);
      assert.equal(toBinary(GetQrCodeRequestSchema, { $typeName: "ttip.qr.v1.GetQrCodeRequest", qrCodeId: edge }).byteLength, 512);
      // Read, and passed on: the service's own rule answers (not a UUID).
      const read = await failure(qr(gateway.url, undefined, {}).getQrCode({ qrCodeId: edge }));
      assert.equal(read.code, Code.InvalidArgument, read.message);
      assert.match(read.message, /qr_code_id/);
      const over = await failure(qr(gateway.url, undefined, {}).getQrCode({ qrCodeId: `${edge}x` }));
      assert.equal(over.code, Code.ResourceExhausted);
      assert.equal(over.message, "the request body is larger than the 512 bytes this server reads");
    });

    test(`${protocol}: over the rate limit, RESOURCE_EXHAUSTED with retry-after`, async () => {
      const token = await sign(randomUUID(), ["worker"]);
      const headers = { authorization: `Bearer ${token}` };
      const client = qr(limited.url);
      for (let i = 0; i < 3; i++) await client.getQrCode({ qrCodeId: randomUUID() }, { headers });
      const before = seen.length;
      const refused = await client.getQrCode({ qrCodeId: randomUUID() }, { headers }).then(() => assert.fail("expected a refusal"), (err: unknown) => ConnectError.from(err));
      assert.equal(refused.code, Code.ResourceExhausted);
      const retryAfter = Number(refused.metadata.get("retry-after"));
      assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
      assert.equal(seen.length, before);
    });

    test(`${protocol}: a partner's signed call is verified over the body as sent, reaches the service as the key, and is counted`, async () => {
      const keyId = randomUUID();
      const signed: Interceptor = (next) => (req) => {
        req.header.set(PARTNER_HEADERS.keyId, keyId);
        req.header.set(PARTNER_HEADERS.timestamp, String(Math.floor(Date.now() / 1000)));
        req.header.set(PARTNER_HEADERS.signature, "ab".repeat(32));
        return next(req);
      };
      const before = seen.length;
      const verifiedBefore = verified.length;
      await qr(gateway.url, [signed]).getQrCode({ qrCodeId: randomUUID() });
      await qr(gateway.url, [signed]).getQrCode({ qrCodeId: randomUUID() });
      assert.equal((await failure(qr(gateway.url, [signed]).createQrCode({}))).code, Code.PermissionDenied, "qr:write is not among its scopes");
      assert.deepEqual(seen.slice(before).map((s) => s.subject), [keyId, keyId]);
      const checked = verified.slice(verifiedBefore);
      assert.equal(checked.length, 3);
      assert.equal(checked[0].path, "/ttip.qr.v1.QrService/GetQrCode");
      // The service got the message inflated; the client signed its gzip (node's gzip is deterministic).
      const sent = gzipSync(seen[before].body!);
      // Connect binary signs the body; gRPC and gRPC-web their one envelope around it.
      const head = Buffer.from([1, 0, 0, 0, 0]);
      head.writeUInt32BE(sent.byteLength, 1);
      const framed = protocol === "Connect binary" ? sent : Buffer.concat([head, sent]);
      assert.deepEqual(Buffer.from(checked[0].bodySha256), createHash("sha256").update(framed).digest());
      // Counted off the call's path: wait for the last count to land. Yesterday's too: the calls may fall on both sides of midnight in Nairobi.
      const counted = await eventually("the refused call counted", async () => {
        const days = await readPartnerUsage(cache, keyId, 2);
        const sum = (f: (d: (typeof days)[number]) => number) => days.reduce((n, d) => n + f(d), 0);
        return sum((d) => d.clientErrors) === 1 && [sum((d) => d.ok), sum((d) => d.clientErrors), sum((d) => d.serverErrors)];
      });
      assert.deepEqual(counted, [2, 1, 0]);
    });

    test(`${protocol}: the client's deadline holds: DEADLINE_EXCEEDED when the service is slower`, async () => {
      try {
        // Answered at the deadline, not when the service finished: the service is still holding the call.
        const refused = await failure(qr().getQrCode({ qrCodeId: SLOW }, { timeoutMs: 300 }));
        assert.equal(refused.code, Code.DeadlineExceeded);
      } finally {
        slowGate.open();
        slowGate = gate();
      }
    });

    test(`${protocol}: a large answer goes back compressed as the service compressed it, and arrives whole`, async () => {
      let encoding: string | null = null;
      const res = await qr().getQrCode({ qrCodeId: LARGE }, { onHeader: (h) => (encoding = h.get(protocol === "Connect binary" ? "content-encoding" : "grpc-encoding")) });
      assert.equal(res.qrCode?.ownerId, "w".repeat(20_000));
      assert.equal(encoding, "gzip");
    });

    test(`${protocol}: the service's error passes with its code, message and field details`, async () => {
      const refused = await failure(qr().getQrCode({ qrCodeId: "not-a-uuid" }));
      assert.equal(refused.code, Code.InvalidArgument);
      assert.match(refused.message, /qr_code_id/);
    });
  }

  test("Connect JSON keeps the decoding path: the service gets the message encoded by the gateway; past the limit once inflated, RESOURCE_EXHAUSTED", async () => {
    const before = seen.length;
    const json = createClient(QrService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: false, ...gzip }));
    const qrCodeId = randomUUID();
    await json.getQrCode({ qrCodeId });
    const [call] = seen.slice(before);
    assert.equal(call.encoding, null);
    assert.deepEqual(Buffer.from(call.body!), Buffer.from(toBinary(GetQrCodeRequestSchema, { $typeName: "ttip.qr.v1.GetQrCodeRequest", qrCodeId })));
    const refused = await failure(json.getQrCode({ qrCodeId: "0".repeat(100_000) }));
    assert.equal(refused.code, Code.ResourceExhausted);
    assert.equal(seen.length, before + 1);
  });

  test("a body over the read limit sent in chunks (no content-length) is RESOURCE_EXHAUSTED over HTTP/1.1 as over HTTP/2, JSON and binary alike, never a reset; the service never sees it", async () => {
    const before = seen.length;
    const over = "x".repeat(200_000);
    const bodies: Record<string, Uint8Array> = {
      "application/json": Buffer.from(JSON.stringify({ qrCodeId: over })),
      "application/proto": toBinary(GetQrCodeRequestSchema, { $typeName: "ttip.qr.v1.GetQrCodeRequest", qrCodeId: over }),
    };
    const answers: string[] = [];
    for (const [type, body] of Object.entries(bodies)) {
      for (const [version, post] of [["HTTP/1.1", postChunkedHttp1], ["HTTP/2", postHttp2]] as const) {
        answers.push(`${type} over ${version}: ${answeredCode(await post(`${gateway.url}/${QrService.typeName}/GetQrCode`, type, body))}`);
      }
    }
    assert.deepEqual(answers, [
      "application/json over HTTP/1.1: 429 resource_exhausted",
      "application/json over HTTP/2: 429 resource_exhausted",
      "application/proto over HTTP/1.1: 429 resource_exhausted",
      "application/proto over HTTP/2: 429 resource_exhausted",
    ]);
    assert.equal(seen.length, before);
  });

  test("a call the backend refuses unprocessed is sent again under the client's deadline, by both forwarding paths", async () => {
    // A backend ending its connection: it refuses a call (REFUSED_STREAM) HELD_MS after it arrives, except
    // "second-" calls, answered on their second send, and a call's third send, held unanswered: the
    // gateway sends a call three times at most, so only the client's deadline can end it.
    const HELD_MS = 100;
    const DEADLINE_MS = 3_000;
    const sends: Array<{ timeoutMs: number; id: string }> = [];
    const held = new Set<http2.ServerHttp2Stream>();
    const backend = http2.createServer();
    backend.on("stream", (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", () => undefined);
      stream.on("end", () => {
        const arrived = Date.now();
        const id = fromBinary(GetQrCodeRequestSchema, Buffer.concat(chunks)).qrCodeId;
        sends.push({ timeoutMs: Number(headers["connect-timeout-ms"]), id });
        const send = sends.filter((s) => s.id === id).length;
        if (id.startsWith("second-") && send === 2) {
          stream.respond({ ":status": 200, "content-type": "application/proto" });
          return void stream.end(toBinary(GetQrCodeResponseSchema, create(GetQrCodeResponseSchema, { qrCode: { qrCodeId: id } })));
        }
        if (send === 3) return void held.add(stream);
        if (id.startsWith("second-")) return void stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        // Refused once HELD_MS have passed by the clock the gateway reads (a timer may fire a little early).
        const refuse = () => {
          const early = arrived + HELD_MS - Date.now();
          if (early > 0) return void setTimeout(refuse, early);
          stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        };
        refuse();
      });
    });
    await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
    const ending = await startGateway({ logger, metrics: new Metrics(), cache, backends: [{ service: QrService, url }], rateLimit: { points: 100, durationSeconds: 60 }, corsOrigins: [] });
    try {
      for (const [path, useBinaryFormat] of [["as bytes", true], ["decoding (JSON)", false]] as const) {
        const client = createClient(QrService, createConnectTransport({ baseUrl: ending.url, httpVersion: "1.1", useBinaryFormat }));
        const id = `second-${randomUUID()}`;
        assert.equal((await client.getQrCode({ qrCodeId: id })).qrCode?.qrCodeId, id, `${path}: answered on the second send`);
        sends.length = 0;
        const started = Date.now();
        const refused = await failure(client.getQrCode({ qrCodeId: randomUUID() }, { timeoutMs: DEADLINE_MS }));
        assert.equal(refused.code, Code.DeadlineExceeded, `${path}: ${refused.message}`);
        // Generous: only the deadline ends the call (its third send is never answered).
        assert.ok(Date.now() - started < DEADLINE_MS + 15_000, `${path}: ended ${Date.now() - started} ms after a deadline of ${DEADLINE_MS} ms`);
        const timeouts = sends.map((s) => s.timeoutMs);
        assert.equal(sends.length, 3, `${path}: sent three times, timeout headers ${timeouts}`);
        // Each send carries what is left of the one deadline: at least HELD_MS less than the send before
        // (1 ms for rounding to whole ms), where a deadline restarted per send would carry the same again.
        assert.ok(timeouts[0] <= DEADLINE_MS, `${path}: timeout headers ${timeouts}`);
        for (const i of [1, 2]) assert.ok(timeouts[i] <= timeouts[i - 1] - HELD_MS + 1, `${path}: timeout headers ${timeouts}`);
        held.forEach((s) => s.close(http2.constants.NGHTTP2_CANCEL));
        held.clear();
      }
    } finally {
      held.forEach((s) => s.close(http2.constants.NGHTTP2_CANCEL));
      await ending.close();
      await new Promise((resolve) => backend.close(resolve));
    }
  });

  test("an unreachable service is UNAVAILABLE", async () => {
    const down = await startGateway({ logger, metrics: new Metrics(), cache, backends: [{ service: QrService, url: "http://127.0.0.1:9" }], rateLimit: { points: 100, durationSeconds: 60 }, corsOrigins: [] });
    try {
      for (const transport of Object.values(transports)) {
        const refused = await failure(createClient(QrService, transport(down.url)).getQrCode({ qrCodeId: randomUUID() }));
        assert.equal(refused.code, Code.Unavailable);
        // Before, the socket's words reached the caller: "connect ECONNREFUSED 127.0.0.1:9", a pod's address in a cluster.
        assert.doesNotMatch(refused.message, /ECONNREFUSED|127\.0\.0\.1|:9\b/);
      }
    } finally {
      await down.close();
    }
  });

  test("past its bound on calls in flight the gateway refuses UNAVAILABLE (OVERLOADED, retry-after) before any check, for calls forwarded as bytes and decoded ones alike; the held calls complete", async () => {
    const bounded = await startGateway({ logger, metrics: new Metrics(), cache, backends: [{ service: QrService, url: backend.server.url }], rateLimit: { points: 100, durationSeconds: 60 }, corsOrigins: [], maxCallsInFlight: 2 });
    const binary = createClient(QrService, transports.gRPC(bounded.url));
    const json = createClient(QrService, createConnectTransport({ baseUrl: bounded.url, httpVersion: "1.1" }));
    try {
      seen.length = 0;
      // One held call down each forwarding path: the bound is one count for both.
      const held = [binary.getQrCode({ qrCodeId: SLOW }), json.getQrCode({ qrCodeId: SLOW })];
      await eventually("both held calls at the service", () => seen.length === 2);
      for (const [name, call] of [
        ["bytes", () => binary.getQrCode({ qrCodeId: randomUUID() })],
        ["decoded", () => json.getQrCode({ qrCodeId: randomUUID() })],
        // Refused before the token check: a signed-in RPC without a token is not UNAUTHENTICATED here.
        ["no token", () => binary.createQrCode({})],
      ] as const) {
        const refused = await call().then(() => assert.fail(`${name}: answered`), (e: unknown) => ConnectError.from(e));
        assert.equal(refused.code, Code.Unavailable, name);
        assert.equal(refused.findDetails(DomainErrorInfoSchema)[0]?.reason, "OVERLOADED", name);
        assert.equal(refused.metadata.get(name === "decoded" ? "retry-after" : "grpc-retry-pushback-ms"), name === "decoded" ? "1" : "1000", name);
      }
      assert.equal(seen.length, 2, "no refused call reached the service");
      slowGate.open();
      assert.equal((await Promise.all(held)).length, 2);
      assert.ok(await binary.getQrCode({ qrCodeId: randomUUID() }), "room again once they ended");
    } finally {
      slowGate.open();
      slowGate = gate();
      await bounded.close();
    }
  });

  test("over HTTP/2, a Connect call from a page (an Origin header) gets its CORS headers; one without is answered on the stream API; both forwarded as bytes", async () => {
    const origin = "https://tip.example";
    const withCors = await startGateway({ logger, metrics: new Metrics(), cache, backends: [{ service: QrService, url: backend.server.url }], rateLimit: { points: 100, durationSeconds: 60 }, corsOrigins: [origin] });
    const session = http2.connect(withCors.url);
    try {
      const answers: Record<string, string> = {};
      for (const from of [origin, undefined]) {
        const id = randomUUID();
        const body = Buffer.concat([NON_CANONICAL, toBinary(GetQrCodeRequestSchema, create(GetQrCodeRequestSchema, { qrCodeId: id }))]);
        seen.length = 0;
        const headers: http2.OutgoingHttpHeaders = { ":method": "POST", ":path": `/${QrService.typeName}/GetQrCode`, "content-type": "application/proto", "connect-protocol-version": "1" };
        if (from) headers.origin = from;
        const answer = await new Promise<{ head: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
          const stream = session.request(headers);
          const chunks: Buffer[] = [];
          let head: http2.IncomingHttpHeaders = {};
          stream.on("response", (h) => (head = h));
          stream.on("data", (c: Buffer) => chunks.push(c));
          stream.on("end", () => resolve({ head, body: Buffer.concat(chunks) }));
          stream.on("error", reject);
          stream.end(body);
        });
        assert.equal(fromBinary(GetQrCodeResponseSchema, answer.body).qrCode?.qrCodeId, id);
        assert.deepEqual(Buffer.from(seen[0].body!), body, "the service got the bytes as sent");
        answers[from ? "from a page" : "no origin"] = `${answer.head[":status"]} allow-origin ${answer.head["access-control-allow-origin"]}`;
      }
      assert.deepEqual(answers, { "from a page": `200 allow-origin ${origin}`, "no origin": "200 allow-origin undefined" });
    } finally {
      session.close();
      await withCors.close();
    }
  });
});
