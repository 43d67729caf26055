// What the cache's per-command span wrapper costs while tracing is off (the usual case): a warm QR
// resolve's MGET of three keys by `concurrency` callers at once, through RedisCache's client (the
// wrapper as it is now: ioredis's own call when off) against a client wrapped as before (a span's name,
// attributes, closure and a catch per command, inClientSpan then calling straight through), and
// against a bare ioredis client (no wrapper), in alternated rounds in this process. Prints this
// process's CPU ns per command and the ratios (bench/alternated.ts); then the wrappers alone, each over
// a stub that answers at once (no socket), where the wrapper's own cost is not lost in the machine's noise.
//   node --import tsx bench/redis-command-span.ts [commands per round=4000] [rounds=8] [concurrency=16]
import { Redis, type Command } from "ioredis";
import { inClientSpan, RedisCache } from "@ttip/runtime";
import { traceCommands } from "../services/runtime/src/cache.js";
import { startRedis } from "@ttip/runtime/testing";
import { compareAlternated, compareRounds, type Round } from "./alternated.js";

const perRound = Number(process.argv[2] ?? 4_000);
const rounds = Number(process.argv[3] ?? 8);
const concurrency = Number(process.argv[4] ?? 16);

/** The wrapper before this change: every command through inClientSpan, tracing on or off. */
function wrapAsBefore(redis: Redis): void {
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (command: Command, ...rest: unknown[]) => {
    const sent = inClientSpan(`redis ${command.name}`, { "db.system": "redis", "db.operation": command.name }, () => (send as (...a: unknown[]) => Promise<unknown>)(command, ...rest));
    sent.catch(() => undefined);
    return sent;
  };
}

const server = await startRedis();
const cache = new RedisCache(server.url);
const before = new Redis(server.url, { maxRetriesPerRequest: 2 });
wrapAsBefore(before);
const bare = new Redis(server.url, { maxRetriesPerRequest: 2 });
const keys = ["ttip:qr:code:1", "ttip:qr:profile:1:1", "ttip:qr:profile:2:1"];

/** `calls` MGETs on `client`, `concurrency` at once. */
const mgets = (client: Redis): Round => async (calls) => {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < calls) await client.mget(keys);
  }));
};

/** A client whose sendCommand answers at once, wrapped by `wrap`: the wrapper's cost alone. */
function stubbed(wrap: (redis: Redis) => void): (i: number) => unknown {
  const answered = Promise.resolve(null);
  const stub = { sendCommand: (_command: Command) => answered } as unknown as Redis;
  wrap(stub);
  const command = { name: "mget" } as Command;
  return () => stub.sendCommand(command);
}

try {
  await bare.mset(keys.flatMap((k) => [k, JSON.stringify({ key: k, pad: "x".repeat(300) })]));
  console.log(`node ${process.version}; MGET of 3 keys, ${concurrency} at once, ${perRound} a round, tracing off`);
  await compareRounds([["wrapped as before", mgets(before)], ["RedisCache now", mgets(cache.redis)]], perRound, rounds, "command");
  await compareRounds([["bare ioredis", mgets(bare)], ["RedisCache now", mgets(cache.redis)]], perRound, rounds, "command");
  console.log("the wrapper alone, over a stub that answers at once:");
  await compareAlternated([["wrapped as before", stubbed(wrapAsBefore)], ["traceCommands now", stubbed(traceCommands)]], 1_000_000, rounds, "command");
} finally {
  before.disconnect();
  bare.disconnect();
  await cache.close();
  await server.stop();
}
