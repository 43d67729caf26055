// Unary calls between our processes in frames (frames.ts): on a connection of
// their own beside HTTP/2 on the same port, answered by the same server path
// (headers, trailers, message), the caller's deadline and cancellation heard by
// the handler, a lost connection UNAVAILABLE, a drain answering what is in
// flight, and HTTP/2 where frames do not go (a method not served from a frame,
// a server without frames).
import assert from "node:assert/strict";
import { once } from "node:events";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { PaymentService, WatchTipRequestSchema } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { BY_HTTP2, CorkedWriter, FrameLink, FrameReset, frameServer, FRAMES_PREFACE, STREAM_WINDOW_BYTES, type FrameOutcome } from "../src/frames.js";
import { internalTransport, Metrics, startServer, UpstreamSession, type RunningServer } from "../src/index.js";
import { captureLogger, eventually } from "../src/testing/index.js";

/** GetQrCode for this id waits until its signal aborts and records why. */
const WAITS = randomUUID();
const [NEXT, BEFORE, AFTER] = [randomUUID(), randomUUID(), randomUUID()];

/** A TCP tap in front of `port`: the first bytes of each connection, and a way to cut them all. */
async function tap(port: number) {
  const firstBytes: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    sockets.add(client).add(upstream);
    client.once("data", (chunk: Buffer) => firstBytes.push(chunk));
    client.pipe(upstream).pipe(client);
    for (const s of [client, upstream]) s.on("error", () => undefined).once("close", () => (client.destroy(), upstream.destroy()));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    firstBytes,
    /** Connections that opened with the frames' preface. */
    frames: () => firstBytes.filter((b) => b.subarray(0, FRAMES_PREFACE.length).equals(FRAMES_PREFACE)).length,
    cut: () => sockets.forEach((s) => s.destroy()),
    close: () => (sockets.forEach((s) => s.destroy()), new Promise((resolve) => server.close(resolve))),
  };
}

