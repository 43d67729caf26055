// A unary or server-streaming call to a server in the same process
// (RunningServer.local through localTransport) gives what the same call over
// the network gives: the server's interceptors run, headers cross both ways,
// the deadline and the caller's cancellation reach the handler, errors keep
// their code, message, details and metadata; a stream's handler runs at most
// one message ahead of a slow reader.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { gunzipSync, gzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { PaymentService, WatchTipRequestSchema } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { GetQrCodeRequestSchema, GetQrCodeResponseSchema, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { internalTransport, localTransport, Metrics, startServer, UpstreamSession, type RunningServer } from "../src/index.js";
import { LocalCall } from "../src/local-server.js";
import { answeredCode, captureLogger, eventually, postChunkedHttp1, postHttp2 } from "../src/testing/index.js";

const REFUSED = randomUUID();
/** GetQrCode for this id waits until its signal aborts (at most WAIT_CAP_MS). */
const WAITS = randomUUID();
const WAIT_CAP_MS = 3_000;
/**
 * The callers' deadline in the deadline tests: well under the cap, and long enough for a new connection, the request
 * and the handler's start (or a stream's first message) on a busy machine. At 150 ms a stall before the server read
 * the request let the deadline end the call first: no handler ever waited.
 */
const DEADLINE_MS = 1_000;
/** WatchTip for this id yields until its signal aborts (or it is ended), one message per turn of the event loop. */
const ENDLESS = randomUUID();
/** WatchTip for this id yields one message, then fails with NOT_FOUND (metadata and a detail). */
const FAILS = randomUUID();
/** WatchTip for this id yields one message, then waits until its signal aborts (at most WAIT_CAP_MS). */
const STALLS = randomUUID();
/** GetQrCode for this id answers a message over 1 KiB, which the server compresses for a client that takes it. */
const LARGE = randomUUID();

