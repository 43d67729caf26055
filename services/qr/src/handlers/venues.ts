import type { ServiceImpl } from "@connectrpc/connect";
import type { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { NotFoundError, requireCaller, withTransaction } from "@ttip/runtime";
import { VENUE } from "../access.js";
import { cacheKeys } from "../resolver.js";
import { revokeStaffCodes } from "../stores/codes.js";
import { profileOf } from "../stores/profiles.js";
import { addVenueStaff, managedVenues, removeVenueStaff, venuesNamed } from "../stores/venues.js";
import { profileMessage } from "./values.js";
import type { QrHandlerContext } from "./context.js";

type Impl = ServiceImpl<typeof QrService>;

/** A venue's staff, as its managers keep it. */
export function venueHandlers(h: QrHandlerContext): Partial<Impl> {
  return {
    addVenueStaff: addVenueStaffHandler(h),
    removeVenueStaff: removeVenueStaffHandler(h),
    listManagedVenues: listManagedVenuesHandler(h),
    searchVenues: searchVenuesHandler(h),
  };
}

/**
 * Puts a worker on a venue's staff, or takes them off it and revokes their codes there: the count revoked.
 * Asked by the venue service (as the platform) or an admin: the callers' access is the proto's.
 */
export async function setStaff(h: QrHandlerContext, venueId: string, workerId: string, onStaff: boolean): Promise<number> {
  const revoked = await withTransaction(h.pool, async (tx) => {
    if (!(await profileOf(tx, VENUE, venueId))) throw new NotFoundError(`venue_id: no venue ${venueId}`);
    if (onStaff) {
      await addVenueStaff(tx, venueId, workerId);
      return [];
    }
    await removeVenueStaff(tx, venueId, workerId);
    return revokeStaffCodes(tx, workerId, venueId);
  });
  await h.resolver.forget(...revoked.map((id) => cacheKeys.code(id)));
  return revoked.length;
}

function addVenueStaffHandler(h: QrHandlerContext): Impl["addVenueStaff"] {
  return async (req) => {
    await setStaff(h, req.venueId, req.workerId, true);
    return {};
  };
}

function removeVenueStaffHandler(h: QrHandlerContext): Impl["removeVenueStaff"] {
  return async (req) => ({ revokedCodes: await setStaff(h, req.venueId, req.workerId, false) });
}

function listManagedVenuesHandler(h: QrHandlerContext): Impl["listManagedVenues"] {
  return async (_req, ctx) => {
    const { pool, cfg } = h;
    const caller = requireCaller(ctx);
    return { venues: (await managedVenues(pool, caller.subject)).map((v) => profileMessage(v, cfg.QR_TIP_BASE_URL)) };
  };
}

function searchVenuesHandler(h: QrHandlerContext): Impl["searchVenues"] {
  return async (req) => {
    const { pool, cfg } = h;
    return { venues: (await venuesNamed(pool, req.query.trim())).map((v) => profileMessage(v, cfg.QR_TIP_BASE_URL)) };
  };
}
