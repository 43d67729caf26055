// Connections that send nothing end: anyone who reaches a service's port could
// otherwise hold connections open for ever. One still sending its first bytes
// (its protocol unknown) is closed after a while from its accept, and the
// oldest of them when too many wait at once; HTTP/1.1 answers headers that
// never end 408; an idle HTTP/2 session or frames connection is told GOAWAY,
// and cut an idle period later when its client does not close it. The limits
// are made tiny here and the tests wait for the close itself, never a duration.
import assert from "node:assert/strict";
import { once } from "node:events";
import http2 from "node:http2";
import net from "node:net";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { frameServer, FRAMES_PREFACE } from "../src/frames.js";
import { internalTransport, Metrics, startServer, UpstreamSession, type ConnectionLimits } from "../src/index.js";
import { captureLogger, eventually } from "../src/testing/index.js";

const LONG = 10 * 60_000;
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function qrServer(limits: Partial<ConnectionLimits>) {
  return startServer({
    name: "idle",
    logger: captureLogger("silent").logger,
    metrics: new Metrics(),
    services: [QrService],
    connectionLimits: { firstBytesMs: LONG, idleMs: LONG, ...limits },
    routes: (router) => router.service(QrService, { getQrCode: async (req) => ({ qrCode: { qrCodeId: req.qrCodeId } }) }),
  });
}

/** A raw connection to `port` that sends `first` and then nothing; `halfOpen`: it keeps its half open when the server ends its (a client that ignores it). */
async function raw(port: number, first: Buffer[] = [], halfOpen = false) {
  const socket = net.connect({ port, host: "127.0.0.1", allowHalfOpen: halfOpen });
  socket.on("error", () => undefined);
  const read: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => read.push(chunk));
  // Not events.once: a reset (the server cut it with bytes unread) is an 'error', and a close all the same.
  const ended = new Promise<Buffer>((resolve) => socket.once("end", () => resolve(Buffer.concat(read))));
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  await once(socket, "connect");
  for (const bytes of first) socket.write(bytes);
  return { socket, read: () => Buffer.concat(read), ended, closed };
}

