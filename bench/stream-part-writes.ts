// What a server stream's message costs after it is written to the exchange (connect-stream.ts
// serveStream): now, nothing when the client's window is open (the exchange answers undefined)
// and a race with the call's signal only when the stream held the part back; before (the
// yardstick, copied here), a promise from every write and, for each, a listener on the signal,
// three more promises, a race and an await. Both run alternately in this process on a call
// signal as the server makes it (AbortSignal.any of the deadline's and the client's), the
// window open as it nearly always is. Prints CPU nanoseconds and heap bytes allocated per
// message (V8's sampling heap profiler, collected objects too), and their ratios.
//   node --max-semi-space-size=32 --import tsx bench/stream-part-writes.ts [rounds=5] [messages per round=200000]
import { Session } from "node:inspector/promises";
import { sampledBytes, sampleHeap } from "./heap-sampling.js";

const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 200_000);

/** Before: serveStream's wait on every part (takenInTime as it was, its signal check first). */
async function takenInTimeBefore(write: Promise<void>, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  let onAbort!: () => void;
  const aborted = new Promise<false>((resolve) => signal.addEventListener("abort", (onAbort = () => resolve(false)), { once: true }));
  try {
    return await Promise.race([write.then(() => true), aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** Now: the same race, only for a part the stream held back (never here: the window is open). */
async function takenInTimeNow(write: Promise<void>, signal: AbortSignal): Promise<boolean> {
  return takenInTimeBefore(write, signal);
}

type Way = (signal: AbortSignal) => Promise<boolean>;
const ways: Record<string, Way> = {
  "undefined when taken (now)": async (signal) => {
    const taken: Promise<void> | undefined = undefined;
    return !(signal.aborted || (taken !== undefined && !(await takenInTimeNow(taken, signal))));
  },
  "a promise and a race per part (before)": async (signal) => takenInTimeBefore(Promise.resolve(), signal),
};

/** A call's signal as the server makes one (connect-unary.ts: the deadline's and the client's). */
const callSignal = () => AbortSignal.any([new AbortController().signal, new AbortController().signal]);

async function parts(way: Way, count: number): Promise<void> {
  const signal = callSignal();
  for (let i = 0; i < count; i++) if (!(await way(signal))) throw new Error("a part not taken");
}

async function measure(way: Way): Promise<{ ns: number; bytes: number }> {
  const start = process.cpuUsage();
  await parts(way, perRound);
  const used = process.cpuUsage(start);
  const heap = new Session();
  heap.connect();
  const sampled = 20_000;
  const profile = await sampleHeap(heap, 256, () => parts(way, sampled));
  heap.disconnect();
  return { ns: ((used.user + used.system) * 1000) / perRound, bytes: sampledBytes(profile.head) / sampled };
}

for (const way of Object.values(ways)) await parts(way, 50_000); // warm
const figures = new Map<string, { ns: number[]; bytes: number[] }>();
for (let round = 1; round <= rounds; round++) {
  const line: string[] = [];
  for (const [name, way] of Object.entries(ways)) {
    const m = await measure(way);
    const f = figures.get(name) ?? { ns: [], bytes: [] };
    f.ns.push(m.ns);
    f.bytes.push(m.bytes);
    figures.set(name, f);
    line.push(`${name} ${m.ns.toFixed(0)} ns ${m.bytes.toFixed(0)} B`);
  }
  console.log(`round ${round}: ${line.join(", ")} per message`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const [now, before] = [...figures.values()];
const ratios = now.ns.map((ns, i) => (ns / before.ns[i]).toFixed(2));
console.log(`medians: now ${median(now.ns).toFixed(0)} ns ${median(now.bytes).toFixed(0)} B, before ${median(before.ns).toFixed(0)} ns ${median(before.bytes).toFixed(0)} B per message; CPU ratio by round ${ratios.join(" ")}, bytes ${(median(now.bytes) / Math.max(1, median(before.bytes))).toFixed(2)}`);
