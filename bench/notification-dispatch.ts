// Notification figures: template rendering with SMS segment counting, and
// end-to-end SMS throughput (SendNotification -> outbox -> bus -> dispatcher
// -> Africa's Talking simulator) on the embedded stack (PGlite, in-process bus).
// "cluster" runs the same on throwaway PostgreSQL and NATS JetStream servers, then customer
// receipts as payment sends them (SendNotifications, a few per call): what each receipt costs
// in statements, commits, plans, bus messages and CPU.
//   node --import tsx bench/notification-dispatch.ts [messages] [embedded|cluster] [receipts per call=4]
import { performance } from "node:perf_hooks";
import { connect } from "nats";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import {
  createLogger,
  createPeers,
  createPool,
  InProcessBus,
  JetStreamBus,
  MemoryCache,
  Metrics,
  signingInterceptor,
  startService,
  type EventBus,
} from "@ttip/runtime";
import { startEmbeddedPostgres } from "@ttip/runtime/embedded";
import { startNats, startPostgres } from "@ttip/runtime/testing";
import { createNotificationModule, DEFAULT_RETRY } from "@ttip/notification";
import { ProviderSimulator } from "@ttip/notification/testing";
import { smsSize } from "@ttip/runtime/sms-size";
import { defaultTemplates, render, TEMPLATE_VARIABLES } from "../services/notification/src/templates.js";
import { cpuMs } from "./process-cpu.js";

const count = Number(process.argv[2] ?? 200);
const mode = process.argv[3] === "cluster" ? "cluster" : "embedded";
const receiptsPerCall = Number(process.argv[4] ?? 4);

// 1. Rendering.
const templates = defaultTemplates();
const rounds = 20_000;
let t0 = performance.now();
let segments = 0;
for (let i = 0; i < rounds; i++) {
  const tpl = templates[i % templates.length];
  const body = render(tpl.body, Object.fromEntries(TEMPLATE_VARIABLES[tpl.key].map((v) => [v, `value ${i}`])));
  segments += smsSize(body).segments;
}
const renderMs = performance.now() - t0;
console.log(`render + segment count: ${rounds} in ${renderMs.toFixed(0)} ms = ${((rounds / renderMs) * 1000).toFixed(0)}/s (${segments} segments)`);

