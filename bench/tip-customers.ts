// Customers' phones for bench/tip-e2e.ts, on a worker thread: the load they
// make is not charged to the platform's event loop, as real clients are not.
// Each virtual customer tips a scanned code by CreateTip (Connect over HTTP/2
// through the gateway), then watches the tip until it is no longer pending.
import { randomInt, randomUUID } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";

export interface CustomersInput {
  gatewayUrl: string;
  codes: string[];
  concurrency: number;
  seconds: number;
  /** HTTP/2 connections the customers spread over (default 1): a balancer spreads connections, not calls. */
  connections?: number;
}

const input = workerData as CustomersInput;
const clients = Array.from({ length: Math.max(1, input.connections ?? 1) }, () =>
  createClient(PaymentService, createConnectTransport({ baseUrl: input.gatewayUrl, httpVersion: "2" })),
);
let n = randomInt(0, input.codes.length);
const createLatencies: number[] = [];
let failures = 0;

async function oneTip(customer: (typeof clients)[number]): Promise<void> {
  const phone = `07${String(randomInt(0, 10_000)).padStart(4, "0")}5678`;
  const t0 = performance.now();
  const { tip } = await customer.createTip({
    idempotencyKey: randomUUID(),
    recipient: { case: "qrCode", value: input.codes[n++ % input.codes.length] },
    amount: { currency: "KES", amountMinor: 15_000n },
    payment: { case: "mpesaPhone", value: phone },
  });
  createLatencies.push(performance.now() - t0);
  for await (const m of customer.watchTip({ tipId: tip!.tipId })) {
    if (m.tip!.status !== TipStatus.PENDING && m.tip!.status !== TipStatus.SUCCEEDED) failures++;
  }
}

const deadline = performance.now() + input.seconds * 1000;
await Promise.all(
  Array.from({ length: input.concurrency }, async (_, i) => {
    while (performance.now() < deadline) await oneTip(clients[i % clients.length]);
  }),
);
parentPort!.postMessage({ createLatencies, failures });
