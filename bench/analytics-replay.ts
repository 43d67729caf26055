// Analytics' replay (npm run analytics:replay): how long rebuilding the rollups from the stream
// takes for a number of tips, the only exact way to rebuild them (the facts are the events on
// JetStream; PostgreSQL holds only their sums, so no SQL migration can redo them).
//   node --import tsx bench/analytics-replay.ts [tips=100000] [rounds=2]
// Days of generated events (2,000 scans a day over 200 workers; a tip is a scan whose customer
// chose an amount: tip_created, then succeeded or failed; payouts, deliveries) until `tips` tips are
// stored in a JetStream stream. Then rounds alternate A/B/A/B on the same stream and database:
// A: replay() from the first day (clears the rollups from then and applies every event again);
// B, the yardstick: the same stream read back and each event's figures computed (factsOf), nothing
// written: what a replay costs before PostgreSQL.
import { createLogger, createPool, JetStreamBus, migrate } from "@ttip/runtime";
import { startNats, startPostgres } from "@ttip/runtime/testing";
import { createAnalyticsModule } from "@ttip/analytics";
import { dayOf, factsOf, SUBJECTS } from "../services/analytics/src/facts.js";
import { replay } from "../services/analytics/src/replay.js";
import { ensurePartitionsAround } from "../services/analytics/src/store.js";
import { cast, generateDay } from "../services/analytics/test/events.js";

const tips = Number(process.argv[2] ?? 100_000);
const rounds = Number(process.argv[3] ?? 2);
const DAY = 86_400_000;

const logger = createLogger({ level: "warn" });
const [pg, nats] = await Promise.all([startPostgres({ durable: true }), startNats()]);
const pool = createPool(pg.url, { max: 4 });
try {
  await migrate(pool, "analytics", createAnalyticsModule().migrations);
  await ensurePartitionsAround(pool);

  const c = cast(200, 20);
  const messages: ReturnType<typeof generateDay>["events"] = [];
  let made = 0;
  let days = 0;
  while (made < tips) {
    days++;
    const day = generateDay(c, new Date(dayOf(new Date()).getTime() - days * DAY), 2_000, days);
    messages.push(...day.events);
    made += day.expected.created;
  }
  const from = new Date(dayOf(new Date()).getTime() - days * DAY);
  const bus = await JetStreamBus.connect({ servers: nats.url, logger, stream: "BENCH" });
  await Promise.all(Array.from({ length: 16 }, async (_, k) => {
    for (let i = k; i < messages.length; i += 16) await bus.publish(messages[i]);
  }));
  console.log(`stored ${made} tips (${messages.length} events, ${days} days) in JetStream`);

  const replayRun = async () => {
    const t0 = performance.now();
    const r = await replay({ pool, bus, logger, from });
    if (r.applied !== messages.length) throw new Error(`replay applied ${r.applied} of ${messages.length} events`);
    return (performance.now() - t0) / 1000;
  };
  const readRun = async () => {
    const t0 = performance.now();
    let n = 0;
    await bus.readStored!({
      subject: "ttip.>",
      since: new Date(from.getTime() - 15 * 60_000),
      handler: async (m) => {
        if (SUBJECTS.includes(m.subject) && factsOf(m.subject, m.data).at) n++;
      },
    });
    if (n !== messages.length) throw new Error(`read ${n} of ${messages.length} events`);
    return (performance.now() - t0) / 1000;
  };
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    a.push(await replayRun());
    b.push(await readRun());
    console.log(`round ${r + 1}: replay ${a[r].toFixed(1)} s, read and figure alone ${b[r].toFixed(1)} s, ratio ${(a[r] / b[r]).toFixed(2)}`);
  }
  const best = (xs: number[]) => Math.min(...xs);
  const rows = (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.rollups")).rows[0].n;
  console.log(
    `replay of ${made} tips (${messages.length} events) into ${rows} rollup rows: best ${best(a).toFixed(1)} s ` +
      `(${Math.round(messages.length / best(a))} events/s, ${Math.round(made / best(a))} tips/s); yardstick read and figure ${best(b).toFixed(1)} s; ratio ${(best(a) / best(b)).toFixed(2)}`,
  );
  await bus.close();
} finally {
  await pool.end();
  await Promise.all([pg.stop(), nats.stop()]);
}
