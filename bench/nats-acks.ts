// What a consumer's acknowledgements cost, nats-server's CPU and this process's, per message
// delivered from a stream to a durable pull consumer (as the bus's consumers are): one
// acknowledgement per message (AckPolicy.Explicit, what the bus does), one per batch of B
// (AckPolicy.All acking a batch's last message), and none (AckPolicy.None: the yardstick, what
// delivery costs without acknowledging). Each mode in rounds, alternated.
//   node --import tsx bench/nats-acks.ts [messages=20000] [rounds=3] [batch B=4]
import { randomUUID } from "node:crypto";
import { AckPolicy, connect, DeliverPolicy, headers, StorageType } from "nats";
import { startNats } from "@ttip/runtime/testing";
import { cpuMs } from "./process-cpu.js";

const messages = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 3);
const batch = Number(process.argv[4] ?? 4);
const data = new Uint8Array(180).fill(7); // about a tip event's size
const PUBLISH_BATCH = 100;

const nats = await startNats();
const cpu = () => {
  const server = cpuMs(new Map([["nats", nats.pid]]), new Set()).get("nats")!;
  const u = process.cpuUsage();
  return { server, client: (u.user + u.system) / 1000 };
};

type Mode = "explicit" | "all" | "none";

/** Delivers `messages` stored messages to a fresh durable in `mode`; CPU us per message (server, client). */
async function deliver(stream: string, mode: Mode): Promise<{ server: number; client: number }> {
  const nc = await connect({ servers: nats.url, noAsyncTraces: true });
  const jsm = await nc.jetstreamManager();
  const durable = `d-${mode}-${randomUUID().slice(0, 8)}`;
  const policy = mode === "explicit" ? AckPolicy.Explicit : mode === "all" ? AckPolicy.All : AckPolicy.None;
  await jsm.consumers.add(stream, { durable_name: durable, ack_policy: policy, deliver_policy: DeliverPolicy.All, ack_wait: 30_000_000_000, max_deliver: -1 });
  const consumer = await nc.jetstream().consumers.get(stream, durable);
  const c0 = cpu();
  let n = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const iter = await consumer.consume({
    max_messages: 64,
    callback: (m) => {
      n++;
      if (mode === "explicit") m.ack();
      else if (mode === "all" && (n % batch === 0 || n === messages)) m.ack();
      if (n === messages) done();
    },
  });
  await all;
  await nc.flush();
  // Let the server finish what it was sent (acks are fire and forget).
  await new Promise((r) => setTimeout(r, 300));
  const c1 = cpu();
  await iter.close();
  const info = await jsm.consumers.info(stream, durable);
  if (mode !== "none" && info.num_ack_pending !== 0) throw new Error(`${mode}: ${info.num_ack_pending} left unacknowledged`);
  await nc.close();
  return { server: ((c1.server - c0.server) * 1000) / messages, client: ((c1.client - c0.client) * 1000) / messages };
}

try {
  const nc = await connect({ servers: nats.url });
  const jsm = await nc.jetstreamManager();
  const js = nc.jetstream();
  const idle = cpu();
  await new Promise((r) => setTimeout(r, 1000));
  const idleUsPerS = (cpu().server - idle.server) * 1000;
  for (let round = 0; round < rounds; round++) {
    const stream = `ACKS${round}`;
    await jsm.streams.add({ name: stream, subjects: [`acks${round}.>`], storage: StorageType.File });
    for (let i = 0; i < messages; i += PUBLISH_BATCH) {
      await Promise.all(
        Array.from({ length: Math.min(PUBLISH_BATCH, messages - i) }, () => {
          const h = headers();
          h.set("Nats-Msg-Id", randomUUID());
          return js.publish(`acks${round}.bench.happened`, data, { headers: h });
        }),
      );
    }
    const figures: string[] = [];
    for (const mode of (round % 2 ? ["none", "all", "explicit"] : ["explicit", "all", "none"]) as Mode[]) {
      const f = await deliver(stream, mode);
      figures.push(`${mode === "all" ? `all (1 ack per ${batch})` : mode} server ${f.server.toFixed(1)} client ${f.client.toFixed(1)}`);
    }
    console.log(`round ${round + 1}: ${messages} messages; CPU us per message delivered: ${figures.join("; ")}`);
    await jsm.streams.delete(stream);
  }
  console.log(`(nats-server idle: ${idleUsPerS.toFixed(0)} us CPU per s; 300 ms of it is in each figure: ${((idleUsPerS * 0.3) / messages).toFixed(2)} us per message)`);
  await nc.close();
} finally {
  await nats.stop();
}
