// What payment's answer to an M-Pesa callback costs its HTTP server: the answer as it was written
// (its JSON encoded per call, no length given: node frames it chunked) against callbacks.ts's reply
// (the constant answer encoded once, its length given: the head and body in one string, one write).
// The same callback-sized POSTs from a client in a process of its own over kept connections, to
// one server in this process, rounds alternated; per answer: this process's CPU (the server's, with
// node:http's request parsing), the socket writes (system calls) and the bytes sent.
//   node --import tsx bench/callback-reply.ts [requests per round=4000] [rounds=6] [concurrency=16]
import { fork } from "node:child_process";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { ACCEPTED, reply } from "../services/payment/src/callbacks.js";

const STK_CALLBACK = JSON.stringify({
  Body: { stkCallback: { MerchantRequestID: "29115-34620561-1", CheckoutRequestID: "ws_CO_191220191020363925", ResultCode: 0, ResultDesc: "The service request is processed successfully.",
    CallbackMetadata: { Item: [{ Name: "Amount", Value: 150 }, { Name: "MpesaReceiptNumber", Value: "NLJ7RT61SV" }, { Name: "TransactionDate", Value: 20191219102115 }, { Name: "PhoneNumber", Value: 254708374149 }] } } },
});

/** The answer as callbacks.ts wrote it before: encoded per call, no length (chunked). */
function replyBefore(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const data = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json" });
  res.end(data);
}

if (process.argv[2] === "--client") runClient();
else await measure();

/** The client's process: runs each {path, requests, concurrency} it is sent, answers when done. */
function runClient(): void {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let port = 0;
  const post = (path: string) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, path, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(STK_CALLBACK) } }, (res) => {
        res.resume();
        res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
      });
      req.on("error", reject);
      req.end(STK_CALLBACK);
    });
  process.on("message", async (m: { port?: number; path: string; requests: number; concurrency: number }) => {
    if (m.port) port = m.port;
    let left = m.requests;
    await Promise.all(Array.from({ length: m.concurrency }, async () => {
      while (left-- > 0) await post(m.path);
    }));
    process.send!("done");
  });
  process.on("disconnect", () => process.exit(0));
}

async function measure(): Promise<void> {
  const requests = Number(process.argv[2] ?? 4000);
  const rounds = Number(process.argv[3] ?? 6);
  const concurrency = Number(process.argv[4] ?? 16);
  let writes = 0;
  let bytes = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => (req.url === "/before" ? replyBefore(res, 200, { ResultCode: 0, ResultDesc: "Accepted" }) : reply(res, 200, ACCEPTED)));
  });
  server.keepAliveTimeout = 60_000;
  // Each call of a socket's _writeGeneric is one write or writev system call (corked writes go as one).
  server.on("connection", (socket: Socket) => {
    const s = socket as Socket & { _writeGeneric: (...a: unknown[]) => unknown };
    const writeGeneric = s._writeGeneric.bind(s);
    s._writeGeneric = (writev: unknown, data: unknown, ...rest: unknown[]) => {
      writes++;
      bytes += writev ? (data as { chunk: Buffer | string }[]).reduce((n, c) => n + Buffer.byteLength(c.chunk), 0) : Buffer.byteLength(data as Buffer | string);
      return writeGeneric(writev, data, ...rest);
    };
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const client = fork(fileURLToPath(import.meta.url), ["--client"], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const port = (server.address() as AddressInfo).port;
  const run = (path: string, n: number) =>
    new Promise<void>((resolve) => {
      client.once("message", () => resolve());
      client.send({ port, path, requests: n, concurrency });
    });

  const ways = [["before (encoded per call, chunked)", "/before"], ["callbacks.ts reply", "/now"]] as const;
  for (const [, path] of ways) await run(path, requests); // warm up both
  const cpu = new Map<string, number[]>();
  for (let r = 1; r <= rounds; r++) {
    for (const [name, path] of r % 2 ? ways : [...ways].reverse()) {
      const [w0, b0, c0] = [writes, bytes, process.cpuUsage()];
      await run(path, requests);
      const used = process.cpuUsage(c0);
      const us = (used.user + used.system) / requests;
      cpu.set(name, [...(cpu.get(name) ?? []), us]);
      console.log(`round ${r}  ${name.padEnd(36)} CPU ${us.toFixed(1)} us per answer; writes ${((writes - w0) / requests).toFixed(2)}, bytes ${((bytes - b0) / requests).toFixed(0)} per answer`);
    }
  }
  const median = (l: number[]) => [...l].sort((a, b) => a - b)[Math.floor(l.length / 2)];
  const [before, now] = ways.map(([name]) => median(cpu.get(name)!));
  console.log(`median server CPU per answer: ${before.toFixed(1)} -> ${now.toFixed(1)} us (ratio ${(now / before).toFixed(3)}); concurrency ${concurrency}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  client.disconnect();
  server.close();
  server.closeAllConnections();
}
