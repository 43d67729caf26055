// The yardstick of bench/http-client.ts: the runtime's outside-API client as
// it was on node:http (kept agent connections, raw header list), before its
// own HTTP/1.1 exchange on net/tls sockets replaced it. Same interface.
import http from "node:http";
import https from "node:https";
import type { HttpCall, HttpReply } from "@ttip/runtime";

/** At most this much of an answer is read: these APIs answer a few hundred bytes. */
const MAX_REPLY_BYTES = 1 << 20;
// Connections are kept and reused (as fetch does), each request on one. An
// idle one is closed after 4 s, or a second before the server's Keep-Alive
// timeout when it announces a shorter one (node applies the hint only when a
// timeout is set), as fetch does: fewer requests meet a connection the server
// is closing, whose outcome is then unknown. (Requests time out by their own timer.)
const IDLE_MS = 4_000;
/** Connections open at once per host; more requests wait for one (their timeout running). */
const HTTP_MAX_SOCKETS = 64;
const agents = {
  http: new http.Agent({ keepAlive: true, maxSockets: HTTP_MAX_SOCKETS, timeout: IDLE_MS }),
  https: new https.Agent({ keepAlive: true, maxSockets: HTTP_MAX_SOCKETS, timeout: IDLE_MS }),
};

class Reply implements HttpReply {
  constructor(
    readonly status: number,
    readonly statusText: string,
    private readonly head: http.IncomingHttpHeaders,
    private readonly body: string,
  ) {}
  get ok() {
    return this.status >= 200 && this.status < 300;
  }
  readonly headers = { get: (name: string): string | null => [this.head[name.toLowerCase()] ?? null].flat()[0] };
  async text(): Promise<string> {
    return this.body;
  }
}

/**
 * The request's headers as a raw list (name, value, ...), which node writes
 * as given (still checking each name and value) instead of setting them one
 * by one: it then adds no Host, Content-Length nor URL credentials of its own,
 * so they are added here as node would (a caller's own Host is kept, its
 * Content-Length is not: the body's length is the one sent). About a tenth of
 * the client's CPU per call (bench/http-client.ts).
 */
function rawHeaders(target: URL, call: HttpCall, bodyBytes: number): string[] {
  const headers: string[] = [];
  let host = false;
  let authorization = false;
  for (const name in call.headers) {
    const lower = name.toLowerCase();
    if (lower === "content-length") continue;
    host ||= lower === "host";
    authorization ||= lower === "authorization";
    headers.push(name, call.headers[name]);
  }
  if (!host) headers.push("host", target.host);
  if (call.body !== undefined) headers.push("content-length", String(bodyBytes));
  if (!authorization && (target.username || target.password)) {
    const credentials = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
    headers.push("authorization", `Basic ${Buffer.from(credentials).toString("base64")}`);
  }
  return headers;
}

/**
 * One request. Rejects with an Error whose `code` says what failed: one of
 * HTTP_NOT_SENT (nothing was sent), "TimeoutError" (connected, no answer in
 * time), or the socket's own (ECONNRESET...: the request may have arrived).
 */
export async function httpRequest(url: string | URL, call: HttpCall): Promise<HttpReply> {
  const target = typeof url === "string" ? new URL(url) : url;
  try {
    return await exchange(target, call);
  } catch (err) {
    if (call.repeatOnStaleConnection && (err as { staleConnection?: boolean }).staleConnection) return await exchange(target, call);
    throw err;
  }
}

function exchange(target: URL, call: HttpCall): Promise<Reply> {
  // As text: node sends its head and a text body as one string in one write (a Buffer body went
  // beside the head, corked into a writev), and no Buffer is made of it.
  const body = call.body === undefined ? "" : call.body.toString();
  const secure = target.protocol === "https:";
  const options = {
    method: call.method,
    host: target.hostname.startsWith("[") ? target.hostname.slice(1, -1) : target.hostname, // an IPv6 address without its brackets
    port: target.port,
    path: target.pathname + target.search,
    headers: rawHeaders(target, call, Buffer.byteLength(body)),
    agent: secure ? agents.https : agents.http,
  };
  return new Promise<Reply>((resolve, reject) => {
    let connected = false;
    let answered = false;
    const req = (secure ? https : http).request(options, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_REPLY_BYTES) req.destroy(Object.assign(new Error("answer too large"), { code: "ETOOLARGE" }));
        else chunks.push(chunk);
      });
      res.on("end", () => resolve(new Reply(res.statusCode ?? 0, res.statusMessage ?? "", res.headers, Buffer.concat(chunks).toString("utf8"))));
      res.on("error", reject);
    });
    req.on("socket", (socket) => {
      if (!socket.connecting) connected = true;
      else socket.once("connect", () => (connected = true));
    });
    // Before the connection is made nothing was sent: the timeout is then safe to repeat.
    const timer = setTimeout(
      () => req.destroy(Object.assign(new Error(`no answer within ${call.timeoutMs} ms`), { code: connected ? "TimeoutError" : "ECONNECT_TIMEOUT" })),
      call.timeoutMs,
    );
    req.once("close", () => clearTimeout(timer));
    req.on("error", (err: Error & { code?: string }) => reject(Object.assign(err, { staleConnection: req.reusedSocket && !answered && err.code === "ECONNRESET" })));
    req.end(body);
  });
}
