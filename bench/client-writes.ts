// How many socket writes (each a system call that wakes the peer: 60-145 us of
// the platform's CPU on these machines) each of the platform's clients makes per
// operation, counted at node's socket layer (net.Socket's _writeGeneric: one
// write or writev handed to libuv each) by connection, both sides where both are
// ours. Answers, for this tree's libraries: does pg send a statement's
// Parse/Bind/Describe/Execute/Sync in one write (it corks them), does a
// transaction's BEGIN ride with its first statement, does the outside-API client
// reuse its connection and send head and body together, does an HTTP answer as
// the Daraja callback route gives it (writeHead, end with the body) go in one
// write, one write per Redis command, and the bus's publishes of one turn in one.
// Where the runtime keeps the old way behind a switch (pipelinedBegin,
// writeOncePerTurn), it runs too, as the yardstick. CPU is this process's, both
// sides for HTTP, and the event loop thread's inside each write call; under load
// only the counts mean much (say the load average).
//   node --import tsx bench/client-writes.ts [ops=300]
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { createPool, httpRequest, JetStreamBus, RedisCache, withTransaction, type Pool } from "@ttip/runtime";
import { captureLogger, startNats, startPostgres, startRedis } from "@ttip/runtime/testing";

const ops = Number(process.argv[2] ?? 300);

/** The event loop thread's CPU, microseconds (getrusage of this thread; node 23.9+, not yet in @types/node). */
function threadCpuUs(): number {
  const { user, system } = (process as unknown as { threadCpuUsage(): NodeJS.CpuUsage }).threadCpuUsage();
  return user + system;
}
/** What a reading costs by itself, taken off each write's figure. */
const READING_US = (() => {
  const start = threadCpuUs();
  for (let i = 0; i < 20_000; i++) threadCpuUs();
  return (threadCpuUs() - start) / 20_000;
})();

/** Writes per socket since counting began, with its ports as they were (a closed socket forgets them); a connecting socket's write is counted once connected. */
const writes = new Map<net.Socket, { n: number; cpuUs: number; remotePort?: number; localPort?: number }>();
let counting = false;
type WriteGeneric = (this: net.Socket, writev: boolean, data: unknown, encoding: string, cb: () => void) => unknown;
const socketProto = net.Socket.prototype as unknown as { _writeGeneric: WriteGeneric };
const writeGeneric = socketProto._writeGeneric;
socketProto._writeGeneric = function (this: net.Socket, ...args: Parameters<WriteGeneric>) {
  if (!counting || this.connecting) return writeGeneric.apply(this, args);
  const start = threadCpuUs();
  const written = writeGeneric.apply(this, args);
  const cpuUs = threadCpuUs() - start - READING_US;
  const seen = writes.get(this);
  if (seen) (seen.n++, (seen.cpuUs += cpuUs));
  else writes.set(this, { n: 1, cpuUs, remotePort: this.remotePort, localPort: this.localPort });
  return written;
};

/** Writes to `port` by the side that connected to it (client) and by the side that accepted (server). */
function writesTo(port: number): { client: number; server: number; cpuUs: number } {
  let client = 0;
  let server = 0;
  let cpuUs = 0;
  for (const w of writes.values()) {
    if (w.remotePort === port) client += w.n;
    else if (w.localPort === port) server += w.n;
    else continue;
    cpuUs += w.cpuUs;
  }
  return { client, server, cpuUs };
}

const rows: string[] = [];
/** Runs `op` `count` times, one after another, after 20 not counted, and keeps its writes and CPU per operation. */
async function measure(label: string, port: number, op: (i: number) => Promise<unknown>, count = ops): Promise<void> {
  for (let i = 0; i < 20; i++) await op(i); // connections made, statements prepared, scripts loaded
  writes.clear();
  counting = true;
  const cpu = process.cpuUsage();
  for (let i = 0; i < count; i++) await op(i);
  const used = process.cpuUsage(cpu);
  counting = false;
  const { client, server, cpuUs } = writesTo(port);
  const us = (used.user + used.system) / count;
  const perWrite = cpuUs / Math.max(1, client + server);
  rows.push(`  ${label.padEnd(92)} ${(client / count).toFixed(2).padStart(6)} ${(server / count).toFixed(2).padStart(6)} ${perWrite.toFixed(1).padStart(9)} ${us.toFixed(0).padStart(6)}`);
}

