// Venues: who manages a venue and who works there.
import type { Queryable } from "@ttip/runtime";
import { PROFILE_COLUMNS, profileFromRow, type ProfileRecord } from "./profiles.js";

/** The venues a user manages, by name; bounded like any list. */
export async function managedVenues(db: Queryable, userId: string, limit = 100): Promise<ProfileRecord[]> {
  const { rows } = await db.query(
    `SELECT ${PROFILE_COLUMNS}
       FROM qr.venue_managers m JOIN qr.profiles p ON p.owner_kind = 2 AND p.owner_id = m.venue_id
       LEFT JOIN qr.profile_photos ph USING (owner_kind, owner_id)
      WHERE m.manager_id = $1 ORDER BY p.display_name, p.owner_id LIMIT $2`,
    [userId, limit],
  );
  return rows.map(profileFromRow);
}

/** Venues whose name holds `query` (LIKE's wildcards in it taken as plain characters), by name; bounded. */
export async function venuesNamed(db: Queryable, query: string, limit = 50): Promise<ProfileRecord[]> {
  const { rows } = await db.query(
    `SELECT ${PROFILE_COLUMNS}
       FROM qr.profiles p LEFT JOIN qr.profile_photos ph USING (owner_kind, owner_id)
      WHERE p.owner_kind = 2 AND p.display_name ILIKE '%' || $1 || '%' ORDER BY p.display_name, p.owner_id LIMIT $2`,
    [query.replace(/[\\%_]/g, (c) => `\\${c}`), limit],
  );
  return rows.map(profileFromRow);
}

export async function isVenueManager(db: Queryable, venueId: string, userId: string): Promise<boolean> {
  const { rowCount } = await db.query(`SELECT 1 FROM qr.venue_managers WHERE venue_id = $1 AND manager_id = $2`, [venueId, userId]);
  return (rowCount ?? 0) > 0;
}

/** The users who manage a venue, the oldest first; bounded like any list. */
export async function venueManagers(db: Queryable, venueId: string, limit = 100): Promise<string[]> {
  const { rows } = await db.query<{ manager_id: string }>(
    `SELECT manager_id FROM qr.venue_managers WHERE venue_id = $1 ORDER BY added_at, manager_id LIMIT $2`,
    [venueId, limit],
  );
  return rows.map((r) => r.manager_id);
}

/**
 * Whether the worker is on the venue's staff, the row share-locked to the transaction's end: a removal (its delete
 * first, then its revoke of their codes there) waits for a code made or rotated under it and revokes that too, or
 * goes first and this finds the worker gone. Called before any code's row lock (a removal takes them after).
 */
export async function lockVenueStaff(tx: Queryable, venueId: string, workerId: string): Promise<boolean> {
  const { rowCount } = await tx.query(`SELECT 1 FROM qr.venue_staff WHERE venue_id = $1 AND worker_id = $2 FOR SHARE`, [venueId, workerId]);
  return (rowCount ?? 0) > 0;
}


/** Whoever creates a venue manages it, and whoever accepts a manager's invitation to it; false if they did already. */
export async function addVenueManager(db: Queryable, venueId: string, managerId: string): Promise<boolean> {
  const { rowCount } = await db.query(`INSERT INTO qr.venue_managers (venue_id, manager_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [venueId, managerId]);
  return (rowCount ?? 0) > 0;
}

/** The lock two removals take in turn, so that both together cannot take a venue's last two managers. */
export const venueManagersLock = (venueId: string) => `qr.venue_managers.${venueId}`;

/** Ends a user's management of a venue unless they are its last manager; "last" and "none" change nothing. */
export async function removeVenueManager(tx: Queryable, venueId: string, managerId: string): Promise<"removed" | "last" | "none"> {
  const { rows } = await tx.query<{ manager_id: string }>(`SELECT manager_id FROM qr.venue_managers WHERE venue_id = $1`, [venueId]);
  if (!rows.some((r) => r.manager_id === managerId)) return "none";
  if (rows.length === 1) return "last";
  await tx.query(`DELETE FROM qr.venue_managers WHERE venue_id = $1 AND manager_id = $2`, [venueId, managerId]);
  return "removed";
}

export async function addVenueStaff(db: Queryable, venueId: string, workerId: string): Promise<void> {
  await db.query(`INSERT INTO qr.venue_staff (venue_id, worker_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [venueId, workerId]);
}

export async function removeVenueStaff(db: Queryable, venueId: string, workerId: string): Promise<void> {
  await db.query(`DELETE FROM qr.venue_staff WHERE venue_id = $1 AND worker_id = $2`, [venueId, workerId]);
}
