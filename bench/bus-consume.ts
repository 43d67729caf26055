// What the bus allocates and spends in this process to hand JetStream's messages to a consumer
// (read, queued, handed over, acknowledged), per message: a batch consumer (subscribeBatches) and a
// one-at-a-time one (subscribe), each applying nothing. BENCH_OTHER_BUS=path/to/other/tree's
// services/runtime/src/bus.ts adds that tree's bus (the yardstick: a bus reading consume's async
// iterator) to the same process, alternated round by round. Messages are stored first, then read;
// the allocations are sampled (V8's sampling heap profiler, collected objects counted) while they
// are read: bytes, and objects estimated from the samples' sizes.
//   node --import tsx bench/bus-consume.ts [messages=20000] [rounds=4] [maxBatch=20]
import { randomUUID } from "node:crypto";
import { Session } from "node:inspector/promises";
import { JetStreamBus, createLogger } from "@ttip/runtime";
import { startNats } from "@ttip/runtime/testing";
import { sampledBytes, sampleHeap } from "./heap-sampling.js";

const messages = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 4);
const maxBatch = Number(process.argv[4] ?? 20);
const SAMPLING_INTERVAL = 128;
const data = new Uint8Array(180).fill(7); // about a tip event's size
const traceparent = `00-${"a".repeat(32)}-${"b".repeat(16)}-01`;

const nats = await startNats();
const logger = createLogger({ level: "warn" });
const buses = new Map<string, typeof JetStreamBus>([["this tree", JetStreamBus]]);
if (process.env.BENCH_OTHER_BUS) buses.set("other tree", ((await import(process.env.BENCH_OTHER_BUS)) as { JetStreamBus: typeof JetStreamBus }).JetStreamBus);

type Figures = { cpuUs: number; bytes: number; objects: number };
const session = new Session();
session.connect();

/** Reads `messages` stored messages with a new durable of `bus`, measured. */
async function read(bus: JetStreamBus, durable: string, subject: string, batches: boolean): Promise<Figures> {
  let received = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const seen = (n: number) => {
    received += n;
    if (received >= messages) done();
  };
  let sub: { stop(): Promise<void> } | undefined;
  let cpu = { user: 0, system: 0 };
  const profile = await sampleHeap(session, SAMPLING_INTERVAL, async () => {
    const cpu0 = process.cpuUsage();
    sub = batches
      ? await bus.subscribeBatches({ durable, subject, maxBatch, handler: async (batch) => seen(batch.length) })
      : await bus.subscribe({ durable, subject, handler: async () => seen(1) });
    await all;
    cpu = process.cpuUsage(cpu0);
  });
  await sub?.stop();
  const samples = (profile as unknown as { samples: { size: number }[] }).samples;
  // A sampled object of size s stands for about interval/s objects (s below the interval), one at least.
  const objects = samples.reduce((n, s) => n + Math.max(1, SAMPLING_INTERVAL / s.size), 0);
  return { cpuUs: (cpu.user + cpu.system) / messages, bytes: sampledBytes(profile.head) / messages, objects: objects / messages };
}

try {
  const totals = new Map<string, { batches: Figures[]; one: Figures[] }>([...buses.keys()].map((name) => [name, { batches: [], one: [] }]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 ? [...buses].reverse() : [...buses];
    for (const [name, Bus] of order) {
      const prefix = `c${round}${name === "this tree" ? "t" : "o"}`;
      const bus = await Bus.connect({ servers: nats.url, stream: `CONSUME${prefix.toUpperCase()}`, subjectPrefix: prefix, logger });
      for (let i = 0; i < messages; i += 200) {
        await Promise.all(Array.from({ length: Math.min(200, messages - i) }, () => bus.publish({ id: randomUUID(), subject: "ttip.bench.happened", data, traceparent })));
      }
      const batches = await read(bus, "batches", "ttip.bench.>", true);
      const one = await read(bus, "one", "ttip.bench.>", false);
      await bus.close();
      totals.get(name)!.batches.push(batches);
      totals.get(name)!.one.push(one);
      const line = (f: Figures) => `${f.bytes.toFixed(0)} B, ${f.objects.toFixed(1)} objects, ${f.cpuUs.toFixed(1)} us CPU`;
      console.log(`round ${round + 1} ${name.padEnd(10)} per message: batches of up to ${maxBatch}: ${line(batches)}; one at a time: ${line(one)}`);
    }
  }
  if (buses.size === 2) {
    const mean = (fs: Figures[], k: keyof Figures) => fs.reduce((n, f) => n + f[k], 0) / fs.length;
    const [now, other] = [totals.get("this tree")!, totals.get("other tree")!];
    for (const kind of ["batches", "one"] as const) {
      console.log(
        `${kind === "batches" ? "batches   " : "one by one"}: this / other tree: bytes ${mean(other[kind], "bytes").toFixed(0)} -> ${mean(now[kind], "bytes").toFixed(0)}, ` +
          `objects ${mean(other[kind], "objects").toFixed(1)} -> ${mean(now[kind], "objects").toFixed(1)}, CPU ratio ${(mean(now[kind], "cpuUs") / mean(other[kind], "cpuUs")).toFixed(2)}`,
      );
    }
  }
} finally {
  session.disconnect();
  await nats.stop();
}
