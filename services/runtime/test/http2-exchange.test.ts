// connectUnaryCall over an Http2Upstream whose stream comes late (its connection
// still being opened): a call given up meanwhile must not leave that stream
// open, its request sent without an end, on the connection and the server.
import assert from "node:assert/strict";
import { once } from "node:events";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectUnaryCall, type Http2Upstream } from "../src/http2-exchange.js";

test("a call given up before its stream came resets that stream (CANCEL) once it comes", async () => {
  const server = http2.createServer();
  const streams: http2.ServerHttp2Stream[] = [];
  server.on("stream", (s) => {
    streams.push(s);
    s.on("error", () => {});
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  await once(client, "connect");
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let late: http2.ClientHttp2Stream | undefined;
  const upstream: Http2Upstream = {
    // As a connection still being opened: the stream comes once `open` is called.
    request: (method, path, headers, options) => opened.then(() => (late = client.request({ ...headers, ":method": method, ":path": path }, options))),
    notifyResponseByteRead: () => {},
  };
  try {
    const abort = new AbortController();
    const call = connectUnaryCall({ session: upstream, service: "test.v1.Echo", method: "Say", header: new Headers(), body: Buffer.from("x"), signal: abort.signal, deadline: undefined });
    abort.abort(new ConnectError("the deadline passed", Code.DeadlineExceeded));
    await assert.rejects(call, (err: unknown) => ConnectError.from(err).code === Code.DeadlineExceeded);
    open();
    await opened;
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(late, "the stream came");
    assert.equal(late.closed, true, "the late stream is closed, not left open without its request's end");
    assert.equal(late.rstCode, http2.constants.NGHTTP2_CANCEL);
    if (!streams.length) await once(server, "stream");
    const seen = streams[0];
    if (!seen.closed) await once(seen, "close");
    assert.equal(seen.rstCode, http2.constants.NGHTTP2_CANCEL, "the server's stream reset too");
  } finally {
    client.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});
