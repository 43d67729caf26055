// Partner calls through the real gateway, verified by the real auth service
// (PostgreSQL for the keys, Redis for replays and budgets).
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { request as httpRequest } from "node:http";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { createAuth, signPartnerRequest } from "@ttip/auth";
import { Metrics, nairobiDay, PRINCIPAL_HEADERS, readPartnerUsage, recordPartnerCall, type RedisCache, type RunningServer, type ServiceModule } from "@ttip/runtime";
import { captureLogger, eventually, failure, startTestService, withinOneDay, type TestService } from "@ttip/runtime/testing";
import { PARTNER_HEADERS, startGateway } from "../src/index.js";

const { logger } = captureLogger("silent");

/** Who the qr backend saw calling, per call. */
const seen: Array<{ subject: string | null; roles: string | null }> = [];
const recordingQr: ServiceModule = {
  name: "qr",
  services: [QrService],
  routes: (router) =>
    void router.service(QrService, {
      getQrCode(_req, ctx) {
        seen.push({ subject: ctx.requestHeader.get(PRINCIPAL_HEADERS.subject), roles: ctx.requestHeader.get(PRINCIPAL_HEADERS.roles) });
        return {};
      },
    }),
};

interface Key {
  keyId: string;
  secret: string;
}

type Framing = "connect" | "enveloped";

/**
 * Signs each unary call as a partner: the body bytes are the binary message
 * (Connect binary) or its one gRPC envelope (gRPC, gRPC-web).
 */
function signer(key: Key, framing: Framing, tamper: { at?: number; secret?: string; nonce?: string } = {}): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) {
      const bytes = toBinary(req.method.input, create(req.method.input, req.message));
      const body = framing === "connect" ? bytes : Buffer.concat([Buffer.from([0, ...u32(bytes.length)]), bytes]);
      const at = tamper.at ?? Math.floor(Date.now() / 1000);
      const path = new URL(req.url).pathname;
      const digest = createHash("sha256").update(body).digest();
      req.header.set(PARTNER_HEADERS.keyId, key.keyId);
      req.header.set(PARTNER_HEADERS.timestamp, String(at));
      if (tamper.nonce !== undefined) req.header.set(PARTNER_HEADERS.nonce, tamper.nonce);
      req.header.set(PARTNER_HEADERS.signature, signPartnerRequest(tamper.secret ?? key.secret, "POST", path, at, digest, tamper.nonce));
    }
    return next(req);
  };
}

function u32(n: number): number[] {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return [...b];
}