describe("a server's RPCs called in the same process", () => {
  let server: RunningServer;
  const serverSaw: string[] = [];
  const handlerSaw: Array<{ caller: string | null; timeoutMs: number | undefined; signal: AbortSignal }> = [];
  /** What the waiting handler saw: whether its signal aborted, and the reason's code. */
  const waited: Array<{ aborted: boolean; code: Code | undefined }> = [];
  /** How many messages the endless stream produced, and whether its signal had aborted when it ended. */
  const endless = { produced: 0, ended: [] as boolean[] };
  /** How many times the server's interceptors were put around a handler (a chain made). */
  const serverChains = { made: 0 };
  before(async () => {
    const recordCall: Interceptor = (next) => {
      serverChains.made++;
      return (req) => {
        serverSaw.push(req.method.name);
        return next(req);
      };
    };
    server = await startServer({
      name: "test",
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      services: [QrService, PaymentService],
      interceptors: [recordCall],
      routes: (router) =>
        router.service(QrService, {
          getQrCode: async (req, ctx) => {
            handlerSaw.push({ caller: ctx.requestHeader.get("x-test-caller"), timeoutMs: ctx.timeoutMs(), signal: ctx.signal });
            if (req.qrCodeId === WAITS) {
              await new Promise<void>((resolve) => {
                const cap = setTimeout(resolve, WAIT_CAP_MS);
                ctx.signal.addEventListener("abort", () => (clearTimeout(cap), resolve()), { once: true });
              });
              waited.push({ aborted: ctx.signal.aborted, code: ctx.signal.aborted ? ConnectError.from(ctx.signal.reason).code : undefined });
              throw new ConnectError("gave up", Code.Aborted);
            }
            ctx.responseHeader.set("x-test-answer", "seen");
            if (req.qrCodeId === REFUSED) throw new ConnectError("no such code", Code.NotFound, { "x-test-reason": "gone" });
            return { qrCode: { qrCodeId: req.qrCodeId, shortCode: "K7M4QX", ownerId: req.qrCodeId === LARGE ? "w".repeat(4_000) : "" } };
          },
        }).service(PaymentService, {
          watchTip: async function* (req, ctx) {
            ctx.responseHeader.set("x-test-answer", "watching");
            if (req.tipId === ENDLESS) {
              try {
                for (endless.produced = 0; !ctx.signal.aborted; ) {
                  yield { tip: { tipId: String(++endless.produced) } };
                  await new Promise((resolve) => setImmediate(resolve));
                }
              } finally {
                endless.ended.push(ctx.signal.aborted);
              }
              return;
            }
            yield { tip: { tipId: "1" } };
            if (req.tipId === FAILS) throw new ConnectError("tip vanished", Code.NotFound, { "x-test-reason": "gone" }, [{ desc: WatchTipRequestSchema, value: create(WatchTipRequestSchema, { tipId: FAILS }) }]);
            if (req.tipId === STALLS) {
              await new Promise<void>((resolve) => {
                const cap = setTimeout(resolve, WAIT_CAP_MS);
                ctx.signal.addEventListener("abort", () => (clearTimeout(cap), resolve()), { once: true });
              });
              waited.push({ aborted: ctx.signal.aborted, code: ctx.signal.aborted ? ConnectError.from(ctx.signal.reason).code : undefined });
              return;
            }
            yield { tip: { tipId: "2" } };
            ctx.responseTrailer.set("x-test-end", "done");
          },
        }),
    });
  });
  after(() => server.close());

  const asCaller: Interceptor = (next) => (req) => {
    req.header.set("x-test-caller", "payment");
    return next(req);
  };
  const transports: Record<string, () => Transport> = {
    "in process": () => localTransport(server.local, [asCaller]),
    "over the network": () => createGrpcTransport({ baseUrl: server.url, interceptors: [asCaller] }),
    // What a service's peers in another process use: the Connect protocol's unary calls on the session, streams through connect-node.
    "peers over the network": () => internalTransport(server.url, new UpstreamSession(server.url), [asCaller]),
    // The same, unary calls and server streams in frames (frames.ts).
    "peers in frames": () => internalTransport(server.url, new UpstreamSession(server.url, {}, undefined, true), [asCaller]),
  };

  for (const [how, transport] of Object.entries(transports)) {
    test(`${how}: the server's interceptors and the handler see the call, its headers and deadline; the answer and its headers come back`, async () => {
      serverSaw.length = 0;
      handlerSaw.length = 0;
      const id = randomUUID();
      let answer: string | null = null;
      const res = await createClient(QrService, transport()).getQrCode({ qrCodeId: id }, { timeoutMs: 5_000, onHeader: (h) => (answer = h.get("x-test-answer")) });
      assert.equal(res.qrCode?.qrCodeId, id);
      assert.equal(res.qrCode?.shortCode, "K7M4QX");
      assert.equal(answer, "seen");
      assert.deepEqual(serverSaw, ["GetQrCode"]);
      assert.equal(handlerSaw[0].caller, "payment");
      assert.ok(handlerSaw[0].timeoutMs !== undefined && handlerSaw[0].timeoutMs > 0 && handlerSaw[0].timeoutMs <= 5_000, `timeoutMs ${handlerSaw[0].timeoutMs}`);
      // Code that watches the signal learns that the call is over.
      assert.equal(handlerSaw[0].signal.aborted, true);
    });

    test(`${how}: the handler's signal aborts at the caller's deadline and the caller gets DEADLINE_EXCEEDED`, async () => {
      waited.length = 0;
      const started = Date.now();
      const err = await createClient(QrService, transport())
        .getQrCode({ qrCodeId: WAITS }, { timeoutMs: DEADLINE_MS })
        .then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(err?.code, Code.DeadlineExceeded);
      await eventually("the handler gave up waiting", () => waited.length === 1);
      assert.equal(waited[0].aborted, true);
      // Over the network the caller's reset may reach the server before its own timer fires.
      if (how === "in process") assert.equal(waited[0].code, Code.DeadlineExceeded);
      assert.ok(Date.now() - started < WAIT_CAP_MS, "the handler waited for its own cap, not the deadline");
    });

    test(`${how}: the caller's cancellation reaches the handler's signal`, async () => {
      waited.length = 0;
      handlerSaw.length = 0;
      const caller = new AbortController();
      const call = createClient(QrService, transport()).getQrCode({ qrCodeId: WAITS }, { signal: caller.signal, timeoutMs: 60_000 });
      await eventually("the handler is waiting", () => handlerSaw.length === 1);
      assert.equal(handlerSaw[0].signal.aborted, false);
      caller.abort();
      const err = await call.then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(err?.code, Code.Canceled);
      await eventually("the handler gave up waiting", () => waited.length === 1);
      assert.equal(waited[0].aborted, true);

      // Cancelled before it is sent: the handler never runs.
      handlerSaw.length = 0;
      const early = await createClient(QrService, transport())
        .getQrCode({ qrCodeId: randomUUID() }, { signal: AbortSignal.abort() })
        .then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(early?.code, Code.Canceled);
      const earlyStream = await (async () => {
        for await (const _ of createClient(PaymentService, transport()).watchTip({ tipId: randomUUID() }, { signal: AbortSignal.abort() }));
      })().then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(earlyStream?.code, Code.Canceled);
      assert.equal(handlerSaw.length, 0);
    });

    test(`${how}: a refused request never reaches the handler; errors keep their code, message, details and metadata`, async () => {
      handlerSaw.length = 0;
      const client = createClient(QrService, transport());
      const invalid = await client.getQrCode({ qrCodeId: "not-a-uuid" }).then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(invalid?.code, Code.InvalidArgument);
      assert.equal(invalid?.findDetails(ViolationsSchema)[0]?.violations[0]?.field?.elements[0]?.fieldName, "qr_code_id");
      assert.equal(handlerSaw.length, 0);

      const refused = await client.getQrCode({ qrCodeId: REFUSED }).then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(refused?.code, Code.NotFound);
      assert.equal(refused?.rawMessage, "no such code");
      assert.equal(refused?.metadata.get("x-test-reason"), "gone");
      assert.equal(refused?.metadata.get("x-test-answer"), "seen");
    });

    test(`${how}: a request message over the server's 1 MiB read limit is RESOURCE_EXHAUSTED before every interceptor; one just under it is read`, async () => {
      serverSaw.length = 0;
      handlerSaw.length = 0;
      const client = createClient(QrService, transport());
      // 600,000 two-byte characters: 1.2 MB in UTF-8, though the string's length is under the limit.
      for (const qrCodeId of ["x".repeat(1_100_000), "\u00fc".repeat(600_000)]) {
        const refused = await client.getQrCode({ qrCodeId }).then(() => undefined, (e) => ConnectError.from(e));
        assert.equal(refused?.code, Code.ResourceExhausted);
        assert.equal(refused?.rawMessage, "the request body is larger than the 1048576 bytes this server reads");
      }
      const stream = await (async () => {
        for await (const _ of createClient(PaymentService, transport()).watchTip({ tipId: "x".repeat(1_100_000) }));
      })().then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(stream?.code, Code.ResourceExhausted);
      assert.equal(stream?.rawMessage, "the request body is larger than the 1048576 bytes this server reads");
      assert.deepEqual(serverSaw, [], "refused before the server's own interceptors");
      // 1,000,000 bytes in all: read, so the contract's own rule answers (not a UUID).
      const read = await client.getQrCode({ qrCodeId: "x".repeat(1_000_000) }).then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(read?.code, Code.InvalidArgument);
      assert.equal(read?.findDetails(ViolationsSchema)[0]?.violations[0]?.field?.elements[0]?.fieldName, "qr_code_id");
      assert.equal(handlerSaw.length, 0);
    });

    test(`${how}: the limit is the message's, to the byte (a gRPC envelope's 5-byte header is not counted): 1 MiB is read, 1 MiB + 1 refused`, async () => {
      const client = createClient(QrService, transport());
      // A tag byte and a 3-byte length in front of the string.
      const edge = "x".repeat(1024 * 1024 - 4);
      assert.equal(toBinary(GetQrCodeRequestSchema, create(GetQrCodeRequestSchema, { qrCodeId: edge })).byteLength, 1024 * 1024);
      const read = await client.getQrCode({ qrCodeId: edge }).then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(read?.code, Code.InvalidArgument, read?.rawMessage);
      const over = await client.getQrCode({ qrCodeId: `${edge}x` }).then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(over?.code, Code.ResourceExhausted);
      assert.equal(over?.rawMessage, "the request body is larger than the 1048576 bytes this server reads");
    });

    test(`${how}: a server stream's messages, headers and trailers arrive`, async () => {
      serverSaw.length = 0;
      let answer: string | null = null;
      let end: string | null = null;
      const seen: string[] = [];
      const watch = createClient(PaymentService, transport()).watchTip(
        { tipId: randomUUID() },
        { timeoutMs: 5_000, onHeader: (h) => (answer = h.get("x-test-answer")), onTrailer: (t) => (end = t.get("x-test-end")) },
      );
      for await (const m of watch) seen.push(m.tip!.tipId);
      assert.deepEqual(seen, ["1", "2"]);
      assert.equal(answer, "watching");
      assert.equal(end, "done");
      assert.deepEqual(serverSaw, ["WatchTip"]);
    });

    test(`${how}: a stream's failure reaches the caller with its code, message, details and metadata`, async () => {
      const seen: string[] = [];
      const err = await (async () => {
        for await (const m of createClient(PaymentService, transport()).watchTip({ tipId: FAILS })) seen.push(m.tip!.tipId);
      })().then(() => undefined, (e) => ConnectError.from(e));
      assert.deepEqual(seen, ["1"]);
      assert.equal(err?.code, Code.NotFound);
      assert.equal(err?.rawMessage, "tip vanished");
      assert.equal(err?.metadata.get("x-test-reason"), "gone");
      assert.equal(err?.findDetails(WatchTipRequestSchema)[0]?.tipId, FAILS);
      // A request the server refuses fails the stream the same way, before the handler.
      const invalid = await (async () => {
        for await (const _ of createClient(PaymentService, transport()).watchTip({ tipId: "not-a-uuid" }));
      })().then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(invalid?.code, Code.InvalidArgument);
      assert.equal(invalid?.findDetails(ViolationsSchema)[0]?.violations[0]?.field?.elements[0]?.fieldName, "tip_id");
    });

    test(`${how}: the caller's cancellation ends a stream's handler`, async () => {
      endless.ended.length = 0;
      const caller = new AbortController();
      const seen: string[] = [];
      const err = await (async () => {
        for await (const m of createClient(PaymentService, transport()).watchTip({ tipId: ENDLESS }, { signal: caller.signal })) {
          seen.push(m.tip!.tipId);
          if (seen.length === 2) caller.abort();
          if (seen.length > 10) break; // the cancellation did not reach the stream

        }
      })().then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(err?.code, Code.Canceled);
      assert.deepEqual(seen, ["1", "2"]);
      await eventually("the stream's handler ended", () => endless.ended.length === 1);
      assert.equal(endless.ended[0], true);
    });

    test(`${how}: a stream's deadline reaches its handler and the caller gets DEADLINE_EXCEEDED`, async () => {
      waited.length = 0;
      const started = Date.now();
      const seen: string[] = [];
      const err = await (async () => {
        for await (const m of createClient(PaymentService, transport()).watchTip({ tipId: STALLS }, { timeoutMs: DEADLINE_MS })) seen.push(m.tip!.tipId);
      })().then(() => undefined, (e) => ConnectError.from(e));
      assert.equal(err?.code, Code.DeadlineExceeded);
      assert.deepEqual(seen, ["1"]);
      await eventually("the stream's handler gave up waiting", () => waited.length === 1);
      assert.equal(waited[0].aborted, true);
      if (how === "in process") assert.equal(waited[0].code, Code.DeadlineExceeded);
      assert.ok(Date.now() - started < WAIT_CAP_MS, "the handler waited for its own cap, not the deadline");
    });

    test(`${how}: streaming and built-in services answer too`, async () => {
      const health = createClient(Health, transport());
      assert.equal((await health.check({ service: QrService.typeName })).status, Status.SERVING);
      for await (const update of health.watch({ service: QrService.typeName })) {
        assert.equal(update.status, Status.SERVING);
        break;
      }
    });
  }

  test("over the network, Connect unary in binary: a client that names no encoding it accepts gets a large answer in its request's own (gzip), as connect-es answers", async () => {
    const body = gzipSync(toBinary(GetQrCodeRequestSchema, create(GetQrCodeRequestSchema, { qrCodeId: LARGE })));
    // node:http adds no accept-encoding of its own (fetch would).
    const answer = await new Promise<{ status: number; encoding: string | undefined; body: Buffer }>((resolve, reject) => {
      const req = http.request(`${server.url}/${QrService.typeName}/GetQrCode`, { method: "POST", headers: { "content-type": "application/proto", "content-encoding": "gzip", "connect-protocol-version": "1" } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, encoding: res.headers["content-encoding"], body: Buffer.concat(chunks) }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(body);
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.encoding, "gzip");
    const message = fromBinary(GetQrCodeResponseSchema, gunzipSync(answer.body));
    assert.equal(message.qrCode?.qrCodeId, LARGE);
    assert.equal(message.qrCode?.ownerId, "w".repeat(4_000));
  });

  test("peers over the network: an answer not in the protocol, or that does not parse, fails with the code connect-node's own client gives", async () => {
    // A server that answers every call with the given content type and body.
    const answers: Array<[string, Uint8Array]> = [
      ["application/proto", new Uint8Array([0xff])], // a field tag with no end: does not parse
      ["application/json", new TextEncoder().encode("{}")], // another encoding of the protocol
      ["text/html", new TextEncoder().encode("<html></html>")], // not the protocol at all
    ];
    for (const [type, body] of answers) {
      const raw = http2.createServer((_req, res) => {
        res.writeHead(200, { "content-type": type });
        res.end(body);
      });
      await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve));
      const url = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
      const ourSession = new UpstreamSession(url);
      const manager = new Http2SessionManager(url);
      try {
        const codes = [];
        for (const transport of [internalTransport(url, ourSession, []), createConnectTransport({ baseUrl: url, httpVersion: "2", sessionManager: manager, useBinaryFormat: true })]) {
          const err = await createClient(QrService, transport).getQrCode({ qrCodeId: randomUUID() }).then(() => undefined, (e) => ConnectError.from(e));
          codes.push(err?.code);
        }
        assert.equal(codes[1], type === "text/html" ? Code.Unknown : Code.Internal, `connect-node's client, ${type}`);
        assert.equal(codes[0], codes[1], `the peers' client, ${type}: ${Code[codes[0] ?? 0]}, connect-node's ${Code[codes[1] ?? 0]}`);
      } finally {
        ourSession.close();
        manager.abort();
        await new Promise((resolve) => raw.close(resolve));
      }
    }
  });

  test("a timeout of 0 or less is no deadline, as connect-es's transports take it: the handler runs with none, in process as over the network", async () => {
    for (const [how, transport] of Object.entries(transports)) {
      for (const timeoutMs of [0, -1]) {
        handlerSaw.length = 0;
        const id = randomUUID();
        const res = await createClient(QrService, transport()).getQrCode({ qrCodeId: id }, { timeoutMs });
        assert.equal(res.qrCode?.qrCodeId, id, `${how}, timeoutMs ${timeoutMs}`);
        assert.equal(handlerSaw.length, 1, `${how}, timeoutMs ${timeoutMs}: the handler ran`);
        assert.equal(handlerSaw[0].timeoutMs, undefined, `${how}, timeoutMs ${timeoutMs}: no deadline`);
      }
    }
  });

  test("a body over the read limit sent in chunks (no content-length) is refused RESOURCE_EXHAUSTED in the caller's protocol over HTTP/1.1 as over HTTP/2, never a reset", async () => {
    const over = "x".repeat(1_200_000);
    const message = toBinary(GetQrCodeRequestSchema, create(GetQrCodeRequestSchema, { qrCodeId: over }));
    const grpcWeb = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), message]);
    grpcWeb.writeUInt32BE(message.byteLength, 1);
    const bodies: Record<string, Uint8Array> = { "application/json": Buffer.from(JSON.stringify({ qrCodeId: over })), "application/proto": message, "application/grpc-web+proto": grpcWeb };
    const answers: string[] = [];
    for (const [type, body] of Object.entries(bodies)) {
      for (const version of ["HTTP/1.1", "HTTP/2"] as const) {
        const answer = await (version === "HTTP/1.1" ? postChunkedHttp1 : postHttp2)(`${server.url}/${QrService.typeName}/GetQrCode`, type, body);
        answers.push(`${type} over ${version}: ${answeredCode(answer)}`);
      }
    }
    assert.deepEqual(answers, [
      "application/json over HTTP/1.1: 429 resource_exhausted",
      "application/json over HTTP/2: 429 resource_exhausted",
      "application/proto over HTTP/1.1: 429 resource_exhausted",
      "application/proto over HTTP/2: 429 resource_exhausted",
      `application/grpc-web+proto over HTTP/1.1: 200 ${Code.ResourceExhausted}`,
      `application/grpc-web+proto over HTTP/2: 200 ${Code.ResourceExhausted}`,
    ]);
  });

  test("a binary Connect request whose content type has parameters is refused as connect-es refuses it (415), not answered", async () => {
    const body = toBinary(GetQrCodeRequestSchema, create(GetQrCodeRequestSchema, { qrCodeId: randomUUID() }));
    const statuses: Record<string, number> = {};
    for (const type of ["application/proto; charset=utf-8", "application/proto;v=1", "application/proto"]) {
      serverSaw.length = 0;
      statuses[type] = await new Promise<number>((resolve, reject) => {
        const req = http.request(`${server.url}/${QrService.typeName}/GetQrCode`, { method: "POST", headers: { "content-type": type, "connect-protocol-version": "1" } }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        req.end(body);
      });
      assert.equal(serverSaw.length, type === "application/proto" ? 1 : 0, `${type}: reached the interceptors`);
    }
    assert.deepEqual(statuses, { "application/proto; charset=utf-8": 415, "application/proto;v=1": 415, "application/proto": 200 });
  });

  test("a unary method's interceptors are put around its handler once, not on every call: in process and over Connect, client and server", async () => {
    let clientChains = 0;
    const asCounted: Interceptor = (next) => {
      clientChains++;
      return asCaller(next);
    };
    const inProcess = createClient(QrService, localTransport(server.local, [asCounted]));
    const session = new UpstreamSession(server.url);
    const overConnect = createClient(QrService, internalTransport(server.url, session, [asCaller]));
    const calls = async () => {
      serverSaw.length = 0;
      for (let i = 0; i < 5; i++) {
        await inProcess.getQrCode({ qrCodeId: randomUUID() });
        await overConnect.getQrCode({ qrCodeId: randomUUID() });
      }
      assert.equal(serverSaw.length, 10, "every call went through the server's interceptors");
    };
    // The first calls of each road may make its chains.
    await calls();
    const [server0, client0] = [serverChains.made, clientChains];
    await calls();
    assert.equal(serverChains.made, server0, "the server's chain made again for a call");
    assert.equal(clientChains, client0, "the in-process client's chain made again for a call");
    session.close();
  });

  test("in process: a stream's handler runs at most one message ahead of a slow reader", async () => {
    endless.ended.length = 0;
    const caller = new AbortController();
    const it = createClient(PaymentService, localTransport(server.local, [asCaller])).watchTip({ tipId: ENDLESS }, { signal: caller.signal })[Symbol.asyncIterator]();
    for (let read = 1; read <= 3; read++) assert.equal((await it.next()).value?.tip?.tipId, String(read));
    // Many turns of the event loop in which an unbounded handler would keep producing.
    for (let turn = 0; turn < 50; turn++) await new Promise((resolve) => setImmediate(resolve));
    assert.ok(endless.produced <= 4, `the handler produced ${endless.produced} messages for a reader that took 3`);
    caller.abort();
    await eventually("the stream's handler ended", () => endless.ended.length === 1);
  });
});