// 2. End to end.
const logger = createLogger({ level: "silent" });
const pg = mode === "cluster" ? await startPostgres({ durable: true, statementStats: true }) : await startEmbeddedPostgres();
const nats = mode === "cluster" ? await startNats() : undefined;
const pool = createPool(pg.url, { max: mode === "cluster" ? 10 : 1 });
// Statements the service sends, per SMS: what each message costs the database.
let statements = 0;
pool.on("connect", (c) => {
  const query = c.query.bind(c) as (...args: unknown[]) => unknown;
  (c as unknown as { query: typeof query }).query = (...args) => {
    statements++;
    return query(...args);
  };
});
const bus: EventBus = nats ? await JetStreamBus.connect({ servers: nats.url, logger }) : new InProcessBus(logger, 50);
const sim = new ProviderSimulator();
await sim.start();
const peers = createPeers(() => undefined);
const svc = await startService(
  createNotificationModule({ config: { providers: sim.config(), retry: DEFAULT_RETRY, publicUrl: () => "" } }),
  { logger, pool, bus, cache: new MemoryCache(), metrics: new Metrics(), peers },
);
// The internal service takes the platform's own (signed) calls only.
const client = createClient(NotificationInternalService, createGrpcTransport({ baseUrl: svc.server.url, interceptors: [signingInterceptor()] }));
const phoneOf = (i: number) => `+2547${String(10_000_000 + i).slice(-8)}`;
/** `n` OTPs by SendNotification to the numbers from `first` on, all at once; their latencies. */
async function sendOtps(first: number, n: number): Promise<number[]> {
  const latencies: number[] = [];
  await Promise.all(
    Array.from({ length: n }, async (_, k) => {
      const i = first + k;
      const s = performance.now();
      await client.sendNotification({
        idempotencyKey: `bench-${i.toString().padStart(6, "0")}`,
        recipient: { case: "phone", value: phoneOf(i) },
        templateKey: TemplateKey.OTP,
        variables: { code: String(100000 + i), minutes: "5" },
      });
      latencies.push(performance.now() - s);
    }),
  );
  return latencies;
}
const statementsBefore = statements;
// CPU of this process (service, client and simulator), PostgreSQL (with its backends) and NATS, cluster mode.
const cpuPids = new Map([["this process", process.pid], ...(nats ? [["postgres", (pg as { pid: number }).pid] as const, ["nats", nats.pid] as const] : [])]);
const cpuBefore = cpuMs(cpuPids, new Set(["postgres"]));
t0 = performance.now();
const latencies = await sendOtps(0, count);
const acceptedMs = performance.now() - t0;
while (sim.sent.length < count) await new Promise((r) => setTimeout(r, 10));
const sentMs = performance.now() - t0;
latencies.sort((a, b) => a - b);
const p = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(1);
console.log(`SendNotification: ${count} accepted in ${acceptedMs.toFixed(0)} ms (p50 ${p(0.5)} ms, p99 ${p(0.99)} ms)`);
// The last records land just after the provider has the message.
await new Promise((r) => setTimeout(r, 500));
console.log(`SQL statements per SMS (accepted, queued, claimed, sent and recorded; BEGIN/COMMIT included): ${((statements - statementsBefore) / count).toFixed(2)}`);
console.log(`all ${count} SMS at the provider after ${sentMs.toFixed(0)} ms = ${((count / sentMs) * 1000).toFixed(0)} SMS/s (${mode === "cluster" ? "PostgreSQL, JetStream" : "embedded: PGlite, one connection"})`);
if (nats) {
  const cpuAfter = cpuMs(cpuPids, new Set(["postgres"]));
  console.log(`CPU ms per SMS: ${[...cpuAfter].map(([name, ms]) => `${name} ${((ms - (cpuBefore.get(name) ?? 0)) / count).toFixed(2)}`).join(", ")}`);
}
if (nats) console.log(`JetStream deliveries per SMS to notification's consumers (each one a message handed over and acknowledged): ${await natsDeliveries(nats.url, count)}`);

/** Messages JetStream handed to the notification service's durable consumers, per SMS, in all and by consumer. */
async function natsDeliveries(url: string, sms: number): Promise<string> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await nc.jetstreamManager();
    const by: [string, number][] = [];
    for await (const c of jsm.consumers.list("TTIP")) if (c.name.startsWith("notification-")) by.push([c.name, c.delivered.consumer_seq]);
    const total = by.reduce((n, [, d]) => n + d, 0);
    const busy = by.filter(([, d]) => d > 0).map(([name, d]) => `${name} ${(d / sms).toFixed(2)}`);
    return `${(total / sms).toFixed(2)} (${busy.join(", ")})`;
  } finally {
    await nc.close();
  }
}