describe("partner calls through the gateway", () => {
  let t: TestService;
  let gateway: RunningServer;
  let reader: Key;
  let writer: Key;
  let limited: Key;
  let spare: Key;

  before(async () => {
    t = await startTestService(createAuth(), { with: [recordingQr] });
    gateway = await startGateway({
      logger,
      metrics: new Metrics(),
      cache: t.ctx.cache as RedisCache,
      backends: [
        { service: QrService, url: t.urls.get("qr")! },
        { service: WalletService, url: t.urls.get("qr")! },
      ],
      rateLimit: { points: 100_000, durationSeconds: 60 },
      corsOrigins: [],
      partners: { authUrl: t.service.server.url, rateLimit: { points: 20, durationSeconds: 60 } },
    });
    const admin = t.client(AuthAdminService, { subject: randomUUID(), roles: ["admin"], stepUp: true });
    const issue = async (name: string, scopes: string[]): Promise<Key> => {
      const r = await admin.issuePartnerApiKey({ partnerName: name, scopes, idempotencyKey: `issue-${randomUUID()}` });
      return { keyId: r.key!.keyId, secret: r.secret };
    };
    reader = await issue("Savanna POS", ["qr:read"]);
    writer = await issue("Kilimani Bookings", ["tips:create"]);
    limited = await issue("Busy Delivery", ["qr:read"]);
    spare = await issue("Quiet Delivery", ["qr:read"]);
  });

  after(async () => {
    await gateway.close();
    await t.close();
  });

  const transports: Record<string, [(interceptors: Interceptor[]) => Transport, Framing]> = {
    "Connect binary": [(interceptors) => createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors }), "connect"],
    "gRPC-web": [(interceptors) => createGrpcWebTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors }), "enveloped"],
    gRPC: [(interceptors) => createGrpcTransport({ baseUrl: gateway.url, interceptors }), "enveloped"],
  };

  for (const [protocol, [transport, framing]] of Object.entries(transports)) {
    test(`${protocol}: a signed call reaches the service as the partner key, with role partner`, async () => {
      const before = seen.length;
      await createClient(QrService, transport([signer(reader, framing)])).getQrCode({ qrCodeId: randomUUID() });
      assert.deepEqual(seen.slice(before), [{ subject: reader.keyId, roles: "partner" }]);
    });
  }

  test("Connect JSON: the signature covers the raw body bytes as sent", async () => {
    const body = JSON.stringify({ qrCodeId: randomUUID() });
    const path = "/ttip.qr.v1.QrService/GetQrCode";
    const post = (sent: string, signedBody = sent) => {
      const at = Math.floor(Date.now() / 1000);
      const digest = createHash("sha256").update(signedBody).digest();
      return fetch(`${gateway.url}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          [PARTNER_HEADERS.keyId]: reader.keyId,
          [PARTNER_HEADERS.timestamp]: String(at),
          [PARTNER_HEADERS.signature]: signPartnerRequest(reader.secret, "POST", path, at, digest),
        },
        body: sent,
      });
    };
    assert.equal((await post(body)).status, 200);
    // The same message with other whitespace is other bytes: not what was signed.
    const res = await post(`${body} `, body);
    assert.equal(res.status, 401);
    assert.match(((await res.json()) as { message: string }).message, /signature does not match/);
  });

  test("the signature covers the path the call is routed by, whatever Host says: a signature for one RPC does not open another", async () => {
    const body = JSON.stringify({ qrCodeId: randomUUID() });
    const signedFor = "/ttip.qr.v1.QrService/ListQrCodes";
    const at = Math.floor(Date.now() / 1000);
    const signature = signPartnerRequest(reader.secret, "POST", signedFor, at, createHash("sha256").update(body).digest());
    const before = seen.length;
    // A Host that, put before the path, makes a URL whose path is the signed one (a backslash reads as /, # ends the path).
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(`${gateway.url}/ttip.qr.v1.QrService/GetQrCode`, {
        method: "POST",
        headers: {
          host: "h\\ttip.qr.v1.QrService\\ListQrCodes#",
          "content-type": "application/json",
          [PARTNER_HEADERS.keyId]: reader.keyId,
          [PARTNER_HEADERS.timestamp]: String(at),
          [PARTNER_HEADERS.signature]: signature,
        },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c)).on("end", () => resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString() }));
      });
      req.on("error", reject);
      req.end(body);
    });
    assert.equal(status, 401, text);
    assert.match(text, /signature does not match/);
    assert.equal(seen.length, before, "GetQrCode never ran");
  });

  test("each wrong part is named: bad signature, stale timestamp, replay, missing header, unknown key", async () => {
    const qr = (i: Interceptor[]) => createClient(QrService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: i }));
    const req = { qrCodeId: randomUUID() };

    const bad = await failure(qr([signer(reader, "connect", { secret: "ttip_sk_not-the-secret" })]).getQrCode(req));
    assert.deepEqual(bad, { code: Code.Unauthenticated, message: "partner signature refused: signature does not match" });

    const stale = await failure(qr([signer(reader, "connect", { at: Math.floor(Date.now() / 1000) - 900 })]).getQrCode(req));
    assert.equal(stale.code, Code.Unauthenticated);
    assert.match(stale.message, /^partner signature refused: stale timestamp: 9\d\d s behind the gateway's clock \(at most 300 s\)$/);
    // A stamp from a fast clock is not "stale": it is named as in the future.
    const ahead = await failure(qr([signer(reader, "connect", { at: Math.floor(Date.now() / 1000) + 900 })]).getQrCode(req));
    assert.equal(ahead.code, Code.Unauthenticated);
    assert.match(ahead.message, /^partner signature refused: timestamp in the future: (899|9\d\d) s ahead of the gateway's clock \(at most 300 s; check the signer's clock\)$/);

    // The same signed bytes sent twice: the second is a replay.
    const at = Math.floor(Date.now() / 1000);
    await assert.doesNotReject(qr([signer(reader, "connect", { at })]).getQrCode(req));
    assert.deepEqual(await failure(qr([signer(reader, "connect", { at })]).getQrCode(req)), {
      code: Code.Unauthenticated,
      message: "partner signature refused: request replayed",
    });
    // The key id is not signed: written in capitals it is the same key, and the same request. Before, accepted again.
    assert.deepEqual(await failure(qr([signer({ ...reader, keyId: reader.keyId.toUpperCase() }, "connect", { at })]).getQrCode(req)), {
      code: Code.Unauthenticated,
      message: "partner signature refused: request replayed",
    });

    const noSignature: Interceptor = (next) => (r) => {
      r.header.set(PARTNER_HEADERS.keyId, reader.keyId);
      r.header.set(PARTNER_HEADERS.timestamp, String(at));
      return next(r);
    };
    assert.deepEqual(await failure(qr([noSignature]).getQrCode(req)), {
      code: Code.Unauthenticated,
      message: `partner signature refused: missing header ${PARTNER_HEADERS.signature}`,
    });

    const unknown = await failure(qr([signer({ keyId: randomUUID(), secret: reader.secret }, "connect")]).getQrCode(req));
    assert.deepEqual(unknown, { code: Code.Unauthenticated, message: "partner signature refused: unknown or revoked key" });
  });

  test("with a nonce, two identical calls in one second both go through; a nonce is spent once and must look like a request id", async () => {
    const qr = (i: Interceptor[]) => createClient(QrService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: i }));
    const req = { qrCodeId: randomUUID() };
    const at = Math.floor(Date.now() / 1000);
    const [first, second] = [randomUUID(), randomUUID()];
    const before = seen.length;
    await assert.doesNotReject(qr([signer(reader, "connect", { at, nonce: first })]).getQrCode(req));
    await assert.doesNotReject(qr([signer(reader, "connect", { at, nonce: second })]).getQrCode(req));
    assert.equal(seen.length - before, 2, "both identical calls reached the service");
    assert.deepEqual(await failure(qr([signer(reader, "connect", { at, nonce: second })]).getQrCode(req)), {
      code: Code.Unauthenticated,
      message: "partner signature refused: request replayed (this nonce was already used)",
    });
    // The nonce is signed: sent with a signature made without it, it does not match.
    const unsigned: Interceptor = (next) => (r) => {
      r.header.set(PARTNER_HEADERS.nonce, randomUUID());
      return next(r);
    };
    assert.deepEqual(await failure(qr([unsigned, signer(reader, "connect")]).getQrCode(req)), {
      code: Code.Unauthenticated,
      message: "partner signature refused: signature does not match",
    });
    assert.deepEqual(await failure(qr([signer(reader, "connect", { nonce: "short" })]).getQrCode(req)), {
      code: Code.Unauthenticated,
      message: `partner signature refused: ${PARTNER_HEADERS.nonce} must be 16 to 64 letters, digits, - or _ (a UUID will do)`,
    });
  });

  test("scopes: a key reaches only the RPCs its scopes open, and never the unlisted ones", async () => {
    const asWriter = createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: [signer(writer, "connect")] });
    assert.deepEqual(await failure(createClient(QrService, asWriter).getQrCode({ qrCodeId: randomUUID() })), {
      code: Code.PermissionDenied,
      message: "missing scope: ttip.qr.v1.QrService/GetQrCode needs the scope qr:read, which this key does not have",
    });
    const asReader = createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: [signer(reader, "connect")] });
    assert.deepEqual(await failure(createClient(WalletService, asReader).getBalance({})), {
      code: Code.PermissionDenied,
      message: "ttip.wallet.v1.WalletService/GetBalance is not open to partner keys",
    });
  });

  test("each key has its own budget: over it, RESOURCE_EXHAUSTED; other keys go on", async () => {
    const qr = (k: Key) => createClient(QrService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: [signer(k, "connect")] }));
    const results = [];
    for (let i = 0; i < 22; i++) results.push(await qr(limited).getQrCode({ qrCodeId: randomUUID() }).then(() => undefined, (err: unknown) => ConnectError.from(err).code));
    assert.deepEqual(results, [...Array(20).fill(undefined), Code.ResourceExhausted, Code.ResourceExhausted]);
    await assert.doesNotReject(qr(spare).getQrCode({ qrCodeId: randomUUID() }));
  });

  test("usage: each verified call is counted for its key and today by how it ended; a call whose signature fails is not", () =>
    // The counts are kept per Nairobi day (runtime's partner-usage): calls made on one day, read on the next, are yesterday's.
    withinOneDay(nairobiDay, async () => {
      const r = await t.client(AuthAdminService, { subject: randomUUID(), roles: ["admin"], stepUp: true }).issuePartnerApiKey({ partnerName: "Usage Counted", scopes: ["qr:read"], idempotencyKey: `issue-${randomUUID()}` });
      const key = { keyId: r.key!.keyId, secret: r.secret };
      const qr = (i: Interceptor[]) => createClient(QrService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: i }));
      await assert.doesNotReject(qr([signer(key, "connect")]).getQrCode({ qrCodeId: randomUUID() }));
      await assert.doesNotReject(qr([signer(key, "connect", { nonce: randomUUID() })]).getQrCode({ qrCodeId: randomUUID() }));
      assert.equal((await failure(qr([signer(key, "connect")]).createQrCode({}))).code, Code.PermissionDenied, "qr:write is missing");
      assert.equal((await failure(qr([signer(key, "connect", { secret: "ttip_sk_not-the-secret" })]).getQrCode({ qrCodeId: randomUUID() }))).code, Code.Unauthenticated);

      // Read-only console users read it too. Counted off the call's path: wait for the last count to land.
      const admin = t.client(AuthAdminService, { subject: randomUUID(), roles: ["support"] });
      const usage = await eventually("the refused call counted", async () => {
        const u = await admin.getPartnerKeyUsage({ keyId: key.keyId, days: 3 });
        return u.days.at(-1)?.clientErrors === 1n && u;
      });
      const now = Date.now();
      assert.deepEqual(usage.days.map((d) => ({ day: d.day, ok: d.ok, clientErrors: d.clientErrors, serverErrors: d.serverErrors })), [
        { day: nairobiDay(now - 2 * 86_400_000), ok: 0n, clientErrors: 0n, serverErrors: 0n },
        { day: nairobiDay(now - 86_400_000), ok: 0n, clientErrors: 0n, serverErrors: 0n },
        { day: nairobiDay(now), ok: 2n, clientErrors: 1n, serverErrors: 0n },
      ]);
      const unknown = randomUUID();
      assert.deepEqual(await failure(admin.getPartnerKeyUsage({ keyId: unknown, days: 1 })), { code: Code.NotFound, message: `key_id: no partner key ${unknown}` });
      assert.equal((await failure(admin.getPartnerKeyUsage({ keyId: key.keyId, days: 36 }))).code, Code.InvalidArgument);
    }));

  test("usage days are Nairobi's: a call at 20:59 UTC counts on that day, one at 21:00 UTC (midnight in Nairobi) on the next", async () => {
    const keyId = randomUUID();
    const at = (iso: string) => Date.parse(iso);
    await recordPartnerCall(t.ctx.cache, keyId, "ok", at("2026-11-30T20:59:59Z"));
    await recordPartnerCall(t.ctx.cache, keyId, "client_error", at("2026-11-30T21:00:00Z"));
    const day = (d: string, ok: number, clientErrors = 0) => ({ day: d, ok, clientErrors, serverErrors: 0 });
    // Read at 21:20 UTC, Nairobi is already in December: "today" is 1 December, not 30 November's UTC remainder.
    assert.deepEqual(await readPartnerUsage(t.ctx.cache, keyId, 2, at("2026-11-30T21:20:00Z")), [day("2026-11-30", 1), day("2026-12-01", 0, 1)]);
    // At 00:20 UTC it is still 1 December in Nairobi: the 21:00 call and this one share the day.
    await recordPartnerCall(t.ctx.cache, keyId, "ok", at("2026-12-01T00:20:00Z"));
    assert.deepEqual(await readPartnerUsage(t.ctx.cache, keyId, 2, at("2026-12-01T00:20:00Z")), [day("2026-11-30", 1), day("2026-12-01", 1, 1)]);
  });

  test("a signature and a bearer token together are refused; an unsigned call stays anonymous", async () => {
    const both: Interceptor = (next) => (r) => {
      r.header.set("authorization", "Bearer x.y.z");
      return next(r);
    };
    const withBoth = await failure(createClient(QrService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: [signer(reader, "connect"), both] })).getQrCode({ qrCodeId: randomUUID() }));
    assert.equal(withBoth.code, Code.Unauthenticated);
    const before = seen.length;
    await createClient(QrService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1" })).getQrCode({ qrCodeId: randomUUID() });
    assert.deepEqual(seen.slice(before), [{ subject: null, roles: null }]);
  });
});
