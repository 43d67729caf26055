import type { EventBus } from "./bus.js";
import { ident, type Pool } from "./db.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import { inBatches, repeating } from "./repeating.js";

/** Where and how InboxRetention sweeps. */
export interface InboxRetentionOptions {
  pool: Pool;
  /** The service's schema, which holds its inbox. */
  schema: string;
  bus: EventBus;
  logger: Logger;
  /** Kept beyond the stream's max age (default 24 h). */
  marginMs?: number;
  /** Rows per statement (default 1 000): each is a short transaction that holds few locks. */
  batchSize?: number;
  /** Statements per sweep at most (default 100); what is left goes at the next sweep. */
  maxBatchesPerSweep?: number;
  /** Between sweeps (default 15 min, ±10 %); the first comes one interval after start. */
  intervalMs?: number;
  metrics?: Metrics;
}

const HOUR_MS = 3_600_000;

/**
 * When an inbox row may go. A row exists so that an event delivered again changes nothing; it may
 * go once its event can no longer be delivered again:
 *
 * - From the stream: a message is stored before it is delivered, and its row is written when it
 *   is applied (processed_at, PostgreSQL's now()), so stored-at <= processed_at. A row older than
 *   the stream's max age therefore belongs to a message the stream has already expired: neither
 *   a redelivery nor a new durable consumer (it reads from the start of the stream) nor a rebuild
 *   (readStored) can hand it over again.
 * - From an outbox: the relay publishes a row again, under the same id, when it published it but
 *   lost the delete (a crash between the two, or the delete's asynchronous commit lost with
 *   PostgreSQL). Within the stream's duplicate window (10 min) the stream drops it; later it is
 *   stored anew and only the inbox stops it. The relay's next pass does that (any replica's within
 *   seconds, else the producer's restart), so the event comes again no later than the producer's
 *   relay was down after it first published it.
 *
 * So the window is the stream's max age plus a margin (default 24 h) that covers the clocks of
 * NATS and PostgreSQL disagreeing, deliveries in flight (ack wait), and a producer whose relay was
 * down that long; a relay down for longer than the whole window could have an event applied twice.
 * The chart sets 168 h (stream.maxAgeHours), read from the stream itself at each sweep. A bus with
 * no max age (a stream without max_age: NATS's default, and what the app creates with
 * NATS_STREAM_MAX_AGE_HOURS 0; the embedded platform's in-process bus) may deliver a message again
 * at any time: then nothing is deleted.
 *
 * Deletes those rows in bounded batches. Replicas sweep together safely: each claims its rows
 * with SKIP LOCKED.
 */
export class InboxRetention {
  private stopRepeating: (() => Promise<void>) | undefined;
  private stopped = false;

  constructor(private readonly options: InboxRetentionOptions) {}

  start(): void {
    this.stopRepeating = repeating(() => this.sweep(), {
      everyMs: this.options.intervalMs ?? 15 * 60_000, jitter: 0.1, logger: this.options.logger.child({ schema: this.options.schema }), failed: "inbox retention sweep failed; will retry",
    });
  }

  /** One sweep: deletes rows older than the window, batch by batch; answers how many went. */
  async sweep(): Promise<number> {
    const maxAgeMs = await this.options.bus.storedMaxAgeMs?.();
    // No max age: a message may come again whenever, so every row is kept.
    if (maxAgeMs === undefined || !(maxAgeMs > 0)) return 0;
    const windowSeconds = (maxAgeMs + (this.options.marginMs ?? 24 * HOUR_MS)) / 1000;
    const limits = { size: Math.trunc(this.options.batchSize ?? 1_000), maxBatches: this.options.maxBatchesPerSweep ?? 100 };
    const s = ident(this.options.schema);
    // By the index on processed_at; SKIP LOCKED leaves rows another replica's sweep holds.
    const text = `DELETE FROM ${s}.inbox WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM ${s}.inbox WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2 FOR UPDATE SKIP LOCKED))`;
    const deleted = await inBatches(limits, async (size) => (await this.options.pool.query(text, [windowSeconds, size])).rowCount ?? 0, () => this.stopped);
    if (deleted) {
      this.options.metrics?.counter("ttip_inbox_pruned_total", "Inbox rows deleted once their events could no longer be delivered again.", ["service"]).inc({ service: this.options.schema }, deleted);
      this.options.logger.info({ schema: this.options.schema, deleted, windowHours: windowSeconds / 3600 }, "inbox rows past the stream's max age deleted");
    }
    return deleted;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.stopRepeating?.();
  }
}
