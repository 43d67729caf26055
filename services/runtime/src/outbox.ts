import { setTimeout as sleep } from "node:timers/promises";
import { BatchPartlyApplied, type BusMessage, type DeliveredMessage, type EventBus } from "./bus.js";
import { ident, onOutboxCommitted, opaqueArray, opaqueUnnest, withTransaction, withTransactionBracketed, type Pool, type Queryable } from "./db.js";
import type { Logger } from "./log.js";
import type { DurationSeries, Metrics } from "./metrics.js";
import { currentTraceparent, inConsumerSpan, producerTraceparent, validTraceparent } from "./tracing.js";

/**
 * Stores an event in the service's outbox. Call it with the transaction that
 * changes the state the event reports: both commit or neither does.
 */
export async function writeOutbox(tx: Queryable, schema: string, message: BusMessage): Promise<void> {
  await tx.query(`INSERT INTO ${ident(schema)}.outbox (event_id, subject, payload, traceparent) VALUES ($1, $2, $3, $4)`, [
    message.id,
    message.subject,
    message.data,
    message.traceparent ?? currentTraceparent() ?? null,
  ]);
}

/**
 * The outbox rows of `messages` as a CTE named `announced`, for the statement
 * that writes the state they report: one round trip for the state and all its
 * events instead of one more per event. Its parameters are numbered from
 * `first` on, after the statement's own. With `onlyIfRowsIn` (the name of an
 * earlier CTE of the statement, say a guarded UPDATE's), the events are written
 * only if that CTE has rows: no event for a state change that did not happen.
 */
export function outboxCte(schema: string, messages: BusMessage[], first: number, onlyIfRowsIn?: string): { sql: string; values: unknown[] } {
  const [ids, subjects, payloads, traceparents] = [0, 1, 2, 3].map((i) => `$${first + i}`);
  const guard = onlyIfRowsIn === undefined ? "" : ` WHERE EXISTS (SELECT 1 FROM ${ident(onlyIfRowsIn)})`;
  return {
    sql: `announced AS (INSERT INTO ${ident(schema)}.outbox (event_id, subject, payload, traceparent)
      SELECT * FROM unnest(${ids}::uuid[], ${subjects}::text[], ${payloads}::bytea[], ${traceparents}::text[])${guard})`,
    values: [
      messages.map((m) => m.id),
      messages.map((m) => m.subject),
      messages.map((m) => m.data),
      messages.map((m) => m.traceparent ?? currentTraceparent() ?? null),
    ],
  };
}

export interface OutboxRelayOptions {
  pool: Pool;
  schema: string;
  bus: EventBus;
  logger: Logger;
  batchSize?: number;
  /** How soon a relay that found rows, or failed, looks again (default 200 ms). */
  pollIntervalMs?: number;
  /**
   * The longest an idle relay waits between looks (default 2 000 ms): each look
   * that finds nothing doubles the wait from pollIntervalMs up to this. It bounds
   * the delay of a row this process was not told of (one written by another
   * replica or process, or left by a relay that crashed); rows this process
   * commits wake the relay at once (onOutboxCommitted).
   */
  maxPollIntervalMs?: number;
  /**
   * A woken relay passes no sooner than this after its last pass ended (default
   * 200 ms, the pause it made between looks before it could be woken): under
   * load, the events committed meanwhile go in one batch (two round trips and a
   * commit) instead of a batch each, and reach consumers together, who apply
   * them in batches too. A quiet relay's first event goes at once.
   */
  minPassIntervalMs?: number;
  /** Counts published events and the time from commit to publish. */
  metrics?: Metrics;
}

/**
 * A database setting (`ALTER DATABASE … SET ttip.outbox_keep_published = on`,
 * read when a relay first publishes): published rows stay, marked with
 * published_at, instead of being deleted. Nothing in the platform reads a
 * published row; the bus keeps the events. Deleting one costs PostgreSQL a WAL
 * record of 54 bytes; marking it costs four (a new version of the row, with
 * its payload, and an entry in each of its two indexes: published_at is in the
 * partial index's predicate, so the update is never HOT), about 650 bytes, and
 * the table grows forever. The test harness's databases keep them, for tests
 * that read the events a service wrote. A database switched back to deleting them has its relay
 * delete those already published, in bounded batches (OutboxRelay's deletePublished).
 */
export const KEEP_PUBLISHED = "ttip.outbox_keep_published";

/**
 * The relay's last statement: deletes the rows the bus took (`$1`, their seqs), or marks them
 * published where the database keeps them (KEEP_PUBLISHED). Its transaction commits without waiting
 * for the WAL to reach the disk (synchronous_commit off for this transaction only, set by the
 * statement itself, not by one more): a crash can lose that commit, and then the rows are published
 * again under the same ids, exactly as after a crash between publish and delete, which the bus's
 * deduplication by id and the consumers' inboxes absorb. Every state change and event stays durable.
 */
