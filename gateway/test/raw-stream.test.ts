// Connect binary server streams forwarded as bytes (raw-stream.ts): each
// message reaches the client as the service encoded it, the request reaches
// the service as the client sent it, and the gateway still holds the stream
// to its checks: the token and the policy, the read limit, the client's
// deadline, the client going away, the service's errors and trailers
// relayed as application metadata only. The service here is a plain HTTP/2
// server answering with bytes the test chose, so a re-encoding on the way
// shows; one test calls a real service in frames, and gRPC keeps the
// decoding path.
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService, WatchTipRequestSchema, WatchTipResponseSchema } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { envelopeFrames, envelopeOf, MemoryCache, Metrics, startServer, type RunningServer } from "@ttip/runtime";
import { captureLogger, eventually, failure } from "@ttip/runtime/testing";
import { PRINCIPAL_HEADERS, startGateway, type GatewayOptions } from "../src/index.js";

const { logger } = captureLogger("silent");
const WATCH_TIP = `/${PaymentService.typeName}/WatchTip`;
const TIP_ID = "6f0c1a8e-1a2b-4c3d-8e9f-0a1b2c3d4e5f";

/** WatchTipResponse with its tip (field 1) twice: a decoder merges the two, so a re-encoding on the way sends other bytes. */
const tipTwice = (status: TipStatus) =>
  Buffer.concat([toBinary(WatchTipResponseSchema, create(WatchTipResponseSchema, { tip: { tipId: TIP_ID } })), toBinary(WatchTipResponseSchema, create(WatchTipResponseSchema, { tip: { status } }))]);
const END_OK = Buffer.from(JSON.stringify({ metadata: { "x-backend-trailer": ["t1"], "not-metadata": ["n"] } }));
const END_ERROR = Buffer.from(JSON.stringify({ error: { code: "failed_precondition", message: "the tip is gone" }, metadata: { "x-reason": ["gone"] } }));

/** What the service was sent per stream, and whether each stream was cancelled (closed before its end was written). */
interface Seen {
  body: Buffer;
  headers: http2.IncomingHttpHeaders;
  cancelled: boolean;
}

