// Each owner's settlement mode: pass-through (paid out at once) or wallet (held, for licensed deployments).
import type { Queryable } from "@ttip/runtime";

export async function putSettlementMode(db: Queryable, ownerKind: number, ownerId: string, mode: number): Promise<void> {
  await db.query(
    `INSERT INTO wallet.settlement_modes (owner_kind, owner_id, mode) VALUES ($1, $2, $3)
     ON CONFLICT (owner_kind, owner_id) DO UPDATE SET mode = $3, updated_at = now()`,
    [ownerKind, ownerId, mode],
  );
}

/** The mode set for an owner; undefined when none was set. */
export async function settlementModeOf(db: Queryable, ownerKind: number, ownerId: string): Promise<number | undefined> {
  const { rows } = await db.query<{ mode: number }>(
    `SELECT mode FROM wallet.settlement_modes WHERE owner_kind = $1 AND owner_id = $2`,
    [ownerKind, ownerId],
  );
  return rows[0]?.mode;
}