describe("unary calls in frames between our processes", () => {
  let server: RunningServer;
  const aborted: Array<Code | undefined> = [];
  /** Calls of a method served by connect-node (not from the exchange): it answers by HTTP/2. */
  let venueCalls = 0;

  before(async () => {
    server = await startServer({
      name: "test",
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      services: [QrService, VenueService],
      routes: (router) => {
        router.service(QrService, {
          getQrCode: async (req, ctx) => {
            if (req.qrCodeId === WAITS) {
              // Already aborted when it starts (its CANCEL read with its request, on a loaded machine): no abort event comes.
              if (!ctx.signal.aborted) await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
              aborted.push(ConnectError.from(ctx.signal.reason).code);
              throw ConnectError.from(ctx.signal.reason);
            }
            ctx.responseHeader.set("x-test-answer", "seen");
            ctx.responseTrailer.set("x-test-end", "done");
            return { qrCode: { qrCodeId: req.qrCodeId, shortCode: "K7M4QX" } };
          },
        });
        // Registered alone (router.rpc): connect-node serves it, not the exchange path.
        router.rpc(VenueService.method.listRoles, async () => (venueCalls++, { roles: [{ roleId: "front_of_house", name: "Ukumbi" }] }));
      },
    });
  });
  after(() => server.close());

  /** A client in frames through a fresh tap (each test sees its own connections). */
  async function client() {
    const t = await tap(server.port);
    const session = new UpstreamSession(t.url, {}, undefined, true);
    const transport = internalTransport(t.url, session, []);
    return { t, qr: createClient(QrService, transport), venue: createClient(VenueService, transport), health: createClient(Health, transport), close: () => (session.close(), t.close()) };
  }

  test("calls go in frames on one connection, answered as on HTTP/2: message, headers and trailers", async () => {
    const c = await client();
    try {
      let header: Headers | undefined;
      let trailer: Headers | undefined;
      const ids = [randomUUID(), randomUUID(), randomUUID()];
      const answers = await Promise.all(ids.map((id) => c.qr.getQrCode({ qrCodeId: id }, { onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) })));
      assert.deepEqual(answers.map((a) => a.qrCode?.qrCodeId), ids);
      assert.equal(header?.get("x-test-answer"), "seen");
      assert.equal(trailer?.get("x-test-end"), "done");
      assert.equal((await c.health.check({ service: QrService.typeName })).status, Status.SERVING);
      assert.equal(c.t.firstBytes.length, 1, "one connection for every call");
      assert.equal(c.t.frames(), 1, "in frames, not HTTP/2");
    } finally {
      await c.close();
    }
  });

  test("the caller's deadline: DEADLINE_EXCEEDED, the handler hears it on its signal, the connection serves the next call", async () => {
    const c = await client();
    try {
      // The connection open first: a deadline passing while it opens sends the call nowhere, and no handler hears it.
      assert.equal((await c.qr.getQrCode({ qrCodeId: BEFORE })).qrCode?.qrCodeId, BEFORE);
      aborted.length = 0;
      const started = Date.now();
      await assert.rejects(c.qr.getQrCode({ qrCodeId: WAITS }, { timeoutMs: 1_000 }), (err: unknown) => ConnectError.from(err).code === Code.DeadlineExceeded);
      // How late it may end is bounded generously: the handler never answers, so only the deadline ends the call.
      assert.ok(Date.now() - started < 15_000, `ended ${Date.now() - started} ms after a deadline of 1000 ms`);
      await eventually("the handler heard the deadline", () => aborted.length > 0);
      // Its own deadline (the timeout header) or the caller's CANCEL at the same moment, whichever comes first, as on HTTP/2.
      assert.ok(aborted.length === 1 && (aborted[0] === Code.DeadlineExceeded || aborted[0] === Code.Canceled), `heard ${aborted}`);
      assert.equal((await c.qr.getQrCode({ qrCodeId: NEXT })).qrCode?.qrCodeId, NEXT);
      assert.equal(c.t.firstBytes.length, 1);
    } finally {
      await c.close();
    }
  });

  test("the caller gives up: CANCELED for it, and the handler hears the cancellation", async () => {
    const c = await client();
    try {
      aborted.length = 0;
      const giveUp = new AbortController();
      const call = c.qr.getQrCode({ qrCodeId: WAITS }, { signal: giveUp.signal });
      await c.qr.getQrCode({ qrCodeId: BEFORE }); // the waiting call went out before this one's answer
      giveUp.abort();
      await assert.rejects(call, (err: unknown) => ConnectError.from(err).code === Code.Canceled);
      await eventually("the handler heard the cancellation", () => aborted.length > 0);
      assert.deepEqual(aborted, [Code.Canceled]);
    } finally {
      await c.close();
    }
  });

  test("the connection lost under a call: UNAVAILABLE for the caller, the handler hears it; the next call opens a new connection", async () => {
    const c = await client();
    try {
      aborted.length = 0;
      const call = c.qr.getQrCode({ qrCodeId: WAITS });
      await c.qr.getQrCode({ qrCodeId: BEFORE });
      c.t.cut();
      await assert.rejects(call, (err: unknown) => ConnectError.from(err).code === Code.Unavailable);
      await eventually("the handler heard the cancellation", () => aborted.length > 0);
      assert.deepEqual(aborted, [Code.Canceled]);
      assert.equal((await c.qr.getQrCode({ qrCodeId: AFTER })).qrCode?.qrCodeId, AFTER);
      assert.equal(c.t.frames(), 2);
    } finally {
      await c.close();
    }
  });

  test("a method the server does not serve from a frame goes by HTTP/2, handled once", async () => {
    const c = await client();
    try {
      venueCalls = 0;
      assert.equal((await c.venue.listRoles({ venueId: randomUUID() })).roles[0]?.name, "Ukumbi");
      assert.equal(venueCalls, 1);
      assert.equal(c.t.frames(), 1);
      assert.equal(c.t.firstBytes.length, 2, "the frames' connection and HTTP/2's");
    } finally {
      await c.close();
    }
  });

  test("a server without frames (bare HTTP/2): the calls go by HTTP/2", async () => {
    const bare = http2.createServer();
    bare.on("stream", (stream) => {
      stream.resume();
      stream.once("end", () => {
        stream.respond({ ":status": 200, "content-type": "application/proto" });
        stream.end(Buffer.from([0x08, 0x01])); // SERVING
      });
    });
    bare.listen(0, "127.0.0.1");
    await once(bare, "listening");
    const url = `http://127.0.0.1:${(bare.address() as AddressInfo).port}`;
    const session = new UpstreamSession(url, {}, undefined, true);
    try {
      const health = createClient(Health, internalTransport(url, session, []));
      assert.equal((await health.check({ service: "" }, { timeoutMs: 5_000 })).status, Status.SERVING);
      assert.equal((await health.check({ service: "" }, { timeoutMs: 5_000 })).status, Status.SERVING);
    } finally {
      session.close();
      await new Promise((resolve) => bare.close(resolve));
    }
  });
});

