// The outside-API client: kept connections, and what it does when a kept
// connection was reset, against a real HTTP server on loopback.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { httpRequest } from "../src/http-client.js";

describe("httpRequest", () => {
  let server: http.Server;
  let url = "";
  let connections = 0;
  const seen: string[] = [];
  // Paths answered by resetting the connection after the request was read: the
  // server has it, the client hears no answer.
  const resetOnce = new Set<string>();
  before(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        seen.push(`${req.url} ${Buffer.concat(chunks).toString()}`);
        if (resetOnce.delete(req.url ?? "")) return req.socket.resetAndDestroy();
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ path: req.url }));
      });
    });
    server.on("connection", () => connections++);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  test("answers are read, and sequential requests share one kept connection", async () => {
    const before = connections;
    for (let i = 0; i < 3; i++) {
      const res = await httpRequest(`${url}/a${i}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}", timeoutMs: 2000 });
      assert.equal(res.status, 200);
      assert.equal(res.ok, true);
      assert.equal(res.headers.get("Content-Type"), "application/json");
      assert.deepEqual(JSON.parse(await res.text()), { path: `/a${i}` });
    }
    assert.equal(connections - before, 1);
  });

  test("a reset kept connection is not sent again unless the caller says the request may repeat", async () => {
    await httpRequest(`${url}/warm`, { method: "GET", headers: {}, timeoutMs: 2000 });
    seen.length = 0;
    resetOnce.add("/push");
    await assert.rejects(
      httpRequest(`${url}/push`, { method: "POST", headers: {}, body: "once", timeoutMs: 2000 }),
      (e: Error & { code?: string }) => e.code === "ECONNRESET",
    );
    assert.deepEqual(seen, ["/push once"], "the server had it once, and only once");

    await httpRequest(`${url}/warm`, { method: "GET", headers: {}, timeoutMs: 2000 });
    seen.length = 0;
    resetOnce.add("/query");
    const res = await httpRequest(`${url}/query`, { method: "POST", headers: {}, body: "q", timeoutMs: 2000, repeatOnStaleConnection: true });
    assert.equal(res.status, 200);
    assert.deepEqual(seen, ["/query q", "/query q"], "repeated on a new connection");
  });

  test("the request's head: Host and Content-Length once each (the caller's Host kept, its length not), the caller's headers as given, URL credentials as basic authorization", async () => {
    const heads: string[][] = [];
    const echo = http.createServer((req, res) => {
      heads.push(req.rawHeaders);
      req.resume();
      req.on("end", () => res.end());
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
    const port = (echo.address() as AddressInfo).port;
    try {
      const body = "héllo"; // 6 bytes in UTF-8: the length is in bytes, not characters
      await httpRequest(`http://127.0.0.1:${port}/p?q=1`, { method: "POST", headers: { "Content-Type": "text/plain", Host: "api.example.test", "Content-Length": "99" }, body, timeoutMs: 2000 });
      await httpRequest(`http://us%40er:p%3Ass@localhost:${port}/g`, { method: "GET", headers: { accept: "x" }, timeoutMs: 2000 });
      const named = (raw: string[]) => raw.filter((_, i) => i % 2 === 0).map((h) => h.toLowerCase());
      const value = (raw: string[], name: string) => raw[raw.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === name) + 1];
      assert.deepEqual(named(heads[0]).sort(), ["connection", "content-length", "content-type", "host"]);
      assert.equal(value(heads[0], "host"), "api.example.test");
      assert.equal(value(heads[1], "host"), `localhost:${port}`);
      assert.equal(value(heads[0], "content-length"), "6");
      assert.equal(value(heads[0], "content-type"), "text/plain");
      assert.deepEqual(named(heads[1]).sort(), ["accept", "authorization", "connection", "host"]);
      assert.equal(value(heads[1], "authorization"), `Basic ${Buffer.from("us@er:p:ss").toString("base64")}`);
      await assert.rejects(
        httpRequest(`http://127.0.0.1:${port}/x`, { method: "GET", headers: { a: "b\r\nx-injected: 1" }, timeoutMs: 2000 }),
        (e: Error & { code?: string }) => e.code === "ERR_INVALID_CHAR",
      );
      assert.equal(heads.length, 2, "a header with a line break is refused before anything is sent");
    } finally {
      echo.closeAllConnections();
      await new Promise((r) => echo.close(r));
    }
  });

  test("a refused connection fails with a code that says nothing was sent", async () => {
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await assert.rejects(httpRequest(`http://127.0.0.1:${port}/x`, { method: "GET", headers: {}, timeoutMs: 2000 }), (e: Error & { code?: string }) => e.code === "ECONNREFUSED");
  });
});

test("a request slower than the idle limit of kept connections is still answered", async () => {
  // The agents' 4 s socket timeout closes idle connections only, never one in use.
  const slow = http.createServer((req, res) => {
    req.resume();
    setTimeout(() => res.end("late"), 4_500);
  });
  await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
  try {
    const res = await httpRequest(`http://127.0.0.1:${(slow.address() as AddressInfo).port}/`, { method: "POST", headers: {}, body: "x", timeoutMs: 10_000 });
    assert.equal(await res.text(), "late");
  } finally {
    slow.closeAllConnections();
    await new Promise((r) => slow.close(r));
  }
});