/** The payment service's stand-in: by the request's tip id, a good stream (two messages, trailers), an error after one message, or one message then nothing. */
function startBackend(seen: Seen[]): Promise<{ url: string; close(): Promise<void> }> {
  const backend = http2.createServer();
  backend.on("stream", (stream, headers) => {
    const chunks: Buffer[] = [];
    const record: Seen = { body: Buffer.alloc(0), headers, cancelled: false };
    seen.push(record);
    stream.on("error", () => undefined);
    stream.on("close", () => (record.cancelled = stream.rstCode === http2.constants.NGHTTP2_CANCEL));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      record.body = Buffer.concat(chunks);
      const kind = record.body.includes("error") ? "error" : record.body.includes("stall") ? "stall" : "good";
      stream.respond({ ":status": 200, "content-type": "application/connect+proto", "x-backend": "payment", "set-cookie": "session=secret" });
      stream.write(envelopeOf(tipTwice(TipStatus.PENDING)));
      if (kind === "stall") return;
      if (kind === "error") return void stream.end(envelopeOf(END_ERROR, 0b10));
      stream.write(envelopeOf(tipTwice(TipStatus.SUCCEEDED)));
      stream.end(envelopeOf(END_OK, 0b10));
    });
  });
  return new Promise((resolve) =>
    backend.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${(backend.address() as AddressInfo).port}`, close: () => new Promise((r) => backend.close(() => r())) })),
  );
}

/** A Connect stream's answer as it came: status, headers, the messages' bytes, the end of the stream's JSON. */
function watch(url: string, body: Uint8Array, headers: Record<string, string> = {}): Promise<{ status: number; headers: http2.IncomingHttpHeaders; messages: Buffer[]; end: unknown }> {
  const session = http2.connect(url);
  return new Promise<{ status: number; headers: http2.IncomingHttpHeaders; messages: Buffer[]; end: unknown }>((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": WATCH_TIP, "content-type": "application/connect+proto", "connect-protocol-version": "1", ...headers });
    let head: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (head = h));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", reject);
    stream.on("end", () => {
      const messages: Buffer[] = [];
      let end: unknown;
      for (const { flags, data } of envelopeFrames(Buffer.concat(chunks), () => new Error("incomplete envelope"))) {
        if (flags & 0b10) end = JSON.parse(Buffer.from(data).toString());
        else messages.push(Buffer.from(data));
      }
      resolve({ status: Number(head[":status"]), headers: head, messages, end });
    });
    stream.end(body);
  }).finally(() => session.close());
}

describe("Connect binary server streams forwarded as bytes", () => {
  const seen: Seen[] = [];
  let backend: Awaited<ReturnType<typeof startBackend>>;
  let gateway: RunningServer;
  let options: GatewayOptions;
  let sign: (subject: string, roles: string[]) => Promise<string>;

  before(async () => {
    backend = await startBackend(seen);
    const keys = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const publicJwk = { ...(await exportJWK(keys.publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
    sign = (subject, roles) =>
      new SignJWT({ roles }).setProtectedHeader({ alg: "EdDSA", kid: "k1" }).setIssuer("ttip-auth").setAudience("ttip").setSubject(subject).setExpirationTime("5m").sign(keys.privateKey);
    options = {
      logger,
      metrics: new Metrics(),
      cache: new MemoryCache(),
      backends: [{ service: PaymentService, url: backend.url }],
      jwt: { jwks: { keys: [publicJwk] }, issuer: "ttip-auth", audience: "ttip" },
      rateLimit: { points: 10_000, durationSeconds: 60 },
      corsOrigins: [],
      readMaxBytes: 512,
    };
    gateway = await startGateway(options);
  });

  after(async () => {
    await gateway.close();
    await backend.close();
  });

  test("the client gets each message as the service encoded it (a decoding gateway merges the tip sent twice), the service the request as sent; trailers and headers relayed as metadata only", async () => {
    // A request with its tip id twice (the last one wins): only the client would encode it so.
    const body = envelopeOf(Buffer.concat([toBinary(WatchTipRequestSchema, create(WatchTipRequestSchema, { tipId: "x" })), toBinary(WatchTipRequestSchema, create(WatchTipRequestSchema, { tipId: TIP_ID }))]));
    const before = seen.length;
    const answer = await watch(gateway.url, body);
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.messages, [tipTwice(TipStatus.PENDING), tipTwice(TipStatus.SUCCEEDED)]);
    assert.deepEqual(answer.end, { metadata: { "x-backend-trailer": ["t1"] } });
    assert.equal(answer.headers["x-backend"], "payment");
    assert.equal(answer.headers["set-cookie"], undefined);
    assert.equal(seen.length, before + 1);
    assert.deepEqual(seen.at(-1)!.body, Buffer.from(body));
    // The service believes the gateway's signed headers only.
    assert.ok(seen.at(-1)!.headers["x-ttip-internal"]);
  });

  test("a compressed request is inflated at the gateway; past the read limit once inflated it is RESOURCE_EXHAUSTED there, unseen by the service", async () => {
    const message = toBinary(WatchTipRequestSchema, create(WatchTipRequestSchema, { tipId: TIP_ID }));
    const before = seen.length;
    const answer = await watch(gateway.url, envelopeOf(gzipSync(message), 0b01), { "connect-content-encoding": "gzip" });
    assert.equal(answer.messages.length, 2);
    assert.deepEqual(seen.at(-1)!.body, Buffer.from(envelopeOf(message)));
    const large = toBinary(WatchTipRequestSchema, create(WatchTipRequestSchema, { tipId: "z".repeat(600) }));
    const refused = await watch(gateway.url, envelopeOf(gzipSync(large), 0b01), { "connect-content-encoding": "gzip" });
    assert.equal((refused.end as { error: { code: string } }).error.code, "resource_exhausted");
    assert.equal(seen.length, before + 1);
  });

  test("the service's error after a message passes with its code, message and metadata", async () => {
    const client = createClient(PaymentService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "2", useBinaryFormat: true }));
    const got: unknown[] = [];
    const err = await (async () => {
      for await (const m of client.watchTip({ tipId: `${TIP_ID.slice(0, -5)}error` })) got.push(m.tip?.status);
    })().then(
      () => assert.fail("the stream ended without its error"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.deepEqual(got, [TipStatus.PENDING]);
    assert.equal(err.code, Code.FailedPrecondition);
    assert.equal(err.rawMessage, "the tip is gone");
    assert.equal(err.metadata.get("x-reason"), "gone");
  });

  test("the client's deadline holds on a service that stops sending (DEADLINE_EXCEEDED), and the service's stream is cancelled; so is it when the client goes away", async () => {
    const client = createClient(PaymentService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "2", useBinaryFormat: true }));
    const got: unknown[] = [];
    const err = await failure(
      (async () => {
        for await (const m of client.watchTip({ tipId: "stall" }, { timeoutMs: 1_000 })) got.push(m.tip?.status);
      })(),
    );
    assert.equal(err.code, Code.DeadlineExceeded, err.message);
    // The service's one message, unless a loaded machine let the deadline pass before it came.
    assert.ok(got.length <= 1 && got.every((s) => s === TipStatus.PENDING), `read ${got}`);
    const stalled = seen.at(-1)!;
    await eventually("the service's stream cancelled at the deadline", () => stalled.cancelled);
    const away = new AbortController();
    const reading = (async () => {
      for await (const _ of client.watchTip({ tipId: "stall" }, { signal: away.signal })) away.abort();
    })();
    assert.equal((await failure(reading)).code, Code.Canceled);
    const left = seen.at(-1)!;
    assert.notEqual(left, stalled);
    await eventually("the service's stream cancelled when the client went away", () => left.cancelled);
  });

  test("the token and the policy still run: a signed-in stream without a token is UNAUTHENTICATED, with one it reaches the service as its worker", async () => {
    const client = createClient(PaymentService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "2", useBinaryFormat: true }));
    const before = seen.length;
    const err = await failure((async () => { for await (const _ of client.watchPayout({ payoutId: TIP_ID })); })());
    assert.equal(err.code, Code.Unauthenticated);
    assert.equal(seen.length, before);
    const token = await sign("worker-1", ["worker"]);
    // The stand-in answers any path with WatchTip's bytes: what matters is that it was reached, as the worker.
    await (async () => {
      for await (const _ of client.watchPayout({ payoutId: TIP_ID }, { headers: { authorization: `Bearer ${token}` } }));
    })().catch(() => undefined);
    assert.equal(seen.length, before + 1);
    assert.equal(seen.at(-1)!.headers[PRINCIPAL_HEADERS.subject], "worker-1");
  });

  test("gRPC and Connect JSON streams keep the decoding path and reach the service too", async () => {
    for (const transport of [createGrpcTransport({ baseUrl: gateway.url }), createConnectTransport({ baseUrl: gateway.url, httpVersion: "2", useBinaryFormat: false })]) {
      const client = createClient(PaymentService, transport);
      const got: unknown[] = [];
      for await (const m of client.watchTip({ tipId: TIP_ID })) got.push(m.tip?.status);
      assert.deepEqual(got, [TipStatus.PENDING, TipStatus.SUCCEEDED]);
    }
  });

  test("a real service in frames: its messages and its error come through", async () => {
    const service = await startServer({
      name: "payment",
      logger,
      metrics: new Metrics(),
      services: [PaymentService],
      routes: (router) =>
        router.service(PaymentService, {
          watchTip: async function* (req) {
            yield { tip: { tipId: req.tipId, status: TipStatus.PENDING } };
            if (req.tipId === TIP_ID) yield { tip: { tipId: req.tipId, status: TipStatus.SUCCEEDED } };
            else throw new ConnectError("no such tip", Code.NotFound);
          },
        }),
      host: "127.0.0.1",
      port: 0,
    });
    const framed = await startGateway({ ...options, backends: [{ service: PaymentService, url: service.url }] });
    try {
      const client = createClient(PaymentService, createConnectTransport({ baseUrl: framed.url, httpVersion: "2", useBinaryFormat: true }));
      const got: unknown[] = [];
      for await (const m of client.watchTip({ tipId: TIP_ID })) got.push(m.tip?.status);
      assert.deepEqual(got, [TipStatus.PENDING, TipStatus.SUCCEEDED]);
      const err = await failure((async () => { for await (const _ of client.watchTip({ tipId: "00000000-0000-4000-8000-000000000009" })); })());
      assert.equal(err.code, Code.NotFound);
      assert.equal(err.message, "no such tip");
    } finally {
      await framed.close();
      await service.close();
    }
  });
});
