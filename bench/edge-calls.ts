// What one tip's calls to the edge of the world cost, on both sides: the
// simulators' process (bench/edge-simulators.ts: Daraja, notification's
// providers) and this process as the platform's side of them (payment's Daraja
// client, its STK callback received, notification's Africa's Talking client
// twice, as tip-e2e's "messages the providers took per tip 2.00"). Per tip: an
// STK push, its callback to a loopback server here answered as payment answers
// it, then two SMS. CPU microseconds per tip of each process (/proc, and
// process.cpuUsage).
// BENCH_OTHER_TREE=/path/to/another/checkout (with its own node_modules) runs that
// tree's simulators and clients too, at the same time as this tree's: each tree's
// platform side in a process of its own (this file, --driver), every round started
// in both at once, so a neighbour's load falls on both alike (an A/B on a busy machine).
//   node --import tsx bench/edge-calls.ts [tips per round=2000] [rounds=5] [concurrency=16]
import { fork } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { processCpuMs } from "./process-cpu.js";

const tips = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 5);
const concurrency = Number(process.argv[2] === "--driver" ? process.argv[4] : (process.argv[4] ?? 16));

const SMS_TEXT = "TTIP: You received a tip of KES 150.00 from a customer at Worker 7. Your balance is KES 1,234.50. Ref TIP8F3K2Q.";

interface SmsProvider {
  send(m: { deliveryId: string; to: string; subject: string; body: string; statusCallbackUrl: string }): Promise<{ ok: boolean }>;
}
interface Variant {
  name: string;
  simPid: number;
  stkPush(phone: string, callbackUrl: string): Promise<string>;
  sms: SmsProvider;
  close(): Promise<void>;
}

/** A tree's simulators' process and its clients (the modules of that tree, as its platform would run them). */
async function variant(name: string, root: string): Promise<Variant> {
  const edge = await import(`${root}/bench/edge-simulators.ts`);
  const { DarajaClient } = await import(`${root}/services/payment/src/daraja/client.ts`);
  const { africasTalking } = await import(`${root}/services/notification/src/providers.ts`);
  const sims = await edge.startEdgeSimulators();
  const daraja = new DarajaClient(sims.daraja.clientConfig());
  return {
    name,
    simPid: sims.pid,
    stkPush: async (phone, callbackUrl) =>
      (await daraja.stkPush({ phone, amount: 150, callbackUrl, accountReference: "TTIP", description: "Tip" })).CheckoutRequestID,
    sms: africasTalking(sims.providers.africastalking, 10_000),
    close: () => sims.close(),
  };
}

