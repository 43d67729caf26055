// The bus's own CPU per message, in this process (nats-server's is its own): publishing an event
// as the outbox relay does (JetStreamBus.publish, a batch at a time, each acknowledged by the
// stream) and delivering it to a batch consumer that applies nothing (subscribeBatches: the
// message's id and trace context read, then acknowledged). Yardstick in the same run: the same
// messages published and received on NATS core by nats.js alone (no stream, no acknowledgement).
//   node --import tsx bench/bus-delivery.ts [messages=20000] [rounds=3]
import { randomUUID } from "node:crypto";
import { connect } from "nats";
import { createLogger, JetStreamBus } from "@ttip/runtime";
import { startNats } from "@ttip/runtime/testing";

const messages = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 3);
/** As the relay sends them: a batch published together, its acknowledgements awaited together. */
const PUBLISH_BATCH = 100;
const data = new Uint8Array(180).fill(7); // about a tip event's size
const traceparent = `00-${"a".repeat(32)}-${"b".repeat(16)}-01`;

const nats = await startNats();
const logger = createLogger({ level: "warn" });
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** CPU (us) per message of `run`. */
async function perMessage(run: () => Promise<void>): Promise<number> {
  const c0 = cpuUs();
  await run();
  return (cpuUs() - c0) / messages;
}

try {
  for (let round = 0; round < rounds; round++) {
    const prefix = `b${round}`;
    const bus = await JetStreamBus.connect({ servers: nats.url, stream: `BENCH${round}`, subjectPrefix: prefix, logger });
    const publish = await perMessage(async () => {
      for (let i = 0; i < messages; i += PUBLISH_BATCH) {
        const batch = Array.from({ length: Math.min(PUBLISH_BATCH, messages - i) }, () => bus.publish({ id: randomUUID(), subject: "ttip.bench.happened", data, traceparent }));
        await Promise.all(batch);
      }
    });
    let received = 0;
    let done!: () => void;
    const all = new Promise<void>((r) => (done = r));
    let sub!: { stop(): Promise<void> };
    const deliver = await perMessage(async () => {
      sub = await bus.subscribeBatches!({
        durable: "bench",
        subject: "ttip.bench.>",
        maxBatch: 200,
        handler: async (batch) => {
          for (const m of batch) if (!m.id || !m.traceparent) throw new Error("no id or trace context");
          received += batch.length;
          if (received >= messages) done();
        },
      });
      await all;
    });
    await sub.stop();
    await bus.close();

    // The yardstick: nats.js alone, the same payloads on NATS core, publisher and subscriber in this process.
    const nc = await connect({ servers: nats.url });
    let got = 0;
    let coreDone!: () => void;
    const coreAll = new Promise<void>((r) => (coreDone = r));
    nc.subscribe(`core${round}.>`, { callback: () => ++got >= messages && coreDone() });
    await nc.flush();
    const core = await perMessage(async () => {
      for (let i = 0; i < messages; i += PUBLISH_BATCH) {
        for (let j = i; j < Math.min(i + PUBLISH_BATCH, messages); j++) nc.publish(`core${round}.bench.happened`, data);
        await nc.flush();
      }
      await coreAll;
    });
    await nc.close();
    console.log(
      `round ${round + 1}: ${messages} messages; CPU per message: publish ${publish.toFixed(1)} us, delivery ${deliver.toFixed(1)} us; ` +
        `yardstick (NATS core publish + receive) ${core.toFixed(1)} us; ratios publish ${(publish / core).toFixed(2)}, delivery ${(deliver / core).toFixed(2)}`,
    );
  }
} finally {
  await nats.stop();
}
