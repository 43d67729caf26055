// The runtime's HTTP/2 connection to a peer or backend (upstream.ts), under
// connectUnaryCall as the gateway's raw-forward.ts calls it, and under the
// services' peers (createPeers, internalTransport): one connection for many
// calls, a restarted backend reached again, GOAWAY honoured (calls on their
// way finish, new ones go on a new connection), a call given up resets only
// its stream, a connection retired before its stream ids run out, a backend
// that cannot be reached is UNAVAILABLE, close() fails what waits. The backend
// here is a bare HTTP/2 server answering Connect's unary protocol (a health
// check SERVING, any other call its request echoed), so each connection and
// stream is seen.
import assert from "node:assert/strict";
import { once } from "node:events";
import http2 from "node:http2";
import net, { type AddressInfo, type Socket } from "node:net";
import tls from "node:tls";
import { test } from "node:test";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { connectUnaryCall } from "../src/http2-exchange.js";
import { createPeers, internalTransport } from "../src/peers.js";
import { UpstreamSession } from "../src/upstream.js";

/** A backend: its connections and, per call, whether to answer now or hold the stream. */
async function backend(port = 0, hold?: (stream: http2.ServerHttp2Stream) => boolean) {
  const server = http2.createServer();
  const sessions: http2.ServerHttp2Session[] = [];
  const streams: http2.ServerHttp2Stream[] = [];
  server.on("session", (s) => sessions.push(s));
  server.on("stream", (stream, headers) => {
    streams.push(stream);
    stream.on("error", () => {});
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      if (hold?.(stream)) return;
      answer(stream, headers[":path"] === HEALTH_CHECK ? SERVING : Buffer.concat(chunks));
    });
  });
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  return {
    server,
    sessions,
    streams,
    port: (server.address() as AddressInfo).port,
    /** Stops at once: every connection destroyed, as a backend that restarts. */
    stop: async () => {
      for (const s of sessions) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const HEALTH_CHECK = "/grpc.health.v1.Health/Check";
/** The peers on HTTP/2 alone: these backends are bare HTTP/2 servers (the peers' frames: frames.test.ts). */
const HTTP2_ONLY = { frames: false };
/** The health check's answer, SERVING, in binary: field 1 = 1. */
const SERVING = Buffer.from([0x08, 0x01]);

function answer(stream: http2.ServerHttp2Stream, body: Buffer) {
  if (stream.closed) return;
  stream.respond({ ":status": 200, "content-type": "application/proto" });
  stream.end(body);
}

function call(session: UpstreamSession, text: string, signal = new AbortController().signal) {
  return connectUnaryCall({ session, service: "test.v1.Echo", method: "Say", header: new Headers(), body: Buffer.from(text), signal, deadline: undefined });
}

test("upstream: one connection for many calls; a restarted backend is reached again on a new one", async () => {
  const first = await backend();
  const session = new UpstreamSession(`http://127.0.0.1:${first.port}`);
  try {
    for (const text of ["a", "b", "c"]) assert.equal(Buffer.from((await call(session, text)).body).toString(), text);
    await Promise.all(["d", "e"].map((t) => call(session, t)));
    assert.equal(first.sessions.length, 1, "every call on one connection");
    await first.stop();
    const second = await backend(first.port);
    try {
      // A call that meets the old connection before its loss is heard fails UNAVAILABLE; the next one opens a new connection.
      const raced = await call(session, "f").then(
        () => undefined,
        (err: unknown) => err,
      );
      if (raced) assert.equal(ConnectError.from(raced).code, Code.Unavailable);
      assert.equal(Buffer.from((await call(session, "g")).body).toString(), "g");
      assert.equal(second.sessions.length, 1);
    } finally {
      await second.stop();
    }
  } finally {
    session.close();
  }
});

test("upstream: after GOAWAY the call on its way is answered on the old connection, the next goes on a new one", async () => {
  let held: http2.ServerHttp2Stream | undefined;
  const b = await backend(0, (stream) => !held && (held = stream) !== undefined);
  const session = new UpstreamSession(`http://127.0.0.1:${b.port}`);
  try {
    const onItsWay = call(session, "held");
    while (!held) await new Promise((resolve) => setImmediate(resolve));
    // GOAWAY (graceful: streams it has accepted may finish), then the held answer after it on the same connection.
    b.sessions[0].close();
    answer(held, Buffer.from("held"));
    assert.equal(Buffer.from((await onItsWay).body).toString(), "held");
    assert.equal(Buffer.from((await call(session, "next")).body).toString(), "next");
    assert.equal(b.sessions.length, 2, "the call after GOAWAY on a new connection");
  } finally {
    session.close();
    await b.stop();
  }
});

test("upstream: a connection that has opened its bound of streams takes no more: the call on its way finishes there, the next goes on a new one", async () => {
  let held: http2.ServerHttp2Stream | undefined;
  const b = await backend(0, (stream) => !held && (held = stream) !== undefined);
  // Three streams a connection here (node's real bound: 2^30 stream ids).
  const session = new UpstreamSession(`http://127.0.0.1:${b.port}`, {}, 3);
  try {
    const onItsWay = call(session, "held");
    while (!held) await new Promise((resolve) => setImmediate(resolve));
    for (const text of ["a", "b"]) assert.equal(Buffer.from((await call(session, text)).body).toString(), text);
    assert.equal(b.sessions.length, 1, "three streams on the first connection");
    assert.equal(Buffer.from((await call(session, "c")).body).toString(), "c");
    assert.equal(b.sessions.length, 2, "the fourth on a new connection");
    answer(held, Buffer.from("held"));
    assert.equal(Buffer.from((await onItsWay).body).toString(), "held", "the call on its way answered on the retired connection");
    if (!b.sessions[0].closed) await once(b.sessions[0], "close");
  } finally {
    session.close();
    await b.stop();
  }
});

test("upstream: a call given up (deadline, client gone) resets its stream with CANCEL; the connection serves the next call", async () => {
  const abort = new AbortController();
  const b = await backend(0, (stream) => {
    if (abort.signal.aborted) return false;
    abort.abort(new ConnectError("the deadline passed", Code.DeadlineExceeded));
    return true;
  });
  const session = new UpstreamSession(`http://127.0.0.1:${b.port}`);
  try {
    await assert.rejects(call(session, "slow", abort.signal), (err: unknown) => ConnectError.from(err).code === Code.DeadlineExceeded);
    const reset = b.streams[0];
    if (!reset.closed) await once(reset, "close");
    assert.equal(reset.rstCode, http2.constants.NGHTTP2_CANCEL);
    assert.equal(Buffer.from((await call(session, "next")).body).toString(), "next");
    assert.equal(b.sessions.length, 1);
  } finally {
    session.close();
    await b.stop();
  }
});

test("upstream: a backend not listening is UNAVAILABLE, and reached once it listens; close() fails what is on its way", async () => {
  const probe = await backend();
  const port = probe.port;
  await probe.stop();
  const session = new UpstreamSession(`http://127.0.0.1:${port}`);
  let held = false;
  const b = await (async () => {
    await assert.rejects(call(session, "nobody"), (err: unknown) => ConnectError.from(err).code === Code.Unavailable && /cannot reach the server/.test(ConnectError.from(err).message));
    return backend(port, () => (held = true));
  })();
  try {
    const onItsWay = call(session, "held");
    while (!held) await new Promise((resolve) => setImmediate(resolve));
    session.close();
    await assert.rejects(onItsWay, (err: unknown) => ConnectError.from(err).code === Code.Unavailable);
    await assert.rejects(call(session, "after"), (err: unknown) => ConnectError.from(err).code === Code.Unavailable);
  } finally {
    await b.stop();
  }
});

/**
 * A peer whose connection stays opening: its port takes the TCP connection and
 * never answers TLS's hello, so an https connection never connects.
 */
async function silentPeer() {
  const sockets: Socket[] = [];
  const server = net.createServer((socket) => sockets.push(socket));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** Resolves once a connection has reached it (and waits there for TLS). */
    reached: async () => {
      if (sockets.length === 0) await once(server, "connection");
    },
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test("upstream: close() while the connection is still opening fails the call waiting for it UNAVAILABLE at once, not at its deadline", async () => {
  const peer = await silentPeer();
  const session = new UpstreamSession(peer.url);
  // The bound a caller would have: reached only if close() left the call waiting.
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new ConnectError("the deadline passed", Code.DeadlineExceeded)), 10_000);
  try {
    const waiting = call(session, "first", deadline.signal);
    await peer.reached(); // still opening: its TLS handshake never ends
    session.close();
    await assert.rejects(waiting, (err: unknown) => ConnectError.from(err).code === Code.Unavailable && /closed/.test(ConnectError.from(err).message));
  } finally {
    clearTimeout(timer);
    await peer.stop();
  }
});

/** A health check through `transport`: its status, or the error's code. */
async function check(transport: Transport, timeoutMs = 10_000): Promise<Status | Code> {
  try {
    return (await createClient(Health, transport).check({ service: "" }, { timeoutMs })).status;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

test("peers: every call to a peer on one connection; a restarted peer is reached again on a new one", async () => {
  const first = await backend();
  const peers = createPeers(() => `http://127.0.0.1:${first.port}`, undefined, HTTP2_ONLY);
  try {
    assert.equal(await check(peers("wallet")), Status.SERVING);
    assert.deepEqual(await Promise.all([1, 2, 3].map(() => check(peers("wallet")))), [Status.SERVING, Status.SERVING, Status.SERVING]);
    assert.equal(first.sessions.length, 1, "every call on one connection");
    await first.stop();
    const second = await backend(first.port);
    try {
      // A call that meets the old connection before its loss is heard fails UNAVAILABLE; the next one opens a new connection.
      const raced = await check(peers("wallet"));
      if (raced !== Status.SERVING) assert.equal(raced, Code.Unavailable);
      assert.equal(await check(peers("wallet")), Status.SERVING);
      assert.equal(second.sessions.length, 1);
    } finally {
      await second.stop();
    }
  } finally {
    peers.close();
  }
});

test("peers: after GOAWAY the call on its way is answered on the old connection, the next goes on a new one", async () => {
  let held: http2.ServerHttp2Stream | undefined;
  const b = await backend(0, (stream) => !held && (held = stream) !== undefined);
  const peers = createPeers(() => `http://127.0.0.1:${b.port}`, undefined, HTTP2_ONLY);
  try {
    const onItsWay = check(peers("wallet"));
    while (!held) await new Promise((resolve) => setImmediate(resolve));
    b.sessions[0].close();
    answer(held, SERVING);
    assert.equal(await onItsWay, Status.SERVING);
    assert.equal(await check(peers("wallet")), Status.SERVING);
    assert.equal(b.sessions.length, 2, "the call after GOAWAY on a new connection");
  } finally {
    peers.close();
    await b.stop();
  }
});

test("peers: a call past its deadline resets only its own stream (CANCEL): a call beside it on the connection is answered", async () => {
  const held: http2.ServerHttp2Stream[] = [];
  const b = await backend(0, (stream) => held.length < 2 && held.push(stream) > 0);
  const peers = createPeers(() => `http://127.0.0.1:${b.port}`, undefined, HTTP2_ONLY);
  try {
    const patient = check(peers("wallet"));
    while (held.length < 1) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(await check(peers("wallet"), 50), Code.DeadlineExceeded);
    const reset = held[1];
    if (!reset.closed) await once(reset, "close");
    assert.equal(reset.rstCode, http2.constants.NGHTTP2_CANCEL);
    assert.equal(held[0].closed, false, "the other call's stream is still open");
    answer(held[0], SERVING);
    assert.equal(await patient, Status.SERVING);
    assert.equal(await check(peers("wallet")), Status.SERVING);
    assert.equal(b.sessions.length, 1, "one connection throughout");
  } finally {
    peers.close();
    await b.stop();
  }
});

test("peers: a connection that has opened its bound of streams (its ids running out) is retired: the next call goes on a new one", async () => {
  let held: http2.ServerHttp2Stream | undefined;
  const b = await backend(0, (stream) => !held && (held = stream) !== undefined);
  const url = `http://127.0.0.1:${b.port}`;
  // Three streams a connection here (the real bound: 2^30 stream ids).
  const session = new UpstreamSession(url, {}, 3);
  const peer = internalTransport(url, session, []);
  try {
    const onItsWay = check(peer);
    while (!held) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual([await check(peer), await check(peer)], [Status.SERVING, Status.SERVING]);
    assert.equal(b.sessions.length, 1, "three streams on the first connection");
    assert.equal(await check(peer), Status.SERVING);
    assert.equal(b.sessions.length, 2, "the fourth on a new connection");
    answer(held, SERVING);
    assert.equal(await onItsWay, Status.SERVING, "the call on its way answered on the retired connection");
    if (!b.sessions[0].closed) await once(b.sessions[0], "close");
  } finally {
    session.close();
    await b.stop();
  }
});

test("peers: close() while a peer's connection is still opening fails the call UNAVAILABLE at once, not at its deadline", async () => {
  const peer = await silentPeer();
  const peers = createPeers(() => peer.url, undefined, HTTP2_ONLY);
  try {
    const waiting = check(peers("wallet"), 10_000);
    await peer.reached();
    peers.close();
    assert.equal(await waiting, Code.Unavailable);
  } finally {
    await peer.stop();
  }
});

test("upstream: a connection closed before it opened, outside close() (its socket torn down), fails a stream waiting for it UNAVAILABLE, as a unary call", async () => {
  const peer = await silentPeer();
  const { port } = new URL(peer.url);
  const sockets: tls.TLSSocket[] = [];
  // The socket the connection opens on, kept to be torn down while its TLS handshake waits.
  const session = new UpstreamSession(peer.url, { createConnection: () => sockets[sockets.push(tls.connect({ host: "127.0.0.1", port: Number(port), ALPNProtocols: ["h2"] })) - 1] });
  const transport = internalTransport(peer.url, session, []);
  try {
    const watching = (async () => {
      for await (const answer of createClient(Health, transport).watch({ service: "" }, { timeoutMs: 10_000 })) return answer.status;
    })().then((status) => status, (err: unknown) => ConnectError.from(err));
    const asking = check(transport);
    await peer.reached();
    while (sockets.length === 0) await new Promise((resolve) => setImmediate(resolve));
    // Node's session hears its socket's close before any error: the path a plain Error took (connect-node's stream client: INTERNAL).
    sockets[0].destroy();
    const watched = await watching;
    assert.ok(watched instanceof ConnectError, "the stream failed");
    assert.equal(Code[watched.code], Code[Code.Unavailable]);
    assert.equal(Code[(await asking) as Code], Code[Code.Unavailable]);
  } finally {
    session.close();
    await peer.stop();
  }
});

test("peers: a call after peers.close() is refused UNAVAILABLE (closed), opening no connection, unary or stream", async () => {
  const b = await backend();
  const peers = createPeers(() => `http://127.0.0.1:${b.port}`, undefined, HTTP2_ONLY);
  try {
    assert.equal(await check(peers("wallet")), Status.SERVING);
    peers.close();
    await assert.rejects(createClient(Health, peers("wallet")).check({ service: "" }, { timeoutMs: 10_000 }),
      (err: unknown) => ConnectError.from(err).code === Code.Unavailable && /closed/.test(ConnectError.from(err).message));
    const stream = (async () => {
      for await (const answer of createClient(Health, peers("qr")).watch({ service: "" }, { timeoutMs: 10_000 })) return answer.status;
    })();
    await assert.rejects(stream, (err: unknown) => ConnectError.from(err).code === Code.Unavailable && /closed/.test(ConnectError.from(err).message));
    assert.equal(b.sessions.length, 1, "no connection after close()");
  } finally {
    peers.close();
    await b.stop();
  }
});
