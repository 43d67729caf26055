// What storing a provider callback writes on a grown payment.callbacks after a checkpoint, with
// callback ids in time order (callbacks.ts: the runtime's timeOrderedUuid, UUID version 7) against
// random ones (uuidV4, as before) as the yardstick, in the same run: two payment schemas (databases)
// on one durable PostgreSQL, each filled with `callbacks` stored callbacks of its kind of id, then
// stored to in turns after one CHECKPOINT by the statement callbacks.ts stores a callback with.
// Per callback: blocks touched, WAL records, full-page images and bytes of the statement, and all
// WAL (commits included). Full-page images are what the random ids cost: each callback lands on a
// leaf of payment.callbacks_pkey that no callback touched since the checkpoint. These figures do
// not depend on the machine's load; the CPU does (PostgreSQL's, per turn: nothing else runs in it meanwhile).
//   node --import tsx bench/payment-callback-ids.ts [callbacks=200000] [stored per database=3000] [concurrency=4]
import { loadavg } from "node:os";
import { createPool, migrate, timeOrderedUuid, uuidV4 } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { payment } from "@ttip/payment";
import { cpuMs } from "./process-cpu.js";

const filled = Number(process.argv[2] ?? 200_000);
const stored = Number(process.argv[3] ?? 3_000);
const concurrency = Number(process.argv[4] ?? 4);
/** Callbacks per turn: the two databases alternate in turns this long, so both see the same checkpoint's age. */
const TURN = 100;
/** callbacks.ts' statement for a callback stored before it is looked at. */
const STORE = "INSERT INTO payment.callbacks (callback_id, source, path, remote_address, raw_body) VALUES ($1, $2, $3, $4, $5)";
/** A Daraja STK callback's body, about its real size. */
const BODY = Buffer.from(JSON.stringify({ Body: { stkCallback: { MerchantRequestID: "29115-34620561-1", CheckoutRequestID: "ws_CO_191220191020363925", ResultCode: 0,
  ResultDesc: "The service request is processed successfully.", CallbackMetadata: { Item: [{ Name: "Amount", Value: 100 }, { Name: "MpesaReceiptNumber", Value: "NLJ7RT61SV" },
    { Name: "TransactionDate", Value: 20191219102115 }, { Name: "PhoneNumber", Value: 254708374149 }] } } } }));

const pg = await startPostgres({ durable: true, statementStats: true });
const admin = createPool(pg.url, { max: 1 });
/** PostgreSQL's CPU (the postmaster and its backends, /proc): only the turn's statements run meanwhile. */
const postgresCpuMs = () => cpuMs(new Map([["postgres", pg.pid]]), new Set(["postgres"])).get("postgres")!;

interface Store {
  label: string;
  pool: ReturnType<typeof createPool>;
  dbid: number;
  id: () => string;
  wal: number;
  cpuMs: number;
}

/** payment's schema in its own database, its callbacks table filled with `filled` callbacks whose ids `idSql` makes (i: oldest first). */
async function store(label: string, database: string, idSql: string, id: () => string): Promise<Store> {
  await admin.query(`CREATE DATABASE ${database}`);
  const pool = createPool(pg.url.replace(/\/postgres$/, `/${database}`), { max: concurrency + 1 });
  await migrate(pool, "payment", payment.migrations);
  await pool.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  await pool.query(
    `INSERT INTO payment.callbacks (callback_id, source, path, remote_address, raw_body, received_at, outcome, matched)
     SELECT ${idSql}, 'mpesa_stk', '/mpesa/stk/[token]', '10.0.0.1', $2, now() - (($1::int - i) * interval '10 ms'), 'credited', true FROM generate_series(1, $1::int) i`,
    [filled, BODY],
  );
  await pool.query("VACUUM ANALYZE payment.callbacks");
  const { rows: [{ dbid }] } = await pool.query<{ dbid: number }>("SELECT oid::int AS dbid FROM pg_database WHERE datname = current_database()");
  return { label, pool, dbid, id, wal: 0, cpuMs: 0 };
}

