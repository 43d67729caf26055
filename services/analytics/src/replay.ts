// Rebuilds the rollups from the stream, from any day on: what was counted
// from that day is removed, and every event the stream stores from then is
// applied again, once. The same events give the same figures, so a replay
// over untouched data changes nothing.
import type { EventBus, Logger, Pool, PoolClient } from "@ttip/runtime";
import { isUuid } from "@ttip/runtime";
import { consumerName, DAY_MS, dayOf, EAT_OFFSET_MS, factsOf, SUBJECTS } from "./facts.js";
import { REBUILD_LOCK } from "./ingest.js";
import { clearFrom, RollupBatch } from "./store.js";

export interface ReplayOptions {
  pool: Pool;
  bus: EventBus;
  logger: Logger;
  /** Rounded down to midnight East Africa Time (a day's rollup row is rebuilt whole). */
  from: Date;
  /**
   * Events are stored on the bus a little after they happen (the outbox relay,
   * clocks): reading starts this much earlier so none is missed. Default 15 minutes.
   */
  slackMs?: number;
  /** Events per statement batch (default 500); the replay is one transaction. */
  batchSize?: number;
}

export interface ReplayResult {
  from: Date;
  /** Messages read from the stream. */
  read: number;
  /** Events applied (happened on or after `from`, first copy of each). */
  applied: number;
}

/**
 * The stream no longer holds every event from the replay's start (it drops what is older than its
 * max age): clearing the rollups from there would lose figures nothing can rebuild.
 */
export class ReplayBeyondStreamError extends Error {
  constructor(
    readonly from: Date,
    /** The stored time of the oldest event the stream still holds. */
    readonly wholeSince: Date,
    /** The first day (midnight East Africa Time) a replay can rebuild. */
    readonly earliest: Date,
  ) {
    super(
      `the stream holds events stored from ${wholeSince.toISOString()} on (its retention dropped older ones): a replay from ` +
        `${eatDay(from)} would clear figures it cannot rebuild; the earliest day it can rebuild is ${eatDay(earliest)} (East Africa Time)`,
    );
    this.name = "ReplayBeyondStreamError";
  }
}

const eatDay = (midnight: Date) => new Date(midnight.getTime() + EAT_OFFSET_MS).toISOString().slice(0, 10);

interface Pending {
  id: string;
  subject: string;
  applied: ReturnType<typeof factsOf>;
}

/**
 * Holds the rebuild lock for the whole run: live consumers wait (their
 * events are redelivered and then found in the inbox), so no event is
 * counted by both. One transaction from the clearing to the last event:
 * readers see the figures as they were until the rebuilt ones replace them
 * whole. Committed batch by batch, a replay that stopped halfway (a killed
 * pod, a lost connection) left the figures from its day on cut short, and a
 * later one could no longer rebuild the days the stream had dropped since.
 */
export async function replay(options: ReplayOptions): Promise<ReplayResult> {
  if (!options.bus.readStored) throw new Error("this bus cannot read back stored events");
  const readStored = options.bus.readStored.bind(options.bus);
  const from = dayOf(options.from);
  const slackMs = options.slackMs ?? 15 * 60_000;
  const since = new Date(from.getTime() - slackMs);
  const batchSize = options.batchSize ?? 500;
  const client = await options.pool.connect();
  let broken: Error | undefined;
  client.on("error", (err) => (broken = err));
  try {
    await client.query("SELECT pg_advisory_lock(hashtext($1))", [REBUILD_LOCK]);
    await client.query("CREATE TEMP TABLE IF NOT EXISTS replay_seen (event_id text PRIMARY KEY)");
    await client.query("TRUNCATE replay_seen");
    await assertStreamHolds(options.bus, from, slackMs);
    const { read, applied } = await inTransaction(client, async () => {
      await clearFrom(client, from);
      let read = 0;
      let applied = 0;
      let pending: Pending[] = [];
      const flush = async () => {
        if (!pending.length) return;
        const batch = pending;
        pending = [];
        applied += await applyBatch(client, batch);
      };
      await readStored({
        subject: "ttip.>",
        since,
        handler: async (m) => {
          read++;
          if (!SUBJECTS.includes(m.subject)) return;
          const a = factsOf(m.subject, m.data);
          if (!a.at || a.at < from) return;
          // Only its figures from `from` on: the rows before it are kept, and hold the others already (a late
          // success's failure taken back at the failure's time, the day before, was taken back again).
          pending.push({ id: m.id, subject: m.subject, applied: { ...a, facts: a.facts.filter((f) => f.at >= from) } });
          if (pending.length >= batchSize) await flush();
        },
      });
      await flush();
      return { read, applied };
    });
    options.logger.info({ from, read, applied }, "analytics rollups rebuilt from the stream");
    return { from, read, applied };
  } finally {
    await client.query("SELECT pg_advisory_unlock(hashtext($1))", [REBUILD_LOCK]).catch(() => undefined);
    client.release(broken);
  }
}

/** Refuses before anything is cleared when the stream has dropped events a replay from `from` reads. */
async function assertStreamHolds(bus: EventBus, from: Date, slackMs: number): Promise<void> {
  const wholeSince = await bus.storedWholeSince?.();
  if (!wholeSince || wholeSince.getTime() <= from.getTime() - slackMs) return;
  const first = new Date(wholeSince.getTime() + slackMs);
  const day = dayOf(first);
  throw new ReplayBeyondStreamError(from, wholeSince, day.getTime() === first.getTime() ? day : new Date(day.getTime() + DAY_MS));
}

async function inTransaction<T>(client: PoolClient, fn: () => Promise<T>): Promise<T> {
  await client.query("BEGIN");
  try {
    const r = await fn();
    await client.query("COMMIT");
    return r;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

/** Applies the batch's first copies of each event and marks them in the live consumers' inbox. */
async function applyBatch(client: PoolClient, events: Pending[]): Promise<number> {
  const { rows } = await client.query<{ event_id: string }>(
    "INSERT INTO replay_seen (event_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING event_id",
    [events.map((e) => e.id)],
  );
  const fresh = new Set(rows.map((r) => r.event_id));
  const batch = new RollupBatch();
  const inbox: Pending[] = [];
  for (const e of events) {
    if (!fresh.delete(e.id)) continue;
    batch.add(e.applied);
    if (isUuid(e.id)) inbox.push(e);
  }
  await batch.write(client);
  if (inbox.length) {
    await client.query(
      `INSERT INTO analytics.inbox (consumer, event_id, subject)
       SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[]) ON CONFLICT DO NOTHING`,
      [inbox.map((e) => consumerName(e.subject)), inbox.map((e) => e.id), inbox.map((e) => e.subject)],
    );
  }
  return rows.length;
}
