// A timestamptz column's text parsed by the runtime's parser (timestamptz.ts) against pg's own
// (postgres-date, the yardstick), alternated in one process, on the texts PostgreSQL writes for
// rows' times (microseconds, or whole seconds, at +00). Prints CPU ns and bytes allocated per
// value (V8's allocation sampling, collected objects counted; the Date both make included).
//   node --import tsx bench/timestamptz-parse.ts [rounds=5] [values per round=500000]
import { createRequire } from "node:module";
import { Session } from "node:inspector/promises";
import { timestamptzParser } from "../services/runtime/src/timestamptz.js";
import { sampledBytes, sampleHeap } from "./heap-sampling.js";

const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 500_000);
const parseDate = createRequire(import.meta.url)("postgres-date") as (text: string) => unknown;
const ours = timestamptzParser(parseDate);

const base = Date.UTC(2026, 11, 1, 7, 15, 34);
const texts = Array.from({ length: 256 }, (_, i) => {
  const iso = new Date(base + i * 7_919_123).toISOString(); // 2026-12-01T07:15:34.123Z
  return i % 4 === 3 ? `${iso.slice(0, 10)} ${iso.slice(11, 19)}+00` : `${iso.slice(0, 10)} ${iso.slice(11, 23)}${String(i * 37).padStart(3, "0").slice(-3)}+00`;
});
for (const t of texts) if ((ours(t) as Date).getTime() !== (parseDate(t) as Date).getTime()) throw new Error(`${t}: not pg's Date`);

function nsPerValue(parse: (text: string) => unknown): number {
  let sink = 0;
  const t0 = process.cpuUsage();
  for (let i = 0; i < perRound; i++) sink += (parse(texts[i & 255]) as Date).getTime() & 1;
  const t = process.cpuUsage(t0);
  if (sink < 0) console.log(sink);
  return ((t.user + t.system) * 1000) / perRound;
}

async function bytesPerValue(session: Session, parse: (text: string) => unknown): Promise<number> {
  const n = Math.min(perRound, 50_000);
  let sink = 0;
  const profile = await sampleHeap(session, 128, () => {
    for (let i = 0; i < n; i++) sink += (parse(texts[i & 255]) as Date).getTime() & 1;
  });
  if (sink < 0) console.log(sink);
  return sampledBytes(profile.head) / n;
}

const session = new Session();
session.connect();
for (let round = 1; round <= rounds; round++) {
  // Alternated: the first of a round runs with the other's garbage and compiled code behind it.
  const first = round % 2 ? nsPerValue(parseDate) : nsPerValue(ours);
  const second = round % 2 ? nsPerValue(ours) : nsPerValue(parseDate);
  const [pgNs, ourNs] = round % 2 ? [first, second] : [second, first];
  const [pgB, ourB] = [await bytesPerValue(session, parseDate), await bytesPerValue(session, ours)];
  console.log(`round ${round}: pg's parser ${pgNs.toFixed(0)} ns ${pgB.toFixed(0)} B, runtime's ${ourNs.toFixed(0)} ns ${ourB.toFixed(0)} B per value (ratio CPU ${(ourNs / pgNs).toFixed(2)}, bytes ${(ourB / pgB).toFixed(2)})`);
}
session.disconnect();
