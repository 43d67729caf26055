// Where a CPU profile's time went (a .cpuprofile: tip-e2e's BENCH_PROFILE, node --cpu-prof, DevTools; a
// bundle's frames mapped to their sources by the .map beside it),
// as shares of the samples that were not idle: self and total time by module (an npm package, a
// node: module, or our file) and by function; and, given a pattern, the samples with a frame that
// matches it on their stack (e.g. one service's code), by the function they were in and by the
// nearest matching frame, with what that is per unit when a count of units (tips) is given.
// Only synchronous stacks are seen: work resumed after an await is charged to its own frames.
// Each sample counts once. A sample's time delta (what DevTools and tip-e2e's own summary weigh
// by) is the wall time since the one before, which on a busy machine holds the time the thread
// was preempted: on tip-e2e's profiles at load 10-30 the deltas' median is 1.1 ms but 10% are
// over 5 ms and the longest 0.5-0.75 s, and the samples after them (often a socket write that
// woke PostgreSQL) took 12-17% of the weighted time. BENCH_PROFILE_WEIGH=time weighs by them.
// Per-unit figures are the samples' share of `cpu` microseconds per unit when given (the
// thread's CPU per tip that tip-e2e prints, e.g. its event loop's), else sampled time.
//   node --import tsx bench/cpuprofile-summary.ts file.cpuprofile [frame pattern] [units] [top=25] [cpu us per unit]
//   e.g. bench/cpuprofile-summary.ts tips.cpuprofile 'services/(payment|wallet)/src/(?!daraja/simulator|simulator-http)' 1545
import { existsSync, readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { fileURLToPath } from "node:url";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, pattern, unitsArg, topArg, cpuArg] = process.argv.slice(2);
if (!file) throw new Error("usage: cpuprofile-summary.ts file.cpuprofile [frame pattern] [units] [top]");
const frameFilter = pattern ? new RegExp(pattern) : undefined;
const units = Number(unitsArg ?? 0);
const top = Number(topArg ?? 25);
const cpuPerUnit = Number(cpuArg ?? 0);
const weighByTime = process.env.BENCH_PROFILE_WEIGH === "time";

const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
// A bundle's frames (the image's ttip.mjs, tip-e2e's BENCH_PLATFORM=image) read as their sources, by the map beside it.
const sourceMaps = new Map<string, SourceMap | undefined>();
function sourceFrame(f: CallFrame): CallFrame {
  if (!f.url.startsWith("file:") || f.lineNumber < 0) return f;
  if (!sourceMaps.has(f.url)) {
    const mapFile = `${fileURLToPath(f.url)}.map`;
    sourceMaps.set(f.url, existsSync(mapFile) ? new SourceMap(JSON.parse(readFileSync(mapFile, "utf8"))) : undefined);
  }
  const entry = sourceMaps.get(f.url)?.findEntry(f.lineNumber, f.columnNumber) as { originalSource?: string; originalLine?: number; originalColumn?: number } | undefined;
  if (!entry?.originalSource) return f;
  return { ...f, url: new URL(entry.originalSource, f.url).href, lineNumber: entry.originalLine!, columnNumber: entry.originalColumn! };
}
for (const n of profile.nodes) n.callFrame = sourceFrame(n.callFrame);
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parents = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parents.set(c, n.id);

/** A url without the checkout's or node_modules' prefix. */
const shortUrl = (url: string) => url.replace(/^file:\/\//, "").replace(process.cwd() + "/", "").replace(/^.*node_modules\//, "");
/** The module a frame is in: its npm package, its node: module, or our file. */
function moduleOf(url: string): string {
  const path = shortUrl(url);
  if (!path) return "(native, GC, program)";
  const parts = path.split("/");
  if (url.includes("node_modules")) return parts.slice(0, parts[0].startsWith("@") ? 2 : 1).join("/");
  return path.startsWith("node:") ? parts.slice(0, 2).join("/") : path;
}
const functionOf = (f: CallFrame) => `${f.functionName || "(anonymous)"} ${shortUrl(f.url) || "(native)"}:${f.lineNumber + 1}:${f.columnNumber + 1}`;

const add = (m: Map<string, number>, k: string, t: number) => m.set(k, (m.get(k) ?? 0) + t);
const self = { module: new Map<string, number>(), fn: new Map<string, number>() };
const total = { module: new Map<string, number>(), fn: new Map<string, number>() };
const matched = { leaf: new Map<string, number>(), nearest: new Map<string, number>(), module: new Map<string, number>() };
let busy = 0;
let matchedTime = 0;

profile.samples.forEach((id, i) => {
  const t = weighByTime ? (profile.timeDeltas[i] ?? 0) : 1;
  const leaf = nodes.get(id)!.callFrame;
  if (leaf.functionName === "(idle)") return;
  busy += t;
  add(self.module, moduleOf(leaf.url), t);
  add(self.fn, functionOf(leaf), t);
  // Each module and function counted once per sample, however often it recurs on the stack.
  const seen = new Set<string>();
  let nearest: string | undefined;
  for (let x: number | undefined = id; x !== undefined; x = parents.get(x)) {
    const frame = nodes.get(x)!.callFrame;
    const [m, f] = [moduleOf(frame.url), functionOf(frame)];
    if (!seen.has(`m ${m}`)) add(total.module, m, t);
    if (!seen.has(`f ${f}`)) add(total.fn, f, t);
    seen.add(`m ${m}`).add(`f ${f}`);
    if (!nearest && frameFilter?.test(f)) nearest = f;
  }
  if (nearest) {
    matchedTime += t;
    add(matched.leaf, functionOf(leaf), t);
    add(matched.module, moduleOf(leaf.url), t);
    add(matched.nearest, nearest, t);
  }
});

const share = (t: number) => `${((t / busy) * 100).toFixed(2).padStart(6)}%`;
const perUnit = (t: number) => {
  if (cpuPerUnit > 0) return `  ${((t / busy) * cpuPerUnit).toFixed(1).padStart(7)} us/unit`;
  return units > 0 && weighByTime ? `  ${(t / units).toFixed(1).padStart(7)} sampled us/unit` : "";
};
function print(title: string, m: Map<string, number>): void {
  console.log(title);
  for (const [k, t] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${share(t)}${perUnit(t)}  ${k}`);
}
const what = weighByTime ? `${(busy / 1e6).toFixed(2)} s of samples not idle, by their time` : `${busy} samples not idle, each counted once`;
console.log(`${file}: ${what} (the shares below are of these)${units > 0 ? `; ${units} units` : ""}${cpuPerUnit > 0 ? `, ${cpuPerUnit} us of CPU each` : ""}`);
print("self time by module", self.module);
print("total time by module (on the stack)", total.module);
print("self time by function", self.fn);
print("total time by function (on the stack)", total.fn);
if (frameFilter) {
  console.log(`\nsamples with a frame matching ${frameFilter}: ${share(matchedTime)}${perUnit(matchedTime)}`);
  print("  by the module they were in", matched.module);
  print("  by the function they were in", matched.leaf);
  print("  by the nearest matching frame", matched.nearest);
}
