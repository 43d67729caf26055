// The delivery log is kept for a retention period, then deleted in bounded
// batches: every event a partner key is told about is a row (and each HTTP
// attempt another), so without a limit the log grows with the platform's
// traffic for ever. Pending deliveries are never deleted, whatever their age.
import { inBatches, type Logger, type Metrics, type Pool, repeating } from "@ttip/runtime";

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
  return inBatches({ size: config.pruneBatch, maxBatches: config.pruneMaxBatches }, (size) => pruneDeliveryBatch(pool, cutoff, size));
}

/** Runs a pass now and then every interval, until stopped; a failed pass is logged and retried at the next. */
export function startRetention(o: { pool: Pool; config: RetentionConfig; logger: Logger; metrics?: Metrics }): () => Promise<void> {
  const pruned = o.metrics?.counter("ttip_partner_webhook_deliveries_pruned_total", "Partner webhook deliveries deleted after the retention period.");
  const pass = async () => {
    const deleted = await pruneDeliveries(o.pool, o.config);
    pruned?.inc(deleted);
    if (deleted > 0) o.logger.info({ deleted, retentionDays: o.config.retentionDays }, "old webhook deliveries deleted");
  };
  return repeating(pass, { everyMs: o.config.pruneIntervalMs, firstAfterMs: 0, logger: o.logger, failed: "webhook delivery retention pass failed; will retry" });
}
