// CPU per outside-API call of the client alone, as the platform pays it: the
// runtime's keep-alive node:http client against fetch (the yardstick), the
// same Daraja-shaped STK push to the same loopback server, which runs in a
// process of its own (as Safaricom's is not ours), rounds alternated.
// BENCH_OTHER_CLIENT=path/to/other/services/runtime/src/http-client.ts adds
// another tree's client to the same rounds (an A/B on a busy machine: rounds
// short and alternated, so a neighbour's load falls on both alike).
// node --import tsx bench/http-client.ts [requests] [rounds] [concurrency]
import { fileURLToPath } from "node:url";
import { httpRequest, type HttpCall, type HttpReply } from "@ttip/runtime";
import { forkAnswerServer, serveAnswer } from "./answer-server.js";

const answer = JSON.stringify({ MerchantRequestID: "29115-34620561-1", CheckoutRequestID: "ws_CO_191220191020363925", ResponseCode: "0", ResponseDescription: "Success. Request accepted for processing", CustomerMessage: "Success. Request accepted for processing" });

if (process.argv[2] === "--server") {
  await serveAnswer(answer);
} else {
  await measure();
}

async function measure(): Promise<void> {
  const requests = Number(process.argv[2] ?? 3000);
  const rounds = Number(process.argv[3] ?? 3);
  const concurrency = Number(process.argv[4] ?? 8);
  const payload = JSON.stringify({ BusinessShortCode: "174379", Password: "x".repeat(88), Timestamp: "20261129164500", TransactionType: "CustomerPayBillOnline", Amount: 150, PartyA: "254708374149", PartyB: "174379", PhoneNumber: "254708374149", CallBackURL: "https://example.test/callbacks/mpesa/stk/abcdef", AccountReference: "TTIP", TransactionDesc: "Tip" });

  const { server, port } = await forkAnswerServer(fileURLToPath(import.meta.url));
  const url = new URL(`http://127.0.0.1:${port}/mpesa/stkpush/v1/processrequest`);
  const headers = { authorization: "Bearer token", "content-type": "application/json" };

  const clients: Record<string, () => Promise<string>> = {
    "node:http (runtime)": async () => (await httpRequest(url, { method: "POST", headers, body: payload, timeoutMs: 15_000 })).text(),
    ...(await otherClient(url, headers, payload)),
    fetch: async () => (await fetch(url, { method: "POST", headers, body: payload, signal: AbortSignal.timeout(15_000) })).text(),
  };

  async function run(call: () => Promise<string>, n: number): Promise<number> {
    let next = 0;
    const start = process.cpuUsage();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next++ < n) if (!(await call()).includes("ws_CO_")) throw new Error("unexpected answer");
      }),
    );
    const used = process.cpuUsage(start);
    return (used.user + used.system) / n;
  }

  for (const call of Object.values(clients)) await run(call, 300); // warm up, connections open
  const per: Record<string, number[]> = Object.fromEntries(Object.keys(clients).map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) for (const [name, call] of Object.entries(clients)) per[name].push(await run(call, requests));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const ours = median(per["node:http (runtime)"]);
  const theirs = median(per.fetch);
  console.log(`${requests} requests x ${rounds} rounds, concurrency ${concurrency}; the client's CPU µs per request (the server in a process of its own)`);
  for (const [name, xs] of Object.entries(per)) console.log(`  ${name.padEnd(24)} median ${median(xs).toFixed(0)} µs  (rounds: ${xs.map((x) => x.toFixed(0)).join(", ")})`);
  console.log(`  ratio node:http / fetch: ${(ours / theirs).toFixed(2)}`);
  if (per["node:http (other tree)"]) console.log(`  ratio node:http / the other tree's: ${(ours / median(per["node:http (other tree)"])).toFixed(2)}`);
  server.disconnect();
}

/** The other tree's client (BENCH_OTHER_CLIENT), if given, as one more client in the rounds. */
async function otherClient(url: URL, headers: Record<string, string>, payload: string): Promise<Record<string, () => Promise<string>>> {
  const path = process.env.BENCH_OTHER_CLIENT;
  if (!path) return {};
  const other = (await import(path)) as { httpRequest(url: URL, call: HttpCall): Promise<HttpReply> };
  return { "node:http (other tree)": async () => (await other.httpRequest(url, { method: "POST", headers, body: payload, timeoutMs: 15_000 })).text() };
}