const [pg, redis, nats] = await Promise.all([startPostgres({ durable: false }), startRedis(), startNats()]);
const portOf = (url: string) => Number(new URL(url).port);
try {
  // PostgreSQL: a parameterised statement (named, prepared: Bind/Execute/Sync once prepared), and a transaction of two.
  const pools: Pool[] = [createPool(pg.url, { max: 1 }), createPool(pg.url, { max: 1, pipelinedBegin: false })];
  await pools[0].query("CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL)");
  await pools[0].query("INSERT INTO counters SELECT g, 0 FROM generate_series(1, 100) g");
  await measure("pg: SELECT with parameters (pool.query)", portOf(pg.url), (i) => pools[0].query("SELECT n FROM counters WHERE id = $1", [(i % 100) + 1]));
  for (const [label, pool] of [["BEGIN with the first statement (now)", pools[0]], ["BEGIN alone (pipelinedBegin off)", pools[1]]] as const) {
    await measure(`pg: withTransaction, UPDATE then SELECT, COMMIT; ${label}`, portOf(pg.url), (i) =>
      withTransaction(pool, async (tx) => {
        await tx.query("UPDATE counters SET n = n + 1 WHERE id = $1", [(i % 100) + 1]);
        await tx.query("SELECT n FROM counters WHERE id = $1", [(i % 100) + 1]);
      }),
    );
  }
  await Promise.all(pools.map((p) => p.end()));

  // The outside-API client against a node:http server answering as payment's callback route does.
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const data = JSON.stringify({ ResultCode: 0, ResultDesc: "Accepted" });
      res.writeHead(200, { "content-type": "application/json", ...(req.url === "/close" ? { connection: "close" } : {}) });
      res.end(data);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const httpPort = (server.address() as AddressInfo).port;
  const body = JSON.stringify({ BusinessShortCode: "174379", Amount: 100, PhoneNumber: "254700000000", pad: "x".repeat(400) });
  const post = (path: string) => httpRequest(`http://127.0.0.1:${httpPort}${path}`, { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer t" }, body, timeoutMs: 5_000 });
  await measure("HTTP/1.1: httpRequest POST on a kept connection (client), the answer (server)", httpPort, () => post("/kept"));
  await measure("HTTP/1.1: the same, each on a new connection (the server answers Connection: close)", httpPort, () => post("/close"), Math.min(ops, 100));
  server.closeAllConnections();
  server.close();

  // Redis: a QR resolve's MGET of three keys; the gateway's budgets (one script).
  const cache = new RedisCache(redis.url);
  await measure("Redis: MGET of three keys", portOf(redis.url), () => cache.getMany(["qr:code:1", "qr:profile:1:1", "qr:profile:2:1"]));
  await measure("Redis: the budgets' script (EVALSHA), two keys", portOf(redis.url), () => cache.chargeBudgets("bench", 60, [{ key: "a", points: 1 }, { key: "b", points: 1 }]));
  await cache.redis.quit();

  // NATS: eight publishes, each from a task of its own in one turn (as consumers' and relays' work ends), then their acknowledgements awaited.
  const logger = captureLogger("silent").logger;
  for (const [label, writeOncePerTurn] of [["one write per turn (now)", true], ["nats.js alone (writeOncePerTurn off)", false]] as const) {
    const bus = await JetStreamBus.connect({ servers: nats.url, stream: writeOncePerTurn ? "WRITES_A" : "WRITES_B", subjectPrefix: writeOncePerTurn ? "wa" : "wb", logger, writeOncePerTurn });
    let next = 0;
    const id = () => `00000000-0000-4000-8000-${String(next++).padStart(12, "0")}`;
    const eight = () =>
      new Promise<Promise<void>[]>((resolve) => {
        const published: Promise<void>[] = [];
        for (let i = 0; i < 8; i++) setImmediate(() => published.push(bus.publish({ id: id(), subject: "ttip.writes.made", data: new Uint8Array([i]) })) === 8 && resolve(published));
      }).then((p) => Promise.all(p));
    await measure(`NATS: 8 publishes from 8 tasks of one turn; ${label}`, portOf(nats.url), eight, Math.min(ops, 100));
    await bus.close();
  }
} finally {
  await Promise.allSettled([pg.stop(), redis.stop(), nats.stop()]);
}
console.log(`socket writes per operation (net.Socket writes handed to libuv, after ${20} warm-up operations), ${ops} operations each:`);
console.log(`  ${"operation".padEnd(92)} ${"client".padStart(6)} ${"server".padStart(6)} ${"CPU/write".padStart(9)} ${"CPU us".padStart(6)}`);
for (const row of rows) console.log(row);
console.log(`(CPU/write: the event loop thread's microseconds inside a write call, the system call's included (libuv tries it at once), a reading's cost (${READING_US.toFixed(1)} us) taken off; CPU: this process's per operation, both sides for HTTP; node ${process.version})`);
