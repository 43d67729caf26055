// CPU per outside-API call: the runtime's keep-alive node:http client against
// fetch, the same Daraja-shaped STK push to the same loopback server in this
// process (its cost is in both figures), rounds alternated.
// node --import tsx bench/http-client.ts [requests] [rounds] [concurrency]
import http from "node:http";
import type { AddressInfo } from "node:net";
import { httpRequest } from "@ttip/runtime";

const requests = Number(process.argv[2] ?? 3000);
const rounds = Number(process.argv[3] ?? 3);
const concurrency = Number(process.argv[4] ?? 8);

const answer = JSON.stringify({ MerchantRequestID: "29115-34620561-1", CheckoutRequestID: "ws_CO_191220191020363925", ResponseCode: "0", ResponseDescription: "Success. Request accepted for processing", CustomerMessage: "Success. Request accepted for processing" });
const payload = JSON.stringify({ BusinessShortCode: "174379", Password: "x".repeat(88), Timestamp: "20261129164500", TransactionType: "CustomerPayBillOnline", Amount: 150, PartyA: "254708374149", PartyB: "174379", PhoneNumber: "254708374149", CallBackURL: "https://example.test/callbacks/mpesa/stk/abcdef", AccountReference: "TTIP", TransactionDesc: "Tip" });

const server = http.createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.setHeader("content-type", "application/json");
    res.end(answer);
  });
});
server.keepAliveTimeout = 60_000;
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mpesa/stkpush/v1/processrequest`;
const headers = { authorization: "Bearer token", "content-type": "application/json" };

const clients: Record<string, () => Promise<string>> = {
  "node:http (runtime)": async () => (await httpRequest(url, { method: "POST", headers, body: payload, timeoutMs: 15_000 })).text(),
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
console.log(`${requests} requests x ${rounds} rounds, concurrency ${concurrency}; CPU µs per request (client and server in this process)`);
for (const [name, xs] of Object.entries(per)) console.log(`  ${name.padEnd(20)} median ${median(xs).toFixed(0)} µs  (rounds: ${xs.map((x) => x.toFixed(0)).join(", ")})`);
console.log(`  ratio node:http / fetch: ${(ours / theirs).toFixed(2)}`);
server.closeAllConnections();
server.close();
