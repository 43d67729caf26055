// Connect unary calls over HTTP/2 are answered on node's stream API, without
// the compatibility layer's request and response objects (server.ts,
// rpc-exchange.ts). What the server promises holds there as on the other
// road: the answer, the deadline, a client that resets its stream, the read
// limit, content types, drain; and every other request over HTTP/2 (plain
// HTTP, gRPC) still goes the compatibility layer's way.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import { after, before, describe, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GetQrCodeRequestSchema, GetQrCodeResponseSchema, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { Metrics, startServer, type RunningServer } from "../src/index.js";
import { captureLogger } from "../src/testing/index.js";

/** GetQrCode for this id waits until its signal aborts (at most 3 s), records why, and fails with the reason (as a handler whose query was cancelled does). */
const WAITS = randomUUID();
/** GetQrCode for this id answers after SLOW_MS. */
const SLOW = randomUUID();
const SLOW_MS = 400;

type Answer = { status: number; headers: http2.IncomingHttpHeaders; body: Buffer; rstCode?: number };

/** One request on `session`, its whole answer (or the stream's reset code). */
function call(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Uint8Array, send = (s: http2.ClientHttp2Stream) => void s.end(body)): Promise<Answer> {
  return new Promise((resolve) => {
    const stream = session.request({ ":method": "POST", ...headers });
    let status = 0;
    let head: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => ((status = Number(h[":status"])), (head = h)));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("close", () => resolve({ status, headers: head, body: Buffer.concat(chunks), rstCode: stream.rstCode }));
    stream.on("error", () => {});
    send(stream);
  });
}

const getQrCode = (id: string, extra: http2.OutgoingHttpHeaders = {}) => ({
  headers: { ":path": `/${QrService.typeName}/GetQrCode`, "content-type": "application/proto", "connect-protocol-version": "1", ...extra },
  body: toBinary(GetQrCodeRequestSchema, create(GetQrCodeRequestSchema, { qrCodeId: id })),
});

