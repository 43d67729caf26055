// A worker's payout settings: automatic payout, its minimum and number, and an admin's hold.
import type { Queryable } from "@ttip/runtime";

export interface PayoutSettings {
  auto_payout: boolean;
  auto_payout_minimum_minor: bigint;
  payout_phone: string;
  payouts_on_hold: boolean;
}

/** The columns PayoutSettings holds, by name (a statement selecting `*` is not prepared). */
export const PAYOUT_SETTINGS_COLUMNS = ["auto_payout", "auto_payout_minimum_minor", "payout_phone", "payouts_on_hold"] as const satisfies readonly (keyof PayoutSettings)[];

/** `forUpdate`: the row locked until the transaction ends, for a change decided on what it holds. */
export async function payoutSettingsOf(db: Queryable, workerId: string, forUpdate = false): Promise<PayoutSettings | undefined> {
  const lock = forUpdate ? " FOR UPDATE" : "";
  return (await db.query<PayoutSettings>(`SELECT ${PAYOUT_SETTINGS_COLUMNS.join(", ")} FROM payment.payout_settings WHERE worker_id = $1${lock}`, [workerId])).rows[0];
}

/** The worker's own choices; an admin's hold stays as it is. */
export async function putPayoutSettings(db: Queryable, workerId: string, autoPayout: boolean, minimumMinor: bigint, phone: string): Promise<PayoutSettings> {
  const { rows } = await db.query<PayoutSettings>(
    `INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (worker_id) DO UPDATE SET auto_payout = $2, auto_payout_minimum_minor = $3, payout_phone = $4, updated_at = now()
     RETURNING *`,
    [workerId, autoPayout, minimumMinor, phone],
  );
  return rows[0];
}

/** A worker's payout hold: when, by whom (null for a hold older than the column) and why. */
export interface PayoutHold {
  held_at: Date | null;
  held_by: string | null;
  hold_reason: string;
}

/** The worker's hold; undefined when their payouts are not on hold. */
export async function payoutHoldOf(db: Queryable, workerId: string): Promise<PayoutHold | undefined> {
  const { rows } = await db.query<PayoutHold>("SELECT held_at, held_by, hold_reason FROM payment.payout_settings WHERE worker_id = $1 AND payouts_on_hold", [workerId]);
  return rows[0];
}

/** An admin stops a worker's payouts until released. False when they were on hold already (nothing changed). */
export async function holdPayouts(tx: Queryable, workerId: string, reason: string, adminId: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    `INSERT INTO payment.payout_settings (worker_id, payouts_on_hold, hold_reason, held_at, held_by) VALUES ($1, true, $2, now(), $3)
     ON CONFLICT (worker_id) DO UPDATE SET payouts_on_hold = true, hold_reason = $2, held_at = now(), held_by = $3, updated_at = now()
     WHERE NOT payout_settings.payouts_on_hold`,
    [workerId, reason, adminId],
  );
  return (rowCount ?? 0) > 0;
}

/** False when the worker's payouts were not on hold (nothing changed). */
export async function releasePayouts(tx: Queryable, workerId: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    "UPDATE payment.payout_settings SET payouts_on_hold = false, hold_reason = '', held_at = NULL, held_by = NULL, updated_at = now() WHERE worker_id = $1 AND payouts_on_hold",
    [workerId],
  );
  return (rowCount ?? 0) > 0;
}
