import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { QrScannedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { ScanStatsSchema } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { callerOf, CLIENT_ADDRESS_HEADER, emitEvent, fieldError, hmacSha256, PermissionDeniedError, requireCaller, withTransaction } from "@ttip/runtime";
import { canManage, VENUE, WORKER } from "../access.js";
import { recordScan, scanCounts } from "../stores/scans.js";
import { referrerOf } from "./values.js";
import type { QrHandlerContext } from "./context.js";

type Impl = ServiceImpl<typeof QrService>;

/** Scans: recorded as they happen, counted for the owner. */
export function scanHandlers(h: QrHandlerContext): Partial<Impl> {
  return {
    recordScan: recordScanHandler(h),
    getScanStats: getScanStatsHandler(h),
  };
}

function recordScanHandler(h: QrHandlerContext): Impl["recordScan"] {
  return async (req, ctx) => {
    const { pool, resolver, deviceSalt } = h;
    if (req.code.case === undefined) throw fieldError("code", "give short_code or payload");
    const { target, code } = await resolver.resolve({ case: req.code.case, value: req.code.value });
    // A salted hash: counts unique devices without keeping who they are.
    const who =
      callerOf(ctx)?.subject ??
      (req.deviceId ? `device:${req.deviceId}` : `${ctx.requestHeader.get(CLIENT_ADDRESS_HEADER) ?? ""}|${req.userAgent}`);
    const deviceHash = hmacSha256(deviceSalt, who, "base64url").slice(0, 22);
    const scanId = await withTransaction(pool, async (tx) => {
      const scan = await recordScan(tx, { qrCodeId: code.id, deviceHash, referrer: referrerOf(req.referrer) });
      // The same device again within the minute (a reload or a retry): the same scan, no new event.
      if (!scan.fresh) return scan.scanId;
      await emitEvent(tx, "qr", QrScannedSchema, {
        qrCodeId: code.id,
        shortCode: code.shortCode,
        workerId: target.workerId,
        venueId: target.venueId,
        referrer: referrerOf(req.referrer),
        deviceHash,
      });
      return scan.scanId;
    });
    return { scanId, target };
  };
}

function getScanStatsHandler(h: QrHandlerContext): Impl["getScanStats"] {
  return async (req, ctx) => {
    const { pool, managedCode } = h;
    const caller = requireCaller(ctx);
    // The codes of what the caller may see the id as: a worker's own, or a venue's (a manager's rights stop at its codes).
    let ownerKind: number | null = null;
    if (req.qrCodeId) {
      await managedCode(pool, ctx, req.qrCodeId);
    } else if (await canManage(pool, caller, WORKER, req.ownerId, null)) {
      ownerKind = caller.roles.includes("admin") ? null : WORKER;
    } else if (await canManage(pool, caller, VENUE, req.ownerId, null)) {
      ownerKind = VENUE;
    } else {
      throw new PermissionDeniedError("only the owner, a manager of the venue or an admin may see these statistics");
    }
    const from = timestampDate(req.from!);
    const to = timestampDate(req.to!);
    const rows = await scanCounts(pool, req.qrCodeId || null, req.ownerId || null, ownerKind, from, to);
    return {
      stats: rows.map((r) =>
        create(ScanStatsSchema, {
          qrCodeId: r.qrCodeId,
          scans: r.scans,
          uniqueDevices: r.devices,
          tips: r.tips,
          conversionBps: r.scans > 0n ? Number((r.tips * 10_000n) / r.scans) : 0,
        }),
      ),
    };
  };
}
