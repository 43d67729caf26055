// What a posting writes on a grown ledger after a checkpoint, with wallet's entry ids in time
// order (ledger.ts: the runtime's timeOrderedUuid, UUID version 7) against random ones (version 4, as before) as the
// yardstick, in the same run: two ledgers (databases) on one durable PostgreSQL, each filled with
// `entries` entries of its kind of id, then posted to in turns after one CHECKPOINT, through
// postPreparedEntry (PostEntry's statement). Per entry: blocks touched and read, WAL records,
// full-page images and bytes of the posting statement, and all WAL (commits included). Full-page
// images are what the random ids cost: each entry lands on index pages (entries_pkey,
// postings_pkey) no posting since the checkpoint touched. These figures do not depend on the
// machine's load; the time and CPU do (PostgreSQL's, per turn: nothing else runs in it meanwhile).
//   node --import tsx bench/wallet-entry-ids.ts [entries=200000] [posted per ledger=3000] [concurrency=4]
import { randomUUID } from "node:crypto";
import { loadavg } from "node:os";
import { create } from "@bufbuild/protobuf";
import { AccountKind, EntryCauseSchema, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { createPool, migrate } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { ensureAccount, type EntryInput, postPreparedEntry, preparedEntry } from "../services/wallet/src/ledger.js";
import { cpuMs } from "./process-cpu.js";

const filled = Number(process.argv[2] ?? 200_000);
const posted = Number(process.argv[3] ?? 3_000);
const concurrency = Number(process.argv[4] ?? 4);
/** Entries per turn: the two ledgers alternate in turns this long, so both see the same checkpoint's age. */
const TURN = 100;

const pg = await startPostgres({ durable: true, statementStats: true });
const admin = createPool(pg.url, { max: 1 });
/** PostgreSQL's CPU (the postmaster and its backends, /proc): only the turn's postings run meanwhile. */
const postgresCpuMs = () => cpuMs(new Map([["postgres", pg.pid]]), new Set(["postgres"])).get("postgres")!;

interface Ledger {
  label: string;
  pool: ReturnType<typeof createPool>;
  dbid: number;
  input: () => EntryInput;
  /** The entry's id as this ledger makes them: the code's (time-ordered) or a random one. */
  post: (input: EntryInput) => Promise<unknown>;
  wal: number;
  cpuMs: number;
}

/** A ledger in its own database, filled with `filled` tips' entries whose ids are made by `idSql` (i: the entry's number, oldest first). */
async function ledger(label: string, database: string, idSql: string, randomIds: boolean): Promise<Ledger> {
  await admin.query(`CREATE DATABASE ${database}`);
  const pool = createPool(pg.url.replace(/\/postgres$/, `/${database}`), { max: concurrency + 1 });
  await migrate(pool, "wallet", wallet.migrations);
  await pool.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  const account = async (kind: AccountKind, ownerKind: OwnerKind, owner: string) => (await ensureAccount(pool, kind, ownerKind, owner, "KES")).account_id;
  const clearing = await account(AccountKind.MPESA_CLEARING, OwnerKind.PLATFORM, "");
  const fees = await account(AccountKind.PLATFORM_FEES, OwnerKind.PLATFORM, "");
  const workers: string[] = [];
  for (let i = 0; i < 50; i++) workers.push(await account(AccountKind.WORKER_WALLET, OwnerKind.WORKER, randomUUID()));
  // The past, in the order it was posted: entries, then their lines in entry order.
  await pool.query(
    `INSERT INTO wallet.entries (entry_id, idempotency_key, request_hash, cause_kind, cause_ref, posted_at)
     SELECT ${idSql}, 'mpesa:past' || i, 'h', 'mpesaReceipt', 'past' || i, now() - (($1::int - i) * interval '10 ms') FROM generate_series(1, $1::int) i`,
    [filled],
  );
  await pool.query(
    `INSERT INTO wallet.postings (entry_id, line, account_id, amount_minor, currency, balance_after, posted_seq, posted_at)
     SELECT e.entry_id, l, CASE l WHEN 0 THEN $1::uuid WHEN 1 THEN ($3::uuid[])[1 + floor(random() * 50)::int] ELSE $2::uuid END,
            CASE l WHEN 0 THEN -100 WHEN 1 THEN 95 ELSE 5 END, 'KES', CASE l WHEN 1 THEN 95 END, nextval('wallet.posting_seq'), e.posted_at
       FROM (SELECT entry_id, posted_at FROM wallet.entries ORDER BY posted_at) e, generate_series(0, 2) l
      ORDER BY e.posted_at, l`,
    [clearing, fees, workers],
  );
  await pool.query("VACUUM ANALYZE wallet.entries, wallet.postings, wallet.accounts");
  const { rows: [{ dbid }] } = await pool.query<{ dbid: number }>("SELECT oid::int AS dbid FROM pg_database WHERE datname = current_database()");
  const input = (): EntryInput => ({
    idempotencyKey: `mpesa:${randomUUID()}`,
    cause: create(EntryCauseSchema, { cause: { case: "mpesaReceipt", value: randomUUID().slice(0, 10) } }),
    postings: [
      { accountId: clearing, amountMinor: -15_000n, currency: "KES", memo: "M-Pesa" },
      { accountId: workers[Math.floor(Math.random() * workers.length)], amountMinor: 14_300n, currency: "KES", memo: "tip" },
      { accountId: fees, amountMinor: 700n, currency: "KES", memo: "platform fee" },
    ],
    description: "Tip by M-Pesa",
  });
  const post = (i: EntryInput) => {
    const entry = preparedEntry(i);
    return postPreparedEntry(pool, randomIds ? { ...entry, entryId: randomUUID() } : entry);
  };
  return { label, pool, dbid, input, post, wal: 0, cpuMs: 0 };
}

/** `n` entries posted `concurrency` at a time; the WAL they wrote (nothing else writes meanwhile). */
async function turn(l: Ledger, n: number): Promise<void> {
  const { rows: [{ lsn }] } = await admin.query<{ lsn: string }>("SELECT pg_current_wal_lsn() AS lsn");
  const cpu = postgresCpuMs();
  let left = n;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (left-- > 0) await l.post(l.input());
  }));
  const { rows: [{ wal }] } = await admin.query<{ wal: number }>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::float8 AS wal", [lsn]);
  l.wal += wal;
  l.cpuMs += postgresCpuMs() - cpu;
}

