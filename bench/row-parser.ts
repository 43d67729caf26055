// A row of a named statement parsed by the runtime's row parser (deferred-begin.ts rowParser),
// against pg's own Result.parseRow on the same DataRow (the yardstick, same process, alternated
// each round): a tip's row as payment reads it, 14 columns (uuids, text, int8, int4, timestamptz,
// a NULL). Prints CPU nanoseconds per row and the ratio.
//   node --import tsx bench/row-parser.ts [rounds=5] [rows per round=200000]
import pg from "pg";
import { rowParser } from "../services/runtime/src/deferred-begin.js";
import "../services/runtime/src/db.js"; // int8 as BigInt, as every service reads it

const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 200_000);

const { builtins } = pg.types;
const columns: [string, number, string | null][] = [
  ["tip_id", builtins.UUID, "0b6f4c1e-9d1a-4c3e-8f7a-2a1b3c4d5e6f"],
  ["worker_id", builtins.UUID, "7f1c8c9e-3b1a-4a57-9a53-0d8c6c2f1b11"],
  ["venue_id", builtins.UUID, "1a2b3c4d-5e6f-4a1b-8c9d-0e1f2a3b4c5d"],
  ["qr_code_id", builtins.UUID, "2b3c4d5e-6f7a-4b1c-9d0e-1f2a3b4c5d6e"],
  ["status", builtins.TEXT, "succeeded"],
  ["amount_minor", builtins.INT8, "50000"],
  ["fee_minor", builtins.INT8, "1000"],
  ["currency", builtins.TEXT, "KES"],
  ["rating", builtins.INT4, "5"],
  ["message", builtins.TEXT, "asante sana"],
  ["mpesa_receipt", builtins.TEXT, "TLK3A9XY2Z"],
  ["result_code", builtins.TEXT, null],
  ["created_at", builtins.TIMESTAMPTZ, "2026-12-01 07:15:34.123456+00"],
  ["completed_at", builtins.TIMESTAMPTZ, "2026-12-01 07:15:35.654321+00"],
];
const fields = columns.map(([name, dataTypeID]) => ({ name, dataTypeID, format: "text" }));
const values = columns.map(([, , value]) => value);

type Result = { addFields(f: unknown): void; parseRow(v: unknown): object; _parsers?: unknown[] };
const result = new (pg as unknown as { Result: new () => Result }).Result();
result.addFields(fields);
const own = rowParser(fields)!;

function nsPerRow(parse: () => object): number {
  const start = process.cpuUsage();
  let kept = 0;
  for (let i = 0; i < perRound; i++) kept += (parse() as { rating: number }).rating;
  const used = process.cpuUsage(start);
  if (kept !== perRound * 5) throw new Error("the rows differ");
  return ((used.user + used.system) * 1000) / perRound;
}

for (let round = 1; round <= rounds; round++) {
  const before = nsPerRow(() => result.parseRow(values));
  const now = nsPerRow(() => own.call(result, values));
  console.log(`round ${round}: pg's parseRow ${before.toFixed(0)} ns, row parser ${now.toFixed(0)} ns per row (ratio ${(now / before).toFixed(2)})`);
}
