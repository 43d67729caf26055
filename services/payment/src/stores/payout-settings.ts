// A worker's payout settings: automatic payout, its minimum and number, and an admin's hold.
import { microsTimestamptz, type Queryable } from "@ttip/runtime";

export interface PayoutSettings {
  auto_payout: boolean;
  auto_payout_minimum_minor: bigint;
  payout_phone: string;
  payouts_on_hold: boolean;
  /**
   * When payout_phone replaced another number, or was set as the first one while not the account's sign-in phone
   * (the service's clock); null for a first number that is the sign-in phone, or none.
   */
  payout_phone_changed_at: Date | null;
}

/** The columns PayoutSettings holds, by name (a statement selecting `*` is not prepared). */
export const PAYOUT_SETTINGS_COLUMNS = ["auto_payout", "auto_payout_minimum_minor", "payout_phone", "payouts_on_hold", "payout_phone_changed_at"] as const satisfies readonly (keyof PayoutSettings)[];

/** `forUpdate`: the row locked until the transaction ends, for a change decided on what it holds. */
export async function payoutSettingsOf(db: Queryable, workerId: string, forUpdate = false): Promise<PayoutSettings | undefined> {
  const lock = forUpdate ? " FOR UPDATE" : "";
  return (await db.query<PayoutSettings>(`SELECT ${PAYOUT_SETTINGS_COLUMNS.join(", ")} FROM payment.payout_settings WHERE worker_id = $1${lock}`, [workerId])).rows[0];
}

/**
 * The worker's own choices; an admin's hold stays as it is. A number replacing another is stamped `now` (the
 * service's clock), and so is a first number when `coolFirst` (it is not the account's sign-in phone): automatic
 * payouts to it wait out the cooling-off from then (payouts.ts).
 */
export async function putPayoutSettings(db: Queryable, workerId: string, autoPayout: boolean, minimumMinor: bigint, phone: string, now: Date, coolFirst: boolean): Promise<PayoutSettings> {
  const { rows } = await db.query<PayoutSettings>(
    `INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone, payout_phone_changed_at)
     VALUES ($1, $2, $3, $4, CASE WHEN $4 <> '' AND $6::boolean THEN $5::timestamptz END)
     ON CONFLICT (worker_id) DO UPDATE SET auto_payout = $2, auto_payout_minimum_minor = $3, payout_phone = $4, updated_at = now(),
       payout_phone_changed_at = CASE WHEN payout_settings.payout_phone NOT IN ('', $4) THEN $5::timestamptz
         WHEN payout_settings.payout_phone = '' AND $4 <> '' AND $6::boolean THEN $5::timestamptz ELSE payout_settings.payout_phone_changed_at END
     RETURNING ${PAYOUT_SETTINGS_COLUMNS.join(", ")}`,
    [workerId, autoPayout, minimumMinor, phone, now, coolFirst],
  );
  return rows[0];
}

/** An automatic payout held back by the cooling-off falls due at `dueAt` (the latest hold-back's end wins). */
export async function markAutoPayoutDue(db: Queryable, workerId: string, dueAt: Date): Promise<void> {
  await db.query("UPDATE payment.payout_settings SET auto_payout_due_at = $2 WHERE worker_id = $1", [workerId, dueAt]);
}

/**
 * The automatic payout's start was deferred or failed: due at `next`, in place of the look its credit marked for
 * `checkAt` (if any), or when nothing is due (a due one covers this one). Started, the look is cleared instead
 * (clearAutoPayoutDue).
 */
export async function settleAutoPayoutCheck(db: Queryable, workerId: string, checkAt: Date | undefined, next: Date): Promise<void> {
  await db.query(
    "UPDATE payment.payout_settings SET auto_payout_due_at = $3 WHERE worker_id = $1 AND (auto_payout_due_at = $2 OR auto_payout_due_at IS NULL)",
    [workerId, checkAt ?? null, next]);
}

/** The due automatic payout of `dueAt` deferred again, to `until`; one marked since (a newer number) stays. */
export async function deferAutoPayoutDue(db: Queryable, workerId: string, dueAt: Date, until: Date): Promise<void> {
  await db.query("UPDATE payment.payout_settings SET auto_payout_due_at = $3 WHERE worker_id = $1 AND auto_payout_due_at = $2", [workerId, dueAt, until]);
}

/** Workers with an automatic payout held back or deferred that is due at `now`, the longest waiting first. */
export async function dueAutoPayouts(db: Queryable, now: Date, limit: number): Promise<{ worker_id: string; auto_payout_due_at: Date }[]> {
  const { rows } = await db.query<{ worker_id: string; auto_payout_due_at: Date }>(
    "SELECT worker_id, auto_payout_due_at FROM payment.payout_settings WHERE auto_payout_due_at <= $1 ORDER BY auto_payout_due_at LIMIT $2", [now, limit]);
  return rows;
}

