import type { ServiceImpl } from "@connectrpc/connect";
import type { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { NotFoundError, requireCaller, withTransaction } from "@ttip/runtime";
import { requireVenueManager, VENUE } from "../access.js";
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

function addVenueStaffHandler(h: QrHandlerContext): Impl["addVenueStaff"] {
  return async (req, ctx) => {
    const { pool } = h;
    const caller = requireCaller(ctx);
    await withTransaction(pool, async (tx) => {
      if (!(await profileOf(tx, VENUE, req.venueId))) throw new NotFoundError(`venue_id: no venue ${req.venueId}`);
      await requireVenueManager(tx, caller, req.venueId);
      await addVenueStaff(tx, req.venueId, req.workerId);
    });
    return {};
  };
}

function removeVenueStaffHandler(h: QrHandlerContext): Impl["removeVenueStaff"] {
  return async (req, ctx) => {
    const { pool, resolver } = h;
    const caller = requireCaller(ctx);
    const revoked = await withTransaction(pool, async (tx) => {
      if (!(await profileOf(tx, VENUE, req.venueId))) throw new NotFoundError(`venue_id: no venue ${req.venueId}`);
      await requireVenueManager(tx, caller, req.venueId);
      await removeVenueStaff(tx, req.venueId, req.workerId);
      return revokeStaffCodes(tx, req.workerId, req.venueId);
    });
    await resolver.forget(...revoked.map((id) => cacheKeys.code(id)));
    return { revokedCodes: revoked.length };
  };
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