export function publishedRowsStatement(schema: string, keep: boolean): string {
  const s = ident(schema);
  const asyncCommit = "(SELECT set_config('synchronous_commit', 'off', true)) AS async_commit";
  // opaqueArray: a plan sized for the batch would be made anew on every call.
  const seqs = `seq = ANY(${opaqueArray(1, "bigint")})`;
  return keep
    ? `UPDATE ${s}.outbox SET published_at = now(), attempts = attempts + 1 FROM ${asyncCommit} WHERE ${seqs}`
    : `DELETE FROM ${s}.outbox USING ${asyncCommit} WHERE ${seqs}`;
}

/**
 * The index of unpublished rows (runtime migration 0001), kept only where published rows are kept
 * (0006): where they are deleted, it would hold what the primary key holds. 0006's comment says
 * every row is then unpublished; not in a database that kept published rows and was switched to
 * deleting them before it was migrated: those rows stayed, and without the index each claim read
 * past them, until its relay deleted them (deletePublished).
 */
const UNPUBLISHED_INDEX = "outbox_unpublished";

/**
 * Rows a relay deletes per statement of published rows left from when the database kept them: each
 * batch a short transaction of its own (~54 bytes of WAL a row), so neither a lock nor a snapshot
 * is held long, and a stop waits for one batch at most.
 */
const PUBLISHED_DELETE_BATCH = 1_000;

/** The advisory lock (by name, hashtext) a relay pass holds to its transaction's end: one pass per service at a time. */
export const relayLockName = (schema: string) => `ttip.outbox_relay.${schema}`;

/**
 * Moves committed outbox rows to the bus in order, deleting each once the bus
 * acknowledged it (see KEEP_PUBLISHED). A crash between publish and delete
 * publishes the row again with the same id, which the bus drops as a
 * duplicate. One pass per service at a time, whatever its replicas: a pass's claim
 * takes the service's advisory lock (relayLockName, pg_try_advisory_xact_lock) and
 * reads its rows only if it got it; the other replicas' passes find nothing until
 * it commits. The claim locks no row: FOR UPDATE (SKIP LOCKED) wrote a WAL record
 * for each row it locked, one more per event in every service, to keep apart passes
 * the advisory lock now keeps apart. A claim whose snapshot was taken just before
 * another replica's pass committed, and that gets the lock just after, reads rows
 * that pass has just published: it publishes them again under the same ids, which
 * the bus drops as duplicates (and the consumers' inboxes would skip), as after a
 * crash between publish and delete.
 */
export class OutboxRelay {
  private timer: NodeJS.Timeout | undefined;
  /** When the pending timer fires (performance.now()). */
  private timerAt = Infinity;
  private running: Promise<unknown> | undefined;
  private passing = false;
  private stopped = false;
  /** Rows were committed since the running pass began (or since the last one). */
  private woken = false;
  private lastPassEndedAt = -Infinity;
  private idleWaitMs: number;
  private unsubscribe: (() => void) | undefined;
  /** The last pass found nothing: the next one first asks, in one statement, whether there is anything. */
  private idle = false;
  /** KEEP_PUBLISHED, read once. */
  private keepPublished: boolean | undefined;
  /** This relay's series of the publish lag histogram, looked up at its first publication. */
  private lag: DurationSeries | undefined;
  /**
   * Upkeep the first pass found due, while it runs: the making of the unpublished rows' index (a
   * database switched to keeping them: indexUnpublished), or the deleting of rows published while
   * it kept them (one switched back: deletePublished).
   */
  private upkeep: Promise<void> | undefined;
  /** The backend of the upkeep's session while it builds an index: stop() cancels the build. */
  private buildingPid: number | undefined;
  /** stop()'s cancel of that build: its session, which the cancel may reach late, then ends (not used again). */
  private cancelling: Promise<unknown> | undefined;
  /**
   * The relay's statements, their texts made once: a text made anew for every pass is a new
   * string, which the lookup of its prepared statement's name copies into one piece and hashes.
   */
  private readonly statements: { anyLeft: string; claim: string; failed: string; published: (keep: boolean) => string };

  constructor(private readonly options: OutboxRelayOptions) {
    this.idleWaitMs = options.pollIntervalMs ?? 200;
    const s = ident(options.schema);
    const published = [publishedRowsStatement(options.schema, false), publishedRowsStatement(options.schema, true)];
    this.statements = {
      anyLeft: `SELECT 1 FROM ${s}.outbox WHERE published_at IS NULL LIMIT $1`,
      // The lock's sub-select is evaluated once, before any row is read (a one-time filter).
      claim: `SELECT seq, event_id, subject, payload, traceparent, EXTRACT(EPOCH FROM now() - created_at)::float8 AS age FROM ${s}.outbox
          WHERE published_at IS NULL AND (SELECT pg_try_advisory_xact_lock(hashtext($2))) ORDER BY seq LIMIT $1`,
      failed: `UPDATE ${s}.outbox SET attempts = attempts + 1, last_error = $2 WHERE seq = $1`,
      published: (keep) => published[keep ? 1 : 0],
    };
  }

  start(): void {
    this.unsubscribe = onOutboxCommitted((schema) => {
      if (schema === this.options.schema) this.wake();
    });
    this.schedule(0);
  }