describe("an in-process call's deadline", () => {
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  /** The call, and how it ended: its signal's reason's code and what `stopped` heard. */
  const watched = (call: LocalCall) => {
    let heard: Code | undefined;
    call.stopped = (reason) => (heard = reason.code);
    const ended = eventually("the call's signal aborted", () => call.signal.aborted).then(() => ({ signal: ConnectError.from(call.signal.reason).code, heard }));
    return { call, ended };
  };

  test("under a caller whose deadline comes first, a call arms no timer of its own and still ends DEADLINE_EXCEEDED by then; under one without, or with a later one, it arms its own", async () => {
    const caller = new LocalCall(undefined, 100);
    const armed = timers();
    const passedOn = watched(new LocalCall(caller.signal, 100));
    const later = watched(new LocalCall(caller.signal, 60_000));
    assert.equal(timers(), armed, "a call under its caller's earlier deadline armed a timer");
    const deadline = { signal: Code.DeadlineExceeded, heard: Code.DeadlineExceeded };
    assert.deepEqual(await passedOn.ended, deadline);
    assert.deepEqual(await later.ended, deadline);

    const base = timers();
    const own = watched(new LocalCall(new AbortController().signal, 100));
    const patient = new LocalCall(undefined, 60_000);
    const sooner = watched(new LocalCall(patient.signal, 100));
    assert.equal(timers(), base + 3, "a call without an earlier deadline above it has no timer");
    assert.deepEqual(await own.ended, deadline);
    assert.deepEqual(await sooner.ended, deadline);
    assert.equal(patient.signal.aborted, false);
    patient.done();
  });
});
