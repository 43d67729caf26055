// Arrays of bytes (events' payloads into the outboxes, callbacks' bodies) as the runtime's prepared
// statements send them: in PostgreSQL's binary array format (db.ts byteaArray), against the text
// literal they went as before (arrayLiteral: each element in hex, the yardstick), in one process.
// 1. Encoding alone: CPU ns and bytes allocated per array, each as pg's serializer takes it
//    (a string's Buffer.byteLength, which flattens it; a Buffer as it is).
// 2. An outbox-shaped INSERT ... unnest of the same rows through the runtime's pool, both ways in
//    short alternating blocks (the text way: the literal passed as the parameter, as it was sent):
//    this process's CPU and PostgreSQL's per statement, and bytes written to PostgreSQL.
//   node --import tsx bench/bytea-arrays.ts [rounds=3] [arrays per round=100000] [blocks=20] [statements per block=500]
import { randomUUID } from "node:crypto";
import { Session } from "node:inspector/promises";
import { arrayLiteral, byteaArray, createPool, type Pool } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { cpuMs } from "./process-cpu.js";
import { sampledBytes, sampleHeap } from "./heap-sampling.js";

const rounds = Number(process.argv[2] ?? 3);
const count = Number(process.argv[3] ?? 100_000);
const blocks = Number(process.argv[4] ?? 20);
const perBlock = Number(process.argv[5] ?? 500);

const ROWS = 5; // a group-commit batch's rows at c16
const bytes = (size: number) => Array.from({ length: 32 }, (_, k) => Array.from({ length: ROWS }, (_, i) => Buffer.from(new Uint8Array(size).map((_, j) => (i * 31 + j * 7 + k) & 255))));
const kinds = [
  { name: "events' payloads (180 B)", arrays: bytes(180) },
  { name: "callbacks' bodies (900 B)", arrays: bytes(900) },
];

type Encode = (a: unknown[]) => unknown;
const asText: Encode = (a) => arrayLiteral(a);
const asBinary: Encode = (a) => byteaArray(a);
const send = (value: unknown) => (typeof value === "string" ? Buffer.byteLength(value) : (value as Buffer).length);

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
  const n = Math.min(count, 20_000);
  let sink = 0;
  const profile = await sampleHeap(session, 256, () => {
    for (let i = 0; i < n; i++) sink += send(encode(arrays[i % arrays.length]));
  });
  if (sink < 0) console.log(sink);
  return sampledBytes(profile.head) / n;
}

const session = new Session();
session.connect();
console.log(`encoding an array of ${ROWS} elements, ${count} per measure:`);
for (let round = 1; round <= rounds; round++) {
  for (const k of kinds) {
    const [textNs, binNs] = [cpuNsPerArray(asText, k.arrays), cpuNsPerArray(asBinary, k.arrays)];
    const [textB, binB] = [await bytesPerArray(session, asText, k.arrays), await bytesPerArray(session, asBinary, k.arrays)];
    console.log(
      `  round ${round} ${k.name.padEnd(26)} ns/array text ${textNs.toFixed(0).padStart(6)}  binary ${binNs.toFixed(0).padStart(5)} (${(binNs / textNs).toFixed(2)}x)` +
        `   bytes/array text ${textB.toFixed(0).padStart(6)}  binary ${binB.toFixed(0).padStart(5)} (${(binB / textB).toFixed(2)}x)   sent ${send(asText(k.arrays[0]))} -> ${send(asBinary(k.arrays[0]))} B`,
    );
  }
}
session.disconnect();

const pg = await startPostgres({ durable: false });
const pool: Pool = createPool(pg.url, { max: 4 });
const sockets: { bytesWritten: number }[] = [];
pool.on("connect", (client) => sockets.push((client as unknown as { connection: { stream: { bytesWritten: number } } }).connection.stream));
const written = () => sockets.reduce((n, s) => n + s.bytesWritten, 0);
const postgresCpuMs = () => cpuMs(new Map([["postgres", pg.pid]]), new Set(["postgres"])).get("postgres")!;
const INSERT = `INSERT INTO outbox (event_id, subject, payload, traceparent)
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[])`;
type Figures = { cpuUs: number; pgCpuMs: number; bytes: number; statements: number };
const zero = (): Figures => ({ cpuUs: 0, pgCpuMs: 0, bytes: 0, statements: 0 });
const subjects = Array.from({ length: ROWS }, () => "ttip.payment.tip_succeeded");
const traceparents = Array.from({ length: ROWS }, () => null);

async function block(payloads: Buffer[][], encode: (a: Buffer[]) => unknown, into: Figures): Promise<void> {
  const [pg0, b0, cpu0] = [postgresCpuMs(), written(), process.cpuUsage()];
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = next++; i < perBlock; i = next++) {
        const ids = Array.from({ length: ROWS }, () => randomUUID());
        await pool.query(INSERT, [ids, subjects, encode(payloads[i % payloads.length]), traceparents]);
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  into.cpuUs += cpu.user + cpu.system;
  into.bytes += written() - b0;
  into.pgCpuMs += postgresCpuMs() - pg0;
  into.statements += perBlock;
}

try {
  await pool.query("CREATE TABLE outbox (seq bigserial PRIMARY KEY, event_id uuid NOT NULL, subject text NOT NULL, payload bytea NOT NULL, traceparent text)");
  // The text way: the literal as the pool sent it (a string parameter goes as text); the binary way: the array, as callers pass it.
  const ways: [string, (a: Buffer[]) => unknown][] = [["text (hex)", (a) => arrayLiteral(a)], ["binary", (a) => a]];
  console.log(`\nINSERT ... unnest of ${ROWS} rows through the runtime's pool (4 connections), ${blocks} blocks of ${perBlock} per way, alternated; per statement:`);
  for (const k of kinds) {
    const figures = new Map(ways.map(([name]) => [name, zero()]));
    for (const [, encode] of ways) await block(k.arrays, encode, zero()); // warm-up: connections opened, the statement prepared
    for (let b = 0; b < blocks; b++) for (const [name, encode] of b % 2 ? [...ways].reverse() : ways) await block(k.arrays, encode, figures.get(name)!);
    const per = (f: Figures) => ({ cpuUs: f.cpuUs / f.statements, pgCpuUs: (f.pgCpuMs * 1000) / f.statements, bytes: f.bytes / f.statements });
    const [text, binary] = [...figures.values()].map(per);
    console.log(
      `  ${k.name.padEnd(26)} node CPU ${text.cpuUs.toFixed(1)} -> ${binary.cpuUs.toFixed(1)} us (${(binary.cpuUs / text.cpuUs).toFixed(2)}x)` +
        `  postgres CPU ${text.pgCpuUs.toFixed(1)} -> ${binary.pgCpuUs.toFixed(1)} us (${(binary.pgCpuUs / text.pgCpuUs).toFixed(2)}x)  written ${text.bytes.toFixed(0)} -> ${binary.bytes.toFixed(0)} B`,
    );
  }
} finally {
  await pool.end();
  await pg.stop();
}
