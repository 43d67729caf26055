// One in-process call's LocalCall (runtime local-server.ts) made under a caller's signal and
// finished, as every hop in this process and every peer call makes one: under the signal of a
// caller whose deadline comes first (a handler passing its own deadline on: now no timer of the
// call's own, the caller's ends it) against the same call under a caller's signal without one (a
// timer armed and cleared per call, as every call with a deadline did before), alternated in one
// process. Each call is held over a few others, as calls in flight are, so the timers really sit
// in node's lists. Prints CPU microseconds and heap bytes per call, and their ratios.
//   node --max-semi-space-size=32 --import tsx bench/local-call-timer.ts [rounds=5] [ms per path and round=1500]
import { loadavg } from "node:os";
import { Session } from "node:inspector/promises";
import { LocalCall } from "../services/runtime/src/local-server.js";
import { sampledBytes, sampleHeap } from "./heap-sampling.js";
import { cpuMicrosPerCall } from "./process-cpu.js";

const rounds = Number(process.argv[2] ?? 5);
const ms = Number(process.argv[3] ?? 1500);
/** Calls in flight at once: each finishes when the 16th after it starts. */
const IN_FLIGHT = 16;

/** The handler's signal of a call with a 10 s deadline (a LocalCall's, as a server's call gives it). */
const withDeadline = new LocalCall(undefined, 10_000).signal;
/** A caller's signal with no deadline on it (a plain controller's). */
const without = new AbortController().signal;

function path(caller: AbortSignal): () => void {
  const ring: Array<LocalCall | undefined> = new Array(IN_FLIGHT);
  let i = 0;
  return () => {
    ring[i]?.done();
    ring[i] = new LocalCall(caller, 5_000);
    i = (i + 1) % IN_FLIGHT;
  };
}

const paths: Array<[string, () => void]> = [
  ["under a caller's earlier deadline (now: no timer)", path(withDeadline)],
  ["under a caller without one (a timer per call)", path(without)],
];
const figures = new Map<string, { us: number[]; bytes: number[] }>();
console.log(`load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
for (const [, f] of paths) cpuMicrosPerCall(f, 300); // warm
for (let round = 1; round <= rounds; round++) {
  for (const [name, f] of paths) {
    const us = cpuMicrosPerCall(f, ms);
    const session = new Session();
    session.connect();
    const calls = 50_000;
    const profile = await sampleHeap(session, 256, () => {
      for (let n = 0; n < calls; n++) f();
    });
    session.disconnect();
    const bytes = sampledBytes(profile.head) / calls;
    const entry = figures.get(name) ?? { us: [], bytes: [] };
    entry.us.push(us);
    entry.bytes.push(bytes);
    figures.set(name, entry);
    console.log(`round ${round}  ${name.padEnd(52)} ${us.toFixed(3)} us  ${bytes.toFixed(0)} bytes per call  (load ${loadavg()[0].toFixed(1)})`);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const [now, before] = paths.map(([name]) => figures.get(name)!);
const perRound = now.us.map((u, i) => u / before.us[i]);
console.log(`now / before: CPU by round ${perRound.map((r) => r.toFixed(2)).join(" ")} (median ${median(perRound).toFixed(2)}), heap ${(median(now.bytes) / median(before.bytes)).toFixed(2)}`);
console.log(`medians: now ${median(now.us).toFixed(3)} us ${median(now.bytes).toFixed(0)} B, before ${median(before.us).toFixed(3)} us ${median(before.bytes).toFixed(0)} B; load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
process.exit(0);
