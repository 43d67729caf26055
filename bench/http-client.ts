// CPU per outside-API call of the client alone, as the platform pays it: the
// runtime's client (its own HTTP/1.1 exchange on kept net/tls sockets) against
// the node:http client it replaced (bench/node-http-client.ts, the yardstick),
// the same Daraja-shaped STK push to the same loopback server, which runs in a
// process of its own (as Safaricom's is not ours), rounds alternated (the
// order reversed every other round). BENCH_FETCH=1 adds fetch;
// BENCH_UNDICI=path/to/undici/index.js adds undici's Pool.request (a candidate
// measured, not a dependency); BENCH_OTHER_CLIENT=path/to/other/services/runtime/src/http-client.ts
// adds another tree's client (an A/B on a busy machine).
// node --import tsx bench/http-client.ts [requests] [rounds] [concurrency]
import os from "node:os";
import { fileURLToPath } from "node:url";
import { httpRequest, type HttpCall, type HttpReply } from "@ttip/runtime";
import { forkAnswerServer, serveAnswer } from "./answer-server.js";
import { httpRequest as nodeHttpRequest } from "./node-http-client.js";

const answer = JSON.stringify({ MerchantRequestID: "29115-34620561-1", CheckoutRequestID: "ws_CO_191220191020363925", ResponseCode: "0", ResponseDescription: "Success. Request accepted for processing", CustomerMessage: "Success. Request accepted for processing" });

if (process.argv[2] === "--server") {
  await serveAnswer(answer);
} else {
  await measure();
}

type Call = () => Promise<string>;

async function measure(): Promise<void> {
  const requests = Number(process.argv[2] ?? 3000);
  const rounds = Number(process.argv[3] ?? 5);
  const concurrency = Number(process.argv[4] ?? 8);
  const payload = JSON.stringify({ BusinessShortCode: "174379", Password: "x".repeat(88), Timestamp: "20261129164500", TransactionType: "CustomerPayBillOnline", Amount: 150, PartyA: "254708374149", PartyB: "174379", PhoneNumber: "254708374149", CallBackURL: "https://example.test/callbacks/mpesa/stk/abcdef", AccountReference: "TTIP", TransactionDesc: "Tip" });

  const { server, port } = await forkAnswerServer(fileURLToPath(import.meta.url));
  const url = new URL(`http://127.0.0.1:${port}/mpesa/stkpush/v1/processrequest`);
  const headers = { authorization: "Bearer token", "content-type": "application/json" };
  const call: HttpCall = { method: "POST", headers, body: payload, timeoutMs: 15_000 };

  const clients: Record<string, Call> = {
    "node:http (yardstick)": async () => (await nodeHttpRequest(url, call)).text(),
    "runtime's client": async () => (await httpRequest(url, call)).text(),
    ...(await otherClients(url, call)),
  };

  async function run(client: Call, n: number): Promise<number> {
    let next = 0;
    const start = process.cpuUsage();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next++ < n) if (!(await client()).includes("ws_CO_")) throw new Error("unexpected answer");
      }),
    );
    const used = process.cpuUsage(start);
    return (used.user + used.system) / n;
  }

  for (const client of Object.values(clients)) await run(client, 1000); // warm up, connections open
  const names = Object.keys(clients);
  const per: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) for (const name of r % 2 ? [...names].reverse() : names) per[name].push(await run(clients[name], requests));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const yardstick = median(per[names[0]]);
  console.log(`${requests} requests x ${rounds} rounds, concurrency ${concurrency}; the client's CPU µs per request (the server in a process of its own)`);
  for (const [name, xs] of Object.entries(per)) {
    console.log(`  ${name.padEnd(24)} median ${median(xs).toFixed(0)} µs, ratio to node:http ${(median(xs) / yardstick).toFixed(2)}  (rounds: ${xs.map((x) => x.toFixed(0)).join(", ")})`);
  }
  console.log(`  load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  server.disconnect();
}

/** fetch, undici and another tree's client, when asked for. */
async function otherClients(url: URL, call: HttpCall): Promise<Record<string, Call>> {
  const clients: Record<string, Call> = {};
  if (process.env.BENCH_FETCH) clients.fetch = async () => (await fetch(url, { method: call.method, headers: call.headers, body: call.body, signal: AbortSignal.timeout(call.timeoutMs) })).text();
  if (process.env.BENCH_UNDICI) {
    const { Pool } = (await import(process.env.BENCH_UNDICI)) as { Pool: new (origin: string, options: object) => { request(o: object): Promise<{ body: { text(): Promise<string> } }> } };
    const pool = new Pool(url.origin, { connections: 64, keepAliveTimeout: 4_000 });
    clients["undici Pool.request"] = async () => (await (await pool.request({ path: url.pathname, method: call.method, headers: call.headers, body: call.body, headersTimeout: call.timeoutMs, bodyTimeout: call.timeoutMs })).body).text();
  }
  const path = process.env.BENCH_OTHER_CLIENT;
  if (path) {
    const other = (await import(path)) as { httpRequest(url: URL, call: HttpCall): Promise<HttpReply> };
    clients["the other tree's client"] = async () => (await other.httpRequest(url, call)).text();
  }
  return clients;
}
