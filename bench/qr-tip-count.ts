// qr's scan-to-tip count, its statement per batch of tip_succeeded events, two ways on one durable
// PostgreSQL in alternated rounds (the order reversed every other round): the yardstick, the inbox
// way as qr counted before (each event's inbox row written, the tip counted only for the ids the
// statement recorded), against idempotentEffect (qr's startTipConsumer as it is: the tip counted by
// its id alone, ON CONFLICT DO NOTHING, no inbox row). Each way gets batches of its own tips through
// consumeEventBatches, one connection, so the backend's CPU (/proc) is the statements'. Per event:
// statements, WAL records and bytes (pg_walinspect between two flushed positions: exact, whatever the
// load), PostgreSQL's CPU (the backend's user+system ticks: noisy under load) and this process's.
// Then every batch handed over again (a redelivery): both ways count nothing more.
//   node --import tsx bench/qr-tip-count.ts [events per round=3900] [rounds=4] [batch=13]
import { loadavg } from "node:os";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, consumeEventBatches, createPool, migrate, type DeliveredMessage, type EventBus, type ServiceContext } from "@ttip/runtime";
import { captureLogger, startPostgres } from "@ttip/runtime/testing";
import { countedTip, startTipConsumer } from "../services/qr/src/tips.js";
import { quietWalSettings, walBetween, walFlushed } from "./pg-wal.js";

const perRound = Number(process.argv[2] ?? 3_900);
const rounds = Number(process.argv[3] ?? 4);
const batchSize = Number(process.argv[4] ?? 13);
const { logger } = captureLogger("silent");

const pg = await startPostgres({ durable: true });
const pool = createPool(pg.url, { max: 1 });
await quietWalSettings((sql, values) => pool.query(sql, values));
await migrate(pool, "qr", fileURLToPath(new URL("../services/qr/migrations", import.meta.url)), logger);
let statements = 0;
const counted = new Proxy(pool, {
  get: (target, key) => (key === "query" ? (...args: unknown[]) => (statements++, (target.query as (...a: unknown[]) => unknown)(...args)) : Reflect.get(target, key)),
});

/** A bus that hands each batch straight to the consumer's handler (the one subscribed last). */
function handingBus(): { bus: EventBus; hand: () => (messages: DeliveredMessage[]) => Promise<void> } {
  let handler: ((messages: DeliveredMessage[]) => Promise<void>) | undefined;
  const bus = {
    subscribeBatches: async (o: { handler: (messages: DeliveredMessage[]) => Promise<void> }) => {
      handler = o.handler;
      return { stop: async () => undefined };
    },
  } as unknown as EventBus;
  return { bus, hand: () => handler! };
}

/** The yardstick: qr's consumer as it was, every event's inbox row written and only those recorded counted. */
async function inboxWay(bus: EventBus): Promise<void> {
  await consumeEventBatches({
    bus, pool: counted, schema: "qr", consumer: "qr-tip-conversion", subject: "ttip.payment.tip_succeeded", logger,
    effectCte: (messages, first) => {
      const tips = messages.map((m) => ({ eventId: m.id, tip: countedTip(m.data) }));
      const [eventIds, tipIds, codes, times] = [0, 1, 2, 3].map((i) => `$${first + i}`);
      return {
        sql: `counted AS (INSERT INTO qr.tips (tip_id, qr_code_id, occurred_at)
           SELECT t.tip_id, t.qr_code_id, t.occurred_at FROM unnest(${eventIds}::uuid[], ${tipIds}::text[], ${codes}::uuid[], ${times}::timestamptz[]) AS t(event_id, tip_id, qr_code_id, occurred_at)
            WHERE t.event_id IN (SELECT event_id FROM fresh) ON CONFLICT DO NOTHING)`,
        values: [tips.map((t) => t.eventId), tips.map((t) => t.tip.tipId), tips.map((t) => t.tip.qrCodeId), tips.map(() => new Date())],
      };
    },
  });
}

const codes = Array.from({ length: 50 }, () => crypto.randomUUID());
const tipEvent = (i: number): DeliveredMessage => ({
  ...buildEvent("payment", TipSucceededSchema, {
    tipId: crypto.randomUUID(), workerId: crypto.randomUUID(), qrCodeId: codes[i % codes.length],
    amount: { amountMinor: 10_000n, currency: "KES" }, mpesaReceipt: `TLL${i}`, message: "asante",
  }),
  deliveryCount: 1,
});