test("a drain answers the call in frames on its way; the process's next call is refused (its listener closed)", async () => {
  let release = () => {};
  let started = () => {};
  const inHandler = new Promise<void>((resolve) => (started = resolve));
  const server = await startServer({
    name: "draining",
    logger: captureLogger("silent").logger,
    metrics: new Metrics(),
    services: [QrService],
    routes: (router) =>
      router.service(QrService, {
        getQrCode: async (req) => {
          started();
          await new Promise<void>((resolve) => (release = resolve));
          return { qrCode: { qrCodeId: req.qrCodeId } };
        },
      }),
  });
  const session = new UpstreamSession(server.url, {}, undefined, true);
  try {
    const qr = createClient(QrService, internalTransport(server.url, session, []));
    const id = randomUUID();
    const onItsWay = qr.getQrCode({ qrCodeId: id });
    await inHandler;
    const closed = server.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    assert.equal((await onItsWay).qrCode?.qrCodeId, id);
    await closed;
    await assert.rejects(qr.getQrCode({ qrCodeId: randomUUID() }, { timeoutMs: 2_000 }), (err: unknown) => ConnectError.from(err).code === Code.Unavailable);
  } finally {
    session.close();
    await server.close();
  }
});

/** A REQUEST frame as our client writes it: length, type 1, id, the head's length and JSON, no body. */
function requestFrame(id: number, path: string): Buffer {
  const head = Buffer.from(JSON.stringify({ ":path": path, "content-type": "application/proto" }));
  const prefix = Buffer.alloc(13);
  prefix.writeUInt32BE(9 + head.length, 0);
  prefix[4] = 1;
  prefix.writeUInt32BE(id, 5);
  prefix.writeUInt32BE(head.length, 9);
  return Buffer.concat([prefix, head]);
}

test("a client that sends calls and reads no answer: the server stops reading its calls once a bound of answers waits unsent, and reads on when they are read", async () => {
  const ANSWER_BYTES = 1024 * 1024;
  const CALLS = 64; // 64 MiB of answers: more than the kernel's socket buffers hold
  let served = 0;
  const frames = frameServer({
    serve: (exchange) => (served++, exchange.respond(200, { "content-type": "application/proto" }, Buffer.alloc(ANSWER_BYTES)), true),
    track: () => undefined,
    maxAgeMs: 0,
  });
  let accepted: net.Socket | undefined;
  const listener = net.createServer((socket) => {
    accepted = socket;
    socket.on("error", () => socket.destroy());
    socket.once("data", (head: Buffer) => (socket.pause(), frames.accept(socket, head)));
  });
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  const client = net.connect((listener.address() as AddressInfo).port, "127.0.0.1");
  try {
    await once(client, "connect");
    client.pause(); // reads nothing until told
    client.write(FRAMES_PREFACE);
    for (let id = 1; id <= CALLS; id++) client.write(requestFrame(id, "/ttip.qr.v1.QrService/GetQrCode"));
    await eventually("the server stopped reading, its answers unsent", () => accepted && accepted.isPaused() && accepted.writableLength > 0);
    assert.ok(served < CALLS, `served ${served} of ${CALLS} calls to a client that reads nothing`);
    const unsent = accepted!.writableLength;
    assert.ok(unsent < 3 * ANSWER_BYTES, `${unsent} bytes of answers held for a client that reads nothing`);
    let read = 0;
    client.on("data", (chunk: Buffer) => (read += chunk.length));
    client.resume();
    // 64 MiB through loopback: on a loaded machine far longer than eventually's usual 15 s, so a generous bound.
    await eventually("every call answered once the client reads", () => served === CALLS && read >= CALLS * ANSWER_BYTES, 120_000);
  } finally {
    client.destroy();
    await new Promise((resolve) => listener.close(resolve));
  }
});

