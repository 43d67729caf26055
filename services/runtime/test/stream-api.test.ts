// Connect unary calls over HTTP/2 are answered on node's stream API, without
// the compatibility layer's request and response objects (server.ts,
// rpc-exchange.ts). What the server promises holds there as on the other
// road: the answer, the deadline, a client that resets its stream, the read
// limit, content types, drain; and every other request over HTTP/2 (plain
// HTTP, gRPC) still goes the compatibility layer's way.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createContextValues } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService, WatchTipRequestSchema } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { GetQrCodeRequestSchema, GetQrCodeResponseSchema, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { internalTransport, Metrics, startServer, UpstreamSession, type RunningServer } from "../src/index.js";
import { StreamExchange } from "../src/rpc-exchange.js";
import { captureLogger, eventually } from "../src/testing/index.js";

/** GetQrCode for this id waits until its signal aborts, records why, and fails with the reason (as a handler whose query was cancelled does). */
const WAITS = randomUUID();
/** GetQrCode for this id waits until its signal aborts, then fails with an error of its own (not the signal's reason). */
const FAILS_LATE = randomUUID();
/** GetQrCode for this id answers after SLOW_MS. */
const SLOW = randomUUID();
const SLOW_MS = 400;

type Answer = { status: number; headers: http2.IncomingHttpHeaders; body: Buffer; rstCode?: number; stream?: number };

/** One request on `session`, its whole answer (or the stream's reset code). */
function call(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Uint8Array, send = (s: http2.ClientHttp2Stream) => void s.end(body)): Promise<Answer> {
  return new Promise((resolve) => {
    const stream = session.request({ ":method": "POST", ...headers });
    let status = 0;
    let head: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => ((status = Number(h[":status"])), (head = h)));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("close", () => resolve({ status, headers: head, body: Buffer.concat(chunks), rstCode: stream.rstCode, stream: stream.id }));
    stream.on("error", () => {});
    send(stream);
  });
}

const getQrCode = (id: string, extra: http2.OutgoingHttpHeaders = {}) => ({
  headers: { ":path": `/${QrService.typeName}/GetQrCode`, "content-type": "application/proto", "connect-protocol-version": "1", ...extra },
  body: toBinary(GetQrCodeRequestSchema, create(GetQrCodeRequestSchema, { qrCodeId: id })),
});

/** Resolves once `signal` aborts (at once if it has); the cap only keeps a broken server from hanging the test. */
function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const cap = setTimeout(resolve, 20_000);
    signal.addEventListener("abort", () => (clearTimeout(cap), resolve()), { once: true });
  });
}

/** Counts the requests node's compatibility layer builds (server.ts builds them with http2.Http2ServerRequest) while installed. */
function compatRequestCounter() {
  let built = 0;
  const Original = http2.Http2ServerRequest;
  class Counted extends Original {
    constructor(...args: ConstructorParameters<typeof Original>) {
      super(...args);
      built++;
    }
  }
  return {
    get built() {
      return built;
    },
    install: () => void Object.assign(http2, { Http2ServerRequest: Counted }),
    restore: () => void Object.assign(http2, { Http2ServerRequest: Original }),
  };
}