/** Done with the due automatic payout of `dueAt`; one marked since (a newer number) stays. */
export async function clearAutoPayoutDue(db: Queryable, workerId: string, dueAt: Date): Promise<void> {
  await db.query("UPDATE payment.payout_settings SET auto_payout_due_at = NULL WHERE worker_id = $1 AND auto_payout_due_at = $2", [workerId, dueAt]);
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

/** A hold's reason as kept: blocks taking over earlier holds add up, to this many characters at most. */
const HOLD_REASON_MAX_CHARS = 2_000;

/**
 * Auth blocked the worker: their payouts are held by the block, whoever held them before. A hold there already is
 * taken over (the block's reason first, the earlier one after it; the blocker as its author), so that the console
 * shows the block to whoever releases it: left as it was, a release meant for the earlier check paid a blocked account.
 */
export async function holdPayoutsForBlock(tx: Queryable, workerId: string, reason: string, adminId: string, changedUs: bigint): Promise<void> {
  // A block older than the block state recorded (delivered after a later unblock) changes nothing: it held the
  // payouts of an account no longer blocked.
  await tx.query(
    `INSERT INTO payment.payout_settings (worker_id, payouts_on_hold, hold_reason, held_at, held_by, account_blocked, block_changed_at)
     VALUES ($1, true, $2, now(), $3, true, ${microsTimestamptz("$5")})
     ON CONFLICT (worker_id) DO UPDATE SET payouts_on_hold = true, held_at = now(), held_by = $3, updated_at = now(),
       hold_reason = CASE WHEN payout_settings.payouts_on_hold THEN left($2 || '; held before: ' || payout_settings.hold_reason, $4) ELSE $2 END,
       account_blocked = true, block_changed_at = EXCLUDED.block_changed_at
     WHERE payout_settings.block_changed_at IS NULL OR payout_settings.block_changed_at < EXCLUDED.block_changed_at`,
    [workerId, reason, adminId, HOLD_REASON_MAX_CHARS, changedUs],
  );
}

/** Whether auth has the worker's account blocked, as payment last heard (startBlockedUserHolds). */
export async function accountBlocked(db: Queryable, workerId: string): Promise<boolean> {
  const { rowCount } = await db.query("SELECT 1 FROM payment.payout_settings WHERE worker_id = $1 AND account_blocked", [workerId]);
  return rowCount! > 0;
}

/**
 * Auth unblocked the worker: their payouts may be released again (the hold stays: an admin releases it). Recorded
 * with its time even with no row yet, so that a block delivered after it, though older, changes nothing.
 */
export async function noteAccountUnblocked(tx: Queryable, workerId: string, changedUs: bigint): Promise<void> {
  await tx.query(
    `INSERT INTO payment.payout_settings (worker_id, account_blocked, block_changed_at) VALUES ($1, false, ${microsTimestamptz("$2")})
     ON CONFLICT (worker_id) DO UPDATE SET account_blocked = false, block_changed_at = EXCLUDED.block_changed_at
     WHERE payout_settings.block_changed_at IS NULL OR payout_settings.block_changed_at < EXCLUDED.block_changed_at`,
    [workerId, changedUs],
  );
}

/**
 * "not_held" when the worker's payouts were not on hold (nothing changed). A worker with automatic payouts has one due
 * `now`, whatever was marked: what came in during the hold, and a due payout the hold dropped, are paid out by
 * reconciliation's pass, not left in the wallet until the next tip. A mark kept instead (a credit's look, one due
 * already) was cleared by whoever was settling it (that credit's start, a pass that found the payouts held), and the
 * look at the release went with it; a time of its own no one else is clearing. Not released while auth has the
 * account blocked ("blocked"): a release meant for an earlier hold paid the blocked account.
 */
export async function releasePayouts(tx: Queryable, workerId: string, now: Date): Promise<"released" | "not_held" | "blocked"> {
  const { rows } = await tx.query<{ released: boolean; blocked: boolean }>(
    `WITH released AS (
       UPDATE payment.payout_settings SET payouts_on_hold = false, hold_reason = '', held_at = NULL, held_by = NULL, updated_at = now(),
         auto_payout_due_at = CASE WHEN auto_payout THEN $2 ELSE auto_payout_due_at END
       WHERE worker_id = $1 AND payouts_on_hold AND NOT account_blocked RETURNING 1)
     SELECT EXISTS (SELECT 1 FROM released) AS released,
            EXISTS (SELECT 1 FROM payment.payout_settings WHERE worker_id = $1 AND payouts_on_hold AND account_blocked) AS blocked`,
    [workerId, now],
  );
  return rows[0].released ? "released" : rows[0].blocked ? "blocked" : "not_held";
}
