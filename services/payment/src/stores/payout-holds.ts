// Payout holds: an admin stops a worker's payouts (payment.payout_settings) until released.
import type { Queryable } from "@ttip/runtime";

export async function holdPayouts(tx: Queryable, workerId: string, reason: string): Promise<void> {
  await tx.query(
    `INSERT INTO payment.payout_settings (worker_id, payouts_on_hold, hold_reason) VALUES ($1, true, $2)
     ON CONFLICT (worker_id) DO UPDATE SET payouts_on_hold = true, hold_reason = $2, updated_at = now()`,
    [workerId, reason],
  );
}

/** False when the worker's payouts were not on hold (nothing changed). */
export async function releasePayouts(tx: Queryable, workerId: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    "UPDATE payment.payout_settings SET payouts_on_hold = false, hold_reason = '', updated_at = now() WHERE worker_id = $1 AND payouts_on_hold",
    [workerId],
  );
  return (rowCount ?? 0) > 0;
}