test("a server with frames off (a mesh's proxy on the port) answers the preface as HTTP/1.1 does, and a frames client's calls go by HTTP/2, each handled once", async () => {
  let calls = 0;
  const server = await startServer({
    name: "frames-off",
    logger: captureLogger("silent").logger,
    metrics: new Metrics(),
    services: [QrService],
    frames: false,
    routes: (router) => router.service(QrService, { getQrCode: async (req) => (calls++, { qrCode: { qrCodeId: req.qrCodeId } }) }),
  });
  const session = new UpstreamSession(server.url, {}, undefined, true);
  try {
    const raw = net.connect(server.port, "127.0.0.1");
    raw.on("error", () => undefined);
    raw.write(FRAMES_PREFACE);
    const [first] = (await once(raw, "data")) as [Buffer];
    raw.destroy();
    assert.match(first.toString("latin1"), /^HTTP\/1\.1 400/);
    const qr = createClient(QrService, internalTransport(server.url, session, []));
    const id = randomUUID();
    assert.equal((await qr.getQrCode({ qrCodeId: id }, { timeoutMs: 5_000 })).qrCode?.qrCodeId, id);
    assert.equal(calls, 1);
  } finally {
    session.close();
    await server.close();
  }
});

/**
 * A front to `port` whose connections that open with the frames' preface are refused (answered as
 * HTTP/1.1 does), swallowed (held unanswered, as a proxy that waits for more) or passed on, by its
 * mode at their first bytes; every other connection is passed on.
 */
async function prefaceFront(port: number) {
  let mode: "refuse" | "swallow" | "pass" = "refuse";
  const held = new Set<net.Socket>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client.on("error", () => undefined));
    client.once("data", (first: Buffer) => {
      const frames = first.subarray(0, FRAMES_PREFACE.length).equals(FRAMES_PREFACE);
      if (frames && mode === "refuse") return void client.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      if (frames && mode === "swallow") return void held.add(client);
      const upstream = net.connect(port, "127.0.0.1");
      sockets.add(upstream.on("error", () => undefined));
      upstream.write(first);
      client.pipe(upstream).pipe(client);
      client.once("close", () => upstream.destroy());
      upstream.once("close", () => client.destroy());
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setMode: (m: typeof mode) => (mode = m),
    /** Connections held unanswered (the client's still open). */
    held: () => [...held].filter((s) => !s.destroyed).length,
    release: () => held.forEach((s) => s.destroy()),
    close: () => (sockets.forEach((s) => s.destroy()), new Promise((resolve) => server.close(resolve))),
  };
}

