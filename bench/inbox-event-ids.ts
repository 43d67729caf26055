// What a consumer's inbox writes per applied event on a grown inbox after a checkpoint, with event
// ids in time order (buildEvent: UUID version 7) against random ones (version 4, as before) as the
// yardstick, in the same run: two inboxes (databases) on one durable PostgreSQL, made by the
// runtime's migrations, each filled with `filled` rows of its kind of id for three consumers (the
// inbox keeps a day and more: InboxRetention), then written to in turns after one CHECKPOINT. Per
// event: WAL records, full-page images and bytes of the insert. A random id lands on an inbox_pkey
// leaf no insert since the checkpoint touched, so it writes that page whole. These figures do not
// depend on the machine's load; the statement's time does.
//   node --import tsx bench/inbox-event-ids.ts [rows=1000000] [events per inbox=6000] [concurrency=4]
import { loadavg } from "node:os";
import { createPool, migrate, timeOrderedUuid, uuidV4 } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";

const filled = Number(process.argv[2] ?? 1_000_000);
const written = Number(process.argv[3] ?? 6_000);
const concurrency = Number(process.argv[4] ?? 4);
/** Events per turn: the two inboxes alternate in turns this long, so both see the same checkpoint's age. */
const TURN = 200;
const CONSUMERS = ["notification.tip-succeeded", "analytics.tips", "wallet.tip-succeeded"];

const pg = await startPostgres({ durable: true, statementStats: true });
const admin = createPool(pg.url, { max: 1 });

interface Inbox { label: string; pool: ReturnType<typeof createPool>; dbid: number; id: () => string }

async function inbox(label: string, database: string, idSql: string, id: () => string): Promise<Inbox> {
  await admin.query(`CREATE DATABASE ${database}`);
  const pool = createPool(pg.url.replace(/\/postgres$/, `/${database}`), { max: concurrency + 1 });
  await migrate(pool, "svc", undefined);
  await pool.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  // The past in the order it was applied: each event once per consumer, 10 ms apart.
  await pool.query(
    `INSERT INTO svc.inbox (consumer, event_id, subject, processed_at)
     SELECT c, e.id, 'ttip.payment.tip_succeeded', e.at
       FROM (SELECT ${idSql} AS id, now() - (($1::int - i) * interval '10 ms') AS at FROM generate_series(1, $1::int) i) e,
            unnest($2::text[]) c
      ORDER BY e.at`,
    [Math.floor(filled / CONSUMERS.length), CONSUMERS],
  );
  await pool.query("VACUUM ANALYZE svc.inbox");
  const { rows: [{ dbid }] } = await pool.query<{ dbid: number }>("SELECT oid::int AS dbid FROM pg_database WHERE datname = current_database()");
  return { label, pool, dbid, id };
}

/** `n` events applied `concurrency` at a time, each by the three consumers. */
async function turn(box: Inbox, n: number): Promise<void> {
  let left = n;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (left-- > 0) {
      const id = box.id();
      for (const consumer of CONSUMERS) {
        await box.pool.query({ name: "inbox", text: "INSERT INTO svc.inbox (consumer, event_id, subject) VALUES ($1, $2, 'ttip.payment.tip_succeeded')", values: [consumer, id] });
      }
    }
  }));
}

try {
  const started = Date.now();
  await admin.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  const ordered = await inbox("time-ordered ids (UUID v7)", "ordered_ids", `(lpad(to_hex((extract(epoch FROM now()) * 1000)::bigint - ($1::int - i) * 10), 12, '0') || '7' || substr(replace(gen_random_uuid()::text, '-', ''), 14))::uuid`, timeOrderedUuid);
  const random = await inbox("yardstick: random ids (UUID v4)", "random_ids", "gen_random_uuid()", uuidV4);
  console.log(`two inboxes of ${filled} rows filled in ${((Date.now() - started) / 1000).toFixed(0)} s; ${written} events applied by ${CONSUMERS.length} consumers in each after a CHECKPOINT, ${concurrency} at a time, in turns of ${TURN}`);
  await admin.query("CHECKPOINT");
  await admin.query("SELECT pg_stat_statements_reset()");
  for (let done = 0; done < written; done += TURN) {
    for (const box of done % (2 * TURN) ? [random, ordered] : [ordered, random]) await turn(box, Math.min(TURN, written - done));
  }
  const fpiOf = new Map<Inbox, { fpi: number; bytes: number }>();
  for (const box of [ordered, random]) {
    const { rows: [s] } = await admin.query<{ calls: number; records: number; fpi: number; bytes: number; ms: number }>(
      `SELECT sum(calls)::float8 AS calls, sum(wal_records)::float8 AS records, sum(wal_fpi)::float8 AS fpi, sum(wal_bytes)::float8 AS bytes, sum(total_exec_time)::float8 AS ms
         FROM pg_stat_statements WHERE dbid = $1 AND query LIKE 'INSERT INTO svc.inbox%'`,
      [box.dbid],
    );
    const per = (x: number) => x / s.calls;
    fpiOf.set(box, { fpi: per(s.fpi), bytes: per(s.bytes) });
    console.log(`  ${box.label.padEnd(32)} per row: ${per(s.records).toFixed(2)} WAL records, ${per(s.fpi).toFixed(3)} full-page images, ${per(s.bytes).toFixed(0)} WAL bytes; statement ${per(s.ms).toFixed(3)} ms`);
  }
  const o = fpiOf.get(ordered)!;
  const r = fpiOf.get(random)!;
  console.log(`  time-ordered / random ids: WAL bytes per row ${(o.bytes / r.bytes).toFixed(2)}x, full-page images ${(o.fpi / Math.max(r.fpi, 1e-9)).toFixed(2)}x (load ${loadavg()[0].toFixed(1)})`);
  await ordered.pool.end();
  await random.pool.end();
} finally {
  await admin.end();
  await pg.stop();
}
