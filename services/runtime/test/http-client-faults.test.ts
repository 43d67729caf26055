// The outside-API client's failure classes, each against a loopback server
// that misbehaves at one exact moment. Payment and notification decide from
// them whether a request may be sent again: HTTP_NOT_SENT means it certainly
// never reached the server (safe to retry); anything else is in doubt (query
// later, never resend blind), except a reused connection that closed before
// any answer byte, which only a caller that allows repeats sends again.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import diagnostics from "node:diagnostics_channel";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { after, before, describe, test } from "node:test";
import { HTTP_MAX_SOCKETS, HTTP_NOT_SENT, httpRequest, type HttpCall, type HttpReply } from "../src/http-client.js";

/** What one request came to: its answer, or its failure's code and whether it was a stale kept connection. */
type Outcome = { status: number; body: string } | { code: string; stale: boolean; notSent: boolean };

async function outcome(reply: Promise<HttpReply>): Promise<Outcome> {
  try {
    const res = await reply;
    return { status: res.status, body: await res.text() };
  } catch (err) {
    const e = err as Error & { code?: string; staleConnection?: boolean };
    const code = e.code ?? e.name;
    return { code, stale: e.staleConnection === true, notSent: HTTP_NOT_SENT.has(code) };
  }
}

/** What the server does with the n-th request it read in full (n from 0), on its socket. */
type Behaviour = (socket: net.Socket, n: number, head: string, body: Buffer) => void;

/** A raw HTTP/1.1 server: reads requests (Content-Length bodies) and lets `behave` answer or misbehave. */
class RawServer {
  readonly requests: string[] = [];
  connections = 0;
  behave: Behaviour = (socket) => answer(socket, "ok");
  /** Called with the first bytes of each request as they arrive (before it is whole). */
  onBytes: ((socket: net.Socket, bytes: number) => void) | undefined;
  private readonly server = net.createServer((socket) => this.accept(socket));
  private readonly sockets = new Set<net.Socket>();

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    return `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  private accept(socket: net.Socket) {
    this.connections++;
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => {});
    let buf = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      this.onBytes?.(socket, buf.length);
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString("latin1");
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        const body = buf.subarray(end + 4, end + 4 + length);
        buf = buf.subarray(end + 4 + length);
        const n = this.requests.push(`${head.split(" ")[1]} ${body.toString()}`) - 1;
        this.behave(socket, n, head, body);
      }
    });
  }
}

function answer(socket: net.Socket, body: string, extra = "") {
  socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`);
}

const post = (url: string, extra: Partial<HttpCall> = {}) => httpRequest(url, { method: "POST", headers: { "content-type": "text/plain" }, body: "pay", timeoutMs: 2000, ...extra });
const tick = (ms = 50) => new Promise((r) => setTimeout(r, ms));