test("once a server was found not to speak frames, no call waits for a preface again: calls go by HTTP/2 at once while a connection is tried in the background, and in frames once one answers", async () => {
  const server = await startServer({ name: "behind", logger: captureLogger("silent").logger, metrics: new Metrics(), services: [QrService], routes: () => undefined });
  const front = await prefaceFront(server.port);
  // A preface unanswered waits for ever here: a call that waited for one would never end.
  const link = new FrameLink(front.url, { prefaceTimeoutMs: 10 * 60_000, retryFramesAfterMs: 0 });
  const check = (): Promise<FrameOutcome> =>
    link.exchange("/grpc.health.v1.Health/Check", { "content-type": "application/proto", "connect-protocol-version": "1" }, new Uint8Array(0), new AbortController().signal);
  try {
    assert.equal(await check(), BY_HTTP2, "refused: by HTTP/2");
    front.setMode("swallow");
    assert.equal(await check(), BY_HTTP2, "by HTTP/2 at once, its preface swallowed meanwhile");
    await eventually("the background connection reached the front", () => front.held() === 1);
    assert.equal(await check(), BY_HTTP2, "by HTTP/2, no second connection while one is tried");
    assert.equal(front.held(), 1);
    front.setMode("pass");
    front.release(); // the swallowed connection closes: still no frames
    await eventually("a connection in frames, tried in the background, carries the calls", async () => {
      const outcome = await check();
      return outcome !== BY_HTTP2 && typeof outcome === "object" && outcome.status === 200;
    });
  } finally {
    link.close();
    await front.close();
    await server.close();
  }
});