/** A TCP front to `port` that counts the connections opened through it and those closed. */
async function countingProxy(port: number) {
  let [opened, closed] = [0, 0];
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    opened++;
    const upstream = net.connect(port, "127.0.0.1");
    for (const s of [client, upstream]) sockets.add(s.on("error", () => undefined));
    client.pipe(upstream).pipe(client);
    client.once("close", () => (closed++, upstream.destroy()));
    upstream.once("close", () => client.destroy());
  });
  proxy.listen(0, "127.0.0.1");
  await once(proxy, "listening");
  return {
    url: `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
    opened: () => opened,
    closed: () => closed,
    close: () => (sockets.forEach((s) => s.destroy()), new Promise((resolve) => proxy.close(resolve))),
  };
}

/**
 * `call` made again until answered: with a 50 ms limit, a pause of the process longer than that (a loaded
 * machine) between a connection's accept and the reading of its first bytes or its call has the server close
 * it or refuse the call unprocessed at each of the client's sends (UNAVAILABLE), as a caller then tries again.
 * Any other error fails.
 */
async function untilAnswered(call: () => Promise<boolean>): Promise<boolean> {
  const unavailable = (err: unknown) => {
    if (ConnectError.from(err).code !== Code.Unavailable) throw err;
    return false;
  };
  return eventually("a call answered", () => call().catch(unavailable), 60_000);
}

/** One call in frames through a session of our own; true when answered. */
async function callInFrames(url: string): Promise<boolean> {
  const session = new UpstreamSession(url, {}, undefined, true);
  try {
    const id = randomUUID();
    const answer = await createClient(QrService, internalTransport(url, session, [])).getQrCode({ qrCodeId: id }, { timeoutMs: 10_000 });
    return answer.qrCode?.qrCodeId === id;
  } finally {
    session.close();
  }
}

test("a connection that sends nothing, or only part of a preface (HTTP/2's, the frames'), is closed; the port serves on", async () => {
  const server = await qrServer({ firstBytesMs: 50 });
  try {
    const silent = await raw(server.port);
    const halfH2 = await raw(server.port, [H2_PREFACE.subarray(0, 10)]);
    const halfFrames = await raw(server.port, [FRAMES_PREFACE.subarray(0, 6)]);
    await Promise.all([silent.closed, halfH2.closed, halfFrames.closed]);
    for (const c of [silent, halfH2, halfFrames]) assert.equal(c.read().length, 0, "closed unanswered");
    assert.ok(await untilAnswered(() => callInFrames(server.url)));
  } finally {
    await server.close();
  }
});

test("past the bound of connections still sending their first bytes, the one that waited longest is closed first", async () => {
  const server = await qrServer({ maxFirstBytes: 2 });
  const order: string[] = [];
  try {
    const conns = [];
    for (const name of ["first", "second", "third", "fourth"]) {
      const c = await raw(server.port);
      void c.closed.then(() => order.push(name));
      conns.push(c); // each connected before the next: the server accepts them in this order
    }
    await eventually("two closed", () => order.length >= 2);
    assert.deepEqual(order, ["first", "second"]);
    for (const c of conns) c.socket.destroy();
  } finally {
    await server.close();
  }
});

test("HTTP/1.1 headers that never end are answered 408 and closed", async () => {
  const server = await qrServer({ http1HeadersMs: 50 });
  try {
    const slow = await raw(server.port, [Buffer.from("GET /healthz HTTP/1.1\r\nHost: x\r\n")]);
    await slow.closed;
    assert.match(slow.read().toString("latin1"), /^HTTP\/1\.1 408/);
  } finally {
    await server.close();
  }
});

test("an idle frames connection is told GOAWAY, and cut an idle period later when its client keeps it open", async () => {
  const frames = frameServer({ serve: () => false, track: () => undefined, maxAgeMs: 0, idleTimeoutMs: 50 });
  const accepted: net.Socket[] = [];
  const listener = net.createServer((socket) => {
    accepted.push(socket.on("error", () => undefined));
    socket.once("data", (head: Buffer) => (socket.pause(), frames.accept(socket, head)));
  });
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  try {
    const idle = await raw((listener.address() as net.AddressInfo).port, [FRAMES_PREFACE], true);
    const heard = await idle.ended; // the server's end, after its GOAWAY
    assert.ok(heard.subarray(0, FRAMES_PREFACE.length).equals(FRAMES_PREFACE));
    const goAway = heard.subarray(FRAMES_PREFACE.length);
    assert.deepEqual([goAway.length, goAway[4], goAway.readUInt32BE(5)], [9, 5, 0], "GOAWAY, no call taken");
    if (!accepted[0].destroyed) await once(accepted[0], "close"); // cut: this client never closed its half
    idle.socket.destroy();
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
});

test("a client of ours closes its frames connection when the server finds it idle, and the next call opens another", async () => {
  const server = await qrServer({ idleMs: 50 });
  try {
    // Our client's connection is told GOAWAY between calls too: it closes it, and the next call opens another.
    // Counted, not timed: a pause of the process longer than the idle limit before a call's first bytes
    // reach the server (a loaded machine) has it told GOAWAY with the call not taken, and the call is
    // sent again on a connection of its own, so a call may open more than one (and be refused at each send).
    const front = await countingProxy(server.port);
    const session = new UpstreamSession(front.url, {}, undefined, true);
    try {
      const qr = createClient(QrService, internalTransport(front.url, session, []));
      for (let call = 0; call < 2; call++) {
        const openedBefore = front.opened();
        const id = randomUUID();
        assert.ok(await untilAnswered(async () => (await qr.getQrCode({ qrCodeId: id }, { timeoutMs: 10_000 })).qrCode?.qrCodeId === id));
        assert.ok(front.opened() > openedBefore, "the call went on a connection it opened: the one before had closed");
        await eventually("every connection opened closed once idle", () => front.closed() === front.opened());
      }
    } finally {
      session.close();
      await front.close();
    }
  } finally {
    await server.close();
  }
});

test("an idle HTTP/2 session is told GOAWAY and closes", async () => {
  const server = await qrServer({ idleMs: 50 });
  try {
    const session = http2.connect(server.url);
    session.on("error", () => undefined);
    const goAway = once(session, "goaway");
    await once(session, "connect");
    await goAway;
    if (!session.closed && !session.destroyed) await once(session, "close");
    assert.ok(await untilAnswered(() => callInFrames(server.url)));
  } finally {
    await server.close();
  }
});

test("an HTTP/2 session idle with a server stream open is left open: the stream's next message and its end come after several idle periods", async () => {
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const server = await startServer({
    name: "idle",
    logger: captureLogger("silent").logger,
    metrics: new Metrics(),
    services: [PaymentService],
    validate: false, // an empty request is enough here
    connectionLimits: { firstBytesMs: LONG, idleMs: 100 },
    routes: (router) =>
      router.service(PaymentService, {
        watchTip: async function* () {
          yield { tip: { tipId: "1" } };
          await released; // news comes late, as a tip's outcome may
          yield { tip: { tipId: "2" } };
        },
      }),
  });
  const session = http2.connect(server.url);
  session.on("error", () => undefined);
  try {
    const stream = session.request({ ":method": "POST", ":path": `/${PaymentService.typeName}/WatchTip`, "content-type": "application/connect+proto", "connect-protocol-version": "1" });
    stream.on("error", () => undefined);
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    const closed = new Promise<number | undefined>((resolve) => stream.once("close", () => resolve(stream.rstCode)));
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
    await eventually("the first message", () => chunks.length > 0);
    // Six idle periods with nothing on the session: one idle with no call open is told GOAWAY after one and cut after two.
    await new Promise((resolve) => setTimeout(resolve, 600));
    release();
    assert.equal(await closed, http2.constants.NGHTTP2_NO_ERROR, "the stream ended cleanly");
    const flags: number[] = [];
    for (let body = Buffer.concat(chunks); body.length >= 5; body = body.subarray(5 + body.readUInt32BE(1))) flags.push(body[0]);
    assert.deepEqual(flags, [0, 0, 2], "two messages, then the end of the stream");
  } finally {
    session.destroy();
    await server.close();
  }
});