describe("the outside-API client's failure classes", () => {
  const server = new RawServer();
  let url = "";
  before(async () => (url = await server.listen()));
  after(() => server.close());
  const reset = () => {
    server.requests.length = 0;
    server.connections = 0;
    server.behave = (socket) => answer(socket, "ok");
    server.onBytes = undefined;
  };

  test("a refused connection: certainly not sent", async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((r) => closed.close(r));
    assert.deepEqual(await outcome(post(`http://127.0.0.1:${port}/x`)), { code: "ECONNREFUSED", stale: false, notSent: true });
  });

  test("an unknown host: certainly not sent", async () => {
    const o = await outcome(post("http://no-such-host.invalid/x"));
    assert.ok("code" in o && o.notSent && !o.stale, JSON.stringify(o));
  });

  test("the answer reset midway: in doubt, never sent again even when repeats are allowed", async () => {
    reset();
    await post(`${url}/warm`); // the next request goes on a kept connection
    server.behave = (socket) => {
      socket.write("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"Respon");
      setTimeout(() => socket.resetAndDestroy(), 20);
    };
    const o = await outcome(post(`${url}/stk`, { repeatOnStaleConnection: true }));
    assert.ok("code" in o && !o.notSent && !o.stale, JSON.stringify(o));
    assert.deepEqual(server.requests, ["/warm pay", "/stk pay"], "sent once");
  });

  test("the answer's head cut off by a close: in doubt, never sent again", async () => {
    reset();
    await post(`${url}/warm`);
    server.behave = (socket) => socket.end("HTTP/1.1 200 OK\r\ncontent-le");
    const o = await outcome(post(`${url}/stk`, { repeatOnStaleConnection: true }));
    assert.ok("code" in o && !o.notSent && !o.stale, JSON.stringify(o));
    assert.equal(server.requests.length, 2, "sent once");
  });

  test("no answer within the timeout: in doubt (TimeoutError), never sent again", async () => {
    reset();
    await post(`${url}/warm`);
    server.behave = () => {};
    const o = await outcome(post(`${url}/b2c`, { timeoutMs: 200, repeatOnStaleConnection: true }));
    assert.deepEqual(o, { code: "TimeoutError", stale: false, notSent: false });
    await tick();
    assert.deepEqual(server.requests, ["/warm pay", "/b2c pay"]);
  });

  test("a request cut off while it was being written: in doubt", async () => {
    reset();
    server.onBytes = (socket, bytes) => {
      if (bytes > 0) socket.resetAndDestroy();
    };
    const o = await outcome(post(`${url}/big`, { body: "x".repeat(4 << 20) }));
    assert.ok("code" in o && !o.notSent && !o.stale, JSON.stringify(o));
    assert.equal(server.requests.length, 0, "the server never read it whole");
  });

  test("a garbled answer: in doubt", async () => {
    reset();
    server.behave = (socket) => socket.write("HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\nok");
    const o = await outcome(post(`${url}/g`));
    assert.ok("code" in o && !o.notSent && !o.stale, JSON.stringify(o));
  });

  test("an answer larger than the client reads: in doubt", async () => {
    reset();
    server.behave = (socket) => socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${2 << 20}\r\n\r\n${"x".repeat(2 << 20)}`);
    const o = await outcome(post(`${url}/huge`));
    assert.ok("code" in o && !o.notSent && !o.stale, JSON.stringify(o));
  });

  test("a kept connection the server closed while idle: the next request goes on a new one, sent once", async () => {
    reset();
    server.behave = (socket, n) => {
      answer(socket, "ok");
      if (n === 0) socket.end(); // no Connection: close; the client hears the close only after the answer
    };
    assert.deepEqual(await outcome(post(`${url}/a`)), { status: 200, body: "ok" });
    await tick();
    assert.deepEqual(await outcome(post(`${url}/b`)), { status: 200, body: "ok" });
    assert.deepEqual(server.requests, ["/a pay", "/b pay"]);
    assert.equal(server.connections, 2);
  });

  test("a kept connection closed as the request arrived, no answer: stale, in doubt; sent again only when allowed", async () => {
    for (const close of ["end", "reset"] as const) {
      reset();
      await post(`${url}/warm`);
      server.behave = (socket, n) => (n === 1 ? (close === "end" ? socket.end() : socket.resetAndDestroy()) : answer(socket, "ok"));
      const once = await outcome(post(`${url}/push`));
      assert.deepEqual(once, { code: "ECONNRESET", stale: true, notSent: false }, close);
      assert.deepEqual(server.requests, ["/warm pay", "/push pay"], `${close}: not sent again`);

      reset();
      await post(`${url}/warm`);
      server.behave = (socket, n) => (n === 1 ? (close === "end" ? socket.end() : socket.resetAndDestroy()) : answer(socket, "ok"));
      assert.deepEqual(await outcome(post(`${url}/query`, { repeatOnStaleConnection: true })), { status: 200, body: "ok" });
      assert.deepEqual(server.requests, ["/warm pay", "/query pay", "/query pay"], `${close}: sent again on a new connection`);
    }
  });

  test("a network failure reported on the connection after the request was written (an unreachable host): in doubt, whatever its code", async () => {
    const fresh = new RawServer();
    const freshUrl = await fresh.listen();
    // The client's own sockets, to fail one as the kernel would (EHOSTUNREACH on a connection whose route went away).
    const sockets: net.Socket[] = [];
    const seen = (message: unknown) => void sockets.push((message as { socket: net.Socket }).socket);
    diagnostics.subscribe("net.client.socket", seen);
    try {
      fresh.behave = () => {
        for (const s of sockets) s.destroy(Object.assign(new Error("read EHOSTUNREACH"), { code: "EHOSTUNREACH" }));
      };
      const o = await outcome(post(`${freshUrl}/b2c`));
      // Before, EHOSTUNREACH kept its code, one of HTTP_NOT_SENT: a request the server had was called certainly not sent.
      assert.ok("code" in o && !o.notSent && !o.stale, JSON.stringify(o));
      assert.deepEqual(fresh.requests, ["/b2c pay"], "the server had it");
    } finally {
      diagnostics.unsubscribe("net.client.socket", seen);
      await fresh.close();
    }
  });

  test("a new connection closed with no answer: in doubt and not stale (only a reused one can be)", async () => {
    const fresh = new RawServer();
    const freshUrl = await fresh.listen();
    try {
      fresh.behave = (socket) => socket.end();
      const o = await outcome(post(`${freshUrl}/fresh`, { repeatOnStaleConnection: true }));
      assert.deepEqual(o, { code: "ECONNRESET", stale: false, notSent: false });
      assert.equal(fresh.requests.length, 1);
    } finally {
      await fresh.close();
    }
  });

  test("a request still waiting for a connection when its time runs out: certainly not sent", async () => {
    reset();
    let held = 0;
    server.behave = (socket, n, head) => {
      if (head.startsWith("POST /hold")) held++;
      else answer(socket, "ok");
    };
    // Every connection the client may open is busy with an unanswered request.
    const holding = Array.from({ length: HTTP_MAX_SOCKETS }, () => outcome(post(`${url}/hold`, { timeoutMs: 1500 })));
    while (held < HTTP_MAX_SOCKETS) await tick(20);
    const waiting = await outcome(post(`${url}/queued`, { timeoutMs: 200 }));
    assert.deepEqual(waiting, { code: "ECONNECT_TIMEOUT", stale: false, notSent: true });
    for (const o of await Promise.all(holding)) assert.deepEqual(o, { code: "TimeoutError", stale: false, notSent: false });
    await tick();
    assert.equal(server.requests.filter((r) => r.startsWith("/queued")).length, 0, "the server never saw it");
  });
});

describe("the outside-API client reads every answer shape", () => {
  const server = new RawServer();
  let url = "";
  before(async () => (url = await server.listen()));
  after(() => server.close());

  test("chunked, close-delimited, 1xx before the answer, no body for 204, duplicate headers joined", async () => {
    const answers = [
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nhi",
      "HTTP/1.1 204 No Content\r\nx-message-id: m1\r\nx-message-id: m2\r\n\r\n",
      "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
    ];
    server.behave = (socket, n) => {
      socket.write(answers[n]);
      if (n === 3) socket.end();
    };
    const replies = [];
    for (let i = 0; i < answers.length; i++) {
      const res = await post(`${url}/${i}`);
      replies.push([res.status, await res.text(), res.headers.get("X-Message-Id")]);
    }
    assert.deepEqual(replies, [[200, "hello world", null], [201, "hi", null], [204, "", "m1, m2"], [200, "until the end", null]]);
  });
});

/** Node 22.19 and 24.5's default CA list, which the types of node 20 do not know. */
const caList = tls as { getCACertificates?(kind: "default"): string[]; setDefaultCACertificates?(certs: string[]): void };

describe("the outside-API client over TLS", () => {
  // A throwaway certificate for localhost and 127.0.0.1, made by openssl for this run.
  const dir = mkdtempSync(path.join(os.tmpdir(), "http-client-tls-"));
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], { stdio: "ignore" });
  const key = readFileSync(`${dir}/key.pem`);
  const cert = readFileSync(`${dir}/cert.pem`);
  rmSync(dir, { recursive: true });
  const servers: net.Server[] = [];
  const sockets: net.Socket[] = [];
  after(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  async function listen(server: net.Server): Promise<number> {
    servers.push(server);
    server.on("connection", (socket: net.Socket) => sockets.push(socket));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return (server.address() as net.AddressInfo).port;
  }

  test("a certificate nobody trusts: the connection fails before the request is written, certainly not sent", async () => {
    let requests = 0;
    const port = await listen(tls.createServer({ key, cert }, (socket) => socket.on("data", () => requests++)).on("tlsClientError", () => {}));
    const o = await outcome(post(`https://localhost:${port}/x`));
    assert.ok("code" in o && o.code === "ECONNECT_FAILED" && o.notSent && !o.stale, JSON.stringify(o));
    assert.equal(requests, 0);
  });

  test("a server that closes during the handshake, and one that never finishes it: certainly not sent", async () => {
    const closing = await listen(net.createServer((socket) => socket.destroy()));
    assert.deepEqual(await outcome(post(`https://127.0.0.1:${closing}/x`)), { code: "ECONNECT_FAILED", stale: false, notSent: true });
    const silent = await listen(net.createServer((socket) => socket.on("error", () => {})));
    assert.deepEqual(await outcome(post(`https://127.0.0.1:${silent}/x`, { timeoutMs: 300 })), { code: "ECONNECT_TIMEOUT", stale: false, notSent: true });
  });

  test("answered over a trusted certificate, by name (SNI) and by address, on one kept connection each", { skip: !caList.setDefaultCACertificates && "needs tls.setDefaultCACertificates (Node 22.19, 24.5)" }, async () => {
    const names: (string | false)[] = [];
    let connections = 0;
    const server = tls.createServer({ key, cert }, (socket) => {
      connections++;
      names.push((socket as tls.TLSSocket & { servername?: string | false }).servername ?? false);
      socket.on("error", () => {});
      socket.on("data", () => answer(socket, "secure"));
    });
    const port = await listen(server);
    const trusted = caList.getCACertificates!("default");
    caList.setDefaultCACertificates!([...trusted, cert.toString()]);
    try {
      for (const host of ["localhost", "localhost", "127.0.0.1", "127.0.0.1"]) assert.deepEqual(await outcome(post(`https://${host}:${port}/x`)), { status: 200, body: "secure" });
    } finally {
      caList.setDefaultCACertificates!(trusted);
    }
    assert.equal(connections, 2);
    assert.deepEqual(names, ["localhost", false], "the name sent for a host name, none for an address");
  });
});
