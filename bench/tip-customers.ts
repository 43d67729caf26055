// Customers' phones for bench/tip-e2e.ts, in an OS process of their own (as the
// simulators are, bench/edge-simulators.ts): the load they make is not charged
// to the platform's process, as real clients' is not, and the bench reads
// their CPU apart. Each virtual customer tips a scanned code by CreateTip
// (Connect over HTTP/2 through the gateway), then watches the tip until it is
// no longer pending. One process for every run (warm-up and measured), so its
// code and connections are as warm as the platform's: it says it is ready
// first, then answers each CustomersRun with a CustomersResult, until the
// bench is gone (its IPC channel closed). The calls are connect-node's, sent by
// a lighter client of the same protocol (bench/customer-client.ts).
import { randomInt, randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { CustomerClient } from "./customer-client.js";
import { startProfile, stopProfile } from "./process-profile.js";

export interface CustomersInput {
  gatewayUrl: string;
  codes: string[];
  /** Addresses the customers' calls come from (x-forwarded-for, a trusted proxy's), one per tip in turn; 0: none sent. */
  clientAddresses?: number;
}

export interface CustomersRun {
  concurrency: number;
  seconds: number;
  /** HTTP/2 connections the customers spread over (default 1): a balancer spreads connections, not calls. */
  connections?: number;
  /** A CPU profile of this process during the run, written to this file. */
  profile?: string;
  /** Where the calls go (default: input.gatewayUrl); cluster mode's yardstick for the gateway: payment's own address. */
  url?: string;
}

export interface CustomersResult {
  /** Every CreateTip's time to its answer, a failed one's (callErrors) too. */
  createLatencies: number[];
  /** Tips watched to an end other than SUCCEEDED. */
  failures: number;
  /**
   * Calls that failed (CreateTip or WatchTip), by Connect code name: a service past its deadline
   * under load is a degraded figure to print, not the end of the run.
   */
  callErrors: Record<string, number>;
}

/** The bench's messages to the customers' process: its input once, then runs. */
export type CustomersMessage = { input: CustomersInput } | { run: CustomersRun };
/** The process's answers: ready (after its input), then each run's result or error. */
export type CustomersAnswer = { ready: true } | CustomersResult | { error: string };

let input: CustomersInput;
// Kept across runs, by URL: connection i is the same HTTP/2 session in every run that uses it.
const clientsByUrl = new Map<string, CustomerClient[]>();
let n = 0;
let address = 0;

/** The next customer's address: 10.x.y.z, the nth of clientAddresses. */
function nextAddress(): Record<string, string> | undefined {
  if (!input.clientAddresses) return undefined;
  const a = address++ % input.clientAddresses;
  return { "x-forwarded-for": `10.${(a >> 16) & 255}.${(a >> 8) & 255}.${a & 255}` };
}

/** One tip, its failed call counted in `result` (the customer goes on to the next tip). */
async function oneTip(customer: CustomerClient, result: CustomersResult): Promise<void> {
  try {
    await tipOnce(customer, result);
  } catch (err) {
    const code = Code[ConnectError.from(err).code] ?? "unknown";
    result.callErrors[code] = (result.callErrors[code] ?? 0) + 1;
  }
}

async function tipOnce(customer: CustomerClient, result: CustomersResult): Promise<void> {
  const phone = `07${String(randomInt(0, 10_000)).padStart(4, "0")}5678`;
  const headers = nextAddress();
  const t0 = performance.now();
  const created = customer.createTip({
    idempotencyKey: randomUUID(),
    recipient: { case: "qrCode", value: input.codes[n++ % input.codes.length] },
    amount: { currency: "KES", amountMinor: 15_000n },
    payment: { case: "mpesaPhone", value: phone },
  }, headers);
  // A failed CreateTip's wait counts too: the percentiles of the calls that succeeded alone would
  // leave out the slowest ones (a deadline missed at 3 s), a p99 under load better than the customers'.
  const { tip } = await created.finally(() => result.createLatencies.push(performance.now() - t0));
  for (const m of await customer.watchTip({ tipId: tip!.tipId }, headers)) {
    if (m.tip!.status !== TipStatus.PENDING && m.tip!.status !== TipStatus.SUCCEEDED) result.failures++;
  }
}

async function run({ concurrency, seconds, connections = 1, profile, url = input.gatewayUrl }: CustomersRun): Promise<CustomersResult> {
  if (profile) await startProfile();
  const clients = clientsByUrl.get(url) ?? [];
  clientsByUrl.set(url, clients);
  while (clients.length < Math.max(1, connections)) {
    clients.push(new CustomerClient(url));
  }
  const result: CustomersResult = { createLatencies: [], failures: 0, callErrors: {} };
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, i) => {
      while (performance.now() < deadline) await oneTip(clients[i % Math.max(1, connections)], result);
    }),
  );
  if (profile) await stopProfile(profile);
  return result;
}

const answer = (a: CustomersAnswer) => process.send!(a);
process.on("message", (m: CustomersMessage) => {
  if ("input" in m) {
    input = m.input;
    n = randomInt(0, input.codes.length);
    answer({ ready: true });
    return;
  }
  run(m.run).then(answer, (err: unknown) => answer({ error: String((err as Error)?.stack ?? err) }));
});
// The bench gone (ended, or killed): the customers stop with it.
process.on("disconnect", () => process.exit(0));
