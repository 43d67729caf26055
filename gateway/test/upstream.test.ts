// The gateway's own HTTP/2 connection to a backend (upstream.ts) under the
// runtime's connectUnaryCall, as raw-forward.ts calls it: one connection for
// many calls, a restarted backend reached again, GOAWAY honoured (calls on
// their way finish, new ones go on a new connection), a call given up resets
// only its stream, a backend that cannot be reached is UNAVAILABLE. The
// backend here is a bare HTTP/2 server answering Connect's unary protocol
// (its answer echoes the request), so each connection and stream is seen.
import assert from "node:assert/strict";
import { once } from "node:events";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectUnaryCall } from "@ttip/runtime";
import { UpstreamSession } from "../src/upstream.js";

/** A backend: its connections and, per call, whether to answer now or hold the stream. */
async function backend(port = 0, hold?: (stream: http2.ServerHttp2Stream) => boolean) {
  const server = http2.createServer();
  const sessions: http2.ServerHttp2Session[] = [];
  const streams: http2.ServerHttp2Stream[] = [];
  server.on("session", (s) => sessions.push(s));
  server.on("stream", (stream) => {
    streams.push(stream);
    stream.on("error", () => {});
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      if (hold?.(stream)) return;
      answer(stream, Buffer.concat(chunks));
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
