// Where a node process's threads spent their CPU by Linux perf's samples with call graphs (what
// the JavaScript profiler of cpuprofile-summary.ts cannot show: only what ran on a CPU is sampled,
// and V8's builtins are frames of their own), with each builtin's samples charged to the
// JavaScript that called it: which code calls V8's generic paths (the megamorphic inline caches
// LoadIC_Megamorphic, KeyedStoreIC..., the interpreter), the shares by module, and the samples
// with a frame matching a pattern on their stack. Also what V8's worker threads did (compiling
// or collecting garbage).
// Recording (as root; node keeps frame pointers in its JIT code, so perf's default call graphs walk
// through it): the process under node --perf-basic-prof --interpreted-frames-native-stack (writes
// /tmp/perf-<pid>.map), e.g. tip-e2e with BENCH_PLATFORM=image (the bundle's frames are then read
// as their sources by the .map beside it; under tsx the lines are the loader's output), and once
// its measured run starts:
//   perf record -F 997 -g -p <pid> -o perf.data -- sleep 45; cp /tmp/perf-<pid>.map perf.map
//   perf script -i perf.data -F comm,tid,ip,sym > perf.txt
//   node --import tsx bench/perf-js-callers.ts perf.txt perf.map [frame pattern] [top=30]
// perf.map: V8 reuses code space, and perf names an address by the first map entry that covers
// it, often code freed long before (in tip-e2e's recordings ~1 frame in 10 named wrongly, some
// functions shown at 10-15% of the stack that never ran then); the entry written last is taken here.
import { existsSync, readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { fileURLToPath } from "node:url";

const [scriptFile, mapFile, pattern, topArg] = process.argv.slice(2);
if (!scriptFile || !mapFile) throw new Error("usage: perf-js-callers.ts perf.txt perf.map [frame pattern] [top]");
const top = Number(topArg ?? 30);
const frameFilter = pattern ? new RegExp(pattern) : undefined;

/** The perf map's entries by 4 KiB page of their range: an address takes the last-written entry covering it. */
const pages = new Map<number, { order: number; start: number; end: number; name: string }[]>();
readFileSync(mapFile, "utf8").split("\n").forEach((line, order) => {
  const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
  if (!m) return;
  const start = parseInt(m[1], 16);
  const end = start + parseInt(m[2], 16);
  for (let page = Math.floor(start / 4096); page <= Math.floor((end - 1) / 4096); page++) {
    const list = pages.get(page) ?? [];
    list.push({ order, start, end, name: m[3] });
    pages.set(page, list);
  }
});
function jitName(address: number): string | undefined {
  let best: { order: number; name: string } | undefined;
  for (const e of pages.get(Math.floor(address / 4096)) ?? []) if (e.start <= address && address < e.end && (!best || e.order > best.order)) best = e;
  return best?.name;
}

/** A path as it reads in the repository: a package's file from its name on, ours from the repository's root. */
function shortPath(path: string): string {
  const pkg = /\/node_modules\/(.*)$/.exec(path);
  if (pkg) return pkg[1];
  return /(?:^|\/)((?:services|gateway|bench|apps|proto)\/.*)$/.exec(path)?.[1] ?? path;
}

/** A frame's name with its place as a short path and line; a bundle's read as its source's (the .map beside the file). */
const sourceMaps = new Map<string, SourceMap | undefined>();
function readable(name: string): string {
  const m = /^(.*?)((?:file:\/\/)?\/\S+?):(\d+):(\d+)$/.exec(name);
  if (!m) return name.replace(/:(\d+):\d+$/, ":$1");
  const [, head, place, line, column] = m;
  const url = place.startsWith("file:") ? place : `file://${place}`;
  if (!sourceMaps.has(url)) {
    const map = `${fileURLToPath(url)}.map`;
    sourceMaps.set(url, existsSync(map) ? new SourceMap(JSON.parse(readFileSync(map, "utf8"))) : undefined);
  }
  const entry = sourceMaps.get(url)?.findEntry(Number(line) - 1, Number(column) - 1) as { originalSource?: string; originalLine?: number } | undefined;
  if (entry?.originalSource) return `${head}${shortPath(fileURLToPath(new URL(entry.originalSource, url)))}:${entry.originalLine! + 1}`;
  return `${head}${shortPath(fileURLToPath(url))}:${line}`;
}

interface Sample {
  thread: string;
  /** Leaf first. */
  frames: string[];
}
const samples: Sample[] = [];
const named = new Map<string, string>();
let current: Sample | undefined;
for (const line of readFileSync(scriptFile, "utf8").split("\n")) {
  if (!line.trim()) {
    if (current) samples.push(current);
    current = undefined;
  } else if (!/^\s/.test(line)) current = { thread: line.trim().split(/\s+/)[0], frames: [] };
  else if (current) {
    const [address, ...rest] = line.trim().split(/\s+/);
    const raw = rest.join(" ");
    const jit = address.startsWith("ffffffff") ? undefined : jitName(parseInt(address, 16));
    const name = address.startsWith("ffffffff") ? `[kernel] ${raw}` : (jit ?? raw);
    let nice = named.get(name);
    if (nice === undefined) named.set(name, (nice = readable(name)));
    current.frames.push(nice);
  }
}
if (current) samples.push(current);

const isJs = (f: string) => /^(JS|Function|LazyCompile):/.test(f);
const tier = (f: string) => ({ "~": "interpreted", "^": "baseline (Sparkplug)", "+": "Maglev", "*": "TurboFan" })[/^JS:([~^+*]?)/.exec(f)?.[1] ?? ""] ?? "other";
const jsName = (f: string) => f.replace(/^JS:[~^+*']*/, "").trim() || "(anonymous)";
function moduleOf(f: string): string {
  const where = jsName(f).split(" ").pop()!;
  return (
    /^((?:services\/[^/]+\/src|gateway\/src|bench|apps\/[^/]+\/src)\/[^:]+)/.exec(where)?.[1] ??
    /^(node:[^:]+)/.exec(where)?.[1] ??
    /^(@[^/]+\/[^/]+|[^/:]+)\//.exec(where)?.[1] ??
    jsName(f)
  );
}
function kindOfBuiltin(b: string): string {
  if (/IC/.test(b)) return /Megamorphic/.test(b) ? "inline cache, megamorphic" : "inline cache";
  if (/Interpreter|Baseline|Bytecode/.test(b)) return "interpreter, baseline";
  if (/Promise|Async|Microtask|Generator|Await/.test(b)) return "promises, async functions";
  if (/Call|Construct|JSEntry/.test(b)) return "calls";
  if (/RecordWrite/.test(b)) return "write barrier";
  if (/String|RegExp/.test(b)) return "strings, regexps";
  if (/Map|Set|Hash/.test(b)) return "Map, Set";
  if (/Array/.test(b)) return "arrays";
  return "other";
}
function leafKind(s: Sample): string {
  const leaf = s.frames[0] ?? "";
  if (leaf.startsWith("[kernel]")) return "kernel";
  if (isJs(leaf)) return `JS, ${tier(leaf)}`;
  if (leaf.startsWith("Builtins_")) return `V8 builtin: ${kindOfBuiltin(leaf)}`;
  return "native (V8's runtime and GC, node's C++, libc)";
}

const percent = (n: number, of: number) => `${((100 * n) / Math.max(1, of)).toFixed(2).padStart(6)}%`;
function print(title: string, counts: Map<string, number>, of: number, n = top): void {
  console.log(title);
  for (const [k, v] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`  ${percent(v, of)}  ${k}`);
}
function count<T>(items: T[], key: (item: T) => string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of items) {
    const k = key(item);
    if (k !== undefined) out.set(k, (out.get(k) ?? 0) + 1);
  }
  return out;
}
const nearestJs = (s: Sample) => s.frames.find(isJs);
const NO_JS = "(no JavaScript on the stack: node's C++, the garbage collector, the event loop's wait)";

print(`${samples.length} samples, by thread`, count(samples, (s) => s.thread), samples.length);
const workers = samples.filter((s) => s.thread !== "MainThread");
print("V8's worker threads, by what is on their stack", count(workers, (s) => {
  const all = s.frames.join(" ");
  if (/Scaveng|Mark|Sweep|Evacuat|Heap|GC/.test(all)) return `${s.thread}: garbage collection`;
  if (/Compil|Maglev|Turbofan|compiler::/.test(all)) return `${s.thread}: compiling`;
  return `${s.thread}: other`;
}), samples.length);

const main = samples.filter((s) => s.thread === "MainThread");
const n = main.length;
console.log(`\nthe main thread: ${n} samples (the shares below are of these)`);
print("by the leaf frame's kind", count(main, leafKind), n);
print("by the leaf frame", count(main, (s) => s.frames[0]), n);
print("by the nearest JavaScript frame (its own time and the builtins and native code it called)", count(main, (s) => jsName(nearestJs(s) ?? NO_JS)), n);
print("by the nearest JavaScript frame's module", count(main, (s) => moduleOf(nearestJs(s) ?? NO_JS)), n);
const ics = main.filter((s) => /^Builtins_.*IC/.test(s.frames[0] ?? ""));
console.log(`\nV8's inline caches' builtins (LoadIC, KeyedStoreIC, their megamorphic paths...): ${percent(ics.length, n)} of the main thread`);
print("  by the JavaScript that called them", count(ics, (s) => jsName(nearestJs(s) ?? NO_JS)), n);
print("  by its module", count(ics, (s) => moduleOf(nearestJs(s) ?? NO_JS)), n);

if (frameFilter) {
  const matching = main.filter((s) => s.frames.some((f) => isJs(f) && frameFilter.test(f)));
  console.log(`\nsamples with a JavaScript frame matching ${frameFilter} on their stack: ${percent(matching.length, n)}`);
  print("  by the nearest JavaScript frame", count(matching, (s) => jsName(nearestJs(s) ?? NO_JS)), n);
  print("  by the outermost matching frame", count(matching, (s) => jsName(s.frames.findLast((f) => isJs(f) && frameFilter.test(f))!)), n);
}
