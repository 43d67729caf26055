// Writes an event's figures into the rollups, inside the caller's
// transaction (the one that records the event in the inbox).
import { commitWith, opaqueUnnest, withTransaction, type Pool, type Queryable, type Statement } from "@ttip/runtime";
import { dayOf, Dim, dimsOf, hourOf, MEASURES, rowsOf, type Applied, type Measures, type RowKey, type SideRecord } from "./facts.js";

/** Partitions are monthly; this many months around now are made at start. */
const PARTITIONS_BACK = 24;
const PARTITIONS_AHEAD = 3;

const monthStart = (d: Date) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
const nextMonth = (d: Date) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1));
const partitionName = (d: Date) => `rollups_${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, "0")}`;

/** Months whose partition is known to exist, committed (in this process). */
const knownPartitions = new Set<string>();

/**
 * Replicas making partitions take this lock first. It must be taken inside a
 * transaction: in autocommit a pg_advisory_xact_lock ends with its statement
 * and serialises nothing. Held to commit, the second replica's CREATE ... IF
 * NOT EXISTS then sees the first one's table (IF NOT EXISTS alone is no guard:
 * two sessions both find the name free and one fails with "already exists").
 */
const PARTITIONS_LOCK_KEY = "hashtext('ttip.analytics.partitions')::bigint";
const PARTITIONS_LOCK = `SELECT pg_advisory_xact_lock(${PARTITIONS_LOCK_KEY})`;

/**
 * This transaction holds the partitions lock (pg_locks shows a one-key
 * advisory lock as its high and low 32 bits, objsubid 1). A savepoint rolled
 * back releases the lock it took along with the partitions it made.
 */
const HOLDS_PARTITIONS_LOCK = `EXISTS (SELECT 1 FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid::bigint = (${PARTITIONS_LOCK_KEY} >> 32) & 4294967295
    AND l.objid::bigint = ${PARTITIONS_LOCK_KEY} & 4294967295)`;

/**
 * Room a partition's pages keep free for its rows' updates (migration 0002 sets it on the ones made
 * before): a rollup row is added to by batch after batch, and an update that finds room on its page is
 * HOT (no new entry in the key's index, a smaller WAL record, its dead versions pruned in place).
 * Packed full, nearly every update moved the row to another page and wrote an index entry.
 */
export const ROLLUP_FILLFACTOR = 80;

const createPartition = (tx: Queryable, start: Date) =>
  tx.query(
    `CREATE TABLE IF NOT EXISTS analytics.${partitionName(start)} PARTITION OF analytics.rollups
       FOR VALUES FROM ('${start.toISOString()}') TO ('${nextMonth(start).toISOString()}') WITH (fillfactor = ${ROLLUP_FILLFACTOR})`,
  );

/**
 * Of the named partitions, those that exist; with `onlyCommitted`, none this
 * transaction may have made (it may roll back). Every partition is made under
 * the partitions lock, so while this transaction holds it (taken here, or in a
 * savepoint released into it) a partition it sees may be its own: none counts.
 * A row's xmin cannot tell: inside a savepoint it is the subtransaction's id,
 * not the top-level transaction's.
 */