// 3. Slow answers: the provider takes every send at once but answers one in SLOW_EVERY only after
// SLOW_MS. How long the others stay 'sending' (claimed until their "sent" record, on the database's
// clock): a prompt answer's record should not wait for a slow one dispatched with it. A send to a
// number is claimed by the statement that writes it, so in this burst of single calls its time
// 'sending' includes its record's wait for the pool behind the other calls' statements.
const SLOW_EVERY = 8;
const SLOW_MS = 1_000;
for (let k = 0; k < count; k += SLOW_EVERY) sim.slowAnswers.set(phoneOf(count + k), SLOW_MS);
const slowStatements = statements;
const slowStart = performance.now();
await sendOtps(count, count);
while (sim.sent.length < 2 * count) await new Promise((r) => setTimeout(r, 10));
// The bench's own look (one statement each) is not the service's: left out of the count.
let looks = 0;
const recorded = async () => (looks++, (await pool.query("SELECT count(*)::int AS n FROM notification.delivery_attempts WHERE status = 'sending'")).rows[0].n === 0);
while (!(await recorded())) await new Promise((r) => setTimeout(r, 10));
const slowTotalMs = performance.now() - slowStart;
const countedSlow = statements - slowStatements - looks;
const held = await pool.query<{ address: string; ms: number }>(
  `SELECT d.address, extract(epoch FROM a.finished_at - a.started_at) * 1000 AS ms
     FROM notification.delivery_attempts a JOIN notification.deliveries d ON d.id = a.delivery_id
    WHERE d.source_key >= 'rpc:bench-' || lpad($1::text, 6, '0')`,
  [count],
);
const prompt = held.rows.filter((r) => !sim.slowAnswers.has(`+${r.address}`)).map((r) => Number(r.ms)).sort((a, b) => a - b);
const q = (xs: number[], f: number) => xs[Math.min(xs.length - 1, Math.floor(f * xs.length))].toFixed(0);
console.log(
  `with 1 in ${SLOW_EVERY} answers ${SLOW_MS} ms late: ${count} SMS recorded after ${slowTotalMs.toFixed(0)} ms; ` +
    `the ${prompt.length} answered at once stayed 'sending' p50 ${q(prompt, 0.5)} ms, p90 ${q(prompt, 0.9)} ms, p99 ${q(prompt, 0.99)} ms ` +
    `(${(countedSlow / count).toFixed(2)} statements per SMS)`,
);
// 4. Receipts as payment sends them: SendNotifications calls of a few one-channel SMS each
// (RECEIPT to the number that paid), several calls at once. Per receipt: the statements
// the service sends, the transactions PostgreSQL commits (its count, less the bench's own
// looks), each statement's plans per call, the bus messages, and CPU.
// An idle PostgreSQL backend reports its counts within 10 s (PGSTAT_IDLE_INTERVAL): waited for before each read.
const STATS_SETTLE_MS = 10_500;
if (nats) await receipts(2 * count, count);
if (nats) await receipts(3 * count, count);
if (nats && process.env.BENCH_PLANS) await preparedPlans();

