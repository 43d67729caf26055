// What ioredis's enableAutoPipelining (the commands of one turn of the event loop,
// and those issued while a batch is on its way, share one write) saves the client:
// a warm QR resolve's MGET of three keys by `concurrency` callers at once, on two
// clients that differ only in that option, in short alternating blocks in this
// process so that the machine's load falls on both alike. Prints per command:
// writes to Redis's socket, this process's CPU microseconds and wall time; and
// the ratio with / without.
//   node --import tsx bench/redis-autopipelining.ts [blocks=40] [commands per block=2000] [concurrency=16]
import { Redis } from "ioredis";
import { startRedis } from "@ttip/runtime/testing";
import { countRedisWrites } from "./redis-stats.js";

const blocks = Number(process.argv[2] ?? 40);
const perBlock = Number(process.argv[3] ?? 2_000);
const concurrency = Number(process.argv[4] ?? 16);

const redis = await startRedis();
type Figures = { writes: number; cpuUs: number; wallMs: number; commands: number };
const ways = new Map<string, { client: Redis; writes: () => number; figures: Figures }>();
for (const [name, enableAutoPipelining] of [["one write per command (now)", false], ["auto-pipelined", true]] as const) {
  const client = new Redis(redis.url, { enableAutoPipelining, maxRetriesPerRequest: 2 });
  await client.ping();
  ways.set(name, { client, writes: countRedisWrites(client, () => true), figures: { writes: 0, cpuUs: 0, wallMs: 0, commands: 0 } });
}

const keys = ["qr:code:1", "qr:profile:1:1", "qr:profile:2:1"];
await ways.values().next().value!.client.mset(keys.flatMap((k) => [k, JSON.stringify({ key: k, pad: "x".repeat(300) })]));

async function block(way: { client: Redis; writes: () => number; figures: Figures }): Promise<void> {
  let next = 0;
  const w0 = way.writes();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < perBlock) await way.client.mget(keys);
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  way.figures.wallMs += performance.now() - t0;
  way.figures.cpuUs += cpu.user + cpu.system;
  way.figures.writes += way.writes() - w0;
  way.figures.commands += perBlock;
}

try {
  for (const way of ways.values()) await block(way); // warm-up, not counted
  for (const way of ways.values()) Object.assign(way.figures, { writes: 0, cpuUs: 0, wallMs: 0, commands: 0 });
  for (let i = 0; i < blocks; i++) for (const way of i % 2 ? [...ways.values()].reverse() : ways.values()) await block(way);
  console.log(`node ${process.version}; ${blocks} blocks of ${perBlock} MGETs of 3 keys each way, ${concurrency} at once`);
  const per = (f: Figures) => ({ writes: f.writes / f.commands, cpuUs: f.cpuUs / f.commands, wallUs: (f.wallMs * 1000) / f.commands });
  for (const [name, way] of ways) {
    const p = per(way.figures);
    console.log(`  ${name.padEnd(28)} per command: ${p.writes.toFixed(3)} writes, CPU ${p.cpuUs.toFixed(1)} us, wall ${p.wallUs.toFixed(1)} us`);
  }
  const [before, after] = [...ways.values()].map((w) => per(w.figures));
  console.log(`  auto-pipelined / now: writes ${(after.writes / before.writes).toFixed(2)}, CPU ${(after.cpuUs / before.cpuUs).toFixed(2)}, wall ${(after.wallUs / before.wallUs).toFixed(2)}`);
} finally {
  for (const way of ways.values()) way.client.disconnect();
  await redis.stop();
}