async function partitionsThere(tx: Queryable, names: string[], onlyCommitted: boolean): Promise<Set<string>> {
  const { rows } = await tx.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'analytics' AND c.relname = ANY($1)${onlyCommitted ? ` AND NOT ${HOLDS_PARTITIONS_LOCK}` : ""}`,
    [names],
  );
  return new Set(rows.map((r) => r.name));
}

/**
 * Makes the month's partition if it is missing, in the caller's transaction
 * (`tx` must be one, for the lock to hold). Only committed partitions are
 * remembered: a month remembered from a transaction that then rolled back
 * would fail every later write to it in this process. Returns the partition's
 * name when this transaction made it, for the caller to remember once it has
 * committed (rememberPartitions).
 */
export async function ensurePartition(tx: Queryable, at: Date): Promise<string | undefined> {
  const start = monthStart(at);
  const name = partitionName(start);
  if (knownPartitions.has(name)) return undefined;
  if ((await partitionsThere(tx, [name], true)).has(name)) {
    knownPartitions.add(name);
    return undefined;
  }
  await tx.query(PARTITIONS_LOCK);
  await createPartition(tx, start);
  return name;
}

/** Partitions a transaction made (ensurePartition), remembered once it has committed. */
function rememberPartitions(names: readonly string[]): void {
  for (const n of names) knownPartitions.add(n);
}

/** The partitions around now, so the live path rarely makes one; one transaction, remembered once committed. */
export async function ensurePartitionsAround(pool: Pool, now = new Date()): Promise<void> {
  const months: Date[] = [];
  for (let i = -PARTITIONS_BACK; i <= PARTITIONS_AHEAD; i++) months.push(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + i, 1)));
  const names = months.map(partitionName);
  await withTransaction(pool, async (tx) => {
    await tx.query(PARTITIONS_LOCK);
    // Read after the lock: a replica that made them before us has committed by now, and this
    // transaction made none before it, so every one there is committed.
    const made = await partitionsThere(tx, names, false);
    for (const m of months) if (!made.has(partitionName(m))) await createPartition(tx, m);
  });
  for (const n of names) knownPartitions.add(n);
}

/** Forgets what this process knows about partitions (a replay or test dropped them). */
export function forgetPartitions(): void {
  knownPartitions.clear();
}

interface Row extends RowKey {
  measures: Measures;
}

/**
 * A row's key as the table compares it: a uuid in any case is one value, so
 * ids are lower-cased. Two keys for one row would have the upsert in write()
 * refuse the batch (ON CONFLICT DO UPDATE cannot affect a row twice).
 */
const keyOf = (r: RowKey) => `${r.dim}|${r.id.toLowerCase()}|${r.sub.toLowerCase()}|${r.grain}|${r.bucket.getTime()}|${r.method}|${r.resultCode}|${r.currency}`;

/** A map's values in its keys' order: every batch locks the rows (or records) they write in one order. */
const byKey = <T>(items: Map<string, T>) => [...items.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);

/** Sums the rows of several events so each row is written once (one statement cannot touch a row twice). */
export class RollupBatch {
  private readonly rows = new Map<string, Row>();
  readonly records: Applied["records"] = [];

  add(applied: Applied): void {
    for (const fact of applied.facts) {
      for (const key of rowsOf(fact)) {
        const k = keyOf(key);
        let row = this.rows.get(k);
        if (!row) this.rows.set(k, (row = { ...key, measures: {} }));
        for (const [m, v] of Object.entries(fact.measures) as [keyof Measures, bigint][]) row.measures[m] = (row.measures[m] ?? 0n) + v;
      }
    }
    this.records.push(...applied.records);
  }

  get size(): number {
    return this.rows.size + this.records.length;
  }

  /**
   * Writes the summed rows in one statement and the side records after. Every row is locked in
   * one order, its key's (keyOf), whichever month it is in and whether it exists yet, so two
   * batches sharing rows (the platform's hour, which every consumer's batches touch) wait for each
   * other but never in a cycle: no deadlock costs a batch. With endsTransaction, its last statement
   * commits the transaction `db` is in (commitWith): nothing may follow it there, and a month's
   * partition it made is remembered once that has committed (the next batch in the month then
   * goes by the inbox's statement, liveBatchCtes, without asking the catalog).
   */
  async write(db: Queryable, options: { endsTransaction?: boolean } = {}): Promise<void> {
    const rows = byKey(this.rows);
    const months = new Map<string, Date>();
    for (const r of rows) months.set(partitionName(r.bucket), r.bucket);
    const made: string[] = [];
    for (const at of months.values()) {
      const name = await ensurePartition(db, at);
      if (name) made.push(name);
    }
    const statements: Statement[] = [];
    if (rows.length) {
      statements.push({
        text: UPSERT,
        values: [
          rows.map((r) => r.dim),
          rows.map((r) => r.id),
          rows.map((r) => r.sub),
          rows.map((r) => r.grain),
          rows.map((r) => r.bucket.toISOString()),
          rows.map((r) => r.method),
          rows.map((r) => r.resultCode),
          rows.map((r) => r.currency),
          ...MEASURES.map((m) => rows.map((r) => String(r.measures[m] ?? 0n))),
        ],
      });
    }
    statements.push(...recordStatements(this.records));
    // The caller's transaction ends here (endsTransaction): COMMIT goes with the last statement, a round trip fewer.
    for (const [i, { text, values }] of statements.entries()) {
      if (options.endsTransaction && i === statements.length - 1) {
        await commitWith(db, text, values);
        rememberPartitions(made);
      } else await db.query(text, values);
    }
  }
}

const KEYS = ["dim", "id", "sub", "grain", "bucket", "method", "result_code", "currency"] as const;
/** The types of the rollups' columns, KEYS' then MEASURES' (the grain as text: see UPSERT). */
const MEASURE_TYPES = MEASURES.map((m) => (m.endsWith("_minor") ? "bigint" : "integer"));
const ROLLUP_TYPES = ["smallint", "uuid", "uuid", "text", "timestamptz", "text", "text", "text", ...MEASURE_TYPES];

/**
 * The rows' figures added to the rollups: a row made, or added to where it exists (also one
 * another transaction made meanwhile). One INSERT ... ON CONFLICT DO UPDATE takes the rows in
 * the arrays' order (a function scan keeps it), which write() sorts by key: one lock order for
 * every batch. An UPDATE of the rows that exist first, then an upsert of the rest (as before)
 * wrote one WAL record a row instead of two (ON CONFLICT locks a row before it updates it), but
 * locked in two orders: the UPDATE's rows (one month's partition, in the plan's order, those its
 * snapshot saw) before the upsert's, and two batches taking a shared row in different phases
 * deadlocked. Each array out of the planner's sight (opaqueArray): the generic plan is kept, not
 * one planned per batch. The grain comes as text ("char" is no type name opaqueArray takes) and is
 * cast back for the key's index.
 */
const UPSERT = (() => {
  const columns = [...KEYS, ...MEASURES].map((c) => (c === "grain" ? `grain::"char"` : c));
  return `INSERT INTO analytics.rollups (${KEYS.join(", ")}, ${MEASURES.join(", ")})
    SELECT ${columns.join(", ")} FROM ${opaqueUnnest(ROLLUP_TYPES)} AS v(${KEYS.join(", ")}, ${MEASURES.join(", ")})
    ON CONFLICT (dim, id, grain, bucket, sub, method, result_code, currency) DO UPDATE SET
      ${MEASURES.map((m) => `${m} = rollups.${m} + EXCLUDED.${m}`).join(", ")}`;
})();

/** A worker's row `v` (id, registered_at, at) adds something to the one there, if any. */
const WORKER_ADDS = `NOT EXISTS (SELECT 1 FROM analytics.workers k WHERE k.worker_id = v.id
                            AND (k.registered_at IS NOT NULL OR v.registered_at IS NULL) AND k.first_seen_at <= v.at)`;
const WORKER_UPSERT = `ON CONFLICT (worker_id) DO UPDATE SET
         registered_at = COALESCE(workers.registered_at, EXCLUDED.registered_at),
         first_seen_at = LEAST(workers.first_seen_at, EXCLUDED.first_seen_at)
       WHERE (workers.registered_at IS NULL AND EXCLUDED.registered_at IS NOT NULL) OR workers.first_seen_at > EXCLUDED.first_seen_at`;

/**
 * The statements of side records, merged per key, one per kind, each in key
 * order: batches of different consumers (a sign-up and a tip naming the same
 * worker) then never lock the same rows in opposite orders.
 */
function recordStatements(records: SideRecord[]): Statement[] {
  const workers = new Map<string, { id: string; registeredAt?: Date; at: Date }>();
  const requests = new Map<string, Extract<SideRecord, { kind: "payout_request" }>>();
  const results = new Map<string, Extract<SideRecord, { kind: "payout_result" }>>();
  const reasons = new Map<string, string>();
  const statements: Statement[] = [];
  // Keyed by the lower-cased id, as the table compares uuids (keyOf): one row's two spellings are merged
  // (two would have the workers' upsert refuse the batch), and every batch sorts its rows alike.
  for (const r of records) {
    if (r.kind === "worker") {
      const id = r.workerId.toLowerCase();
      const w = workers.get(id);
      workers.set(id, {
        id,
        registeredAt: w?.registeredAt ?? r.registeredAt,
        at: w && w.at < r.at ? w.at : r.at,
      });
    } else if (r.kind === "payout_request") {
      const id = r.payoutId.toLowerCase();
      if (!requests.has(id)) requests.set(id, { ...r, payoutId: id });
    } else if (r.kind === "payout_result") {
      const id = r.payoutId.toLowerCase();
      if (!results.has(id)) results.set(id, { ...r, payoutId: id });
    } else reasons.set(r.resultCode, r.reason);
  }
  if (workers.size) {
    const w = byKey(workers);
    // A worker already known with all this would add is left out before the upsert: ON CONFLICT
    // locks the row it meets (a WAL record) even when its WHERE then changes nothing, and nearly
    // every tip names a known worker. Safe under concurrency: a row only ever gains what is added.
    statements.push({
      text: `INSERT INTO analytics.workers (worker_id, registered_at, first_seen_at)
       SELECT v.id, v.registered_at, v.at FROM ${opaqueUnnest(["uuid", "timestamptz", "timestamptz"])} AS v(id, registered_at, at)
        WHERE ${WORKER_ADDS}
       ${WORKER_UPSERT}`,
      values: [w.map((x) => x.id), w.map((x) => x.registeredAt ?? null), w.map((x) => x.at)],
    });
  }
  if (requests.size) {
    const q = byKey(requests);
    statements.push({
      text: `INSERT INTO analytics.payout_requests (payout_id, worker_id, requested_at)
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) ON CONFLICT (payout_id) DO NOTHING`,
      values: [q.map((x) => x.payoutId), q.map((x) => x.workerId ?? null), q.map((x) => x.at)],
    });
  }
  if (results.size) {
    const q = byKey(results);
    statements.push({
      text: `INSERT INTO analytics.payout_results (payout_id, worker_id, succeeded, result_code, currency, amount_minor, completed_at)
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::boolean[], $4::text[], $5::text[], $6::bigint[], $7::timestamptz[])
       ON CONFLICT (payout_id) DO NOTHING`,
      values: [q.map((x) => x.payoutId), q.map((x) => x.workerId ?? null), q.map((x) => x.succeeded), q.map((x) => x.resultCode),
        q.map((x) => x.currency), q.map((x) => String(x.amountMinor)), q.map((x) => x.at)],
    });
  }
  if (reasons.size) {
    const keys = [...reasons.keys()].sort();
    statements.push({
      text: `INSERT INTO analytics.result_reasons (result_code, reason) SELECT * FROM unnest($1::text[], $2::text[])
       ON CONFLICT (result_code) DO UPDATE SET reason = EXCLUDED.reason WHERE result_reasons.reason <> EXCLUDED.reason`,
      values: [keys, keys.map((k) => reasons.get(k)!)],
    });
  }
  return statements;
}

/** An event delivered to a live consumer, with what it adds. */
export interface LiveEvent {
  id: string;
  applied: Applied;
}

/**
 * The arrays' types each CTE of liveBatchCtes takes; in order: the facts (each row's event id first,
 * then its hour and day, the key's other columns common to its rows, and its figures), the dimensions
 * each fact names (the fact's place in the facts' arrays, from 1, first), workers, payout requests,
 * payout results, reasons (each row's event id first). A fact's rows are its dimensions at its hour
 * and the platform's at its day (facts.ts, hasDayRows), made in SQL: a fact's figures and its key's common columns go once, not in each of
 * its rows (up to a dozen; the tip bench's about six), which was ~500 array elements per tip to build,
 * send and parse.
 */
const LIVE_TYPES = [
  ["uuid", "timestamptz", "timestamptz", "text", "text", "text", ...MEASURE_TYPES],
  ["int", "smallint", "uuid", "uuid"],
  ["uuid", "uuid", "timestamptz", "timestamptz"],
  ["uuid", "uuid", "uuid", "timestamptz"],
  ["uuid", "uuid", "uuid", "boolean", "text", "text", "bigint", "timestamptz"],
  ["uuid", "text", "text"],
];

/** The CTE of liveSql each of LIVE_TYPES' arrays goes to: rolled (facts, dimensions), seen_workers, requested, paid, reasoned. */
const CTE_OF_ARRAY = [0, 0, 1, 2, 3, 4];

/**
 * The CTEs of liveBatchCtes, parameters numbered from `first` on. Like write()'s statements, but
 * each row counts only the events in `fresh` (the inbox's CTE: those not applied before), merged
 * in SQL as write() merges them in JS (figures summed; a worker's first registration and earliest
 * sight; a payout's first request and result; a code's last words). The statement runs under the
 * live batches' exclusive lock (ingest.ts, REBUILD_LOCK), so no other batch holds a rollup row it
 * writes: the rows its snapshot sees in `partition` (the month of most rows) are added to by a plain
 * UPDATE of that partition (added; through the parent, every month's partition was opened and
 * scanned each run: 1.2-3x the statement's CPU), one WAL record a row,
 * where ON CONFLICT DO UPDATE first locked each row, a second record (nearly every row of a tip's
 * batch exists: a worker's or the platform's hour). The rest are inserted, and ON CONFLICT adds to
 * a row a batch committed after this statement's snapshot was taken, while it waited for the lock.
 * Side records in keyOf's order (text compared by bytes, as JS compares it).
 */
function liveSql(first: number, written: readonly boolean[], partition: string): string {
  // Each written CTE's arrays numbered in LIVE_TYPES' order; a CTE left out takes no parameters.
  const at: number[] = [];
  let next = first;
  for (const [i, types] of LIVE_TYPES.entries()) {
    at.push(next);
    if (written[CTE_OF_ARRAY[i]]) next += types.length;
  }
  const [facts, dims, workers, requests, results, reasons] = at;
  const fresh = "v.event_id IN (SELECT event_id FROM fresh)";
  const keys = KEYS.map((k) => `x.${k}`).join(", ");
  const same = (a: string, b: string) => KEYS.map((k) => `${a}.${k} = ${b}.${k}`).join(" AND ");
  const ctes = [`summed AS (SELECT ${KEYS.map((k) => (k === "grain" ? `x.grain::"char" AS grain` : `x.${k}`)).join(", ")}, ${MEASURES.map((m, i) => `sum(x.${m})::${MEASURE_TYPES[i]} AS ${m}`).join(", ")}
        FROM (SELECT d.dim, d.id, d.sub, g.grain, CASE g.grain WHEN 'h' THEN v.hour ELSE v.day END AS bucket,
                     v.method, v.result_code, v.currency, ${MEASURES.map((m) => `v.${m}`).join(", ")}
                FROM ${opaqueUnnest(LIVE_TYPES[0], facts)} WITH ORDINALITY AS v(event_id, hour, day, method, result_code, currency, ${MEASURES.join(", ")}, f)
                JOIN ${opaqueUnnest(LIVE_TYPES[1], dims)} AS d(f, dim, id, sub) ON d.f = v.f
                CROSS JOIN (VALUES ('h'::text), ('d'::text)) AS g(grain)
               WHERE ${fresh} AND (g.grain = 'h' OR d.dim = ${Dim.Platform})) x
       GROUP BY ${keys}),
    added AS (UPDATE analytics.${partition} r SET ${MEASURES.map((m) => `${m} = r.${m} + s.${m}`).join(", ")}
        FROM summed s WHERE ${same("r", "s")}
      RETURNING ${KEYS.map((k) => `r.${k}`).join(", ")}),
    rolled AS (INSERT INTO analytics.rollups (${KEYS.join(", ")}, ${MEASURES.join(", ")})
      SELECT ${[...KEYS, ...MEASURES].map((c) => `s.${c}`).join(", ")} FROM summed s WHERE NOT EXISTS (SELECT 1 FROM added a WHERE ${same("a", "s")})
       ORDER BY s.dim, s.id, s.sub, s.grain, s.bucket, s.method COLLATE "C", s.result_code COLLATE "C", s.currency COLLATE "C"
      ON CONFLICT (dim, id, grain, bucket, sub, method, result_code, currency) DO UPDATE SET
        ${MEASURES.map((m) => `${m} = rollups.${m} + EXCLUDED.${m}`).join(", ")})`,
    `seen_workers AS (INSERT INTO analytics.workers (worker_id, registered_at, first_seen_at)
      SELECT w.id, w.registered_at, w.at FROM (
          SELECT v.id, (array_agg(v.registered_at ORDER BY v.ord) FILTER (WHERE v.registered_at IS NOT NULL))[1] AS registered_at, min(v.at) AS at
            FROM ${opaqueUnnest(LIVE_TYPES[2], workers)} WITH ORDINALITY AS v(event_id, id, registered_at, at, ord)
           WHERE ${fresh} GROUP BY v.id) w
       WHERE ${WORKER_ADDS.replaceAll("v.", "w.")}
       ORDER BY w.id
      ${WORKER_UPSERT})`,
    `requested AS (INSERT INTO analytics.payout_requests (payout_id, worker_id, requested_at)
      SELECT DISTINCT ON (v.payout_id) v.payout_id, v.worker_id, v.at
        FROM ${opaqueUnnest(LIVE_TYPES[3], requests)} WITH ORDINALITY AS v(event_id, payout_id, worker_id, at, ord)
       WHERE ${fresh} ORDER BY v.payout_id, v.ord
      ON CONFLICT (payout_id) DO NOTHING)`,
    `paid AS (INSERT INTO analytics.payout_results (payout_id, worker_id, succeeded, result_code, currency, amount_minor, completed_at)
      SELECT DISTINCT ON (v.payout_id) v.payout_id, v.worker_id, v.succeeded, v.result_code, v.currency, v.amount_minor, v.at
        FROM ${opaqueUnnest(LIVE_TYPES[4], results)}
             WITH ORDINALITY AS v(event_id, payout_id, worker_id, succeeded, result_code, currency, amount_minor, at, ord)
       WHERE ${fresh} ORDER BY v.payout_id, v.ord
      ON CONFLICT (payout_id) DO NOTHING)`,
    `reasoned AS (INSERT INTO analytics.result_reasons (result_code, reason)
      SELECT DISTINCT ON (v.result_code COLLATE "C") v.result_code, v.reason
        FROM ${opaqueUnnest(LIVE_TYPES[5], reasons)} WITH ORDINALITY AS v(event_id, result_code, reason, ord)
       WHERE ${fresh} ORDER BY v.result_code COLLATE "C", v.ord DESC
      ON CONFLICT (result_code) DO UPDATE SET reason = EXCLUDED.reason WHERE result_reasons.reason <> EXCLUDED.reason)`,
  ];
  return ctes.filter((_, i) => written[i]).join(",\n    ");
}

/** liveSql's text by its first parameter and the CTEs it writes. */
const liveSqls = new Map<string, string>();

/**
 * A live batch in the inbox's statement (consumeEventBatches' effectCte): its rollups and side
 * records written by CTEs of that one statement, without BEGIN or COMMIT, instead of a
 * transaction of three or more round trips. Null when a month it writes has no partition known
 * to exist: making one takes a lock held to the end of a transaction (write(), in handleBatch).
 */
export function liveBatchCtes(events: LiveEvent[], first: number): { sql: string; values: unknown[] } | null {
  const [facts, dims, workers, requests, results, reasons] = LIVE_TYPES.map((types) => types.map((): unknown[] => []));
  const push = (arrays: unknown[][], values: unknown[]) => values.forEach((v, i) => arrays[i].push(v));
  // Per bucket, its time as text (pg's own for a Date is dearer), or undefined when its month's
  // partition is not known: a batch's facts fall in a few hours and days.
  const buckets = new Map<number, string | undefined>();
  const bucket = (at: Date) => {
    const t = at.getTime();
    if (buckets.has(t)) return buckets.get(t);
    const text = knownPartitions.has(partitionName(at)) ? at.toISOString() : undefined;
    buckets.set(t, text);
    return text;
  };
  const [eventIds, hours, days, methods, resultCodes, currencies] = facts;
  const measureColumns = facts.slice(6);
  for (const { id, applied } of events) {
    for (const fact of applied.facts) {
      const hour = bucket(hourOf(fact.at));
      const day = bucket(dayOf(fact.at));
      if (hour === undefined || day === undefined) return null;
      eventIds.push(id);
      hours.push(hour);
      days.push(day);
      methods.push(fact.method);
      resultCodes.push(fact.resultCode);
      currencies.push(fact.currency);
      for (let i = 0; i < MEASURES.length; i++) measureColumns[i].push(String(fact.measures[MEASURES[i]] ?? 0n));
      const f = eventIds.length;
      for (const [dim, dimId, sub] of dimsOf(fact)) push(dims, [f, dim, dimId, sub]);
    }
    for (const r of applied.records) {
      if (r.kind === "worker") push(workers, [id, r.workerId, r.registeredAt ?? null, r.at]);
      else if (r.kind === "payout_request") push(requests, [id, r.payoutId, r.workerId ?? null, r.at]);
      else if (r.kind === "payout_result") push(results, [id, r.payoutId, r.workerId ?? null, r.succeeded, r.resultCode, r.currency, String(r.amountMinor), r.at]);
      else push(reasons, [id, r.resultCode, r.reason]);
    }
  }
  // Only the CTEs with rows to write (a tip's batch has no payouts nor reasons; the SMS counts' has
  // only figures): each CTE in the statement opens its table and indexes and sets up its plan on every
  // run, with rows to write or not. The rollups' is kept when nothing else is, so the statement has one.
  const arrays = [facts, dims, workers, requests, results, reasons];
  const written = [0, 1, 2, 3, 4].map((cte) => arrays.some((columns, i) => CTE_OF_ARRAY[i] === cte && columns[0].length > 0));
  if (!written.some(Boolean)) written[0] = true;
  // The month of the batch's first hour (its partition known to exist: bucket()): its rows are updated in
  // place (a batch's facts fall in a few hours). No facts: the parent, updating nothing.
  const firstFact = events.find((e) => e.applied.facts.length)?.applied.facts[0];
  const partition = firstFact ? partitionName(hourOf(firstFact.at)) : "rollups";
  const key = `${first}:${written.map(Number).join("")}:${partition}`;
  let sql = liveSqls.get(key);
  if (!sql) liveSqls.set(key, (sql = liveSql(first, written, partition)));
  return { sql, values: arrays.filter((_, i) => written[CTE_OF_ARRAY[i]]).flat(1) };
}

/** Everything the rollups hold from `from` on, removed (the replay's first step). */
export async function clearFrom(db: Queryable, from: Date): Promise<void> {
  await db.query("DELETE FROM analytics.rollups WHERE bucket >= $1", [from]);
  await db.query("DELETE FROM analytics.payout_requests WHERE requested_at >= $1", [from]);
  await db.query("DELETE FROM analytics.payout_results WHERE completed_at >= $1", [from]);
}