/** `n` receipts, numbered from `first` on, in calls of receiptsPerCall, eight calls at a time. */
async function receipts(first: number, n: number): Promise<void> {
  const sentBefore = sim.sent.length;
  const commits = async () => (await pool.query<{ n: string }>("SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()")).rows[0].n;
  await pool.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  await pool.query("SELECT pg_stat_statements_reset()");
  await new Promise((r) => setTimeout(r, STATS_SETTLE_MS));
  // The idle service's own commits (its pollers) over a settle, taken off the run's below.
  const idle0 = Number(await commits());
  const idleStart = performance.now();
  await new Promise((r) => setTimeout(r, STATS_SETTLE_MS));
  const deliveriesBefore = await natsDeliveryCount(nats!.url);
  const commits0 = Number(await commits());
  const idlePerMs = (commits0 - idle0 - 1) / (performance.now() - idleStart);
  const windowStart = performance.now();
  const statements0 = statements;
  const cpu0 = cpuMs(cpuPids, new Set(["postgres"]));
  const start = performance.now();
  const calls = Array.from({ length: Math.ceil(n / receiptsPerCall) }, (_, c) => c);
  const CONCURRENT_CALLS = 8;
  for (let c = 0; c < calls.length; c += CONCURRENT_CALLS) {
    await Promise.all(
      calls.slice(c, c + CONCURRENT_CALLS).map(async (call) => {
        const requests = Array.from({ length: Math.min(receiptsPerCall, n - call * receiptsPerCall) }, (_, k) => {
          const i = first + call * receiptsPerCall + k;
          return {
            idempotencyKey: `receipt:bench-${i}`,
            recipient: { case: "phone" as const, value: phoneOf(i) },
            templateKey: TemplateKey.RECEIPT,
            variables: { amount: "KES 100.00", worker: "Amina", reference: `REF${i}` },
            channels: [Channel.SMS],
          };
        });
        const { results } = await client.sendNotifications({ requests });
        if (results.some((r) => r.code !== 0)) throw new Error(`a receipt was refused: ${results.find((r) => r.code !== 0)?.message}`);
      }),
    );
  }
  while (sim.sent.length < sentBefore + n) await new Promise((r) => setTimeout(r, 10));
  // Each receipt's "sent" record, and the outbox's relay of its fact, land just after the provider has it.
  let looks = 0;
  const settled = async () => (looks++, (await pool.query("SELECT count(*)::int AS n FROM notification.delivery_attempts WHERE status = 'sending'")).rows[0].n === 0);
  while (!(await settled())) await new Promise((r) => setTimeout(r, 10));
  // The relay of the last "sent" facts.
  await new Promise((r) => setTimeout(r, 500));
  const ms = performance.now() - start;
  const cpu1 = cpuMs(cpuPids, new Set(["postgres"]));
  const countedStatements = statements - statements0 - looks;
  await new Promise((r) => setTimeout(r, STATS_SETTLE_MS));
  // The bench's own: its looks, and the two reads of the count.
  const countedCommits = Number(await commits()) - commits0 - looks - 1 - idlePerMs * (performance.now() - windowStart);
  const busMessages = (await natsDeliveryCount(nats!.url)) - deliveriesBefore;
  console.log(`receipts: ${n} in calls of ${receiptsPerCall}, 8 calls at a time, all sent and recorded after ${ms.toFixed(0)} ms`);
  console.log(
    `  per receipt: ${(countedStatements / n).toFixed(2)} statements, ${(countedCommits / n).toFixed(2)} commits (net of the idle service's ${(idlePerMs * 1000).toFixed(1)}/s), ` +
      `${(busMessages / n).toFixed(2)} JetStream deliveries to notification's consumers`,
  );
  console.log(`  CPU ms per receipt: ${[...cpu1].map(([name, v]) => `${name} ${((v - (cpu0.get(name) ?? 0)) / n).toFixed(2)}`).join(", ")}`);
  const { rows } = await pool.query<{ calls: string; plans: string; query: string }>(
    `SELECT calls, plans, query FROM pg_stat_statements
      WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%delivery_attempts WHERE status = ''sending''%' ORDER BY calls DESC LIMIT 8`,
  );
  console.log("  statements per receipt  plans per call  statement");
  for (const r of rows) console.log(`  ${(Number(r.calls) / n).toFixed(2).padStart(22)}  ${(Number(r.plans) / Number(r.calls)).toFixed(2).padStart(14)}  ${r.query.replace(/\s+/g, " ").slice(0, 90)}`);
}

/** Each prepared statement's custom and generic plans, over every connection of the pool. */
async function preparedPlans(): Promise<void> {
  const clients = await Promise.all(Array.from({ length: 10 }, () => pool.connect()));
  const by = new Map<string, { generic: number; custom: number }>();
  for (const c of clients) {
    const { rows } = await c.query<{ statement: string; generic_plans: string; custom_plans: string }>("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements");
    for (const r of rows) {
      const k = r.statement.replace(/\s+/g, " ").slice(0, 70);
      const v = by.get(k) ?? { generic: 0, custom: 0 };
      by.set(k, { generic: v.generic + Number(r.generic_plans), custom: v.custom + Number(r.custom_plans) });
    }
  }
  for (const c of clients) c.release();
  for (const [k, v] of by) console.log(`  prepared: generic ${v.generic} custom ${v.custom}  ${k}`);
}

/** Messages JetStream has handed to notification's consumers so far. */
async function natsDeliveryCount(url: string): Promise<number> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await nc.jetstreamManager();
    let total = 0;
    for await (const c of jsm.consumers.list("TTIP")) if (c.name.startsWith("notification-")) total += c.delivered.consumer_seq;
    return total;
  } finally {
    await nc.close();
  }
}

await svc.close();
peers.close();
await bus.close();
await sim.close();
await pool.end();
await ("close" in pg ? pg.close() : pg.stop());
await nats?.stop();
