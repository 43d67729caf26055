// What payment's provider simulators (Daraja, Stripe, PayPal) share on the wire:
// reading a request's body, answering JSON, a route table (method + path to one
// small function per endpoint), callbacks POSTed out, timers that stop on close,
// and the replay store behind Stripe's and PayPal's idempotency headers.
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A request's body as text; rejects when the request is cut off before its end.
 * By its events, not an async iterator: a simulator serves several requests
 * per tip in the bench, on the platform's cores.
 */
export function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    req.on("data", (c: Buffer) => chunks.push(c));
    req.once("end", () => {
      ended = true;
      resolve(chunks.length === 1 ? chunks[0].toString("utf8") : Buffer.concat(chunks).toString("utf8"));
    });
    req.once("error", reject);
    req.once("close", () => ended || reject(new Error("request cut off before its end")));
  });
}

/** Answers JSON once; a response already answered (or a closed socket) is left alone. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const data = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data), ...headers });
  res.end(data);
}

/** One endpoint: a method and an exact path or a pattern, served by one function. */
export interface SimRoute<H> {
  method: string;
  path: string | RegExp;
  handle: H;
}

/** The first route for the method and path, with the pattern's match (null for an exact path). */
export function findRoute<H>(routes: readonly SimRoute<H>[], method: string, path: string): { handle: H; match: RegExpExecArray | null } | undefined {
  for (const route of routes) {
    if (route.method !== method) continue;
    if (typeof route.path === "string") {
      if (route.path === path) return { handle: route.handle, match: null };
      continue;
    }
    const match = route.path.exec(path);
    if (match) return { handle: route.handle, match };
  }
  return undefined;
}

/** A simulator's answer to an API call, before it is written. */
export interface SimReply {
  status: number;
  body: unknown;
}

/** POSTs JSON (from `localAddress` when given); the answer, or undefined when none came within `timeoutMs`. */
export function postJson(url: string, payload: unknown, options: { localAddress?: string; timeoutMs: number }): Promise<SimReply | undefined> {
  return new Promise((resolve) => {
    const target = new URL(url);
    const text = JSON.stringify(payload);
    // Headers as a raw list (node then adds no Host of its own) and the body as text: node sends
    // the head and the body in one write.
    const req = http.request(
      {
        host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: "POST",
        localAddress: options.localAddress, timeout: options.timeoutMs,
        headers: ["host", target.host, "content-type", "application/json", "content-length", String(Buffer.byteLength(text))],
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: parseOrText(text) }));
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
    req.end(text);
  });
}

function parseOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text; // not JSON: kept as text
  }
}

/** Delayed work (webhook deliveries, retries, disputes) that close() cancels. */
export class SimTimers {
  private readonly timers = new Set<NodeJS.Timeout>();

  later(ms: number, fn: () => unknown): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      void fn();
    }, ms);
    this.timers.add(t);
  }

  clear(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

/** First answers by idempotency key, with the fingerprint of the request that made them. */
export class ReplayStore {
  private readonly answers = new Map<string, { fingerprint: string; status: number; body: string }>();

  static fingerprint(text: string): string {
    return createHash("sha256").update(text).digest("hex");
  }

  get(key: string): { fingerprint: string; reply: SimReply } | undefined {
    const prior = this.answers.get(key);
    return prior && { fingerprint: prior.fingerprint, reply: { status: prior.status, body: JSON.parse(prior.body) } };
  }

  /** Keeps an answer unless the provider failed (a 5xx may be retried with the same key). */
  remember(key: string, fingerprint: string, reply: SimReply): void {
    if (reply.status < 500) this.answers.set(key, { fingerprint, status: reply.status, body: JSON.stringify(reply.body) });
  }
}

/** Listens on host:port (0 = any free port); the port taken. */
export async function listen(server: http.Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return (server.address() as AddressInfo).port;
}

export async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
