// Analytics' live path in JavaScript alone: what building a batch's statement (liveBatchCtes) costs
// per event, on a generated day of events, against a yardstick in the same run: decoding the same
// events (factsOf), which every live batch does first anyway. "as sent" adds turning its arrays into
// the text pg sends (the runtime's arrayLiteral, pg's own for the others), and counts their elements.
//   node --import tsx bench/analytics-live-js.ts [events per batch=500] [rounds=200]
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import pgLib from "pg";
import { createPool, migrate } from "@ttip/runtime";
import { arrayLiteral } from "../services/runtime/src/db.js";
import { startPostgres } from "@ttip/runtime/testing";
import { factsOf } from "../services/analytics/src/facts.js";
import { ensurePartitionsAround, liveBatchCtes } from "../services/analytics/src/store.js";
import { cast, generateDay } from "../services/analytics/test/events.js";

const perBatch = Number(process.argv[2] ?? 500);
const rounds = Number(process.argv[3] ?? 200);
const day = new Date(Date.UTC(2026, 10, 10));
// The partitions around the day, so that liveBatchCtes writes the batch rather than declining it.
const pg = await startPostgres({});
const pool = createPool(pg.url, { max: 2 });
await migrate(pool, "analytics", fileURLToPath(new URL("../services/analytics/migrations", import.meta.url)));
await ensurePartitionsAround(pool, day);
await pool.end();
await pg.stop();

const { events } = generateDay(cast(40, 8), day, perBatch, 3);
const batch = events.slice(0, perBatch);
const time = (what: () => unknown) => {
  for (let i = 0; i < 20; i++) what();
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) what();
  return ((performance.now() - t0) * 1000) / (rounds * batch.length);
};
const live = batch.map((m) => ({ id: m.id, applied: factsOf(m.subject, m.data) }));
const rows = live.reduce((n, e) => n + e.applied.facts.length, 0);
const prepareValue = (pgLib as unknown as { utils: { prepareValue(v: unknown): unknown } }).utils.prepareValue;
const asSent = () => liveBatchCtes(live, 2)!.values.map((v) => (Array.isArray(v) ? (arrayLiteral(v) ?? prepareValue(v)) : v));
const elements = liveBatchCtes(live, 2)!.values.reduce((n: number, v) => n + (Array.isArray(v) ? v.length : 1), 0);
const chars = asSent().reduce((n: number, v) => n + String(v).length, 0);
console.log(`batch of ${batch.length} events (${rows} facts): ${(elements / batch.length).toFixed(1)} array elements and ${(chars / batch.length).toFixed(0)} characters sent per event`);
for (let pass = 0; pass < 3; pass++) {
  const decode = time(() => batch.map((m) => factsOf(m.subject, m.data)));
  const build = time(() => liveBatchCtes(live, 2));
  const sent = time(asSent);
  console.log(`liveBatchCtes ${build.toFixed(2)} us/event (as sent ${sent.toFixed(2)}), factsOf ${decode.toFixed(2)} us/event, ratio ${(build / decode).toFixed(2)} (as sent ${(sent / decode).toFixed(2)})`);
}