try {
  const started = Date.now();
  await admin.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  // Time-ordered ids for the past as the code makes them: the time (ms) in the first 48 bits.
  const ordered = await ledger("time-ordered ids (UUID v7)", "ordered_ids", `(lpad(to_hex((extract(epoch FROM now()) * 1000)::bigint - ($1::int - i) * 10), 12, '0') || substr(replace(gen_random_uuid()::text, '-', ''), 13))::uuid`, false);
  const random = await ledger("yardstick: random ids (UUID v4)", "random_ids", "gen_random_uuid()", true);
  console.log(`two ledgers of ${filled} entries (3 lines each) filled in ${((Date.now() - started) / 1000).toFixed(0)} s; ${posted} entries posted to each after a CHECKPOINT, ${concurrency} at a time, in turns of ${TURN}`);
  for (const l of [ordered, random]) await turn(l, 20);
  await admin.query("CHECKPOINT");
  await admin.query("SELECT pg_stat_statements_reset()");
  ordered.wal = random.wal = ordered.cpuMs = random.cpuMs = 0;
  for (let done = 0; done < posted; done += TURN) {
    for (const l of done % (2 * TURN) ? [random, ordered] : [ordered, random]) await turn(l, Math.min(TURN, posted - done));
  }
  const figures = new Map<Ledger, { fpi: number; bytes: number; cpu: number }>();
  for (const l of [ordered, random]) {
    const { rows: [s] } = await admin.query<{ calls: number; blocks: number; read: number; records: number; fpi: number; bytes: number; ms: number }>(
      `SELECT sum(calls)::float8 AS calls, sum(shared_blks_hit + shared_blks_read)::float8 AS blocks, sum(shared_blks_read)::float8 AS read,
              sum(wal_records)::float8 AS records, sum(wal_fpi)::float8 AS fpi, sum(wal_bytes)::float8 AS bytes, sum(total_exec_time)::float8 AS ms
         FROM pg_stat_statements WHERE dbid = $1 AND query LIKE 'WITH lines AS%'`,
      [l.dbid],
    );
    const per = (x: number) => x / s.calls;
    figures.set(l, { fpi: per(s.fpi), bytes: l.wal / s.calls, cpu: l.cpuMs / s.calls });
    console.log(
      `  ${l.label.padEnd(32)} per entry: ${per(s.blocks).toFixed(1)} blocks (${per(s.read).toFixed(2)} read), ${per(s.records).toFixed(1)} WAL records,` +
        ` ${per(s.fpi).toFixed(2)} full-page images, ${per(s.bytes).toFixed(0)} WAL bytes (posting statement), ${(l.wal / s.calls).toFixed(0)} WAL bytes in all; statement ${per(s.ms).toFixed(3)} ms, PostgreSQL CPU ${(l.cpuMs / s.calls).toFixed(3)} ms`,
    );
  }
  const o = figures.get(ordered)!;
  const r = figures.get(random)!;
  console.log(`  time-ordered / random ids: WAL bytes per entry ${(o.bytes / r.bytes).toFixed(2)}x, full-page images ${(o.fpi / Math.max(r.fpi, 1e-9)).toFixed(2)}x, PostgreSQL CPU ${(o.cpu / r.cpu).toFixed(2)}x (load ${loadavg()[0].toFixed(1)})`);
  const { rows: sizes } = await ordered.pool.query<{ name: string; pages: number }>(
    "SELECT relname AS name, pg_relation_size(oid)::int / 8192 AS pages FROM pg_class WHERE relname IN ('entries_pkey', 'postings_pkey') ORDER BY 1",
  );
  console.log(`  (indexes of the time-ordered ledger: ${sizes.map((x) => `${x.name} ${x.pages} pages`).join(", ")})`);
  await ordered.pool.end();
  await random.pool.end();
} finally {
  await admin.end();
  await pg.stop();
}
