// Blocked payers: numbers an admin refuses tips from.
import type { Queryable } from "@ttip/runtime";

/**
 * Blocks a number, or gives a blocked one another reason or author. False when the same admin blocked it for that
 * reason already (a retry after a lost answer): nothing changed.
 */
export async function blockPhone(tx: Queryable, phone: string, reason: string, blockedBy: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    `INSERT INTO payment.blocked_phones (phone, reason, blocked_by) VALUES ($1, $2, $3)
     ON CONFLICT (phone) DO UPDATE SET reason = $2, blocked_by = $3
     WHERE blocked_phones.reason IS DISTINCT FROM $2 OR blocked_phones.blocked_by IS DISTINCT FROM $3`,
    [phone, reason, blockedBy],
  );
  return (rowCount ?? 0) > 0;
}

/** False when the number was not blocked (nothing changed). */
export async function unblockPhone(tx: Queryable, phone: string): Promise<boolean> {
  const { rowCount } = await tx.query("DELETE FROM payment.blocked_phones WHERE phone = $1", [phone]);
  return (rowCount ?? 0) > 0;
}
