// Socket writes and CPU per call of unary calls in frames (runtime frames.ts, the calls between a
// cluster's processes), the frames of one turn of the event loop in one write (now) against one
// write per task (before: CorkedWriter.perTask), alternated in rounds in this one process. The
// server answers each call once a "database" replies to it (an echo server here, on a few
// connections as a pool has): each reply is a socket read, a task of its own, as PostgreSQL's and
// peers' replies are; the answers finishing in one turn's reads are what a write per turn joins.
// Both sides run here: the writes counted are the frames' (client's and server's sockets, not the
// echo's), each a system call that wakes the other side.
//   node --max-semi-space-size=32 --import tsx bench/frames-writes.ts [seconds per round=3] [rounds=4] [concurrency=16]
import net, { type AddressInfo } from "node:net";
import { once } from "node:events";
import { CorkedWriter, FrameLink, frameServer } from "../services/runtime/src/frames.js";
import { closedLoop } from "./load.js";

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 4);
const concurrency = Number(process.argv[4] ?? 16);
const DATABASE_CONNECTIONS = 4;

// Every write to a socket that is not the echo's: one system call each.
const echoSockets = new WeakSet<net.Socket>();
let writes = 0;
const proto = net.Socket.prototype as unknown as Record<"_write" | "_writev", (this: net.Socket, ...a: unknown[]) => unknown>;
for (const name of ["_write", "_writev"] as const) {
  const original = proto[name];
  proto[name] = function (this: net.Socket, ...args: unknown[]) {
    if (!echoSockets.has(this)) writes++;
    return original.apply(this, args);
  };
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

// The "database": echoes each 8-byte query back; the server's answers wait on it.
const echo = net.createServer((socket) => (echoSockets.add(socket), socket.on("data", (d) => socket.write(d))));
const echoPort = await listen(echo);
const database = await Promise.all(Array.from({ length: DATABASE_CONNECTIONS }, async () => {
  const socket = net.connect(echoPort, "127.0.0.1");
  echoSockets.add(socket);
  await once(socket, "connect");
  const waiting: (() => void)[] = [];
  let buffered = 0;
  socket.on("data", (d: Buffer) => {
    buffered += d.length;
    for (; buffered >= 8; buffered -= 8) waiting.shift()!();
  });
  return (resolve: () => void) => (waiting.push(resolve), socket.write(Buffer.alloc(8)));
}));
let next = 0;
const query = () => new Promise<void>((resolve) => database[next++ % DATABASE_CONNECTIONS](resolve));

const answer = Buffer.alloc(120, 1);
const frames = frameServer({
  serve: (exchange) => {
    void query().then(() => exchange.respond(200, { "content-type": "application/proto" }, answer));
    return true;
  },
  track: () => undefined,
  maxAgeMs: 0,
});
const listener = net.createServer((socket) => {
  socket.on("error", () => socket.destroy());
  socket.once("data", (head: Buffer) => (socket.pause(), frames.accept(socket, head)));
});
const link = new FrameLink(`http://127.0.0.1:${await listen(listener)}`);
const body = Buffer.alloc(60, 2);
const call = async () => {
  const outcome = await link.exchange("/ttip.qr.v1.QrService/ResolveQrCode", { "content-type": "application/proto" }, body, new AbortController().signal);
  if (typeof outcome !== "object") throw new Error("not answered in frames");
};

const ways = new Map([["a write per turn (now)", false], ["a write per task (before)", true]]);
const figures = new Map<string, { writes: number[]; us: number[] }>();
await closedLoop(concurrency, 1, call); // warm
for (let round = 1; round <= rounds; round++) {
  for (const [name, perTask] of round % 2 ? ways : new Map([...ways].reverse())) {
    CorkedWriter.perTask = perTask;
    const [w0, cpu0] = [writes, process.cpuUsage()];
    const { calls: ops, perSecond } = await closedLoop(concurrency, seconds, call);
    const cpu = process.cpuUsage(cpu0);
    const f = figures.get(name) ?? { writes: [], us: [] };
    f.writes.push((writes - w0) / ops);
    f.us.push((cpu.user + cpu.system) / ops);
    figures.set(name, f);
    console.log(`round ${round}  ${name.padEnd(26)} ${perSecond.toFixed(0).padStart(6)} calls/s  frames' socket writes ${((writes - w0) / ops).toFixed(2)} per call  CPU ${((cpu.user + cpu.system) / ops).toFixed(1)} us per call (both sides and the echo)`);
  }
}
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const [now, before] = [...figures.values()];
console.log(`medians of ${rounds} rounds: writes per call ${median(now.writes).toFixed(2)} vs ${median(before.writes).toFixed(2)} (${(median(now.writes) / median(before.writes)).toFixed(2)}x), ` +
  `CPU per call ${median(now.us).toFixed(1)} vs ${median(before.us).toFixed(1)} us; per round, now / before: CPU ${now.us.map((u, i) => (u / before.us[i]).toFixed(2)).join(", ")}`);
link.close();
frames.goAway();
listener.close();
echo.close();
process.exit(0);
