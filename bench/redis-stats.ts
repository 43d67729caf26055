// Redis's side of a run: the commands it executed (INFO commandstats, a script's own
// commands counted too) and, in process mode, the platform's writes to its Redis socket
// (one per round trip, or per batch of commands sent together).
import type { Socket } from "node:net";
import type { Redis } from "ioredis";

/** Calls per command name since the server started (INFO commandstats), the INFO asking for it left out. */
export async function redisCommandCalls(redis: Redis): Promise<Map<string, number>> {
  const calls = new Map<string, number>();
  for (const line of (await redis.info("commandstats")).split("\n")) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m && m[1] !== "info") calls.set(m[1], Number(m[2]));
  }
  return calls;
}

/** "total 3.62: get 3.00, evalsha 0.62, ..." per tip, from two readings of redisCommandCalls. */
export function redisCommandsPerTip(before: Map<string, number>, after: Map<string, number>, tips: number): string {
  const per = [...after].map(([name, n]) => [name, (n - (before.get(name) ?? 0)) / Math.max(1, tips)] as const).filter(([, n]) => n > 0);
  per.sort((a, b) => b[1] - a[1]);
  const total = per.reduce((a, [, n]) => a + n, 0);
  return `total ${total.toFixed(2)}${per.length ? `: ${per.map(([name, n]) => `${name} ${n.toFixed(2)}`).join(", ")}` : ""}`;
}

/** Counts the writes to one ioredis client's socket while `counting()` says so. */
export function countRedisWrites(redis: Redis, counting: () => boolean): () => number {
  return countSocketWrites((redis as unknown as { stream: Socket }).stream, counting);
}

/** Counts the writes to a socket (each a system call) while `counting()` says so. */
export function countSocketWrites(socket: Socket, counting: () => boolean): () => number {
  let writes = 0;
  const write = socket.write;
  socket.write = function (this: Socket, ...args: unknown[]) {
    if (counting()) writes++;
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof socket.write;
  return () => writes;
}
