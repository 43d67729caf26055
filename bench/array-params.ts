// Array parameters as text, as the runtime's prepared statements send them (db.ts arrayLiteral)
// against pg's own encoding (utils.js prepareValue) in the same run: CPU and bytes allocated per
// array, each made and then measured as pg's serializer does before it writes it
// (Buffer.byteLength, which flattens a string made of pieces). The arrays are the shapes a tip's
// group-commit statements send (payment's placements, notification's deliveries, the outboxes):
// a few rows' ids, amounts, codes, nullable columns and event payloads.
//   node --import tsx bench/array-params.ts [arrays=200000] [rounds=3]
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { Session } from "node:inspector/promises";
import { arrayLiteral } from "@ttip/runtime";
import { sampledBytes, sampleHeap } from "./heap-sampling.js";

const count = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 3);
const { prepareValue } = createRequire(import.meta.url)("pg/lib/utils") as { prepareValue(v: unknown): unknown };

const ROWS = 5; // a group-commit batch's rows at c16
const rows = <T>(make: (i: number) => T) => Array.from({ length: ROWS }, (_, i) => make(i));
/** Per kind: arrays as a statement's columns are, and how many of each a tip's statements send (roughly, by elements). */
const kinds: { name: string; weight: number; arrays: unknown[][] }[] = [
  { name: "uuids", weight: 4, arrays: Array.from({ length: 64 }, () => rows(() => randomUUID())) },
  { name: "amounts (bigint)", weight: 2, arrays: Array.from({ length: 64 }, () => rows((i) => BigInt(1_000 + i * 37))) },
  { name: "small numbers", weight: 2, arrays: Array.from({ length: 64 }, () => rows((i) => i % 3)) },
  { name: "codes (text)", weight: 3, arrays: Array.from({ length: 64 }, () => rows((i) => ["KES", "mpesa", "sms", "pending"][i % 4])) },
  { name: "nullable text", weight: 2, arrays: Array.from({ length: 64 }, () => rows((i) => (i % 2 ? null : `ws_${randomUUID().slice(0, 8)}`))) },
  { name: "payloads (bytea)", weight: 1, arrays: Array.from({ length: 64 }, () => rows(() => new Uint8Array(180).map((_, j) => j))) },
];

type Encode = (a: unknown[]) => unknown;
const ours: Encode = (a) => arrayLiteral(a) ?? prepareValue(a);
const pgs: Encode = (a) => prepareValue(a);
/** What pg's serializer does with a text parameter before writing it. */
const send = (text: unknown) => (typeof text === "string" ? Buffer.byteLength(text) : 0);

function cpuNsPerArray(encode: Encode, arrays: unknown[][]): number {
  let sink = 0;
  const t0 = process.cpuUsage();
  for (let i = 0; i < count; i++) sink += send(encode(arrays[i % arrays.length]));
  const t = process.cpuUsage(t0);
  if (sink < 0) console.log(sink);
  return ((t.user + t.system) * 1000) / count;
}

/** Bytes allocated per array, from V8's allocation sampling (collected objects counted). */
async function bytesPerArray(session: Session, encode: Encode, arrays: unknown[][]): Promise<number> {
  const n = Math.min(count, 50_000);
  let sink = 0;
  const profile = await sampleHeap(session, 256, () => {
    for (let i = 0; i < n; i++) sink += send(encode(arrays[i % arrays.length]));
  });
  if (sink < 0) console.log(sink);
  return sampledBytes(profile.head) / n;
}

const session = new Session();
session.connect();
for (const k of kinds) if (!ours(k.arrays[0]) || ours(k.arrays[0]) !== pgs(k.arrays[0])) throw new Error(`${k.name}: not pg's literal`);
for (let round = 1; round <= rounds; round++) {
  console.log(`round ${round}`);
  let weighted = { ours: 0, pg: 0, oursB: 0, pgB: 0 };
  for (const k of kinds) {
    const [pgNs, ourNs] = [cpuNsPerArray(pgs, k.arrays), cpuNsPerArray(ours, k.arrays)];
    const [pgB, ourB] = [await bytesPerArray(session, pgs, k.arrays), await bytesPerArray(session, ours, k.arrays)];
    weighted = { ours: weighted.ours + k.weight * ourNs, pg: weighted.pg + k.weight * pgNs, oursB: weighted.oursB + k.weight * ourB, pgB: weighted.pgB + k.weight * pgB };
    console.log(`  ${k.name.padEnd(18)} ns/array pg ${pgNs.toFixed(0).padStart(5)}  runtime ${ourNs.toFixed(0).padStart(5)} (${(ourNs / pgNs).toFixed(2)}x)   bytes/array pg ${pgB.toFixed(0).padStart(5)}  runtime ${ourB.toFixed(0).padStart(5)} (${(ourB / pgB).toFixed(2)}x)`);
  }
  console.log(`  weighted mix: CPU ${(weighted.ours / weighted.pg).toFixed(2)}x pg's, bytes ${(weighted.oursB / weighted.pgB).toFixed(2)}x pg's`);
}
session.disconnect();