describe("server streams in frames between our processes", () => {
  let server: RunningServer;
  /** How many messages the endless stream produced, and whether its signal had aborted (and why) when it ended. */
  const endless = { produced: 0, ended: [] as Array<Code | undefined> };
  /** ENDLESS's messages carry this many bytes of padding (a slow reader's window fills in a few). */
  const PADDING = 16 * 1024;
  const ENDLESS = randomUUID();

  before(async () => {
    server = await startServer({
      name: "streams",
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      services: [PaymentService],
      routes: (router) =>
        router.service(PaymentService, {
          watchTip: async function* (req, ctx) {
            ctx.responseHeader.set("x-test-answer", "watching");
            if (req.tipId !== ENDLESS) {
              yield { tip: { tipId: "1" } };
              yield { tip: { tipId: "2" } };
              ctx.responseTrailer.set("x-test-end", "done");
              return;
            }
            try {
              for (endless.produced = 0; !ctx.signal.aborted; ) {
                yield { tip: { tipId: String(++endless.produced), message: "x".repeat(PADDING) } };
                await new Promise((resolve) => setImmediate(resolve));
              }
            } finally {
              endless.ended.push(ctx.signal.aborted ? ConnectError.from(ctx.signal.reason).code : undefined);
            }
          },
        }),
    });
  });
  after(() => server.close());

  async function client() {
    const t = await tap(server.port);
    const session = new UpstreamSession(t.url, {}, undefined, true);
    const transport = internalTransport(t.url, session, []);
    return { t, transport, payment: createClient(PaymentService, transport), close: () => (session.close(), t.close()) };
  }

  /** The endless stream through `transport` directly (connect-es's client keeps a reader's return() from the stream). */
  function endlessStream(transport: ReturnType<typeof internalTransport>, signal?: AbortSignal) {
    return transport.stream(PaymentService.method.watchTip, signal, 30_000, undefined, (async function* () {
      yield create(WatchTipRequestSchema, { tipId: ENDLESS });
    })());
  }

  test("a stream goes in frames on the unary calls' connection: its messages, headers and trailers", async () => {
    const c = await client();
    try {
      let header: Headers | undefined;
      let trailer: Headers | undefined;
      const seen: string[] = [];
      for await (const m of c.payment.watchTip({ tipId: randomUUID() }, { timeoutMs: 5_000, onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) })) seen.push(m.tip!.tipId);
      assert.deepEqual(seen, ["1", "2"]);
      assert.equal(header?.get("x-test-answer"), "watching");
      assert.equal(trailer?.get("x-test-end"), "done");
      assert.equal(c.t.firstBytes.length, 1, "one connection");
      assert.equal(c.t.frames(), 1, "in frames, not HTTP/2");
    } finally {
      await c.close();
    }
  });

  test("a reader that stops cancels the stream: the handler hears CANCELED and ends", async () => {
    const c = await client();
    try {
      endless.ended.length = 0;
      const res = await endlessStream(c.transport);
      let read = 0;
      for await (const _ of res.message) if (++read === 2) break;
      await eventually("the stream's handler ended", () => endless.ended.length === 1);
      assert.deepEqual(endless.ended, [Code.Canceled]);
    } finally {
      await c.close();
    }
  });

  test("a slow reader holds the handler, not memory: it runs at most a window ahead, and on as the reader reads", async () => {
    const c = await client();
    try {
      endless.ended.length = 0;
      const caller = new AbortController();
      const res = await endlessStream(c.transport, caller.signal);
      const it = res.message[Symbol.asyncIterator]();
      assert.equal((await it.next()).value?.tip?.tipId, "1");
      // Many turns of the event loop in which an unbounded handler would keep producing.
      for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
      // The client's window (64 KiB) of 16 KiB messages, a message in each side's hands, the socket's buffers' none (flow control is per call).
      assert.ok(endless.produced <= 8, `the handler produced ${endless.produced} messages for a reader that took 1`);
      for (let read = 2; read <= 40; read++) assert.equal((await it.next()).value?.tip?.tipId, String(read));
      assert.ok(endless.produced >= 40);
      caller.abort();
      await assert.rejects(it.next(), (err: unknown) => ConnectError.from(err).code === Code.Canceled);
      await eventually("the stream's handler ended", () => endless.ended.length === 1);
      assert.deepEqual(endless.ended, [Code.Canceled]);
    } finally {
      await c.close();
    }
  });

  test("a client that stops reading and never cancels (its host gone silent): its full window holds the handler until the call's deadline, not for ever", async () => {
    const link = new FrameLink(`http://127.0.0.1:${server.port}`);
    try {
      endless.ended.length = 0;
      const message = toBinary(WatchTipRequestSchema, create(WatchTipRequestSchema, { tipId: ENDLESS }));
      const envelope = Buffer.alloc(5 + message.length);
      envelope.writeUInt32BE(message.length, 1);
      envelope.set(message, 5);
      const headers = { "content-type": "application/connect+proto", "connect-protocol-version": "1", "connect-timeout-ms": "300" };
      // A signal that never aborts and a body never read: only the server's own deadline can end the call.
      const outcome = await link.stream("/ttip.payment.v1.PaymentService/WatchTip", headers, envelope, new AbortController().signal);
      assert.ok(typeof outcome === "object", "answered in frames");
      await eventually("the stream's handler ended", () => endless.ended.length === 1);
      assert.deepEqual(endless.ended, [Code.DeadlineExceeded]);
      const read = (async () => {
        for await (const _ of outcome.body);
      })();
      await assert.rejects(read, (err: unknown) => err instanceof FrameReset, "the answer cut short, never read as complete");
    } finally {
      link.close();
    }
  });

  test("a client announcing a window past ours (2 GiB) is held to STREAM_WINDOW_BYTES: the handler runs at most that far ahead of its reader", async () => {
    endless.ended.length = 0;
    const message = toBinary(WatchTipRequestSchema, create(WatchTipRequestSchema, { tipId: ENDLESS }));
    const body = Buffer.alloc(5 + message.length);
    body.writeUInt32BE(message.length, 1);
    body.set(message, 5);
    const head = Buffer.from(
      JSON.stringify({ ":path": "/ttip.payment.v1.PaymentService/WatchTip", "content-type": "application/connect+proto", "connect-protocol-version": "1", ":window": String(2 ** 31 - 1) }),
    );
    const prefix = Buffer.alloc(13);
    prefix.writeUInt32BE(9 + head.length + body.length, 0);
    prefix[4] = 1; // REQUEST
    prefix.writeUInt32BE(1, 5);
    prefix.writeUInt32BE(head.length, 9);
    const socket = net.connect(server.port, "127.0.0.1");
    try {
      await once(socket, "connect");
      let read = 0;
      // Reads everything the server sends, and never grants a WINDOW.
      socket.on("data", (chunk: Buffer) => (read += chunk.length));
      socket.write(Buffer.concat([FRAMES_PREFACE, prefix, head, body]));
      await eventually("the stream's first messages came", () => read > FRAMES_PREFACE.length + PADDING);
      // Many turns of the event loop in which a handler held only by the client's word would keep producing.
      for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
      assert.ok(endless.produced <= 8, `the handler produced ${endless.produced} messages of ${PADDING} bytes for a client that granted no more than its announced window`);
      assert.ok(read < 2 * STREAM_WINDOW_BYTES, `${read} bytes sent`);
    } finally {
      socket.destroy();
      await eventually("the stream's handler ended", () => endless.ended.length === 1);
    }
  });

  test("the connection lost mid-stream (the peer's process gone): UNAVAILABLE for the reader, the handler hears it; the next stream opens a new connection", async () => {
    const c = await client();
    try {
      endless.ended.length = 0;
      const res = await endlessStream(c.transport);
      const it = res.message[Symbol.asyncIterator]();
      await it.next();
      c.t.cut();
      const err = await (async () => {
        for (let r = await it.next(); !r.done; r = await it.next());
      })().then(() => undefined, (e: unknown) => ConnectError.from(e));
      assert.equal(err?.code, Code.Unavailable, err?.message);
      await eventually("the stream's handler ended", () => endless.ended.length === 1);
      assert.deepEqual(endless.ended, [Code.Canceled]);
      const seen: string[] = [];
      for await (const m of c.payment.watchTip({ tipId: randomUUID() }, { timeoutMs: 5_000 })) seen.push(m.tip!.tipId);
      assert.deepEqual(seen, ["1", "2"]);
      assert.equal(c.t.frames(), 2);
    } finally {
      await c.close();
    }
  });
});