/** `n` callbacks stored `concurrency` at a time; the WAL they wrote (nothing else writes meanwhile). */
async function turn(s: Store, n: number): Promise<void> {
  const { rows: [{ lsn }] } = await admin.query<{ lsn: string }>("SELECT pg_current_wal_lsn() AS lsn");
  const cpu = postgresCpuMs();
  let left = n;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (left-- > 0) await s.pool.query(STORE, [s.id(), "mpesa_stk", "/mpesa/stk/[token]", "10.0.0.1", BODY]);
  }));
  const { rows: [{ wal }] } = await admin.query<{ wal: number }>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::float8 AS wal", [lsn]);
  s.wal += wal;
  s.cpuMs += postgresCpuMs() - cpu;
}

try {
  const started = Date.now();
  await admin.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  // Time-ordered ids for the past as the code makes them: the time (ms) in the first 48 bits.
  const ordered = await store("time-ordered ids (UUID v7)", "ordered_ids", `(lpad(to_hex((extract(epoch FROM now()) * 1000)::bigint - ($1::int - i) * 10), 12, '0') || substr(replace(gen_random_uuid()::text, '-', ''), 13))::uuid`, () => timeOrderedUuid());
  const random = await store("yardstick: random ids (UUID v4)", "random_ids", "gen_random_uuid()", uuidV4);
  console.log(`two payment.callbacks of ${filled} callbacks filled in ${((Date.now() - started) / 1000).toFixed(0)} s; ${stored} callbacks stored in each after a CHECKPOINT, ${concurrency} at a time, in turns of ${TURN}`);
  for (const s of [ordered, random]) await turn(s, 20);
  await admin.query("CHECKPOINT");
  await admin.query("SELECT pg_stat_statements_reset()");
  ordered.wal = random.wal = ordered.cpuMs = random.cpuMs = 0;
  for (let done = 0; done < stored; done += TURN) {
    for (const s of done % (2 * TURN) ? [random, ordered] : [ordered, random]) await turn(s, Math.min(TURN, stored - done));
  }
  const figures = new Map<Store, { fpi: number; bytes: number; cpu: number }>();
  for (const s of [ordered, random]) {
    const { rows: [f] } = await admin.query<{ calls: number; blocks: number; records: number; fpi: number; bytes: number; ms: number }>(
      `SELECT sum(calls)::float8 AS calls, sum(shared_blks_hit + shared_blks_read)::float8 AS blocks,
              sum(wal_records)::float8 AS records, sum(wal_fpi)::float8 AS fpi, sum(wal_bytes)::float8 AS bytes, sum(total_exec_time)::float8 AS ms
         FROM pg_stat_statements WHERE dbid = $1 AND query LIKE 'INSERT INTO payment.callbacks%'`,
      [s.dbid],
    );
    const per = (x: number) => x / f.calls;
    figures.set(s, { fpi: per(f.fpi), bytes: s.wal / f.calls, cpu: s.cpuMs / f.calls });
    console.log(
      `  ${s.label.padEnd(32)} per callback: ${per(f.blocks).toFixed(1)} blocks, ${per(f.records).toFixed(1)} WAL records, ${per(f.fpi).toFixed(2)} full-page images,` +
        ` ${per(f.bytes).toFixed(0)} WAL bytes (statement), ${(s.wal / f.calls).toFixed(0)} WAL bytes in all; statement ${per(f.ms).toFixed(3)} ms, PostgreSQL CPU ${(s.cpuMs / f.calls).toFixed(3)} ms`,
    );
  }
  const o = figures.get(ordered)!;
  const r = figures.get(random)!;
  console.log(`  time-ordered / random ids: WAL bytes per callback ${(o.bytes / r.bytes).toFixed(2)}x, full-page images ${(o.fpi / Math.max(r.fpi, 1e-9)).toFixed(2)}x, PostgreSQL CPU ${(o.cpu / r.cpu).toFixed(2)}x (load ${loadavg()[0].toFixed(1)})`);
  for (const s of [ordered, random]) {
    const { rows: [{ pages }] } = await s.pool.query<{ pages: number }>("SELECT pg_relation_size('payment.callbacks_pkey')::int / 8192 AS pages");
    console.log(`  (${s.label}: payment.callbacks_pkey ${pages} pages)`);
  }
  await ordered.pool.end();
  await random.pool.end();
} finally {
  await admin.end();
  await pg.stop();
}