describe("Connect unary calls answered on HTTP/2's stream API", () => {
  const servers: Record<"stream API" | "compatibility layer", RunningServer> = {} as never;
  /** Why each waiting handler's signal aborted. */
  const aborted: Array<Code | undefined> = [];
  /** Handlers that have started waiting on their signal. */
  let waiting = 0;
  const sessions: http2.ClientHttp2Session[] = [];
  /** What happened in the drain test, in order. */
  const events: string[] = [];
  /** Told when a SLOW call's handler starts: the drain test closes the server only once its call is in flight. */
  let slowStarted = () => {};
  const connect = (server: RunningServer) => {
    const session = http2.connect(server.url);
    sessions.push(session);
    return session;
  };

  const start = (streamApi: boolean, logger = captureLogger("silent").logger) =>
    startServer({
      name: "test",
      logger,
      metrics: new Metrics(),
      services: [QrService],
      streamApi,
      routes: (router) =>
        router.service(QrService, {
          getQrCode: async (req, ctx) => {
            if (req.qrCodeId === WAITS || req.qrCodeId === FAILS_LATE) {
              waiting++;
              await untilAborted(ctx.signal);
              aborted.push(ctx.signal.aborted ? ConnectError.from(ctx.signal.reason).code : undefined);
              if (req.qrCodeId === FAILS_LATE) throw new Error("the handler's own failure, after the deadline");
              throw ctx.signal.aborted ? ConnectError.from(ctx.signal.reason) : new ConnectError("gave up", Code.Aborted);
            }
            if (req.qrCodeId === SLOW) {
              slowStarted();
              await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
              events.push("handler answered");
            }
            ctx.responseHeader.set("x-test-answer", "seen");
            ctx.responseTrailer.set("x-test-end", "done");
            return { qrCode: { qrCodeId: req.qrCodeId, shortCode: "K7M4QX" } };
          },
        }),
    });

  const compat = compatRequestCounter();
  before(async () => {
    compat.install();
    servers["stream API"] = await start(true);
    servers["compatibility layer"] = await start(false);
  });
  after(async () => {
    compat.restore();
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
      const before = compat.built;
      answers[how] = await call(session, headers, body);
      built[how] = compat.built - before;
    }
    assert.deepEqual(built, { "stream API": 0, "compatibility layer": 1 });
    const compatAnswer = answers["compatibility layer"];
    const fast = answers["stream API"];
    assert.equal(fast.status, 200);
    assert.equal(fromBinary(GetQrCodeResponseSchema, fast.body).qrCode?.qrCodeId, id);
    assert.deepEqual(fast.body, compatAnswer.body);
    const { date, ...compatHeaders } = compatAnswer.headers;
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
      const before = compat.built;
      answers[how] = {};
      for (const [name, { headers, body }] of Object.entries(calls)) answers[how][name] = await call(session, headers, body);
      built[how] = compat.built - before;
    }
    assert.deepEqual(built, { "stream API": 0, "compatibility layer": 4 });
    const fast = answers["stream API"];
    const compatAnswers = answers["compatibility layer"];
    for (const name of ["plain", "charset"]) {
      assert.equal(fast[name].status, 200, name);
      assert.equal(JSON.parse(fast[name].body.toString()).qrCode.qrCodeId, id, name);
      assert.equal(fast[name].body.toString(), compatAnswers[name].body.toString(), name);
      const { date, ...compatHeaders } = compatAnswers[name].headers;
      const { date: fastDate, ...fastHeaders } = fast[name].headers;
      assert.ok(date && fastDate, "both answers are dated");
      assert.deepEqual(fastHeaders, compatHeaders, name);
      assert.equal(fast[name].headers["content-type"], "application/json", name);
      assert.equal(fast[name].headers["trailer-x-test-end"], "done", name);
    }
    for (const name of ["broken", "wrongType"]) {
      assert.equal(fast[name].status, 400, name);
      assert.equal(fast[name].status, compatAnswers[name].status, name);
      assert.equal(fast[name].headers["content-type"], "application/json", name);
      const { code, message } = JSON.parse(fast[name].body.toString());
      assert.equal(code, "invalid_argument", name);
      assert.deepEqual({ code, message }, JSON.parse(compatAnswers[name].body.toString()), name);
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
      const captured = captureLogger("warn");
      const server = await start(how === "stream API", captured.logger);
      const { headers, body } = getQrCode(WAITS);
      const session = connect(server);
      const waitingBefore = waiting;
      const answer = await call(session, headers, body, (s) => {
        s.end(body);
        // Reset once the handler waits, not after a time: a loaded machine may not have run it yet.
        void eventually("the handler waits on its signal", () => waiting > waitingBefore).then(() => s.close(http2.constants.NGHTTP2_CANCEL));
      });
      assert.equal(answer.rstCode, http2.constants.NGHTTP2_CANCEL);
      await eventually("the handler's signal aborted", () => aborted.length > 0);
      assert.deepEqual(aborted, [Code.Canceled]);
      // A call still counted would hold the drain until its timeout (the session stays open), which the server logs.
      await server.close();
      assert.deepEqual(captured.records().filter((r) => String(r.msg).startsWith("drain timeout")), [], "drained, not cut at the drain timeout");
    });

    test(`${how}: a handler that fails with an error of its own after the deadline: the caller gets DEADLINE_EXCEEDED`, async () => {
      aborted.length = 0;
      const { headers, body } = getQrCode(FAILS_LATE, { "connect-timeout-ms": "100" });
      const answer = await call(connect(servers[how]), headers, body);
      assert.deepEqual(aborted, [Code.DeadlineExceeded], "the handler failed after its deadline");
      assert.equal(answer.status, 504);
      assert.match(answer.body.toString(), /"code":"deadline_exceeded"/);
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
      const started = new Promise<void>((resolve) => (slowStarted = resolve));
      const answered = call(session, headers, body);
      // Closed once the handler runs, not after a pause: a loaded machine may not have read the request by then.
      await started;
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

/** A Connect stream request's body: one envelope per message (flags 0). */
function envelopes(...messages: Uint8Array[]): Buffer {
  return flaggedEnvelopes(0, ...messages);
}

type Frame = { type: number; flags: number; stream: number; length: number };

/**
 * A TCP proxy to the server at `url` that reads the frames the server sends
 * back (their headers: type, flags, stream, payload length), in order, as
 * the client receives them.
 */
async function frameTap(url: string): Promise<{ url: string; frames: Frame[]; close(): Promise<void> }> {
  const target = new URL(url);
  const frames: Frame[] = [];
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const server = net.connect(Number(target.port), target.hostname);
    for (const s of [client, server]) {
      sockets.add(s);
      s.on("error", () => (client.destroy(), server.destroy()));
    }
    client.pipe(server);
    let unread = Buffer.alloc(0);
    server.on("data", (chunk: Buffer) => {
      client.write(chunk);
      unread = Buffer.concat([unread, chunk]);
      while (unread.length >= 9 && unread.length >= 9 + unread.readUIntBE(0, 3)) {
        const length = unread.readUIntBE(0, 3);
        frames.push({ type: unread[3], flags: unread[4], stream: unread.readUInt32BE(5) & 0x7fffffff, length });
        unread = unread.subarray(9 + length);
      }
    });
    server.on("end", () => client.end());
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const { port } = proxy.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    frames,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => proxy.close(() => resolve()));
    },
  };
}

