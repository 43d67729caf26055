// Two ways of doing one thing, timed by this process's CPU in alternated rounds (the order reversed
// every other round, so neither always runs warmer), the yardstick first: what the same-process
// benches print.
import os from "node:os";

let kept: unknown; // each answer kept, so the work is not optimised away

/** One round of a way: `calls` calls, made by the way itself (it may set up and finish its round, e.g. scrape). */
export type Round = (calls: number) => unknown;

async function timed(round: Round, calls: number): Promise<number> {
  const start = process.cpuUsage();
  const answer = round(calls);
  if (answer instanceof Promise) kept = await answer;
  const used = process.cpuUsage(start);
  return ((used.user + used.system) * 1000) / calls;
}

const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];

/** Prints each round's CPU ns per call of each way, then the medians and their ratio (ours / yardstick). */
export async function compareRounds(ways: [yardstick: [string, Round], ours: [string, Round]], perRound: number, rounds: number, unit: string): Promise<void> {
  const width = Math.max(...ways.map(([name]) => name.length)) + 2;
  for (const [, way] of ways) await timed(way, perRound); // warm up
  const ns = new Map<string, number[]>();
  for (let r = 1; r <= rounds; r++) {
    for (const [name, way] of r % 2 ? ways : [...ways].reverse()) {
      const perCall = await timed(way, perRound);
      ns.set(name, [...(ns.get(name) ?? []), perCall]);
      console.log(`round ${r}  ${name.padEnd(width)} CPU ${perCall.toFixed(0)} ns per ${unit}`);
    }
  }
  void kept;
  const [yardstick, ours] = ways.map(([name]) => median(ns.get(name)!));
  console.log(`median CPU per ${unit}: ${yardstick.toFixed(0)} -> ${ours.toFixed(0)} ns (ratio ${(ours / yardstick).toFixed(3)}); load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
}

/** compareRounds for ways that are one call each (given the call's index). */
export function compareAlternated(ways: [yardstick: [string, (i: number) => unknown], ours: [string, (i: number) => unknown]], perRound: number, rounds: number, unit: string): Promise<void> {
  const eachCall = ([name, way]: [string, (i: number) => unknown]): [string, Round] => [name, (calls) => {
    for (let i = 0; i < calls; i++) kept = way(i);
  }];
  return compareRounds([eachCall(ways[0]), eachCall(ways[1])], perRound, rounds, unit);
}