  /** Rows were committed: pass as soon as minPassIntervalMs allows (a pass running now is followed by another). */
  private wake(): void {
    if (this.stopped) return;
    this.woken = true;
    if (this.passing) return;
    this.schedule(this.lastPassEndedAt + (this.options.minPassIntervalMs ?? 200) - performance.now());
  }

  /** The next pass in `ms`, unless one is due sooner. */
  private schedule(ms: number): void {
    const at = performance.now() + Math.max(0, ms);
    if (this.stopped || this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => void (this.running = this.pass()), Math.max(0, ms));
  }

  private async pass(): Promise<void> {
    this.timer = undefined;
    this.timerAt = Infinity;
    this.passing = true;
    const batchSize = this.options.batchSize ?? 100;
    const base = this.options.pollIntervalMs ?? 200;
    let busy = true;
    try {
      // Told of new rows: no need to ask first whether there are any.
      if (this.woken) this.idle = false;
      this.woken = false;
      let batch: { claimed: number; published: number };
      do batch = await this.relayPass();
      while (batch.published === batchSize && !this.stopped);
      busy = batch.claimed > 0;
    } catch (err) {
      this.options.logger.warn({ err, schema: this.options.schema }, "outbox relay failed; will retry");
    } finally {
      this.passing = false;
      this.lastPassEndedAt = performance.now();
    }
    this.idleWaitMs = busy ? base : Math.min(this.idleWaitMs * 2, Math.max(base, this.options.maxPollIntervalMs ?? 2_000));
    if (this.woken) this.wake();
    else this.schedule(this.idleWaitMs);
  }

  /** Publishes one batch; returns how many rows were published. */
  async flush(): Promise<number> {
    return (await this.relayPass()).published;
  }

  /** One batch: how many rows it claimed and how many the bus took. */
  private async relayPass(): Promise<{ claimed: number; published: number }> {
    // An idle service's poll costs one statement instead of BEGIN, SELECT and COMMIT (prepared: its limit a parameter).
    if (this.idle && !(await this.options.pool.query(this.statements.anyLeft, [1])).rowCount) return { claimed: 0, published: 0 };
    const batch = await this.relayBatch();
    this.idle = batch.claimed === 0;
    return batch;
  }