/** One envelope per message, each with `flags`. */
function flaggedEnvelopes(flags: number, ...messages: Uint8Array[]): Buffer {
  return Buffer.concat(messages.map((m) => Buffer.concat([Buffer.from([flags, ...new Uint8Array(new Uint32Array([m.byteLength]).buffer).reverse()]), m])));
}

describe("Connect server streams answered on HTTP/2's stream API", () => {
  const servers: Record<"stream API" | "compatibility layer", RunningServer> = {} as never;
  const sessions: http2.ClientHttp2Session[] = [];
  /** How each handler's generator ended: its signal's code when aborted, "finished" otherwise. */
  const ended: string[] = [];
  const FAILS = randomUUID();
  const WAITS_STREAM = randomUUID();
  /** Waits until its signal aborts, then fails with an error of its own. */
  const FAILS_LATE_STREAM = randomUUID();
  /** Yields MANY_MESSAGES messages of 1 KiB at once: more than a server holds before handing them to the stream. */
  const MANY = randomUUID();
  const MANY_MESSAGES = 40;
  const start = (streamApi: boolean) =>
    startServer({
      name: "test",
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      services: [PaymentService],
      streamApi,
      routes: (router) =>
        router.service(PaymentService, {
          watchTip: async function* (req, ctx) {
            try {
              ctx.responseHeader.set("x-test-answer", "seen");
              yield { tip: { tipId: req.tipId, status: TipStatus.PENDING } };
              if (req.tipId === MANY) for (let i = 1; i < MANY_MESSAGES; i++) yield { tip: { tipId: req.tipId, status: TipStatus.PENDING, message: `${i}`.padEnd(1024, ".") } };
              if (req.tipId === FAILS) throw new ConnectError("the tip is gone", Code.NotFound, { "x-test-why": "gone" });
              if (req.tipId === WAITS_STREAM || req.tipId === FAILS_LATE_STREAM) {
                await untilAborted(ctx.signal);
                if (req.tipId === FAILS_LATE_STREAM) throw new Error("the handler's own failure, after the deadline");
                throw ConnectError.from(ctx.signal.reason ?? new ConnectError("gave up", Code.Aborted));
              }
              ctx.responseTrailer.set("x-test-end", "done");
              yield { tip: { tipId: req.tipId, status: TipStatus.SUCCEEDED, amount: { currency: "KES", amountMinor: 15_000n } } };
            } finally {
              ended.push(ctx.signal.aborted && ctx.signal.reason instanceof ConnectError && ctx.signal.reason.code !== Code.Canceled ? Code[ctx.signal.reason.code] : ctx.signal.aborted ? "aborted" : "finished");
            }
          },
        }),
    });
  const compat = compatRequestCounter();
  const connect = (server: RunningServer) => {
    const session = http2.connect(server.url);
    sessions.push(session);
    return session;
  };
  const watch = (tipId: string, format: "json" | "proto", extra: http2.OutgoingHttpHeaders = {}, body?: Buffer) => ({
    headers: { ":path": `/${PaymentService.typeName}/WatchTip`, "content-type": `application/connect+${format}`, "connect-protocol-version": "1", ...extra },
    body:
      body ??
      envelopes(format === "json" ? Buffer.from(JSON.stringify({ tipId })) : toBinary(WatchTipRequestSchema, create(WatchTipRequestSchema, { tipId }))),
  });

  before(async () => {
    compat.install();
    servers["stream API"] = await start(true);
    servers["compatibility layer"] = await start(false);
  });
  after(async () => {
    compat.restore();
    for (const s of sessions) s.destroy();
    await Promise.all(Object.values(servers).map((s) => s.close()));
  });

  test("no compatibility request is built, and the answer is the compatibility layer's byte for byte: head, messages, trailers or error in the end of the stream, refusals of the request (JSON and binary)", async () => {
    const id = randomUUID();
    const cases = {
      json: watch(id, "json"),
      binary: watch(id, "proto", { "x-request-id": randomUUID() }),
      "json, charset": watch(id, "json"),
      "fails after a message": watch(FAILS, "json"),
      "two request messages": watch(id, "json", {}, envelopes(Buffer.from(JSON.stringify({ tipId: id })), Buffer.from(JSON.stringify({ tipId: id })))),
      "no request message": watch(id, "json", {}, Buffer.alloc(0)),
      "JSON that does not parse": watch(id, "json", {}, envelopes(Buffer.from("{"))),
      "binary that does not parse": watch(id, "proto", {}, envelopes(Buffer.from([0xff, 0xff]))),
      "an envelope cut short": watch(id, "json", {}, envelopes(Buffer.from("{}")).subarray(0, 4)),
      "a message cut short": watch(id, "json", {}, envelopes(Buffer.from(JSON.stringify({ tipId: id }))).subarray(0, 12)),
      "binary cut short": watch(id, "proto", {}, envelopes(Buffer.from([0x0a, 0x02, 0x41, 0x42])).subarray(0, 7)),
      "binary, two messages": watch(id, "proto", {}, envelopes(Buffer.alloc(0), Buffer.alloc(0))),
      "binary, none": watch(id, "proto", {}, Buffer.alloc(0)),
      "not a uuid (validation)": watch("not-a-uuid", "json"),
      "many messages at once": watch(MANY, "proto"),
    };
    cases["json, charset"].headers["content-type"] = "application/connect+json; charset=utf-8";
    const answers: Record<string, Record<string, Answer>> = { "stream API": {}, "compatibility layer": {} };
    const built: Record<string, number> = {};
    for (const [how, server] of Object.entries(servers)) {
      const session = connect(server);
      const before = compat.built;
      for (const [name, { headers, body }] of Object.entries(cases)) {
        const requestId = randomUUID();
        answers[how][name] = await call(session, { ...headers, "x-request-id": requestId }, body);
        answers[how][name].body = Buffer.from(answers[how][name].body.toString("latin1").replaceAll(requestId, "<id>"), "latin1");
        if (answers[how][name].headers["x-request-id"] === requestId) answers[how][name].headers["x-request-id"] = "<id>";
      }
      built[how] = compat.built - before;
    }
    assert.deepEqual(built, { "stream API": 0, "compatibility layer": Object.keys(cases).length });
    for (const name of Object.keys(cases)) {
      const fast = answers["stream API"][name];
      const compatAnswer = answers["compatibility layer"][name];
      const { date, ...compatHeaders } = compatAnswer.headers;
      const { date: fastDate, ...fastHeaders } = fast.headers;
      assert.ok(date && fastDate, `${name}: both answers are dated`);
      assert.deepEqual(fastHeaders, compatHeaders, name);
      assert.equal(fast.status, compatAnswer.status, name);
      assert.equal(fast.body.toString("latin1"), compatAnswer.body.toString("latin1"), name);
    }
    const json = answers["stream API"].json;
    assert.equal(json.status, 200);
    assert.equal(json.headers["content-type"], "application/connect+json");
    assert.equal(json.headers["x-test-answer"], "seen");
    assert.match(json.body.toString(), /"status":"TIP_STATUS_SUCCEEDED"/);
    assert.match(json.body.toString(), /\{"metadata":\{"x-test-end":\["done"\]/);
    assert.match(answers["stream API"]["fails after a message"].body.toString(), /"code":"not_found","message":"the tip is gone"/);
    assert.match(answers["stream API"]["two request messages"].body.toString(), /"code":"unimplemented"/);
    assert.match(answers["stream API"]["JSON that does not parse"].body.toString(), /"code":"invalid_argument"/);
  });

  test("messages written in one turn of the event loop leave with the stream's end: one DATA frame, END_STREAM on it; past 16 KiB they are handed on before the end", async () => {
    const tap = await frameTap(servers["stream API"].url);
    try {
      const session = http2.connect(tap.url);
      sessions.push(session);
      for (const [id, format] of [[randomUUID(), "json"], [randomUUID(), "proto"], [FAILS, "json"]] as const) {
        const { headers, body } = watch(id, format);
        const answer = await call(session, headers, body);
        assert.equal(answer.status, 200);
        // The handler yields its messages (and fails, for FAILS) without waiting in between: the head, then all of it at once.
        const frames = tap.frames.filter((f) => f.stream === answer.stream);
        assert.deepEqual(frames.map((f) => `${f.type === 1 ? "HEADERS" : f.type === 0 ? "DATA" : f.type}${f.flags & 1 ? " END_STREAM" : ""}`), ["HEADERS", "DATA END_STREAM"], `${id === FAILS ? "fails" : format}: ${JSON.stringify(frames)}`);
        assert.equal(frames[1].length, answer.body.byteLength);
      }
      const { headers, body } = watch(MANY, "proto");
      const many = await call(session, headers, body);
      const data = tap.frames.filter((f) => f.stream === many.stream && f.type === 0);
      assert.equal(data.reduce((n, f) => n + f.length, 0), many.body.byteLength);
      assert.ok(data.length > 1, "more than a DATA frame's worth is not held back until the end");
      assert.equal(data.at(-1)!.flags & 1, 1, "END_STREAM on the last DATA frame");
    } finally {
      await tap.close();
    }
  });

  test("a connect-node client reads the stream in JSON and binary; the handler's generator finishes", async () => {
    ended.length = 0;
    for (const useBinaryFormat of [false, true]) {
      const client = createClient(PaymentService, createConnectTransport({ baseUrl: servers["stream API"].url, httpVersion: "2", useBinaryFormat }));
      const id = randomUUID();
      const seen: TipStatus[] = [];
      for await (const m of client.watchTip({ tipId: id })) seen.push(m.tip!.status);
      assert.deepEqual(seen, [TipStatus.PENDING, TipStatus.SUCCEEDED]);
    }
    assert.deepEqual(ended, ["finished", "finished"]);
  });

  test("the client's deadline aborts the handler's signal and ends the stream DEADLINE_EXCEEDED; a client that resets its stream cancels it", async () => {
    ended.length = 0;
    const session = connect(servers["stream API"]);
    const { headers, body } = watch(WAITS_STREAM, "json", { "connect-timeout-ms": "100" });
    const timedOut = await call(session, headers, body);
    assert.equal(timedOut.status, 200);
    assert.match(timedOut.body.toString(), /"code":"deadline_exceeded"/);
    assert.deepEqual(ended, ["DeadlineExceeded"]);
    ended.length = 0;
    const reset = watch(WAITS_STREAM, "json");
    const answer = await call(session, reset.headers, reset.body, (s) => {
      s.end(reset.body);
      // Reset once the first message is in, not after a time: the handler is then past it, waiting on its signal.
      s.once("data", () => s.close(http2.constants.NGHTTP2_CANCEL));
    });
    assert.equal(answer.rstCode, http2.constants.NGHTTP2_CANCEL);
    await eventually("the handler's generator ended", () => ended.length > 0);
    assert.deepEqual(ended, ["aborted"]);
  });

  for (const how of ["stream API", "compatibility layer"] as const) {
    test(`${how}: a handler that fails with an error of its own after the deadline: the stream ends DEADLINE_EXCEEDED`, async () => {
      ended.length = 0;
      const { headers, body } = watch(FAILS_LATE_STREAM, "json", { "connect-timeout-ms": "100" });
      const answer = await call(connect(servers[how]), headers, body);
      assert.deepEqual(ended, ["DeadlineExceeded"], "the handler failed after its deadline");
      assert.match(answer.body.toString(), /"code":"deadline_exceeded"/);
    });
  }

  test("a JSON envelope flagged compressed in a request that names no encoding is INVALID_ARGUMENT (the client broke the protocol), as a binary one is", async () => {
    const session = connect(servers["stream API"]);
    const id = randomUUID();
    for (const [format, message] of [["json", Buffer.from(JSON.stringify({ tipId: id }))], ["proto", Buffer.from(toBinary(WatchTipRequestSchema, create(WatchTipRequestSchema, { tipId: id })))]] as const) {
      const { headers, body } = watch(id, format, {}, flaggedEnvelopes(1, message));
      const answer = await call(session, headers, body);
      assert.equal(answer.status, 200, format);
      assert.match(answer.body.toString("latin1"), /"code":"invalid_argument","message":"a compressed message without its encoding header"/, format);
    }
  });
});

describe("a call that fails outside its handler (the service's contextValues throws)", () => {
  const captured = captureLogger("error");
  const metrics = new Metrics();
  let server: RunningServer;
  let session: http2.ClientHttp2Session;
  before(async () => {
    server = await startServer({
      name: "test",
      logger: captured.logger,
      metrics,
      services: [QrService, PaymentService],
      streamApi: true,
      contextValues: (req) => {
        if (req.headers["x-test-break"]) throw new Error("contextValues broke");
        return createContextValues();
      },
      routes: (router) =>
        router
          .service(QrService, { getQrCode: async (req) => ({ qrCode: { qrCodeId: req.qrCodeId } }) })
          .service(PaymentService, { watchTip: async function* (req) { yield { tip: { tipId: req.tipId } }; } }),
    });
    session = http2.connect(server.url);
  });
  after(async () => {
    session.destroy();
    await server.close();
  });

  test("unary: a bare 500, an error line naming the path, counted", async () => {
    const { headers, body } = getQrCode(randomUUID(), { "x-test-break": "1" });
    const answer = await call(session, headers, body);
    assert.equal(answer.status, 500);
    await assertReported(`/${QrService.typeName}/GetQrCode`);
  });

  test("server stream: the stream reset, an error line naming the path, counted", async () => {
    const tipId = randomUUID();
    const answer = await call(
      session,
      { ":path": `/${PaymentService.typeName}/WatchTip`, "content-type": "application/connect+json", "connect-protocol-version": "1", "x-test-break": "1" },
      envelopes(Buffer.from(JSON.stringify({ tipId }))),
    );
    assert.equal(answer.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
    await assertReported(`/${PaymentService.typeName}/WatchTip`);
  });

  test("server stream in frames (a peer's): the call reset, INTERNAL for the caller, an error line, counted", async () => {
    const upstream = new UpstreamSession(server.url, {}, undefined, true);
    try {
      const transport = internalTransport(server.url, upstream, []);
      const err = await transport
        .stream(PaymentService.method.watchTip, undefined, 5_000, { "x-test-break": "1" }, (async function* () {
          yield create(WatchTipRequestSchema, { tipId: randomUUID() });
        })())
        .then(async (res) => {
          for await (const _ of res.message);
        })
        .then(() => undefined, (e: unknown) => ConnectError.from(e));
      assert.equal(err?.code, Code.Internal, err?.message);
      assert.match(err?.rawMessage ?? "", /INTERNAL_ERROR/);
      await assertReported(`/${PaymentService.typeName}/WatchTip`, 2);
    } finally {
      upstream.close();
    }
  });

  async function assertReported(path: string, count = 1): Promise<void> {
    const lines = captured.records().filter((r) => r.msg === "call failed outside its handler" && r.path === path);
    assert.equal(lines.length, count, "one error line per call");
    assert.match(JSON.stringify(lines[0].err), /contextValues broke/);
    assert.match(await metrics.registry.metrics(), new RegExp(`ttip_rpc_failed_outside_call_total\\{path="${path.replace(/[./]/g, "\\$&")}"\\} ${count}\\b`));
  }
});

test("a server stream given up after its head went out is reset INTERNAL_ERROR, not ended: its client never reads a clean end without the end of the stream", async () => {
  const server = http2.createServer();
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    const exchange = new StreamExchange(stream, headers, rawHeaders);
    exchange.writeHead(200, { "content-type": "application/connect+proto" });
    void exchange.write(Buffer.from([0, 0, 0, 0, 0]));
    setTimeout(() => exchange.reset(), 30);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  try {
    const answer = await call(session, { ":path": `/${PaymentService.typeName}/WatchTip` }, new Uint8Array(0));
    assert.equal(answer.body.length, 5, "the message written before");
    assert.equal(answer.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
  } finally {
    session.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});