describe("Connect unary calls answered on HTTP/2's stream API", () => {
  const servers: Record<"stream API" | "compatibility layer", RunningServer> = {} as never;
  /** Why each waiting handler's signal aborted. */
  const aborted: Array<Code | undefined> = [];
  const sessions: http2.ClientHttp2Session[] = [];
  /** What happened in the drain test, in order. */
  const events: string[] = [];
  const connect = (server: RunningServer) => {
    const session = http2.connect(server.url);
    sessions.push(session);
    return session;
  };

  const start = (streamApi: boolean) =>
    startServer({
      name: "test",
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      services: [QrService],
      streamApi,
      routes: (router) =>
        router.service(QrService, {
          getQrCode: async (req, ctx) => {
            if (req.qrCodeId === WAITS) {
              await new Promise<void>((resolve) => {
                const cap = setTimeout(resolve, 3_000);
                ctx.signal.addEventListener("abort", () => (clearTimeout(cap), resolve()), { once: true });
              });
              aborted.push(ctx.signal.aborted ? ConnectError.from(ctx.signal.reason).code : undefined);
              throw ctx.signal.aborted ? ConnectError.from(ctx.signal.reason) : new ConnectError("gave up", Code.Aborted);
            }
            if (req.qrCodeId === SLOW) {
              await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
              events.push("handler answered");
            }
            ctx.responseHeader.set("x-test-answer", "seen");
            ctx.responseTrailer.set("x-test-end", "done");
            return { qrCode: { qrCodeId: req.qrCodeId, shortCode: "K7M4QX" } };
          },
        }),
    });

  // Counts the requests node's compatibility layer builds (server.ts builds them with http2.Http2ServerRequest).
  let compatRequests = 0;
  const Original = http2.Http2ServerRequest;
  class Counted extends Original {
    constructor(...args: ConstructorParameters<typeof Original>) {
      super(...args);
      compatRequests++;
    }
  }

  before(async () => {
    Object.assign(http2, { Http2ServerRequest: Counted });
    servers["stream API"] = await start(true);
    servers["compatibility layer"] = await start(false);
  });
  after(async () => {
    Object.assign(http2, { Http2ServerRequest: Original });
    for (const s of sessions) s.destroy();
    await Promise.all(Object.values(servers).map((s) => s.close()));
  });

  test("no compatibility request is built for the call, and the answer is the one the compatibility layer gives (status, headers, trailers, message)", async () => {
    const id = randomUUID();
    const answers: Record<string, Answer> = {};
    const built: Record<string, number> = {};
    const requestId = randomUUID();
    for (const [how, server] of Object.entries(servers)) {
      const { headers, body } = getQrCode(id, { "x-request-id": requestId });
      const session = connect(server);
      const before = compatRequests;
      answers[how] = await call(session, headers, body);
      built[how] = compatRequests - before;
    }
    assert.deepEqual(built, { "stream API": 0, "compatibility layer": 1 });
    const compat = answers["compatibility layer"];
    const fast = answers["stream API"];
    assert.equal(fast.status, 200);
    assert.equal(fromBinary(GetQrCodeResponseSchema, fast.body).qrCode?.qrCodeId, id);
    assert.deepEqual(fast.body, compat.body);
    const { date, ...compatHeaders } = compat.headers;
    const { date: fastDate, ...fastHeaders } = fast.headers;
    assert.ok(date && fastDate, "both answers are dated");
    assert.deepEqual(fastHeaders, compatHeaders);
    assert.equal(fast.headers["x-test-answer"], "seen");
    assert.equal(fast.headers["trailer-x-test-end"], "done");
    assert.equal(fast.headers["content-type"], "application/proto");
  });

  test("a Connect JSON call is answered on the stream API too, as the compatibility layer answers it: the message (unknown fields ignored, charset taken), headers, trailers; JSON that does not parse is INVALID_ARGUMENT with the same words", async () => {
    const id = randomUUID();
    const requestId = randomUUID();
    const json = (body: string, contentType = "application/json") => ({
      headers: { ":path": `/${QrService.typeName}/GetQrCode`, "content-type": contentType, "connect-protocol-version": "1", "x-request-id": requestId },
      body: Buffer.from(body),
    });
    const calls = {
      plain: json(JSON.stringify({ qrCodeId: id })),
      charset: json(JSON.stringify({ qrCodeId: id, fieldOfANewerClient: 1 }), "application/json; charset=utf-8"),
      broken: json(`{"qrCodeId": "${id}"`),
      wrongType: json(JSON.stringify({ qrCodeId: 7 })),
    };
    const answers: Record<string, Record<string, Answer>> = {};
    const built: Record<string, number> = {};
    for (const [how, server] of Object.entries(servers)) {
      const session = connect(server);
      const before = compatRequests;
      answers[how] = {};
      for (const [name, { headers, body }] of Object.entries(calls)) answers[how][name] = await call(session, headers, body);
      built[how] = compatRequests - before;
    }
    assert.deepEqual(built, { "stream API": 0, "compatibility layer": 4 });
    const fast = answers["stream API"];
    const compat = answers["compatibility layer"];
    for (const name of ["plain", "charset"]) {
      assert.equal(fast[name].status, 200, name);
      assert.equal(JSON.parse(fast[name].body.toString()).qrCode.qrCodeId, id, name);
      assert.equal(fast[name].body.toString(), compat[name].body.toString(), name);
      const { date, ...compatHeaders } = compat[name].headers;
      const { date: fastDate, ...fastHeaders } = fast[name].headers;
      assert.ok(date && fastDate, "both answers are dated");
      assert.deepEqual(fastHeaders, compatHeaders, name);
      assert.equal(fast[name].headers["content-type"], "application/json", name);
      assert.equal(fast[name].headers["trailer-x-test-end"], "done", name);
    }
    for (const name of ["broken", "wrongType"]) {
      assert.equal(fast[name].status, 400, name);
      assert.equal(fast[name].status, compat[name].status, name);
      assert.equal(fast[name].headers["content-type"], "application/json", name);
      const { code, message } = JSON.parse(fast[name].body.toString());
      assert.equal(code, "invalid_argument", name);
      assert.deepEqual({ code, message }, JSON.parse(compat[name].body.toString()), name);
    }
  });

  for (const how of ["stream API", "compatibility layer"] as const) {
    test(`${how}: the client's deadline (connect-timeout-ms) aborts the handler's signal and is answered DEADLINE_EXCEEDED`, async () => {
      aborted.length = 0;
      const { headers, body } = getQrCode(WAITS, { "connect-timeout-ms": "100" });
      const answer = await call(connect(servers[how]), headers, body);
      assert.equal(answer.status, 504);
      assert.match(answer.body.toString(), /"code":"deadline_exceeded"/);
      assert.deepEqual(aborted, [Code.DeadlineExceeded]);
    });

    test(`${how}: a client that resets its stream mid-call cancels the handler's signal, and the call no longer counts for drain`, async () => {
      aborted.length = 0;
      const server = await start(how === "stream API");
      const { headers, body } = getQrCode(WAITS);
      const session = connect(server);
      const answer = await call(session, headers, body, (s) => {
        s.end(body);
        setTimeout(() => s.close(http2.constants.NGHTTP2_CANCEL), 100);
      });
      assert.equal(answer.rstCode, http2.constants.NGHTTP2_CANCEL);
      const started = Date.now();
      while (aborted.length === 0 && Date.now() - started < 2_000) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(aborted, [Code.Canceled]);
      // A call still counted would hold the drain for its whole timeout (the session stays open).
      const closing = Date.now();
      await startedClose(server, 5_000);
      assert.ok(Date.now() - closing < 2_000, `drained in ${Date.now() - closing} ms, not at the drain timeout`);
    });

    test(`${how}: a declared body over the read limit is RESOURCE_EXHAUSTED before it is read; a body sent in chunks past it too`, async () => {
      const session = connect(servers[how]);
      const { headers } = getQrCode("x");
      // 2 MiB announced; the first 64 KiB sent, the rest never: the answer must not wait for it.
      const declared = await call(session, { ...headers, "content-length": String(2 * 1024 * 1024) }, undefined, (s) => void s.write(Buffer.alloc(64 * 1024)));
      assert.equal(declared.status, 429);
      assert.match(declared.body.toString(), /"code":"resource_exhausted"/);
      const big = toBinary(GetQrCodeRequestSchema, create(GetQrCodeRequestSchema, { qrCodeId: "x".repeat(1_100_000) }));
      const chunked = await call(session, headers, big);
      assert.equal(chunked.status, 429);
      assert.match(chunked.body.toString(), /larger than the 1048576 bytes/);
    });

    test(`${how}: a binary content type with parameters is 415 and JSON is answered in JSON, as connect-es does`, async () => {
      const session = connect(servers[how]);
      const { headers, body } = getQrCode(randomUUID());
      const withCharset = await call(session, { ...headers, "content-type": "application/proto; charset=utf-8" }, body);
      assert.equal(withCharset.status, 415);
      const id = randomUUID();
      const json = await call(session, { ...headers, "content-type": "application/json" }, Buffer.from(JSON.stringify({ qrCodeId: id })));
      assert.equal(json.status, 200);
      assert.equal(JSON.parse(json.body.toString()).qrCode.qrCodeId, id);
    });

    test(`${how}: on shutdown a call in flight finishes and is answered before the server closes`, async () => {
      const server = await start(how === "stream API");
      const { headers, body } = getQrCode(SLOW);
      const session = connect(server);
      const answered = call(session, headers, body);
      await new Promise((r) => setTimeout(r, 100));
      events.length = 0;
      await server.close();
      events.push("closed");
      const answer = await answered;
      assert.deepEqual(events, ["handler answered", "closed"]);
      assert.equal(answer.status, 200);
      assert.equal(fromBinary(GetQrCodeResponseSchema, answer.body).qrCode?.qrCodeId, SLOW);
    });
  }

  test("stream API: plain HTTP (/healthz, /metrics), gRPC and an Expect: 100-continue POST still go through the compatibility layer and are answered", async () => {
    const server = servers["stream API"];
    const session = connect(server);
    const get = (path: string) => call(session, { ":method": "GET", ":path": path }, undefined, (s) => void s.end());
    const health = await get("/healthz");
    assert.equal(health.status, 200);
    assert.equal(health.body.toString(), "ok\n");
    const metrics = await get("/metrics");
    assert.equal(metrics.status, 200);
    assert.match(metrics.body.toString(), /rpc_server_handled_total|# HELP/);
    const id = randomUUID();
    const grpc = await createClient(QrService, createGrpcTransport({ baseUrl: server.url })).getQrCode({ qrCodeId: id });
    assert.equal(grpc.qrCode?.qrCodeId, id);
    const { headers, body } = getQrCode(id, { expect: "100-continue" });
    const expecting = await call(session, headers, body);
    assert.equal(expecting.status, 200);
    assert.equal(fromBinary(GetQrCodeResponseSchema, expecting.body).qrCode?.qrCodeId, id);
  });
});

/** Closes `server`, failing if it takes longer than `ms`. */
async function startedClose(server: RunningServer, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([server.close(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`close took over ${ms} ms`)), ms)))]);
  clearTimeout(timer);
}