test("a streamed call answered whole (RESPONSE: a check's refusal, say) larger than the client's window is read, and breaks no connection", async () => {
  const BIG = 100 * 1024; // past the stream window (64 KiB): a whole answer is not flow-controlled
  const frames = frameServer({
    serve: (exchange) => (exchange.respond(200, { "content-type": "application/connect+proto" }, Buffer.alloc(BIG, 7)), true),
    track: () => undefined,
    maxAgeMs: 0,
  });
  const listener = net.createServer((socket) => {
    socket.on("error", () => socket.destroy());
    socket.once("data", (head: Buffer) => (socket.pause(), frames.accept(socket, head)));
  });
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  const link = new FrameLink(`http://127.0.0.1:${(listener.address() as AddressInfo).port}`);
  try {
    const outcome = await link.stream("/ttip.payment.v1.PaymentService/WatchTip", {}, Buffer.alloc(5), new AbortController().signal);
    assert.ok(typeof outcome === "object", "answered in frames");
    let bytes = 0;
    for await (const part of outcome.body) bytes += part.length;
    assert.equal(bytes, BIG);
  } finally {
    link.close();
    frames.goAway();
    await new Promise((resolve) => listener.close(resolve));
  }
});

test("frames written in several tasks of one turn (answers finishing on replies of their own) go out in one write", async () => {
  const listener = net.createServer((socket) => socket.resume());
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  const socket = net.connect((listener.address() as AddressInfo).port, "127.0.0.1");
  await once(socket, "connect");
  // Each _write or _writev is one system call that wakes the other side.
  let writes = 0;
  const counted = socket as unknown as { _write: (...a: unknown[]) => unknown; _writev: (...a: unknown[]) => unknown };
  for (const name of ["_write", "_writev"] as const) {
    const original = counted[name].bind(socket);
    counted[name] = (...args: unknown[]) => (writes++, original(...args));
  }
  try {
    const writer = new CorkedWriter(socket);
    // Three immediates queued together run in one turn, each a task of its own (as three sockets' replies read in one
    // poll). Not timers: under load, timers made a millisecond apart can fall due in different turns.
    await Promise.all([1, 2, 3].map((n) => new Promise<void>((resolve) => setImmediate(() => (writer.write([Buffer.from([n]), Buffer.from("frame")]), resolve())))));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(writes, 1);
  } finally {
    socket.destroy();
    await new Promise((resolve) => listener.close(resolve));
  }
});