  private async relayBatch(): Promise<{ claimed: number; published: number }> {
    const { pool, bus } = this.options;
    const limit = Math.trunc(this.options.batchSize ?? 100);
    // Two round trips per batch: BEGIN with the claim, the mark with COMMIT; both prepared, their
    // texts fixed (the batch's size and seqs are parameters), so PostgreSQL plans each once per connection.
    const claim = { text: this.statements.claim, values: [limit, relayLockName(this.options.schema)] };
    return withTransactionBracketed(pool, claim, async (tx, claimed) => {
      const rows = claimed.rows as { seq: bigint; event_id: string; subject: string; payload: Buffer; age: number; traceparent: string | null }[];
      const published: bigint[] = [];
      // Sent together and acknowledged together (one connection keeps their order), instead of
      // a round trip each. Rows after a failure that did get stored are sent again next time
      // under the same ids, which the bus drops as duplicates.
      // An event written outside any trace (a background job's) starts one here.
      // The payload as pg read it (a Buffer is a Uint8Array): the bus copies what it keeps.
      const outcomes = await Promise.allSettled(rows.map((row) => bus.publish({ id: row.event_id, subject: row.subject, data: row.payload, traceparent: validTraceparent(row.traceparent) ?? producerTraceparent(row.subject) })));
      for (const [i, outcome] of outcomes.entries()) {
        if (outcome.status === "rejected") {
          // Keep order: stop at the first failure and retry from here next time.
          const err = outcome.reason as Error;
          await tx.query(this.statements.failed, [rows[i].seq, String(err?.message ?? err).slice(0, 500)]);
          break;
        }
        published.push(BigInt(rows[i].seq));
      }
      if (!published.length) return { result: { claimed: rows.length, published: 0 } };
      // Its series looked up once per relay: no label hash per event (Metrics.histogramSeries).
      this.lag ??= this.options.metrics?.histogramSeries(
        "ttip_outbox_publish_lag_seconds",
        "From an event's commit in the outbox to its publication on the bus.",
        [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
        { service: this.options.schema },
      );
      for (let i = 0; i < published.length; i++) this.lag?.observe(rows[i].age);
      if (this.keepPublished === undefined) {
        // Valid, not only present: an interrupted concurrent build (a replica killed while it waited)
        // leaves the index invalid, which no plan reads; taken for made, it would never be made again.
        // Deleting: are rows published while the database kept them still there (the first row
        // found ends the scan; such rows are the table's oldest)?
        const { keep, indexed, leftPublished } = (await tx.query<{ keep: boolean; indexed: boolean; leftPublished: boolean }>(
          `SELECT current_setting($1, true) = 'on' AS keep, COALESCE((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($2)), false) AS indexed,
             CASE WHEN current_setting($1, true) = 'on' THEN false ELSE EXISTS (SELECT 1 FROM ${ident(this.options.schema)}.outbox WHERE published_at IS NOT NULL) END AS "leftPublished"`,
          [KEEP_PUBLISHED, `${ident(this.options.schema)}.${UNPUBLISHED_INDEX}`],
        )).rows[0];
        this.keepPublished = keep === true;
        const due = this.keepPublished ? !indexed && (() => this.indexUnpublished()) : leftPublished && (() => this.deletePublished());
        if (due) this.upkeep = due().finally(() => (this.upkeep = undefined));
      }
      return {
        closing: { text: this.statements.published(this.keepPublished), values: [published] },
        result: { claimed: rows.length, published: published.length },
      };
    });
  }

  /**
   * Makes the index of unpublished rows, which a database that deleted its published rows when it
   * was migrated does without (runtime migration 0006), now that it keeps them: without it each
   * claim would read past every row ever published. Made concurrently (writers go on), outside the
   * relay's passes; the table is small then (it held no published rows). Not made, it is logged and
   * the relay goes on, slower as the table grows.
   */
  private async indexUnpublished(): Promise<void> {
    const { pool, schema, logger } = this.options;
    const index = `${ident(schema)}.${UNPUBLISHED_INDEX}`;
    logger.warn({ schema }, "the outbox keeps published rows but has no valid index of unpublished ones: making it");
    const client = await pool.connect();
    let failed: unknown;
    /** A stop's cancel was asked for this session: it ends, not back to the pool. */
    let cancelled = false;
    try {
      // One replica at a time (a session lock; the others skip): the invalid index dropped below may
      // otherwise be another replica's build in progress, which is invalid until it ends.
      const lock = `ttip.outbox_unpublished_index.${schema}`;
      const { got, pid } = (await client.query<{ got: boolean; pid: number }>("SELECT pg_try_advisory_lock(hashtext($1)) AS got, pg_backend_pid() AS pid", [lock])).rows[0];
      if (!got) return;
      try {
        const { rows } = await client.query<{ valid: boolean | null }>("SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)) AS valid", [index]);
        if (rows[0].valid === true || this.stopped) return;
        // A concurrent build waits for every older transaction to end: a stop cancels it (stop()).
        this.buildingPid = pid;
        // An interrupted build's invalid index: IF NOT EXISTS would keep it as it is.
        if (rows[0].valid === false) await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`);
        // A stop's cancel that came between the two statements found none running (PostgreSQL drops it):
        // the build would run whole. The next start makes the index. Checked in the same turn as the
        // create is sent, so a stop after this cancels the create itself.
        if (this.stopped) return;
        await client.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${UNPUBLISHED_INDEX} ON ${ident(schema)}.outbox (seq) WHERE published_at IS NULL`);
      } finally {
        this.buildingPid = undefined;
        // A stop that read the pid before this: its cancel, sent late, would cancel whatever the
        // session ran next (another caller's statement, once released). The session ends instead of
        // going back (its end lets the lock go): waiting here for the cancel would wait for a
        // connection this one holds when the pool has no other (embedded mode's pool of one).
        cancelled = this.cancelling !== undefined;
        if (!cancelled) await client.query("SELECT pg_advisory_unlock(hashtext($1))", [lock]);
      }
    } catch (err) {
      failed = err;
      if (this.stopped) logger.warn({ err, schema }, "the outbox's index of unpublished rows was not finished before the relay stopped: its next start makes it");
      else logger.error({ err, schema }, "making the outbox's index of unpublished rows failed; the relay's claims read past the published rows");
    } finally {
      // A session that failed part way may hold the lock still: not handed to anyone else.
      client.release(failed instanceof Error ? failed : cancelled);
    }
  }