/** The backend's CPU so far, in ms (user + system ticks of /proc/<pid>/stat). */
async function backendCpuMs(): Promise<number> {
  const { rows } = await pool.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
  const fields = (await readFile(`/proc/${rows[0].pid}/stat`, "utf8")).split(") ")[1].split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

interface Figures { statements: number; records: number; bytes: number; pgMs: number; nodeUs: number }

async function round(hand: (messages: DeliveredMessage[]) => Promise<void>, events: DeliveredMessage[]): Promise<Figures> {
  // As autovacuum would (it is off here: quietWalSettings): planned on a young inbox's figures, the
  // yardstick's NOT EXISTS read the whole inbox, its CPU per event rising round by round.
  await pool.query("ANALYZE qr.inbox, qr.tips");
  const from = await walFlushed((sql) => pool.query(sql));
  const pg0 = await backendCpuMs();
  const s0 = statements;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < events.length; i += batchSize) await hand(events.slice(i, i + batchSize));
  const cpu = process.cpuUsage(cpu0);
  const s = statements - s0;
  const pgMs = (await backendCpuMs()) - pg0;
  const wal = await walBetween((sql, values) => pool.query(sql, values), from, await walFlushed((sql) => pool.query(sql)), 0);
  const n = events.length;
  return { statements: s / n, records: wal.all.records / n, bytes: wal.all.bytes / n, pgMs: pgMs / n, nodeUs: (cpu.user + cpu.system) / n };
}

const before = handingBus();
await inboxWay(before.bus);
const after = handingBus();
await startTipConsumer({ bus: after.bus, pool: counted, logger } as unknown as ServiceContext);
const ways = [["inbox (before)", before.hand()], ["idempotentEffect (after)", after.hand()]] as const;
const all = new Map<string, { hand: (messages: DeliveredMessage[]) => Promise<void>; events: DeliveredMessage[][]; figures: Figures[] }>(
  ways.map(([name, hand]) => [name, { hand, events: [], figures: [] }]),
);
let made = 0;
console.log(`${perRound} tip_succeeded events a round in batches of ${batchSize}, ${rounds} rounds alternated, durable PostgreSQL, one connection; load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
for (const [, way] of all) await round(way.hand, Array.from({ length: perRound / 4 }, () => tipEvent(made++))); // warm-up
for (let r = 1; r <= rounds; r++) {
  for (const [name, way] of r % 2 ? [...all] : [...all].reverse()) {
    const events = Array.from({ length: perRound }, () => tipEvent(made++));
    way.events.push(events);
    const f = await round(way.hand, events);
    way.figures.push(f);
    console.log(`round ${r}  ${name.padEnd(26)} per event: ${f.statements.toFixed(3)} statements, WAL ${f.records.toFixed(2)} records ${f.bytes.toFixed(0)} B, PostgreSQL CPU ${(f.pgMs * 1000).toFixed(0)} us, this process ${f.nodeUs.toFixed(0)} us`);
  }
}
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
const [yard, ours] = [...all.values()].map((w) => ({
  records: median(w.figures.map((f) => f.records)), bytes: median(w.figures.map((f) => f.bytes)), pgUs: median(w.figures.map((f) => f.pgMs * 1000)),
  nodeUs: median(w.figures.map((f) => f.nodeUs)), statements: median(w.figures.map((f) => f.statements)),
}));
const ratio = (a: number, b: number) => (b / a).toFixed(3);
console.log(`medians per event, before -> after: statements ${yard.statements.toFixed(3)} -> ${ours.statements.toFixed(3)}; WAL records ${yard.records.toFixed(2)} -> ${ours.records.toFixed(2)} (${ratio(yard.records, ours.records)}), ` +
  `bytes ${yard.bytes.toFixed(0)} -> ${ours.bytes.toFixed(0)} (${ratio(yard.bytes, ours.bytes)}); PostgreSQL CPU ${yard.pgUs.toFixed(0)} -> ${ours.pgUs.toFixed(0)} us (${ratio(yard.pgUs, ours.pgUs)}); ` +
  `this process ${yard.nodeUs.toFixed(0)} -> ${ours.nodeUs.toFixed(0)} us; load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
// A redelivery of every batch counts nothing more, either way.
const tipsBefore = Number((await pool.query<{ n: string }>("SELECT count(*) AS n FROM qr.tips")).rows[0].n);
for (const [name, way] of all) {
  for (const events of way.events) for (let i = 0; i < events.length; i += batchSize) await way.hand(events.slice(i, i + batchSize).map((m) => ({ ...m, deliveryCount: 2 })));
  const n = Number((await pool.query<{ n: string }>("SELECT count(*) AS n FROM qr.tips")).rows[0].n);
  if (n !== tipsBefore) throw new Error(`${name}: a redelivery counted ${n - tipsBefore} tips again`);
}
const inboxRows = Number((await pool.query<{ n: string }>("SELECT count(*) AS n FROM qr.inbox")).rows[0].n);
console.log(`every batch delivered again: qr.tips still ${tipsBefore} rows (each tip once); inbox rows ${inboxRows} (the yardstick's and its warm-up's alone)`);
await pool.end();
await pg.stop();