// The callbacks' receiver, as payment's: reads the body whole, answers "Accepted"; a push waits for
// its callback, which may overtake the push's answer (then it is remembered until asked for).
const waiting = new Map<string, () => void>();
const early = new Set<string>();
let callbackUrl = "";
/** Starts the receiver (a driver's, on loopback); callbackUrl then names it. */
async function startReceiver(): Promise<void> {
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { Body: { stkCallback: { CheckoutRequestID: string; ResultCode: number } } };
      const text = JSON.stringify({ ResultCode: 0, ResultDesc: "Accepted" });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
      const { CheckoutRequestID: checkout, ResultCode: code } = body.Body.stkCallback;
      if (code !== 0) throw new Error(`STK callback with ResultCode ${code}`);
      const resolve = waiting.get(checkout);
      if (resolve) resolve();
      else early.add(checkout);
    });
  });
  receiver.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  callbackUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/callbacks/mpesa/stk/bench-token`;
}

function callbackOf(checkout: string): Promise<void> {
  if (early.delete(checkout)) return Promise.resolve();
  return new Promise<void>((resolve) => waiting.set(checkout, () => (waiting.delete(checkout), resolve())));
}

async function oneTip(v: Variant, i: number): Promise<void> {
  const phone = `2547${String(i % 10_000).padStart(4, "0")}5678`;
  await callbackOf(await v.stkPush(phone, callbackUrl));
  for (let s = 0; s < 2; s++) {
    const sent = await v.sms.send({ deliveryId: `d${i}-${s}`, to: `+${phone}`, subject: "", body: SMS_TEXT, statusCallbackUrl: "" });
    if (!sent.ok) throw new Error(`SMS not sent: ${JSON.stringify(sent)}`);
  }
}

/** CPU µs per tip of the simulators' process and of this one, for n tips at the concurrency. */
async function round(v: Variant, n: number): Promise<{ sim: number; here: number }> {
  const sim0 = processCpuMs(v.simPid);
  const here0 = process.cpuUsage();
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await oneTip(v, next++);
  }));
  const here = process.cpuUsage(here0);
  return { sim: ((processCpuMs(v.simPid) - sim0) * 1000) / n, here: (here.user + here.system) / n };
}

/** A round's figures, CPU µs per tip. */
type Figures = { sim: number; here: number };
/** A tree's driver: this file in a process of its own, running rounds when asked. */
interface Driver {
  name: string;
  round(n: number): Promise<Figures>;
  close(): void;
}

/** Runs the rounds the parent asks for, with one tree's simulators and clients; says ready first. */
async function drive(root: string): Promise<void> {
  await startReceiver();
  const v = await variant("driver", root);
  process.on("message", (m: { round: number }) => void round(v, m.round).then((f) => process.send!(f)));
  process.on("disconnect", () => void v.close().then(() => process.exit(0)));
  process.send!("ready");
}

async function driver(name: string, root: string): Promise<Driver> {
  const child = fork(fileURLToPath(import.meta.url), ["--driver", root, String(concurrency)], { execArgv: process.execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  await new Promise((r) => child.once("message", r));
  return {
    name,
    round: (n) => new Promise((resolve) => (child.once("message", resolve), child.send({ round: n }))),
    close: () => child.disconnect(),
  };
}

if (process.argv[2] === "--driver") {
  await drive(process.argv[3]);
} else {
  await measure();
}

async function measure(): Promise<void> {
  const drivers = [await driver("this tree", new URL("..", import.meta.url).pathname.replace(/\/$/, ""))];
  if (process.env.BENCH_OTHER_TREE) drivers.push(await driver("other tree", process.env.BENCH_OTHER_TREE.replace(/\/$/, "")));
  try {
    await Promise.all(drivers.map((d) => d.round(Math.min(500, tips)))); // warm: code compiled, connections open
    const per = new Map(drivers.map((d) => [d.name, { sim: [] as number[], here: [] as number[] }]));
    for (let r = 0; r < rounds; r++) {
      const figures = await Promise.all(drivers.map((d) => d.round(tips)));
      drivers.forEach((d, i) => {
        per.get(d.name)!.sim.push(figures[i].sim);
        per.get(d.name)!.here.push(figures[i].here);
      });
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const list = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(", ");
    console.log(`node ${process.version}; ${tips} tips x ${rounds} rounds at concurrency ${concurrency}; per tip an STK push, its callback, 2 SMS; load average ${os.loadavg().map((l) => l.toFixed(1)).join(", ")}`);
    console.log("CPU µs per tip, medians (each round's in brackets; the simulators' process read from /proc in clock ticks)");
    for (const [name, { sim, here }] of per) {
      console.log(`  ${name.padEnd(10)}  simulators ${median(sim).toFixed(0).padStart(5)} (${list(sim)})   platform's side ${median(here).toFixed(0).padStart(5)} (${list(here)})`);
    }
    if (drivers.length > 1) {
      // Each round's two figures were taken over the same seconds: their ratio is the steadier one.
      const [a, b] = [...per.values()];
      const ratios = (xs: number[], ys: number[]) => xs.map((x, i) => x / ys[i]);
      const said = (rs: number[]) => `${median(rs).toFixed(2)} (${rs.map((r) => r.toFixed(2)).join(", ")})`;
      console.log(`  this tree / other tree, median of the rounds' ratios: simulators ${said(ratios(a.sim, b.sim))}; platform's side ${said(ratios(a.here, b.here))}`);
    }
  } finally {
    for (const d of drivers) d.close();
  }
}