  /**
   * Deletes the rows published while the database kept them, now that it deletes them (KEEP_PUBLISHED
   * switched off): the relay deletes only what it publishes, so these would stay forever, and where
   * migration 0006 dropped the index of unpublished rows every claim reads past them. In batches of
   * PUBLISHED_DELETE_BATCH in seq order, beside the relay's passes (it claims only unpublished rows);
   * a stop ends it after the batch under way. Replicas doing it at once delete each row once.
   */
  private async deletePublished(): Promise<void> {
    const { pool, schema, logger } = this.options;
    const s = ident(schema);
    // From past the last batch's rows on (keyset), not from the start again past their dead entries.
    // Ends at a batch that found fewer rows, not one that deleted fewer: another replica's delete of
    // some of them (waited for, then skipped) shortens a batch with more rows after it.
    const batch = `WITH found AS (SELECT seq FROM ${s}.outbox WHERE seq > $1 AND published_at IS NOT NULL ORDER BY seq LIMIT $2),
        gone AS (DELETE FROM ${s}.outbox WHERE seq IN (SELECT seq FROM found) RETURNING seq)
      SELECT (SELECT count(*)::int FROM found) AS n, (SELECT max(seq) FROM found) AS last, (SELECT count(*)::int FROM gone) AS gone`;
    logger.warn({ schema }, "the outbox holds rows published while the database kept them: deleting them");
    let after: unknown = 0;
    let deleted = 0;
    try {
      while (!this.stopped) {
        const { n, last, gone } = (await pool.query<{ n: number; last: unknown; gone: number }>(batch, [after, PUBLISHED_DELETE_BATCH])).rows[0];
        deleted += gone;
        if (n < PUBLISHED_DELETE_BATCH || last === null) break;
        after = last;
      }
      logger.info({ schema, deleted, stopped: this.stopped }, "published rows kept from before deleted");
    } catch (err) {
      logger.error({ err, schema, deleted }, "deleting the outbox's published rows failed; the next start goes on");
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    clearTimeout(this.timer);
    await this.running;
    // A concurrent index build may wait long for older transactions: cancelled, it leaves an invalid
    // index, which the next start drops and makes again. A deleting ends after its batch.
    const building = this.buildingPid;
    if (building !== undefined) this.cancelling = this.options.pool.query("SELECT pg_cancel_backend($1)", [building]).catch(() => undefined);
    await this.cancelling;
    await this.upkeep;
  }
}

export interface ConsumeOptions {
  bus: EventBus;
  pool: Pool;
  /** The consuming service's schema, which holds its inbox. */
  schema: string;
  /** Durable consumer name, also the inbox's consumer key (unless inboxKey says otherwise). */
  consumer: string;
  subject: string;
  logger: Logger;
  /** Applies the event inside the transaction that records it in the inbox. */
  handle: (message: DeliveredMessage, tx: Queryable) => Promise<void>;
  /** Runs first in that transaction, before the inbox row is written (e.g. to take a lock). */
  before?: (tx: Queryable) => Promise<void>;
  /** Counts events applied and duplicates skipped, per consumer. */
  metrics?: Metrics;
}

export interface ConsumeBatchOptions<Prepared = undefined> extends Omit<ConsumeOptions, "handle" | "before"> {
  /** At most this many events per transaction (default 200). */
  maxBatch?: number;
  /** The durable, made now, starts with the events stored from then on (SubscribeOptions.fromNow). */
  fromNow?: boolean;
  /**
   * An advisory lock (by name) each batch holds shared to its end, taken by the inbox's own
   * statement, not one of its own; whoever must see no batch land (a rebuild) takes it exclusively.
   */
  sharedLock?: string;
  /**
   * An advisory lock (by name) each batch holds exclusively to its end, taken by the inbox's own
   * statement before anything else it does: the batches of every consumer and replica naming it
   * apply one at a time (none waits on another's rows, so none deadlocks), and a holder of it (a
   * rebuild) sees none land. Not with sharedLock. A batch's statement takes its snapshot before it
   * waits: rows committed meanwhile are not in it.
   */
  exclusiveLock?: string;
  /**
   * Runs on each batch as the bus delivers it, before its transaction begins: what a batch needs
   * from another service, asked once per batch, while no transaction waits on the call. Its answer
   * is handleBatch's `prepared` (for each part, when a failing batch is split). Throwing has the
   * whole batch delivered again later, nothing written. Gets the events as delivered that can
   * change state (changesState), those the inbox already holds included; none, it is not called.
   */
  beforeTransaction?: (messages: DeliveredMessage[]) => Promise<Prepared>;
  /**
   * How long a batch whose beforeTransaction failed again waits before it goes back (ASK_RETRY_WAIT_MS
   * by default): nothing after a first failure, then `firstMs` doubling to `maxMs` while it keeps failing.
   */
  askRetryWaitMs?: { firstMs: number; maxMs: number };
  /**
   * Applies the events not applied before (duplicates removed), inside the transaction that records
   * them in the inbox; `prepared` is what beforeTransaction answered for the batch (undefined without it).
   */
  handleBatch?: (messages: DeliveredMessage[], tx: Queryable, prepared: Prepared) => Promise<void>;
  /**
   * Runs once a batch has committed (handleBatch's transaction or effectCte's statement), with the
   * events it applied: what must count
   * only what committed (metrics, signals to watchers). Counted in handleBatch, a batch rolled back
   * and applied again (a deadlock, a failed commit, a split around an event that fails) counts twice.
   */
  afterCommit?: (messages: DeliveredMessage[]) => void;
  /**
   * For an effect that is one statement: it goes into the inbox's own statement as CTEs, and the
   * batch is one statement without BEGIN/COMMIT. `fresh (event_id)` holds the ids that statement
   * recorded, the only ones to apply; `messages` has no id twice. Parameters are numbered from
   * `first` on. Undefined: nothing to apply but the inbox. Null: not this batch (say, it needs
   * a table made first): handleBatch applies it, in a transaction, as without effectCte.
   */
  effectCte?: (messages: DeliveredMessage[], first: number) => { sql: string; values: unknown[] } | undefined | null;
  /**
   * The effect (effectCte, without handleBatch) is idempotent by a unique key of its own (an insert
   * ON CONFLICT DO NOTHING on what the event reports, say a tip's id): applied again, by a redelivery
   * or an event republished under a new id, it changes nothing. Then the inbox would only repeat that
   * key: its events get no inbox row (a heap row and two index entries fewer per event), and
   * `fresh (event_id)` holds every id of the batch. The duplicate count and afterCommit then take
   * every event of a committed batch as applied.
   */
  idempotentEffect?: boolean;
  /**
   * Whether an event can change anything here. One that cannot (false) is acknowledged without a
   * transaction or an inbox row: applied again, it changes nothing either. Undefined: every event can.
   * One it throws on is taken as one that can: it fails in the transaction, alone, not its batch.
   */
  changesState?: (message: DeliveredMessage) => boolean;
  /**
   * The inbox's key of each event (default: the consumer's name). A consumer that took over other
   * durables (`replaces`) keys each event as the one that read it before did, so what that one
   * applied is found, also while an older replica still applies events under it.
   */
  inboxKey?: (message: DeliveredMessage) => string;
  /** Durables this consumer takes over (the bus's BatchSubscribeOptions.replaces). */
  replaces?: readonly string[];
  /**
   * A failure of handleBatch's that the batch run again once settles, as the inbox's own lost race
   * (inboxRace): the effect's insert lost on a unique key to a transaction that has committed
   * since, which the next run's snapshot sees. Without it, such a batch is split and its last
   * event waits for the bus's redelivery.
   */
  raced?: (err: unknown) => boolean;
}

/**
 * The inbox's insert skips the events it holds by NOT EXISTS, not ON CONFLICT DO NOTHING: the
 * latter writes each row twice in the WAL (the speculative insert and its confirmation), one
 * record per event in every consumer. Exactly once still rests on the inbox's primary key: an
 * event that another transaction records at the same time (a redelivery to another replica) is
 * not in the statement's snapshot, so its insert waits on that transaction's key; if it commits,
 * this statement fails on the key (unique_violation) and applies nothing. Its transaction is then
 * run again once, and the new snapshot finds the row: skipped as a duplicate. If it
 * rolls back, the insert goes ahead. Nothing is applied twice either way. This answers whether
 * `err` is such a lost race.
 */
export function inboxRace(err: unknown, schema: string): boolean {
  const e = err as { code?: unknown; schema?: unknown; table?: unknown; constraint?: unknown } | null;
  return e?.code === "23505" && e.schema === schema && e.table === "inbox" && e.constraint === "inbox_pkey";
}

/** The CTE `locked` taking the batch's advisory lock (sharedLock or exclusiveLock), its name pushed to `values`; none, undefined. */
function lockCte<P>(options: ConsumeBatchOptions<P>, values: unknown[]): string | undefined {
  const name = options.exclusiveLock ?? options.sharedLock;
  if (name === undefined) return undefined;
  values.push(name);
  return `locked AS (SELECT ${options.exclusiveLock === undefined ? "pg_advisory_xact_lock_shared" : "pg_advisory_xact_lock"}(hashtext($${values.length})))`;
}

/**
 * The statement that records `messages` in the inbox (and, with `effect`, applies them),
 * answering the ids it recorded: those not applied before. Null: `effect` declined the batch.
 */
function inboxStatement<P>(s: string, options: ConsumeBatchOptions<P>, messages: DeliveredMessage[], effect?: ConsumeBatchOptions<P>["effectCte"]): { text: string; values: unknown[] } | null {
  if (options.idempotentEffect) return effectStatement(options, messages, effect!);
  const { inboxKey } = options;
  const values: unknown[] = [inboxKey ? messages.map(inboxKey) : options.consumer, messages.map((m) => m.id), messages.map((m) => m.subject)];
  const ctes: string[] = [];
  const locked = lockCte(options, values);
  if (locked) ctes.push(locked);
  const rows = inboxKey ? `${opaqueUnnest(["text", "uuid", "text"])} AS e(consumer, id, subject)` : `${opaqueUnnest(["uuid", "text"], 2)} AS e(id, subject)`;
  const consumer = inboxKey ? "e.consumer" : "$1";
  // Not ON CONFLICT DO NOTHING, which writes each row twice (a speculative insert, then its
  // confirmation): see inboxRace.
  ctes.push(`fresh AS (INSERT INTO ${s}.inbox (consumer, event_id, subject)
      SELECT ${consumer}, e.id, e.subject FROM ${rows}${locked ? ", locked" : ""}
       WHERE NOT EXISTS (SELECT 1 FROM ${s}.inbox i WHERE i.consumer = ${consumer} AND i.event_id = e.id)
      RETURNING event_id)`);
  const applied = effect?.(messages, values.length + 1);
  if (applied === null) return null;
  if (applied) {
    ctes.push(applied.sql);
    values.push(...applied.values);
  }
  return { text: `WITH ${ctes.join(",\n     ")} SELECT event_id FROM fresh`, values };
}

/**
 * The statement of an idempotentEffect consumer: the effect alone, `fresh` every id of the batch
 * (no inbox row), under the batch's lock when there is one. Null: the effect has nothing to write.
 */
function effectStatement<P>(options: ConsumeBatchOptions<P>, messages: DeliveredMessage[], effect: NonNullable<ConsumeBatchOptions<P>["effectCte"]>): { text: string; values: unknown[] } | null {
  const values: unknown[] = [messages.map((m) => m.id)];
  const ctes: string[] = [];
  const locked = lockCte(options, values);
  if (locked) ctes.push(locked);
  ctes.push(`fresh AS (SELECT e.id AS event_id FROM ${opaqueUnnest(["uuid"])} AS e(id)${locked ? ", locked" : ""})`);
  const applied = effect(messages, values.length + 1);
  if (applied === null) throw new Error(`${options.consumer}: an idempotentEffect consumer's effectCte declined a batch (null)`);
  if (!applied) return null;
  return { text: `WITH ${[...ctes, applied.sql].join(",\n     ")} SELECT event_id FROM fresh`, values: [...values, ...applied.values] };
}

/**
 * consumeEvents for many events per transaction: what has arrived is recorded
 * in the inbox in one statement and applied together, so a consumer whose
 * events touch the same rows (counters) writes them once per batch instead of
 * once per event. Without batch support in the bus, batches of one.
 */
export async function consumeEventBatches<Prepared = undefined>(options: ConsumeBatchOptions<Prepared>) {
  if (!options.handleBatch && !options.effectCte) throw new Error(`${options.consumer}: give handleBatch or effectCte`);
  if (options.beforeTransaction && (!options.handleBatch || options.effectCte)) throw new Error(`${options.consumer}: beforeTransaction answers to handleBatch alone`);
  if (options.idempotentEffect && (!options.effectCte || options.handleBatch)) throw new Error(`${options.consumer}: idempotentEffect takes effectCte alone`);
  if (options.sharedLock !== undefined && options.exclusiveLock !== undefined) throw new Error(`${options.consumer}: give sharedLock or exclusiveLock, not both`);
  const s = ident(options.schema);
  // The first copy of each id (a batch may hold the same event twice).
  const unique = (messages: DeliveredMessage[]) => {
    const seen = new Set<string>();
    return messages.filter((m) => !seen.has(m.id.toLowerCase()) && seen.add(m.id.toLowerCase()));
  };
  // The messages of `batch` whose ids a statement answered (those it recorded).
  const recorded = (batch: DeliveredMessage[], rows: { event_id: string }[]) => {
    const inserted = new Set(rows.map((r) => r.event_id));
    return batch.filter((m) => inserted.has(m.id.toLowerCase()));
  };
  const recordAndApplyOnce = async (messages: DeliveredMessage[], prepared: Prepared): Promise<number> => {
    const batch = unique(messages);
    const oneStatement = options.effectCte ? inboxStatement(s, options, batch, options.effectCte) : null;
    // An idempotentEffect with nothing to write has no inbox row to record either: applied as it is.
    const nothingToWrite = options.idempotentEffect && !oneStatement;
    if (!oneStatement && !options.handleBatch && !nothingToWrite) throw new Error(`${options.consumer}: effectCte declined a batch (null) and there is no handleBatch to apply it`);
    // Each id once: NOT EXISTS does not see a row the same statement inserts (inboxRace).
    const claim = oneStatement || nothingToWrite ? null : inboxStatement(s, options, batch)!;
    const applied = nothingToWrite
      ? batch
      : oneStatement
      ? recorded(batch, (await options.pool.query<{ event_id: string }>(oneStatement.text, oneStatement.values)).rows)
      : await withTransaction(options.pool, async (tx) => {
          const todo = recorded(batch, (await tx.query<{ event_id: string }>(claim!.text, claim!.values)).rows);
          if (todo.length) await options.handleBatch!(todo, tx, prepared);
          return todo;
        }, claim!.text);
    // Committed: a failure here must not have the batch tried again (its events are applied).
    if (applied.length && options.afterCommit) {
      try {
        options.afterCommit(applied);
      } catch (err) {
        options.logger.error({ err, consumer: options.consumer, events: applied.length }, "afterCommit failed after the batch committed");
      }
    }
    return applied.length;
  };
  // Lost a race for an event's inbox row (or the effect's key: raced): that one committed, so once
  // more sees it (inboxRace). Once only: a second loss goes to applyOrSplit like any failure.
  const recordAndApply = (messages: DeliveredMessage[], prepared: Prepared): Promise<number> =>
    recordAndApplyOnce(messages, prepared).catch((err: unknown) => {
      if (!inboxRace(err, options.schema) && !options.raced?.(err)) throw err;
      return recordAndApplyOnce(messages, prepared);
    });
  const apply = async (messages: DeliveredMessage[], prepared: Prepared) => {
    const fresh = await inConsumerSpan(`consume ${options.consumer}`, messages.map((m) => m.traceparent), () => recordAndApply(messages, prepared));
    const counter = options.metrics?.counter("ttip_inbox_events_total", "Events a consumer received: applied, or skipped as a duplicate by its inbox.", ["consumer", "outcome"]);
    counter?.inc({ consumer: options.consumer, outcome: "applied" }, fresh);
    if (messages.length > fresh) counter?.inc({ consumer: options.consumer, outcome: "duplicate" }, messages.length - fresh);
  };
  // A batch that fails is tried again at once in halves, down to single events,
  // so one event that cannot be applied holds back no other: the rest commit
  // (their ids go into `applied`). Answers the first failure, if any.
  const applyOrSplit = async (messages: DeliveredMessage[], prepared: Prepared, applied: Set<string>): Promise<{ err: unknown } | undefined> => {
    try {
      await apply(messages, prepared);
      for (const m of messages) applied.add(m.id.toLowerCase());
      return undefined;
    } catch (err) {
      if (messages.length === 1) return { err };
      const half = Math.ceil(messages.length / 2);
      let failed: { err: unknown } | undefined;
      for (const part of [messages.slice(0, half), messages.slice(half)]) {
        const outcome = await applyOrSplit(part, prepared, applied);
        failed ??= outcome;
      }
      return failed;
    }
  };
  // Only the events not applied come again: the bus acknowledges the others (those that change nothing count as applied).
  const judged = options.changesState;
  // An event changesState cannot judge (it throws: a body that does not decode, say) may change
  // state: it goes to the transaction with the rest, where it fails alone (applyOrSplit), instead
  // of failing its whole batch here, again with each batch it comes back in.
  const changesState = judged ? (m: DeliveredMessage) => mayChange(judged, m) : () => true;
  // A peer that cannot answer is asked less and less often, not once per redelivery (a second at most) for as long as it is down.
  const stopping = new AbortController();
  const askWait = options.askRetryWaitMs ?? ASK_RETRY_WAIT_MS;
  let askFailures = 0;
  const prepare = async (messages: DeliveredMessage[]): Promise<Prepared> => {
    if (!options.beforeTransaction) return undefined as Prepared;
    try {
      const prepared = await options.beforeTransaction(messages);
      askFailures = 0;
      return prepared;
    } catch (err) {
      askFailures++;
      const waitMs = askFailures < 2 ? 0 : Math.min(askWait.firstMs * 2 ** Math.min(askFailures - 2, 30), askWait.maxMs);
      if (waitMs > 0) await sleep(waitMs, undefined, { signal: stopping.signal }).catch(() => undefined);
      throw err;
    }
  };
  const applyBatch = async (delivered: DeliveredMessage[]): Promise<void> => {
    const applied = new Set<string>();
    const messages: DeliveredMessage[] = [];
    for (const m of delivered) {
      if (changesState(m)) messages.push(m);
      else applied.add(m.id.toLowerCase());
    }
    if (!messages.length) return;
    const prepared = await prepare(messages);
    const failed = await applyOrSplit(messages, prepared, applied);
    if (failed) throw applied.size ? new BatchPartlyApplied(applied, failed.err) : failed.err;
  };
  const { bus } = options;
  const subscription = bus.subscribeBatches
    ? await bus.subscribeBatches({ durable: options.consumer, subject: options.subject, replaces: options.replaces, fromNow: options.fromNow, maxBatch: options.maxBatch ?? 200, handler: applyBatch, metrics: options.metrics })
    : await bus.subscribe({ durable: options.consumer, subject: options.subject, fromNow: options.fromNow, metrics: options.metrics, handler: async (m) => (changesState(m) ? apply([m], await prepare([m])) : undefined) });
  return {
    stop: async () => {
      // A batch waiting to go back goes back now: stopping does not wait out its wait.
      stopping.abort();
      await subscription.stop();
    },
  };
}

/**
 * A failing beforeTransaction's waits: under JetStream's ack wait (30 s) even twice over, so a batch
 * waiting with the next one queued behind it is not redelivered by the server meanwhile.
 */
export const ASK_RETRY_WAIT_MS = { firstMs: 1_000, maxMs: 10_000 };

function mayChange(changesState: (message: DeliveredMessage) => boolean, message: DeliveredMessage): boolean {
  try {
    return changesState(message);
  } catch {
    return true;
  }
}

/**
 * Idempotent consumption: the inbox row and the handler's writes commit
 * together, so an event delivered again (a redelivery, or a duplicate the bus
 * let through) finds its row and changes nothing.
 */
export async function consumeEvents(options: ConsumeOptions) {
  const s = ident(options.schema);
  return options.bus.subscribe({
    durable: options.consumer,
    subject: options.subject,
    metrics: options.metrics,
    handler: async (message) => {
      const applyOnce = () => withTransaction(options.pool, async (tx) => {
        await options.before?.(tx);
        const inserted = await tx.query(
          `INSERT INTO ${s}.inbox (consumer, event_id, subject) SELECT $1, $2, $3
            WHERE NOT EXISTS (SELECT 1 FROM ${s}.inbox WHERE consumer = $1 AND event_id = $2)`,
          [options.consumer, message.id, message.subject],
        );
        if (inserted.rowCount === 0) return false;
        await options.handle(message, tx);
        return true;
      });
      // Lost the race for its inbox row (inboxRace): the winner committed, so once more finds the row.
      const applied = await inConsumerSpan(`consume ${options.consumer}`, [message.traceparent], () =>
        applyOnce().catch((err: unknown) => {
          if (!inboxRace(err, options.schema)) throw err;
          return applyOnce();
        }),
      );
      options.metrics
        ?.counter("ttip_inbox_events_total", "Events a consumer received: applied, or skipped as a duplicate by its inbox.", ["consumer", "outcome"])
        .inc({ consumer: options.consumer, outcome: applied ? "applied" : "duplicate" });
      if (!applied) options.logger.debug({ eventId: message.id, consumer: options.consumer }, "duplicate event skipped");
    },
  });
}
