import { clockOf, InvalidStateError, PermissionDeniedError, RateLimitedError, withTransaction } from "@ttip/runtime";
import { audit, AuditAction } from "./audit.js";
import type { AuthCore } from "./core.js";
import { verifyPin } from "./pin.js";
import { getUser } from "./users.js";

/** RESOURCE_EXHAUSTED with the time left, as the contract says for a lockout. */
export function lockedOut(until: Date, now = Date.now()): RateLimitedError {
  const seconds = Math.max(1, Math.ceil((until.getTime() - now) / 1000));
  return new RateLimitedError(`PIN locked after repeated failures; try again in ${seconds} s or reset the PIN with an OTP`, seconds);
}

/**
 * Checks a user's PIN with brute-force protection. Each try is counted
 * before the hash is compared, in one atomic update, so parallel guesses
 * cannot slip past the limit. After `pinMaxFailures` wrong tries the user is
 * locked for lockoutBaseSeconds × 2^(earlier lockouts in a row), at most a
 * day. A correct PIN clears both counters. Unlock paths: wait, ResetPin with
 * a fresh OTP, or an admin's UnlockUser. Time is the service's clock (a test
 * moves it past a lockout instead of sleeping through it).
 */
export async function checkPin(core: AuthCore, userId: string, pin: string, ip: string): Promise<string> {
  const { pool } = core.ctx;
  const max = core.config.pinMaxFailures;
  const now = new Date(clockOf(core.ctx).now());
  // updated_at: when the try was counted, which tells a try still being checked from a lockout never written.
  const claimed = await pool.query(
    `UPDATE auth.users SET pin_failures = pin_failures + 1, updated_at = $3
      WHERE user_id = $1 AND pin_hash IS NOT NULL AND pin_failures < $2
        AND (locked_until IS NULL OR locked_until <= $3)
      RETURNING pin_hash, pin_failures`,
    [userId, max, now],
  );
  const row = claimed.rows[0];
  if (!row) {
    const user = await getUser(pool, userId);
    if (!user.pin_hash) throw new InvalidStateError("no PIN is set for this account: call SetPin");
    if (user.locked_until && user.locked_until > now) throw lockedOut(user.locked_until, now.getTime());
    // The last try was counted, and the lockout it earned never written (a crash, a failed write), or it is
    // still being checked: past LOST_LOCKOUT_MS it was lost, and is applied now (else no try would ever count again).
    const lost = await lockOut(core, userId, ip, now, new Date(now.getTime() - LOST_LOCKOUT_MS));
    throw lockedOut(lost ?? new Date(now.getTime() + 1000), now.getTime());
  }
  if (await verifyPin(row.pin_hash, pin)) {
    await pool.query("UPDATE auth.users SET pin_failures = 0, lockouts = 0, locked_until = NULL WHERE user_id = $1", [userId]);
    return row.pin_hash;
  }
  if (row.pin_failures < max) {
    await audit(pool, AuditAction.LOGIN_FAILED, { userId, ip, detail: `wrong PIN (${row.pin_failures} of ${max})` });
    throw new PermissionDeniedError(`wrong PIN; ${max - row.pin_failures} tries left before a lockout`);
  }
  const until = await lockOut(core, userId, ip, now);
  if (until) throw lockedOut(until, now.getTime());
  // Unlocked while this try was checked (an admin's UnlockUser, a ResetPin): its count is gone; a wrong PIN all the same.
  await audit(pool, AuditAction.LOGIN_FAILED, { userId, ip, detail: `wrong PIN (${max} of ${max}, unlocked meanwhile)` });
  throw new PermissionDeniedError("wrong PIN");
}

/** How long a try may take to check its PIN (a hash of well under a second) before its unwritten lockout counts as lost. */
const LOST_LOCKOUT_MS = 30_000;

/**
 * Locks the PIN of a user whose last try used up the tries: until now + lockoutBaseSeconds × 2^(earlier lockouts),
 * at most a day. `countedBefore`: only if that try was counted before then (a lost lockout); undefined when none is due.
 */
async function lockOut(core: AuthCore, userId: string, ip: string, now: Date, countedBefore?: Date): Promise<Date | undefined> {
  const max = core.config.pinMaxFailures;
  return withTransaction(core.ctx.pool, async (tx) => {
    const { rows } = await tx.query(
      `UPDATE auth.users
          SET locked_until = $3::timestamptz + make_interval(secs => LEAST($2::float8 * power(2, lockouts), 86400)),
              lockouts = lockouts + 1, pin_failures = 0, updated_at = now()
        WHERE user_id = $1 AND pin_failures >= $4 AND ($5::timestamptz IS NULL OR updated_at <= $5)
        RETURNING locked_until, lockouts`,
      [userId, core.config.lockoutBaseSeconds, now, max, countedBefore ?? null],
    );
    if (!rows[0]) return undefined;
    await audit(tx, AuditAction.LOGIN_FAILED, { userId, ip, detail: `wrong PIN (${max} of ${max})` });
    await audit(tx, AuditAction.LOCKOUT, { userId, ip, detail: `lockout ${rows[0].lockouts} until ${rows[0].locked_until.toISOString()}` });
    return rows[0].locked_until as Date;
  });
}
