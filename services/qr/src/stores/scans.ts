// Scans: one row per code, device and minute; counted against tips for conversion.
import { randomUUID } from "node:crypto";
import type { Queryable } from "@ttip/runtime";

export interface NewScan {
  qrCodeId: string;
  /** A salted hash of who scanned: counts unique devices without keeping who they are. */
  deviceHash: string;
  referrer: string;
}

/**
 * Records a scan; `fresh` is false when the same device scanned the code
 * within the minute (a reload or a retry), which is the same scan.
 */
export async function recordScan(tx: Queryable, s: NewScan): Promise<{ scanId: string; fresh: boolean }> {
  const inserted = await tx.query(
    `INSERT INTO qr.scans (scan_id, qr_code_id, device_hash, referrer, minute)
     VALUES ($1, $2, $3, $4, date_trunc('minute', now())) ON CONFLICT DO NOTHING RETURNING scan_id`,
    [randomUUID(), s.qrCodeId, s.deviceHash, s.referrer],
  );
  if (inserted.rowCount !== 0) return { scanId: inserted.rows[0].scan_id as string, fresh: true };
  const { rows } = await tx.query(
    `SELECT scan_id FROM qr.scans WHERE qr_code_id = $1 AND device_hash = $2 AND minute = date_trunc('minute', now())`,
    [s.qrCodeId, s.deviceHash],
  );
  return { scanId: rows[0].scan_id as string, fresh: false };
}

export interface ScanCounts {
  qrCodeId: string;
  scans: bigint;
  devices: bigint;
  tips: bigint;
}

/**
 * Counts in [from, to) for one code, or for every code of an owner (or at a venue), oldest code first. `ownerKind`:
 * a worker's codes (at any venue), or a venue's own and those at it; null (an admin's ask) either.
 */
export async function scanCounts(db: Queryable, qrCodeId: string | null, ownerId: string | null, ownerKind: number | null, from: Date, to: Date): Promise<ScanCounts[]> {
  const { rows } = await db.query(
    `SELECT c.qr_code_id,
            (SELECT count(*) FROM qr.scans s WHERE s.qr_code_id = c.qr_code_id AND s.scanned_at >= $3 AND s.scanned_at < $4) AS scans,
            (SELECT count(DISTINCT s.device_hash) FROM qr.scans s WHERE s.qr_code_id = c.qr_code_id AND s.scanned_at >= $3 AND s.scanned_at < $4) AS devices,
            (SELECT count(*) FROM qr.tips t WHERE t.qr_code_id = c.qr_code_id AND t.occurred_at >= $3 AND t.occurred_at < $4) AS tips
       FROM qr.qr_codes c
      WHERE ($1::uuid IS NOT NULL AND c.qr_code_id = $1::uuid)
         OR ($1::uuid IS NULL AND ((c.owner_id = $2::uuid AND c.owner_kind = COALESCE($5::smallint, c.owner_kind))
                                   OR (c.venue_id = $2::uuid AND COALESCE($5::smallint, 2) = 2)))
      ORDER BY c.created_at, c.qr_code_id`,
    [qrCodeId, ownerId, from, to, ownerKind],
  );
  return rows.map((r) => ({ qrCodeId: r.qr_code_id, scans: r.scans, devices: r.devices, tips: r.tips }));
}
