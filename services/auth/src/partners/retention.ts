// The delivery log is kept for a retention period, then deleted in bounded
// batches: every event a partner key is told about is a row (and each HTTP
// attempt another), so without a limit the log grows with the platform's
// traffic for ever. Pending deliveries are never deleted, whatever their age.
import type { Logger, Metrics, Pool } from "@ttip/runtime";

export interface RetentionConfig {
  /** Final deliveries (delivered or failed) whose last activity is older than this are deleted; 0 keeps them. */
  retentionDays: number;
  /** Rows per DELETE: each batch is one short transaction. */
  pruneBatch: number;
  /** Batches per pass at most; the rest waits for the next pass. */
  pruneMaxBatches: number;
  /** Between passes. */
  pruneIntervalMs: number;
}

/**
 * Deletes up to `batch` final deliveries whose last activity (created,
 * delivered, or last attempted: a claim pushes next_attempt_at) is before
 * `cutoff`, with their attempts, in one statement. Returns how many went.
 */
export async function pruneDeliveryBatch(pool: Pool, cutoff: Date, batch: number): Promise<number> {
  const { rowCount } = await pool.query(
    `WITH doomed AS (
       SELECT delivery_id FROM auth.partner_webhook_deliveries
        WHERE created_at < $1 AND status <> 'pending' AND next_attempt_at < $1 AND COALESCE(delivered_at, created_at) < $1
        ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED),
     attempts AS (DELETE FROM auth.partner_webhook_attempts a USING doomed WHERE a.delivery_id = doomed.delivery_id)
     DELETE FROM auth.partner_webhook_deliveries d USING doomed WHERE d.delivery_id = doomed.delivery_id`,
    [cutoff, batch],
  );
  return rowCount ?? 0;
}

/** One pass: batches until one comes back short or the pass's bound is reached. Returns how many went. */
export async function pruneDeliveries(pool: Pool, config: RetentionConfig, now = new Date()): Promise<number> {
  if (config.retentionDays <= 0) return 0;
  const cutoff = new Date(now.getTime() - config.retentionDays * 86_400_000);
  let deleted = 0;
  for (let i = 0; i < config.pruneMaxBatches; i++) {
    const n = await pruneDeliveryBatch(pool, cutoff, config.pruneBatch);
    deleted += n;
    if (n < config.pruneBatch) break;
  }
  return deleted;
}

/** Runs a pass now and then every interval, until stopped; a failed pass is logged and retried at the next. */
export function startRetention(o: { pool: Pool; config: RetentionConfig; logger: Logger; metrics?: Metrics }): () => Promise<void> {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const pass = async () => {
    try {
      const deleted = await pruneDeliveries(o.pool, o.config);
      o.metrics?.counter("ttip_partner_webhook_deliveries_pruned_total", "Partner webhook deliveries deleted after the retention period.").inc(deleted);
      if (deleted > 0) o.logger.info({ deleted, retentionDays: o.config.retentionDays }, "old webhook deliveries deleted");
    } catch (err) {
      o.logger.warn({ err }, "webhook delivery retention pass failed; will retry");
    }
    if (!stopped) timer = setTimeout(() => (running = pass()), o.config.pruneIntervalMs);
  };
  running = pass();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}
